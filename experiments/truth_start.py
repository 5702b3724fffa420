"""Is it the objective or the way there? The articulated stages started from the truth.

    uv run python experiments/truth_start.py CACHE CLIP [--from posed|rest] [--run RUN] [--frames 0:48:4]
                                             [--out DIR] [KEY=VALUE ...]

CACHE: the clip's preprocessing cache (the folder ``python -m preprocess ... cache_dir=C`` writes
under C); CLIP: a folder with the true meshes in camera coordinates (``gt/meshes/%05d.obj``)
and the true cameras (``gt/cameras.json``: ``world_to_camera``, ``fx``), as the benchmark's
``render_gt.py`` writes them (``cesiumman_walk``, the built-in creature's truth).

The true mesh of frame 0, carried into the world frame, becomes the rest shape, the true
cameras the root and the true focal length the model's; then

- ``--from posed``: `refine`'s bones are placed on it and their motion fitted to the true
  mesh of every frame (the truth as the model can hold it), and `refine` runs;
- ``--from rest`` (the default): the bones start at rest (every frame in frame 0's pose),
  and `articulate` and `refine` run (no remesh, one run each).

The stages train what they train in a fit (the rest shape and the root too: only the
start is the truth).

The stages are `fast`'s (KEY=VALUE overrides them, e.g. ``stages.refine.iters=100``), with
the symmetry term off: the true rest shape is not mirror-symmetric about the model's x = 0
plane. Printed at the start and at the end: the data terms the fit is steered and chosen by
(silhouette, soft IoU, flow over every frame: ``Fitter.objective`` of `refine`, and each
term), the flow's end-point error in crop pixels, the full-frame mask IoU, the 3D
figures (``python -m lasr.evaluate``) and the bones' motion over the clip (its energy and
how many motions it mixes: :func:`motion_spectrum`); ``--run RUN`` scores a finished fit of the same cache
the same way first. A start that scores
lower data terms than the fit from the sphere, and an end that keeps it, say the objective
prefers the truth and the way from the sphere misses it (README, Results).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def true_clip(clip: Path, source_frames):
    """The truth of the cache's frames (``source_frames``: the clip's frame of each):
    ``(T, V, 3)`` true meshes in camera coordinates, their faces, ``(T, 4, 4)``
    world-to-camera transforms and the first frame's camera (``fx``, ``cx``, ``cy``, ``width``)."""
    import numpy as np
    import torch

    from lasr.io.obj import read_obj

    gt = clip / "gt" if (clip / "gt").is_dir() else clip
    cams = {int(c["frame"]): c for c in json.loads((gt / "cameras.json").read_text())["frames"]}
    frames = [int(f) for f in source_frames]
    missing = [f for f in frames if f not in cams or not (gt / "meshes" / f"{f:05d}.obj").exists()]
    if missing:
        raise SystemExit(f"{gt} has no true mesh or camera for frames {missing[:5]} of the cache")
    verts, faces = [], None
    for f in frames:
        v, faces = read_obj(gt / "meshes" / f"{f:05d}.obj")
        verts.append(np.asarray(v))
    M = torch.tensor(np.stack([np.asarray(cams[f]["world_to_camera"], dtype=np.float64) for f in frames]))
    return (torch.tensor(np.stack(verts), dtype=torch.float32), torch.as_tensor(np.asarray(faces), dtype=torch.long),
            M.float(), cams[frames[0]])


def start_from_truth(fitter, verts_cam, faces, world_to_camera, cam0: dict, posed: bool) -> float:
    """Set ``fitter``'s model to the truth (see the module docstring); returns the RMS
    distance of its posed vertices from the true ones over all frames (``posed``: after the
    bones are fitted; else with every frame in frame 0's pose)."""
    import torch

    model, data = fitter.model, fitter.data
    R, t = world_to_camera[:, :3, :3], world_to_camera[:, :3, 3]
    world = torch.einsum("tji,tvj->tvi", R, verts_cam - t[:, None])  # R^T (x - t): the world frame
    c = world[0].mean(0)  # centred on the rest shape, as a fit's (its regularisers scale with the radius)
    world, t = world - c, t + R @ c
    H, W = data.image_size
    s = W / float(cam0.get("width") or W)  # the cache's pixels per true camera pixel
    f, cx, cy = cam0["fx"] * s, (cam0["cx"] + 0.5) * s - 0.5, (cam0["cy"] + 0.5) * s - 0.5
    x0 = verts_cam[0]  # frame 0's pixels under each vertex give it a colour
    u = (f * x0[:, 0] / x0[:, 2] + cx).round().long().clamp(0, W - 1)
    v = (f * x0[:, 1] / x0[:, 2] + cy).round().long().clamp(0, H - 1)
    model.set_rest_shape(world[0], faces, data.rgb[0, v, u])
    with torch.no_grad():
        model.root_rot.copy_(model.rot_from_matrix(R).to(model.root_rot.dtype).reshape(model.root_rot.shape))
        model.root_trans.copy_(t.reshape(model.root_trans.shape))
        model.log_focal.fill_(math.log(f / max(H, W)))
    first = fitter.stages[0][1]
    model.set_num_bones(first.num_bones, seed=0)
    if posed:
        model.refit_bone_transforms(world)
        model.distill_deformation(world, steps=100)
    fitter.mirror = None
    fitter._set_topology()
    with torch.no_grad():
        return float((model() - verts_cam).square().sum(-1).mean().sqrt())


