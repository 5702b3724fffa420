"""``python -m preprocess video=cat.mp4 [masks=...] [preprocess.flow=dis] ...``

Writes (or reuses) the sequence's cache under ``cache_dir/<name>/``; see
:mod:`preprocess.layout` for the layout. Same keys as ``python -m lasr.optimize``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lasr.cli import hydra_entry
from lasr.config import conf_dir
from lasr.errors import exit_on_user_error


@hydra.main(config_path=str(conf_dir()), config_name="preprocess_app", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from .pipeline import run

    with exit_on_user_error():
        result = run(cfg)
        print(result.root)


main = hydra_entry(app)

if __name__ == "__main__":
    main()
