"""``python -m lasr.view run=OUTPUT_DIR [port=8080] [host=127.0.0.1] [video=...]`` (``--help``
lists the keys)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ..config import conf_dir
from ..errors import InputError, exit_on_user_error

__all__ = ["main"]


@hydra.main(config_path=str(conf_dir()), config_name="view", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        if not cfg.run:
            raise InputError("run= is required: the output folder of `python -m lasr.optimize` (its "
                             "hydra.run.dir, holding final/) or that final/ folder")
        if not 0 <= int(cfg.port) <= 65535:
            raise InputError(f"port={cfg.port} is not a TCP port (0-65535)")
        from . import serve

        viewer = serve(cfg.run, host=cfg.host, port=int(cfg.port), video=cfg.video)
    d = viewer.data
    print(f"lasr.view: {d.num_frames} frames, {d.num_bones} bones from {d.source}", flush=True)
    if d.images is None:
        print(f"lasr.view: no input frames ({d.image_note})", flush=True)
    print(f"lasr.view: open {viewer.url}  (Ctrl-C stops it)", flush=True)
    viewer.wait()


if __name__ == "__main__":
    main()
