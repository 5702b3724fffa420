"""Wavefront OBJ meshes: the one reader and writer of the project.

Written: ``v x y z [r g b]`` lines (optional per-vertex colours, the common extension)
and 1-based ``f`` lines. Read: ``v`` lines (colours when every vertex has them), ``f``
lines with ``i``, ``i/vt``, ``i//vn`` or ``i/vt/vn`` tokens and negative (relative)
indices; polygons are fan-triangulated ``(0, i, i+1)``; other statements are ignored.

trimesh reads OBJ too, but quantises vertex colours to 8 bits and may merge or reorder
vertices; the fit's files must round-trip exactly and keep their vertex order (the
meshes of a clip share one topology), so these few lines are our own.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

__all__ = ["write_obj", "read_obj"]


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def write_obj(path: str | os.PathLike, verts, faces, colors=None, digits: Optional[int] = None,
              comment: str = "written by lasr") -> None:
    """Write a mesh.

    Args:
        verts: ``(V, 3)`` array or tensor; faces: ``(F, k)`` 0-based indices, k >= 3.
        colors: optional ``(V, 3)`` floats.
        digits: decimals per coordinate; None writes the shortest string that reads back
            to the same float64 (so float32 and float64 data round-trip bit-exactly).
    """
    v = _numpy(verts).astype(np.float64).reshape(-1, 3)
    f = _numpy(faces).astype(np.int64)
    c = None if colors is None else _numpy(colors).astype(np.float64).reshape(-1, 3)
    if c is not None and c.shape[0] != v.shape[0]:
        raise ValueError("colors must have one row per vertex")
    fmt = repr if digits is None else (lambda x: f"{x:.{digits}f}")
    rows = v if c is None else np.concatenate([v, c], 1)
    lines = [f"# {comment}"] + ["v " + " ".join(fmt(float(x)) for x in row) for row in rows]
    lines += ["f " + " ".join(str(int(i) + 1) for i in face) for face in f]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def read_obj(path: str | os.PathLike, colors: bool = False):
    """Read a mesh: ``verts (V, 3)`` float64 and ``faces (F, 3)`` int64; with ``colors``
    also ``(V, 3)`` float64 colours, or None when not every vertex has them.

    Raises:
        ValueError: a face with fewer than 3 vertices or an index out of range.
    """
    verts: list[list[float]] = []
    cols: list[Optional[list[float]]] = []
    tris: list[tuple[int, int, int]] = []
    with open(path) as fh:
        for raw in fh:
            tok = raw.split()
            if not tok or tok[0][0] == "#":
                continue
            if tok[0] == "v":
                verts.append([float(t) for t in tok[1:4]])
                cols.append([float(t) for t in tok[4:7]] if len(tok) >= 7 else None)
            elif tok[0] == "f":
                n = len(verts)
                idx = [(n + i if i < 0 else i - 1) for i in (int(t.split("/", 1)[0]) for t in tok[1:])]
                if len(idx) < 3:
                    raise ValueError(f"face with < 3 vertices in {path}: {raw.strip()!r}")
                tris += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    V = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    F = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if F.size and (F.min() < 0 or F.max() >= len(V)):
        raise ValueError(f"face index out of range in {path}")
    if not colors:
        return V, F
    C = np.asarray(cols, dtype=np.float64) if cols and all(c is not None for c in cols) else None
    return V, F, C
