"""The objective: a batch of frames -> named loss terms -> their weighted total.

A loss term is one function registered here with :func:`term` (its math, when it is worth
reusing or testing alone, lives in :mod:`lasr.losses`) and one weight of the same name in
:class:`lasr.config.LossWeights`. Nothing else names a term: the step loop, the
hypothesis scores, TensorBoard and ``metrics.json`` all take the dict this module returns.

A term is computed when its weight is not 0 and the stage and model allow it (``when``):
e.g. the deformation terms only where there are bones. ``silhouette`` is always computed
(it is the data term the stage logs even at weight 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .. import losses as L
from ..data import Crops, crop_intrinsics, full_intrinsics
from ..geometry.mesh import laplacian_smoothing, normal_consistency
from ..geometry.symmetry import bone_symmetry_loss, symmetry_loss
from ..model.articulated import ArticulatedModel
from ..render import PerspectiveCamera, RasterSettings, RenderOutput, render

__all__ = ["Batch", "Term", "TERMS", "DATA_TERMS", "term", "batch_terms", "weighted_total", "pair_direction",
           "crop_cameras"]


@dataclass
class Batch:
    """Everything a loss term may read for one batch of ``B`` frames, each paired with a
    neighbour (``ids + direction``) for the flow.

    Attributes:
        model: the model; stage: the stage's config (``StageConfig``).
        ids, direction: ``(B,)`` frame indices and ``±1``.
        obj: ``(2B, V, 3)`` articulated vertices (object frame) of ``ids`` then their pairs.
        verts: ``(2B, V, 3)`` the same in camera coordinates.
        K: ``(2B, 4)`` crop intrinsics.
        out: the render of the first ``B``.
        crops: the observations at the stage's resolution; dist: ``(N, R, R)`` distance
            to each mask (:func:`lasr.data.distance_maps`).
        edges, pairs: the mesh's unique edges and neighbouring face pairs.
        mirror: ``(V,)`` mirror permutation of the rest vertices, or None.
        num_frames: frames in the clip; depth_scale: mean root depth.
        root_prior: ``(T, 3, 3)`` the root rotations the stage started from, or None.
        progress: how far the stage is, in [0, 1].
    """

    model: ArticulatedModel
    stage: object
    ids: Tensor
    direction: Tensor
    obj: Tensor
    verts: Tensor
    K: Tensor
    out: RenderOutput
    crops: Crops
    dist: Tensor
    edges: Tensor
    pairs: Tensor
    mirror: Optional[Tensor]
    num_frames: int
    depth_scale: float
    root_prior: Optional[Tensor] = None
    progress: float = 0.0

    @property
    def size(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Term:
    name: str
    fn: Callable[[Batch], Tensor]
    when: Callable[[Batch], bool]
    always: bool = False


TERMS: dict[str, Term] = {}  # in the order they are summed


def term(name: str, when: Optional[Callable[[Batch], bool]] = None, always: bool = False):
    """Register ``fn(batch) -> scalar`` as the loss term ``name`` (see the module docstring)."""

    def register(fn: Callable[[Batch], Tensor]) -> Callable[[Batch], Tensor]:
        if name in TERMS:
            raise ValueError(f"loss term {name!r} registered twice")
        TERMS[name] = Term(name, fn, when or (lambda b: True), always)
        return fn

    return register


def _articulated(b: Batch) -> bool:
    return b.stage.num_bones > 0


@term("silhouette", always=True)
def _silhouette(b: Batch) -> Tensor:
    return L.silhouette_loss(b.out.silhouette, b.crops.mask[b.ids], b.crops.inside[b.ids])


@term("soft_iou")
def _soft_iou(b: Batch) -> Tensor:
    return L.soft_iou_loss(b.out.silhouette, b.crops.mask[b.ids], b.crops.inside[b.ids])


def _flow_weight(b: Batch) -> tuple[Tensor, Tensor]:
    flow_obs, conf = b.crops.flow(b.ids, b.direction)
    return flow_obs, conf * (b.crops.mask[b.ids] > 0.5) * b.out.mask


@term("flow", when=lambda b: b.out.flow is not None)
def _flow(b: Batch) -> Tensor:
    flow_obs, weight = _flow_weight(b)
    return L.flow_loss(b.out.flow, flow_obs, weight, b.crops.res)


@term("color")
def _color(b: Batch) -> Tensor:
    return L.color_loss(b.out.attributes, b.crops.rgb[b.ids], b.crops.mask[b.ids] * b.out.mask)


@term("laplacian")
def _laplacian(b: Batch) -> Tensor:
    return laplacian_smoothing(b.model.rest_verts, b.model.faces)


@term("normal")
def _normal(b: Batch) -> Tensor:
    return normal_consistency(b.model.rest_verts, b.model.faces, b.pairs)


@term("posed_normal", when=_articulated)
def _posed_normal(b: Batch) -> Tensor:
    return normal_consistency(b.obj, b.model.faces, b.pairs)


@term("symmetry", when=lambda b: bool(b.stage.symmetric) and b.mirror is not None)
def _symmetry(b: Batch) -> Tensor:  # the rest shape, and in a stage with mirrored_bones the bones' pairs
    loss = symmetry_loss(b.model.rest_verts, b.mirror)
    if not b.stage.mirrored_bones:
        return loss
    bones = b.model.bones
    return loss + bone_symmetry_loss(bones.centers, bones.rotations(), bones.log_precisions, b.model.bone_mirror)


@term("deformation", when=_articulated)
def _deformation(b: Batch) -> Tensor:
    return L.deformation_loss(b.obj, b.model.rest_verts.detach(), b.model.rest_radius)


@term("edge", when=_articulated)
def _edge(b: Batch) -> Tensor:
    return L.edge_loss(b.obj[: b.size], b.obj[b.size:], b.edges)


@term("arap", when=_articulated)
def _arap(b: Batch) -> Tensor:
    return L.arap_edge_loss(b.obj, b.model.rest_verts, b.edges)


@term("motion_smooth", when=lambda b: _articulated(b) and b.num_frames > 1)
def _motion_smooth(b: Batch) -> Tensor:
    return L.motion_smoothness(b.model.bone_transforms(), b.model.rest_radius)


@term("bones_inside", when=_articulated)
def _bones_inside(b: Batch) -> Tensor:
    m = b.model
    g = m.bone_transforms(b.ids)  # (B,J,4,4)
    centers = (g[..., :3, :3] @ m.bones.centers[None, :, :, None])[..., 0] + g[..., :3, 3]
    uv = PerspectiveCamera(b.K[: b.size]).project(m.to_camera(centers, b.ids), near=1e-3)[0]
    return L.bones_inside_loss(uv, b.dist[b.ids])


@term("coverage")
def _coverage(b: Batch) -> Tensor:
    uv = PerspectiveCamera(b.K[: b.size]).project(b.verts[: b.size], near=1e-3)[0]
    return L.coverage_loss(uv, b.crops.mask[b.ids], b.out.silhouette, b.dist[b.ids])


@term("camera_smooth", when=lambda b: b.num_frames > 1)
def _camera_smooth(b: Batch) -> Tensor:
    R, t = b.model.root_transforms()
    return L.camera_smoothness(R, t, b.depth_scale)


@term("root_prior", when=lambda b: b.root_prior is not None)
def _root_prior(b: Batch) -> Tensor:
    R, _ = b.model.root_transforms()
    return (1.0 - b.progress) * L.trajectory_prior(R, b.root_prior)


DATA_TERMS = ("silhouette", "soft_iou", "flow")  # what scores hypotheses and restarts: the terms that see the video


# ---------------------------------------------------------------------------------------
def pair_direction(ids: Tensor, preferred: Tensor, num_frames: int) -> Tensor:
    """The frame each of ``ids`` is paired with, as ``±1``: ``preferred``, except
    forwards from the first frame and backwards from the last."""
    return torch.where(ids == 0, 1, torch.where(ids == num_frames - 1, -1, preferred))


def crop_cameras(model: ArticulatedModel, ids: Tensor, crops: Crops, image_size: tuple[int, int]) -> Tensor:
    """``(N, 4)`` intrinsics of frames ``ids`` in their crops."""
    return crop_intrinsics(full_intrinsics(model.focal(ids), image_size), crops.boxes[ids], crops.res)


def stage_settings(stage) -> RasterSettings:
    """The soft rasterizer's settings at the stage's crop resolution."""
    return RasterSettings(image_size=(stage.resolution, stage.resolution), sigma=stage.sigma,
                          faces_per_pixel=stage.faces_per_pixel, flow_gradient=stage.flow_gradient)


def batch_terms(model: ArticulatedModel, stage, crops: Crops, dist: Tensor, topology: tuple[Tensor, Tensor],
                mirror: Optional[Tensor], ids: Tensor, direction: Tensor, image_size: tuple[int, int],
                depth_scale: float, root_prior: Optional[Tensor] = None, progress: float = 0.0,
                only: Optional[tuple[str, ...]] = None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The loss terms (name -> scalar) of a batch and its diagnostics (mask IoU, and the
    flow's end-point error in crop pixels when the flow is fitted). ``only``: compute just
    these terms (e.g. :data:`DATA_TERMS`): a score, which sees the flow even where the stage
    does not train on it yet (``flow_from``)."""
    w = stage.weights
    B = len(ids)
    all_ids = torch.cat([ids, ids + direction])
    obj = model.deform(all_ids)  # (2B,V,3) object frame
    verts = model.to_camera(obj, all_ids)  # (2B,V,3) camera frame
    K = crop_cameras(model, all_ids, crops, image_size)
    need_flow = w.flow != 0 and (only is not None or progress >= stage.flow_from)
    out = render(verts[:B], model.faces, K[:B], stage_settings(stage),
                 attributes=model.colors if w.color != 0 else None,
                 verts_next=verts[B:] if need_flow else None, cameras_next=K[B:] if need_flow else None)
    edges, pairs = topology
    batch = Batch(model, stage, ids, direction, obj, verts, K, out, crops, dist, edges, pairs, mirror,
                  model.num_frames, depth_scale, root_prior, progress)
    terms = {name: t.fn(batch) for name, t in TERMS.items()
             if (t.always or float(getattr(w, name)) != 0) and t.when(batch) and (only is None or name in only)}
    diag = {"iou": L.mask_iou(out.silhouette, crops.mask[ids], crops.inside[ids]).mean()}
    if need_flow:
        with torch.no_grad():
            flow_obs, weight = _flow_weight(batch)
            diag["flow_epe_px"] = ((out.flow - flow_obs).norm(dim=-1) * weight).sum() / weight.sum().clamp_min(1)
    return terms, diag


def weighted_total(terms: dict[str, Tensor], weights) -> Tensor:
    """Σ weight·term over the terms present; ``weights`` is a ``LossWeights`` (or a
    DictConfig of it)."""
    total = None
    for name, value in terms.items():
        w = float(getattr(weights, name))
        if w != 0.0:
            total = w * value if total is None else total + w * value
    if total is None:
        raise ValueError("all loss weights are zero")
    return total
