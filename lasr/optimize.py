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
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .cli import hydra_entry
from .config import conf_dir
from .errors import exit_on_user_error

__all__ = ["main"]

log = logging.getLogger("lasr")


def example_config(cfg: DictConfig, user_overrides: list[str]) -> tuple[DictConfig, Path]:
    """The config of the built-in example: the creature clip as input, and unless the user
    chose otherwise, the ``fast`` schedule and DIS flow (no downloads)."""
    from hydra import compose

    from .config import EXAMPLE_SCHEDULE
    from .examples.clip import FPS, default_example_dir, make_creature_clip

    clip = make_creature_clip(default_example_dir())
    keys = {o.split("=", 1)[0].lstrip("+~") for o in user_overrides}
    extra = [f"video={clip / 'frames'}", f"masks={clip / 'masks'}", "name=creature"]
    if "stages" not in keys:
        extra.append(f"stages={EXAMPLE_SCHEDULE}")
    if "preprocess.flow" not in keys and "preprocess/flow" not in keys:
        extra.append("preprocess.flow=dis")
    if "fps" not in keys:
        extra.append(f"fps={FPS:g}")
    cfg = compose("config", overrides=[o for o in user_overrides if o.split("=", 1)[0] not in ("video", "masks")]
                  + extra)
    log.info("no video given: running the built-in example (a synthetic walking creature, %s)", clip)
    return cfg, clip


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
def app(cfg: DictConfig) -> None:
    from .fit.job import run_job

    with exit_on_user_error():
        hc = HydraConfig.get()
        gt = None
        if not cfg.video:
            cfg, gt = example_config(cfg, list(hc.overrides.task))
            # record the config actually fitted (the clip, fast, DIS), as Hydra did for the
            # command line's: `python -m lasr.videos` and later readers find the frames there
            if hc.output_subdir:
                OmegaConf.save(cfg, Path(hc.runtime.output_dir) / hc.output_subdir / "config.yaml")
        final = run_job(cfg, Path(hc.runtime.output_dir))
        if gt is not None:
            report_against_truth(final, gt)


main = hydra_entry(app)

if __name__ == "__main__":
    main()
