"""Gaussian-bone skinning and linear blend skinning (LBS), LASR style.

Bones
-----
Bone ``b`` is a 3D Gaussian in the rest (canonical) frame with center
``c_b (3,)``, orientation ``R_b (3, 3)`` (columns are the bone's axes,
stored as a unit quaternion ``(w, x, y, z)``) and per-axis log-precisions
``l_b (3,)``.  The skinning weight of a rest point ``X`` is

    m_b(X) = (X - c_b)^T R_b diag(exp(l_b)) R_b^T (X - c_b)
    w_b(X) = softmax_b( -temperature * m_b(X) )

which is exactly LASR's form (``skin = (-10 * dis_norm.sum(-1)).softmax``, with
``dis_norm = exp(log_ctl) * ((c - X) @ R)^2``): **temperature = 10** by
default.  A Gaussian with standard deviation ``sigma`` along an axis therefore
corresponds to ``exp(l) = 1 / (2 * temperature * sigma^2)``.

Weights are positive and sum to one over bones.

Transforms
----------
:func:`lbs` takes per-bone rigid transforms ``G (T, B, 4, 4)`` that act in the
**rest/object frame** ("world" of the rest shape): a point rigidly attached to
bone ``b`` moves from ``X`` to ``G_b X``.  Hence

    X' = sum_b w_b(X) G_b X

and identity transforms return the rest shape (bit-exactly: the residual form
``X + sum_b w_b (G_b - I) X`` is used).  Rotations about the bone centre are
built with :func:`transforms_about_pivots`
(``X -> R (X - p) + p + t``), which is how :mod:`lasr.model.articulated`
parameterizes motion.
"""

from __future__ import annotations

import torch
from torch import nn

from lasr.geometry.kmeans import kmeans
from lasr.geometry.rotations import (
    broadcast_shapes,
    make_transform,
    normalize_quaternion,
    quaternion_to_matrix,
    skew,
    axis_angle_to_matrix,
)

__all__ = [
    "DEFAULT_TEMPERATURE",
    "bone_mahalanobis",
    "gaussian_skinning_weights",
    "GaussianBones",
    "init_bones_from_kmeans",
    "lbs",
    "transforms_about_pivots",
    "decompose_about_pivots",
    "fit_bone_transforms",
    "weighted_kabsch",
]

DEFAULT_TEMPERATURE = 10.0


def bone_mahalanobis(
    points: torch.Tensor, centers: torch.Tensor, rotations: torch.Tensor, log_precisions: torch.Tensor
) -> torch.Tensor:
    """``m_b(X)`` for every point and bone.

    Args:
        points: ``(..., V, 3)``; centers ``(B, 3)``; rotations ``(B, 3, 3)``
            (columns = bone axes); log_precisions ``(B, 3)``.
    Returns:
        ``(..., V, B)`` non-negative squared Mahalanobis distances.
    """
    d = points[..., :, None, :] - centers  # (..., V, B, 3)
    local = torch.einsum("...vbi,bij->...vbj", d, rotations)  # coordinates in bone frame
    return (local * local * log_precisions.exp()).sum(-1)


def gaussian_skinning_weights(
    points: torch.Tensor,
    centers: torch.Tensor,
    rotations: torch.Tensor,
    log_precisions: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
) -> torch.Tensor:
    """LASR skinning weights ``softmax_b(-temperature * m_b(X))``.

    Args:
        points: ``(..., V, 3)``; centers ``(B, 3)``; rotations ``(B, 3, 3)``;
            log_precisions ``(B, 3)``.
    Returns:
        ``(..., V, B)`` weights, positive, summing to 1 over ``B``.
    """
    m = bone_mahalanobis(points, centers, rotations, log_precisions)
    return torch.softmax(-temperature * m, dim=-1)


