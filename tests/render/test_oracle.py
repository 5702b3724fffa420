"""Fast path vs the dense every-pixel-every-face oracle (float64)."""

from __future__ import annotations

import pytest
import torch
from render_helpers import soup_scene, sphere_scene

from lasr.render import RasterSettings, blend, rasterize
from lasr.render.reference import dense_render

TOL = dict(rtol=1e-5, atol=1e-5)


def _by_face(p2f, *xs):
    """Sort the K slots of every pixel by face index (the ranking score can tie,
    e.g. the best-weight and best-coverage faces both score 0 in "hybrid")."""
    key = torch.where(p2f >= 0, p2f, torch.iinfo(torch.long).max)
    order = key.argsort(-1)
    return [torch.gather(x, -1, order) for x in (p2f, *xs)]


def _check_fragments(fr, ref):
    a = _by_face(fr.pix_to_face, fr.zbuf, fr.dists)
    b = _by_face(ref["pix_to_face"], ref["zbuf"], ref["dists"])
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a[2], b[2], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "bin_size,rank",
    [(1, "hybrid"), (3, "hybrid"), (4, "hybrid"), (8, "hybrid"), (None, "hybrid"), (4, "weight"),
     (None, "weight"), (4, "coverage"), (None, "depth")],
)
@pytest.mark.parametrize("K", [3, 8])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_rasterize_matches_oracle(bin_size, rank, K, backend):
    verts, faces, k = soup_scene(n_faces=16, batch=2, seed=1)
    s = RasterSettings((20, 28), sigma=0.7, faces_per_pixel=K, bin_size=bin_size, rank=rank, gamma=2e-3, far=20.0,
                       backend=backend)
    fr = rasterize(verts, faces, k, s)
    _check_fragments(fr, dense_render(verts, faces, k, s))
    # K = 3 really truncates: some pixel has more candidates than slots
    if K == 3:
        many = dense_render(verts, faces, k, RasterSettings((20, 28), sigma=0.7, faces_per_pixel=16))
        assert int((many["pix_to_face"] >= 0).sum(-1).max()) > 3


def test_fragments_invariants():
    verts, faces, k = soup_scene(n_faces=16, batch=2, seed=2)
    s = RasterSettings((20, 28), sigma=0.7, faces_per_pixel=5)
    fr = rasterize(verts, faces, k, s)
    v = fr.pix_to_face >= 0
    # valid slots first, padding as documented
    assert torch.all(v[..., 1:] <= v[..., :-1])
    assert torch.all(fr.zbuf[~v] == -1) and torch.all(fr.dists[~v] == -1) and torch.all(fr.nearest_edge[~v] == -1)
    assert fr.pix_to_face.dtype == torch.long and fr.pix_to_face.shape == (2, 20, 28, 5)
    assert torch.all(fr.dists[v] <= s.blur_radius2 * 10)  # only faces within the blur radius...
    assert torch.all((fr.dists[v] >= 0) | (-fr.dists[v] <= s.blur_radius2 + 1e-9))


@pytest.mark.parametrize("sigma", [0.3, 2.0])
def test_blend_outputs_and_gradients_match_oracle(sigma):
    verts, faces, k = soup_scene(n_faces=12, batch=2, seed=3)
    s = RasterSettings((20, 28), sigma=sigma, gamma=3e-3, faces_per_pixel=6, far=20.0)
    g = torch.Generator().manual_seed(0)
    attr = torch.rand(2, verts.shape[1], 3, generator=g, dtype=torch.float64)
    vnext = verts + 0.05 * torch.randn(verts.shape, generator=g, dtype=torch.float64)
    knext = k.clone()
    knext[:, 2] += 0.7
    leaves = [verts.clone().requires_grad_(), attr.clone().requires_grad_(), vnext.clone().requires_grad_(),
              k.clone().requires_grad_(), knext.clone().requires_grad_()]
    V, A, VN, KK, KN = leaves

    fr = rasterize(V.detach(), faces, KK.detach(), s)
    out = blend(V, faces, KK, fr, s, attributes=A, background=0.25, verts_next=VN, cameras_next=KN)
    ref = dense_render(V, faces, KK, s, attributes=A, background=0.25, verts_next=VN, cameras_next=KN)
    assert out.silhouette.shape == (2, 20, 28) and out.attributes.shape == (2, 20, 28, 3)
    assert out.flow.shape == (2, 20, 28, 2)
    for name in ("silhouette", "attributes", "flow"):
        a, b = getattr(out, name), ref[name]
        torch.testing.assert_close(a, b, **TOL)
        w = torch.randn(a.shape, generator=g, dtype=torch.float64)
        ga = torch.autograd.grad((a * w).sum(), leaves, retain_graph=True, allow_unused=True)
        gb = torch.autograd.grad((b * w).sum(), leaves, retain_graph=True, allow_unused=True)
        nonzero = 0
        for x, y in zip(ga, gb):
            if y is None or x is None:
                assert (x is None or not x.any()) and (y is None or not y.any())
                continue
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5 * max(1.0, float(y.abs().max())))
            nonzero += int(y.abs().max() > 0)
        assert nonzero >= 1
    # hard mask = pixel centre inside some selected face
    torch.testing.assert_close(out.mask, ((ref["pix_to_face"] >= 0) & (ref["dists"] >= 0)).any(-1))


def test_hard_mode_matches_oracle():
    verts, faces, k = soup_scene(n_faces=12, batch=1, seed=4)
    s = RasterSettings((20, 28), sigma=0.0, faces_per_pixel=4)
    fr = rasterize(verts, faces, k, s)
    _check_fragments(fr, ref := dense_render(verts, faces, k, s))
    sil = blend(verts, faces, k, fr, s).silhouette
    torch.testing.assert_close(sil, ref["silhouette"])
    assert set(sil.unique().tolist()) <= {0.0, 1.0}


def test_sphere_matches_oracle():
    # a closed mesh (shared vertices) with K large enough that nothing is truncated
    verts, faces, k = sphere_scene(level=1, h=24, w=30)
    verts = verts.clone().requires_grad_()
    s = RasterSettings((24, 30), sigma=0.5, faces_per_pixel=24)
    fr = rasterize(verts.detach(), faces, k, s)
    ref = dense_render(verts, faces, k, s)
    assert int((ref["pix_to_face"] >= 0).sum(-1).max()) < 24
    a = torch.sort(fr.pix_to_face, -1).values
    b = torch.sort(ref["pix_to_face"], -1).values
    assert torch.equal(a, b)
    sil = blend(verts, faces, k, fr, s).silhouette
    torch.testing.assert_close(sil, ref["silhouette"], **TOL)
    ga = torch.autograd.grad(sil.square().sum(), verts)[0]
    gb = torch.autograd.grad(ref["silhouette"].square().sum(), verts)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5 * float(gb.abs().max()))


def test_float32_close_to_float64():
    verts, faces, k = soup_scene(n_faces=16, batch=2, seed=5)
    s = RasterSettings((20, 28), sigma=0.7, faces_per_pixel=8)
    a = blend(verts, faces, k, rasterize(verts, faces, k, s), s).silhouette
    v32, k32 = verts.float(), k.float()
    b = blend(v32, faces, k32, rasterize(v32, faces, k32, s), s).silhouette
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, rtol=0, atol=1e-4)
