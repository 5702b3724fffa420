"""Face-centric rasteriser: band / chunk splits, sort paths and awkward faces
against the dense oracle."""

from __future__ import annotations

import pytest
import torch
from render_helpers import fat_soup, intrinsics

import lasr.render.raster as raster
from lasr.render import RasterSettings, blend, choose_bin_size, project_faces, rasterize
from lasr.render.reference import dense_render

H, W = 18, 23


def _by_face(p2f, *xs):
    key = torch.where(p2f >= 0, p2f, torch.iinfo(torch.long).max)
    order = key.argsort(-1)
    return [torch.gather(x, -1, order) for x in (p2f, *xs)]


def _mixed_scene(dtype=torch.float64):
    """Two frames of a soup mixing sub-pixel faces, ordinary ones, a face
    larger than the image, faces crossing the near plane or behind the camera,
    an off-screen face and a degenerate one."""
    g = torch.Generator().manual_seed(7)
    v, f = fat_soup(14, seed=3, dtype=dtype)
    v = v + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    tiny_c = (torch.rand(6, 1, 3, generator=g, dtype=dtype) * 2 - 1) * torch.tensor([0.6, 0.5, 0.3], dtype=dtype)
    tiny = (tiny_c + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
            + 0.004 * torch.randn(6, 3, 3, generator=g, dtype=dtype)).reshape(-1, 3)
    extra = torch.tensor(
        [
            [-9.0, -8.0, 4.0], [9.0, -7.0, 4.2], [0.5, 9.0, 3.9],  # covers the whole image
            [-0.3, -0.2, 2.0], [0.4, 0.1, -0.5], [0.1, 0.5, 2.5],  # crosses the near plane
            [-0.2, 0.1, -2.0], [0.3, 0.1, -2.0], [0.0, 0.4, -2.0],  # behind the camera
            [30.0, 0.0, 3.0], [31.0, 0.0, 3.0], [30.0, 1.0, 3.0],  # off screen
            [0.1, 0.1, 3.0], [0.2, 0.2, 3.0], [0.3, 0.3, 3.0],  # degenerate (collinear)
        ],
        dtype=dtype,
    )
    verts = torch.cat([v, tiny, extra])
    faces = torch.arange(verts.shape[0]).view(-1, 3)
    frames = torch.stack([verts, verts @ torch.tensor([[0.98, -0.2, 0], [0.2, 0.98, 0], [0, 0, 1]], dtype=dtype).T
                          + torch.tensor([0.05, -0.1, 0.2], dtype=dtype)])
    k = intrinsics(H, W, 0.9 * W, 2, dtype=dtype)
    return frames, faces, k


@pytest.mark.parametrize("backend,bin_size,chunk_pairs", [("numba", None, None), ("torch", None, None),
                                                          ("torch", 1, None), ("torch", 5, 40), ("torch", 7, 1),
                                                          ("torch", 64, 300)])
@pytest.mark.parametrize("rank", ["hybrid", "weight", "coverage", "depth"])
def test_mixed_faces_match_oracle(backend, bin_size, chunk_pairs, rank):
    verts, faces, k = _mixed_scene()
    s = RasterSettings((H, W), sigma=0.8, faces_per_pixel=4, rank=rank, gamma=2e-3, far=20.0, near=0.1,
                       bin_size=bin_size, chunk_pairs=chunk_pairs, backend=backend)
    fr = rasterize(verts, faces, k, s)
    ref = dense_render(verts, faces, k, s)
    a = _by_face(fr.pix_to_face, fr.zbuf, fr.dists)
    b = _by_face(ref["pix_to_face"], ref["zbuf"], ref["dists"])
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(a[2], b[2], rtol=1e-9, atol=1e-9)
    # the scene exercises truncation, the huge face and the culled ones
    assert int((fr.pix_to_face >= 0).sum(-1).min()) >= 1  # the huge face reaches every pixel
    assert (fr.pix_to_face >= 0).sum(-1).max() == 4
    culled = torch.tensor([faces.shape[0] - 4, faces.shape[0] - 3, faces.shape[0] - 2, faces.shape[0] - 1])
    assert not torch.isin(fr.pix_to_face, culled).any()
    # the nearest edges give the exact distances: same silhouette as the oracle
    sil = blend(verts, faces, k, fr, s).silhouette
    torch.testing.assert_close(sil, ref["silhouette"], rtol=1e-6, atol=1e-6)


