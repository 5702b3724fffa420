import math

import pytest
import torch

from lasr.geometry.mesh import icosphere
from lasr.geometry.rotations import axis_angle_to_matrix, make_transform, quaternion_to_matrix, random_rotations
from lasr.model.skinning import (
    GaussianBones,
    bone_mahalanobis,
    decompose_about_pivots,
    fit_bone_transforms,
    gaussian_skinning_weights,
    init_bones_from_kmeans,
    lbs,
    transforms_about_pivots,
    weighted_kabsch,
)


@pytest.fixture(scope="module")
def shape():
    v, f = icosphere(3, dtype=torch.float64)
    return v * torch.tensor([1.5, 0.7, 0.5], dtype=torch.float64), f


def _random_motion(t, b, seed=0, max_angle=0.5, max_trans=0.1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    aa = (torch.rand(t, b, 3, generator=g, dtype=dtype) * 2 - 1) * max_angle
    tr = (torch.rand(t, b, 3, generator=g, dtype=dtype) * 2 - 1) * max_trans
    return axis_angle_to_matrix(aa), tr


def test_weights_positive_normalized_and_match_formula(shape):
    v, _ = shape
    c, q, lp = init_bones_from_kmeans(v, 8)
    assert c.shape == (8, 3) and q.shape == (8, 4) and lp.shape == (8, 3)
    assert torch.equal(q, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64).expand(8, 4))
    w = GaussianBones(c, q, lp)(v)
    assert w.shape == (len(v), 8)
    assert (w > 0).all() and torch.allclose(w.sum(-1), torch.ones(len(v), dtype=torch.float64))
    # explicit formula with a non-trivial rotation: m = (x-c)^T R diag(exp l) R^T (x-c)
    rot = random_rotations(8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = bone_mahalanobis(v, c, rot, lp)
    d = v[:, None] - c
    cov_inv = rot @ torch.diag_embed(lp.exp()) @ rot.transpose(-1, -2)
    ref = torch.einsum("vbi,bij,vbj->vb", d, cov_inv, d)
    assert torch.allclose(m, ref)
    w_rot = gaussian_skinning_weights(v, c, rot, lp, temperature=10.0)
    assert torch.allclose(w_rot, torch.softmax(-10.0 * ref, dim=-1))
    # each vertex mostly belongs to a nearby bone: the dominant bone is its k-means cluster's
    dom = w.argmax(-1)
    nearest = torch.cdist(v, c).argmin(-1)
    assert (dom == nearest).double().mean() > 0.8


def test_log_precision_init_from_cluster_spread():
    # one tight and one wide isotropic cluster, far apart
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([0.05 * torch.randn(400, 3, generator=g), 5 + 0.5 * torch.randn(400, 3, generator=g)]).double()
    c, _, lp = init_bones_from_kmeans(pts, 2, temperature=10.0)
    order = c[:, 0].argsort()
    sigma = (1.0 / (2 * 10.0 * lp[order].exp())).sqrt()  # invert l = -log(2 T sigma^2)
    assert torch.allclose(sigma[0], torch.full((3,), 0.05, dtype=torch.float64), rtol=0.15)
    assert torch.allclose(sigma[1], torch.full((3,), 0.5, dtype=torch.float64), rtol=0.15)


def test_identity_transforms_return_rest_exactly(shape):
    v, _ = shape
    bones = GaussianBones.from_kmeans(v, 6)
    w = bones(v)
    eye = torch.eye(4, dtype=torch.float64).expand(3, 6, 4, 4)
    out = lbs(v, w, eye)
    assert out.shape == (3, len(v), 3)
    assert torch.equal(out, v.expand(3, -1, -1))
    ident = transforms_about_pivots(torch.eye(3, dtype=torch.float64).expand(2, 6, 3, 3), torch.zeros(2, 6, 3, dtype=torch.float64), bones.centers.detach())
    assert torch.equal(ident, torch.eye(4, dtype=torch.float64).expand(2, 6, 4, 4))
    assert torch.equal(lbs(v.float(), w.float(), ident.float()), v.float().expand(2, -1, -1))


def test_single_bone_rigid_motion_is_exact(shape):
    v, _ = shape
    rot = random_rotations(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    t = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    # all weight on bone 1 of 3
    w = torch.zeros(len(v), 3, dtype=torch.float64)
    w[:, 1] = 1.0
    g = torch.eye(4, dtype=torch.float64).repeat(1, 3, 1, 1)
    g[0, 1] = make_transform(rot, t)
    g[0, 0, :3, 3] = 5.0  # other bones move but carry no weight
    out = lbs(v, w, g)[0]
    assert torch.allclose(out, v @ rot.T + t, atol=1e-12)
    # same with an actual single Gaussian bone (weights are then exactly 1)
    bones = GaussianBones.from_kmeans(v, 1)
    w1 = bones(v)
    assert torch.equal(w1, torch.ones_like(w1))
    out1 = lbs(v, w1, make_transform(rot, t)[None, None])[0]
    assert torch.allclose(out1, v @ rot.T + t, atol=1e-12)
    # rotation about a pivot keeps the pivot fixed
    p = torch.tensor([[0.2, 0.1, -0.3]], dtype=torch.float64)
    gp = transforms_about_pivots(rot[None], torch.zeros(1, 3, dtype=torch.float64), p)
    assert torch.allclose(gp[0, :3, :3] @ p[0] + gp[0, :3, 3], p[0])
    r2, t2 = decompose_about_pivots(gp, p)
    assert torch.allclose(r2, rot[None]) and torch.allclose(t2, torch.zeros(1, 3, dtype=torch.float64), atol=1e-12)


def test_lbs_per_frame_weights_and_blend(shape):
    v, _ = shape
    w = torch.softmax(torch.randn(len(v), 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    r, t = _random_motion(2, 2, seed=3)
    g = make_transform(r, t)
    ref = torch.einsum("vb,tbvi->tvi", w, torch.einsum("tbij,vj->tbvi", r, v) + t[:, :, None])
    assert torch.allclose(lbs(v, w, g), ref, atol=1e-12)
    assert torch.allclose(lbs(v.expand(2, -1, -1), w.expand(2, -1, -1), g), ref, atol=1e-12)


def test_weighted_kabsch_recovers_rigid_motion():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(4, 50, 3, generator=g, dtype=torch.float64)
    rot = random_rotations(4, generator=g, dtype=torch.float64)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dst = src @ rot.transpose(-1, -2) + t[:, None]
    w = torch.rand(4, 50, generator=g, dtype=torch.float64)
    r2, t2 = weighted_kabsch(src, dst, w)
    assert torch.allclose(r2, rot, atol=1e-10) and torch.allclose(t2, t, atol=1e-10)
    # reflection case handled: det stays +1 even for planar data
    flat = src.clone()
    flat[..., 2] = 0
    r3, _ = weighted_kabsch(flat, flat @ rot.transpose(-1, -2), w)
    assert torch.allclose(torch.linalg.det(r3), torch.ones(4, dtype=torch.float64))


def test_refit_recovers_lbs_transforms(shape):
    v, _ = shape
    bones = GaussianBones.from_kmeans(v, 10)
    w = bones(v).detach()
    r, t = _random_motion(6, 10, seed=5, max_angle=0.6, max_trans=0.2)
    g = transforms_about_pivots(r, t, bones.centers.detach())
    target = lbs(v, w, g)
    g_fit = fit_bone_transforms(v, w, target)
    assert g_fit.shape == (6, 10, 4, 4)
    assert (g_fit - g).abs().max() < 1e-4
    assert (lbs(v, w, g_fit) - target).abs().max() < 1e-6
    # float32 inputs work as well
    g32 = fit_bone_transforms(v.float(), w.float(), target.float())
    assert g32.dtype == torch.float32 and (g32.double() - g).abs().max() < 1e-3
    # the initial per-bone Kabsch alone is not exact with soft weights: GN matters
    g_k = fit_bone_transforms(v, w, target, iters=0)
    assert (g_k - g).abs().max() > 1e-3


def test_refit_holds_a_weak_bone_still(shape):
    """A bone weighing almost nothing (its centre left the surface) is no lever: fitted on
    its own, Levenberg-Marquardt moved such a bone ~1700 shape radii to nudge its few
    vertices (the camel's refine stage). It moves with the bone it shares vertices with."""
    v, _ = shape
    bones = GaussianBones.from_kmeans(v, 10)
    w = bones(v).detach()
    # an 11th bone far off the surface: a few vertices carry ~1e-6 of its weight each
    far = torch.zeros(len(v), 1, dtype=v.dtype)
    tip = v[:, 0].argsort(descending=True)[:5]
    far[tip, 0] = 1e-6
    w = torch.cat([w * (1 - far), far], 1)
    r, t = _random_motion(4, 11, seed=3, max_angle=0.5, max_trans=0.1)
    target = lbs(v, w, transforms_about_pivots(r, t, torch.cat([bones.centers.detach(), v[tip].mean(0, keepdim=True)])))
    noise = 0.01 * torch.randn(target.shape, generator=torch.Generator().manual_seed(0), dtype=v.dtype)
    g = fit_bone_transforms(v, w, target + noise)
    assert g[..., :3, 3].norm(dim=-1).max() < 3.0  # the shape is 1.5 across; unbounded before
    strong = w[tip, :10].sum(0).argmax()
    assert torch.allclose(g[:, 10], g[:, strong])
    # it changes nothing the strong bones fit: the residual is the noise's
    assert (lbs(v, w, g) - target - noise).square().sum(-1).mean().sqrt() < 0.02


def test_gradcheck_weights_and_lbs():
    v, _ = icosphere(0, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    c = (0.5 * torch.randn(3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    q = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    lp = (0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    x = v.clone().requires_grad_(True)

    def weights_fn(x, c, q, lp):
        return gaussian_skinning_weights(x, c, quaternion_to_matrix(q), lp, temperature=2.0)

    assert torch.autograd.gradcheck(weights_fn, (x, c, q, lp), fast_mode=True)
    aa = (0.4 * torch.randn(2, 3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    tr = (0.1 * torch.randn(2, 3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)

    def lbs_fn(x, c, q, lp, aa, tr):
        w = weights_fn(x, c, q, lp)
        gt = transforms_about_pivots(axis_angle_to_matrix(aa), tr, c)
        return lbs(x, w, gt)

    assert torch.autograd.gradcheck(lbs_fn, (x, c, q, lp, aa, tr), fast_mode=True)
    # zero-angle bone rotations keep finite gradients
    aa0 = torch.zeros(1, 3, 3, dtype=torch.float64, requires_grad=True)
    tr0 = torch.zeros(1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lbs_fn, (x, c, q, lp, aa0, tr0), fast_mode=True)
    assert math.isfinite(lbs_fn(x, c, q, lp, aa0, tr0).sum().item())


def test_closed_form_normal_equations_match_dense_jacobian():
    from lasr.geometry.rotations import skew
    from lasr.model.skinning import _lbs_normal_equations

    g = torch.Generator().manual_seed(0)
    nv, nb, nt = 15, 4, 2
    x = torch.randn(nv, 3, generator=g, dtype=torch.float64)
    w = torch.softmax(torch.randn(nv, nb, generator=g, dtype=torch.float64), -1)
    rot = random_rotations(nt * nb, generator=g, dtype=torch.float64).reshape(nt, nb, 3, 3)
    res = torch.randn(nt, nv, 3, generator=g, dtype=torch.float64)
    jtj, jtr = _lbs_normal_equations(x, w, rot, res)
    eye = torch.eye(3, dtype=torch.float64)
    j_rot = -w[None, :, :, None, None] * skew(torch.einsum("tbij,vj->tvbi", rot, x))
    j_tr = (w[None, :, :, None, None] * eye).expand_as(j_rot)
    jac = torch.cat([j_rot, j_tr], -1).permute(0, 1, 3, 2, 4).reshape(nt, nv * 3, nb * 6)
    assert torch.allclose(jtj, jac.transpose(1, 2) @ jac, atol=1e-12)
    assert torch.allclose(jtr, jac.transpose(1, 2) @ res.reshape(nt, -1, 1), atol=1e-12)
    # and the Jacobian itself is the derivative of lbs under R <- exp(w) R, t <- t + d
    t = torch.randn(nt, nb, 3, generator=g, dtype=torch.float64)
    step = 1e-6 * torch.randn(nt, nb, 6, generator=g, dtype=torch.float64)
    base = lbs(x, w, make_transform(rot, t))
    moved = lbs(x, w, make_transform(axis_angle_to_matrix(step[..., :3]) @ rot, t + step[..., 3:]))
    lin = (jac @ step.reshape(nt, -1, 1)).reshape(nt, nv, 3)
    assert torch.allclose(moved - base, lin, atol=1e-11)


def _two_legs_under_a_body():
    """Points of a body (an ellipsoid) and two legs hanging close to its mirror plane x = 0."""
    g = torch.Generator().manual_seed(0)
    body = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    body = body / body.norm(dim=-1, keepdim=True) * torch.tensor([0.4, 0.3, 1.0], dtype=torch.float64)
    t = torch.rand(300, generator=g, dtype=torch.float64)
    a = torch.rand(300, generator=g, dtype=torch.float64) * 2 * math.pi
    leg = torch.stack([0.12 + 0.05 * a.cos(), -0.3 - 0.8 * t, 0.05 * a.sin()], -1)  # x in [0.07, 0.17]
    return torch.cat([body, leg, leg * torch.tensor([-1.0, 1, 1], dtype=torch.float64)])


@pytest.mark.parametrize("num_bones", [8, 9])
def test_mirrored_bones_come_in_pairs_with_mirrored_weights(num_bones):
    x = _two_legs_under_a_body()
    c, q, lp = init_bones_from_kmeans(x, num_bones, mirror_axis=0)
    pairs = num_bones // 2
    flip = torch.tensor([-1.0, 1, 1], dtype=torch.float64)
    assert torch.equal(c[pairs:2 * pairs], c[:pairs] * flip) and (c[:pairs, 0] > 0).all()
    assert torch.equal(lp[pairs:2 * pairs], lp[:pairs]) and torch.equal(q[pairs:2 * pairs], q[:pairs])
    if num_bones % 2:
        assert c[-1, 0] == 0  # the odd one out stands on the plane
    # the weights of a point's mirror image are the point's weights with each pair swapped
    swap = torch.cat([torch.arange(pairs, 2 * pairs), torch.arange(pairs), torch.arange(2 * pairs, num_bones)])
    w = GaussianBones(c, q, lp)(x)
    assert torch.allclose(GaussianBones(c, q, lp)(x * flip), w[:, swap])


def test_mirrored_bones_give_each_leg_near_the_plane_its_own_bones():
    x = _two_legs_under_a_body()
    left, right = x[2000:2300], x[2300:]
    def shared(c, q, lp):  # share of leg points whose bone also dominates points of the other leg
        bl, br = GaussianBones(c, q, lp)(left).argmax(-1), GaussianBones(c, q, lp)(right).argmax(-1)
        both = set(bl.tolist()) & set(br.tolist())
        return sum(int((b == k).sum()) for b in (bl, br) for k in both) / 600
    assert shared(*init_bones_from_kmeans(x, 8, mirror_axis=0)) == 0
    assert shared(*init_bones_from_kmeans(x, 8)) > 0.5  # plain k-means: one bone across both legs
