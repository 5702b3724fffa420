"""The compiled CPU rasteriser (Numba) against the vectorised PyTorch path, and
the backend switch.  Both are also checked against the dense oracle in
``test_oracle.py`` and ``test_raster_paths.py``."""

from __future__ import annotations

import pytest
import torch
from render_helpers import soup_scene, sphere_scene

import lasr.render._raster_cpu as compiled
from lasr.render import RasterSettings, blend, rasterize, render
from lasr.render.raster import use_compiled


def _by_face(p2f, *xs):
    key = torch.where(p2f >= 0, p2f, torch.iinfo(torch.long).max)
    order = key.argsort(-1)
    return [torch.gather(x, -1, order) for x in (p2f, *xs)]


@pytest.mark.parametrize("rank", ["hybrid", "weight", "coverage", "depth"])
@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
def test_compiled_matches_vectorised_on_a_soup(rank, sigma):
    """Exact same selection, depths and distances (float64)."""
    verts, faces, k = soup_scene(n_faces=120, batch=3, seed=4, h=33, w=41)
    s = dict(sigma=sigma, faces_per_pixel=6, rank=rank, gamma=2e-3, far=20.0)
    a = rasterize(verts, faces, k, RasterSettings((33, 41), backend="torch", **s))
    b = rasterize(verts, faces, k, RasterSettings((33, 41), backend="numba", **s))
    assert int((a.pix_to_face >= 0).sum(-1).max()) == 6  # the scene truncates
    x = _by_face(a.pix_to_face, a.zbuf, a.dists, a.nearest_edge)
    y = _by_face(b.pix_to_face, b.zbuf, b.dists, b.nearest_edge)
    assert torch.equal(x[0], y[0])
    torch.testing.assert_close(x[1], y[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x[2], y[2], rtol=1e-12, atol=1e-12)
    assert torch.equal(a.mask, b.mask)
    # the nearest edge may differ where two edges are equally near (pixels nearest
    # a vertex, where rounding decides); the distance the blend recomputes from it,
    # hence the silhouette and its gradient, must be the same
    s = RasterSettings((33, 41), **s)
    sil = []
    for fr in (a, b):
        v = verts.clone().requires_grad_()
        out = blend(v, faces, k, fr, s).silhouette
        if sigma > 0:  # (sigma = 0: a hard silhouette, no gradient)
            out.square().sum().backward()
        sil += [out, v.grad]
    torch.testing.assert_close(sil[0], sil[2], rtol=1e-10, atol=1e-10)
    if sigma > 0:
        torch.testing.assert_close(sil[1], sil[3], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_renders_like_vectorised_on_a_sphere(dtype):
    """On a closed mesh, where ranking scores tie exactly (faces sharing the vertex
    nearest to a pixel outside them, with the same clamped depth), the two paths may
    keep different faces in the K-th slot; the silhouette, which depends only on the
    distances, and its gradient still agree.  With K above every pixel's candidate
    count nothing is truncated, and colours and flow agree as well."""
    verts, faces, k = sphere_scene(level=3, batch=2, h=48, w=56)
    verts[1] += torch.tensor([0.15, -0.1, 0.2], dtype=verts.dtype)
    attr = torch.rand(2, verts.shape[1], 3, dtype=verts.dtype, generator=torch.Generator().manual_seed(0))
    # the reference is the vectorised path in float64 (in float32 it ranks in float32,
    # the compiled path in float64, so the compiled float32 render is the closer one)
    # (relative to each output's largest value: the flow gradient reaches ~4e4 here)
    rel = 1e-3 if dtype == torch.float32 else 1e-10
    for K in (8, 128):
        outs = []
        for backend, dt in (("torch", torch.float64), ("numba", dtype)):
            v = verts.to(dt).clone().requires_grad_()
            s = RasterSettings((48, 56), sigma=1.0, faces_per_pixel=K, backend=backend)
            out = render(v, faces, k.to(dt), s, attributes=attr.to(dt), verts_next=v + 0.03)
            loss = out.silhouette.square().sum() + (out.attributes.sum() + out.flow.sum() if K == 128 else 0)
            loss.backward()
            outs.append((out.silhouette, v.grad) + ((out.attributes, out.flow) if K == 128 else ()))
        for x, y in zip(*outs):
            x, y = x.detach(), y.detach()
            torch.testing.assert_close(y.double(), x, rtol=rel, atol=rel * max(1.0, float(x.abs().max())))
    assert int((rasterize(verts, faces, k, RasterSettings((48, 56), sigma=1.0, faces_per_pixel=128)).valid
                ).sum(-1).max()) < 128  # no truncation at K = 128
    assert outs[0][0].max() > 0.99 and outs[0][0].min() < 0.01


def test_compiled_fragments_dtypes_and_padding():
    verts, faces, k = soup_scene(n_faces=20, batch=2, seed=5, dtype=torch.float32)
    s = RasterSettings((20, 28), sigma=0.7, faces_per_pixel=4, backend="numba")
    fr = rasterize(verts, faces, k, s)
    assert fr.pix_to_face.dtype == torch.long and fr.zbuf.dtype == torch.float32
    assert fr.dists.dtype == torch.float32 and fr.nearest_edge.dtype == torch.int8
    v = fr.valid
    assert v.any() and (~v).any()
    assert torch.all(v[..., 1:] <= v[..., :-1])  # valid slots first
    assert torch.all(fr.zbuf[~v] == -1) and torch.all(fr.dists[~v] == -1) and torch.all(fr.nearest_edge[~v] == -1)
    sil = blend(verts, faces, k, fr, s).silhouette
    ref = blend(verts, faces, k, rasterize(verts, faces, k, RasterSettings((20, 28), sigma=0.7, faces_per_pixel=4,
                                                                          backend="torch")), s).silhouette
    torch.testing.assert_close(sil, ref, rtol=1e-5, atol=1e-5)


def test_backend_switch(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_compiled(RasterSettings((4, 4)), cpu)
    assert use_compiled(RasterSettings((4, 4), backend="numba"), cpu)
    assert not use_compiled(RasterSettings((4, 4), backend="torch"), cpu)
    assert not use_compiled(RasterSettings((4, 4)), cuda)  # GPUs take the vectorised path
    with pytest.raises(ValueError, match="CPU only"):
        use_compiled(RasterSettings((4, 4), backend="numba"), cuda)
    monkeypatch.setattr(compiled, "numba", None)  # as if numba were not installed
    assert not use_compiled(RasterSettings((4, 4)), cpu)
    with pytest.raises(ImportError, match="pip install numba"):
        use_compiled(RasterSettings((4, 4), backend="numba"), cpu)
