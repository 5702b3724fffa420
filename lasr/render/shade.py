"""Differentiable blending of rasterised fragments (plain tensor ops, autograd).

Given the face indices chosen by :func:`lasr.render.rasterize`, everything
differentiable is recomputed here from the vertices, for the ``K`` selected
faces of each covered pixel only:

* the squared Euclidean pixel-to-triangle distance ``d^2`` (px^2), from the
  edge the rasteriser found nearest (the minimum over the three edges, so
  values and gradients equal those of the full minimum); the inside test
  (independent of winding) is the rasteriser's;
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
from .raster import Fragments, nonzero_indices
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


def _flat_table(x: Tensor, batch: int) -> Tensor:
    """``(B|1, V, C)`` or ``(V, C)`` per-vertex values -> ``(batch * V, C)``."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    return x.expand(batch, -1, -1).reshape(-1, x.shape[-1])


def _take(table: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` (any shape) of a 1D or 2D table (autograd: index_select)."""
    out = table.index_select(0, idx.reshape(-1))
    return out.view(*idx.shape, *table.shape[1:])


class _SegmentDist2(torch.autograd.Function):
    """Scaled squared distance from pixel centres to edge segments, with a
    hand-written backward (one pass, no autograd graph of the ~15 element-wise
    steps).

    ``forward(ux, uy, ia, ib, px, py, scale, valid)``: ``ux``, ``uy``
    ``(N,)`` projected vertex coordinates (differentiable), ``ia``, ``ib``
    ``(Np, K)`` int64 indices of the segment ends ``a``, ``b`` into them,
    ``px``, ``py`` ``(Np, 1)`` pixel centres, ``scale`` ``(Np, K)`` factor,
    ``valid`` ``(Np, K)`` bool.  Returns ``(Np, K)``
    ``scale * |p - a - t (b - a)|^2`` with ``t = clamp((p - a).(b - a) /
    |b - a|^2, 0, 1)``, and ``-inf`` where ``valid`` is false (so that
    ``softplus`` / ``sigmoid`` give exactly 0 there); no gradient flows from
    those slots.

    Backward: with ``w = p - a - t (b - a)`` the segment's closest point is
    a minimiser over ``t`` in ``[0, 1]``, so (envelope theorem) ``d|w|^2 / da
    = -2 (1 - t) w`` and ``d|w|^2 / db = -2 t w``; these are also the
    gradients of the explicit formula (the clamp is inactive where ``t``
    varies, and ``d|w|^2/dt = 0`` there).
    """

    @staticmethod
    def forward(ctx, ux, uy, ia, ib, px, py, scale, valid):
        ax, ay = _take(ux, ia), _take(uy, ia)
        ex, ey = _take(ux, ib).sub_(ax), _take(uy, ib).sub_(ay)
        wx, wy = px - ax, py - ay  # p - a
        t = torch.addcmul(wx * ex, wy, ey).div_((ex * ex).addcmul_(ey, ey).clamp_min_(1e-30)).clamp_(0.0, 1.0)
        wx.addcmul_(t, ex, value=-1.0)  # w = p - a - t e
        wy.addcmul_(t, ey, value=-1.0)
        x = (wx * wx).addcmul_(wy, wy).mul_(scale).masked_fill_(~valid, -torch.inf)
        ctx.save_for_backward(ia, ib, wx, wy, t, scale.masked_fill(~valid, 0.0))
        ctx.n = ux.shape[0]
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gx):
        ia, ib, wx, wy, t, scale = ctx.saved_tensors
        g = (gx * scale).mul_(-2.0)  # -2 dL/d|w|^2 (scale is 0 on empty slots)
        ia, ib = ia.reshape(-1), ib.reshape(-1)
        grads = []
        for w in (wx, wy):
            gw = g * w  # dL/da + dL/db
            gb = gw * t
            # scatter_add_ (not index_add_): about twice as fast on CPU
            grads.append(torch.zeros(ctx.n, dtype=gw.dtype, device=gw.device)
                         .scatter_add_(0, ia, gw.sub_(gb).reshape(-1)).scatter_add_(0, ib, gb.reshape(-1)))
        return grads[0], grads[1], None, None, None, None, None, None


class _SoftUnion(torch.autograd.Function):
    """SoftRas silhouette of the last axis, ``1 - prod_k (1 - sigmoid(x_k))``,
    evaluated stably as ``-expm1(-sum_k softplus(x_k))``, with a hand-written
    backward ``d/dx_k = prod_j (1 - sigmoid(x_j)) sigmoid(x_k)`` (a single
    ``sigmoid``; autograd's ``softplus`` backward is several times slower on
    CPU).  ``x_k = -inf`` contributes nothing (and gets zero gradient)."""

    @staticmethod
    def forward(ctx, x):
        nll = nnf.softplus(x).sum(-1)
        ctx.save_for_backward(x, torch.exp(-nll))  # prod_k (1 - D_k)
        return -torch.expm1(-nll)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, miss = ctx.saved_tensors
        return torch.sigmoid(x).mul_((g * miss).unsqueeze(-1))


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
        verts: ``(B, V, 3)`` camera-space vertices at frame ``t`` (the values
            given to :func:`rasterize`; ``B`` may be 1 with batched cameras).
            Gradients flow to it.
        faces: ``(F, 3)`` int64.
        cameras: ``B`` (or 1) cameras of frame ``t`` (:class:`PerspectiveCamera`
            or ``(B, 4)`` ``(fx, fy, cx, cy)`` tensor); gradients flow to a
            tensor of intrinsics too.
        fragments: output of :func:`rasterize` for these vertices/cameras
            (its ``dists`` sign gives the inside test, its ``nearest_edge`` the
            edge whose distance is recomputed).
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

    Flow definition: for a selected face ``k`` at pixel ``p`` take the point
    ``X_k`` where the pixel's ray meets the face's plane, i.e. the
    perspective-correct (unclipped) barycentrics ``beta`` of ``p``, so that
    ``pi_t(X_k) = p`` exactly.  The same material point at ``t'`` is
    ``X'_k = sum_i beta_i V'_i`` and the face's flow is ``pi_t'(X'_k) - p``.
    (If the plane is nearly edge-on at ``p``, i.e. its inverse depth there is
    below half the face's smallest vertex inverse depth, the clipped point on
    the triangle and its projection are used instead.)  The pixel's flow is
    the average of the faces' flows with the frame-``t`` blend weights ``w_k``
    normalised over faces (no background term), 0 where no face is selected.
    For the face containing ``p`` this is exactly the projected motion of the
    visible surface point; extending each neighbouring face's plane to ``p``
    (instead of evaluating it at its nearest point) keeps the soft blend from
    smearing the flow field over the blur radius.  LASR renders flow the same
    way in spirit: each vertex's projections at both frames interpolated with
    the weights of frame ``t``.  With ``settings.flow_gradient == "points"`` the
    values are the same but the barycentrics and blend weights are held: the
    face's flow is ``pi_t'(X'_k) - pi_t(X_k)`` with ``X_k = sum_i beta_i V_i``
    (which projects to ``p``), so a step on frame ``t``'s vertices moves the
    points the pixel sees instead of sliding the surface under it.

    Returns:
        :class:`RenderOutput`.
    """
    cam = as_camera(cameras)
    faces = faces.to(device=verts.device, dtype=torch.long)
    B, H, W, K = fragments.pix_to_face.shape
    V = verts.shape[1]
    dt, dev = verts.dtype, verts.device
    near, far = settings.near, settings.far

    # ---- compact to the covered pixels (valid slots come first) ----
    p2f_all = fragments.pix_to_face.reshape(B * H * W, K)
    pix = nonzero_indices(p2f_all[:, 0] >= 0)  # (Np,)
    p2f = p2f_all.index_select(0, pix)
    valid = p2f >= 0  # (Np, K)
    inside = fragments.dists.reshape(B * H * W, K).index_select(0, pix) >= 0
    # frame, pixel centre (u, v) of each covered pixel, by look-up in (B, H, W)
    # tables (int64 division is slow on CPU)
    bidx = _take(torch.arange(B, device=dev).repeat_interleave(H * W), pix)
    px = _take(torch.arange(W, dtype=dt, device=dev).repeat(B * H), pix)[:, None]  # (Np, 1)
    py = _take(torch.arange(H, dtype=dt, device=dev).repeat_interleave(W).repeat(B), pix)[:, None]
    voff = (bidx * V)[:, None]
    fl = faces.reshape(-1)

    uv, z = cam.project(verts, near=near)
    ux = uv[..., 0].expand(B, V).reshape(-1)  # (B * V,)
    uy = uv[..., 1].expand(B, V).reshape(-1)

    # ---- signed squared distance, from the nearest edge only ----
    # edge i of a face joins its vertices (i + 1) % 3 and (i + 2) % 3: one
    # table of both ends of the three edges of every face of every frame, as
    # indices into (B * V,), (B * F * 6,) (the int64 modulo and advanced
    # indexing are slow on CPU)
    if settings.sigma > 0:
        ends = faces.index_select(1, torch.tensor([1, 2, 0, 2, 0, 1], device=dev))
        ends = (ends + (torch.arange(B, device=dev) * V)[:, None, None]).reshape(-1)
        # (frame * F + face) * 6 + edge; empty slots (face = edge = -1) land on
        # some other entry (or are clamped to 0) and are masked out below
        edge = fragments.nearest_edge.reshape(B * H * W, K).index_select(0, pix)
        f6 = (p2f * 6).add_(edge).add_((bidx * (6 * faces.shape[0]))[:, None]).clamp_min_(0)
        ia = _take(ends, f6)
        ib = _take(ends, f6.add_(3))
        # +-1/sigma, +1 inside (torch.where is slow on CPU); -inf on empty slots
        scale = (inside.to(dt) * 2.0 - 1.0).mul_(1.0 / settings.sigma)
        x = _SegmentDist2.apply(ux, uy, ia, ib, px, py, scale, valid)  # signed d^2 / sigma
    else:  # hard coverage, no geometric gradient
        x = None

    sil_img = None
    if silhouette:
        if x is not None:
            sil = _SoftUnion.apply(x)  # 1 - prod(1 - sigmoid(x)); x = -inf on empty slots
        else:
            sil = (valid & inside).any(-1).to(dt)
        sil_img = torch.zeros(B * H * W, dtype=dt, device=dev).index_copy(0, pix, sil).view(B, H, W)

    attr_img = flow_img = None
    if attributes is not None or verts_next is not None:
        if x is not None:
            log_d = nnf.logsigmoid(x)
        else:
            log_d = torch.where(inside, 0.0, -torch.inf).to(dt)
        izt = 1.0 / z.clamp_min(near).expand(B, V).reshape(-1)
        f3 = p2f.clamp_min(0) * 3
        ii = [fl[f3 + j] + voff for j in range(3)]
        xs = [_take(ux, i) for i in ii]
        ys = [_take(uy, i) for i in ii]
        izs = [_take(izt, i) for i in ii]
        area2 = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (ys[1] - ys[0]) * (xs[2] - xs[0])
        area2 = torch.where(area2.abs() > settings.min_area, area2, torch.ones_like(area2))
        # clipped screen barycentrics: lam_j = cross(v_{j+2} - v_{j+1}, p - v_{j+1}) / 2A
        lam = []
        for j in range(3):
            j1, j2 = (j + 1) % 3, (j + 2) % 3
            w = (xs[j2] - xs[j1]) * (py - ys[j1]) - (ys[j2] - ys[j1]) * (px - xs[j1])
            lam.append(w / area2)
        lc = [x.clamp_min(0.0) for x in lam]
        ssum = lc[0] + lc[1] + lc[2]
        ssum = torch.where(ssum > 0, ssum, torch.ones_like(ssum))
        num = [lc[j] * izs[j] for j in range(3)]
        invz_s = num[0] + num[1] + num[2]
        invz_s = torch.where(invz_s > 0, invz_s, torch.ones_like(invz_s))
        beta = [nj / invz_s for nj in num]  # perspective-correct clipped barycentrics
        zpix = ssum / invz_s  # depth of the clipped point
        zeta = (far - zpix) / (far - near)
        neg_inf = torch.full_like(zeta, -torch.inf)
        zmax = torch.where(valid, zeta, neg_inf).amax(-1).clamp_min(settings.blend_eps).detach()
        logw = log_d + (zeta - zmax[:, None]) / settings.gamma
        w = torch.exp(torch.where(valid, logw, neg_inf))  # (Np, K), 0 on empty slots

        if attributes is not None:
            at = _flat_table(attributes.to(dt), B)
            C = at.shape[-1]
            ck = sum(beta[j][..., None] * _take(at, ii[j]) for j in range(3))  # (Np, K, C)
            bg = torch.as_tensor(background, dtype=dt, device=dev).expand(C)
            w_bg = torch.exp((settings.blend_eps - zmax) / settings.gamma)
            col = ((w[..., None] * ck).sum(1) + w_bg[:, None] * bg) / (w.sum(1) + w_bg)[:, None]
            base = bg.expand(B * H * W, C).contiguous()
            attr_img = base.index_copy(0, pix, col).view(B, H, W, C)

        if verts_next is not None:
            cam_n = as_camera(cameras_next) if cameras_next is not None else cam
            # the face's point on the pixel's ray (unclipped perspective-correct
            # barycentrics, projecting exactly to p) where its plane is well
            # behaved at p; otherwise the clipped point q_k on the triangle
            num_u = [lam[j] * izs[j] for j in range(3)]
            den_u = num_u[0] + num_u[1] + num_u[2]
            good = den_u > 0.5 * torch.minimum(torch.minimum(izs[0], izs[1]), izs[2])
            den_u = torch.where(good, den_u, torch.ones_like(den_u))
            bf = [torch.where(good, num_u[j] / den_u, beta[j]) for j in range(3)]
            held = settings.flow_gradient == "points"
            if held:  # the surface points under the pixel and their weights, as frame t puts them
                bf, w = [b.detach() for b in bf], w.detach()

            def projected(cam_x: PerspectiveCamera, v_x: Tensor) -> tuple[Tensor, Tensor]:
                # the pixels' (Np, K) surface points with the vertices v_x, seen by cam_x
                table = _flat_table(v_x.to(dt), B)
                x = sum(bf[j][..., None] * _take(table, ii[j]) for j in range(3))
                k_x = cam_x.intrinsics.to(dtype=dt, device=dev).expand(B, 4)[bidx][:, None, :]  # (Np, 1, 4)
                zx = x[..., 2].clamp_min(near)
                return x[..., 0] / zx * k_x[..., 0] + k_x[..., 2], x[..., 1] / zx * k_x[..., 1] + k_x[..., 3]

            un, vn_ = projected(cam_n, verts_next)  # at t'
            qx = (lc[0] * xs[0] + lc[1] * xs[1] + lc[2] * xs[2]) / ssum  # clipped point at t
            qy = (lc[0] * ys[0] + lc[1] * ys[1] + lc[2] * ys[2]) / ssum
            qx = torch.where(good, px, qx)
            qy = torch.where(good, py, qy)
            if held:  # the same points at t, projected (p or the clipped point again): the value is
                # the one above exactly (a plane crossing `near` clamps the projection's depth), the
                # gradient the projection's, which moves with the points
                ut, vt = projected(cam, verts)
                qx = qx.detach() + (ut - ut.detach())
                qy = qy.detach() + (vt - vt.detach())
            den = w.sum(1)
            den = torch.where(den > 0, den, torch.ones_like(den))
            fu = (w * (un - qx)).sum(1) / den
            fv = (w * (vn_ - qy)).sum(1) / den
            fl2 = torch.stack([fu, fv], -1)
            flow_img = torch.zeros(B * H * W, 2, dtype=dt, device=dev).index_copy(0, pix, fl2).view(B, H, W, 2)

    cov = (valid & inside).any(-1)
    mask = torch.zeros(B * H * W, dtype=torch.bool, device=dev).index_copy(0, pix, cov).view(B, H, W)
    return RenderOutput(silhouette=sil_img, attributes=attr_img, flow=flow_img, mask=mask)


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
