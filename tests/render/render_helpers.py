"""Helpers for the renderer tests: small meshes, scenes, cameras, IoU.

Local on purpose (``lasr.geometry`` is developed separately); the module name
is unique so it cannot clash with other test packages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def icosphere(level: int = 2, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere: ``(V, 3)`` vertices, ``(F, 3)`` faces, 20 * 4**level faces,
    outward (counter-clockwise seen from outside) winding."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
         [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = nf
    return torch.tensor(np.stack(verts), dtype=dtype), torch.tensor(f, dtype=torch.long)


def random_mesh(n_faces: int, seed: int = 0, spread: float = 0.6, size: float = 0.35, dtype=torch.float64):
    """Triangle soup: ``n_faces`` independent random triangles around the
    origin (random winding, mutual overlaps), ``(3F, 3)`` vertices."""
    g = torch.Generator().manual_seed(seed)
    centers = (torch.rand(n_faces, 1, 3, generator=g, dtype=dtype) * 2 - 1) * spread
    offs = (torch.rand(n_faces, 3, 3, generator=g, dtype=dtype) * 2 - 1) * size
    verts = (centers + offs).reshape(-1, 3)
    faces = torch.arange(3 * n_faces).reshape(n_faces, 3)
    return verts, faces


def fat_soup(n_faces: int, seed: int = 0, spread: float = 0.7, size: float = 0.25, dtype=torch.float64):
    """Triangle soup of well-shaped triangles (angles jittered around 60
    degrees, random in-plane rotation, tilt up to ~45 degrees, random winding,
    mutual overlaps): ``(3F, 3)`` vertices, ``(F, 3)`` faces."""
    g = torch.Generator().manual_seed(seed)
    c = (torch.rand(n_faces, 1, 3, generator=g, dtype=dtype) * 2 - 1) * spread
    th = torch.rand(n_faces, 1, generator=g, dtype=dtype) * 2 * math.pi
    th = th + torch.arange(3, dtype=dtype) * 2 * math.pi / 3 + 0.3 * torch.randn(n_faces, 3, generator=g, dtype=dtype)
    rad = size * (0.5 + torch.rand(n_faces, 1, generator=g, dtype=dtype))
    tilt = 0.8 * (torch.rand(n_faces, 3, generator=g, dtype=dtype) * 2 - 1)
    pts = torch.stack([th.cos(), th.sin(), torch.zeros_like(th)], -1) * rad[..., None]
    pts[..., 2] = (pts[..., :2] * tilt[:, None, :2]).sum(-1)
    flip = torch.rand(n_faces, generator=g) < 0.5
    pts[flip] = pts[flip].flip(1)
    verts = (c + pts).reshape(-1, 3)
    return verts, torch.arange(3 * n_faces).reshape(n_faces, 3)


def intrinsics(h: int, w: int, f: float, batch: int = 1, dtype=torch.float64) -> torch.Tensor:
    """``(batch, 4)`` intrinsics with the principal point at the image centre."""
    return torch.tensor([f, f, (w - 1) / 2.0, (h - 1) / 2.0], dtype=dtype).expand(batch, 4).clone()


def rot(axis: str, deg: float, dtype=torch.float64) -> torch.Tensor:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        m = [[1, 0, 0], [0, c, -s], [0, s, c]]
    elif axis == "y":
        m = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    else:
        m = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    return torch.tensor(m, dtype=dtype)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def soup_scene(n_faces: int = 14, batch: int = 2, seed: int = 0, h: int = 20, w: int = 28, dtype=torch.float64):
    """Random triangle soup (random windings, overlaps) seen by ``batch``
    slightly different cameras: ``verts (B, 3F, 3)``, ``faces (F, 3)``,
    intrinsics ``(B, 4)``."""
    v, f = random_mesh(n_faces, seed=seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 100)
    frames = []
    for b in range(batch):
        shift = torch.tensor([0.05 * b, -0.03 * b, 3.0 + 0.2 * b], dtype=dtype)
        frames.append(v * (1.0 + 0.1 * b) + shift + 0.01 * torch.randn(v.shape, generator=g, dtype=dtype))
    verts = torch.stack(frames)
    k = intrinsics(h, w, 0.9 * w, batch, dtype=dtype)
    k[:, 0] *= 1.05  # fx != fy
    return verts, f, k


def sphere_scene(level: int = 2, batch: int = 1, h: int = 48, w: int = 64, z: float = 3.0, dtype=torch.float64):
    v, f = icosphere(level, dtype=dtype)
    verts = (v + torch.tensor([0.0, 0.0, z], dtype=dtype)).expand(batch, -1, -1).clone()
    k = intrinsics(h, w, 0.8 * w, batch, dtype=dtype)
    return verts, f, k


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)
