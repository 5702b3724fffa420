"""The coarse-to-fine fit: the stage loop, its steps, hypotheses and restarts.

A :class:`Fitter` owns the model, the observations and where the fit stands. Each stage
(``conf/stages/NAME.yaml``) may change the structure (:mod:`.structure`) and the crop
resolution, may first try several root-rotation hypotheses and keep the one with the
lowest loss over all frames (LASR's viewpoint ambiguity), then runs ``iters`` steps of
the objective (:mod:`.objective`) with the stage's optimizer (:mod:`.optimizer`).
Restart windows (:mod:`.schedule`) repeat stages and keep the best run.

A checkpoint (:meth:`Fitter.state`) holds everything the rest of the fit depends on, the
random states included, so a resumed fit ends exactly as one not interrupted; a resume on
another sequence is refused. Divergence is watched at every step (:mod:`.divergence`).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data import VideoData, data_fingerprint, distance_maps, full_intrinsics, make_crops
from ..errors import LasrError
from ..geometry.mesh import edges_unique, face_pairs, icosphere
from ..geometry.symmetry import mirror_index
from ..model.articulated import ArticulatedModel
from . import objective as O
from .checkpoint import (NonFiniteState, capture_rng, load_latest, restore_global_rng, restore_stage_rng, save_checkpoint,
                         stage_checkpoint)
from .divergence import Divergence, DivergenceWatch, Where
from .logger import FitLogger
from .metrics import full_frame_iou
from .optimizer import build_optimizer, cosine_factor, lazy_step, load_optimizer_state, set_lr_factor
from .panels import render_panels
from .schedule import Restarts, capped, hypothesis_rotations, restart_windows
from .trajectory import estimate_trajectory, mirror_in_depth, scale_turn, turn_degrees
from .structure import change_structure
from .validate import check_stages

__all__ = ["Fitter", "StageResult"]

log = logging.getLogger("lasr")


@dataclass
class StageResult:
    name: str
    seconds: float
    iou_before_change: Optional[float] = None
    iou_after_change: Optional[float] = None
    hypothesis_losses: list = field(default_factory=list)
    final_terms: dict = field(default_factory=dict)


class Fitter:
    """Fits an :class:`ArticulatedModel` to one video.

    Args:
        cfg: the composed config (``stages``, ``model``, ``train``).
        data: the observations (:class:`lasr.data.VideoData`).
        run_dir: where checkpoints go (``run_dir/ckpt``).
        device: torch device.
        writer: an optional TensorBoard ``SummaryWriter`` (injected, never global).
    """

    def __init__(self, cfg, data: VideoData, run_dir: Path, device: torch.device, writer=None):
        self.cfg = cfg
        self.data = data
        self.ckpt_dir = Path(run_dir) / "ckpt"
        self.device = device
        self.logger = FitLogger(writer, cfg.train.log_every, cfg.train.image_every)
        self.stages = list(cfg.stages.items())
        if not self.stages:
            raise LasrError("the schedule has no stages: choose one with stages=fast|smooth|lasr|rigid")
        check_stages(self.stages)
        self.restarts = Restarts(restart_windows(self.stages))
        self.fingerprint = data_fingerprint(data)  # the sequence a checkpoint belongs to
        self.batch_gen: Optional[torch.Generator] = None  # the batches' generator, while stages run
        self.resumed_rng: Optional[dict] = None  # random states a checkpoint restores at the next stages' start
        self.current_stage: tuple[str, float] = (self.stages[0][0], float(self.stages[0][1].lr))  # name, lr
        self.global_step = self.stage_index = self.stage_step = 0
        self.results: list[StageResult] = []
        self.last_good_checkpoint: Optional[Path] = None
        self.model = self._init_model().to(device)
        self.mirror = mirror_index(self.model.rest_verts.detach().cpu()).to(device)
        self.crops = self.dist = self.optimizer = None
        self.trajectory: Optional[torch.Tensor] = None  # (T,3,3) root rotations from the flow
        self.root_prior: Optional[torch.Tensor] = None  # (T,3,3) what the root_prior term pulls towards
        self.progress = 0.0  # of the stage's main steps
        self.on_step: Optional[Callable[["Fitter", dict], None]] = None  # called after every counted step
        self._set_topology()

    # ------------------------------------------------------------------ set-up
    def _init_model(self) -> ArticulatedModel:
        m = self.cfg.model
        V, F = icosphere(m.subdivisions)  # a sphere, `init_width` as wide across the mirror plane x = 0
        model = ArticulatedModel(V * V.new_tensor([m.init_width, 1.0, 1.0]), F, self.data.num_frames, num_bones=1,
                                 rot_param=m.rot_param, focal=m.focal, per_frame_focal=m.per_frame_focal,
                                 temperature=m.skinning_temperature, seed=self.cfg.train.seed)
        with torch.no_grad():  # the unit sphere projects onto each frame's mask box
            K = full_intrinsics(model.focal().detach().cpu(), self.data.image_size)  # (T,4)
            boxes = self.data.boxes
            z = K[:, 0] / (boxes[:, 2] / (2 * m.crop_scale))
            x = (boxes[:, 0] - K[:, 2]) * z / K[:, 0]
            y = (boxes[:, 1] - K[:, 3]) * z / K[:, 1]
            model.root_trans.copy_(torch.stack([x, y, z], -1))
        return model

    @property
    def depth_scale(self) -> float:
        return float(self.model.root_trans[:, 2].detach().abs().mean())

    def _set_topology(self) -> None:
        self.topology = (edges_unique(self.model.faces), face_pairs(self.model.faces))

    def prepare_crops(self, stage) -> None:
        if self.crops is None or self.crops.res != stage.resolution:
            self.crops = make_crops(self.data, stage.resolution).to(self.device)
            self.dist = distance_maps(self.crops.mask).to(self.device)

    def _new_optimizer(self, stage) -> None:
        self.optimizer = build_optimizer(self.model, stage, self.cfg.model.lr_scale, self.depth_scale)

    # ------------------------------------------------------------------ the objective
    def losses(self, stage, ids: torch.Tensor, direction: torch.Tensor, only=None) -> tuple[dict, dict]:
        """Loss terms (name -> scalar) and diagnostics of a batch (:func:`.objective.batch_terms`)."""
        return O.batch_terms(self.model, stage, self.crops, self.dist, self.topology, self.mirror, ids, direction,
                             self.data.image_size, self.depth_scale, self.root_prior, self.progress, only)

    @torch.no_grad()
    def objective(self, stage, only=O.DATA_TERMS) -> float:
        """The stage's weighted data terms (``only=None``: every term) over every frame (each
        with the next one, the last with the one before), in chunks of the batch size: a
        deterministic score of hypotheses and restarts (the mask IoU does not see depth)."""
        self.prepare_crops(stage)  # none yet when resumed at the end of a restart window
        T = self.data.num_frames
        ids = torch.arange(T, device=self.device)
        direction = O.pair_direction(ids, torch.ones_like(ids), T)
        n = max(1, stage.batch_size)
        total = 0.0
        for chunk, chunk_dir in zip(ids.split(n), direction.split(n)):
            terms, _ = self.losses(stage, chunk, chunk_dir, only)
            total += float(O.weighted_total(terms, stage.weights)) * len(chunk)
        return total / T

    def full_frame_iou(self, ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N,) hard mask IoU of the model against the observed full-frame masks."""
        return full_frame_iou(self.model, self.data, ids)

    # ------------------------------------------------------------------ steps
    def _sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.data.num_frames
        ids = torch.randperm(T, generator=gen)[: min(batch_size, T)]
        preferred = torch.where(torch.rand(len(ids), generator=gen) < 0.5, -1, 1)
        return ids.to(self.device), O.pair_direction(ids, preferred, T).to(self.device)

    def where(self) -> Where:  # where the fit stands, for a divergence report
        return Where(*self.current_stage, self.stage_step, self.global_step, self.last_good_checkpoint)

    def _run_steps(self, stage, name: str, n: int, gen: torch.Generator, bar: Optional[tqdm] = None,
                   on_step: Optional[Callable] = None, before_step: Optional[Callable] = None) -> dict:
        """``n`` optimizer steps; returns the mean of the last steps' terms.

        Raises:
            Divergence: a loss term or a parameter that is not finite, a loss grown by
                orders of magnitude, an exploding parameter (:mod:`.divergence`).
        """
        recent: list[dict] = []
        watch = DivergenceWatch(self.model)
        for _ in range(n):
            if before_step:
                before_step()
            ids, direction = self._sample(stage.batch_size, gen)
            terms, diag = self.losses(stage, ids, direction)
            total = O.weighted_total(terms, stage.weights)
            watch.check_loss(terms, total, stage.weights, self.where())
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            lazy_step(self.optimizer, self.model, torch.cat([ids, ids + direction]))
            if self.cfg.model.fix_gauge and "shape" in stage.train:
                self.model.fix_gauge()
            watch.check_parameters(self.model, self.where())
            rec = {k: float(v.detach()) for k, v in terms.items()}
            rec.update({k: float(v) for k, v in diag.items()})
            rec["total"] = float(total.detach())
            recent = (recent + [rec])[-10:]
            if on_step:
                on_step(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['total']:.4f}", iou=f"{rec['iou']:.3f}")
        return {k: float(np.mean([r[k] for r in recent])) for k in recent[0]} if recent else {}

    def _after_step(self, stage, rec: dict) -> None:
        """Count the step; log it, draw panels and checkpoint when due."""
        self.stage_step, self.global_step = self.stage_step + 1, self.global_step + 1
        step = self.global_step
        if self.logger.wants_scalars(step):
            self.logger.step(step, rec, {g["name"]: g["lr"] for g in self.optimizer.param_groups},
                             float(self.model.focal()[0].detach()))
        if self.logger.wants_panels(step):
            T = self.data.num_frames  # four frames and their next ones
            ids = torch.linspace(0, T - 2, min(4, T - 1)).round().long().to(self.device)
            K = O.crop_cameras(self.model, torch.cat([ids, ids + 1]), self.crops, self.data.image_size)
            self.logger.panels(step, render_panels(self.model, self.crops, K, ids, O.stage_settings(stage)))
        every = self.cfg.train.checkpoint_every
        if every and step % every == 0:
            self.save_checkpoint("last.pt")
        if self.on_step is not None:
            self.on_step(self, rec)

    def _hypotheses(self, stage, name: str, gen: torch.Generator, bar: tqdm, tried: list, which: list[int]
                    ) -> list[float]:
        """Try the root hypotheses ``tried[h]`` for ``h`` in ``which``: a (T,3,3) root
        trajectory and a rotation composed with it (:meth:`_hypotheses_of`); keep the state
        with the lowest data terms over all frames in place. Restart ``r`` of a window this
        stage opens tries only the ``r``-th best of the first's scores (the short tries score
        close; the stage's end tells the best few apart)."""
        start, rs = copy.deepcopy(self.model.state_dict()), self.restarts
        steps = capped(stage.hypothesis_iters, self.cfg.train.max_steps_per_stage)
        best, best_state, scores = math.inf, None, []
        for h in which:
            path, R = tried[h]
            self.model.load_state_dict(start)
            with torch.no_grad():
                self.model.root_rot.copy_(self.model.rot_from_matrix(path @ R))
                self.root_prior = (path @ R).detach().clone()
            self._new_optimizer(stage)
            bar.set_description(f"{name} hypothesis {h + 1}/{len(tried)}")
            self._run_steps(stage, name, steps, gen, bar)
            score = self.objective(stage)
            scores.append(score)
            self.logger.scalar(f"hypotheses/{name}", score, h)
            if score < best:
                best, best_state = score, copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(best_state)
        rs.rank_hypotheses(self.stage_index, scores)
        log.info("stage %s: hypothesis scores %s -> kept #%d", name, [round(s, 4) for s in scores],
                 which[int(np.argmin(scores))] + 1)
        return scores

    # ------------------------------------------------------------------ stages
    def fit(self, on_stage_end: Optional[Callable[["Fitter", StageResult], None]] = None,
            on_step: Optional[Callable[["Fitter", dict], None]] = None) -> list[StageResult]:
        """Run (or continue) the schedule with its restart windows: the stages of a window
        run ``restarts`` times, the run with the lowest data terms over all frames
        (:meth:`objective`) is kept, and the schedule goes on from it.

        Args:
            on_stage_end: called with the fitter and the :class:`StageResult` after each stage.
            on_step: called with the fitter and the step's loss terms after each step of a
                stage's main loop (after its checkpoint, when one is due).
        """
        if on_step is not None:
            self.on_step = on_step
        rs = self.restarts
        while rs.current is not None:
            win = rs.current
            self._fit_stages(on_stage_end, win.last)
            self.batch_gen = self.resumed_rng = None  # the next stages draw from their own seed
            name = self.stages[win.first][0]
            self.root_prior = None
            score = self.objective(self.stages[win.last][1])
            iou = float(self.full_frame_iou().mean())
            log.info("%s restart %d/%d%s: data terms %.5f, full-frame mask IoU %.4f", name, rs.restart + 1, win.count,
                     rs.turn_label(), score, iou)
            self.logger.scalar(f"restarts/{name}_score", score, rs.restart)
            self.logger.scalar(f"restarts/{name}_iou", iou, rs.restart)
            if rs.best is None or score < rs.best[0]:
                rs.best = (score, self._snapshot(), iou)
            rs.restart += 1
            if rs.restart < win.count:
                self._restore(rs.branch)  # the state at the window's start; the step count goes on
                continue
            self._restore(rs.keep_best(name))
            k = rs.kept[-1]
            log.info("%s: kept restart %d of %d%s (data terms %.5f, mask IoU %.4f)", name, k["restart"], win.count,
                     rs.turn_label(k["restart"] - 1), k["score"], k["mask_iou"])
            rs.next_window()
            self.save_checkpoint("last.pt")
        self._fit_stages(on_stage_end, len(self.stages) - 1)
        self.batch_gen = self.resumed_rng = None
        return self.results

    def _fit_stages(self, on_stage_end, last: int) -> None:
        """Run the stages from ``self.stage_index`` (continuing a stage at ``self.stage_step``)
        through stage ``last``."""
        if self.stage_index > last:
            return
        rs, seed = self.restarts, self.cfg.train.seed
        rng, self.resumed_rng = self.resumed_rng, None
        if rng is not None:  # a checkpoint taken inside these stages: go on with its random states
            gen = restore_stage_rng(rng)
        else:
            gen = torch.Generator().manual_seed(seed + self.global_step)
            random.seed(seed + rs.restart)
        self.batch_gen = gen
        self.model.seed = seed + rs.restart  # k-means of new bones
        for si in range(self.stage_index, last + 1):
            name, stage = self.stages[si]
            self.current_stage = (name, float(stage.lr))
            resuming = si == self.stage_index and self.stage_step > 0
            self.stage_index = si
            if rs.starts(si) and not resuming and rs.branch is None:
                rs.branch = self._snapshot()
            t0 = time.perf_counter()
            result = StageResult(name, 0.0)
            self.prepare_crops(stage)
            if not resuming:
                change = change_structure(self.model, stage, self.cfg.train.distill_steps,
                                          lambda: float(self.full_frame_iou().mean()), self.mirror)
                self.mirror = change.mirror
                result.iou_before_change, result.iou_after_change = change.iou_before, change.iou_after
                if change.iou_before is not None:
                    log.info("stage %s: mask IoU %.4f before the change, %.4f after", name, change.iou_before,
                             change.iou_after)
            self._set_topology()
            iters = capped(stage.iters, self.cfg.train.max_steps_per_stage)
            tried = self._hypotheses_of(stage) if stage.hypotheses > 1 and not resuming else []
            which = rs.hypotheses_to_try(si, len(tried)) if tried else []
            hyp_steps = capped(stage.hypothesis_iters, self.cfg.train.max_steps_per_stage) * len(which)
            self.logger.stage_start(self.global_step, si, stage.num_bones, self.model.faces.shape[0],
                                    result.iou_before_change, result.iou_after_change)
            desc = f"stage {si + 1}/{len(self.stages)} {name}"
            if rs.running(si):
                desc += f" (restart {rs.restart + 1}/{rs.current.count})"
            if stage.trajectory and not hyp_steps and not resuming:  # no hypotheses to start from it
                self._start_root(stage)
            with tqdm(total=hyp_steps + iters, initial=self.stage_step if resuming else 0,
                      desc=desc, unit="step", disable=not self.cfg.train.progress) as bar:
                if hyp_steps:
                    result.hypothesis_losses = self._hypotheses(stage, name, gen, bar, tried, which)
                    bar.set_description(desc)
                if not resuming or self.optimizer is None:
                    self._new_optimizer(stage)
                if not resuming:  # the root prior pulls towards where the stage's steps start
                    self.root_prior = self.model.root_transforms()[0].detach().clone()

                def before_step():
                    self.progress = self.stage_step / max(iters, 1)
                    set_lr_factor(self.optimizer, cosine_factor(self.stage_step, iters, stage.lr_final))

                result.final_terms = self._run_steps(stage, name, iters - self.stage_step, gen, bar,
                                                     lambda rec: self._after_step(stage, rec), before_step)
                self.progress = 0.0
            self.logger.turn(f"root/turn_deg_{name}", turn_degrees(self.model.root_transforms()[0].detach().cpu()))
            result.seconds = time.perf_counter() - t0
            self.results.append(result)
            self.stage_index, self.stage_step = si + 1, 0
            self.save_checkpoint(stage_checkpoint(si, name, rs.restart if rs.running(si) else None))
            if on_stage_end:
                on_stage_end(self, result)

    def _trajectory(self, stage) -> torch.Tensor:
        """The (T,3,3) root trajectory a stage starts from: the rotations the flow shows
        (``StageConfig.trajectory``, estimated once per fit: :mod:`.trajectory`), their turn
        scaled by the restart's ``turn_scales`` factor, else the identity."""
        if not stage.trajectory:
            return torch.eye(3, device=self.device).expand(self.data.num_frames, 3, 3)
        return scale_turn(self._estimated_trajectory(), self.restarts.turn_scale(self.stage_index, stage.turn_scales))

    def _estimated_trajectory(self) -> torch.Tensor:
        """The root rotations the flow shows (:func:`.trajectory.estimate_trajectory`), once per fit."""
        if self.trajectory is None:
            est = estimate_trajectory(self.data, float(self.model.focal()[0].detach()) * max(self.data.image_size))
            self.trajectory = torch.as_tensor(est.rotations, dtype=torch.float32, device=self.device)
            log.info("root trajectory from the flow: %s", est.summary())
            self.logger.turn("root/estimated_turn_deg", est.turn())
        return self.trajectory

    def _hypotheses_of(self, stage) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The root hypotheses ``(trajectory, rotation)``, frame t's root starting at
        ``trajectory[t] @ rotation``: ``stage.hypotheses`` rotations with the stage's
        trajectory and, with ``mirror_hypotheses``, with its mirror image in depth."""
        paths, rotations = [self._trajectory(stage)], hypothesis_rotations(stage.hypotheses).to(self.device)
        paths += [mirror_in_depth(paths[0])] if stage.mirror_hypotheses else []
        return [(path, R) for path in paths for R in rotations]

    def _start_root(self, stage) -> None:
        """A stage without hypotheses applies its trajectory to the root rotations."""
        with torch.no_grad():
            R = self.model.root_transforms()[0]
            self.model.root_rot.copy_(self.model.rot_from_matrix(self._trajectory(stage) @ R))

    # ------------------------------------------------------------------ checkpoints
    def rng_state(self) -> dict:  # the random states the rest of the fit draws from
        return capture_rng(self.batch_gen, self.device, self.model.seed)

    def state(self) -> dict:
        """Everything a resumed fit needs (tensors and plain values only): the model, its
        structure, the optimizer, where the fit stands, its results, the restarts, the
        random states and the sequence's fingerprint."""
        m = self.model
        return {
            "model": m.state_dict(),
            "structure": {"num_verts": m.num_verts, "num_faces": int(m.faces.shape[0]), "num_bones": m.num_bones},
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "stage_index": self.stage_index,
            "stage_step": self.stage_step,
            "global_step": self.global_step,
            "stage_names": [n for n, _ in self.stages],
            "results": [r.__dict__ for r in self.results],
            "mirror": self.mirror,
            "trajectory": self.trajectory,
            "root_prior": self.root_prior,
            "sequence": self.fingerprint,
            "rng": self.rng_state(),
            **self.restarts.state(),
        }

    def _snapshot(self) -> dict:
        """The fit's state without the optimizer's (a restart starts a fresh optimizer)."""
        skip = ("optimizer", "branch", "best", "rng", "sequence")
        state = copy.deepcopy({k: v for k, v in self.state().items() if k not in skip})
        state["optimizer"] = None
        return state

    def _restore(self, state: dict) -> None:
        """Load a :meth:`state` or :meth:`_snapshot` into the model and the stage position
        (the global step and the restart bookkeeping stay)."""
        sd = state["model"]
        m = self.model
        if sd["rest_verts"].shape != m.rest_verts.shape or sd["faces"].shape != m.faces.shape:
            m.set_rest_shape(sd["rest_verts"], sd["faces"], sd["colors"])
        if state["structure"]["num_bones"] != m.num_bones:
            m.set_num_bones(state["structure"]["num_bones"])
        m.load_state_dict(sd)
        self._set_topology()  # the faces may be another mesh's of the same size
        self.stage_index = state["stage_index"]
        self.stage_step = state["stage_step"]
        self.results = [StageResult(**r) for r in state["results"]]
        self.mirror = state["mirror"]
        self.optimizer = None

    def save_checkpoint(self, filename: str) -> Path:
        """Write the state as ``ckpt/filename`` and ``ckpt/last.pt`` (:mod:`.checkpoint`).

        Raises:
            Divergence: the state is not finite (nothing is written).
            LasrError: the run folder cannot be written.
        """
        path = self.ckpt_dir / filename
        try:
            self.last_good_checkpoint = save_checkpoint(self.state(), self.ckpt_dir, filename)
        except NonFiniteState as e:
            name, lr = self.current_stage
            raise Divergence(self.where().report(f"{e.key} is not finite, so it was not saved",
                                                 f"stages.{name}.lr (now {lr:g})")) from None
        except OSError as e:
            raise LasrError(f"cannot write the checkpoint {path} ({e.strerror or e}): give a writable run folder "
                            f"(hydra.run.dir=...)") from None
        return path

    def load_checkpoint(self, path: Path) -> Path:
        """Continue from the checkpoint ``path`` (from ``prev.pt`` when ``path`` is a damaged
        ``last.pt``); returns the file used.

        Raises:
            CheckpointError: no usable checkpoint. LasrError: it belongs to another
                sequence or another schedule.
        """
        state, path = load_latest(path, self.device)
        names = [n for n, _ in self.stages]
        if state.get("sequence") != self.fingerprint:
            raise LasrError(f"{path} was written by a fit of another sequence (fingerprint {state.get('sequence')}, "
                            f"this one is {self.fingerprint}): resume only with the video, masks and preprocessing "
                            f"settings of the interrupted run, or start a new run in another hydra.run.dir")
        if state["stage_names"] != names:
            raise LasrError(f"{path} was written by a schedule with stages {state['stage_names']}, "
                            f"not {names}: resume with the same stages=... as the interrupted run")
        self._restore(state)
        self.global_step = state["global_step"]
        self.restarts.load(state)
        self.trajectory = state.get("trajectory")
        self.root_prior = state.get("root_prior")
        self.last_good_checkpoint = path
        rng = state["rng"]
        restore_global_rng(rng, self.device)
        self.model.seed = int(rng["kmeans_seed"])
        self.resumed_rng = rng if rng["batches"] is not None else None
        if self.stage_index < len(self.stages) and self.stage_step > 0:
            stage = self.stages[self.stage_index][1]
            self.prepare_crops(stage)
            self._new_optimizer(stage)
            if state["optimizer"] is not None:
                try:
                    for group, old, new in load_optimizer_state(self.optimizer, state["optimizer"]):
                        log.info("learning rate of %s: %g in %s, %g now", group, old, path, new)
                except ValueError:
                    log.warning("optimizer state in %s does not fit; continuing with a fresh optimizer", path)
                    self._new_optimizer(stage)
        return path
