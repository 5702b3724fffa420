"""``python -m lasr.optimize video=cat.mp4 [stages=fast] [device=cuda] ...``

Preprocesses the video when its cache is missing or stale, fits the articulated model
with the chosen schedule, and writes the run folder (TensorBoard events, checkpoints,
``final/``). ``resume=true`` continues the run in ``hydra.run.dir`` from its last
checkpoint.

With no ``video``, runs the built-in example: a synthetic walking creature generated on
first use (:mod:`lasr.examples.creature`), offline DIS flow, the ``fast`` schedule, and a
comparison of the result with the creature's true masks and meshes at the end.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .config import conf_dir
from .errors import LasrError, exit_on_user_error

__all__ = ["main", "run"]

log = logging.getLogger("lasr")


def example_config(cfg: DictConfig, user_overrides: list[str]) -> tuple[DictConfig, Path]:
    """The config of the built-in example: the creature clip as input, and unless the user
    chose otherwise, the ``fast`` schedule and DIS flow (no downloads)."""
    from hydra import compose

    from .examples.creature import default_example_dir, make_creature_clip

    clip = make_creature_clip(default_example_dir())
    keys = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    extra = [f"video={clip / 'frames'}", f"masks={clip / 'masks'}", "name=creature"]
    if "stages" not in keys:
        extra.append("stages=fast")
    if "preprocess.flow" not in keys and "preprocess/flow" not in keys:
        extra.append("preprocess.flow=dis")
    cfg = compose("config", overrides=[o for o in user_overrides if o.split("=", 1)[0] not in ("video", "masks")]
                  + extra)
    log.info("no video given: running the built-in example (a synthetic walking creature, %s)", clip)
    return cfg, clip


def run(cfg: DictConfig, run_dir: Path, example_gt: Path | None = None) -> Path:
    """Preprocess (if needed), fit and export; returns the ``final/`` folder.

    ``example_gt``: a ground-truth clip to score the result against at the end.
    """
    import preprocess
    from torch.utils.tensorboard import SummaryWriter

    from .data import to_video_data
    from .device import resolve_device
    from .export import write_final
    from .trainer import Fitter

    if not cfg.video:
        raise LasrError("no input given: pass video=PATH (a video file or a folder of frames), "
                        "and masks=FOLDER if you have masks")
    run_dir = Path(run_dir)
    ckpt = run_dir / "ckpt" / "last.pt"
    if cfg.resume and not ckpt.is_file():
        raise LasrError(f"resume=true but {ckpt} does not exist: give hydra.run.dir=<the folder of the run "
                        f"to continue>")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.train.seed)
    t0 = time.perf_counter()
    result = preprocess.run(cfg)
    seq = preprocess.load_sequence(result.root)
    data = to_video_data(seq, cfg.model.crop_scale)
    seconds = {"preprocess": round(time.perf_counter() - t0, 2)}
    log.info("fitting %d frames (%dx%d) on %s with stages: %s", data.num_frames, data.image_size[1],
             data.image_size[0], device, " → ".join(cfg.stages.keys()))
    with SummaryWriter(log_dir=str(run_dir / "tb")) as writer:
        writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
        fitter = Fitter(cfg, data, run_dir, device, writer)
        if cfg.resume:
            fitter.load_checkpoint(ckpt)
            log.info("resuming from %s at stage %d, step %d", ckpt, fitter.stage_index + 1, fitter.stage_step)

        def on_stage_end(f, res):
            seconds[res.name] = round(res.seconds, 2)
            f.writer.add_mesh(f"mesh/{res.name}", vertices=f.model(torch.tensor([0], device=f.device)).cpu(),
                              faces=f.model.faces[None].cpu(),
                              colors=(f.model.colors.detach().clamp(0, 1)[None] * 255).to(torch.uint8).cpu(),
                              global_step=f.global_step)

        fitter.fit(on_stage_end=on_stage_end)
        for r in fitter.results:
            seconds.setdefault(r.name, round(r.seconds, 2))
        seconds["total"] = round(time.perf_counter() - t0, 2)
        final = write_final(fitter, run_dir / "final", seconds)
    log.info("done in %.1f min: %s", seconds["total"] / 60, final)
    if example_gt is not None:
        report_against_truth(final, example_gt)
    print(f"outputs: {final}\n  meshes/*.obj, cameras.json, rest.obj, skeleton.npz, animation.glb, metrics.json\n"
          f"  watch: tensorboard --logdir {run_dir}")
    return final


def report_against_truth(final: Path, gt: Path) -> dict:
    """Score ``final/`` against a ground-truth clip, print the summary, save it beside."""
    import json

    from .evaluate import evaluate

    res = evaluate(final, gt)
    (final / "evaluation.json").write_text(json.dumps(res, indent=1, default=float))
    s = res["summary"]
    print("\nHow close is the fit to the truth (mean over frames, worst in brackets):")
    print(f"  mask IoU                 {s['mask_iou']['mean']:.3f} ({s['mask_iou']['worst']:.3f})")
    pf, sq = s["per_frame"], s["sequence"]
    print(f"  Chamfer, % of diagonal   {pf['chamfer_pct']['mean']:.2f} ({pf['chamfer_pct']['worst']:.2f})"
          "   per-frame similarity alignment")
    print(f"  F-score @2% / @5%        {pf['f2']['mean']:.3f} / {pf['f5']['mean']:.3f}")
    print(f"  whole-clip alignment     Chamfer {sq['chamfer_pct']['mean']:.2f}, F@5% {sq['f5']['mean']:.3f}")
    return res


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        hc = HydraConfig.get()
        gt = None
        if not cfg.video:
            cfg, gt = example_config(cfg, list(hc.overrides.task))
            # record the config actually fitted (the clip, fast, DIS), as Hydra did for the
            # command line's: `python -m lasr.render` and later readers find the frames there
            if hc.output_subdir:
                OmegaConf.save(cfg, Path(hc.runtime.output_dir) / hc.output_subdir / "config.yaml")
        run(cfg, Path(hc.runtime.output_dir), example_gt=gt)


if __name__ == "__main__":
    main()
