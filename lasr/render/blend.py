"""Differentiable blending of rasterised fragments (plain tensor ops, autograd).

Given the face indices chosen by :func:`lasr.render.rasterize`, everything
differentiable is recomputed here from the vertices, for the ``K`` selected
faces of each covered pixel only:

* the squared Euclidean pixel-to-triangle distance ``d^2`` (px^2) and the
  inside test (independent of winding);
* the SoftRas probability ``D = sigmoid(s d^2 / sigma)``, ``s = +1`` inside,
  ``-1`` outside, and the silhouette ``1 - prod_k (1 - D_k)``
  (Liu et al., "Soft Rasterizer", ICCV 2019, eqs. 3-4), evaluated stably as
  ``-expm1(-sum_k softplus(s d^2 / sigma))``;
* barycentrics: screen barycentrics ``lam`` are clipped to the triangle
  (``relu`` then renormalise, as SoftRas ``barycentric_clip`` and PyTorch3D
  ``clip_barycentric_coordinates``) and then made perspective-correct,
  ``beta_i = (lam_i / z_i) / sum_j (lam_j / z_j)``; the depth is
  ``z = 1 / sum_j (lam_j / z_j)``.  Inside the triangle these are the exact
  barycentrics / depth of the 3D surface point seen through the pixel centre;
* the depth-aware blend of attributes (SoftRas eq. 6, PyTorch3D
  ``softmax_rgb_blend``): ``w_k = D_k exp((zeta_k - zeta_max) / gamma)`` with
  ``zeta = (far - z) / (far - near)``, background weight
  ``exp((blend_eps - zeta_max) / gamma)``;
* optical flow (see :func:`blend` for the exact definition).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor

from .camera import PerspectiveCamera, as_camera
from .rasterize import Fragments
from .settings import RasterSettings

__all__ = ["RenderOutput", "blend", "soft_silhouette", "blend_attributes", "render_flow"]


@dataclass(frozen=True)
class RenderOutput:
    """Images produced by :func:`blend`; a field is ``None`` when not requested.

    Attributes:
        silhouette: ``(B, H, W)`` soft silhouette in ``[0, 1]``.
        attributes: ``(B, H, W, C)`` depth-blended per-vertex attributes
            (e.g. colours); pixels with no face get ``background``.
        flow: ``(B, H, W, 2)`` forward optical flow ``(du, dv)`` in pixels from
            frame ``t`` to frame ``t'``; 0 where no face was selected.
        mask: ``(B, H, W)`` bool hard coverage (pixel centre inside at least one
            face), from the fragments, no gradient.
    """

    silhouette: Tensor | None
    attributes: Tensor | None
    flow: Tensor | None
    mask: Tensor


def _cross2(a: Tensor, b: Tensor) -> Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _face_table(x: Tensor, faces: Tensor, batch: int) -> Tensor:
    """``(B|1, V, C)`` per-vertex values -> ``(batch * F, 3 * C)`` per-face table."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    x = x.expand(batch, -1, -1)
    t = x[:, faces]  # (B, F, 3, C)
    return t.reshape(batch * faces.shape[0], 3 * x.shape[-1])


def _project(k: Tensor, pts: Tensor, near: float) -> Tensor:
    """Project ``(..., 3)`` points with broadcastable ``(..., 4)`` intrinsics."""
    z = pts[..., 2:3].clamp_min(near)
    return pts[..., :2] / z * k[..., 0:2] + k[..., 2:4]


