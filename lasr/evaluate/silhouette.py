"""Hard silhouettes of camera-space meshes (filled per face and row as spans, no depth
needed) and the front-most surface point under a pixel."""

from __future__ import annotations

import numpy as np

__all__ = ["NEAR", "project", "silhouette", "pick_surface"]

NEAR = 1e-6


def project(V, K):
    fx, fy, cx, cy = K
    z = V[:, 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    return np.stack([fx * V[:, 0] / zs + cx, fy * V[:, 1] / zs + cy], 1), z


def _edge_coeffs(P):
    """Barycentric coordinate ``l_i(x, y) = A_i x + B_i y + C_i`` of each face
    (``P (m, 3, 2)`` projected corners); returns ``A, B, C (m, 3)`` and the
    signed doubled area."""
    area = (P[:, 1, 0] - P[:, 0, 0]) * (P[:, 2, 1] - P[:, 0, 1]) - (P[:, 2, 0] - P[:, 0, 0]) * (P[:, 1, 1] - P[:, 0, 1])
    A, B, C = [], [], []
    for i in range(3):
        p, q = P[:, (i + 1) % 3], P[:, (i + 2) % 3]  # the edge opposite corner i
        A.append(p[:, 1] - q[:, 1])
        B.append(q[:, 0] - p[:, 0])
        C.append(p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / area
    A, B, C = (np.stack(x, 1) * inv[:, None] for x in (A, B, C))
    return A, B, C, area


def silhouette(V, F, K, width: int, height: int, ss: int = 2, near: float = NEAR) -> np.ndarray:
    """Hard silhouette ``(height, width)`` bool of a camera-space mesh.

    Rendered at ``ss x`` the resolution (intrinsics ``fx' = ss fx``,
    ``cx' = ss cx + (ss - 1) / 2``); a pixel is set when at least half its
    sub-samples are covered.  A sample (pixel centre, integer coordinates) is
    covered when all three barycentrics are >= -1e-9.  Faces with a vertex at
    ``z <= near`` or with (near) zero projected area are dropped.
    """
    fx, fy, cx, cy = K
    Ks = (fx * ss, fy * ss, cx * ss + (ss - 1) / 2.0, cy * ss + (ss - 1) / 2.0)
    W, H = int(width) * ss, int(height) * ss
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    cov = np.zeros((H, W + 1), dtype=np.int32)
    if len(F):
        uv, z = project(V, Ks)
        P = uv[F]
        ok = (z[F] > near).all(1) & np.isfinite(P).all((1, 2))
        A, B, C, area = _edge_coeffs(P)
        ok &= np.abs(area) > 1e-12
        ymin, ymax = np.ceil(P[..., 1].min(1)), np.floor(P[..., 1].max(1))
        xmin, xmax = np.ceil(P[..., 0].min(1)), np.floor(P[..., 0].max(1))
        ok &= (ymax >= 0) & (ymin <= H - 1) & (xmax >= 0) & (xmin <= W - 1) & (ymax >= ymin) & (xmax >= xmin)
        fid = np.nonzero(ok)[0]
        if len(fid):
            y0 = np.clip(ymin[fid], 0, H - 1).astype(np.int64)
            y1 = np.clip(ymax[fid], 0, H - 1).astype(np.int64)
            nrow = y1 - y0 + 1
            rep = np.repeat(np.arange(len(fid)), nrow)
            y = y0[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(nrow) - nrow, nrow))
            f = fid[rep]
            a, rhs = A[f], -1e-9 - (B[f] * y[:, None] + C[f])  # constraint a x >= rhs per edge
            with np.errstate(divide="ignore", invalid="ignore"):
                bound = rhs / a
            lo = np.maximum(np.where(a > 0, bound, -np.inf).max(1), xmin[f])
            hi = np.minimum(np.where(a < 0, bound, np.inf).min(1), xmax[f])
            flat_ok = ((a != 0) | (rhs <= 0)).all(1)  # a == 0: the row is all in or all out
            xs = np.clip(np.ceil(lo), 0, W)
            xe = np.clip(np.floor(hi), -1, W - 1)
            keep = flat_ok & (xe >= xs)
            y, xs, xe = y[keep], xs[keep].astype(np.int64), xe[keep].astype(np.int64)
            row = y * (W + 1)
            cov = (np.bincount(row + xs, minlength=H * (W + 1)) -
                   np.bincount(row + xe + 1, minlength=H * (W + 1))).reshape(H, W + 1)
    inside = np.cumsum(cov, axis=1)[:, :W] > 0
    if ss == 1:
        return inside
    frac = inside.reshape(H // ss, ss, W // ss, ss).mean(axis=(1, 3))
    return frac >= 0.5


def pick_surface(V, F, K, points, near: float = NEAR):
    """Front-most face under each 2D point.

    Args:
        V, F: camera-space mesh; K: ``(fx, fy, cx, cy)``; points: ``(M, 2)`` pixels.
    Returns:
        ``face (M,)`` (-1 where no face covers the point) and ``bary (M, 3)``
        perspective-correct barycentrics (the 3D surface point is
        ``sum_i bary_i V[F[face, i]]``).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    M = len(points)
    face, bary = -np.ones(M, dtype=np.int64), np.zeros((M, 3))
    uv, z = project(np.asarray(V, dtype=np.float64), K)
    F = np.asarray(F, dtype=np.int64)
    P, zf = uv[F], z[F]
    ok = (zf > near).all(1) & np.isfinite(P).all((1, 2))
    A, B, C, area = _edge_coeffs(P)
    ok &= np.abs(area) > 1e-12
    fid = np.nonzero(ok)[0]
    if not len(fid) or not M:
        return face, bary
    A, B, C, zf = A[fid], B[fid], C[fid], zf[fid]
    for m, (u, v) in enumerate(points):
        lam = A * u + B * v + C  # (f, 3)
        ins = (lam >= -1e-9).all(1)
        if not ins.any():
            continue
        q = lam[ins] / zf[ins]
        depth = 1.0 / q.sum(1)
        k = int(np.argmin(depth))
        face[m] = fid[np.nonzero(ins)[0][k]]
        bary[m] = q[k] * depth[k]
    return face, bary
