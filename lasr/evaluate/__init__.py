"""Score a fit's posed meshes against a ground-truth clip.

Command line (``--help`` lists the keys, :class:`lasr.config.EvaluateConfig`)::

    python -m lasr.evaluate run=OUTPUT_DIR gt=GT_DIR [frames=0:48:4] [out=result.json]
                            [keypoints=PATH] [points=20000] [icp_points=5000] [iters=40] [iou=true]

``run=`` is a fit's output folder or its ``final/`` (anything holding
``meshes/%05d.obj`` and ``cameras.json``); ``gt=`` is a clip folder holding
``gt/meshes/%05d.obj``, ``gt/cameras.json``, ``gt/info.json`` and ``masks/%05d.png``
(or the ``gt/`` folder itself).  ``frames=`` is ``start:stop[:step]`` or GT frame
numbers joined by ``+``.  Predicted mesh ``k`` is compared with GT frame
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

import json
import os
import time

import numpy as np
from scipy.spatial import cKDTree

from ..io.final import final_dir, mesh_ids, read_cameras, source_frames
from ..io.obj import read_obj
from .align import chamfer_f, icp_similarity, rotation_degrees, sample_surface, umeyama
from .clip import parse_frames, read_mask, resolve_truth
from .keypoints import PCK_ALPHA, keypoint_transfer, make_keypoints, read_keypoints
from .silhouette import pick_surface, silhouette

__all__ = [
    "evaluate",
    "format_table",
    "sample_surface",
    "umeyama",
    "icp_similarity",
    "silhouette",
    "pick_surface",
    "keypoint_transfer",
    "make_keypoints",
    "read_keypoints",
    "parse_frames",
]


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
    pdir = str(final_dir(pred_dir))
    gdir, mdir = resolve_truth(gt_dir)
    ids = mesh_ids(os.path.join(gdir, "meshes"))
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
    pcams_raw = read_cameras(pcam_path) if os.path.exists(pcam_path) else None
    # GT frame -> predicted frame: by file number, unless the prediction's cameras.json maps
    # its processed frames to other source frames (a fit on a frame subset / stride)
    src = source_frames(pcam_path) if os.path.exists(pcam_path) else {}
    pred_of = {i: i for i in mesh_ids(pmesh)}
    if src and any(k != v for k, v in src.items()):
        pred_of = {v: k for k, v in src.items() if os.path.exists(os.path.join(pmesh, f"{k:05d}.obj"))}
        warnings.append("predicted frames matched to GT frames through cameras.json source_frame")
    pcams = None if pcams_raw is None else {g: pcams_raw[p] for g, p in pred_of.items() if p in pcams_raw}
    present = [i for i in ids if i in pred_of]
    missing = [i for i in ids if i not in present]
    if not present:
        raise FileNotFoundError(f"no predicted meshes matching the GT frames under {pmesh}")
    gcams = read_cameras(os.path.join(gdir, "cameras.json"))

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
        cd, (f2, f5) = chamfer_f(T, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows.append({"frame": i, "per_frame": {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5, "scale": T[0],
                                               "rot_deg": rotation_degrees(T[1]), "t": T[2].tolist()}})
    t_pf = time.time() - t1
    t1 = time.time()
    Ts = icp_similarity(Pi, Gi, iters=iters, gt_trees=tGi, pred_trees=tPi)
    for k, i in enumerate(used):
        cd, (f2, f5) = chamfer_f(Ts, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows[k]["sequence"] = {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5}
    t_seq = time.time() - t1

    # intrinsics at the mask resolution
    t1 = time.time()
    masks, Ks = {}, {}
    size = None
    for k, i in enumerate(used):
        mp = os.path.join(mdir, f"{i:05d}.png")
        if os.path.exists(mp):
            masks[i] = read_mask(mp)
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
