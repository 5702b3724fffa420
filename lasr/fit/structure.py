"""Changes of structure between stages: a new mesh resolution, a new number of bones.

Both keep the fit: every frame's current deformation is what the new structure must
reproduce. A finer mesh comes from edge splits (the surface stays exactly the same, so
thin parts grown so far survive), a coarser one from a remesh; colours and the per-frame
deformed positions are carried to the new vertices. New bones are placed by k-means and
fitted (centres, orientations, precisions and motion) to the old deformation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..geometry.remesh import remesh, split_longest_edges, transfer_vertex_attributes
from ..model.articulated import ArticulatedModel

__all__ = ["StructureChange", "needs_change", "change_structure"]


@dataclass(frozen=True)
class StructureChange:
    """What :func:`change_structure` did: the mask IoU before and after, and whether the
    mesh was remeshed (its vertices then no longer mirror each other)."""

    iou_before: Optional[float] = None
    iou_after: Optional[float] = None
    remeshed: bool = False


def needs_change(model: ArticulatedModel, stage) -> tuple[bool, bool]:
    """``(remesh, new bones)``: whether ``stage`` asks for another face count (beyond 2 %)
    or another number of bones than ``model`` has."""
    want = stage.num_faces
    remesh_needed = want is not None and abs(want - model.faces.shape[0]) > 0.02 * want
    return remesh_needed, stage.num_bones > 0 and stage.num_bones != model.num_bones


@torch.no_grad()
def change_structure(model: ArticulatedModel, stage, distill_steps: int,
                     frame_iou: Callable[[], float]) -> StructureChange:
    """Remesh and/or change the bone count of ``model`` in place for ``stage``.

    Args:
        distill_steps: steps fitting new bones to the current deformation
            (``train.distill_steps``).
        frame_iou: the model's mean full-frame mask IoU, measured before and after.
    """
    remesh_needed, bones_needed = needs_change(model, stage)
    if not (remesh_needed or bones_needed):
        return StructureChange()
    before = frame_iou()
    target = model.deform().detach()  # (T, V, 3) object frame: what the new structure must reproduce
    device = target.device
    if remesh_needed:
        want_faces = int(stage.num_faces)
        rest, faces = model.rest_verts.detach().cpu(), model.faces.cpu()
        if want_faces > faces.shape[0]:
            # refine by edge splits: a decimating remesh smoothed limbs away
            # (cesiumman: IoU 0.809 -> 0.646 at a 1280 -> 2880 change)
            even = want_faces + (want_faces - faces.shape[0]) % 2
            V, F = split_longest_edges(rest, faces, even)
            V, F = torch.as_tensor(V, dtype=rest.dtype), torch.as_tensor(F)
        else:
            V, F = remesh(rest, faces, want_faces)
        # colours and every frame's deformed positions, interpolated at the new vertices
        T = target.shape[0]
        carried = torch.cat([model.colors.detach().cpu(),
                             target.cpu().permute(1, 0, 2).reshape(rest.shape[0], 3 * T)], 1)
        carried = transfer_vertex_attributes(rest, faces, carried, V)
        target = carried[:, 3:].reshape(V.shape[0], T, 3).permute(1, 0, 2).contiguous().to(device)
        model.set_rest_shape(V.to(device), F.to(device), carried[:, :3].to(device))
    if bones_needed:
        model.set_num_bones(stage.num_bones)
    if model.num_bones > 1:
        # new bones: fit them and their motion to the old deformation; the same bones on
        # a new mesh: re-solve the motion only
        model.distill_deformation(target, steps=distill_steps if bones_needed else 0)
    return StructureChange(before, frame_iou(), remesh_needed)
