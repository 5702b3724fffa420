"""Changes of structure between stages: a new mesh, a new number of bones.

Both keep the fit: every frame's current deformation is what the new structure must
reproduce. A stage that sets ``num_faces`` starts with an isotropic remesh of the rest
shape to about that many well-shaped triangles on the same surface
(:func:`lasr.geometry.isotropic.isotropic_remesh`: limbs grown from a few stretched
triangles get as many as their area needs, thin parts survive); a mirror-symmetric rest
shape stays exactly symmetric, with its mirror map carried along. Colours and every
frame's deformed positions are carried to the new vertices. New bones are placed by
k-means (with ``mirrored_bones``, in mirrored pairs about the mirror plane) and fitted
(centres, orientations, precisions and motion) to the old deformation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..geometry.isotropic import isotropic_remesh
from ..geometry.proximity import transfer_vertex_attributes
from ..geometry.symmetry import symmetrize
from ..model.articulated import ArticulatedModel

__all__ = ["StructureChange", "needs_change", "change_structure"]


@dataclass(frozen=True)
class StructureChange:
    """What :func:`change_structure` did: the mask IoU before and after, whether the mesh
    was remeshed, and the new mirror map (None: not symmetric)."""

    iou_before: Optional[float] = None
    iou_after: Optional[float] = None
    remeshed: bool = False
    mirror: Optional[torch.Tensor] = None


def needs_change(model: ArticulatedModel, stage) -> tuple[bool, bool]:
    """``(remesh, new bones)``: whether ``stage`` remeshes (it sets ``num_faces``) and
    whether it asks for another number of bones than ``model`` has."""
    return stage.num_faces is not None, stage.num_bones > 0 and stage.num_bones != model.num_bones


@torch.no_grad()
def change_structure(model: ArticulatedModel, stage, distill_steps: int, frame_iou: Callable[[], float],
                     mirror: Optional[torch.Tensor] = None) -> StructureChange:
    """Remesh and/or change the bone count of ``model`` in place for ``stage``.

    Args:
        distill_steps: steps fitting new bones to the current deformation
            (``train.distill_steps``).
        frame_iou: the model's mean full-frame mask IoU, measured before and after.
        mirror: the rest vertices' mirror map when the rest shape is kept symmetric: the
            rest shape is made exactly symmetric and the remesh keeps it so.
    """
    remesh_needed, bones_needed = needs_change(model, stage)
    if not (remesh_needed or bones_needed):
        return StructureChange(mirror=mirror)
    before = frame_iou()
    target = model.deform().detach()  # (T, V, 3) object frame: what the new structure must reproduce
    device = target.device
    if remesh_needed:
        rest, faces = model.rest_verts.detach().cpu(), model.faces.cpu()
        surface = rest if mirror is None else symmetrize(rest, mirror.cpu())
        V, F, m = isotropic_remesh(surface.double(), faces, target_faces=int(stage.num_faces),
                                   mirror=None if mirror is None else mirror.cpu())
        V, F = torch.as_tensor(V, dtype=rest.dtype), torch.as_tensor(F)
        mirror = None if m is None else torch.as_tensor(m).to(device)
        # colours and every frame's deformed positions, interpolated at the new vertices
        T = target.shape[0]
        carried = torch.cat([model.colors.detach().cpu(),
                             target.cpu().permute(1, 0, 2).reshape(rest.shape[0], 3 * T)], 1)
        carried = transfer_vertex_attributes(rest, faces, carried, V)
        target = carried[:, 3:].reshape(V.shape[0], T, 3).permute(1, 0, 2).contiguous().to(device)
        model.set_rest_shape(V.to(device), F.to(device), carried[:, :3].to(device))
    if bones_needed:
        model.set_num_bones(stage.num_bones, mirrored=mirror is not None and stage.symmetric and stage.mirrored_bones)
    if model.num_bones > 1:
        # new bones: fit them and their motion to the old deformation; the same bones on
        # a new mesh: re-solve the motion only
        model.distill_deformation(target, steps=distill_steps if bones_needed else 0)
    return StructureChange(before, frame_iou(), remesh_needed, mirror)
