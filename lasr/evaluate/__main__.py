"""``python -m lasr.evaluate run=OUTPUT_DIR gt=GT_DIR [frames=0:48:4] [...]`` (``--help`` lists the keys)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ..cli import hydra_entry
from ..config import conf_dir
from ..errors import InputError, exit_on_user_error

__all__ = ["main"]


@hydra.main(config_path=str(conf_dir()), config_name="evaluate", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from . import evaluate

    with exit_on_user_error():
        if not cfg.run or not cfg.gt:
            raise InputError("run= and gt= are required: the fit's output folder (or its final/) and the "
                             "ground-truth clip folder (holding gt/ and masks/)")
        kp = cfg.keypoints
        kp = False if kp is not None and str(kp).lower() in ("none", "false", "0", "off") else kp
        try:
            res = evaluate(cfg.run, cfg.gt, frames=cfg.frames, keypoints=kp, n_points=cfg.points,
                           icp_points=cfg.icp_points, iters=cfg.iters, do_iou=cfg.iou, verbose=not cfg.quiet)
        except (FileNotFoundError, ValueError) as e:
            raise InputError(str(e)) from None
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(res, indent=1))
            print("wrote", cfg.out)


main = hydra_entry(app)

if __name__ == "__main__":
    main()
