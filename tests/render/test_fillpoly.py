"""As sigma -> 0 the soft silhouette becomes a hard polygon fill: compare
with an independent rasteriser (OpenCV ``fillPoly``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from render_helpers import fat_soup, icosphere, intrinsics, iou, rot

from lasr.render import RasterSettings, render

SHIFT = 8  # fillPoly fixed-point bits: sub-pixel vertex positions


def _fillpoly(verts: torch.Tensor, faces: torch.Tensor, k: torch.Tensor, h: int, w: int, ss: int = 8) -> np.ndarray:
    """Union of the projected triangles filled by OpenCV.

    ``fillPoly`` also fills every pixel its polygon outline touches, which
    inflates a shape by about half a pixel; to compare with pixel-centre
    sampling we fill at ``ss`` times the resolution (pixel ``(u, v)`` covers
    ``[u - 0.5, u + 0.5]`` in our convention, i.e. ``ss`` fine pixels), pool
    the coverage back and threshold it at one half.
    """
    v = verts.detach().double().numpy()
    fx, fy, cx, cy = k[0].tolist()
    uv = np.stack([fx * v[:, 0] / v[:, 2] + cx, fy * v[:, 1] / v[:, 2] + cy], -1)
    fine = (uv + 0.5) * ss - 0.5  # pixel centres of the fine grid at integers too
    img = np.zeros((h * ss, w * ss), np.uint8)
    pts = np.round(fine[faces.numpy()] * (1 << SHIFT)).astype(np.int32)  # (F, 3, 2)
    for tri in pts:  # one call per triangle: a multi-contour fillPoly would XOR overlaps
        cv2.fillPoly(img, [tri], 1, lineType=cv2.LINE_8, shift=SHIFT)
    cover = img.reshape(h, ss, w, ss).mean(axis=(1, 3))
    return cover > 0.5


@pytest.mark.parametrize("mesh", ["icosphere", "bumpy", "soup"])
def test_sharp_silhouette_matches_fillpoly(mesh):
    h, w = 120, 160
    if mesh == "icosphere":
        v, f = icosphere(3)
        v = v @ rot("x", 20).T @ rot("y", 30).T * torch.tensor([1.0, 0.7, 0.9], dtype=torch.float64)
        v = v + torch.tensor([0.1, -0.05, 3.0], dtype=torch.float64)
    elif mesh == "bumpy":  # random radial noise, random rotation
        g = torch.Generator().manual_seed(3)
        v, f = icosphere(2)
        v = v * (1 + 0.25 * torch.rand(v.shape[0], 1, generator=g, dtype=torch.float64))
        v = v @ rot("z", 40).T @ rot("x", -25).T + torch.tensor([-0.1, 0.1, 3.2], dtype=torch.float64)
    else:  # triangle soup: random windings, overlaps, depths
        v, f = fat_soup(30, seed=7, size=0.4)
        v = v + torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
    k = intrinsics(h, w, 100.0)
    s = RasterSettings((h, w), sigma=1e-4, faces_per_pixel=8)
    sil = render(v[None], f, k, s).silhouette[0]
    ref = _fillpoly(v, f, k, h, w)
    score = iou(sil > 0.5, torch.from_numpy(ref))
    print(f"IoU({mesh}) = {score:.4f}")
    assert score >= 0.99, score
    assert ref.sum() > 2000  # the object is not trivially small
