"""The coarse-to-fine fit: stages, steps, hypotheses, checkpoints, logging.

A :class:`Fitter` owns the model, the observed data and the schedule. Each stage
(``conf/stages/NAME.yaml``) may change the mesh (remesh), the bones (k-means re-init
plus a re-fit of their per-frame transforms to the current deformation, so the fit is
not undone) and the crop resolution, then runs ``iters`` Adam steps on the parameter
groups it trains. The rigid stage can first try several root-rotation hypotheses and
keep the one with the lowest loss (LASR's viewpoint ambiguity).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from . import losses as L
from .data import Crops, VideoData, crop_intrinsics, make_crops
from .errors import LasrError
from .geometry.mesh import edges_unique, face_pairs, icosphere, laplacian_smoothing, normal_consistency
from .geometry.remesh import remesh, split_longest_edges, transfer_vertex_attributes
from .geometry.rotations import axis_angle_to_matrix
from .geometry.symmetry import mirror_index, symmetry_loss
from .model.articulated import ArticulatedModel
from .render import PerspectiveCamera, RasterSettings, render

__all__ = ["PARAM_GROUPS", "Fitter", "StageResult", "hypothesis_rotations", "full_intrinsics"]

log = logging.getLogger("lasr")

# Parameter groups a stage can train, by attribute name in ArticulatedModel.
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "shape": ("rest_verts",),
    "color": ("colors",),
    "root": ("root_rot", "root_trans"),
    "bones": ("bones.centers", "bones.quaternions", "bones.log_precisions"),
    "motion": ("bone_rot", "bone_trans"),
    "focal": ("log_focal",),
}


DIAGNOSTICS = ("iou", "flow_epe_px")  # logged per step beside the loss terms


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


def turn_rotations(num_frames: int, degrees: float, dtype=torch.float32) -> torch.Tensor:
    """(T,3,3) rotations about the camera's vertical axis, from 0 at the first frame to
    ``degrees`` at the last at a constant rate: a turn hypothesis (``StageConfig.turns``)."""
    frac = torch.arange(num_frames, dtype=torch.float64) / max(num_frames - 1, 1)
    axis_angle = torch.zeros(num_frames, 3, dtype=torch.float64)
    axis_angle[:, 1] = math.radians(degrees) * frac
    return axis_angle_to_matrix(axis_angle).to(dtype)


def full_intrinsics(focal: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N,4) full-frame intrinsics from (N,) focal lengths in units of the longer side;
    principal point at the image centre."""
    H, W = image_size
    f = focal * max(H, W)
    c = focal.new_tensor([(W - 1) / 2, (H - 1) / 2]).expand(focal.shape[0], 2)
    return torch.cat([f[:, None], f[:, None], c], -1)


