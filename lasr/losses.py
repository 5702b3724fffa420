"""Loss terms of the fit: pure functions of tensors, each returning a scalar.

Image terms are means over pixels (resolution-independent); flow is compared in
units of the crop's half-size (NDC, as LASR), so weights carry over between stages
of different resolution. The weighted sum lives in :mod:`lasr.fit.objective`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "trajectory_prior",
    "silhouette_loss",
    "soft_iou_loss",
    "flow_loss",
    "color_loss",
    "deformation_loss",
    "edge_loss",
    "arap_edge_loss",
    "motion_smoothness",
    "camera_smoothness",
    "bones_inside_loss",
    "coverage_loss",
    "mask_iou",
]


def silhouette_loss(pred: Tensor, obs: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error between (B,H,W) silhouettes where ``valid`` (B,H,W) > 0."""
    w = valid
    return ((pred - obs).square() * w).sum() / w.sum().clamp_min(1.0)


def soft_iou_loss(pred: Tensor, obs: Tensor, valid: Tensor) -> Tensor:
    """``1 - soft IoU`` per image, averaged (SoftRas' silhouette loss): ``I = Σ p m``,
    ``U = Σ (p + m - p m)`` over the ``valid`` pixels of (B,H,W) silhouettes.

    Unlike the squared error, an observed pixel the render misses costs more than a
    rendered pixel the mask lacks (``(1 + IoU) / U`` against ``IoU / U``), and every
    frame counts the same whatever its object's size."""
    p, m = pred * valid, obs * valid
    inter = (p * m).flatten(1).sum(1)
    union = (p + m - p * m).flatten(1).sum(1)
    return (1 - inter / union.clamp_min(1e-6)).mean()


def flow_loss(pred: Tensor, obs: Tensor, weight: Tensor, res: int) -> Tensor:
    """Weighted mean end-point error in NDC units (px / (res/2)).

    Args:
        pred, obs: (B,H,W,2) flow in crop pixels.
        weight: (B,H,W) >= 0, e.g. confidence x observed mask x rendered coverage.
    """
    epe = (pred - obs).square().sum(-1).add(1e-8).sqrt() / (res / 2)
    return (epe * weight).sum() / weight.sum().clamp_min(1.0)


