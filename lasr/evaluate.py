"""Score a fit's posed meshes against a ground-truth clip.

Command line (``key=value`` arguments)::

    python -m lasr.evaluate run=OUTPUT_DIR gt=GT_DIR [frames=0:48:4] [out=result.json]
                            [keypoints=PATH] [points=20000] [icp_points=5000] [iters=40] [iou=true]

``run=`` is a fit's output folder or its ``final/`` (anything holding
``meshes/%05d.obj`` and ``cameras.json``); ``gt=`` is a clip folder holding
``gt/meshes/%05d.obj``, ``gt/cameras.json``, ``gt/info.json`` and ``masks/%05d.png``
(or the ``gt/`` folder itself).  ``frames=`` is ``start:stop[:step]`` or a
comma list of GT frame numbers.  Predicted mesh ``k`` is compared with GT frame
``k``, unless the prediction's cameras.json gives ``source_frame`` values that
differ from ``frame`` (a fit on a subset / stride of the video): then mesh ``k``
is compared with GT frame ``source_frame[k]`` (and a warning says so).

The metrics follow the shared bench scorer's definitions (and its sampling
seeds, so the numbers agree with it up to floating-point rounding):

* 20k area-weighted surface samples per mesh and frame (GT seed
  ``1_000_003 + frame``, prediction seed ``2_000_003 + frame``);
* **per-frame similarity**: scaled ICP (identity rotation, centroid and RMS
  radius init; up to 40 iterations of symmetric nearest neighbours and a
  scaled Umeyama solve; stop when the summed mean NN distance changes by
  < 1e-5 relative) on 5000 of the samples per mesh (one ``default_rng(12345)``
  stream draws the GT then the prediction subset, frame after frame);
  **sequence similarity**: one similarity for all evaluated frames jointly;
* for both: symmetric Chamfer (mean of the two mean NN distances) in % of the
  GT ``bbox_diag`` (info.json; median per-frame AABB diagonal if absent) and
  F-score at 2 % and 5 % of it;
* **mask IoU**: the predicted mesh as given, rendered with the predicted
  intrinsics (rescaled when the prediction's width/height differ from the GT
  masks) at the mask resolution with 2x2 supersampling, coverage >= 0.5;
  faces with a vertex at ``z <= 1e-6`` are dropped;
* **keypoint transfer PCK** (BADJA style) when ground-truth correspondences
  are available (``GT_DIR/gt/keypoints.json`` or ``keypoints=``), see
  :func:`keypoint_transfer`.

Speed: nearest-neighbour trees are built once per point set; the
"prediction side" queries go to a tree on the untransformed prediction
samples with the GT points mapped by the inverse similarity (distances are
then multiplied by the scale), which gives the same neighbours and distances
as rebuilding a tree on the transformed prediction every iteration.
The silhouettes are filled per face and row as spans (no depth needed).

Keypoint file (``keypoints.json``), pixel coordinates of the GT masks with
pixel centres at integer coordinates, keypoint ``k`` is the same physical
point in every frame::

    {"frames": [{"frame": 0, "keypoints": [[u, v, visible], ...]}, ...],
     "names": ["nose", ...]}            # names optional

(a ``{"0": [[u, v, visible], ...], ...}`` mapping is accepted too).
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "evaluate",
    "read_obj",
    "read_cameras",
    "sample_surface",
    "umeyama",
    "icp_similarity",
    "silhouette",
    "pick_surface",
    "keypoint_transfer",
    "make_keypoints",
    "format_table",
    "main",
]

ICP_TOL = 1e-5
NEAR = 1e-6
PCK_ALPHA = 0.2


# ----------------------------------------------------------------------------
# I/O
# ----------------------------------------------------------------------------
def read_obj(path) -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` float64 vertices and ``(F, 3)`` int64 triangles of an OBJ file.

    Polygons are fan-triangulated; ``v/vt/vn`` tokens and negative (relative)
    indices are accepted; extra ``v`` columns (colours) are ignored.
    """
    verts: list[list[str]] = []
    tris: list[tuple[int, int, int]] = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("f "):
                toks = line.split()[1:]
                n = len(verts)
                ids = []
                for t in toks:
                    k = int(t.split("/", 1)[0])
                    ids.append(k - 1 if k > 0 else n + k)
                for j in range(1, len(ids) - 1):
                    tris.append((ids[0], ids[j], ids[j + 1]))
    V = np.array(verts, dtype=np.float64).reshape(-1, 3)
    F = np.array(tris, dtype=np.int64).reshape(-1, 3)
    return V, F