def motion_spectrum(transforms, scale: float, modes=(1, 2, 4, 8)) -> dict:
    """How much the bones move over the clip and in how many independent motions:
    ``transforms (T, B, 4, 4)`` (``model.bone_transforms()``) as the ``(T, 12 B)`` matrix of
    each frame's ``R - I`` and ``t / scale``, centred over the frames. Returns ``{"energy":
    its squared norm per frame and bone, "beyond": {k: the share of it outside the k
    leading singular directions}}`` (a walk is a few motions mixed: the beyond-4 share is small)."""
    import torch

    T, B = transforms.shape[:2]
    with torch.no_grad():
        eye = torch.eye(3, dtype=transforms.dtype)
        M = torch.cat([(transforms[..., :3, :3] - eye).flatten(2), transforms[..., :3, 3] / scale], -1).reshape(T, -1)
        M = (M - M.mean(0)).double()
        e = torch.linalg.svdvals(M).square()
        total = float(e.sum())
        return {"energy": total / (T * B),
                "beyond": {k: float(e[k:].sum()) / total if total > 0 else 0.0 for k in modes}}


def scores(fitter, clip: Path, frames) -> dict:
    """The data terms of the last stage, the full-frame mask IoU and the 3D figures."""
    import torch

    from lasr.evaluate import evaluate
    from lasr.fit import objective as O
    from lasr.io.obj import write_obj

    stage = fitter.stages[-1][1]
    model, (H, W) = fitter.model, fitter.data.image_size
    fitter.prepare_crops(stage)
    T = fitter.data.num_frames  # each data term and the flow's end-point error (crop px) over every frame,
    ids = torch.arange(T, device=fitter.device)  # paired as Fitter.objective pairs them
    direction = O.pair_direction(ids, torch.ones_like(ids), T)
    out, names = {}, set()
    with torch.no_grad():
        n = max(1, stage.batch_size)
        for chunk, d in zip(ids.split(n), direction.split(n)):
            terms, diag = fitter.losses(stage, chunk, d, O.DATA_TERMS)
            names |= set(terms)
            for k, v in {**terms, **diag}.items():
                out[k] = out.get(k, 0.0) + float(v) * len(chunk) / T
    # Fitter.objective's score is linear in the terms' means: from them, not from a second pass
    out["data_terms"] = float(O.weighted_total({k: out[k] for k in names}, stage.weights))
    out["mask_iou"] = float(fitter.full_frame_iou().mean())
    if model.num_bones:
        m = motion_spectrum(model.bone_transforms(), model.rest_radius)
        out["motion_energy"] = m["energy"]
        out.update({f"motion_beyond_{k}": v for k, v in m["beyond"].items()})
    with tempfile.TemporaryDirectory(prefix="truth_start_") as tmp:
        tmp = Path(tmp)
        (tmp / "meshes").mkdir()
        with torch.no_grad():
            verts, f = model().numpy(), (model.focal() * max(H, W)).numpy()
        for k, v in enumerate(verts):
            write_obj(tmp / "meshes" / f"{k:05d}.obj", v, model.faces.numpy())
        src = fitter.data.source_frames.tolist()
        cams = [{"frame": k, "source_frame": int(src[k]), "fx": float(f[min(k, len(f) - 1)]),
                 "fy": float(f[min(k, len(f) - 1)]), "cx": (W - 1) / 2, "cy": (H - 1) / 2} for k in range(len(verts))]
        (tmp / "cameras.json").write_text(json.dumps({"width": W, "height": H, "frames": cams}))
        s = evaluate(tmp, clip, frames=frames, do_iou=False, keypoints=False)["summary"]
    out.update(chamfer_pct=s["per_frame"]["chamfer_pct"]["mean"], f2=s["per_frame"]["f2"]["mean"],
               folds=s["folds"]["mean"])
    return out


