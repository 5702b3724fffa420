"""The whole job of ``python -m lasr.optimize`` and ``lasr.fit``: check the config,
preprocess the clip (or reuse its cache), fit it (or resume it), write ``final/``."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from omegaconf import OmegaConf

from ..errors import LasrError, Problems

__all__ = ["run_job", "check_config", "check_run_dir"]

log = logging.getLogger("lasr")


def check_config(cfg) -> None:
    """Raise :class:`LasrError` when no video is given, :class:`lasr.errors.ConfigError`
    listing every value of ``cfg`` out of its range (stages, model, train, preprocessing)."""
    from preprocess.guard import check_settings

    from .validate import check_fit

    if not cfg.video:
        raise LasrError("no input given: pass video=PATH (a video file or a folder of frames), "
                        "and masks=FOLDER if you have masks")
    problems = Problems()
    check_fit(cfg, problems)
    check_settings(cfg, problems)
    problems.raise_any()


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`LasrError` when the run folder cannot be written (checkpoints,
    TensorBoard events and ``final/`` go there), before anything is computed."""
    probe = Path(run_dir) / "ckpt" / f".write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise LasrError(f"cannot write the run folder {run_dir} ({e.strerror or e}): give a writable folder with "
                        f"hydra.run.dir=... (lasr.fit: out=...)") from None


def run_job(cfg, run_dir: Path) -> Path:
    """Preprocess (if needed), fit and export; returns the ``final/`` folder.

    ``cfg`` is the composed :class:`lasr.config.LasrConfig`; ``run_dir`` receives the
    TensorBoard events (``tb/``), checkpoints (``ckpt/``) and ``final/``.
    """
    import torch
    from torch.utils.tensorboard import SummaryWriter

    import preprocess

    from ..data import to_video_data
    from ..device import resolve_device
    from ..io.final import write_final
    from .checkpoint import latest_checkpoint
    from .export import DEFAULT_FPS, final_content, fit_metrics
    from .fitter import Fitter

    check_config(cfg)
    run_dir = Path(run_dir)
    ckpt = run_dir / "ckpt" / "last.pt"
    if cfg.resume and latest_checkpoint(ckpt.parent) is None:
        raise LasrError(f"resume=true but {ckpt} does not exist: give hydra.run.dir=<the folder of the run "
                        f"to continue>")
    check_run_dir(run_dir)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.train.seed)
    t0 = time.perf_counter()
    result = preprocess.run(cfg, load=True)  # read under the cache's lock: no other run changes it meanwhile
    data = to_video_data(result.sequence, cfg.model.crop_scale)
    fps = cfg.fps or data.fps
    if fps is None:
        log.warning("%s gives no frame rate: animation.glb plays at %g fps; give fps=<the clip's rate> to set it",
                    cfg.video, DEFAULT_FPS)
    seconds = {"preprocess": round(time.perf_counter() - t0, 2)}
    log.info("fitting %d frames (%dx%d) on %s with stages: %s", data.num_frames, data.image_size[1],
             data.image_size[0], device, " → ".join(cfg.stages.keys()))
    with SummaryWriter(log_dir=str(run_dir / "tb")) as writer:
        writer.add_text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
        fitter = Fitter(cfg, data, run_dir, device, writer)
        if cfg.resume:
            used = fitter.load_checkpoint(ckpt)
            log.info("resuming from %s at stage %d, step %d", used, fitter.stage_index + 1, fitter.stage_step)

        def on_stage_end(f: Fitter, res) -> None:
            seconds[res.name] = round(res.seconds, 2)
            m = f.model
            with torch.no_grad():
                f.logger.mesh(f"mesh/{res.name}", f.global_step, m(torch.tensor([0], device=f.device))[0],
                              m.faces, m.colors.detach())

        fitter.fit(on_stage_end=on_stage_end)
        for r in fitter.results:
            seconds.setdefault(r.name, round(r.seconds, 2))
        seconds["total"] = round(time.perf_counter() - t0, 2)
        metrics = fit_metrics(fitter.model, data, fitter.results, fitter.restarts.kept, seconds, device,
                              trajectory=fitter.trajectory)
        final = write_final(run_dir / "final", final_content(fitter.model, data, metrics, fps))
    log.info("done in %.1f min: %s", seconds["total"] / 60, final)
    print(f"outputs: {final}\n  meshes/*.obj, cameras.json, rest.obj, skeleton.npz, animation.glb, metrics.json\n"
          f"  watch: tensorboard --logdir {run_dir}")
    return final
