"""The schedule read from the config alone: stages, restart windows, root hypotheses.

A schedule (``conf/stages/NAME.yaml``) is an ordered mapping of stages. A stage that sets
``restarts > 1`` opens a *restart window*: the stages from it through its
``restart_until`` (default: the last) run ``restarts`` times from the state at the
window's start (each with its own seed), and the run whose data terms (silhouette and
flow) over all frames are lowest goes on. When the window's first stage tries root
hypotheses, only its first run tries them all; run ``r`` goes on from the ``r``-th best. With
``turn_scales`` (``S`` factors of the estimated turn), run ``r`` starts from the
``(r // S)``-th best hypothesis and the turn scaled by ``turn_scales[r % S]``. Windows may not
overlap. :class:`Restarts` is where a fit stands in them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import LasrError
from ..geometry.rotations import axis_angle_to_matrix

__all__ = ["Window", "Restarts", "restart_windows", "hypothesis_rotations", "capped"]


@dataclass(frozen=True)
class Window:
    """Stages ``first..last`` (indices) run ``count`` times; the first stage's estimated
    turn tried scaled by each of ``turn_scales`` in turn."""

    first: int
    last: int
    count: int
    turn_scales: tuple[float, ...] = (1.0,)


def restart_windows(stages: list[tuple[str, object]]) -> list[Window]:
    """The restart windows of ``[(name, StageConfig), ...]`` in order; validates
    ``restarts`` and ``restart_until`` with errors that name the fix."""
    names = [n for n, _ in stages]
    windows = []
    for i, (name, st) in enumerate(stages):
        n = int(st.restarts)
        if n < 1:
            raise LasrError(f"stages.{name}.restarts must be >= 1, got {n}")
        until = st.restart_until
        if until is not None and (until not in names or names.index(until) < i):
            raise LasrError(f"stages.{name}.restart_until={until!r} is not a stage at or after it; "
                            f"stages: {', '.join(names)}")
        scales = max(len(st.turn_scales), 1)
        if scales > 1 and (not st.trajectory or n % scales):
            fix = [f"stages.{name}.trajectory=true"] if not st.trajectory else []
            fix += [f"stages.{name}.restarts to a multiple of {scales} (now {n})"] if n % scales else []
            raise LasrError(f"stages.{name}.turn_scales={list(st.turn_scales)} scales the estimated turn, each "
                            f"factor tried by a restart: set {' and '.join(fix)}, or turn_scales=[1.0]")
        if n > 1:
            windows.append(Window(i, len(names) - 1 if until is None else names.index(until), n,
                                  tuple(float(f) for f in st.turn_scales) or (1.0,)))
    for a, b in zip(windows, windows[1:]):
        if b.first <= a.last:
            raise LasrError(f"stages.{names[a.first]}.restarts repeats the stages through {names[a.last]}, which "
                            f"overlaps the restarts of stages.{names[b.first]}: set "
                            f"stages.{names[a.first]}.restart_until to a stage before {names[b.first]}")
    return windows


@dataclass
class Restarts:
    """Where a fit stands in its restart windows.

    Attributes:
        windows: all windows, in order; window: the one now running (or next).
        restart: the restart now running in it.
        branch: the fit's state at the window's start (each restart starts from it).
        best: ``(score, state)`` of the best finished restart of the window (the lowest
            data objective over all frames).
        kept: each finished window's kept restart (stage, restart, of, score, mask_iou).
        ranking: the window's first stage's root hypotheses, best first, as its first
            restart scored them (later restarts go on from the next ones).
    """

    windows: list[Window]
    window: int = 0
    restart: int = 0
    branch: Optional[dict] = None
    best: Optional[tuple[float, dict]] = None
    kept: list[dict] = field(default_factory=list)
    ranking: Optional[list[int]] = None

    @property
    def current(self) -> Optional[Window]:
        return self.windows[self.window] if self.window < len(self.windows) else None

    def running(self, si: int) -> bool:
        """Whether stage ``si`` belongs to the window now running."""
        w = self.current
        return w is not None and w.first <= si <= w.last

    def starts(self, si: int) -> bool:
        """Whether stage ``si`` is the first of the window now running."""
        return self.running(si) and self.current.first == si

    def next_window(self) -> None:
        """Close the window now running (its kept restart recorded) and open the next."""
        self.window, self.restart, self.branch, self.best, self.ranking = self.window + 1, 0, None, None, None

    def hypotheses_to_try(self, si: int, count: int) -> list[int]:
        """Which of stage ``si``'s ``count`` root hypotheses it tries now: all, or in restart
        ``r > 0`` of the window it opens only the ``(r // scales)``-th best of the first
        restart's (each hypothesis run with every turn scale)."""
        if self.restart > 0 and self.starts(si) and self.ranking:
            return [self.ranking[(self.restart // len(self.current.turn_scales)) % len(self.ranking)]]
        return list(range(count))

    def turn_scale(self, si: int, scales) -> float:
        """The factor of the estimated turn stage ``si`` starts from: ``scales[r % len]`` in
        restart ``r`` of the window it opens, else the first."""
        return self.scale_of(self.restart) if self.starts(si) else float(scales[0])

    def scale_of(self, restart: int) -> float:
        """The turn scale restart ``restart`` of the window now running tries."""
        scales = self.current.turn_scales
        return scales[restart % len(scales)]

    def keep_best(self, name: str) -> dict:
        """Record the window's best finished restart in ``kept`` (stage, restart, of, score,
        mask_iou, and its turn scale when the window tries several); returns its state."""
        score, state, iou = self.best
        kept = {"stage": name, "restart": state["restart"] + 1, "of": self.current.count, "score": score,
                "mask_iou": iou}
        if len(self.current.turn_scales) > 1:
            kept["turn_scale"] = self.scale_of(state["restart"])
        self.kept.append(kept)
        return state

    def turn_label(self, restart: Optional[int] = None) -> str:
        """``", turn xF"`` for the log: the turn scale of ``restart`` (default: the one now
        running) of the window now running when it tries several, else ``""``."""
        if self.current is None or len(self.current.turn_scales) <= 1:
            return ""
        return f", turn x{self.scale_of(self.restart if restart is None else restart):g}"

    def rank_hypotheses(self, si: int, scores: list[float]) -> None:
        """Keep stage ``si``'s hypothesis scores, best first, when it opens the window now
        running and this is its first run (what :meth:`hypotheses_to_try` goes on from)."""
        if self.restart == 0 and self.starts(si):
            self.ranking = sorted(range(len(scores)), key=scores.__getitem__)

    def state(self) -> dict:
        return {"window": self.window, "kept": self.kept, "restart": self.restart, "branch": self.branch,
                "best": self.best, "ranking": self.ranking}

    def load(self, state: dict) -> None:
        self.window, self.restart = state.get("window", 0), state.get("restart", 0)
        self.kept, self.branch, self.best = state.get("kept", []), state.get("branch"), state.get("best")
        self.ranking = state.get("ranking")


def hypothesis_rotations(n: int, dtype=torch.float32) -> torch.Tensor:
    """(n,3,3) root-rotation hypotheses: azimuths around the camera's vertical axis,
    on two elevation rings (±25°) when ``n > 8``."""
    if n <= 1:
        return torch.eye(3, dtype=dtype)[None]
    rings = [0.0] if n <= 8 else [-25.0, 25.0]
    per = math.ceil(n / len(rings))
    out = []
    for k in range(n):
        ring = rings[k // per]
        az = 2 * math.pi * (k % per) / per + (math.pi / per if ring > 0 else 0.0)
        ry = axis_angle_to_matrix(torch.tensor([0.0, az, 0.0], dtype=torch.float64))
        rx = axis_angle_to_matrix(torch.tensor([math.radians(ring), 0.0, 0.0], dtype=torch.float64))
        out.append((rx @ ry).to(dtype))
    return torch.stack(out)


def capped(n: int, cap: Optional[int]) -> int:
    """``n`` steps, at most ``cap`` (``train.max_steps_per_stage``) when set."""
    return n if cap is None else min(n, cap)
