"""Shared helpers for the renderer tests: small meshes and cameras.

Local on purpose (``lasr.geometry`` is developed separately)."""

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


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
