"""``python -m lasr.optimize video=cat.mp4 [stages=fast] [device=cuda] ...``

Preprocesses the video when its cache is missing or stale, fits the articulated model
with the chosen schedule, and writes the run folder (TensorBoard events, checkpoints,
``final/``). ``resume=true`` continues the run in ``hydra.run.dir`` from its last
checkpoint.
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


def run(cfg: DictConfig, run_dir: Path) -> Path:
    """Preprocess (if needed), fit and export; returns the ``final/`` folder."""
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
    log.info("fitting %d frames (%dx%d) on %s with stages=%s (%s)", data.num_frames, data.image_size[1],
             data.image_size[0], device, HydraConfig.get().runtime.choices.get("stages", "?") if HydraConfig.initialized() else "?",
             " → ".join(cfg.stages.keys()))
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
    return final


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
