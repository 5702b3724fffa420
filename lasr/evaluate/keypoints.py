"""Keypoint-transfer PCK (BADJA protocol) and ground-truth keypoints from rendered clips."""

from __future__ import annotations

import json
import os

import numpy as np

from ..io.final import mesh_ids, read_cameras
from ..io.obj import read_obj
from .clip import resolve_truth
from .silhouette import NEAR, pick_surface, project, silhouette

__all__ = ["PCK_ALPHA", "read_keypoints", "keypoint_transfer", "make_keypoints"]

PCK_ALPHA = 0.2


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
                      alpha: float = PCK_ALPHA, partners: dict[int, int] | None = None, per_pair: bool = False) -> dict:
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
        partners: optional ``{k: the keypoint on the other side of the body}`` (a left foot and
            the right one): a miss of ``k`` within the threshold of its partner's true
            position in frame ``j`` is counted in ``per_keypoint_swapped`` (the fit carried
            the point to the other leg).
        per_pair: also return each ordered frame pair's outcome per keypoint, to see between
            which frames and for which keypoints the transfers fail.
    Returns:
        ``{"pck": pooled fraction, "pairs": n ordered pairs, "tests": n keypoint tests,
        "per_frame": {i: PCK of the transfers from frame i}, "per_keypoint": {k: PCK of
        keypoint k's transfers}, "snapped": n}``, and with ``partners`` ``"per_keypoint_swapped":
        {k: share of k's transfers that landed on its partner instead}``; with ``per_pair``,
        ``"pair_frames"`` (the F frames scored, in order), ``"pair_tests"`` and ``"pair_hits"``:
        ``(F, F, K)`` bool, keypoint ``k`` tested / correct when carried from frame
        ``pair_frames[a]`` to ``pair_frames[b]`` (entry ``[a, b, k]``),
        and ``"picked"``: ``{frame: (face (K,), barycentrics (K, 3), visible (K,))}``, the surface
        point each keypoint was picked on (face -1: none) and whether it is visible there.
    """
    from scipy.ndimage import distance_transform_edt

    frames = [f for f in sorted(meshes) if f in keypoints and f in cams]
    W, H = size
    if not frames:
        empty = {"pck": None, "pairs": 0, "tests": 0, "per_frame": {}, "per_keypoint": {}, "snapped": 0}
        if per_pair:
            empty.update(pair_frames=[], pair_tests=np.zeros((0, 0, 0), dtype=bool),
                         pair_hits=np.zeros((0, 0, 0), dtype=bool), picked={})
        return empty
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
    k_hits = np.zeros(max(len(k) for k in keypoints.values()), dtype=np.int64)
    k_tests = np.zeros_like(k_hits)
    k_swaps = np.zeros_like(k_hits)
    pair_tests = np.zeros((len(frames), len(frames), len(k_hits)), dtype=bool)
    pair_hits = np.zeros_like(pair_tests)
    partners = partners or {}
    for a, i in enumerate(frames):
        face, bary, vis_i = src[i]
        h_i = t_i = 0
        for b, j in enumerate(frames):
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
                uv, z = project(X, cams[j])
                err = np.linalg.norm(uv - kp_j[good, :2], axis=1)
                ok[good] = (err < thr) & (z > NEAR)
                for n, k in enumerate(np.flatnonzero(good) if partners else ()):  # only when asked for
                    o = partners.get(int(k))
                    if (o is not None and not ok[k] and o < len(kp_j) and kp_j[o, 2] > 0
                            and np.linalg.norm(uv[n] - kp_j[o, :2]) < thr and z[n] > NEAR):
                        k_swaps[k] += 1
            pair_tests[a, b, : len(use)] = use
            pair_hits[a, b, : len(use)] = ok & use
            h_i += int(ok[use].sum())
            t_i += int(use.sum())
            k_hits[: len(use)] += ok & use
            k_tests[: len(use)] += use
        if t_i:
            per_frame[i] = h_i / t_i
        hits, tests = hits + h_i, tests + t_i
    per_keypoint = {k: float(k_hits[k] / k_tests[k]) for k in np.flatnonzero(k_tests).tolist()}
    out = {"pck": hits / tests if tests else None, "pairs": len(frames) * (len(frames) - 1), "tests": tests,
           "per_frame": per_frame, "per_keypoint": per_keypoint, "snapped": snapped, "alpha": alpha}
    if per_pair:
        out.update(pair_frames=list(frames), pair_tests=pair_tests, pair_hits=pair_hits,
                   picked={i: src[i] for i in frames})
    if partners:
        out["per_keypoint_swapped"] = {k: float(k_swaps[k] / k_tests[k]) for k in np.flatnonzero(k_tests).tolist()
                                       if k in partners}
    return out


def make_keypoints(gt_dir, vertex_ids, out=None, frames=None, depth_tol: float = 1e-3) -> dict:
    """Ground-truth keypoints from a rendered clip's GT meshes (same topology in
    every frame): GT vertex ``vertex_ids[k]`` projected with the GT intrinsics,
    visible when it lies on the front-most surface (depth within ``depth_tol``
    x its depth) and inside the image.  Writes ``out`` (keypoints.json) if given."""
    gdir, _ = resolve_truth(gt_dir)
    cams = read_cameras(os.path.join(gdir, "cameras.json"))
    ids = mesh_ids(os.path.join(gdir, "meshes"))
    if frames is not None:
        ids = [i for i in ids if i in set(frames)]
    vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
    rows = []
    for i in ids:
        V, F = read_obj(os.path.join(gdir, "meshes", f"{i:05d}.obj"))
        c = cams[i]
        K = (c["fx"], c["fy"], c["cx"], c["cy"])
        uv, z = project(V[vertex_ids], K)
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
