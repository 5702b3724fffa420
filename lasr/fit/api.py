"""``lasr.fit(video, ...)``: the whole job (preprocess if needed, fit, write ``final/``) from
Python, with the same configuration as ``python -m lasr.optimize``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

__all__ = ["FitResult", "fit", "compose_config"]


@dataclass(frozen=True)
class FitResult:
    """Where a fit wrote (``run_dir``, its ``final/``) and its ``metrics.json``."""

    run_dir: Path
    final: Path
    metrics: dict

    @property
    def mask_iou(self) -> float:
        return float(self.metrics["mean_mask_iou"])


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in overrides.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def compose_config(stages: str = "fast", values: Optional[Mapping[str, Any]] = None, overrides: tuple[str, ...] = ()):
    """The root config (``conf/config.yaml``) with schedule ``stages``, Hydra-style
    ``overrides`` (``"train.seed=1"``) and then ``values`` set key by key (dotted keys or
    nested dicts; checked against the schema: an unknown key or a wrong type raises with
    the key's name)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ..config import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"stages={stages}", *overrides])
    for key, value in _flatten(values or {}).items():
        OmegaConf.update(cfg, key, value, merge=True)
    return cfg


def fit(video, masks=None, stages: str = "fast", out=None, **overrides) -> FitResult:
    """Preprocess ``video`` (a video file or a folder of frames) if its cache is missing or
    stale, fit it with the schedule ``stages`` and write the run folder.

    Args:
        video, masks: as the ``video=`` and ``masks=`` keys (paths; any characters).
        stages: the schedule (``fast``, ``lasr``, ``rigid``).
        out: the run folder (default ``outputs/<stages>/<date>_<time>``).
        **overrides: any other key of the config, dotted or nested, e.g.
            ``cache_dir="cache"``, ``train={"seed": 1}``, ``**{"stages.refine.iters": 100}``.
    Returns:
        :class:`FitResult` with the run folder, its ``final/`` and its metrics.

    Example::

        import lasr
        result = lasr.fit("cat.mp4", masks="cat_masks/", device="cuda")
        print(result.final, result.mask_iou)
    """
    from omegaconf import OmegaConf

    from .job import check_config, check_run_dir, run_job

    values = {"video": str(video), **({"masks": str(masks)} if masks is not None else {}), **overrides}
    cfg = compose_config(stages, values)
    run_dir = Path(out) if out is not None else Path("outputs") / stages / time.strftime("%Y-%m-%d_%H-%M-%S")
    check_config(cfg)
    check_run_dir(run_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra does: renders find the frames there
    final = run_job(cfg, run_dir)
    return FitResult(run_dir, final, json.loads((final / "metrics.json").read_text()))
