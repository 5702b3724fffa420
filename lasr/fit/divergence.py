"""Divergence of a fit, found as it happens and reported in one way.

A run of steps (one hypothesis, or a stage's main loop) has diverged when a loss term is
no longer finite, when the weighted loss has grown by orders of magnitude over its first
step (:data:`LOSS_GROWTH`), or when a parameter is no longer finite or has grown far
beyond its size at the run's start (:data:`PARAM_GROWTH`). The report names the stage,
the step, the term or parameter, the last good checkpoint (checkpoints are only written
from finite states, so it is one to resume from) and what to lower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import LasrError
from ..model.articulated import PARAM_GROUPS

__all__ = ["Divergence", "Where", "DivergenceWatch", "LOSS_GROWTH", "LOSS_FLOOR", "PARAM_GROWTH"]

LOSS_GROWTH = 100.0  # a step's weighted loss above this many times the run's first: diverged
LOSS_FLOOR = 0.05  # ... the first counted as at least this (a near-perfect start is no reference)
PARAM_GROWTH = 1000.0  # a parameter above this many times max(1, its largest |value| at the run's start)

_GROUP_OF = {name: group for group, names in PARAM_GROUPS.items() for name in names}


class Divergence(LasrError):
    """The fit diverged; the message says where and what to lower."""


@dataclass(frozen=True)
class Where:
    """Where a fit stands, for the report: the stage's name and learning rate, the step in
    the stage and overall, the last checkpoint written (None: none yet)."""

    stage: str
    lr: float
    stage_step: int
    global_step: int
    checkpoint: Optional[Path]

    def report(self, what: str, lower: str) -> str:
        then = "then resume=true" if self.checkpoint else "then fit again"
        return (f"the fit diverged at stage '{self.stage}', step {self.stage_step} (global step {self.global_step}): "
                f"{what}. Last good checkpoint: {self.checkpoint or 'none yet'}. Lower {lower}, {then}.")


class DivergenceWatch:
    """Watches one run of steps of ``model`` (see the module docstring)."""

    def __init__(self, model: torch.nn.Module):
        self.first_total: Optional[float] = None
        with torch.no_grad():
            self.names = [n for n, p in model.named_parameters() if p.numel()]
            sizes = torch.stack([p.detach().abs().amax() for n, p in model.named_parameters() if p.numel()])
        self.scale = [max(1.0, s) if math.isfinite(s) else 1.0 for s in sizes.tolist()]

    def check_loss(self, terms: dict[str, torch.Tensor], total: torch.Tensor, weights, where: Where) -> None:
        """Raise :class:`Divergence` on a non-finite term or a loss grown by orders of magnitude."""
        for name, value in terms.items():
            if not torch.isfinite(value):
                raise Divergence(where.report(f"the loss became {value.item()} in the term '{name}'",
                                              f"stages.{where.stage}.lr or that term's weight "
                                              f"(stages.{where.stage}.weights.{name})"))
        t = float(total.detach())
        if self.first_total is None:
            self.first_total = t
            return
        ref = max(self.first_total, LOSS_FLOOR)
        if t > LOSS_GROWTH * ref:
            worst = max(terms, key=lambda k: float(getattr(weights, k)) * float(terms[k].detach()))
            raise Divergence(where.report(
                f"the loss grew from {self.first_total:.3g} to {t:.3g} (x{t / ref:.0f}), most in the term "
                f"'{worst}'", f"stages.{where.stage}.lr (now {where.lr:g}) or that term's weight "
                              f"(stages.{where.stage}.weights.{worst})"))

    @torch.no_grad()
    def check_parameters(self, model: torch.nn.Module, where: Where) -> None:
        """Raise :class:`Divergence` on a parameter that is not finite or has exploded."""
        sizes = torch.stack([p.detach().abs().amax() for p in model.parameters() if p.numel()]).tolist()
        for name, size, start in zip(self.names, sizes, self.scale):
            if math.isfinite(size) and size <= PARAM_GROWTH * start:
                continue
            what = (f"the parameter '{name}' became {size}" if not math.isfinite(size) else
                    f"the parameter '{name}' grew to {size:.3g} (at most {start:.3g} at the start)")
            group = _GROUP_OF.get(name)
            lower = f"stages.{where.stage}.lr (now {where.lr:g})" + (f" or model.lr_scale.{group}" if group else "")
            raise Divergence(where.report(what, lower))