def init_bones_from_kmeans(
    rest_verts: torch.Tensor,
    num_bones: int,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    iters: int = 50,
    min_std_ratio: float = 0.3,
    weights: torch.Tensor | None = None,
    mirror_axis: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial Gaussian bones from a k-means clustering of the rest vertices.

    * centers = k-means centers of ``rest_verts`` (weighted by ``weights``, e.g. the
      vertex areas, so that bones cover the surface evenly: a limb grown from a few
      stretched triangles gets its share of bones);
    * orientations = identity (quaternion ``(1, 0, 0, 0)``);
    * log-precisions from each cluster's per-axis standard deviation
      ``sigma_bk`` so that ``exp(-temperature * m_b)`` matches
      ``exp(-d^2 / (2 sigma^2))``: ``l_bk = -log(2 * temperature * sigma_bk^2)``.
      Each ``sigma_bk`` is floored at ``min_std_ratio`` times the cluster's
      largest one (flat clusters would otherwise get huge precisions).

    With ``mirror_axis`` (a shape symmetric about the plane ``x[axis] = 0``) the bones
    come in mirrored pairs: k-means runs on the shape folded onto one side of the plane
    (``|x[axis]|``), and each cluster gives a bone and its mirror image, so a left and a
    right limb near the plane get a bone each instead of sharing one that moves both.
    With ``B`` odd the cluster nearest the plane gives one bone on the plane instead.

    Args:
        rest_verts: ``(V, 3)``; num_bones: ``B >= 1`` (``<=`` #distinct vertices).
        weights: optional ``(V,)`` positive vertex weights.
        mirror_axis: place the bones in mirrored pairs about this coordinate plane.
    Returns:
        ``centers (B, 3)``, ``quaternions (B, 4)``, ``log_precisions (B, 3)``,
        all with the dtype/device of ``rest_verts``, detached.
    """
    x = rest_verts.detach()
    if mirror_axis is not None:
        return _mirrored_bones(x, num_bones, temperature, seed, iters, min_std_ratio, weights, mirror_axis)
    centers, labels = kmeans(x, num_bones, iters=iters, seed=seed, weights=weights)
    return _bones_of_clusters(x, centers, labels, temperature, min_std_ratio, weights)


def _mirrored_bones(x, num_bones, temperature, seed, iters, min_std_ratio, weights, axis):
    """:func:`init_bones_from_kmeans` in mirrored pairs about the plane ``x[axis] = 0``."""
    folded = x.clone()
    folded[:, axis] = folded[:, axis].abs()
    pairs, odd = divmod(num_bones, 2)
    centers, labels = kmeans(folded, pairs + odd, iters=iters, seed=seed, weights=weights)
    c, q, lp = _bones_of_clusters(folded, centers, labels, temperature, min_std_ratio, weights)
    order = torch.argsort(c[:, axis], descending=True)  # with B odd the last is the one nearest the plane
    c, q, lp = c[order], q[order], lp[order]
    mirrored = c[:pairs].clone()
    mirrored[:, axis] = -mirrored[:, axis]
    if odd:  # one bone on the plane, as wide across it as its cluster is on both sides
        on = labels == order[-1]
        w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weights is None else weights.to(x.dtype)
        var = (w[on] * x[on, axis] ** 2).sum() / w[on].sum()
        c[-1, axis] = 0.0
        lp[-1, axis] = torch.minimum(lp[-1, axis], -torch.log(2.0 * temperature * var.clamp_min(1e-12)))
    return (torch.cat([c[:pairs], mirrored, c[pairs:]]), torch.cat([q[:pairs], q[:pairs], q[pairs:]]),
            torch.cat([lp[:pairs], lp[:pairs], lp[pairs:]]))


def _bones_of_clusters(x, centers, labels, temperature, min_std_ratio, weights):
    """Gaussian bones (centres, identity orientations, log-precisions) of k-means clusters."""
    num_bones = centers.shape[0]
    w = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if weights is None else weights.to(x.dtype)
    counts = torch.zeros(num_bones, dtype=x.dtype, device=x.device).index_add_(0, labels, w)
    counts = torch.where(counts > 0, counts, 1)
    var = torch.zeros_like(centers).index_add_(0, labels, w[:, None] * (x - centers[labels]) ** 2) / counts[:, None]
    std = var.sqrt()
    # global floor for single-vertex clusters: a fraction of the mean nearest-center spacing
    if num_bones > 1:
        dc = torch.cdist(centers, centers) + torch.eye(num_bones, dtype=x.dtype, device=x.device) * 1e30
        fallback = 0.5 * dc.min(1).values
    else:
        fallback = (x - centers).norm(dim=-1).mean().expand(1)
    fallback = fallback.clamp_min(1e-6)
    smax = torch.maximum(std.max(1).values, fallback * (std.max(1).values <= 0))
    std = torch.maximum(std, (min_std_ratio * smax)[:, None])
    log_prec = -torch.log(2.0 * temperature * std * std)
    quats = torch.zeros(num_bones, 4, dtype=x.dtype, device=x.device)
    quats[:, 0] = 1.0
    return centers, quats, log_prec


class GaussianBones(nn.Module):
    """A set of ``B`` learnable Gaussian bones.

    Parameters: ``centers (B, 3)``, ``quaternions (B, 4)`` (wxyz, normalized
    when used), ``log_precisions (B, 3)``.  ``temperature`` is a fixed float.
    """

    def __init__(
        self,
        centers: torch.Tensor,
        quaternions: torch.Tensor | None = None,
        log_precisions: torch.Tensor | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> None:
        super().__init__()
        b = centers.shape[0]
        if quaternions is None:
            quaternions = torch.zeros(b, 4, dtype=centers.dtype, device=centers.device)
            quaternions[:, 0] = 1.0
        if log_precisions is None:
            log_precisions = torch.zeros(b, 3, dtype=centers.dtype, device=centers.device)
        self.centers = nn.Parameter(centers.detach().clone())
        self.quaternions = nn.Parameter(quaternions.detach().clone())
        self.log_precisions = nn.Parameter(log_precisions.detach().clone())
        self.temperature = float(temperature)

    @classmethod
    def from_kmeans(
        cls, rest_verts: torch.Tensor, num_bones: int, temperature: float = DEFAULT_TEMPERATURE, seed: int = 0
    ) -> "GaussianBones":
        """Bones initialised with :func:`init_bones_from_kmeans`."""
        c, q, lp = init_bones_from_kmeans(rest_verts, num_bones, temperature=temperature, seed=seed)
        return cls(c, q, lp, temperature)

    @property
    def num_bones(self) -> int:
        return int(self.centers.shape[0])

    def rotations(self) -> torch.Tensor:
        """``(B, 3, 3)`` bone orientations (columns = bone axes)."""
        return quaternion_to_matrix(normalize_quaternion(self.quaternions))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Skinning weights ``(..., V, B)`` for ``points (..., V, 3)``."""
        return gaussian_skinning_weights(
            points, self.centers, self.rotations(), self.log_precisions, self.temperature
        )

    weights = forward

    def extra_repr(self) -> str:
        return f"num_bones={self.num_bones}, temperature={self.temperature}"


def lbs(points: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning in the rest frame: ``X' = sum_b w_b G_b X``.

    Evaluated as ``X + sum_b w_b ((R_b - I) X + t_b)`` (identical for weights
    summing to 1) so that identity transforms return ``points`` bit-exactly.

    Args:
        points: ``(V, 3)`` or ``(T, V, 3)`` rest positions.
        weights: ``(V, B)`` or ``(T, V, B)`` skinning weights (rows sum to 1).
        transforms: ``(T, B, 4, 4)`` rigid bone transforms acting in the rest frame.
    Returns:
        ``(T, V, 3)`` deformed positions.
    """
    if transforms.dim() != 4 or transforms.shape[-2:] != (4, 4):
        raise ValueError(f"transforms must be (T, B, 4, 4), got {tuple(transforms.shape)}")
    rot = transforms[..., :3, :3]
    trans = transforms[..., :3, 3]
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    a = (rot - eye).flatten(-2)  # (T, B, 9)
    if weights.dim() == 2:
        blend_a = torch.einsum("vb,tbk->tvk", weights, a)  # (T, V, 9)
        blend_t = torch.einsum("vb,tbk->tvk", weights, trans)  # (T, V, 3)
    else:
        blend_a = torch.einsum("tvb,tbk->tvk", weights, a)
        blend_t = torch.einsum("tvb,tbk->tvk", weights, trans)
    blend_a = blend_a.unflatten(-1, (3, 3))
    x = points if points.dim() == 3 else points.unsqueeze(0)
    return x + torch.einsum("tvij,tvj->tvi", blend_a, x.expand_as(blend_t)) + blend_t


def transforms_about_pivots(rotations: torch.Tensor, translations: torch.Tensor, pivots: torch.Tensor) -> torch.Tensor:
    """Rigid transforms rotating about per-bone pivots: ``X -> R (X - p) + p + t``.

    Args:
        rotations: ``(..., B, 3, 3)``; translations ``(..., B, 3)``; pivots ``(B, 3)``.
    Returns:
        ``(..., B, 4, 4)`` rest-frame transforms for :func:`lbs`.  Identity
        rotation and zero translation give exactly the identity.
    """
    p = pivots.to(rotations.dtype)
    t = p + translations - torch.einsum("...ij,...j->...i", rotations, p.expand_as(translations))
    return make_transform(rotations, t)


def decompose_about_pivots(transforms: torch.Tensor, pivots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`transforms_about_pivots`: ``(R (..., B, 3, 3), t (..., B, 3))``."""
    rot = transforms[..., :3, :3]
    p = pivots.to(rot.dtype)
    t = transforms[..., :3, 3] - p + torch.einsum("...ij,...j->...i", rot, p.expand_as(transforms[..., :3, 3]))
    return rot, t


def weighted_kabsch(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rigid Procrustes ``argmin_{R,t} sum_v w_v |R src_v + t - dst_v|^2``.

    Args:
        src: ``(..., V, 3)``; dst ``(..., V, 3)``; weights ``(..., V)`` >= 0
            (all broadcast against each other over leading dims).
    Returns:
        ``R (..., 3, 3)`` with det +1 and ``t (..., 3)``.
    """
    batch = broadcast_shapes(src.shape[:-2], dst.shape[:-2], weights.shape[:-1])
    src = src.expand(*batch, *src.shape[-2:])
    dst = dst.expand(*batch, *dst.shape[-2:])
    w = weights.expand(*batch, weights.shape[-1])[..., None]
    wsum = w.sum(-2).clamp_min(eps)
    mu_s = (w * src).sum(-2) / wsum
    mu_d = (w * dst).sum(-2) / wsum
    h = ((src - mu_s[..., None, :]) * w).transpose(-1, -2) @ (dst - mu_d[..., None, :])  # (..., 3, 3)
    u, _, vh = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.ones(*batch, 3, dtype=src.dtype, device=src.device)
    diag[..., 2] = d
    rot = vh.transpose(-1, -2) @ (diag[..., None] * u.transpose(-1, -2))
    t = mu_d - (rot @ mu_s[..., None])[..., 0]
    return rot, t


def _lbs_normal_equations(
    x: torch.Tensor, w: torch.Tensor, rot: torch.Tensor, res: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton normal equations ``J^T J``, ``J^T r`` of the LBS residual
    w.r.t. per-bone updates ``(omega_b, delta_b)`` (``R_b <- exp(omega_b) R_b``,
    ``t_b <- t_b + delta_b``), assembled in closed form with matmuls instead of
    materializing the ``(3V, 6B)`` Jacobian.

    With ``p_vb = R_b x_v`` the Jacobian blocks are
    ``J_vb = w_vb [ -[p_vb]_x | I ]``, hence (``ww = w_vb w_vc``)::

        rot-rot   sum_v ww ((p_vb . p_vc) I - p_vc p_vb^T)
        rot-tr    skew(sum_v ww p_vb)          tr-rot = its transpose
        tr-tr     sum_v ww I
        J^T r     [sum_v w_vb p_vb x r_v ; sum_v w_vb r_v]

    Args:
        x: ``(V, 3)``; w ``(V, B)``; rot ``(T, B, 3, 3)``; res ``(T, V, 3)``.
    Returns:
        ``jtj (T, 6B, 6B)`` and ``jtr (T, 6B, 1)`` (per bone: 3 rot then 3 trans).
    """
    t, nv, nb = rot.shape[0], x.shape[0], w.shape[1]
    p = torch.einsum("tbij,vj->tvbi", rot, x)  # (T, V, B, 3)
    wp = w[None, :, :, None] * p  # (T, V, B, 3)
    wp_b = wp.permute(0, 2, 1, 3).reshape(t, nb, nv * 3)
    dots = wp_b @ wp_b.transpose(1, 2)  # (T, B, B): sum_v ww p_b . p_c
    wpv = wp.permute(0, 2, 3, 1).reshape(t, nb * 3, nv)  # (T, 3B, V)
    outer = (wpv @ wpv.transpose(1, 2)).reshape(t, nb, 3, nb, 3)  # [b,i,c,j] = sum ww p_bi p_cj
    cross = (wpv @ w).reshape(t, nb, 3, nb).permute(0, 1, 3, 2)  # [b,c,:] = sum_v ww p_vb
    ww = w.T @ w  # (B, B)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    # a_rr[b, i, c, j] = dots[b, c] d_ij - outer[c, i, b, j]
    a_rr = dots[:, :, None, :, None] * eye[None, None, :, None, :] - outer.permute(0, 3, 2, 1, 4)
    a_rt = skew(cross).permute(0, 1, 3, 2, 4)  # (T, B, 3, B, 3): [b, i, c, j] = skew(cross[b, c])_ij
    a_tr = a_rt.permute(0, 3, 4, 1, 2)  # transpose of the (b,i),(c,j) block matrix
    a_tt = (ww[:, None, :, None] * eye[None, :, None, :]).expand(t, nb, 3, nb, 3)
    top = torch.cat([a_rr, a_rt], dim=-1)  # (T, B, 3, B, 6)
    bottom = torch.cat([a_tr, a_tt], dim=-1)
    jtj = torch.cat([top, bottom], dim=2).reshape(t, nb * 6, nb * 6)
    # sum_v w_vb (R_b x_v) x r_v = vee(N - N^T) with N = R_b M_b^T, M_b = sum_v w_vb r_v x_v^T
    m = torch.einsum("vb,tvi,vj->tbij", w, res, x)
    n = rot @ m.transpose(-1, -2)
    g_rot = torch.stack([n[..., 1, 2] - n[..., 2, 1], n[..., 2, 0] - n[..., 0, 2], n[..., 0, 1] - n[..., 1, 0]], dim=-1)
    g_tr = torch.einsum("vb,tvi->tbi", w, res)
    jtr = torch.cat([g_rot, g_tr], dim=-1).reshape(t, nb * 6, 1)
    return jtj, jtr


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve batched symmetric positive-definite systems ``a x = b`` by Cholesky.

    (Batched LU, ``torch.linalg.solve``, deadlocks with 2 intra-op threads on some CPU
    builds of torch 2.15; Cholesky does not, and the damped normal equations are SPD.)
    Matrices that are not numerically SPD get a little more diagonal damping.
    """
    chol, info = torch.linalg.cholesky_ex(a)
    if bool((info > 0).any()):
        bump = 1e-9 * a.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1e-30)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        chol, info = torch.linalg.cholesky_ex(a + bump[..., None, None] * eye)
    return torch.cholesky_solve(b, chol)


WEAK_BONE_SHARE = 1e-4  # a bone weighing less than this share of the mean bone's is not fitted on its own


@torch.no_grad()
def fit_bone_transforms(
    rest: torch.Tensor,
    weights: torch.Tensor,
    target: torch.Tensor,
    iters: int = 30,
    damping: float = 1e-6,
    tol: float = 1e-10,
    init: torch.Tensor | None = None,
    min_bone_weight: float = 1e-6,
    max_elems: int = 2**24,
    debug: bool = False,
) -> torch.Tensor:
    """Per-frame rigid bone transforms so that ``lbs(rest, weights, G) ~= target``.

    1. initial guess per bone and frame: weighted Kabsch between ``rest`` and
       ``target`` with the bone's skinning weights (exact when weights are hard);
    2. refinement: damped Gauss-Newton (Levenberg-Marquardt) on the full LBS
       least-squares objective over all bones jointly, parameterizing updates as
       ``R <- exp(omega) R``, ``t <- t + delta`` -- exact recovery when the
       target was generated by LBS with the same weights.

    Computed in float64 internally; no gradient.

    Args:
        rest: ``(V, 3)`` rest positions; weights ``(V, B)`` skinning weights.
        target: ``(T, V, 3)`` deformed positions in the rest frame (no root).
        iters: maximum Levenberg-Marquardt iterations (a frame stops once an
            accepted step lowers its cost by less than ``tol`` relative).
        init: optional ``(T, B, 4, 4)`` starting transforms (skips Kabsch).
        min_bone_weight: a bone whose total weight is below this, or below
            ``WEAK_BONE_SHARE`` of the mean bone's, is *weak*: its transform is
            barely observable, and the least-squares fit would use it as a lever
            (a bone weighing 1e-5 on a few vertices moved 1700 shape radii away to
            shift them by 2 %). Weak bones are held out of the refinement and take
            the motion of the bone they share most vertices with (when they
            share none: the identity, or ``init``'s transform).
        max_elems: frame-chunking bound on the ``(frames, V, B, 3)``-sized
            intermediates (memory control).
    Returns:
        ``(T, B, 4, 4)`` transforms (dtype/device of ``target``).
    """
    out_dtype = target.dtype
    x = rest.detach().double()
    w = weights.detach().double()
    y = target.detach().double()
    t_frames, nv, _ = y.shape
    nb = w.shape[1]
    eye = torch.eye(3, dtype=x.dtype, device=x.device)

    mass = w.sum(0)
    weak = (mass < min_bone_weight) | (mass < WEAK_BONE_SHARE * mass.mean())
    if init is None:
        rot, tr = weighted_kabsch(x[None, None], y[:, None], w.T[None])  # (T, B, 3, 3), (T, B, 3)
        if weak.any():
            rot[:, weak] = eye
            tr[:, weak] = 0.0
    else:
        rot = init[..., :3, :3].detach().double().clone()
        tr = init[..., :3, 3].detach().double().clone()

    chunk = max(1, int(max_elems // max(1, nv * nb * 9)))
    held = weak.repeat_interleave(6)[None]  # (1, 6B): the weak bones' unknowns

    def residual(r_, t_, y_):
        return (lbs(x, w, make_transform(r_, t_)) - y_).reshape(y_.shape[0], -1)

    for s in range(0, t_frames, chunk):
        r_c, t_c, y_c = rot[s : s + chunk], tr[s : s + chunk], y[s : s + chunk]
        tc = y_c.shape[0]
        mu = torch.full((tc, 1), damping, dtype=x.dtype, device=x.device)  # LM damping (relative)
        res = residual(r_c, t_c, y_c)
        cost = (res * res).sum(-1)
        done = torch.zeros(tc, dtype=torch.bool, device=x.device)
        for _ in range(iters):
            jtj, jtr = _lbs_normal_equations(x, w, r_c, res.reshape(tc, nv, 3))
            diag = jtj.diagonal(dim1=1, dim2=2)
            lam = mu * diag.amax(-1, keepdim=True) + 1e-30
            lam = torch.where(held, 1e12 * diag.amax(-1, keepdim=True) + 1.0, lam)  # weak bones do not move
            step = -_spd_solve(jtj + torch.diag_embed(lam.expand_as(diag)), jtr)[..., 0]
            step = step.reshape(tc, nb, 6)
            r_new = axis_angle_to_matrix(step[..., :3]) @ r_c
            t_new = t_c + step[..., 3:]
            res_new = residual(r_new, t_new, y_c)
            cost_new = (res_new * res_new).sum(-1)
            accept = (cost_new <= cost) & ~done
            r_c = torch.where(accept[:, None, None, None], r_new, r_c)
            t_c = torch.where(accept[:, None, None], t_new, t_c)
            res = torch.where(accept[:, None], res_new, res)
            # converged: an accepted step barely helped, or the step is negligible
            done |= accept & (cost - cost_new <= tol * cost + 1e-30)
            done |= step.abs().flatten(1).amax(1) < 1e-13
            cost = torch.where(accept, cost_new, cost)
            mu = torch.where(accept[:, None], mu / 3.0, mu * 10.0).clamp(1e-15, 1e8)
            if debug:
                print(f"LM it: cost {cost.sum().item():.6e} accept {accept.float().mean().item():.2f} done {done.float().mean().item():.2f}")
            if bool(done.all()):
                break
        rot[s : s + chunk], tr[s : s + chunk] = r_c, t_c
    if weak.any() and not weak.all():
        # a weak bone moves with the strong bone it shares most vertices with
        share = (w.T @ w)[weak][:, ~weak]  # (weak, strong)
        partner = torch.nonzero(~weak)[:, 0][share.argmax(1)]
        moves = share.amax(1) > 0
        idx = torch.nonzero(weak)[:, 0]
        rot[:, idx[moves]], tr[:, idx[moves]] = rot[:, partner[moves]], tr[:, partner[moves]]
    return make_transform(rot, tr).to(out_dtype)
