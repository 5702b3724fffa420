"""Score a fit's posed meshes against a clip's truth: 3D meshes when it has them, else
its masks (and keypoints) alone.

Command line (``--help`` lists the keys, :class:`lasr.config.EvaluateConfig`)::

    python -m lasr.evaluate run=OUTPUT_DIR gt=GT_DIR [frames=0:48:4] [out=result.json]
                            [keypoints=PATH] [points=20000] [icp_points=5000] [iters=40] [iou=true]

``run=`` is a fit's output folder or its ``final/`` (anything holding
``meshes/%05d.obj`` and ``cameras.json``); ``gt=`` is a clip folder holding
``gt/meshes/%05d.obj``, ``gt/cameras.json``, ``gt/info.json`` and ``masks/%05d.png``
(or the ``gt/`` folder itself). A clip with ``masks/`` but no ``gt/meshes`` (a real video,
e.g. DAVIS) gets the mask IoU, the keypoint-transfer PCK (when ``gt/keypoints.json``
exists) and the folded edges only. ``frames=`` is ``start:stop[:step]`` or GT frame
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

import os
import time

import numpy as np
from scipy.spatial import cKDTree

from ..io.final import final_dir, mesh_ids, read_cameras, source_frames
from ..io.obj import read_obj
from ..geometry.mesh import folded_edges
from .align import chamfer_f, icp_similarity, rotation_degrees, sample_surface, turn_from_first, umeyama
from .clip import parse_frames, read_info, read_mask, resolve_truth, truth_diagonal
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


def _frames_of(gdir: str, mdir: str) -> tuple[list[int], bool]:
    """The clip's frames (those with a true mesh, else those with a mask) and whether it
    has 3D truth."""
    ids = mesh_ids(os.path.join(gdir, "meshes")) if os.path.isdir(os.path.join(gdir, "meshes")) else []
    if ids:
        return ids, True
    masks = sorted(int(f[:-4]) for f in os.listdir(mdir) if f.endswith(".png") and f[:-4].isdigit()) \
        if os.path.isdir(mdir) else []
    if not masks:
        raise FileNotFoundError(f"{gdir} has neither meshes/ nor masks beside it ({mdir}): nothing to score against")
    return masks, False


def _match_prediction(pdir: str, ids: list[int], warnings: list[str]) -> tuple[dict, list[int], dict]:
    """GT frame -> predicted frame (by file number, or through cameras.json's
    ``source_frame`` for a fit on a subset / stride of the video), the frames present,
    and the prediction's cameras by GT frame."""
    pmesh = os.path.join(pdir, "meshes")
    pcam_path = os.path.join(pdir, "cameras.json")
    pcams_raw = read_cameras(pcam_path) if os.path.exists(pcam_path) else None
    src = source_frames(pcam_path) if os.path.exists(pcam_path) else {}
    pred_of = {i: i for i in mesh_ids(pmesh)}
    if src and any(k != v for k, v in src.items()):
        pred_of = {v: k for k, v in src.items() if os.path.exists(os.path.join(pmesh, f"{k:05d}.obj"))}
        warnings.append("predicted frames matched to GT frames through cameras.json source_frame")
    pcams = {} if pcams_raw is None else {g: pcams_raw[p] for g, p in pred_of.items() if p in pcams_raw}
    present = [i for i in ids if i in pred_of]
    if not present:
        raise FileNotFoundError(f"no predicted meshes matching the GT frames under {pmesh}")
    return pred_of, present, pcams