def read_cameras(path, n_frames: int = 0) -> dict[int, dict]:
    """Per-frame intrinsics ``{frame: {fx, fy, cx, cy, width, height}}``.

    Accepts ``{"frames": [...]}`` (top-level ``width``/``height`` as defaults),
    a bare list of per-frame dicts, or one dict used for every frame (``n_frames`` is unused,
    kept for call compatibility).
    """
    with open(path) as fh:
        d = json.load(fh)
    if isinstance(d, dict) and "frames" in d:
        items, wh = d["frames"], (d.get("width"), d.get("height"))
    elif isinstance(d, list):
        items, wh = d, (None, None)
    elif isinstance(d, dict) and "fx" in d:
        items, wh = [d], (d.get("width"), d.get("height"))
    else:
        raise ValueError(f"unrecognised cameras.json layout in {path}")
    def conv(c):
        return {"fx": float(c["fx"]), "fy": float(c["fy"]), "cx": float(c["cx"]), "cy": float(c["cy"]),
                "width": c.get("width", wh[0]), "height": c.get("height", wh[1])}

    if isinstance(d, dict) and "fx" in d:
        return _SameForAll(conv(d))
    return {int(c.get("frame", i)): conv(c) for i, c in enumerate(items)}


class _SameForAll(dict):
    """One camera for every frame number."""

    def __init__(self, cam):
        super().__init__()
        self._cam = cam

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return self._cam

    def get(self, key, default=None):
        return self._cam


def source_frames(path) -> dict[int, int]:
    """``{frame: source_frame}`` from a fit's cameras.json (empty when not given)."""
    with open(path) as fh:
        d = json.load(fh)
    items = d.get("frames", []) if isinstance(d, dict) else d
    return {int(c.get("frame", i)): int(c["source_frame"]) for i, c in enumerate(items)
            if isinstance(c, dict) and "source_frame" in c}


def _read_mask(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) >= 128


def _mesh_ids(folder) -> list[int]:
    ids = []
    for p in glob.glob(os.path.join(folder, "*.obj")):
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem.isdigit():
            ids.append(int(stem))
    return sorted(ids)


def _resolve_pred(run) -> str:
    run = str(run)
    for cand in (os.path.join(run, "final"), run):
        if os.path.isdir(os.path.join(cand, "meshes")):
            return cand
    raise FileNotFoundError(f"no meshes/ under {run} or {run}/final")


def _resolve_gt(gt) -> tuple[str, str]:
    """(folder with meshes/cameras.json/info.json, masks folder)."""
    gt = str(gt)
    if os.path.isdir(os.path.join(gt, "gt")):
        return os.path.join(gt, "gt"), os.path.join(gt, "masks")
    return gt, os.path.join(os.path.dirname(os.path.abspath(gt)), "masks")


def parse_frames(spec) -> list[int] | None:
    """``"0:48:4"`` / ``"3,5,9"`` / list / None -> list of frame numbers."""
    if spec is None or spec == "" or spec == "all":
        return None
    if isinstance(spec, (list, tuple, range)):
        return [int(x) for x in spec]
    spec = str(spec)
    if ":" in spec:
        return list(range(*[int(x) for x in spec.split(":")]))
    return [int(x) for x in spec.split(",") if x.strip()]


# ----------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------
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


def _fwd(T, P):
    s, R, t = T
    return s * P @ R.T + t


def _inv(T, X):
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
            d1, j1 = tg.query(_fwd(T, P))
            d2, j2 = tp.query(_inv(T, G))
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


def _chamfer_f(T, P, G, tree_p, tree_g, taus):
    d_pg, _ = tree_g.query(_fwd(T, P))
    d_gp, _ = tree_p.query(_inv(T, G))
    d_gp = d_gp * T[0]
    cd = 0.5 * (d_pg.mean() + d_gp.mean())
    fs = []
    for tau in taus:
        p, r = (d_pg < tau).mean(), (d_gp < tau).mean()
        fs.append(0.0 if p + r == 0 else float(2 * p * r / (p + r)))
    return float(cd), fs