def test_float32_sort_paths_agree(monkeypatch):
    """The packed-key sort (float32) and the two-pass sort select the same faces."""
    verts, faces, k = _mixed_scene(torch.float32)
    # fixed bands (the automatic band height depends on the key width)
    s = RasterSettings((H, W), sigma=0.8, faces_per_pixel=3, far=20.0, near=0.1, bin_size=5, backend="torch")
    a = rasterize(verts, faces, k, s)
    monkeypatch.setattr(raster, "_key_bits", lambda device: 0)  # never fits: two stable sorts
    b = rasterize(verts, faces, k, s)
    x, y = _by_face(a.pix_to_face, a.dists, a.zbuf), _by_face(b.pix_to_face, b.dists, b.zbuf)
    for p, q in zip(x, y):
        assert torch.equal(p, q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("npix", [300, 1 << 19])  # 1 << 19: pixel and candidate bits fill the CPU key
def test_sort_by_pixel_then_score(dtype, index_dtype, npix):
    g = torch.Generator().manual_seed(0)
    m = 5000
    lp = torch.randint(0, npix, (m,), generator=g).to(index_dtype)
    score = torch.randn(m, generator=g).to(dtype) * 10
    score[::7] = 0.0
    score[1::11] = -0.0
    score[2::13] = score[3::13][: score[2::13].shape[0]]  # ties
    score[5] = 3e38
    score[6] = -3e38
    lps, perm = raster._sort_by_pixel_then_score(lp, score, npix)
    assert lps.dtype == perm.dtype == torch.long
    assert torch.equal(lps, lp[perm].long())
    assert torch.equal(perm.sort().values, torch.arange(m))
    s = score[perm]
    key = torch.stack([lps.double(), s.double()], -1)
    assert torch.all((key[1:, 0] > key[:-1, 0]) | ((key[1:, 0] == key[:-1, 0]) & (key[1:, 1] >= key[:-1, 1])))


def test_choose_bin_size():
    verts, faces, k = _mixed_scene()
    s = RasterSettings((H, W))
    tri, _, valid = project_faces(verts, faces, k, s)
    h = choose_bin_size(tri, valid, s)
    assert h >= 1 and h & (h - 1) == 0
    assert h >= 2 * H  # a small image is one band
    assert choose_bin_size(tri, valid, RasterSettings((H, W), bin_size=3)) == 3
    # a wide image gets shorter bands (band pixels and candidates fit the sort key)
    s = RasterSettings((4, 1 << 20))
    h = choose_bin_size(tri, valid, s)
    assert h * (1 << 20) <= 1 << (raster._key_bits(tri.device) + 1)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_empty_band_and_image(backend):
    verts, faces, k = _mixed_scene()
    s = RasterSettings((H, W), bin_size=2, backend=backend)
    # everything behind the camera: no selection at all
    behind = verts.clone()
    behind[..., 2] = -behind[..., 2].abs() - 0.5
    fr = rasterize(behind, faces, k, s)
    assert not (fr.pix_to_face >= 0).any() and torch.all(fr.dists == -1) and torch.all(fr.nearest_edge == -1)
    # only a small face in the second frame: most bands are empty
    small = torch.tensor([[[0.0, 0.0, 3.0], [0.01, 0.0, 3.0], [0.0, 0.01, 3.0]]], dtype=verts.dtype)
    v2 = torch.cat([small + torch.tensor([0.0, 0.0, -10.0], dtype=verts.dtype), small])
    fr = rasterize(v2, torch.tensor([[0, 1, 2]]), k, s)
    ref = dense_render(v2, torch.tensor([[0, 1, 2]]), k, s)
    assert not (fr.pix_to_face[0] >= 0).any() and (fr.pix_to_face[1] >= 0).any()
    assert torch.equal(fr.pix_to_face, ref["pix_to_face"])
