"""Mirror symmetry about the ``x = 0`` plane of the rest shape (LASR's optional
bilateral symmetry prior)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mirror_index", "symmetrize", "reflect", "symmetry_loss", "bone_symmetry_loss"]


def reflect(verts: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Negate coordinate ``axis`` of ``(..., 3)`` points (mirror about that plane)."""
    sign = torch.ones(verts.shape[-1], dtype=verts.dtype, device=verts.device)
    sign[axis] = -1.0
    return verts * sign


def mirror_index(verts: torch.Tensor, axis: int = 0, tol: float = 1e-5) -> torch.Tensor:
    """Permutation mapping each vertex to its mirror image.

    Args:
        verts: ``(V, 3)`` vertices of a shape that is mirror-symmetric about the
            plane ``coordinate[axis] = 0`` (e.g. :func:`lasr.geometry.mesh.icosphere`).
        tol: maximum allowed distance between a reflected vertex and its match.
    Returns:
        ``(V,)`` long tensor ``m`` with ``reflect(verts)[i] ~= verts[m[i]]``;
        ``m`` is an involution (``m[m] == arange(V)``) and vertices on the plane
        map to themselves.
    Raises:
        ValueError: the vertex set is not symmetric within ``tol``.
    """
    from scipy.spatial import cKDTree

    v = verts.detach().cpu().double().numpy()
    r = v.copy()
    r[:, axis] *= -1.0
    dist, idx = cKDTree(v).query(r)
    if dist.max() > tol:
        raise ValueError(f"vertices are not mirror-symmetric (max mismatch {dist.max():.3g} > tol {tol})")
    if not np.array_equal(idx[idx], np.arange(v.shape[0])):
        raise ValueError("mirror matching is not a bijective involution (duplicate vertices?)")
    return torch.as_tensor(idx, dtype=torch.long, device=verts.device)


def symmetrize(verts: torch.Tensor, mirror_idx: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Project ``(..., V, 3)`` vertices onto the space of symmetric shapes:
    ``0.5 * (x + reflect(x[mirror_idx]))``.  Differentiable; vertices that are
    their own mirror get coordinate ``axis`` = 0 exactly."""
    return 0.5 * (verts + reflect(verts[..., mirror_idx, :], axis))


def symmetry_loss(verts: torch.Tensor, mirror_idx: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Mean squared distance between ``x`` and its mirrored counterpart (scalar)."""
    return ((verts - reflect(verts[..., mirror_idx, :], axis)) ** 2).sum(-1).mean()


def bone_symmetry_loss(centers: torch.Tensor, rotations: torch.Tensor, log_precisions: torch.Tensor,
                       bone_mirror: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """How far Gaussian bones are from mirrored pairs (scalar; 0 when mirrored exactly).

    Bone ``b``'s mirror image about the plane ``x[axis] = 0`` has centre ``S c_b``,
    orientation ``S R_b S`` and the same precisions (``S`` negates coordinate ``axis``).
    Sums, over the bones with a partner ``m = bone_mirror[b] >= 0``, the mean squared
    distances ``|c_b - S c_m|^2 + |R_b - S R_m S|_F^2 + |l_b - l_m|^2``.

    Args:
        centers: ``(B, 3)``; rotations: ``(B, 3, 3)``; log_precisions: ``(B, 3)``.
        bone_mirror: ``(B,)`` long, each bone's partner (itself for a bone on the
            plane), ``-1`` for a bone without one.
    """
    i = (bone_mirror >= 0).nonzero()[:, 0]
    if i.numel() == 0:
        return centers.new_zeros(())
    j = bone_mirror[i]
    sign = torch.ones(3, dtype=centers.dtype, device=centers.device)
    sign[axis] = -1.0
    flipped = rotations[j] * sign[:, None] * sign[None, :]  # S R S
    return ((centers[i] - reflect(centers[j], axis)).square().sum(-1).mean()
            + (rotations[i] - flipped).square().sum((-1, -2)).mean()
            + (log_precisions[i] - log_precisions[j]).square().sum(-1).mean())
