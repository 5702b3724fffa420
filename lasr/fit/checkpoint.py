"""Checkpoints of a fit on disk: ``run_dir/ckpt/NAME.pt``, with ``last.pt`` always the newest."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]


def _write(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict, ckpt_dir: Path, filename: str) -> Path:
    """Write ``state`` as ``ckpt_dir/filename`` and as ``last.pt`` (each atomically);
    returns the path of ``last.pt``."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _write(state, ckpt_dir / filename)
    if filename != "last.pt":
        _write(state, ckpt_dir / "last.pt")
    return ckpt_dir / "last.pt"


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """The state saved in ``path``, its tensors on ``device``."""
    return torch.load(path, map_location=device, weights_only=False)
