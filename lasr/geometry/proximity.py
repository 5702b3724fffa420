"""Exact point-to-triangle-mesh proximity queries (numpy + scipy KD-trees).

trimesh's own proximity module needs the optional ``rtree`` package, which is
not a dependency of this project, so this is a small self-contained version:
candidate faces are found with a KD-tree over face centroids using a radius
that provably contains the closest face, then the exact point-triangle
closest point is computed (Ericson, *Real-Time Collision Detection*, 5.1.5).

All functions take/return numpy ``float64`` arrays (torch tensors are accepted
and converted). :func:`transfer_vertex_attributes` carries per-vertex data (colours,
skinning weights) from a mesh to new vertices on its surface, e.g. after a remesh.
"""

from __future__ import annotations

import numpy as np
import torch

from .mesh import as_numpy

__all__ = [
    "closest_point_on_triangles",
    "closest_point_on_mesh",
    "point_to_mesh_distance",
    "sample_surface",
    "hausdorff_distance",
    "transfer_vertex_attributes",
]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ok = np.abs(b) > 1e-300
    return np.where(ok, a / np.where(ok, b, 1.0), 0.0)


def closest_point_on_triangles(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest point on triangle ``(a_i, b_i, c_i)`` to point ``p_i``, row-wise.

    Args:
        p, a, b, c: ``(N, 3)`` float64.
    Returns:
        ``closest (N, 3)`` and barycentric coordinates ``(N, 3)`` w.r.t. (a, b, c).
    """
    ab, ac, ap = b - a, c - a, p - a
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4

    n = p.shape[0]
    bary = np.empty((n, 3))
    # interior (default)
    denom = va + vb + vc
    v = _safe_div(vb, denom)
    w = _safe_div(vc, denom)
    bary[:] = np.stack([1.0 - v - w, v, w], axis=1)
    done = np.zeros(n, dtype=bool)

    def assign(mask, vals):
        nonlocal done
        m = mask & ~done
        if m.any():
            bary[m] = vals[m] if vals.ndim == 2 else vals
        done |= m

    zeros = np.zeros(n)
    ones = np.ones(n)
    # vertex regions, then edge regions (Ericson's order)
    assign((d1 <= 0) & (d2 <= 0), np.stack([ones, zeros, zeros], 1))
    assign((d3 >= 0) & (d4 <= d3), np.stack([zeros, ones, zeros], 1))
    t = _safe_div(d1, d1 - d3)
    assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t, t, zeros], 1))
    assign((d6 >= 0) & (d5 <= d6), np.stack([zeros, zeros, ones], 1))
    t = _safe_div(d2, d2 - d6)
    assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t, zeros, t], 1))
    t = _safe_div(d4 - d3, (d4 - d3) + (d5 - d6))
    assign((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([zeros, 1 - t, t], 1))
    closest = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return closest, bary


def closest_point_on_mesh(points, verts, faces, chunk: int = 4096):
    """Exact closest point on a triangle mesh for each query point.

    Args:
        points: ``(N, 3)``; verts ``(V, 3)``; faces ``(F, 3)``.
    Returns:
        ``closest (N, 3)``, ``distance (N,)``, ``face_index (N,)`` int64,
        ``bary (N, 3)`` barycentric coordinates in that face.
    """
    from scipy.spatial import cKDTree

    q = as_numpy(points).astype(np.float64).reshape(-1, 3)
    v = as_numpy(verts).astype(np.float64)
    f = as_numpy(faces).astype(np.int64)
    tri = v[f]  # (F, 3, 3)
    cen = tri.mean(1)
    rad = np.linalg.norm(tri - cen[:, None], axis=-1).max()
    # any vertex is on the surface -> nearest vertex distance bounds the answer
    used = np.unique(f)
    d0, _ = cKDTree(v[used]).query(q)
    ctree = cKDTree(cen)

    n = q.shape[0]
    best_d = np.full(n, np.inf)
    best_p = np.zeros((n, 3))
    best_f = np.zeros(n, dtype=np.int64)
    best_b = np.zeros((n, 3))
    for s in range(0, n, chunk):
        qi = q[s : s + chunk]
        cands = ctree.query_ball_point(qi, r=d0[s : s + chunk] + rad * (1 + 1e-9) + 1e-12)
        lens = np.fromiter((len(c) for c in cands), dtype=np.int64, count=len(cands))
        pi = np.repeat(np.arange(qi.shape[0]), lens)
        fi = np.concatenate([np.asarray(c, dtype=np.int64) for c in cands]) if lens.sum() else np.zeros(0, np.int64)
        cp, bc = closest_point_on_triangles(qi[pi], tri[fi, 0], tri[fi, 1], tri[fi, 2])
        dist = np.linalg.norm(cp - qi[pi], axis=1)
        # per query argmin over its candidates
        order = np.lexsort((dist, pi))
        first = np.ones(order.shape[0], dtype=bool)
        first[1:] = pi[order][1:] != pi[order][:-1]
        sel = order[first]
        rows = s + pi[sel]
        best_d[rows] = dist[sel]
        best_p[rows] = cp[sel]
        best_f[rows] = fi[sel]
        best_b[rows] = bc[sel]
    return best_p, best_d, best_f, best_b


def point_to_mesh_distance(points, verts, faces) -> np.ndarray:
    """Unsigned distance ``(N,)`` from each point to the mesh surface."""
    return closest_point_on_mesh(points, verts, faces)[1]


def sample_surface(verts, faces, n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` points sampled uniformly (area-weighted) on the surface."""
    v = as_numpy(verts).astype(np.float64)
    f = as_numpy(faces).astype(np.int64)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    fi = rng.choice(f.shape[0], size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return np.einsum("nk,nkd->nd", bary, tri[fi])


def hausdorff_distance(verts_a, faces_a, verts_b, faces_b, samples: int = 20000, seed: int = 0) -> float:
    """Symmetric Hausdorff distance between two surfaces, estimated from all
    vertices plus ``samples`` random surface points of each mesh, measured
    exactly point-to-surface against the other mesh."""
    pa = np.concatenate([as_numpy(verts_a).astype(np.float64), sample_surface(verts_a, faces_a, samples, seed)])
    pb = np.concatenate([as_numpy(verts_b).astype(np.float64), sample_surface(verts_b, faces_b, samples, seed + 1)])
    dab = point_to_mesh_distance(pa, verts_b, faces_b).max()
    dba = point_to_mesh_distance(pb, verts_a, faces_a).max()
    return float(max(dab, dba))


def transfer_vertex_attributes(verts_old, faces_old, attr_old, verts_new, method: str = "barycentric"):
    """Carry per-vertex attributes from an old mesh to new vertex positions.

    Args:
        verts_old: ``(V, 3)``; faces_old: ``(F, 3)``.
        attr_old: ``(V,)`` or ``(V, C)`` attributes (colors, weights, ...).
        verts_new: ``(V2, 3)`` query positions (e.g. vertices of a remeshed
            surface).
        method: ``"barycentric"`` -- interpolate the attribute at the closest
            point on the old surface (exact for attributes linear over each
            triangle); ``"nearest"`` -- copy from the nearest old vertex.
    Returns:
        ``(V2,)`` / ``(V2, C)``: a torch tensor if ``attr_old`` is one (same
        dtype/device), else a numpy array.
    """
    is_torch = isinstance(attr_old, torch.Tensor)
    a = as_numpy(attr_old)
    squeeze = a.ndim == 1
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    vo = as_numpy(verts_old).astype(np.float64)
    vn = as_numpy(verts_new).astype(np.float64)
    if method == "nearest":
        from scipy.spatial import cKDTree

        _, idx = cKDTree(vo).query(vn)
        out = a2[idx]
    elif method == "barycentric":
        fo = as_numpy(faces_old).astype(np.int64)
        _, _, fi, bary = closest_point_on_mesh(vn, vo, fo)
        out = np.einsum("nk,nkc->nc", bary, a2[fo[fi]])
    else:
        raise ValueError(f"unknown method {method!r}")
    if squeeze:
        out = out[:, 0]
    else:
        out = out.reshape(out.shape[0], *a.shape[1:])
    if is_torch:
        return torch.as_tensor(out, dtype=attr_old.dtype, device=attr_old.device)
    return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64)
