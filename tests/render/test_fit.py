"""The gradients are useful: inverse rendering of simple targets with Adam."""

from __future__ import annotations

import torch
from render_helpers import icosphere, intrinsics, iou

from lasr.render import RasterSettings, SoftRenderer

H, W = 64, 80


def test_fit_sphere_silhouette_from_wrong_translation_and_scale():
    torch.manual_seed(0)
    v, f = icosphere(2, dtype=torch.float32)
    k = intrinsics(H, W, 70.0, dtype=torch.float32)
    r = SoftRenderer(RasterSettings((H, W), sigma=1.0))
    t_true = torch.tensor([0.25, -0.15, 3.2])
    s_true = 0.7
    with torch.no_grad():
        target = r((v * s_true + t_true)[None], f, k).silhouette

    t = torch.tensor([-0.15, 0.2, 3.6], requires_grad=True)  # wrong translation ...
    log_s = torch.tensor(0.2, requires_grad=True)  # ... and scale (1.22 vs 0.7)
    opt = torch.optim.Adam([t, log_s], lr=0.03)

    def sil():
        return r((v * log_s.exp() + t)[None], f, k).silhouette

    start = iou(sil().detach() > 0.5, target > 0.5)
    for _ in range(150):
        opt.zero_grad()
        loss = (sil() - target).square().mean()
        loss.backward()
        opt.step()
    final = iou(sil().detach() > 0.5, target > 0.5)
    print(f"IoU {start:.3f} -> {final:.4f}, t={t.detach().tolist()}, s={log_s.exp().item():.3f}")
    assert start < 0.7
    assert final >= 0.98


def test_fit_vertex_colors_reproduces_target():
    torch.manual_seed(0)
    v, f = icosphere(2, dtype=torch.float32)
    verts = (v + torch.tensor([0.0, 0.0, 3.0]))[None]
    k = intrinsics(H, W, 70.0, dtype=torch.float32)
    r = SoftRenderer(RasterSettings((H, W), sigma=0.5))
    target_colors = 0.5 + 0.5 * torch.stack([v[:, 0], v[:, 1] * v[:, 2], torch.sin(3 * v[:, 0] + v[:, 1])], -1)
    with torch.no_grad():
        out = r(verts, f, k, attributes=target_colors, background=1.0)
    target, mask = out.attributes, out.mask

    colors = torch.full_like(target_colors, 0.5, requires_grad=True)
    opt = torch.optim.Adam([colors], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        img = r(verts, f, k, silhouette=False, attributes=colors, background=1.0).attributes
        loss = (img - target).square().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        img = r(verts, f, k, silhouette=False, attributes=colors, background=1.0).attributes
    err = (img - target).abs()[mask]
    print(f"color fit: mean abs err {err.mean():.2e}, max {err.max():.2e}")
    assert mask.sum() > 500
    assert err.mean() < 5e-3 and err.max() < 5e-2