def _rot_deg(R) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


# ----------------------------------------------------------------------------
# rasterisation
# ----------------------------------------------------------------------------
def _project(V, K):
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
        uv, z = _project(V, Ks)
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
    uv, z = _project(np.asarray(V, dtype=np.float64), K)
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


# ----------------------------------------------------------------------------
# keypoint transfer
# ----------------------------------------------------------------------------
def read_keypoints(path) -> dict[int, np.ndarray]:
    """``{frame: (K, 3) [u, v, visible]}`` from a keypoints.json (see module doc)."""
    with open(path) as fh:
        d = json.load(fh)
    items = d["frames"] if isinstance(d, dict) and "frames" in d else d
    out = {}
    if isinstance(items, dict):
        for k, kp in items.items():
            out[int(k)] = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
    else:
        for i, fr in enumerate(items):
            out[int(fr.get("frame", i))] = np.asarray(fr["keypoints"], dtype=np.float64).reshape(-1, 3)
    return out


def keypoint_transfer(meshes: dict, cams: dict, keypoints: dict, mask_areas: dict, size: tuple[int, int],
                      alpha: float = PCK_ALPHA) -> dict:
    """BADJA-style keypoint transfer through the predicted meshes.

    For every ordered pair of frames ``(i, j)``, ``i != j``, and every keypoint
    visible in both: the predicted surface point under the keypoint in frame
    ``i`` (front-most rasterised face and perspective-correct barycentrics of
    the predicted mesh seen with the predicted intrinsics; a keypoint off the
    predicted silhouette is first snapped to the nearest silhouette pixel) is
    carried to frame ``j`` by the same face and barycentrics of mesh ``j``
    (the predicted meshes share one topology) and projected with frame ``j``'s
    intrinsics.  It is correct when within ``alpha * sqrt(GT mask area of j)``
    pixels of the GT keypoint of ``j``.

    Args:
        meshes: ``{frame: (V, F)}`` predicted camera-space meshes.
        cams: ``{frame: (fx, fy, cx, cy)}`` at the keypoint/mask resolution.
        keypoints: ``{frame: (K, 3)}`` GT keypoints ``u, v, visible``.
        mask_areas: ``{frame: GT mask area in pixels}``.
        size: ``(width, height)`` of the masks.
    Returns:
        ``{"pck": pooled fraction, "pairs": n ordered pairs, "tests": n keypoint tests,
        "per_frame": {i: PCK of the transfers from frame i}, "snapped": n}``.
    """
    from scipy.ndimage import distance_transform_edt

    frames = [f for f in sorted(meshes) if f in keypoints and f in cams]
    W, H = size
    if not frames:
        return {"pck": None, "pairs": 0, "tests": 0, "per_frame": {}, "snapped": 0}
    src = {}
    snapped = 0
    for i in frames:
        V, F = meshes[i]
        kp = keypoints[i]
        pts = kp[:, :2].copy()
        vis = kp[:, 2] > 0
        face, bary = pick_surface(V, F, cams[i], pts)
        miss = vis & (face < 0)
        if miss.any():
            sil = silhouette(V, F, cams[i], W, H, ss=1)
            if sil.any():
                _, (ry, rx) = distance_transform_edt(~sil, return_indices=True)
                px = np.clip(np.rint(pts[miss]).astype(np.int64), [0, 0], [W - 1, H - 1])
                near_pts = np.stack([rx[px[:, 1], px[:, 0]], ry[px[:, 1], px[:, 0]]], 1).astype(np.float64)
                f2, b2 = pick_surface(V, F, cams[i], near_pts)
                face[miss], bary[miss] = f2, b2
                snapped += int(miss.sum())
        src[i] = (face, bary, vis)
    hits, tests, per_frame = 0, 0, {}
    for i in frames:
        face, bary, vis_i = src[i]
        h_i = t_i = 0
        for j in frames:
            if j == i:
                continue
            Vj, Fj = meshes[j]
            kp_j = keypoints[j]
            use = vis_i & (kp_j[:, 2] > 0)
            if not use.any():
                continue
            thr = alpha * np.sqrt(mask_areas[j])
            good = use & (face >= 0)
            ok = np.zeros(len(use), dtype=bool)
            if good.any():
                X = (bary[good, :, None] * Vj[Fj[face[good]]]).sum(1)
                uv, z = _project(X, cams[j])
                err = np.linalg.norm(uv - kp_j[good, :2], axis=1)
                ok[good] = (err < thr) & (z > NEAR)
            h_i += int(ok[use].sum())
            t_i += int(use.sum())
        if t_i:
            per_frame[i] = h_i / t_i
        hits, tests = hits + h_i, tests + t_i
    return {"pck": hits / tests if tests else None, "pairs": len(frames) * (len(frames) - 1), "tests": tests,
            "per_frame": per_frame, "snapped": snapped, "alpha": alpha}


