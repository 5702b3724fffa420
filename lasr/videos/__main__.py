"""``python -m lasr.videos run=OUTPUT_DIR [outputs=overlay+views] [...]`` (``--help`` lists the keys)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ..cli import hydra_entry
from ..config import conf_dir
from ..errors import InputError, exit_on_user_error

__all__ = ["main"]


@hydra.main(config_path=str(conf_dir()), config_name="videos", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from . import VideoOptions, render_run

    with exit_on_user_error():
        if not cfg.run:
            raise InputError("run= is required: the output folder of `python -m lasr.optimize` (its "
                             "hydra.run.dir, holding final/) or that final/ folder")
        render_run(cfg.run, VideoOptions.from_config(cfg))


main = hydra_entry(app)

if __name__ == "__main__":
    main()
