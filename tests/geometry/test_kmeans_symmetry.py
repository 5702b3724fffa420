import pytest
import torch

from lasr.geometry.kmeans import kmeans
from lasr.geometry.mesh import icosphere
from lasr.geometry.symmetry import bone_symmetry_loss, mirror_index, reflect, symmetrize, symmetry_loss


def _clusters(seed=0, per=60, dim=3):
    g = torch.Generator().manual_seed(seed)
    true_c = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [10, 10, 10]])[:, :dim]
    pts = torch.cat([c + 0.5 * torch.randn(per, dim, generator=g) for c in true_c])
    labels = torch.arange(len(true_c)).repeat_interleave(per)
    perm = torch.randperm(len(pts), generator=g)
    return pts[perm], labels[perm], true_c


def test_kmeans_recovers_separated_clusters():
    pts, true_labels, true_c = _clusters()
    centers, labels = kmeans(pts, 5, iters=50, seed=0)
    assert centers.shape == (5, 3) and labels.shape == (len(pts),) and labels.dtype == torch.long
    # each true center matched by exactly one found center
    d = torch.cdist(true_c, centers)
    match = d.argmin(1)
    assert len(set(match.tolist())) == 5 and d.min(1).values.max() < 0.3
    # partition identical up to relabelling
    assert torch.equal(match[true_labels], labels)
    # labels are nearest-center assignments
    assert torch.equal(torch.cdist(pts, centers).argmin(1), labels)


def test_weighted_kmeans_centers_are_weighted_means():
    pts, true_labels, true_c = _clusters()
    g = torch.Generator().manual_seed(1)
    w = torch.rand(len(pts), generator=g) ** 3 + 0.01  # very uneven weights
    centers, labels = kmeans(pts, 5, seed=0, weights=w)
    d = torch.cdist(true_c, centers)
    match = d.argmin(1)
    assert torch.equal(match[true_labels], labels)  # same partition as the truth
    for j in range(5):  # oracle: each center is its cluster's weighted mean, not its plain mean
        sel = labels == j
        wmean = (pts[sel] * w[sel, None]).sum(0) / w[sel].sum()
        assert torch.allclose(centers[j], wmean, atol=1e-5)
        assert (centers[j] - pts[sel].mean(0)).norm() > 1e-3
    # integer weights act as repeated points
    wi = torch.randint(1, 4, (len(pts),), generator=g)
    c_w, _ = kmeans(pts, 5, seed=0, weights=wi.float())
    c_r, _ = kmeans(pts.repeat_interleave(wi, 0), 5, seed=0)
    assert torch.allclose(torch.cdist(c_w, c_r).min(1).values, torch.zeros(5), atol=1e-5)


def test_weighted_kmeans_rejects_bad_weights():
    pts, _, _ = _clusters()
    with pytest.raises(ValueError, match="weights"):
        kmeans(pts, 3, weights=torch.zeros(len(pts)))
    with pytest.raises(ValueError, match="weights"):
        kmeans(pts, 3, weights=torch.ones(3))


def test_kmeans_deterministic_by_seed():
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(500, 2, generator=g)
    c1, l1 = kmeans(pts, 7, seed=5)
    c2, l2 = kmeans(pts, 7, seed=5)
    assert torch.equal(c1, c2) and torch.equal(l1, l2)
    c3, _ = kmeans(pts, 7, seed=6)
    assert not torch.equal(c1, c3)  # different init on a structureless set


def test_kmeans_edge_cases():
    pts = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    centers, labels = kmeans(pts, 3)
    assert torch.allclose(centers[labels], pts)  # k == #unique -> each distinct point is a center
    with pytest.raises(ValueError, match="distinct"):
        kmeans(pts, 4)
    with pytest.raises(ValueError):
        kmeans(pts, 0)
    c1, l1 = kmeans(pts, 1)
    assert torch.allclose(c1[0], pts.mean(0)) and (l1 == 0).all()