def make_keypoints(gt_dir, vertex_ids, out=None, frames=None, depth_tol: float = 1e-3) -> dict:
    """Ground-truth keypoints from a rendered clip's GT meshes (same topology in
    every frame): GT vertex ``vertex_ids[k]`` projected with the GT intrinsics,
    visible when it lies on the front-most surface (depth within ``depth_tol``
    x its depth) and inside the image.  Writes ``out`` (keypoints.json) if given."""
    gdir, _ = _resolve_gt(gt_dir)
    cams = read_cameras(os.path.join(gdir, "cameras.json"))
    ids = _mesh_ids(os.path.join(gdir, "meshes"))
    if frames is not None:
        ids = [i for i in ids if i in set(frames)]
    vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
    rows = []
    for i in ids:
        V, F = read_obj(os.path.join(gdir, "meshes", f"{i:05d}.obj"))
        c = cams[i]
        K = (c["fx"], c["fy"], c["cx"], c["cy"])
        uv, z = _project(V[vertex_ids], K)
        face, bary = pick_surface(V, F, K, uv)
        front = np.where(face >= 0, (bary[:, :, None] * V[F[np.maximum(face, 0)]]).sum(1)[:, 2], np.inf)
        vis = (face >= 0) & (front >= z * (1 - depth_tol)) & (z > NEAR)
        if c.get("width") and c.get("height"):
            vis &= (uv[:, 0] >= -0.5) & (uv[:, 1] >= -0.5) & (uv[:, 0] <= c["width"] - 0.5) & (uv[:, 1] <= c["height"] - 0.5)
        rows.append({"frame": i, "keypoints": [[float(u), float(v), int(s)] for (u, v), s in zip(uv, vis)]})
    d = {"frames": rows, "vertex_ids": vertex_ids.tolist()}
    if out is not None:
        with open(out, "w") as fh:
            json.dump(d, fh)
    return d


# ----------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------
def _stats(values, frames, worst_is_max: bool) -> dict:
    v = np.asarray(values, dtype=np.float64)
    w = int(np.argmax(v) if worst_is_max else np.argmin(v))
    return {"mean": float(v.mean()), "median": float(np.median(v)), "worst": float(v[w]), "worst_frame": int(frames[w])}