def _shape_scores(gdir, pmesh, used, pred_of, meshes, n_points, icp_points, iters, info):
    """Chamfer / F-score per frame and for the clip, root drift and turn error against the
    true meshes; returns (rows, summary part, sequence transform, diag, taus)."""
    rng = np.random.default_rng(12345)
    Pf, Gf, Pi, Gi, tPf, tGf, tPi, tGi, gt_verts = [], [], [], [], [], [], [], [], []
    for i in used:
        Vg, Fg = read_obj(os.path.join(gdir, "meshes", f"{i:05d}.obj"))
        Vp, Fp = meshes[i]
        P = sample_surface(Vp, Fp, n_points, seed=2_000_003 + i)
        G = sample_surface(Vg, Fg, n_points, seed=1_000_003 + i)
        m = min(icp_points, n_points)
        gi = G[rng.choice(n_points, m, replace=False)]
        pi = P[rng.choice(n_points, m, replace=False)]
        # spatially coherent point order (the metrics are order-free; queries get ~15% faster)
        P, G, pi, gi = (x[cKDTree(x).indices] for x in (P, G, pi, gi))
        Pf.append(P), Gf.append(G), Pi.append(pi), Gi.append(gi)
        tPf.append(cKDTree(P)), tGf.append(cKDTree(G)), tPi.append(cKDTree(pi)), tGi.append(cKDTree(gi))
        gt_verts.append(Vg)
    diag = truth_diagonal(info, gt_verts)
    taus = [0.02 * diag, 0.05 * diag]
    rows, frame_R = [], []
    for k, i in enumerate(used):
        T = icp_similarity([Pi[k]], [Gi[k]], iters=iters, gt_trees=[tGi[k]], pred_trees=[tPi[k]])
        frame_R.append(T[1])
        cd, (f2, f5) = chamfer_f(T, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows.append({"frame": i, "per_frame": {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5, "scale": T[0],
                                               "rot_deg": rotation_degrees(T[1]), "t": T[2].tolist()}})
    Ts = icp_similarity(Pi, Gi, iters=iters, gt_trees=tGi, pred_trees=tPi)
    for k, i in enumerate(used):
        cd, (f2, f5) = chamfer_f(Ts, Pf[k], Gf[k], tPf[k], tGf[k], taus)
        rows[k]["sequence"] = {"chamfer_pct": 100 * cd / diag, "f2": f2, "f5": f5}
        # how far this frame's best rotation is from the clip's: a root that turns too little drifts
        rows[k]["drift_deg"] = rotation_degrees(np.asarray(frame_R[k]) @ np.asarray(Ts[1]).T)
    summary: dict = {}
    fr = [r["frame"] for r in rows]
    for mode in ("per_frame", "sequence"):
        summary[mode] = {"chamfer_pct": _stats([r[mode]["chamfer_pct"] for r in rows], fr, True),
                         "f2": _stats([r[mode]["f2"] for r in rows], fr, False),
                         "f5": _stats([r[mode]["f5"] for r in rows], fr, False)}
    summary["drift_deg"] = _stats([r["drift_deg"] for r in rows], fr, True)
    scales = np.array([r["per_frame"]["scale"] for r in rows])
    summary["per_frame_scale_cv"] = float(scales.std() / max(abs(scales.mean()), 1e-300))
    Rp, Rg = turn_from_first([meshes[i][0] for i in used]), turn_from_first(gt_verts)
    if Rp is not None and Rg is not None:
        for r, a, b in zip(rows, Rp, Rg):
            r["turn_err_deg"] = rotation_degrees(a @ b.T)
            r["turn_gt_deg"], r["turn_pred_deg"] = rotation_degrees(b), rotation_degrees(a)
        summary["turn_err_deg"] = _stats([r["turn_err_deg"] for r in rows], fr, True)
        summary["turn_gt_max_deg"] = float(max(r["turn_gt_deg"] for r in rows))
        summary["turn_pred_max_deg"] = float(max(r["turn_pred_deg"] for r in rows))
    return rows, summary, Ts, diag, taus


def _mask_intrinsics(used, mdir, gcams, pcams, warnings):
    """The GT masks and the predicted intrinsics at their resolution, by frame."""
    masks, Ks, size = {}, {}, None
    for i in used:
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
        if i in pcams:
            c = pcams[i]
        elif i in gcams:
            c = gcams[i]
            msg = "pred cameras.json missing: GT intrinsics used for IoU"
            if msg not in warnings:
                warnings.append(msg)
        else:
            continue
        fx, fy, cx, cy = c["fx"], c["fy"], c["cx"], c["cy"]
        if c.get("width") and c.get("height") and (c["width"] != W or c["height"] != H):
            sx, sy = W / c["width"], H / c["height"]
            fx, fy, cx, cy = fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5
        Ks[i] = (fx, fy, cx, cy)
    return masks, Ks, size


def evaluate(pred_dir, gt_dir, frames=None, *, keypoints=None, n_points: int = 20000, icp_points: int = 5000,
             iters: int = 40, do_iou: bool = True, verbose: bool = False, partners: dict | None = None,
             per_pair: bool = False) -> dict:
    """Score a prediction against a clip; returns the result dict.

    A clip with true meshes (``gt/meshes``) gets every figure; a real clip with masks
    (and keypoints) alone gets the mask IoU, the keypoint-transfer PCK and the folds.

    Args:
        pred_dir: a run folder, its ``final/``, or any folder with ``meshes/`` and ``cameras.json``.
        gt_dir: the clip folder (with ``gt/`` and ``masks/``) or its ``gt/``.
        frames: GT frame numbers to evaluate (list, ``"0:48:4"``, or None for all).
        keypoints: a keypoints.json path (default ``gt/keypoints.json`` when present; ``False`` to skip).
        partners: ``{keypoint: its partner on the other side of the body}`` for the transfer's
            ``per_keypoint_swapped`` (see :func:`keypoint_transfer`).
        per_pair: keep every frame pair's transfer outcome per keypoint in ``keypoints``
            (``pair_frames``, ``pair_tests``, ``pair_hits``, ``picked``: see :func:`keypoint_transfer`).
    Returns:
        ``summary`` (with 3D truth: per_frame / sequence ``chamfer_pct``, ``f2``, ``f5``,
        ``drift_deg``, ``turn_err_deg``, ``per_frame_scale_cv``; always: ``mask_iou``,
        ``folds`` (+ ``folds_rest``), ``keypoint_pck`` when keypoints exist: each mean /
        median / worst / worst_frame), ``frames`` (per-frame rows), ``sequence_transform``,
        ``bbox_diag``, ``thresholds``, ``missing``, ``warnings``, ``settings``, ``seconds``;
        with ``verbose`` the table is printed.
    """
    t0 = time.time()
    pdir = str(final_dir(pred_dir))
    gdir, mdir = resolve_truth(gt_dir)
    ids, has_truth = _frames_of(gdir, mdir)
    sel = parse_frames(frames)
    if sel is not None:
        ids = [i for i in ids if i in set(sel)]
    info = read_info(gdir)
    warnings: list[str] = []
    pmesh = os.path.join(pdir, "meshes")
    pred_of, present, pcams = _match_prediction(pdir, ids, warnings)
    missing = [i for i in ids if i not in present]
    meshes, used = {}, []
    for i in present:
        try:
            Vp, Fp = read_obj(os.path.join(pmesh, f"{pred_of[i]:05d}.obj"))
            if len(Fp) == 0 or not np.isfinite(Vp).all():
                raise ValueError("empty or non-finite mesh")
            sample_surface(Vp, Fp, 1, seed=0)  # has an area
        except (ValueError, IndexError) as e:
            missing.append(i)
            warnings.append(f"frame {i}: invalid predicted mesh ({e}); counted as missing")
            continue
        meshes[i] = (Vp, Fp)
        used.append(i)
    if not used:
        raise ValueError("no valid predicted meshes")
    missing = sorted(missing)
    t_load = time.time() - t0

    t1 = time.time()
    if has_truth:
        rows, summary, Ts, diag, taus = _shape_scores(gdir, pmesh, used, pred_of, meshes, n_points, icp_points,
                                                      iters, info)
    else:
        rows, summary, Ts, diag, taus = [{"frame": i} for i in used], {}, None, None, None
    t_shape = time.time() - t1
    fr = [r["frame"] for r in rows]
    for r in rows:
        r["folds"] = float(folded_edges(*meshes[r["frame"]]))
    summary["folds"] = _stats([r["folds"] for r in rows], fr, True)
    rest = os.path.join(pdir, "rest.obj")
    if os.path.exists(rest):
        summary["folds_rest"] = float(folded_edges(*read_obj(rest)))

    t1 = time.time()
    gcam_path = os.path.join(gdir, "cameras.json")
    gcams = read_cameras(gcam_path) if os.path.exists(gcam_path) else {}
    masks, Ks, size = _mask_intrinsics(used, mdir, gcams, pcams, warnings)
    if do_iou:
        for r in rows:
            i = r["frame"]
            if i not in masks or i not in Ks:
                r["iou"] = None
                continue
            gm = masks[i]
            pm = silhouette(*meshes[i], Ks[i], gm.shape[1], gm.shape[0], ss=2)
            union = (pm | gm).sum()
            r["iou"] = float((pm & gm).sum() / union) if union else 1.0
        iou_rows = [r for r in rows if r.get("iou") is not None]
        if iou_rows:
            summary["mask_iou"] = _stats([r["iou"] for r in iou_rows], [r["frame"] for r in iou_rows], False)
    t_iou = time.time() - t1

    t1 = time.time()
    kp_res = None
    kp_path = keypoints
    if kp_path is None:
        cand = os.path.join(gdir, "keypoints.json")
        kp_path = cand if os.path.exists(cand) else None
    if kp_path:
        kps = read_keypoints(kp_path)
        if len({meshes[i][0].shape[0] for i in used}) != 1 or len({meshes[i][1].shape[0] for i in used}) != 1:
            warnings.append("predicted meshes change topology between frames: keypoint transfer skipped")
        elif size is None:
            warnings.append("no masks / image size: keypoint transfer skipped")
        else:
            use = [i for i in used if i in kps and i in Ks and i in masks]
            if len(use) < len(used):
                warnings.append(f"keypoint transfer on {len(use)} of {len(used)} frames (keypoints or masks missing)")
            kp_res = keypoint_transfer({i: meshes[i] for i in use}, {i: Ks[i] for i in use},
                                       {i: kps[i] for i in use}, {i: float(masks[i].sum()) for i in use}, size,
                                       partners=partners, per_pair=per_pair)
            for row in rows:
                if row["frame"] in kp_res["per_frame"]:
                    row["pck"] = kp_res["per_frame"][row["frame"]]
    if kp_res is not None and kp_res["per_frame"]:
        kr = [r for r in rows if "pck" in r]
        summary["keypoint_pck"] = _stats([r["pck"] for r in kr], [r["frame"] for r in kr], False)
        summary["keypoint_pck"]["pooled"] = kp_res["pck"]
    t_kp = time.time() - t1

    res = {
        "pred": os.path.abspath(pdir), "gt": os.path.abspath(str(gt_dir)), "has_3d_truth": has_truth,
        "frames_gt": len(ids), "frames_evaluated": len(used), "missing": missing,
        "bbox_diag": diag, "thresholds": None if taus is None else {"f2": taus[0], "f5": taus[1]},
        "settings": {"points": n_points, "icp_points": icp_points, "icp_iters": iters},
        "sequence_transform": None if Ts is None else {"scale": Ts[0], "R": Ts[1].tolist(), "t": Ts[2].tolist()},
        "summary": summary, "frames": rows, "warnings": warnings,
        "keypoints": None if kp_res is None else {k: v for k, v in kp_res.items() if k != "per_frame"},
        "seconds": {"total": time.time() - t0, "load": t_load, "shape": t_shape, "iou": t_iou, "keypoints": t_kp},
    }
    if verbose:
        print(format_table(res))
    return res


def format_table(res: dict) -> str:
    s = res["summary"]
    diag = f"diag {res['bbox_diag']:.4g}, " if res["bbox_diag"] is not None else "no 3D truth, "
    out = [f"pred {res['pred']}\n  vs {res['gt']}: {res['frames_evaluated']}/{res['frames_gt']} frames "
           f"(missing {len(res['missing'])}), {diag}{res['seconds']['total']:.1f}s",
           f"  {'metric':<28}{'mean':>9}{'median':>9}{'worst':>9}{'@frame':>8}"]

    def line(name, d, fmt=".4f"):
        out.append(f"  {name:<28}{d['mean']:>9{fmt}}{d['median']:>9{fmt}}{d['worst']:>9{fmt}}{d['worst_frame']:>8d}")

    if res["has_3d_truth"]:
        for mode, lab in (("per_frame", "per-frame sim"), ("sequence", "sequence sim")):
            for key, name in (("chamfer_pct", "Chamfer %diag"), ("f2", "F@2%"), ("f5", "F@5%")):
                line(f"{lab} {name}", s[mode][key])
    if "mask_iou" in s:
        line("mask IoU", s["mask_iou"])
    if "keypoint_pck" in s:
        line(f"keypoint PCK@{PCK_ALPHA:g} (from)", s["keypoint_pck"])
        out.append(f"  keypoint PCK pooled {s['keypoint_pck']['pooled']:.4f} over {res['keypoints']['tests']} "
                   f"transfers ({res['keypoints']['snapped']} source keypoints snapped to the silhouette)")
        worst = sorted(res["keypoints"].get("per_keypoint", {}).items(), key=lambda kv: kv[1])[:4]
        if worst:
            out.append("  keypoints transferred worst: " + ", ".join(f"#{k} {v:.2f}" for k, v in worst))
    if "drift_deg" in s:
        line("root drift, degrees", s["drift_deg"], ".2f")
    if "turn_err_deg" in s:
        line("turn error, degrees", s["turn_err_deg"], ".2f")
        out[-1] += f"   largest turn: truth {s['turn_gt_max_deg']:.0f}, prediction {s['turn_pred_max_deg']:.0f}"
    line("folded edges (share)", s["folds"])
    if "folds_rest" in s:
        out[-1] += f"   rest.obj {s['folds_rest']:.4f}"
    if res["has_3d_truth"]:
        out.append(f"  per-frame scale CV {s['per_frame_scale_cv']:.4f}; sequence scale "
                   f"{res['sequence_transform']['scale']:.4f}")
    out += [f"  warning: {w}" for w in res["warnings"]]
    return "\n".join(out)