def _distance_maps(mask: torch.Tensor) -> torch.Tensor:
    """(N,R,R) distance (in units of R) from each pixel to the mask (0 inside)."""
    out = []
    for m in mask.cpu().numpy():
        outside = (m < 0.5).astype(np.uint8)
        d = cv2.distanceTransform(outside, cv2.DIST_L2, 3) if outside.any() else np.zeros_like(m)
        out.append(torch.from_numpy(d.astype(np.float32)) / m.shape[0])
    return torch.stack(out)


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
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "ckpt"
        self.device = device
        self.writer = writer
        self.stages = list(cfg.stages.items())
        if not self.stages:
            raise LasrError("the schedule has no stages: choose one with stages=lasr|fast|rigid")
        self.global_step = 0
        self.stage_index = 0
        self.stage_step = 0
        self.results: list[StageResult] = []
        self.last_good_checkpoint: Optional[Path] = None
        self.model = self._init_model().to(device)
        self._mirror = mirror_index(self.model.rest_verts.detach().cpu()).to(device)
        self.crops: Optional[Crops] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        # restarts (StageConfig.restarts): (first stage, last stage, count) of each run of
        # stages that restarts, in order; the window now running (or next), its current
        # restart, the state at its start and the best finished restart so far (IoU, state)
        self.windows = self._restart_windows()
        self.window = 0
        self.kept: list[dict] = []  # each finished window's kept restart: stage, restart, mask IoU, turn
        self.restart = 0
        self.branch: Optional[dict] = None
        self.best: Optional[tuple[float, dict]] = None

    # ------------------------------------------------------------------ set-up
    def _restart_windows(self) -> list[tuple[int, int, int]]:
        """``(first, last, count)`` for each stage that sets ``restarts`` > 1: the stages it
        repeats (through its ``restart_until``) and how often. Validates ``turns`` too."""
        names = [n for n, _ in self.stages]
        windows = []
        for i, (name, st) in enumerate(self.stages):
            n = int(st.restarts)
            if n < 1:
                raise LasrError(f"stages.{name}.restarts must be >= 1, got {n}")
            until = st.restart_until
            if until is not None and (until not in names or names.index(until) < i):
                raise LasrError(f"stages.{name}.restart_until={until!r} is not a stage at or after it; "
                                f"stages: {', '.join(names)}")
            if n > 1:
                windows.append((i, len(names) - 1 if until is None else names.index(until), n))
            n_turns = len(st.turns)
            if n_turns == 0:
                raise LasrError(f"stages.{name}.turns is empty: give at least one turn in degrees, e.g. [0]")
            if n_turns > n:
                raise LasrError(f"stages.{name}.turns has {n_turns} turns, each tried as one restart: "
                                f"set stages.{name}.restarts to at least {n_turns}")
        for (a, end, _), (b, _, _) in zip(windows, windows[1:]):
            if b <= end:
                raise LasrError(f"stages.{names[a]}.restarts repeats the stages through {names[end]}, which "
                                f"overlaps the restarts of stages.{names[b]}: set stages.{names[a]}.restart_until "
                                f"to a stage before {names[b]}")
        return windows

    def _in_restarts(self, si: int) -> bool:
        """Whether stage ``si`` belongs to the restart window now running."""
        return self.window < len(self.windows) and self.windows[self.window][0] <= si <= self.windows[self.window][1]

    def _starts_window(self, si: int) -> bool:
        """Whether stage ``si`` is the first of the restart window now running."""
        return self._in_restarts(si) and self.windows[self.window][0] == si

    @staticmethod
    def _turn(stage, restart: int) -> float:
        """The root turn (degrees over the clip) restart ``restart`` of ``stage`` starts from."""
        return float(stage.turns[restart % len(stage.turns)])

    def _init_model(self) -> ArticulatedModel:
        m = self.cfg.model
        V, F = icosphere(m.subdivisions)
        T = self.data.num_frames
        model = ArticulatedModel(V, F, T, num_bones=1, rot_param=m.rot_param, focal=m.focal,
                                 per_frame_focal=m.per_frame_focal, temperature=m.skinning_temperature,
                                 seed=self.cfg.train.seed)
        with torch.no_grad():
            model.root_trans.copy_(self._init_translations(model))
        return model

    def _init_translations(self, model: ArticulatedModel) -> torch.Tensor:
        """Place the unit sphere so that it projects onto each frame's mask box."""
        K = full_intrinsics(model.focal().detach().cpu(), self.data.image_size)  # (T,4)
        boxes = self.data.boxes
        radius_px = boxes[:, 2] / (2 * self.cfg.model.crop_scale)
        z = K[:, 0] / radius_px
        x = (boxes[:, 0] - K[:, 2]) * z / K[:, 0]
        y = (boxes[:, 1] - K[:, 3]) * z / K[:, 1]
        return torch.stack([x, y, z], -1)

    @property
    def depth_scale(self) -> float:
        return float(self.model.root_trans[:, 2].detach().abs().mean())

    def _optimizer(self, stage) -> torch.optim.Optimizer:
        named = dict(self.model.named_parameters())
        groups = []
        for group in stage.train:
            if group not in PARAM_GROUPS:
                raise LasrError(f"stage trains unknown group {group!r}; groups: {', '.join(PARAM_GROUPS)}")
            if group == "motion" and stage.num_bones == 0:
                continue  # rigid stage: no articulation
            lr = stage.lr * float(self.cfg.model.lr_scale.get(group, 1.0))
            if group == "root":  # translations live at the scale of the depth
                groups.append({"params": [named["root_rot"]], "lr": lr, "name": "root_rot"})
                groups.append({"params": [named["root_trans"]], "lr": lr * self.depth_scale, "name": "root_trans"})
                continue
            groups.append({"params": [named[n] for n in PARAM_GROUPS[group]], "lr": lr, "name": group})
        for g in groups:
            g["base_lr"] = g["lr"]
        return torch.optim.Adam(groups)

    def _decay_lr(self, stage, iters: int) -> None:
        """Cosine decay from each group's base learning rate to ``stage.lr_final`` x it."""
        progress = min(self.stage_step / max(iters, 1), 1.0)
        factor = stage.lr_final + (1.0 - stage.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        for g in self.optimizer.param_groups:
            g["lr"] = g.setdefault("base_lr", g["lr"]) * factor

    def _settings(self, stage, res: Optional[tuple[int, int]] = None, sigma: Optional[float] = None):
        return RasterSettings(image_size=res or (stage.resolution, stage.resolution),
                              sigma=stage.sigma if sigma is None else sigma,
                              faces_per_pixel=stage.faces_per_pixel)

    def _prepare_crops(self, stage) -> None:
        if self.crops is None or self.crops.res != stage.resolution:
            self.crops = make_crops(self.data, stage.resolution).to(self.device)
            self._dist = _distance_maps(self.crops.mask).to(self.device)

    # ------------------------------------------------------------------ a step
    def _crop_K(self, ids: torch.Tensor) -> torch.Tensor:
        K = full_intrinsics(self.model.focal(ids), self.data.image_size)
        return crop_intrinsics(K, self.crops.boxes[ids], self.crops.res)

    def _sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.data.num_frames
        ids = torch.randperm(T, generator=gen)[: min(batch_size, T)]
        direction = self._pair_direction(ids, torch.where(torch.rand(len(ids), generator=gen) < 0.5, -1, 1))
        return ids.to(self.device), direction.to(self.device)

    def _pair_direction(self, ids: torch.Tensor, preferred: torch.Tensor) -> torch.Tensor:
        """The frame each of ``ids`` is paired with, as ``±1``: ``preferred``, except
        forwards from the first frame and backwards from the last."""
        return torch.where(ids == 0, 1, torch.where(ids == self.data.num_frames - 1, -1, preferred))

    def losses(self, stage, ids: torch.Tensor, direction: torch.Tensor) -> tuple[dict, dict]:
        """Loss terms (dict name -> scalar) and diagnostics for a batch of frames."""
        w = stage.weights
        m = self.model
        B = len(ids)
        pair = ids + direction
        all_ids = torch.cat([ids, pair])
        obj = m.deform(all_ids)  # (2B,V,3) object frame
        verts = m.to_camera(obj, all_ids)  # (2B,V,3) camera frame
        K = self._crop_K(all_ids)
        need_flow = w.flow != 0
        out = render(verts[:B], m.faces, K[:B], self._settings(stage),
                     attributes=m.colors if w.color != 0 else None,
                     verts_next=verts[B:] if need_flow else None, cameras_next=K[B:] if need_flow else None)
        c = self.crops
        mask, valid = c.mask[ids], c.inside[ids]
        terms = {"silhouette": L.silhouette_loss(out.silhouette, mask, valid)}
        if w.soft_iou != 0:
            terms["soft_iou"] = L.soft_iou_loss(out.silhouette, mask, valid)
        diag = {"iou": L.mask_iou(out.silhouette, mask, valid).mean()}
        if need_flow:
            flow_obs, conf = c.flow(ids, direction)
            weight = conf * (mask > 0.5) * out.mask
            terms["flow"] = L.flow_loss(out.flow, flow_obs, weight, c.res)
            with torch.no_grad():
                diag["flow_epe_px"] = ((out.flow - flow_obs).norm(dim=-1) * weight).sum() / weight.sum().clamp_min(1)
        if w.color != 0:
            terms["color"] = L.color_loss(out.attributes, c.rgb[ids], mask * out.mask)
        if w.laplacian != 0:
            terms["laplacian"] = laplacian_smoothing(m.rest_verts, m.faces)
        if w.normal != 0:
            terms["normal"] = normal_consistency(m.rest_verts, m.faces, self._pairs)
        if w.symmetry != 0 and stage.symmetric and self._mirror is not None:
            terms["symmetry"] = symmetry_loss(m.rest_verts, self._mirror)
        if stage.num_bones > 0:
            if w.deformation != 0:
                terms["deformation"] = L.deformation_loss(obj, m.rest_verts.detach(), m.rest_radius)
            if w.edge != 0:
                terms["edge"] = L.edge_loss(obj[:B], obj[B:], self._edges)
            if w.bones_inside != 0:
                g = m.bone_transforms(ids)  # (B,J,4,4)
                centers = (g[..., :3, :3] @ m.bones.centers[None, :, :, None])[..., 0] + g[..., :3, 3]
                cam = m.to_camera(centers, ids)
                uv = PerspectiveCamera(K[:B]).project(cam, near=1e-3)[0]
                terms["bones_inside"] = L.bones_inside_loss(uv, self._dist[ids])
        if w.coverage != 0:
            uv = PerspectiveCamera(K[:B]).project(verts[:B], near=1e-3)[0]
            terms["coverage"] = L.coverage_loss(uv, mask, out.silhouette, self._dist[ids])
        if w.camera_smooth != 0 and self.data.num_frames > 1:
            R, t = m.root_transforms()
            terms["camera_smooth"] = L.camera_smoothness(R, t, self.depth_scale)
        return terms, diag

    def _check_finite(self, terms: dict, stage_name: str) -> None:
        for name, value in terms.items():
            if not torch.isfinite(value):
                where = self.last_good_checkpoint or "none yet"
                raise LasrError(
                    f"the loss became {value.item()} at stage '{stage_name}', step {self.stage_step} "
                    f"(global step {self.global_step}), in the term '{name}'. Last good checkpoint: {where}. "
                    f"Lower stages.{stage_name}.lr or that term's weight, then resume=true."
                )

    PER_FRAME = ("root_rot", "root_trans", "bone_rot", "bone_trans")

    def _lazy_step(self, frames: torch.Tensor) -> None:
        """Optimizer step that moves per-frame parameters only for the frames in the batch.

        Adam keeps moving a parameter on its momentum for many steps after its last
        gradient; per-frame parameters of frames left out of a batch would drift between
        their visits. This restores them (the "lazy Adam" of sparse embeddings)."""
        m = self.model
        keep = torch.ones(self.data.num_frames, dtype=torch.bool, device=self.device)
        keep[frames] = False
        saved = {n: getattr(m, n).detach()[keep].clone() for n in self.PER_FRAME}
        if m.log_focal.shape[0] > 1:
            saved["log_focal"] = m.log_focal.detach()[keep].clone()
        self.optimizer.step()
        with torch.no_grad():
            for n, v in saved.items():
                getattr(m, n)[keep] = v

    def _run_steps(self, stage, name: str, n: int, gen: torch.Generator,
                   bar: Optional[tqdm] = None, on_step: Optional[Callable] = None,
                   before_step: Optional[Callable] = None) -> dict:
        """n optimizer steps; returns the mean of the last steps' terms."""
        recent: list[dict] = []
        for _ in range(n):
            if before_step:
                before_step()
            ids, direction = self._sample(stage.batch_size, gen)
            terms, diag = self.losses(stage, ids, direction)
            self._check_finite(terms, name)
            total = L.total_loss(terms, stage.weights)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self._lazy_step(torch.cat([ids, ids + direction]))
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

    # ------------------------------------------------------------------ stages
    @torch.no_grad()
    def render_full(self, ids: torch.Tensor, settings: RasterSettings, chunk: int = 8, flow: bool = False):
        """Render the model over the full frames ``ids`` in chunks (bounded memory).

        Yields ``(chunk ids, RenderOutput)``; with ``flow`` the output holds the flow
        from each frame to the next (``ids`` must then exclude the last frame)."""
        H, W = self.data.image_size
        m = self.model
        for s in range(0, len(ids), chunk):
            b = ids[s : s + chunk].to(self.device)
            K = full_intrinsics(m.focal(b), (H, W))
            kw = {}
            if flow:
                kw = {"verts_next": m(b + 1), "cameras_next": full_intrinsics(m.focal(b + 1), (H, W))}
            yield b, render(m(b), m.faces, K, settings, silhouette=False, **kw)

    @torch.no_grad()
    def full_frame_iou(self, ids: Optional[torch.Tensor] = None, chunk: int = 8) -> torch.Tensor:
        """(N,) hard mask IoU of the model against the observed full-frame masks."""
        ids = torch.arange(self.data.num_frames) if ids is None else ids
        settings = RasterSettings(image_size=self.data.image_size, sigma=0.0, faces_per_pixel=1)
        out = [L.mask_iou(o.mask.float(), self.data.mask[b.cpu()].to(self.device)).cpu()
               for b, o in self.render_full(ids, settings, chunk)]
        return torch.cat(out)

    @torch.no_grad()
    def _change_structure(self, stage) -> tuple[Optional[float], Optional[float]]:
        """Remesh and/or change the bone count for a new stage, keeping the fit."""
        m = self.model
        want_faces = stage.num_faces
        remesh_needed = want_faces is not None and abs(want_faces - m.faces.shape[0]) > 0.02 * want_faces
        bones_needed = stage.num_bones > 0 and stage.num_bones != m.num_bones
        if not (remesh_needed or bones_needed):
            return None, None
        before = float(self.full_frame_iou().mean())
        # the current deformation of every frame: what the new structure must reproduce
        target = m.deform().detach()  # (T, V, 3) object frame
        if remesh_needed:
            rest, faces = m.rest_verts.detach().cpu(), m.faces.cpu()
            if want_faces > faces.shape[0]:
                # refine by edge splits: the surface stays exactly the same, so thin parts
                # grown so far (limbs) survive; a decimating remesh smoothed them away
                # (cesiumman: IoU 0.809 -> 0.646 at a 1280 -> 2880 change)
                even = int(want_faces) + (int(want_faces) - faces.shape[0]) % 2
                V, F = split_longest_edges(rest, faces, even)
                V, F = torch.as_tensor(V, dtype=rest.dtype), torch.as_tensor(F)
            else:
                V, F = remesh(rest, faces, int(want_faces))
            # colours and every frame's deformed positions, interpolated at the new vertices
            T = target.shape[0]
            carried = torch.cat([m.colors.detach().cpu(), target.cpu().permute(1, 0, 2).reshape(rest.shape[0], 3 * T)], 1)
            carried = transfer_vertex_attributes(rest, faces, carried, V)
            target = carried[:, 3:].reshape(V.shape[0], T, 3).permute(1, 0, 2).contiguous().to(self.device)
            m.set_rest_shape(V.to(self.device), F.to(self.device), carried[:, :3].to(self.device))
            self._mirror = None  # a remeshed surface is no longer vertex-symmetric
        if bones_needed:
            m.set_num_bones(stage.num_bones)
        if m.num_bones > 1:
            # new bones: fit them (centres, orientations, precisions) and their motion to the
            # old deformation; same bones on a new mesh: re-solve the motion only
            m.distill_deformation(target, steps=self.cfg.train.distill_steps if bones_needed else 0)
        self._set_topology()
        after = float(self.full_frame_iou().mean())
        return before, after

    def _hypotheses(self, stage, name: str, gen: torch.Generator, bar: tqdm, turning: torch.Tensor) -> list[float]:
        """Try ``stage.hypotheses`` root rotations, each turning by the (T,3,3) ``turning``
        (:func:`turn_rotations`); keep the best state in place."""
        start = copy.deepcopy(self.model.state_dict())
        rotations = hypothesis_rotations(stage.hypotheses).to(self.device)
        steps = self._cap(stage.hypothesis_iters)
        best, best_state, scores = math.inf, None, []
        for h, R in enumerate(rotations):
            self.model.load_state_dict(start)
            with torch.no_grad():
                self.model.root_rot.copy_(self.model._matrix_to_rot(turning @ R))
            self.optimizer = self._optimizer(stage)
            bar.set_description(f"{name} hypothesis {h + 1}/{len(rotations)}")
            self._run_steps(stage, name, steps, gen, bar)
            score = self.objective(stage)
            scores.append(score)
            if self.writer:
                self.writer.add_scalar(f"hypotheses/{name}", score, h)
            if score < best:
                best, best_state = score, copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(best_state)
        log.info("stage %s: hypothesis losses %s -> kept #%d", name, [round(s, 4) for s in scores],
                 int(np.argmin(scores)) + 1)
        return scores

    def _set_topology(self) -> None:
        """Connectivity the losses need, for the model's current faces."""
        self._edges = edges_unique(self.model.faces)
        self._pairs = face_pairs(self.model.faces)

    @torch.no_grad()
    def objective(self, stage) -> float:
        """The stage's weighted loss over every frame (each with the next one, the last
        with the one before), in chunks of the batch size: a deterministic score that
        compares hypotheses, where the loss of the last random batches would mostly
        compare the batches."""
        T = self.data.num_frames
        ids = torch.arange(T, device=self.device)
        direction = self._pair_direction(ids, torch.ones_like(ids))
        total = 0.0
        for chunk, chunk_dir in zip(ids.split(max(1, stage.batch_size)), direction.split(max(1, stage.batch_size))):
            terms, _ = self.losses(stage, chunk, chunk_dir)
            total += float(L.total_loss(terms, stage.weights)) * len(chunk)
        return total / T

    def _cap(self, n: int) -> int:
        cap = self.cfg.train.max_steps_per_stage
        return n if cap is None else min(n, cap)

    def fit(self, on_stage_end: Optional[Callable[["Fitter", StageResult], None]] = None) -> list[StageResult]:
        """Run (or continue) the schedule, with its restarts (see ``StageConfig.restarts``):
        the stages from a stage that restarts through its ``restart_until`` run
        ``restarts`` times, the run with the best full-frame mask IoU is kept, and the
        schedule goes on from it."""
        while self.window < len(self.windows):
            first, last, count = self.windows[self.window]
            self._fit_stages(on_stage_end, last)
            name = self.stages[first][0]
            iou = float(self.full_frame_iou().mean())
            log.info("%s restart %d/%d: full-frame mask IoU %.4f", name, self.restart + 1, count, iou)
            if self.writer:
                self.writer.add_scalar(f"restarts/{name}_iou", iou, self.restart)
            if self.best is None or iou > self.best[0]:
                self.best = (iou, self._snapshot())
            self.restart += 1
            if self.restart < count:
                self._restore(self.branch)  # the state at the window's start; the step count goes on
                continue
            best_iou, best = self.best
            self._restore(best)
            stage = self.stages[first][1]
            kept = {"stage": name, "restart": best["restart"] + 1, "of": count, "mask_iou": best_iou,
                    "turn": self._turn(stage, best["restart"])}
            turn_note = f"root turn {kept['turn']:g} degrees, " if len(stage.turns) > 1 else ""
            log.info("%s: kept restart %d of %d (%smask IoU %.4f)", name, kept["restart"], count, turn_note, best_iou)
            self.kept.append(kept)
            self.window, self.restart, self.branch, self.best = self.window + 1, 0, None, None
            self.save_checkpoint("last.pt")
        self._fit_stages(on_stage_end, len(self.stages) - 1)
        return self.results

    def _fit_stages(self, on_stage_end, last: int) -> None:
        """Run the stages from ``self.stage_index`` (continuing a stage at ``self.stage_step``)
        through stage ``last``."""
        if self.stage_index > last:
            return
        gen = torch.Generator().manual_seed(self.cfg.train.seed + self.global_step)
        random.seed(self.cfg.train.seed + self.restart)
        self.model.seed = self.cfg.train.seed + self.restart  # k-means of new bones
        for si in range(self.stage_index, last + 1):
            name, stage = self.stages[si]
            resuming = si == self.stage_index and self.stage_step > 0
            self.stage_index = si
            if self._starts_window(si) and not resuming and self.branch is None:
                self.branch = self._snapshot()
            t0 = time.perf_counter()
            result = StageResult(name, 0.0)
            self._prepare_crops(stage)
            if not resuming:
                result.iou_before_change, result.iou_after_change = self._change_structure(stage)
                if result.iou_before_change is not None:
                    log.info("stage %s: mask IoU %.4f before the change, %.4f after", name,
                             result.iou_before_change, result.iou_after_change)
            self._set_topology()
            iters = self._cap(stage.iters)
            hyp_steps = self._cap(stage.hypothesis_iters) * stage.hypotheses if stage.hypotheses > 1 and not resuming else 0
            if self.writer:
                self.writer.add_scalar("stage/index", si, self.global_step)
                self.writer.add_scalar("stage/num_bones", stage.num_bones, self.global_step)
                self.writer.add_scalar("stage/num_faces", self.model.faces.shape[0], self.global_step)
                if result.iou_before_change is not None:
                    self.writer.add_scalar("stage/iou_before_change", result.iou_before_change, si)
                    self.writer.add_scalar("stage/iou_after_change", result.iou_after_change, si)
            desc = f"stage {si + 1}/{len(self.stages)} {name}"
            if self._in_restarts(si):
                desc += f" (restart {self.restart + 1}/{self.windows[self.window][2]})"
            turn = self._turn(stage, self.restart if self._starts_window(si) else 0)
            turning = turn_rotations(self.data.num_frames, turn).to(self.device)  # (T,3,3)
            if turn and not resuming:
                log.info("stage %s: root turning by %g degrees over the clip", name, turn)
                if self.writer:
                    self.writer.add_scalar("restarts/turn", turn, self.restart)
                if not hyp_steps:  # else each hypothesis starts turning
                    with torch.no_grad():
                        R, _ = self.model.root_transforms()
                        self.model.root_rot.copy_(self.model._matrix_to_rot(turning @ R))
            with tqdm(total=hyp_steps + iters, initial=self.stage_step if resuming else 0,
                      desc=desc, unit="step", disable=not self.cfg.train.progress) as bar:
                if hyp_steps:
                    result.hypothesis_losses = self._hypotheses(stage, name, gen, bar, turning)
                    bar.set_description(desc)
                if not resuming or self.optimizer is None:
                    self.optimizer = self._optimizer(stage)
                remaining = iters - self.stage_step

                def on_step(rec: dict) -> None:
                    self.stage_step += 1
                    self.global_step += 1
                    self._log_step(stage, name, rec)

                result.final_terms = self._run_steps(stage, name, remaining, gen, bar, on_step,
                                                     before_step=lambda: self._decay_lr(stage, iters))
            result.seconds = time.perf_counter() - t0
            self.results.append(result)
            self.stage_index, self.stage_step = si + 1, 0
            tag = f"_r{self.restart}" if self._in_restarts(si) else ""
            self.save_checkpoint(f"stage{si:02d}_{name}{tag}.pt")
            if on_stage_end:
                on_stage_end(self, result)

    # ------------------------------------------------------------------ logging
    def _log_step(self, stage, name: str, rec: dict) -> None:
        tc = self.cfg.train
        if self.writer and self.global_step % tc.log_every == 0:
            for k, v in rec.items():
                group = "metric" if k in DIAGNOSTICS else "loss"
                self.writer.add_scalar(f"{group}/{k}", v, self.global_step)
            for g in self.optimizer.param_groups:
                self.writer.add_scalar(f"lr/{g['name']}", g["lr"], self.global_step)
            self.writer.add_scalar("model/focal", float(self.model.focal()[0].detach()), self.global_step)
        if self.writer and tc.image_every and self.global_step % tc.image_every == 0:
            from .visualize import log_panels

            log_panels(self, stage, self.global_step)
        if tc.checkpoint_every and self.global_step % tc.checkpoint_every == 0:
            self.save_checkpoint("last.pt")

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
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
            "mirror": self._mirror,
            "window": self.window,
            "kept": self.kept,
            "restart": self.restart,
            "branch": self.branch,
            "best": self.best,
        }

    def _snapshot(self) -> dict:
        """The fit's state without the optimizer's (a restart starts a fresh optimizer)."""
        state = copy.deepcopy({k: v for k, v in self.state().items() if k not in ("optimizer", "branch", "best")})
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
        self.stage_index = state["stage_index"]
        self.stage_step = state["stage_step"]
        self.results = [StageResult(**r) for r in state["results"]]
        self._mirror = state["mirror"]
        self.optimizer = None

    def save_checkpoint(self, filename: str) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / filename
        tmp = path.with_suffix(".tmp")
        state = self.state()
        torch.save(state, tmp)
        os.replace(tmp, path)
        if filename != "last.pt":  # last.pt always points at the newest state
            tmp = self.ckpt_dir / "last.tmp"
            torch.save(state, tmp)
            os.replace(tmp, self.ckpt_dir / "last.pt")
        self.last_good_checkpoint = self.ckpt_dir / "last.pt"
        return path

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        names = [n for n, _ in self.stages]
        if state["stage_names"] != names:
            raise LasrError(f"{path} was written by a schedule with stages {state['stage_names']}, "
                            f"not {names}: resume with the same stages=... as the interrupted run")
        self._restore(state)
        self.global_step = state["global_step"]
        self.restart = state.get("restart", 0)
        self.window = state.get("window", 0)
        self.kept = state.get("kept", [])
        self.branch = state.get("branch")
        self.best = state.get("best")
        self.last_good_checkpoint = path
        if self.stage_index < len(self.stages) and self.stage_step > 0:
            stage = self.stages[self.stage_index][1]
            self._prepare_crops(stage)
            self.optimizer = self._optimizer(stage)
            if state["optimizer"] is not None:
                try:
                    self.optimizer.load_state_dict(state["optimizer"])
                except ValueError:
                    log.warning("optimizer state in %s does not fit; continuing with a fresh optimizer", path)