def make_fitter(data, run_dir: Path, posed: bool, overrides=()):
    """A fitter of `fast`'s articulated stages (``posed``: `refine` alone), without symmetry,
    remeshing or restarts, ``overrides`` applied (Hydra syntax)."""
    import torch
    from hydra import compose, initialize_config_dir

    from lasr.config import conf_dir
    from lasr.fit import Fitter

    stages = ["~stages.rigid", "~stages.articulate"] if posed else \
        ["~stages.rigid", "stages.articulate.num_faces=null", "stages.articulate.restarts=1",
         "stages.articulate.symmetric=false"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["stages=fast", *stages, "stages.refine.num_faces=null",
                                           "stages.refine.restarts=1", "stages.refine.symmetric=false",
                                           "train.progress=false", *overrides])
    torch.manual_seed(int(cfg.train.seed))
    return Fitter(cfg, data, run_dir, torch.device("cpu"))


def run(data, clip: Path, run_dir: Path, posed: bool, overrides=(), frames=None, log=print) -> dict:
    """Start `fast`'s articulated stages from the truth of ``clip``, fit, and score the start
    and the end: ``{"start": scores, "end": scores, "rms_start": float}``."""
    fitter = make_fitter(data, run_dir, posed, overrides)
    verts, faces, M, cam0 = true_clip(clip, data.source_frames)
    rms = start_from_truth(fitter, verts, faces, M, cam0, posed)
    start = scores(fitter, clip, frames)
    log(f"start: posed vertices {rms:.4f} from the truth (RMS); {_line(start)}")
    fitter.fit()
    end = scores(fitter, clip, frames)
    log(f"end:   {_line(end)}")
    return {"start": start, "end": end, "rms_start": rms}


def score_fit(run_dir: Path, data, clip: Path, frames=None) -> dict:
    """:func:`scores` of a finished fit of the same cache (its ``ckpt/last.pt``, its own stages)."""
    import torch
    from omegaconf import OmegaConf

    from lasr.fit import Fitter

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    with tempfile.TemporaryDirectory(prefix="truth_start_fit_") as tmp:
        fitter = Fitter(cfg, data, Path(tmp), torch.device("cpu"))
        fitter.load_checkpoint(run_dir / "ckpt" / "last.pt")
        return scores(fitter, clip, frames)


def _line(s: dict) -> str:
    names = {"silhouette": "silhouette", "soft_iou": "soft IoU", "flow": "flow"}  # the terms a stage weighs
    terms = ", ".join(f"{label} {s[k]:.5f}" for k, label in names.items() if k in s)
    if "flow_epe_px" in s:
        terms += f": {s['flow_epe_px']:.2f} px"
    return (f"data terms {s['data_terms']:.5f} ({terms}), mask IoU {s['mask_iou']:.4f}, "
            f"Chamfer {s['chamfer_pct']:.2f} %, F@2% {s['f2']:.3f}, folds {100 * s['folds']:.2f} %"
            + ("" if "motion_energy" not in s else f"; bone motion {s['motion_energy']:.3f} per bone and frame, beyond "
               + ", ".join(f"{k.split('_')[-1]} motions {100 * v:.1f} %" for k, v in s.items()
                           if k.startswith("motion_beyond_"))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--from", dest="start", choices=["posed", "rest"], default="rest")
    ap.add_argument("--out", type=Path, default=None, help="the fit's folder (checkpoints); default: a temporary one")
    ap.add_argument("--frames", default=None, help="GT frames to score (start:stop[:step]); default all")
    ap.add_argument("--run", type=Path, default=None,
                    help="a finished fit of the same cache: score it the same way first (its hydra.run.dir)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the stages (Hydra syntax)")
    a = ap.parse_intermixed_args(argv)
    from preprocess.layout import load_sequence

    from lasr.data import to_video_data

    if not (a.clip / "gt" / "meshes").is_dir() and not (a.clip / "meshes").is_dir():
        print(f"{a.clip} has no gt/meshes: give a clip with 3D truth (e.g. ../shared/data/cesiumman_walk)")
        return 2
    data = to_video_data(load_sequence(a.cache))
    if a.run is not None:
        print(f"{a.run}: {_line(score_fit(a.run, data, a.clip, a.frames))}")
    with tempfile.TemporaryDirectory(prefix="truth_start_run_") as tmp:
        run(data, a.clip, a.out or Path(tmp), a.start == "posed", a.overrides, a.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