def blend(
    verts: Tensor,
    faces: Tensor,
    cameras: PerspectiveCamera | Tensor,
    fragments: Fragments,
    settings: RasterSettings,
    *,
    silhouette: bool = True,
    attributes: Tensor | None = None,
    background: float | Tensor = 0.0,
    verts_next: Tensor | None = None,
    cameras_next: PerspectiveCamera | Tensor | None = None,
) -> RenderOutput:
    """Differentiably shade rasterised fragments.

    Args:
        verts: ``(B, V, 3)`` camera-space vertices at frame ``t`` (the same
            tensor given to :func:`rasterize`; ``B`` may be 1 with batched
            cameras).  Gradients flow to it.
        faces: ``(F, 3)`` int64.
        cameras: ``B`` (or 1) cameras of frame ``t`` (:class:`PerspectiveCamera`
            or ``(B, 4)`` ``(fx, fy, cx, cy)`` tensor); gradients flow to a
            tensor of intrinsics too.
        fragments: output of :func:`rasterize` for these vertices/cameras.
        settings: :class:`RasterSettings` (``sigma``, ``gamma``, ``near``,
            ``far``, ``blend_eps``, ``min_area``).
        silhouette: compute the soft silhouette.
        attributes: optional per-vertex attributes ``(B, V, C)`` or ``(V, C)``
            to blend (e.g. colours); interpolated with perspective-correct
            (clipped) barycentrics and blended with the SoftRas/PyTorch3D
            depth softmax.
        background: scalar or ``(C,)`` attribute value of the background.
        verts_next: optional ``(B, V, 3)`` camera-space vertices of the *same*
            mesh at frame ``t'`` (in the camera of ``t'``); requests flow.
        cameras_next: cameras of frame ``t'`` (defaults to ``cameras``).

    Flow definition: for a selected face ``k`` at pixel ``p`` let ``beta`` be
    its perspective-correct clipped barycentrics at frame ``t`` and
    ``lam`` the clipped screen barycentrics.  The face's surface point is
    ``X_k = sum_i beta_i V_i`` (its projection is ``q_k = sum_i lam_i pi_t(V_i)``,
    which equals ``p`` when ``p`` is inside the face); the same material point at
    ``t'`` is ``X'_k = sum_i beta_i V'_i``.  The per-face flow is
    ``pi_t'(X'_k) - q_k`` and the pixel flow is their average with the
    frame-``t`` blend weights ``w_k`` normalised over faces (no background
    term).  Inside the object this is the exact projected motion of the
    visible surface point (LASR renders flow the same way, interpolating each
    vertex's projections at both frames with the weights of frame ``t``).

    Returns:
        :class:`RenderOutput`.
    """
    cam = as_camera(cameras)
    faces = faces.to(device=verts.device, dtype=torch.long)
    B, H, W, K = fragments.pix_to_face.shape
    F = faces.shape[0]
    dt, dev = verts.dtype, verts.device
    near, far = settings.near, settings.far

    p2f_all = fragments.pix_to_face.reshape(B * H * W, K)
    pix = (p2f_all >= 0).any(-1).nonzero().squeeze(1)  # (Np,) covered pixels
    p2f = p2f_all[pix]
    valid = p2f >= 0  # (Np, K)
    bidx = pix // (H * W)
    rem = pix % (H * W)
    p = torch.stack([(rem % W).to(dt), (rem // W).to(dt)], -1)[:, None, :]  # (Np, 1, 2) = (u, v)
    fid = (bidx[:, None] * F + p2f.clamp_min(0)).reshape(-1)

    uv, z = cam.project(verts, near=near)
    z = z.clamp_min(near)
    table = _face_table(torch.cat([uv.expand(B, -1, -1), z.expand(B, -1)[..., None]], -1), faces, B)
    g = table.index_select(0, fid).view(-1, K, 3, 3)
    tri = g[..., 0:2]  # (Np, K, 3, 2)
    tz = g[..., 2]  # (Np, K, 3)

    # --- screen barycentrics and inside test (any winding) ---
    a = tri.roll(-1, dims=2)  # a_i = v_{i+1}
    e = tri.roll(-2, dims=2) - a  # e_i = v_{i+2} - v_{i+1}, edge opposite vertex i
    area2 = _cross2(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    area_ok = area2.abs() > settings.min_area
    valid = valid & area_ok
    area2 = torch.where(area_ok, area2, torch.ones_like(area2))
    pa = p[:, :, None, :] - a  # (Np, K, 3, 2)
    lam = _cross2(e, pa) / area2[..., None]
    inside = (lam.detach() >= 0).all(-1)

    # --- squared distance to the triangle boundary ---
    ee = (e * e).sum(-1).clamp_min(1e-30)
    t = ((pa * e).sum(-1) / ee).clamp(0.0, 1.0)
    dv = pa - t[..., None] * e
    d2 = (dv * dv).sum(-1).amin(-1)  # (Np, K)
    sd2 = torch.where(inside, d2, -d2)

    if settings.sigma > 0:
        x = sd2 / settings.sigma
        log_d = nnf.logsigmoid(x)
    else:  # hard coverage, no geometric gradient
        x = None
        log_d = torch.where(inside, torch.zeros_like(d2), torch.full_like(d2, -torch.inf))

    sil_img = None
    if silhouette:
        if x is not None:
            nll = torch.where(valid, nnf.softplus(x), torch.zeros_like(x)).sum(-1)
            sil = -torch.expm1(-nll)
        else:
            sil = (valid & inside).any(-1).to(dt)
        sil_img = torch.zeros(B * H * W, dtype=dt, device=dev).index_copy(0, pix, sil).view(B, H, W)

    attr_img = flow_img = None
    if attributes is not None or verts_next is not None:
        lc = lam.clamp_min(0)
        s = lc.sum(-1)
        s = torch.where(s > 0, s, torch.ones_like(s))
        num = lc / tz
        invz_s = num.sum(-1)
        invz_s = torch.where(invz_s > 0, invz_s, torch.ones_like(invz_s))
        beta = num / invz_s[..., None]  # perspective-correct clipped barycentrics
        zpix = s / invz_s  # depth at the clipped point
        zeta = (far - zpix) / (far - near)
        neg_inf = torch.full_like(zeta, -torch.inf)
        zmax = torch.where(valid, zeta, neg_inf).amax(-1).clamp_min(settings.blend_eps).detach()
        logw = log_d + (zeta - zmax[:, None]) / settings.gamma
        w = torch.exp(torch.where(valid, logw, neg_inf))  # (Np, K)

        if attributes is not None:
            C = attributes.shape[-1]
            at = _face_table(attributes.to(dt), faces, B).index_select(0, fid).view(-1, K, 3, C)
            ck = (beta[..., None] * at).sum(-2)  # (Np, K, C)
            bg = torch.as_tensor(background, dtype=dt, device=dev).expand(C)
            w_bg = torch.exp((settings.blend_eps - zmax) / settings.gamma)
            col = ((w[..., None] * ck).sum(1) + w_bg[:, None] * bg) / (w.sum(1) + w_bg)[:, None]
            base = bg.expand(B * H * W, C).contiguous()
            attr_img = base.index_copy(0, pix, col).view(B, H, W, C)

        if verts_next is not None:
            cam_n = as_camera(cameras_next) if cameras_next is not None else cam
            k_n = cam_n.intrinsics.to(dtype=dt, device=dev).expand(B, 4)
            vn = _face_table(verts_next.to(dt), faces, B).index_select(0, fid).view(-1, K, 3, 3)
            xn = (beta[..., None] * vn).sum(-2)  # (Np, K, 3) material point at t'
            un = _project(k_n[bidx][:, None, :], xn, near)
            q = ((lc / s[..., None])[..., None] * tri).sum(-2)  # its projection at t
            fk = un - q
            den = w.sum(1)
            den = torch.where(den > 0, den, torch.ones_like(den))
            fl = (w[..., None] * fk).sum(1) / den[:, None]
            flow_img = torch.zeros(B * H * W, 2, dtype=dt, device=dev).index_copy(0, pix, fl).view(B, H, W, 2)

    return RenderOutput(silhouette=sil_img, attributes=attr_img, flow=flow_img, mask=fragments.mask)


def soft_silhouette(
    verts: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor, fragments: Fragments,
    settings: RasterSettings,
) -> Tensor:
    """``(B, H, W)`` SoftRas silhouette ``1 - prod_k (1 - sigmoid(s_k d_k^2 / sigma))``."""
    return blend(verts, faces, cameras, fragments, settings).silhouette


def blend_attributes(
    verts: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor, fragments: Fragments,
    settings: RasterSettings, attributes: Tensor, background: float | Tensor = 0.0,
) -> Tensor:
    """``(B, H, W, C)`` depth-softmax blend of per-vertex ``attributes`` (see :func:`blend`)."""
    return blend(
        verts, faces, cameras, fragments, settings, silhouette=False, attributes=attributes,
        background=background,
    ).attributes


def render_flow(
    verts: Tensor, verts_next: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor,
    cameras_next: PerspectiveCamera | Tensor | None, fragments: Fragments, settings: RasterSettings,
) -> Tensor:
    """``(B, H, W, 2)`` flow from frame ``t`` (``verts``, ``cameras``, whose
    ``fragments`` these are) to ``t'`` (``verts_next``, ``cameras_next``); see
    :func:`blend` for the definition."""
    return blend(
        verts, faces, cameras, fragments, settings, silhouette=False, verts_next=verts_next,
        cameras_next=cameras_next,
    ).flow
