"""Rendered optical flow of a rigidly moving mesh vs the analytic flow."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt
from render_helpers import icosphere, intrinsics, rot

from lasr.render import RasterSettings, render


def _analytic_flow(verts, faces, k0, R, t, k1, h, w):
    """Independent reference (NumPy, float64): for every pixel centre, cast
    the camera ray, intersect it with all triangles, keep the nearest hit X,
    move it rigidly (X' = R X + t) and project it with the second camera."""
    V = verts.numpy()
    T = V[faces.numpy()]  # (F, 3, 3)
    fx, fy, cx, cy = k0.tolist()
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    d = np.stack([(uu - cx) / fx, (vv - cy) / fy, np.ones_like(uu)], -1).reshape(-1, 3)  # rays, z = 1
    # Moller-Trumbore for all (ray, face) pairs
    e1, e2 = T[:, 1] - T[:, 0], T[:, 2] - T[:, 0]
    p = np.cross(d[:, None], e2[None])  # (P, F, 3)
    det = (p * e1[None]).sum(-1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = -T[None, :, 0]  # origin at the camera centre
    a = (s * p).sum(-1) * inv
    q = np.cross(s, e1[None])
    b = (d[:, None] * q).sum(-1) * inv
    dist = (e2[None] * q).sum(-1) * inv
    hit = ok & (a >= 0) & (b >= 0) & (a + b <= 1) & (dist > 0)
    dist = np.where(hit, dist, np.inf)
    j = dist.argmin(1)
    z = dist[np.arange(len(d)), j]
    covered = np.isfinite(z)
    X = d * np.where(covered, z, 0)[:, None]
    X1 = X @ R.numpy().T + t.numpy()
    f1x, f1y, c1x, c1y = k1.tolist()
    u1 = f1x * X1[:, 0] / np.where(covered, X1[:, 2], 1) + c1x
    v1 = f1y * X1[:, 1] / np.where(covered, X1[:, 2], 1) + c1y
    flow = np.stack([u1 - uu.reshape(-1), v1 - vv.reshape(-1)], -1)
    return torch.from_numpy(flow.reshape(h, w, 2)), torch.from_numpy(covered.reshape(h, w))


def test_rigid_motion_flow_matches_analytic():
    h, w = 48, 64  # non-square
    v, f = icosphere(3)
    v = v * torch.tensor([1.0, 0.8, 0.9], dtype=torch.float64) + torch.tensor([0.1, 0.05, 3.0], dtype=torch.float64)
    k0 = intrinsics(h, w, 55.0)
    k1 = k0.clone()
    k1[:, 0:2] *= 1.03  # the camera zooms slightly as well
    R = rot("y", 6.0) @ rot("x", -3.0)
    t = torch.tensor([0.08, -0.05, 0.15], dtype=torch.float64)
    c = v.mean(0)
    t_eff = c - c @ R.T + t  # rotate about the object's centre, then translate: X' = R X + t_eff
    v1 = v @ R.T + t_eff
    settings = RasterSettings((h, w))  # defaults: sigma = 1 px^2, K = 8
    out = render(v[None], f, k0, settings, verts_next=v1[None], cameras_next=k1)
    ref, covered = _analytic_flow(v, f, k0[0], R, t_eff, k1[0], h, w)
    # "inside the object": covered pixels farther than the blur radius from the
    # silhouette (within it the soft blend deliberately mixes rim faces)
    inner = torch.from_numpy(distance_transform_edt(covered.numpy()) > settings.blur_radius)
    diff = int((out.mask[0] != covered).sum())
    assert diff <= 0.005 * int(covered.sum()), diff  # hard masks agree up to round-off on edges
    inner &= out.mask[0]
    err = (out.flow[0] - ref).norm(dim=-1)
    mag = ref.norm(dim=-1)[inner]
    print(f"flow |ref| mean {mag.mean():.2f}px max {mag.max():.2f}px; err mean {err[inner].mean():.4f} "
          f"max {err[inner].max():.4f} (rim incl.: mean {err[covered].mean():.4f}); mask diff {diff}px")
    assert inner.sum() > 500 and mag.mean() > 2.0
    assert err[inner].mean() < 0.05
    assert torch.all(out.flow[0][~out.mask[0] & (out.silhouette[0] < 1e-6)] == 0)


def test_flow_gradient_points_holds_the_surface_points_and_keeps_the_values():
    """``flow_gradient="points"``: the same flow, but its gradient moves the surface points each
    pixel sees rather than sliding the surface under the pixel. Then frame t's gradient is that
    of ``-pi_t(X(beta))`` alone: whatever the motion, the same as with no motion, where it is
    the exact opposite of frame t-prime's (a point moved in t' or moved back in t changes the flow
    alike). The default ("surface") also slides which point the pixel sees, which a motion
    that varies over the surface (a turn) makes count."""
    h, w = 40, 40
    v, f = icosphere(2)
    v = v * torch.tensor([1.0, 0.7, 0.8], dtype=torch.float64) + torch.tensor([0.05, 0.0, 3.0], dtype=torch.float64)
    k = intrinsics(h, w, 45.0)
    v1 = v @ rot("y", 5.0).T + torch.tensor([0.05, 0.02, 0.0], dtype=torch.float64)
    surface = RasterSettings((h, w), sigma=0.5)
    points = replace(surface, flow_gradient="points")
    g = torch.Generator().manual_seed(0)
    upstream = torch.randn(1, h, w, 2, generator=g, dtype=torch.float64)

    def grads(settings, nxt):
        a, b = v.clone()[None].requires_grad_(), nxt.clone()[None].requires_grad_()
        flow = render(a, f, k, settings, verts_next=b).flow
        ga, gb = torch.autograd.grad((flow * upstream).sum(), (a, b))
        return flow.detach(), ga, gb

    fs, _, gbs = grads(surface, v1)
    fp, _, gbp = grads(points, v1)
    assert torch.equal(fs != 0, fp != 0) and torch.allclose(fs, fp, atol=1e-9)  # the same values
    assert torch.allclose(gbs, gbp, atol=1e-12)  # frame t' moves its points either way
    _, ga0, gb0 = grads(points, v)  # no motion
    assert gb0.abs().max() > 1e-3 and torch.allclose(ga0, -gb0, atol=1e-9)
    _, ga, _ = grads(points, v1)
    assert torch.allclose(ga, ga0, atol=1e-9)
    _, gs0, _ = grads(surface, v)
    _, gs, _ = grads(surface, v1)
    assert torch.allclose(gs0, ga0, atol=1e-9)  # without motion there is nothing to slide
    assert (gs - gs0).abs().max() > 0.05 * gs0.abs().max()
    with pytest.raises(ValueError, match="flow_gradient"):
        RasterSettings((h, w), flow_gradient="pixels")


def test_flow_gradient_points_in_a_batch_with_cameras_of_their_own_and_near_the_near_plane():
    """Two frames at once, each with its intrinsics and a zooming next camera, a slanted mesh
    reaching towards ``near`` (where a neighbouring face's plane, carried to a pixel, can meet
    the ray in front of it): the same values, and frame t's gradient still independent of the
    motion and of the next camera."""
    h, w = 36, 44
    v, f = icosphere(2)
    tilt = rot("x", 60.0)
    base = torch.stack([v @ tilt.T * torch.tensor([0.6, 0.6, 1.5], dtype=torch.float64)
                        + torch.tensor([0.05, 0.0, 2.2], dtype=torch.float64),
                        v @ rot("y", 40.0).T * 0.8 + torch.tensor([-0.1, 0.05, 3.0], dtype=torch.float64)])
    k = torch.cat([intrinsics(h, w, 40.0), intrinsics(h, w, 52.0)])
    k_next = k.clone()
    k_next[:, :2] *= torch.tensor([[1.04], [0.97]], dtype=torch.float64)
    moved = torch.stack([base[0] @ rot("y", 6.0).T, base[1] + torch.tensor([0.04, -0.02, 0.1], dtype=torch.float64)])
    surface = RasterSettings((h, w), sigma=5.0, near=0.9)
    points = replace(surface, flow_gradient="points")
    up = torch.randn(2, h, w, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def run(settings, nxt, cams_next):
        a = base.clone().requires_grad_()
        flow = render(a, f, k, settings, verts_next=nxt, cameras_next=cams_next).flow
        return flow.detach(), torch.autograd.grad((flow * up).sum(), a)[0]

    fs, _ = run(surface, moved, k_next)
    fp, ga = run(points, moved, k_next)
    assert (fs != 0).sum() > 200 and torch.equal(fs, fp)
    _, ga0 = run(points, base, k)
    assert ga.abs().max() > 1e-3 and torch.allclose(ga, ga0, atol=1e-9)
