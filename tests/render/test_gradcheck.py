"""``torch.autograd.gradcheck`` of the blend on a few triangles (float64).

Rasterisation runs inside the checked function (it is piecewise constant,
and the finite-difference steps do not change the selection here)."""

from __future__ import annotations

import torch
from render_helpers import intrinsics

from lasr.render import RasterSettings, blend, rasterize
from lasr.render.shade import _SegmentDist2, _SoftUnion

H, W = 9, 11


def _scene():
    # three overlapping triangles, mixed windings, at different depths
    v = torch.tensor(
        [
            [-0.50, -0.40, 3.0], [0.45, -0.30, 3.2], [0.00, 0.50, 2.9],  # ccw
            [-0.20, -0.10, 3.6], [0.10, 0.55, 3.5], [0.60, 0.05, 3.7],  # cw
            [-0.65, 0.20, 2.6], [-0.05, 0.35, 2.7], [-0.30, 0.60, 2.5],
        ],
        dtype=torch.float64,
    )[None]
    f = torch.arange(9).view(3, 3)
    k = intrinsics(H, W, 10.0)
    return v, f, k


S = RasterSettings((H, W), sigma=1.5, gamma=0.05, faces_per_pixel=4, far=10.0)


def test_gradcheck_silhouette():
    v, f, k = _scene()

    def fn(verts, kk):
        fr = rasterize(verts.detach(), f, kk.detach(), S)
        return blend(verts, f, kk, fr, S).silhouette

    assert torch.autograd.gradcheck(fn, (v.requires_grad_(), k.requires_grad_()), eps=1e-6, atol=1e-6)


def test_gradcheck_attributes():
    v, f, k = _scene()
    attr = torch.rand(1, 9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def fn(verts, a):
        fr = rasterize(verts.detach(), f, k, S)
        return blend(verts, f, k, fr, S, silhouette=False, attributes=a, background=0.3).attributes

    assert torch.autograd.gradcheck(fn, (v.requires_grad_(), attr.requires_grad_()), eps=1e-6, atol=1e-6)


def test_gradcheck_flow():
    v, f, k = _scene()
    vn = v + torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)
    kn = k.clone()
    kn[:, 0] += 0.5

    def fn(verts, verts_next, k_next):
        fr = rasterize(verts.detach(), f, k, S)
        return blend(verts, f, k, fr, S, silhouette=False, verts_next=verts_next, cameras_next=k_next).flow

    inputs = (v.requires_grad_(), vn.requires_grad_(), kn.requires_grad_())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_gradcheck_segment_distance():
    """The hand-written backward of the pixel-to-segment distance, with the
    closest point inside the segment and clamped to either end, both signs of
    the scale, and empty slots (no gradient)."""
    g = torch.Generator().manual_seed(1)
    ux = torch.randn(7, generator=g, dtype=torch.float64) * 3
    uy = torch.randn(7, generator=g, dtype=torch.float64) * 3
    ia = torch.randint(0, 7, (40, 3), generator=g)
    ib = (ia + torch.randint(1, 7, (40, 3), generator=g)) % 7  # a != b
    px = torch.randn(40, 1, generator=g, dtype=torch.float64) * 4
    py = torch.randn(40, 1, generator=g, dtype=torch.float64) * 4
    scale = torch.where(torch.rand(40, 3, generator=g) < 0.5, 0.7, -0.7).to(torch.float64)
    valid = torch.rand(40, 3, generator=g) < 0.8

    def fn(ux, uy):
        x = _SegmentDist2.apply(ux, uy, ia, ib, px, py, scale, valid)
        return torch.where(valid, x, torch.zeros_like(x))

    ax, ay, bx, by = ux[ia], uy[ia], ux[ib], uy[ib]
    t = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    assert (t < 0).any() and (t > 1).any() and ((t > 0) & (t < 1)).any()
    x = _SegmentDist2.apply(ux, uy, ia, ib, px, py, scale, valid)
    assert torch.isneginf(x[~valid]).all()
    tc = t.clamp(0, 1)
    d2 = (px - ax - tc * (bx - ax)) ** 2 + (py - ay - tc * (by - ay)) ** 2
    torch.testing.assert_close(x[valid], (scale * d2)[valid])
    assert torch.autograd.gradcheck(fn, (ux.requires_grad_(), uy.requires_grad_()), eps=1e-6, atol=1e-6)


def test_gradcheck_soft_union():
    """The hand-written backward of ``1 - prod(1 - sigmoid(x))``, including
    empty (``-inf``) slots, large and tiny probabilities."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64) * 6
    x[::4, 3:] = -torch.inf
    x[1, :] = -40.0  # silhouette ~1e-17: the stable form keeps it
    sil = _SoftUnion.apply(x)
    torch.testing.assert_close(sil, 1 - torch.prod(1 - torch.sigmoid(x), -1), rtol=1e-12, atol=1e-15)
    assert 0 < sil[1] < 1e-16
    mask = torch.isfinite(x)

    def fn(xf):
        return _SoftUnion.apply(torch.where(mask, xf, -torch.inf))

    xf = torch.where(mask, x, torch.zeros_like(x)).requires_grad_()
    assert torch.autograd.gradcheck(fn, (xf,), eps=1e-6, atol=1e-8)
