"""Articulated shape model: rest mesh + Gaussian bones + per-frame motion.

For frame ``t`` and rest vertex ``X``::

    X_obj = sum_b w_b(X) G_tb X                 (LBS in the rest/object frame)
    X_cam = R_root_t X_obj + t_root_t           (root body pose -> camera frame)

with ``w`` the Gaussian skinning weights of :mod:`lasr.model.skinning` and
``G_tb = [R_tb | p_b + t_tb - R_tb p_b]``, i.e. a rotation ``R_tb`` about the
bone pivot ``p_b`` followed by a translation ``t_tb``.  Pivots are a
non-learnable buffer set to the bone centers when the bones are (re)initialised
(so moving a learnable bone center changes the skinning, not the motion).

Rotations are parameterized as 6D (default, Zhou et al.) or axis-angle; all
parameters are initialised to the identity motion, so a fresh model returns
``R_root X + t_root`` with ``R_root = I``, ``t_root = (0, 0, init_depth)``.

Camera: pinhole with focal length ``focal(frame_ids) (N,)`` (shared scalar, or
per frame with ``per_frame_focal=True``), stored as a log for positivity; its
units are whatever the renderer expects (e.g. NDC).

Stage changes (the optimizer's job, supported here):

* **more/fewer bones**: ``target = model.deform(all_frames).detach()`` ->
  ``model.set_num_bones(k)`` -> ``model.refit_bone_transforms(target)``;
* **remesh**: ``V2, F2, _ = isotropic_remesh(rest, faces, target_faces=n)``;
  ``C2 = transfer_vertex_attributes(rest, faces, colors, V2)``;
  ``model.set_rest_shape(V2, F2, C2)`` -- bones and motion are defined in space,
  so the new vertices follow the same deformation field (no refit needed).

Both replace ``nn.Parameter`` objects: rebuild the optimizer afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lasr.geometry.mesh import vertex_areas
from lasr.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)

from .groups import PARAM_GROUPS, PER_FRAME
from .skinning import (
    DEFAULT_TEMPERATURE,
    GaussianBones,
    decompose_about_pivots,
    fit_bone_transforms,
    init_bones_from_kmeans,
    lbs,
    transforms_about_pivots,
)

__all__ = ["ArticulatedModel", "PARAM_GROUPS", "PER_FRAME"]

_ROT_DIMS = {"6d": 6, "axis_angle": 3}


def _bones_without_partners(module, state_dict, prefix, *args) -> None:
    """A state saved before bones could be mirrored loads as bones without partners."""
    key = prefix + "bone_mirror"
    if key not in state_dict and prefix + "bone_pivots" in state_dict:
        state_dict[key] = torch.full((state_dict[prefix + "bone_pivots"].shape[0],), -1, dtype=torch.long)


def _identity_rot_params(shape: Sequence[int], rot_param: str, dtype, device) -> torch.Tensor:
    p = torch.zeros(*shape, _ROT_DIMS[rot_param], dtype=dtype, device=device)
    if rot_param == "6d":
        p[..., 0] = 1.0
        p[..., 4] = 1.0
    return p


class ArticulatedModel(nn.Module):
    """Rest shape + Gaussian bones + per-frame bone and root motion.

    Args:
        rest_verts: ``(V, 3)`` initial rest shape (e.g. an icosphere).
        faces: ``(F, 3)`` long (buffer, not learnable).
        num_frames: ``T``.
        num_bones: ``B >= 1`` (bones initialised by k-means on ``rest_verts``).
        colors: optional ``(V, 3)`` initial per-vertex colors (default 0.5 gray).
        rot_param: ``"6d"`` or ``"axis_angle"`` for bone and root rotations.
        focal: initial focal length; ``per_frame_focal``: one per frame.
        init_depth: initial root translation along +z (camera looks down +z).
        temperature: skinning softmax temperature (LASR: 10).
        detach_skinning_input: compute skinning weights from ``rest_verts.detach()``
            (as LASR does) so shape gradients do not flow through the weights.
        seed: k-means seed.

    Learnable parameters (shapes):
        ``rest_verts (V, 3)``, ``colors (V, 3)``,
        ``bones.centers (B, 3)``, ``bones.quaternions (B, 4)``, ``bones.log_precisions (B, 3)``,
        ``bone_rot (T, B, 6|3)``, ``bone_trans (T, B, 3)``,
        ``root_rot (T, 6|3)``, ``root_trans (T, 3)``, ``log_focal (1,) or (T,)``.
    Buffers: ``faces (F, 3)``, ``bone_pivots (B, 3)``.
    """

    def __init__(
        self,
        rest_verts: torch.Tensor,
        faces: torch.Tensor,
        num_frames: int,
        num_bones: int,
        colors: torch.Tensor | None = None,
        rot_param: str = "6d",
        focal: float = 1.0,
        per_frame_focal: bool = False,
        init_depth: float = 0.0,
        temperature: float = DEFAULT_TEMPERATURE,
        detach_skinning_input: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if rot_param not in _ROT_DIMS:
            raise ValueError(f"rot_param must be one of {sorted(_ROT_DIMS)}, got {rot_param!r}")
        if rest_verts.dim() != 2 or rest_verts.shape[1] != 3:
            raise ValueError(f"rest_verts must be (V, 3), got {tuple(rest_verts.shape)}")
        self.rot_param = rot_param
        self.num_frames = int(num_frames)
        self.temperature = float(temperature)
        self.detach_skinning_input = bool(detach_skinning_input)
        self.seed = int(seed)
        dtype, device = rest_verts.dtype, rest_verts.device

        self.rest_verts = nn.Parameter(rest_verts.detach().clone())
        self.register_buffer("faces", faces.detach().to(device=device, dtype=torch.long).clone())
        if colors is None:
            colors = torch.full_like(rest_verts, 0.5)
        self.colors = nn.Parameter(colors.detach().to(dtype).clone())

        root = _identity_rot_params((self.num_frames,), rot_param, dtype, device)
        self.root_rot = nn.Parameter(root)
        root_t = torch.zeros(self.num_frames, 3, dtype=dtype, device=device)
        root_t[:, 2] = init_depth
        self.root_trans = nn.Parameter(root_t)
        nfoc = self.num_frames if per_frame_focal else 1
        self.log_focal = nn.Parameter(torch.full((nfoc,), float(focal), dtype=dtype, device=device).log())

        self.set_num_bones(num_bones, seed=seed)
        self.register_load_state_dict_pre_hook(_bones_without_partners)

    # ------------------------------------------------------------------ sizes
    @property
    def num_verts(self) -> int:
        return int(self.rest_verts.shape[0])

    @property
    def num_bones(self) -> int:
        return self.bones.num_bones

    @property
    def rest_radius(self) -> float:
        """RMS distance of the rest vertices from the object origin (the shape's scale)."""
        return float(self.rest_verts.detach().norm(dim=-1).square().mean().sqrt())

    def param_groups(self) -> dict[str, dict[str, nn.Parameter]]:
        """The trainable parameters by group (:data:`PARAM_GROUPS`): ``{group: {name: parameter}}``."""
        named = dict(self.named_parameters())
        return {g: {n: named[n] for n in names} for g, names in PARAM_GROUPS.items()}

    def per_frame_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters with one row per frame, by name."""
        out = {n: getattr(self, n) for n in PER_FRAME}
        if self.log_focal.shape[0] > 1:
            out["log_focal"] = self.log_focal
        return out

    # ------------------------------------------------------------ conversions
    def _rot_to_matrix(self, p: torch.Tensor) -> torch.Tensor:
        return rotation_6d_to_matrix(p) if self.rot_param == "6d" else axis_angle_to_matrix(p)

    def rot_from_matrix(self, m: torch.Tensor) -> torch.Tensor:
        """``(..., 3, 3)`` rotations in this model's rotation parameters (6D or axis-angle)."""
        return matrix_to_rotation_6d(m) if self.rot_param == "6d" else matrix_to_axis_angle(m)

    def _frames(self, frame_ids) -> torch.Tensor:
        if frame_ids is None:
            return torch.arange(self.num_frames, device=self.rest_verts.device)
        ids = torch.as_tensor(frame_ids, dtype=torch.long, device=self.rest_verts.device).reshape(-1)
        return ids

    # ------------------------------------------------------------ components
    def skinning_weights(self, points: torch.Tensor | None = None) -> torch.Tensor:
        """``(V, B)`` weights of ``points (V, 3)`` (default: the rest vertices,
        detached if ``detach_skinning_input``)."""
        if points is None:
            points = self.rest_verts.detach() if self.detach_skinning_input else self.rest_verts
        return self.bones(points)

    def bone_transforms(self, frame_ids=None) -> torch.Tensor:
        """``(N, B, 4, 4)`` rest-frame bone transforms ``G`` for the frames."""
        ids = self._frames(frame_ids)
        rot = self._rot_to_matrix(self.bone_rot[ids])  # (N, B, 3, 3)
        return transforms_about_pivots(rot, self.bone_trans[ids], self.bone_pivots)

    def root_transforms(self, frame_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Root pose: ``R (N, 3, 3)``, ``t (N, 3)`` with ``X_cam = R X_obj + t``."""
        ids = self._frames(frame_ids)
        return self._rot_to_matrix(self.root_rot[ids]), self.root_trans[ids]

    def focal(self, frame_ids=None) -> torch.Tensor:
        """``(N,)`` focal lengths."""
        ids = self._frames(frame_ids)
        f = self.log_focal.exp()
        return f[ids] if f.shape[0] > 1 else f.expand(ids.shape[0])

    def deform(self, frame_ids=None, rest_verts: torch.Tensor | None = None) -> torch.Tensor:
        """Articulated shape in the object frame (LBS only, no root).

        Args:
            frame_ids: ``(N,)`` long / list (default: all frames).
            rest_verts: optional ``(V', 3)`` points to deform instead of the rest
                vertices (their own skinning weights are used).
        Returns:
            ``(N, V, 3)``.
        """
        ids = self._frames(frame_ids)
        x = self.rest_verts if rest_verts is None else rest_verts  # (V, 3)
        w = self.skinning_weights(None if rest_verts is None else rest_verts.detach())  # (V, B)
        g = self.bone_transforms(ids)  # (N, B, 4, 4)
        return lbs(x, w, g)  # (N, V, 3)

    def to_camera(self, verts_obj: torch.Tensor, frame_ids=None) -> torch.Tensor:
        """Apply the root pose: ``(N, V, 3)`` object frame -> ``(N, V, 3)`` camera frame."""
        rot, trans = self.root_transforms(frame_ids)  # (N, 3, 3), (N, 3)
        return verts_obj @ rot.transpose(-1, -2) + trans[:, None, :]

    def forward(self, frame_ids=None) -> torch.Tensor:
        """Posed vertices in camera coordinates.

        Args:
            frame_ids: ``(N,)`` long tensor or list of frame indices (default all).
        Returns:
            ``(N, V, 3)`` = root_t( LBS_t(rest) ).
        """
        ids = self._frames(frame_ids)
        verts_obj = self.deform(ids)  # (N, V, 3)
        return self.to_camera(verts_obj, ids)  # (N, V, 3)

    # ------------------------------------------------------------ stage changes
    @torch.no_grad()
    def set_num_bones(self, num_bones: int, seed: int | None = None, mirrored: bool = False) -> None:
        """Re-initialise ``num_bones`` bones by k-means on the current rest vertices,
        weighted by their area (so bones cover the surface evenly, also limbs made of a
        few stretched triangles), and reset all per-frame bone motion to the identity.
        ``mirrored``: the rest shape is symmetric about its x = 0 plane and the bones are
        placed in mirrored pairs about it (:func:`init_bones_from_kmeans`).

        Use :meth:`refit_bone_transforms` afterwards to restore a previous
        deformation.  Replaces parameters: rebuild the optimizer.
        """
        seed = self.seed if seed is None else int(seed)
        dtype, device = self.rest_verts.dtype, self.rest_verts.device
        rest = self.rest_verts.detach()
        area = vertex_areas(rest, self.faces)  # bones spread over the surface, not the vertices
        area = area.clamp_min(1e-6 * float(area.mean().clamp_min(1e-30)))
        c, q, lp = init_bones_from_kmeans(rest, num_bones, self.temperature, seed=seed, weights=area,
                                          mirror_axis=0 if mirrored else None)
        self.bones = GaussianBones(c, q, lp, self.temperature)
        self.register_buffer("bone_pivots", c.detach().clone())
        pairs = num_bones // 2 if mirrored else 0  # init_bones_from_kmeans' order: pairs, their mirrors, the plane's
        partner = torch.cat([torch.arange(pairs, 2 * pairs), torch.arange(pairs), torch.arange(2 * pairs, num_bones)])
        self.register_buffer("bone_mirror", partner.to(device) if mirrored else torch.full_like(partner, -1).to(device))
        self.bone_rot = nn.Parameter(_identity_rot_params((self.num_frames, num_bones), self.rot_param, dtype, device))
        self.bone_trans = nn.Parameter(torch.zeros(self.num_frames, num_bones, 3, dtype=dtype, device=device))

    @torch.no_grad()
    def refit_bone_transforms(
        self, target_verts: torch.Tensor, frame_ids=None, space: str = "object", iters: int = 30
    ) -> torch.Tensor:
        """Solve the per-frame bone motion so that LBS of the current rest shape
        (with the current skinning weights) best matches ``target_verts``.

        Weighted Kabsch per bone (weights = skinning weights) followed by a
        Gauss-Newton refinement of the joint LBS least-squares problem (see
        :func:`lasr.model.skinning.fit_bone_transforms`).  Writes ``bone_rot`` /
        ``bone_trans`` in place for the given frames.

        Args:
            target_verts: ``(N, V, 3)`` target positions of the rest vertices.
            frame_ids: ``(N,)`` frames they belong to (default: all, N = T).
            space: ``"object"`` (targets are LBS outputs, no root) or
                ``"camera"`` (the current root pose is undone first).
        Returns:
            ``(N,)`` RMS vertex error of the refit per frame.
        """
        ids = self._frames(frame_ids)
        y = target_verts.detach().to(self.rest_verts.dtype)
        if y.shape != (ids.shape[0], self.num_verts, 3):
            raise ValueError(f"target_verts must be ({ids.shape[0]}, {self.num_verts}, 3), got {tuple(y.shape)}")
        if space == "camera":
            rot, trans = self.root_transforms(ids)
            y = (y - trans[:, None, :]) @ rot  # R^T (y - t)
        elif space != "object":
            raise ValueError(f"space must be 'object' or 'camera', got {space!r}")
        x = self.rest_verts.detach()
        w = self.skinning_weights(x)
        g = fit_bone_transforms(x, w, y, iters=iters)  # (N, B, 4, 4)
        rot, tr = decompose_about_pivots(g, self.bone_pivots)
        self.bone_rot.data[ids] = self.rot_from_matrix(rot).to(self.bone_rot.dtype)
        self.bone_trans.data[ids] = tr.to(self.bone_trans.dtype)
        err = lbs(x, w, self.bone_transforms(ids)) - y
        return err.pow(2).sum(-1).mean(-1).sqrt()

    def distill_deformation(self, target_verts: torch.Tensor, steps: int = 100, lr: float = 0.01) -> torch.Tensor:
        """Fit the bones themselves, not only their motion, to a deformation of all frames.

        After :meth:`set_num_bones` the new k-means bones blend the surface
        differently from the old ones, and re-solving only the per-frame motion
        (:meth:`refit_bone_transforms`) leaves the parts the new bones cannot
        follow behind (cesiumman, 21 -> 36 bones: RMS vertex error 6 % of the
        shape's radius). Here the per-frame motion is solved first, then the bone
        centres, orientations and precisions are optimized jointly with it
        (``steps`` Adam steps on the mean squared vertex error, no rendering),
        then the motion is solved again for the final bones.

        Args:
            target_verts: ``(T, V, 3)`` target positions of the rest vertices for
                every frame, in the object frame (LBS outputs, no root).
            steps: Adam steps of the joint fit (0: motion only).
            lr: Adam learning rate.
        Returns:
            ``(T,)`` RMS vertex error per frame after the fit.
        """
        target = target_verts.detach().to(self.rest_verts.dtype)
        err = self.refit_bone_transforms(target)
        if steps <= 0 or float(err.max()) <= 1e-6 * self.rest_radius:  # already exact (e.g. rigid -> bones)
            return err
        x = self.rest_verts.detach()
        params = [self.bones.centers, self.bones.quaternions, self.bones.log_precisions, self.bone_rot, self.bone_trans]
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):
            with torch.enable_grad():
                loss = (lbs(x, self.skinning_weights(x), self.bone_transforms()) - target).square().sum(-1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
        for p in params:
            p.grad = None
        with torch.no_grad():
            self.bone_pivots.copy_(self.bones.centers)
        return self.refit_bone_transforms(target)

    @torch.no_grad()
    def fix_gauge(self, radius: float = 1.0) -> tuple[torch.Tensor, float]:
        """Put the rest shape back at the origin with RMS radius ``radius``, moving the
        bones, their motion and the root so that every frame's image stays the same.

        The rest shape's translation and scale are not seen by the images (a shifted
        rest shape with shifted bones and root, or a larger one further from the camera,
        project the same), so without this they drift and with them the scale every
        regulariser is measured in. With ``X' = (X - c) / s``: bone centres and pivots
        map the same way, bone translations scale by ``1/s``, log-precisions gain
        ``2 log s``, and the root translation becomes ``(R c + t) / s`` (the camera-space
        object scales by ``1/s`` about the camera: the monocular ambiguity).

        Returns:
            the centroid ``c`` ``(3,)`` and scale ``s`` that were removed.
        """
        x = self.rest_verts
        c = x.mean(0)
        s = float((x - c).norm(dim=-1).square().mean().sqrt()) / radius
        if not math.isfinite(s) or s <= 0:
            return c, 1.0
        x.sub_(c).div_(s)
        b = self.bones
        b.centers.sub_(c).div_(s)
        b.log_precisions.add_(2 * math.log(s))
        self.bone_pivots.sub_(c).div_(s)
        self.bone_trans.div_(s)
        R = self._rot_to_matrix(self.root_rot)  # (T,3,3)
        self.root_trans.copy_((R @ c + self.root_trans) / s)
        return c, s

    @torch.no_grad()
    def set_rest_shape(
        self, rest_verts: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor | None = None
    ) -> None:
        """Replace the rest mesh (e.g. after :func:`lasr.geometry.isotropic.isotropic_remesh`).

        Bones and per-frame motion are kept.  ``colors (V', 3)`` default to the
        mean of the old colors.  Replaces parameters: rebuild the optimizer.
        """
        dtype, device = self.rest_verts.dtype, self.rest_verts.device
        v = rest_verts.detach().to(dtype=dtype, device=device).clone()
        if colors is None:
            colors = self.colors.detach().mean(0, keepdim=True).expand_as(v)
        self.rest_verts = nn.Parameter(v)
        self.colors = nn.Parameter(colors.detach().to(dtype=dtype, device=device).clone())
        self.faces = faces.detach().to(device=device, dtype=torch.long).clone()

    def extra_repr(self) -> str:
        return (
            f"num_verts={self.num_verts}, num_faces={int(self.faces.shape[0])}, num_frames={self.num_frames}, "
            f"num_bones={self.num_bones}, rot_param={self.rot_param!r}"
        )
