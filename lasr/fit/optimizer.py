"""The optimizer of a stage: its parameter groups, learning-rate schedule and lazy steps.

Every group is stepped by Adam, except the rest shape when the stage sets
``shape_lambda > 0``: then it is stepped in the Laplacian-preconditioned coordinates of
:mod:`.preconditioned`. :class:`StageOptimizer` holds both behind one interface.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

from ..errors import LasrError
from ..model.articulated import PARAM_GROUPS, ArticulatedModel

__all__ = ["StageOptimizer", "build_optimizer", "load_optimizer_state", "cosine_factor", "set_lr_factor", "lazy_step"]


class StageOptimizer:
    """Several optimizers stepped as one (Adam, and :class:`.preconditioned.LaplacianAdam`
    for the shape when the stage asks for it): ``param_groups``, ``step``, ``zero_grad``
    and ``state_dict`` as ``torch.optim`` has them."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        """Raises ValueError when ``state`` is not of optimizers like these."""
        parts = state.get("optimizers") if isinstance(state, dict) else None
        if parts is None or len(parts) != len(self.optimizers):
            raise ValueError("optimizer state of another kind")
        for o, sd in zip(self.optimizers, parts):
            o.load_state_dict(sd)


def build_optimizer(model: ArticulatedModel, stage, lr_scale: Mapping[str, float], depth_scale: float
                    ) -> StageOptimizer:
    """The optimizer of the groups the stage trains (``stage.train``, names of
    :data:`lasr.model.articulated.PARAM_GROUPS`), each at ``stage.lr`` x its
    ``lr_scale``. The root translations' rate is also multiplied by ``depth_scale``
    (they live at the scale of the depth); a rigid stage (no bones) trains no motion.
    With ``stage.shape_lambda > 0`` the rest shape takes Laplacian-preconditioned steps
    (:class:`.preconditioned.LaplacianAdam`), the rest Adam's."""
    from .preconditioned import LR_GAIN, LaplacianAdam

    groups, shape, lr_of = [], None, {}
    declared = model.param_groups()
    for group in stage.train:
        if group not in declared:
            raise LasrError(f"stage trains unknown group {group!r}; groups: {', '.join(PARAM_GROUPS)}")
        if group == "motion" and stage.num_bones == 0:
            continue
        lr = stage.lr * float(lr_scale.get(group, 1.0))
        lr_of.update({"root_rot": lr, "root_trans": lr} if group == "root" else {group: lr})
        if group == "shape" and float(stage.shape_lambda) > 0:
            lr *= LR_GAIN
            shape = LaplacianAdam([{"params": [declared[group]["rest_verts"]], "lr": lr, "name": group}],
                                  model.faces, float(stage.shape_lambda), lr=lr)
            continue
        if group == "root":
            groups.append({"params": [declared[group]["root_rot"]], "lr": lr, "name": "root_rot"})
            groups.append({"params": [declared[group]["root_trans"]], "lr": lr * depth_scale, "name": "root_trans"})
            continue
        groups.append({"params": list(declared[group].values()), "lr": lr, "name": group})
    optimizers = [torch.optim.Adam(groups)] if groups else []
    if shape is not None:
        optimizers.append(shape)
    for o in optimizers:
        for g in o.param_groups:
            g["base_lr"] = g["lr"]
            g["nominal_lr"] = lr_of[g["name"]]  # the configured rate, before the schedule, the depth and LR_GAIN
    return StageOptimizer(optimizers)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> list[tuple[str, float, float]]:
    """Load the state ``saved`` (``optimizer.state_dict()`` of a checkpoint) into the fresh
    ``optimizer`` of the same stage. A group whose configured rate (``stages.NAME.lr`` x
    ``model.lr_scale``) changed since keeps its schedule, scaled to the new rate, so a
    fit resumed with a lower ``lr`` runs with it. Returns ``(group, old, new)`` of those.

    Raises:
        ValueError: ``saved`` does not fit ``optimizer``.
    """
    fresh = {g["name"]: g["nominal_lr"] for g in optimizer.param_groups}
    optimizer.load_state_dict(saved)
    changed = []
    for g in optimizer.param_groups:
        new, old = fresh.get(g["name"]), g.get("nominal_lr")
        if new is not None and old is not None and new != old:
            g["base_lr"] = g["base_lr"] * new / old if old > 0 else new
            g["nominal_lr"] = new
            changed.append((g["name"], old, new))
    return changed


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
