"""Small mesh builders shared by tests (independent of the project's geometry code,
so they can serve as oracles for it)."""

from __future__ import annotations

import numpy as np


def uv_sphere(n_lat: int = 14, n_lon: int = 24, radii=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV sphere (an ellipsoid with ``radii``): vertices (V,3), outward-wound faces (F,3)."""
    verts = [(0.0, 0.0, 1.0)]
    for i in range(1, n_lat):
        th = np.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * np.pi * j / n_lon
            verts.append((np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)))
    verts.append((0.0, 0.0, -1.0))

    def ring(i: int, j: int) -> int:
        return 1 + (i - 1) * n_lon + (j % n_lon)

    faces = [(0, ring(1, j), ring(1, j + 1)) for j in range(n_lon)]
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [(a, c, b), (b, c, d)]
    last = len(verts) - 1
    faces += [(last, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)) for j in range(n_lon)]
    return np.array(verts) * np.asarray(radii, float), np.array(faces, dtype=np.int64)
