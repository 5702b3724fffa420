"""The optimizer of a stage: its parameter groups, learning-rate schedule and lazy steps."""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ..errors import LasrError
from ..model.articulated import PARAM_GROUPS, ArticulatedModel

__all__ = ["build_optimizer", "cosine_factor", "set_lr_factor", "lazy_step"]


def build_optimizer(model: ArticulatedModel, stage, lr_scale: Mapping[str, float], depth_scale: float
                    ) -> torch.optim.Adam:
    """Adam over the groups the stage trains (``stage.train``, names of
    :data:`lasr.model.articulated.PARAM_GROUPS`), each at ``stage.lr`` x its
    ``lr_scale``. The root translations' rate is also multiplied by ``depth_scale``
    (they live at the scale of the depth); a rigid stage (no bones) trains no motion."""
    groups = []
    declared = model.param_groups()
    for group in stage.train:
        if group not in declared:
            raise LasrError(f"stage trains unknown group {group!r}; groups: {', '.join(PARAM_GROUPS)}")
        if group == "motion" and stage.num_bones == 0:
            continue
        lr = stage.lr * float(lr_scale.get(group, 1.0))
        if group == "root":
            groups.append({"params": [declared[group]["root_rot"]], "lr": lr, "name": "root_rot"})
            groups.append({"params": [declared[group]["root_trans"]], "lr": lr * depth_scale, "name": "root_trans"})
            continue
        groups.append({"params": list(declared[group].values()), "lr": lr, "name": group})
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.Adam(groups)


def cosine_factor(step: int, iters: int, lr_final: float) -> float:
    """Cosine decay from 1 at step 0 to ``lr_final`` at ``iters``."""
    progress = min(step / max(iters, 1), 1.0)
    return lr_final + (1.0 - lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group's learning rate to ``factor`` x its base rate."""
    for g in optimizer.param_groups:
        g["lr"] = g.setdefault("base_lr", g["lr"]) * factor


def lazy_step(optimizer: torch.optim.Optimizer, model: ArticulatedModel, frames: torch.Tensor) -> None:
    """An optimizer step that moves per-frame parameters only for ``frames``.

    Adam keeps moving a parameter on its momentum for many steps after its last
    gradient; per-frame parameters of frames left out of a batch would drift between
    their visits. This restores them (the "lazy Adam" of sparse embeddings)."""
    per_frame = model.per_frame_parameters()
    keep = torch.ones(model.num_frames, dtype=torch.bool, device=frames.device)
    keep[frames] = False
    saved = {n: p.detach()[keep].clone() for n, p in per_frame.items()}
    optimizer.step()
    with torch.no_grad():
        for n, v in saved.items():
            per_frame[n][keep] = v
