import numpy as np
import pytest
import torch

from lasr.geometry.mesh import (
    cotangent_laplacian,
    edges_unique,
    euler_characteristic,
    face_areas,
    face_normals,
    face_pairs,
    icosphere,
    is_closed_manifold,
    laplacian_smoothing,
    manifold_report,
    normal_consistency,
    remove_unreferenced_vertices,
    signed_volume,
    uniform_laplacian,
    vertex_normals,
)


@pytest.mark.parametrize("level,nv,nf", [(0, 12, 20), (1, 42, 80), (2, 162, 320), (3, 642, 1280)])
def test_icosphere_counts_and_manifold(level, nv, nf):
    v, f = icosphere(level)
    assert v.shape == (nv, 3) and f.shape == (nf, 3)
    assert v.dtype == torch.float32 and f.dtype == torch.long
    assert torch.allclose(v.norm(dim=-1), torch.ones(nv), atol=1e-6)
    assert is_closed_manifold(v, f, require_single_component=True)
    assert euler_characteristic(v, f) == 2
    assert edges_unique(f).shape == (nf * 3 // 2, 2)


def test_icosphere_outward_normals_and_area():
    v, f = icosphere(3, dtype=torch.float64)
    fc = v[f].mean(1)
    assert ((face_normals(v, f) * fc).sum(-1) > 0).all()
    vn = vertex_normals(v, f)
    assert torch.allclose(vn.norm(dim=-1), torch.ones(len(v), dtype=torch.float64))
    assert ((vn * v).sum(-1) > 0.99).all()  # ~ radial on a sphere
    assert signed_volume(v, f) > 0
    area = face_areas(v, f).sum()
    assert abs(area.item() - 4 * np.pi) / (4 * np.pi) < 0.02
    assert abs(signed_volume(v, f).item() - 4 / 3 * np.pi) / (4 / 3 * np.pi) < 0.03
    v2, _ = icosphere(2, radius=2.5)
    assert torch.allclose(v2.norm(dim=-1), torch.full((162,), 2.5), atol=1e-5)


def test_edges_unique_sorted():
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    e = edges_unique(f)
    assert e.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]


def _grid(n=6, seed=0, jitter=0.15):
    """Planar n x n grid in z=0 with jittered interior vertices; CCW faces (normal +z)."""
    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    v = np.stack([xs.ravel(), ys.ravel(), np.zeros(n * n)], 1)
    idx = np.arange(n * n).reshape(n, n)
    interior = np.zeros((n, n), bool)
    interior[1:-1, 1:-1] = True
    v[interior.ravel(), :2] += rng.uniform(-jitter, jitter, (interior.sum(), 2))
    f = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = idx[i, j], idx[i + 1, j], idx[i + 1, j + 1], idx[i, j + 1]
            f += [[a, b, c], [a, c, d]]
    return torch.tensor(v), torch.tensor(f), torch.tensor(interior.ravel())


def test_laplacians_on_planar_grid():
    v, f, interior = _grid(jitter=0.0)
    lu = uniform_laplacian(v, f)
    # regular grid: uniform Laplacian of a *linear* field vanishes only with symmetric
    # stencils; our triangulation has 6 neighbours (symmetric pairs) -> zero at interior
    assert torch.allclose(lu[interior], torch.zeros_like(lu[interior]), atol=1e-12)
    # jittered planar grid: in-plane components nonzero for umbrella, but normal (z) zero
    vj, fj, inter = _grid(jitter=0.15)
    assert torch.allclose(uniform_laplacian(vj, fj)[:, 2], torch.zeros(len(vj), dtype=torch.float64))
    # cotangent Laplacian reproduces linear functions exactly on any planar triangulation
    lc = cotangent_laplacian(vj, fj)
    assert torch.allclose(lc[inter], torch.zeros_like(lc[inter]), atol=1e-12)
    assert uniform_laplacian(vj, fj)[inter].abs().max() > 1e-3


def test_laplacian_on_sphere_points_inward():
    v, f = icosphere(3, dtype=torch.float64)
    for lap in (uniform_laplacian(v, f), cotangent_laplacian(v, f)):
        radial = (lap * v).sum(-1)
        assert (radial < 0).all()  # points towards the center
    # the cotangent Laplacian is the (normalized) mean-curvature normal: purely radial
    lap = cotangent_laplacian(v, f)
    radial = (lap * v).sum(-1)
    tangential = lap - radial[:, None] * v
    assert (tangential.norm(dim=-1) / radial.abs()).max() < 0.05
    # smoothing loss: a noisy sphere is less smooth than the clean one
    noisy = v + 0.02 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for method in ("uniform", "cot"):
        assert laplacian_smoothing(noisy, f, method) > 1.5 * laplacian_smoothing(v, f, method)


