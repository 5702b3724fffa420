"""Did the restarts keep the run with the truer shape?

    uv run python experiments/restart_choice.py RUN_FOLDER CLIP_FOLDER [--frames 0:48:4] [--points 6000]

A stage with ``restarts: N`` runs the schedule from it N times and keeps the run whose data
terms over all frames are lowest (`fast`: `articulate` through `refine`, twice). The fit
keeps each run's end (``ckpt/stageNN_NAME_rK.pt`` of the window's last stage); this script
rebuilds every run's posed meshes from them, scores each against the clip's 3D truth
(``python -m lasr.evaluate``: per-frame Chamfer and F@2%, sequence Chamfer) and prints them
beside the score each run was chosen by (TensorBoard ``restarts/NAME_score``) and its
full-frame mask IoU. Over many fits it tells whether the choice follows the 3D shape (README,
Results: "Which articulated run is kept").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.fit.checkpoint import stage_checkpoint  # noqa: E402
from lasr.fit.schedule import restart_windows  # noqa: E402


def _scalars(tb_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]
            if tag.startswith("restarts/")}


def _windows(stages: list, ckpt: Path) -> dict[str, list[Path]]:
    """``{first stage of each restart window: the checkpoint at each run's end}`` (the
    window's last stage; the windows as the fit made them, :func:`restart_windows`)."""
    names = [n for n, _ in stages]
    return {names[w.first]: [ckpt / stage_checkpoint(w.last, names[w.last], k) for k in range(w.count)]
            for w in restart_windows(stages)}


def posed_meshes(path: Path, temperature: float, rot_param: str, out: Path, names: list[str]) -> None:
    """Write the checkpoint's posed meshes (camera frame) as ``out/meshes/NAME``."""
    import torch

    from lasr.fit.checkpoint import load_checkpoint
    from lasr.io.obj import write_obj
    from lasr.model.articulated import ArticulatedModel

    state = load_checkpoint(path)
    sd = state["model"]
    model = ArticulatedModel(sd["rest_verts"], sd["faces"], sd["root_rot"].shape[0],
                             state["structure"]["num_bones"], colors=sd["colors"], rot_param=rot_param,
                             temperature=temperature)
    model.load_state_dict(sd)
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        verts = model(torch.arange(model.num_frames)).numpy()
    faces = model.faces.numpy()
    for name, v in zip(names, verts):
        write_obj(out / "meshes" / name, v, faces)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("clip")
    ap.add_argument("--frames", default=None, help="GT frames to score (start:stop[:step]); default all")
    ap.add_argument("--points", type=int, default=20000, help="surface samples per mesh (fewer: faster, coarser)")
    a = ap.parse_args(argv)
    from omegaconf import OmegaConf

    from lasr.evaluate import evaluate

    run = Path(a.run)
    names = sorted(p.name for p in (run / "final" / "meshes").glob("*.obj"))
    if not names or not (run / ".hydra" / "config.yaml").exists():
        print(f"{run} is not a finished fit (no final/meshes/*.obj or .hydra/config.yaml): give the hydra.run.dir "
              f"of a fit that ended")
        return 2
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    windows = _windows(list(cfg.stages.items()), run / "ckpt")
    if not windows:
        print(f"{run}'s schedule has no stage with restarts > 1")
        return 2
    scores = _scalars(run / "tb")
    for first, runs in windows.items():
        score, iou = scores.get(f"restarts/{first}_score", {}), scores.get(f"restarts/{first}_iou", {})
        kept = min(score, key=score.get) if score else None
        print(f"window from {first}: {len(runs)} runs, kept by the data terms: {kept + 1 if kept is not None else '?'}")
        print("  run   data terms   mask IoU   Chamfer %   F@2%    sequence Chamfer %")
        for k, path in enumerate(runs):
            if not path.exists():
                print(f"  {k + 1}     {path.name} is missing")
                continue
            tmp = Path(tempfile.mkdtemp(prefix="restart_choice_"))
            try:
                posed_meshes(path, float(cfg.model.skinning_temperature), str(cfg.model.rot_param), tmp, names)
                shutil.copy(run / "final" / "cameras.json", tmp / "cameras.json")
                s = evaluate(tmp, a.clip, frames=a.frames, n_points=a.points, do_iou=False)["summary"]
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            mark = "*" if k == kept else " "
            print(f"  {k + 1}{mark}    {score.get(k, float('nan')):10.5f}   {iou.get(k, float('nan')):8.4f}   "
                  f"{s['per_frame']['chamfer_pct']['mean']:9.3f}   {s['per_frame']['f2']['mean']:.3f}   "
                  f"{s['sequence']['chamfer_pct']['mean']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
