"""Surface samples, similarity alignment (scaled ICP) and Chamfer / F-score between meshes."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["ICP_TOL", "turn_from_first", "sample_surface", "umeyama", "icp_similarity", "chamfer_f", "rotation_degrees", "apply_similarity",
           "invert_similarity"]

ICP_TOL = 1e-5
WORKERS = -1  # nearest-neighbour queries on every core


def sample_surface(V: np.ndarray, F: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` area-weighted uniform samples on the triangles (seeded)."""
    rng = np.random.default_rng(seed)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    w = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("mesh has no area")
    cum = np.cumsum(w)
    f = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    f = np.minimum(f, len(F) - 1)
    s = np.sqrt(rng.random(n))[:, None]
    r = rng.random(n)[:, None]
    return (1.0 - s) * a[f] + s * (1.0 - r) * b[f] + s * r * c[f]


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``(s, R, t)`` with ``s R src + t ~ dst`` (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    return _umeyama_moments(ms, md, b.T @ a / len(src), (a * a).sum() / len(src))


def _umeyama_moments(ms, md, cov, var):
    """Similarity from the means, the cross-covariance ``E[(d - md)(s - ms)^T]`` and ``E|s - ms|^2``."""
    U, D, Vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        d[2] = -1.0
    R = (U * d) @ Vt
    s = float((D * d).sum() / max(var, 1e-300))
    return s, R, md - s * R @ ms


def apply_similarity(T, P):
    """``s R P + t`` for a similarity ``T = (s, R, t)`` and ``(n, 3)`` points."""
    s, R, t = T
    return s * P @ R.T + t


def invert_similarity(T, X):
    """The inverse of :func:`apply_similarity`."""
    s, R, t = T
    return (X - t) @ R / s


def icp_similarity(preds, gts, iters: int = 40, gt_trees=None, pred_trees=None):
    """One similarity mapping every prediction cloud onto its GT cloud.

    ``preds``/``gts``: lists of ``(n, 3)`` arrays (one pair: per-frame alignment;
    many: sequence alignment).  Symmetric nearest neighbours within each pair.
    """
    P_all, G_all = np.concatenate(preds), np.concatenate(gts)
    cp, cg = P_all.mean(0), G_all.mean(0)
    s = np.sqrt(((G_all - cg) ** 2).sum(1).mean()) / max(np.sqrt(((P_all - cp) ** 2).sum(1).mean()), 1e-300)
    T = (float(s), np.eye(3), cg - s * cp)
    gt_trees = gt_trees or [cKDTree(g) for g in gts]
    pred_trees = pred_trees or [cKDTree(p) for p in preds]
    # The Umeyama moments of the correspondence set {(P, G[j1])} u {(P[j2], G)} are accumulated
    # per frame from points centred on the clouds' overall centroids (no concatenation).
    Pc = [P - cp for P in preds]
    Gc = [G - cg for G in gts]
    Pn2 = [(x * x).sum(1) for x in Pc]
    Psum = [x.sum(0) for x in Pc]
    Gsum = [x.sum(0) for x in Gc]
    n_tot = 2 * sum(len(x) for x in preds)
    prev = None
    for _ in range(iters):
        err = 0.0
        sum_s, sum_d, cross, sq = np.zeros(3), np.zeros(3), np.zeros((3, 3)), 0.0
        for k, (P, G, tg, tp) in enumerate(zip(preds, gts, gt_trees, pred_trees)):
            d1, j1 = tg.query(apply_similarity(T, P), workers=WORKERS)
            d2, j2 = tp.query(invert_similarity(T, G), workers=WORKERS)
            err += d1.mean() + T[0] * d2.mean()
            g1, p2 = Gc[k][j1], Pc[k][j2]
            sum_s += Psum[k] + p2.sum(0)
            sum_d += g1.sum(0) + Gsum[k]
            cross += g1.T @ Pc[k] + Gc[k].T @ p2
            sq += Pn2[k].sum() + Pn2[k][j2].sum()
        ms, md = sum_s / n_tot, sum_d / n_tot
        cov = cross / n_tot - np.outer(md, ms)
        var = sq / n_tot - ms @ ms
        T = _umeyama_moments(ms + cp, md + cg, cov, var)
        if prev is not None and abs(prev - err) <= ICP_TOL * max(err, 1e-300):
            break
        prev = err
    return T


def chamfer_f(T, P, G, tree_p, tree_g, taus):
    d_pg, _ = tree_g.query(apply_similarity(T, P), workers=WORKERS)
    d_gp, _ = tree_p.query(invert_similarity(T, G), workers=WORKERS)
    d_gp = d_gp * T[0]
    cd = 0.5 * (d_pg.mean() + d_gp.mean())
    fs = []
    for tau in taus:
        p, r = (d_pg < tau).mean(), (d_gp < tau).mean()
        fs.append(0.0 if p + r == 0 else float(2 * p * r / (p + r)))
    return float(cd), fs


def rotation_degrees(R) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def turn_from_first(meshes) -> list[np.ndarray] | None:
    """The rotation carrying frame 0's shape to each frame's (Kabsch on all vertices,
    centred and scale-normalised) for meshes of one topology; None when it changes."""
    Vs = [np.asarray(V, np.float64) for V in meshes]
    if len({len(V) for V in Vs}) != 1:
        return None

    def norm(V):
        c = V - V.mean(0)
        return c / np.sqrt((c**2).sum(1).mean())

    A = norm(Vs[0])
    out = []
    for V in Vs:
        U, _, Wt = np.linalg.svd(norm(V).T @ A)
        out.append(U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Wt))]) @ Wt)
    return out