def test_laplacian_smoothing_gradients_and_batching():
    v, f = icosphere(2, dtype=torch.float64)
    x = v.clone().requires_grad_(True)
    loss = laplacian_smoothing(x, f)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    batch = torch.stack([v, 2 * v])
    lb = laplacian_smoothing(batch, f)
    assert torch.allclose(lb, 0.5 * (laplacian_smoothing(v, f) + laplacian_smoothing(2 * v, f)))
    lbc = laplacian_smoothing(batch, f, "cot")
    assert torch.allclose(lbc, 0.5 * (laplacian_smoothing(v, f, "cot") + laplacian_smoothing(2 * v, f, "cot")))
    with pytest.raises(ValueError):
        laplacian_smoothing(v, f, "nope")
    # gradient descent on the loss shrinks a noisy surface's roughness
    xs = (v + 0.03 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    xs.requires_grad_(True)
    before = laplacian_smoothing(xs, f).item()
    for _ in range(20):
        xs.grad = None
        laplacian_smoothing(xs, f).backward()
        with torch.no_grad():
            xs -= 0.01 * len(v) * xs.grad  # the loss is a mean over vertices
    assert laplacian_smoothing(xs, f).item() < 0.7 * before


def _normal_consistency_by_hand(v, f):
    """Dict of edge -> faces, then 1 - cos per edge with two faces, one at a time."""
    v, f = v.tolist(), f.tolist()
    by_edge = {}
    for i, face in enumerate(f):
        for a, b in ((0, 1), (1, 2), (2, 0)):
            by_edge.setdefault(tuple(sorted((face[a], face[b]))), []).append(i)

    def normal(face):
        p0, p1, p2 = (np.array(v[k]) for k in face)
        n = np.cross(p1 - p0, p2 - p0)
        return n / np.linalg.norm(n)

    costs = [1 - normal(f[fs[0]]) @ normal(f[fs[1]]) for fs in by_edge.values() if len(fs) == 2]
    return float(np.mean(costs)), len(costs)


def test_normal_consistency_against_a_loop_oracle_and_gradcheck():
    v, f = icosphere(2, dtype=torch.float64)
    rough = v + 0.05 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want, n_edges = _normal_consistency_by_hand(rough, f)
    assert face_pairs(f).shape == (n_edges, 2) == (480, 2)  # every edge of a closed mesh, once
    assert normal_consistency(rough, f).item() == pytest.approx(want, rel=1e-12)
    # an open mesh: the boundary edges (one face) are left out
    open_f = f[1:]
    want_open, n_open = _normal_consistency_by_hand(rough, open_f)
    assert face_pairs(open_f).shape[0] == n_open == 477
    assert normal_consistency(rough, open_f).item() == pytest.approx(want_open, rel=1e-12)
    # scale-free, batched as a mean, and a spike costs more than a smooth bump
    assert normal_consistency(3 * rough, f).item() == pytest.approx(want, rel=1e-12)
    batch = torch.stack([v, rough])
    assert normal_consistency(batch, f).item() == pytest.approx(0.5 * (normal_consistency(v, f) + want).item())
    spike, bump = v.clone(), v.clone()
    spike[0] *= 1.6
    near = (v @ v[0]) > 0.8  # vertex 0 and its neighbourhood, pushed out together
    bump[near] *= 1.1
    assert normal_consistency(spike, f) > normal_consistency(bump, f) > normal_consistency(v, f)
    v0, f0 = icosphere(0, dtype=torch.float64)  # gradcheck on a rough level-0 sphere
    x = (v0 + 0.1 * torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y: normal_consistency(y, f0), (x,))


def test_manifold_checker_detects_defects():
    v, f = icosphere(1)
    assert is_closed_manifold(v, f)
    # hole
    r = manifold_report(v, f[1:])
    assert r["boundary_edges"] == 3 and not is_closed_manifold(v, f[1:])
    # flipped face -> inconsistent orientation
    f2 = f.clone()
    f2[0] = f2[0].flip(0)
    assert manifold_report(v, f2)["inconsistent_edges"] > 0 and not is_closed_manifold(v, f2)
    # degenerate face
    f3 = torch.cat([f, torch.tensor([[0, 0, 1]])])
    assert not is_closed_manifold(v, f3)
    # non-manifold edge: duplicate a face with reversed orientation
    f4 = torch.cat([f, f[:1].flip(1)])
    assert manifold_report(v, f4)["nonmanifold_edges"] > 0
    # two spheres touching at one vertex (pinch) -> non-manifold vertex, edges fine
    v5 = torch.cat([v, v + torch.tensor([2.0, 0.0, 0.0])])
    f5 = torch.cat([f, f + len(v)])
    assert is_closed_manifold(v5, f5) and not is_closed_manifold(v5, f5, require_single_component=True)
    a = int(torch.argmax(v[:, 0]))  # rightmost vertex of sphere 1
    b = int(torch.argmin(v[:, 0])) + len(v)  # leftmost of sphere 2
    f6 = f5.clone()
    f6[f6 == b] = a
    keep = torch.ones(len(v5), dtype=torch.bool)
    keep[b] = False
    r6 = manifold_report(v5, f6)
    assert r6["nonmanifold_vertices"] == 1 and r6["boundary_edges"] == 0 and r6["nonmanifold_edges"] == 0
    assert not is_closed_manifold(v5, f6, allow_unreferenced=True)
    # unreferenced vertices
    v7 = torch.cat([v, torch.zeros(1, 3)])
    assert not is_closed_manifold(v7, f) and is_closed_manifold(v7, f, allow_unreferenced=True)
    v8, f8, kept = remove_unreferenced_vertices(v7, f)
    assert v8.shape == v.shape and torch.equal(f8, f) and len(kept) == len(v)
    # numpy input
    assert is_closed_manifold(v.numpy(), f.numpy())