def test_mirror_index_on_icosphere():
    v, _ = icosphere(3)
    m = mirror_index(v)
    assert m.shape == (len(v),) and m.dtype == torch.long
    assert torch.equal(m[m], torch.arange(len(v)))
    assert torch.allclose(reflect(v)[torch.arange(len(v))], v[m], atol=1e-6)
    on_plane = v[:, 0].abs() < 1e-9
    assert on_plane.any() and torch.equal(m[on_plane], torch.nonzero(on_plane).flatten())
    # other axes work too
    my = mirror_index(v, axis=1)
    assert torch.allclose(reflect(v, 1), v[my], atol=1e-6)


def test_mirror_index_rejects_asymmetric():
    v, _ = icosphere(2)
    v = v.clone()
    v[0, 0] += 0.1
    with pytest.raises(ValueError):
        mirror_index(v)


def test_symmetrize():
    v, _ = icosphere(2, dtype=torch.float64)
    m = mirror_index(v)
    g = torch.Generator().manual_seed(0)
    noisy = v + 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float64)
    assert symmetry_loss(noisy, m) > 1e-4
    s = symmetrize(noisy, m)
    assert symmetry_loss(s, m) < 1e-28
    assert torch.allclose(symmetrize(s, m), s)  # projection is idempotent
    assert torch.allclose(s[v[:, 0].abs() < 1e-12, 0], torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(symmetrize(v, m), v)
    # batched
    sb = symmetrize(torch.stack([noisy, noisy]), m)
    assert torch.allclose(sb[1], s)


def _mirrored_bone_set():
    """Two bones mirrored about x = 0, one on the plane turned about x, one without a partner."""
    from lasr.geometry.rotations import axis_angle_to_matrix
    g = torch.Generator().manual_seed(0)
    c = torch.tensor([[0.4, 0.2, -0.3], [-0.4, 0.2, -0.3], [0.0, -0.5, 0.1], [0.3, 0.3, 0.3]], dtype=torch.float64)
    aa = torch.tensor([[0.3, -0.5, 0.2], [0.3, 0.5, -0.2], [0.7, 0.0, 0.0], [0.1, 0.2, 0.3]], dtype=torch.float64)
    lp = torch.randn(4, 3, generator=g, dtype=torch.float64)
    lp[1] = lp[0]
    return c, axis_angle_to_matrix(aa), lp, torch.tensor([1, 0, 2, -1])


def test_bone_symmetry_loss_value():
    c, R, lp, mirror = _mirrored_bone_set()
    # the mirror image of a turn about (a, b, c) is the turn about (a, -b, -c): exact pairs cost nothing
    assert bone_symmetry_loss(c, R, lp, mirror) < 1e-24
    moved = c.clone()
    moved[0, 0] += 0.1  # one partner 0.1 off: |dc|^2 = 0.01 for both bones of the pair
    lp2 = lp.clone()
    lp2[2, 1] += 0.3  # the plane bone is its own partner: l - l = 0 whatever it is
    assert torch.allclose(bone_symmetry_loss(moved, R, lp2, mirror), torch.tensor(2 * 0.01 / 3, dtype=torch.float64))
    c3 = c.clone()
    c3[2, 0] = 0.2  # the plane bone off the plane by 0.2: |c - Sc|^2 = 0.16
    assert torch.allclose(bone_symmetry_loss(c3, R, lp, mirror), torch.tensor(0.16 / 3, dtype=torch.float64))
    assert bone_symmetry_loss(c, R, lp, torch.full((4,), -1)) == 0  # no pairs: no term


def test_bone_symmetry_loss_gradcheck():
    c, R, lp, mirror = _mirrored_bone_set()
    g = torch.Generator().manual_seed(1)
    args = [(x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).requires_grad_() for x in (c, R, lp)]
    assert torch.autograd.gradcheck(lambda a, b, d: bone_symmetry_loss(a, b, d, mirror), args)
