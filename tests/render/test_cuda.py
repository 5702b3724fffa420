"""GPU path: same results as the CPU path (skipped without CUDA)."""

from __future__ import annotations

import torch
from render_helpers import requires_cuda, soup_scene, sphere_scene

from lasr.render import RasterSettings, blend, rasterize, render


@requires_cuda
def test_cuda_matches_cpu():
    verts, faces, k = sphere_scene(level=3, batch=2, h=40, w=52)
    verts[1] += torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    vn = verts + 0.05
    attr = torch.rand(2, verts.shape[1], 3, dtype=torch.float64)
    s = RasterSettings((40, 52), backend="torch")  # the same algorithm on both devices
    cpu = render(verts, faces, k, s, attributes=attr, verts_next=vn)
    vc = verts.cuda().requires_grad_()
    gpu = render(vc, faces.cuda(), k.cuda(), s, attributes=attr.cuda(), verts_next=vn.cuda())
    for a, b in ((cpu.silhouette, gpu.silhouette), (cpu.attributes, gpu.attributes), (cpu.flow, gpu.flow)):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=1e-6)
    gpu.silhouette.sum().backward()
    assert torch.isfinite(vc.grad).all()


@requires_cuda
def test_cuda_fragments_match_cpu_float32():
    verts, faces, k = soup_scene(n_faces=40, batch=2, seed=3, dtype=torch.float32)
    s = RasterSettings((20, 28), faces_per_pixel=4, backend="torch")  # the same algorithm on both devices
    a = rasterize(verts, faces, k, s)
    b = rasterize(verts.cuda(), faces.cuda(), k.cuda(), s)
    sa, sb = blend(verts, faces, k, a, s).silhouette, blend(verts.cuda(), faces.cuda(), k.cuda(), b, s).silhouette
    torch.testing.assert_close(sb.cpu(), sa, rtol=1e-4, atol=1e-4)
