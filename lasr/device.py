"""Device selection from the `device` key (auto | cpu | cuda)."""

from __future__ import annotations

import torch

from .errors import LasrError

__all__ = ["resolve_device"]


def resolve_device(device: object = "auto") -> torch.device:
    name = getattr(device, "value", device) or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LasrError("device=cuda but no CUDA GPU is visible to torch; use device=cpu or device=auto")
    if name not in ("cpu", "cuda"):
        raise LasrError(f"device={name}: use auto, cpu or cuda")
    return torch.device(name)