def evaluate(pred_dir, gt_dir, frames=None, *, keypoints=None, n_points: int = 20000, icp_points: int = 5000,
             iters: int = 40, do_iou: bool = True, verbose: bool = False) -> dict:
    """Score a prediction against a GT clip; returns the result dict.

    Args:
        pred_dir: a run folder, its ``final/``, or any folder with ``meshes/`` and ``cameras.json``.
        gt_dir: the clip folder (with ``gt/`` and ``masks/``) or its ``gt/``.
        frames: GT frame numbers to evaluate (list, ``"0:48:4"``, or None for all).
        keypoints: a keypoints.json path (default ``gt/keypoints.json`` when present; ``False`` to skip).
    Returns:
        ``summary`` (per_frame / sequence ``chamfer_pct``, ``f2``, ``f5``, ``mask_iou``,
        ``keypoint_pck``: each mean / median / worst / worst_frame; ``per_frame_scale_cv``),
        ``frames`` (per-frame rows), ``sequence_transform``, ``bbox_diag``, ``thresholds``,
        ``missing``, ``warnings``, ``settings``, ``seconds``; with ``verbose`` the table is printed.
    """
    t0 = time.time()
    pdir = _resolve_pred(pred_dir)
    gdir, mdir = _resolve_gt(gt_dir)
    ids = _mesh_ids(os.path.join(gdir, "meshes"))
    sel = parse_frames(frames)
    if sel is not None:
        ids = [i for i in ids if i in set(sel)]
    info = {}
    if os.path.exists(os.path.join(gdir, "info.json")):
        with open(os.path.join(gdir, "info.json")) as fh:
            info = json.load(fh)
    pmesh = os.path.join(pdir, "meshes")
    warnings: list[str] = []
    pcam_path = os.path.join(pdir, "cameras.json")
    pcams_raw = read_cameras(pcam_path, len(ids)) if os.path.exists(pcam_path) else None
    # GT frame -> predicted frame: by file number, unless the prediction's cameras.json maps
    # its processed frames to other source frames (a fit on a frame subset / stride)
    src = source_frames(pcam_path) if os.path.exists(pcam_path) else {}
    pred_of = {i: i for i in _mesh_ids(pmesh)}
    if src and any(k != v for k, v in src.items()):
        pred_of = {v: k for k, v in src.items() if os.path.exists(os.path.join(pmesh, f"{k:05d}.obj"))}
        warnings.append("predicted frames matched to GT frames through cameras.json source_frame")
    pcams = None if pcams_raw is None else {g: pcams_raw[p] for g, p in pred_of.items() if p in pcams_raw}
    present = [i for i in ids if i in pred_of]
    missing = [i for i in ids if i not in present]
    if not present:
        raise FileNotFoundError(f"no predicted meshes matching the GT frames under {pmesh}")
    gcams = read_cameras(os.path.join(gdir, "cameras.json"), len(ids))

    rng = np.random.default_rng(12345)
    Pf, Gf, Pi, Gi, tPf, tGf, tPi, tGi, diags, meshes, used = [], [], [], [], [], [], [], [], [], {}, []
    for i in present:
        Vg, Fg = read_obj(os.path.join(gdir, "meshes", f"{i:05d}.obj"))
        try:
            Vp, Fp = read_obj(os.path.join(pmesh, f"{pred_of[i]:05d}.obj"))
            if len(Fp) == 0 or not np.isfinite(Vp).all():
                raise ValueError("empty or non-finite mesh")
            P = sample_surface(Vp, Fp, n_points, seed=2_000_003 + i)
        except (ValueError, IndexError) as e:
            missing.append(i)
            warnings.append(f"frame {i}: invalid predicted mesh ({e}); counted as missing")
            continue
        G = sample_surface(Vg, Fg, n_points, seed=1_000_003 + i)
        m = min(icp_points, n_points)
        gi = G[rng.choice(n_points, m, replace=False)]
        pi = P[rng.choice(n_points, m, replace=False)]
        used.append(i)
        meshes[i] = (Vp, Fp)
        # spatially coherent point order (the metrics are order-free; queries get ~15% faster)
        P, G, pi, gi = (x[cKDTree(x).indices] for x in (P, G, pi, gi))
        Pf.append(P), Gf.append(G), Pi.append(pi), Gi.append(gi)
        tPf.append(cKDTree(P)), tGf.append(cKDTree(G)), tPi.append(cKDTree(pi)), tGi.append(cKDTree(gi))
        diags.append(float(np.linalg.norm(Vg.max(0) - Vg.min(0))))
    if not used:
        raise ValueError("no valid predicted meshes")
    missing = sorted(missing)
    diag = float(info.get("bbox_diag", np.median(diags)))
    taus = [0.02 * diag, 0.05 * diag]
    t_load = time.time() - t0

    rows = []
    t1 = time.time()
    for k, i in enumerate(used):
        T = icp_similarity([Pi[k]], [Gi[k]], iters=iters, gt_trees=[tGi[k]], pred_trees=[tPi[k]])
        cd, (f2, f5) = _chamfer_f(T, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows.append({"frame": i, "per_frame": {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5, "scale": T[0],
                                               "rot_deg": _rot_deg(T[1]), "t": T[2].tolist()}})
    t_pf = time.time() - t1
    t1 = time.time()
    Ts = icp_similarity(Pi, Gi, iters=iters, gt_trees=tGi, pred_trees=tPi)
    for k, i in enumerate(used):
        cd, (f2, f5) = _chamfer_f(Ts, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows[k]["sequence"] = {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5}
    t_seq = time.time() - t1

    # intrinsics at the mask resolution
    t1 = time.time()
    masks, Ks = {}, {}
    size = None
    for k, i in enumerate(used):
        mp = os.path.join(mdir, f"{i:05d}.png")
        if os.path.exists(mp):
            masks[i] = _read_mask(mp)
            H, W = masks[i].shape
        else:
            c = gcams.get(i, {})
            if not (c.get("width") and c.get("height")):
                continue
            W, H = int(c["width"]), int(c["height"])
        size = (W, H)
        if pcams is not None and i in pcams:
            c = pcams[i]
        else:
            c = gcams[i]
            msg = "pred cameras.json missing: GT intrinsics used for IoU"
            if msg not in warnings:
                warnings.append(msg)
        fx, fy, cx, cy = c["fx"], c["fy"], c["cx"], c["cy"]
        if c.get("width") and c.get("height") and (c["width"] != W or c["height"] != H):
            sx, sy = W / c["width"], H / c["height"]
            fx, fy, cx, cy = fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5
        Ks[i] = (fx, fy, cx, cy)
    if do_iou:
        for k, i in enumerate(used):
            if i not in masks:
                rows[k]["iou"] = None
                continue
            gm = masks[i]
            pm = silhouette(*meshes[i], Ks[i], gm.shape[1], gm.shape[0], ss=2)
            union = (pm | gm).sum()
            rows[k]["iou"] = float((pm & gm).sum() / union) if union else 1.0
    t_iou = time.time() - t1

    # keypoint transfer
    t1 = time.time()
    kp_res = None
    kp_path = keypoints
    if kp_path is None:
        cand = os.path.join(gdir, "keypoints.json")
        kp_path = cand if os.path.exists(cand) else None
    if kp_path:
        kps = read_keypoints(kp_path)
        nv = {meshes[i][0].shape[0] for i in used}
        nf = {meshes[i][1].shape[0] for i in used}
        if len(nv) != 1 or len(nf) != 1:
            warnings.append("predicted meshes change topology between frames: keypoint transfer skipped")
        elif size is None:
            warnings.append("no masks / image size: keypoint transfer skipped")
        else:
            use = [i for i in used if i in kps and i in Ks and i in masks]
            if len(use) < len(used):
                warnings.append(f"keypoint transfer on {len(use)} of {len(used)} frames (keypoints or masks missing)")
            kp_res = keypoint_transfer({i: meshes[i] for i in use}, {i: Ks[i] for i in use},
                                       {i: kps[i] for i in use}, {i: float(masks[i].sum()) for i in use}, size)
            for row in rows:
                if row["frame"] in kp_res["per_frame"]:
                    row["pck"] = kp_res["per_frame"][row["frame"]]
    t_kp = time.time() - t1

    summary: dict = {}
    fr = [r["frame"] for r in rows]
    for mode in ("per_frame", "sequence"):
        summary[mode] = {
            "chamfer_pct": _stats([r[mode]["chamfer_pct"] for r in rows], fr, True),
            "f2": _stats([r[mode]["f2"] for r in rows], fr, False),
            "f5": _stats([r[mode]["f5"] for r in rows], fr, False),
        }
    iou_rows = [r for r in rows if r.get("iou") is not None]
    if iou_rows:
        summary["mask_iou"] = _stats([r["iou"] for r in iou_rows], [r["frame"] for r in iou_rows], False)
    if kp_res is not None and kp_res["per_frame"]:
        kr = [r for r in rows if "pck" in r]
        summary["keypoint_pck"] = _stats([r["pck"] for r in kr], [r["frame"] for r in kr], False)
        summary["keypoint_pck"]["pooled"] = kp_res["pck"]
    scales = np.array([r["per_frame"]["scale"] for r in rows])
    summary["per_frame_scale_cv"] = float(scales.std() / max(abs(scales.mean()), 1e-300))
    res = {
        "pred": os.path.abspath(pdir), "gt": os.path.abspath(str(gt_dir)),
        "frames_gt": len(ids), "frames_evaluated": len(used), "missing": missing,
        "bbox_diag": diag, "thresholds": {"f2": taus[0], "f5": taus[1]},
        "settings": {"points": n_points, "icp_points": icp_points, "icp_iters": iters},
        "sequence_transform": {"scale": Ts[0], "R": Ts[1].tolist(), "t": Ts[2].tolist()},
        "summary": summary, "frames": rows, "warnings": warnings,
        "keypoints": None if kp_res is None else {k: v for k, v in kp_res.items() if k != "per_frame"},
        "seconds": {"total": time.time() - t0, "load_sample": t_load, "per_frame_icp": t_pf, "sequence_icp": t_seq,
                    "iou": t_iou, "keypoints": t_kp},
    }
    if verbose:
        print(format_table(res))
    return res


def format_table(res: dict) -> str:
    s = res["summary"]
    out = [f"pred {res['pred']}\n  vs {res['gt']}: {res['frames_evaluated']}/{res['frames_gt']} frames "
           f"(missing {len(res['missing'])}), diag {res['bbox_diag']:.4g}, {res['seconds']['total']:.1f}s",
           f"  {'metric':<28}{'mean':>9}{'median':>9}{'worst':>9}{'@frame':>8}"]

    def line(name, d):
        out.append(f"  {name:<28}{d['mean']:>9.4f}{d['median']:>9.4f}{d['worst']:>9.4f}{d['worst_frame']:>8d}")

    for mode, lab in (("per_frame", "per-frame sim"), ("sequence", "sequence sim")):
        for key, name in (("chamfer_pct", "Chamfer %diag"), ("f2", "F@2%"), ("f5", "F@5%")):
            line(f"{lab} {name}", s[mode][key])
    if "mask_iou" in s:
        line("mask IoU", s["mask_iou"])
    if "keypoint_pck" in s:
        line(f"keypoint PCK@{PCK_ALPHA:g} (from)", s["keypoint_pck"])
        out.append(f"  keypoint PCK pooled {s['keypoint_pck']['pooled']:.4f} over {res['keypoints']['tests']} "
                   f"transfers ({res['keypoints']['snapped']} source keypoints snapped to the silhouette)")
    out.append(f"  per-frame scale CV {s['per_frame_scale_cv']:.4f}; sequence scale {res['sequence_transform']['scale']:.4f}")
    out += [f"  warning: {w}" for w in res["warnings"]]
    return "\n".join(out)


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
_USAGE = ("usage: python -m lasr.evaluate run=OUTPUT_DIR gt=GT_DIR [frames=0:48:4] [out=result.json] "
          "[keypoints=PATH|none] [points=20000] [icp_points=5000] [iters=40] [iou=true|false] [quiet=false]")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(_USAGE)
        print(__doc__)
        return 0
    kv = {}
    for a in argv:
        if "=" not in a:
            print(f"bad argument {a!r} (expected key=value)\n{_USAGE}", file=sys.stderr)
            return 2
        k, v = a.split("=", 1)
        kv[k.lstrip("+-").replace("-", "_")] = v
    known = {"run", "pred", "gt", "frames", "out", "keypoints", "points", "icp_points", "iters", "iou", "quiet"}
    unknown = set(kv) - known
    if unknown or not (kv.get("run") or kv.get("pred")) or not kv.get("gt"):
        print(f"{'unknown keys ' + str(sorted(unknown)) if unknown else 'run= and gt= are required'}\n{_USAGE}",
              file=sys.stderr)
        return 2
    truthy = lambda s: str(s).lower() in ("1", "true", "yes", "on")  # noqa: E731
    kp = kv.get("keypoints")
    kp = False if kp is not None and kp.lower() in ("none", "false", "0", "off") else kp
    res = evaluate(kv.get("run") or kv["pred"], kv["gt"], frames=kv.get("frames"), keypoints=kp,
                   n_points=int(kv.get("points", 20000)), icp_points=int(kv.get("icp_points", 5000)),
                   iters=int(kv.get("iters", 40)), do_iou=truthy(kv.get("iou", "true")),
                   verbose=not truthy(kv.get("quiet", "false")))
    if kv.get("out"):
        Path(kv["out"]).parent.mkdir(parents=True, exist_ok=True)
        with open(kv["out"], "w") as fh:
            json.dump(res, fh, indent=1)
        print("wrote", kv["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
