"""``torch.autograd.gradcheck`` of the blend on a few triangles (float64).

Rasterisation runs inside the checked function (it is piecewise constant,
and the finite-difference steps do not change the selection here)."""

from __future__ import annotations

import torch
from render_helpers import intrinsics

from lasr.render import RasterSettings, blend, rasterize

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
