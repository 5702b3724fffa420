"""Mirror symmetry about the ``x = 0`` plane of the rest shape (LASR's optional
bilateral symmetry prior)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mirror_index", "symmetrize", "reflect", "symmetry_loss"]


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