def color_loss(pred: Tensor, obs: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean L1 between (B,H,W,3) colors, weight (B,H,W)."""
    return ((pred - obs).abs().mean(-1) * weight).sum() / weight.sum().clamp_min(1.0)


def deformation_loss(deformed: Tensor, rest: Tensor, scale: float) -> Tensor:
    """Least deformation as LASR: the mean distance ``‖Δ‖`` of (N,V,3) articulated
    vertices from the (V,3) rest shape, in units of ``scale`` (the rest shape's RMS
    radius). Unsquared, so a large deformation is not charged quadratically and a small
    one still costs (the squared form let the rest shape drift from every pose)."""
    return (deformed - rest).square().sum(-1).add(1e-12).sqrt().mean() / scale


def arap_edge_loss(deformed: Tensor, rest: Tensor, edges: Tensor) -> Tensor:
    """As rigid as possible, on edges: every edge of each (N,V,3) articulated pose keeps
    its (V,3) rest length, ``mean |l_t - l_rest| / mean(l_rest)``."""
    lr = (rest[edges[:, 0]] - rest[edges[:, 1]]).norm(dim=-1)
    lt = (deformed[:, edges[:, 0]] - deformed[:, edges[:, 1]]).norm(dim=-1)
    return (lt - lr).abs().mean() / lr.detach().mean().clamp_min(1e-8)


def motion_smoothness(transforms: Tensor, scale: float) -> Tensor:
    """Consecutive frames' bone transforms agree: ``transforms (T,B,4,4)`` rest-frame
    rigid transforms; ``mean ||R_t - R_{t+1}||_F^2 + mean ||t_t - t_{t+1}||^2 / scale^2``
    over frames and bones (0 for one frame)."""
    if transforms.shape[0] < 2:
        return transforms.new_zeros(())
    d = transforms[1:] - transforms[:-1]
    return d[..., :3, :3].square().sum((-1, -2)).mean() + d[..., :3, 3].square().sum(-1).mean() / (scale * scale)


def edge_loss(verts_a: Tensor, verts_b: Tensor, edges: Tensor) -> Tensor:
    """Edge-length preservation between two poses (N,V,3) of one mesh, relative to the
    mean edge length: ``mean |l_a - l_b| / mean(l_a)``."""
    la = (verts_a[:, edges[:, 0]] - verts_a[:, edges[:, 1]]).norm(dim=-1)
    lb = (verts_b[:, edges[:, 0]] - verts_b[:, edges[:, 1]]).norm(dim=-1)
    return (la - lb).abs().mean() / la.detach().mean().clamp_min(1e-8)


def camera_smoothness(rot: Tensor, trans: Tensor, scale: float) -> Tensor:
    """Consecutive root poses should agree: rot (T,3,3), trans (T,3).

    ``mean ||R_t - R_{t+1}||_F^2 + mean ||t_t - t_{t+1}||^2 / scale^2``.
    """
    if rot.shape[0] < 2:
        return rot.new_zeros(())
    dr = (rot[1:] - rot[:-1]).square().sum((-1, -2)).mean()
    dt = (trans[1:] - trans[:-1]).square().sum(-1).mean() / (scale * scale)
    return dr + dt


def trajectory_prior(rot: Tensor, prior: Tensor) -> Tensor:
    """Root rotations ``rot (T,3,3)`` near the trajectory ``prior (T,3,3)`` up to one
    rotation of the whole clip: ``mean ||R_t - P_t G||_F^2`` with ``G`` the rotation that
    fits best (Procrustes). The prior keeps how the root turns from frame to frame, not
    which way the rest shape faces: that (with it the rest shape's mirror plane) the data
    choose. ``G`` is held fixed in the gradient, which is exact at its optimum.
    """
    with torch.no_grad():
        U, _, Vh = torch.linalg.svd((prior.transpose(-1, -2) @ rot).sum(0))
        d = torch.sign(torch.linalg.det(U @ Vh))
        G = U @ torch.diag(torch.stack([d.new_ones(()), d.new_ones(()), d])) @ Vh
    return (rot - prior @ G).square().sum((-1, -2)).mean()


def bones_inside_loss(points_uv: Tensor, dist_map: Tensor) -> Tensor:
    """Bones kept inside the silhouette.

    Args:
        points_uv: (B,J,2) projected bone centres in crop pixels.
        dist_map: (B,H,W) distance to the observed mask, in units of the crop size
            (0 inside the mask).
    Returns:
        mean distance outside the mask, sampled bilinearly (differentiable in uv).
    """
    B, H, W = dist_map.shape
    grid = torch.stack([(points_uv[..., 0] + 0.5) / W * 2 - 1, (points_uv[..., 1] + 0.5) / H * 2 - 1], -1)
    d = F.grid_sample(dist_map[:, None], grid[:, :, None, :], mode="bilinear", padding_mode="border",
                      align_corners=False)
    return d.mean()


def coverage_loss(points_uv: Tensor, mask: Tensor, rendered: Tensor, dist_map: Tensor,
                  max_points: int = 512, generator: torch.Generator | None = None) -> Tensor:
    """Long-range silhouette term: a 2D chamfer between the projected vertices and the mask.

    The soft silhouette only has gradients within a pixel or so of the rendered
    outline, so a limb of the mask that the model does not cover yet (an arm held
    away from the body) pulls on nothing. This term closes that gap in both
    directions:

    * every mask pixel the render does not cover (``rendered < 0.5``) pulls its
      nearest projected vertex towards it (mean distance over a random subset of at
      most ``max_points`` such pixels, scaled by the uncovered fraction of the mask,
      so the term fades to 0 as coverage becomes complete);
    * every projected vertex outside the mask is pulled in along the mask's distance
      transform (for a closed mesh every vertex projects inside its own silhouette,
      so this holds for hidden vertices too).

    Args:
        points_uv: (B,V,2) projected vertices in crop pixels.
        mask: (B,H,W) observed mask (> 0.5 = object).
        rendered: (B,H,W) rendered silhouette (only compared with 0.5; no gradient).
        dist_map: (B,H,W) distance to the mask in units of the crop size (0 inside).
    Returns:
        a scalar in units of the crop size.
    """
    B, H, W = mask.shape
    size = float(max(H, W))
    inward = bones_inside_loss(points_uv, dist_map)
    pull = points_uv.new_zeros(())
    uncovered = (mask > 0.5) & (rendered.detach() < 0.5)
    for b in range(B):
        n_mask = int((mask[b] > 0.5).sum())
        idx = uncovered[b].flatten().nonzero()[:, 0]
        if n_mask == 0 or idx.numel() == 0:
            continue
        frac = idx.numel() / n_mask
        if idx.numel() > max_points:
            pick = torch.randperm(idx.numel(), generator=generator)[:max_points].to(idx.device)
            idx = idx[pick]
        pts = torch.stack([idx % W, idx // W], -1).to(points_uv.dtype)  # (P,2) pixel centres (u, v)
        d = torch.cdist(pts, points_uv[b]).min(dim=1).values  # (P,)
        pull = pull + frac * d.mean() / size
    return inward + pull / B


def mask_iou(pred: Tensor, obs: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-image IoU (B,) of hard masks ``pred > 0.5`` vs ``obs > 0.5``."""
    p, o = pred > 0.5, obs > 0.5
    if valid is not None:
        p, o = p & (valid > 0.5), o & (valid > 0.5)
    inter = (p & o).flatten(1).sum(1).float()
    union = (p | o).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
