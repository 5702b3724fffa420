"""Slow, dense reference renderer (every pixel against every face).

Used as a test oracle for :mod:`lasr.render`; memory is ``O(B * H * W * F)``,
so only for small scenes.  It implements the same *definitions* as the fast
path (see :mod:`lasr.render.shade`) through different computations:

* inside test by the signs of the three edge cross products;
* distance by explicit closest-point-on-segment;
* screen barycentrics by solving the 2x2 system ``p - v0 = l1 e1 + l2 e2``;
* depth and 3D barycentrics by intersecting the camera ray through the
  clipped screen point with the plane of the 3D triangle;
* silhouette as a literal product ``1 - prod(1 - D)``;
* K-best selection by a dense ``topk`` over all faces, ranked by
  :func:`lasr.render.raster.ranking_weights` with the depth of the ray-plane
  intersection at the pixel centre (clamped to the face's depth range).

Everything is differentiable with autograd (culled faces are replaced by a
harmless dummy triangle before any arithmetic, so no NaN can leak).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .camera import PerspectiveCamera, as_camera
from .raster import ranking_weights
from .settings import RasterSettings

__all__ = ["dense_render"]


def dense_render(
    verts: Tensor,
    faces: Tensor,
    cameras: PerspectiveCamera | Tensor,
    settings: RasterSettings,
    *,
    attributes: Tensor | None = None,
    background: float | Tensor = 0.0,
    verts_next: Tensor | None = None,
    cameras_next: PerspectiveCamera | Tensor | None = None,
) -> dict[str, Tensor]:
    """Dense oracle.  Returns a dict with ``silhouette (B,H,W)``,
    ``pix_to_face (B,H,W,K)`` (sorted by the ranking score, -1 padded),
    ``zbuf`` (ranking depth), ``dists``
    ``dists`` (signed, positive inside) and, if requested, ``attributes
    (B,H,W,C)`` and ``flow (B,H,W,2)``."""
    cam = as_camera(cameras)
    dt, dev = verts.dtype, verts.device
    H, W = settings.image_size
    K = settings.faces_per_pixel
    near, far = settings.near, settings.far
    kk = cam.intrinsics.to(dt).to(dev)
    B = max(verts.shape[0], kk.shape[0])
    verts = verts.expand(B, -1, -1)
    kk = kk.expand(B, 4)
    fx, fy, cx, cy = (kk[:, i][:, None, None] for i in range(4))
    faces = faces.to(dev).long()
    F = faces.shape[0]

    V3 = verts[:, faces]  # (B, F, 3, 3)
    z3 = V3[..., 2]
    # projected vertices (raw), used only to decide validity
    with torch.no_grad():
        zsafe = torch.where(z3 > near, z3, torch.ones_like(z3))
        u_raw = fx * V3[..., 0] / zsafe + cx
        v_raw = fy * V3[..., 1] / zsafe + cy
        ar = (u_raw[..., 1] - u_raw[..., 0]) * (v_raw[..., 2] - v_raw[..., 0]) - (
            v_raw[..., 1] - v_raw[..., 0]
        ) * (u_raw[..., 2] - u_raw[..., 0])
        fvalid = (z3 > near).all(-1) & (z3 < far).all(-1) & (ar.abs() > settings.min_area)
    dummy = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=dt, device=dev)
    V3 = torch.where(fvalid[..., None, None], V3, dummy)
    u3 = fx * V3[..., 0] / V3[..., 2] + cx  # (B, F, 3)
    v3 = fy * V3[..., 1] / V3[..., 2] + cy
    P3 = torch.stack([u3, v3], -1)  # (B, F, 3, 2)

    vv, uu = torch.meshgrid(torch.arange(H, dtype=dt, device=dev), torch.arange(W, dtype=dt, device=dev), indexing="ij")
    pix = torch.stack([uu, vv], -1).reshape(1, H * W, 1, 2)  # (1, P, 1, 2)
    Pv = P3[:, None]  # (B, 1, F, 3, 2)

    # inside: all edge cross products share a sign (or are zero)
    cr = []
    for i in range(3):
        a, b = Pv[..., i, :], Pv[..., (i + 1) % 3, :]
        d, q = b - a, pix - a
        cr.append(d[..., 0] * q[..., 1] - d[..., 1] * q[..., 0])
    cr = torch.stack(cr, -1).detach()
    inside = (cr >= 0).all(-1) | (cr <= 0).all(-1)  # (B, P, F)

    # distance to the boundary: min over segments of explicit closest point
    dd = []
    for i in range(3):
        a, b = Pv[..., i, :], Pv[..., (i + 1) % 3, :]
        ab = b - a
        t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1)).clamp(0, 1)
        c = a + t[..., None] * ab
        dd.append(((pix - c) ** 2).sum(-1))
    d2 = torch.stack(dd, -1).min(-1).values  # (B, P, F)
    sd2 = torch.where(inside, d2, -d2)

    # screen barycentrics by solving p - v0 = l1 (v1 - v0) + l2 (v2 - v0)
    A = torch.stack([Pv[..., 1, :] - Pv[..., 0, :], Pv[..., 2, :] - Pv[..., 0, :]], -1)  # (B,1,F,2,2)
    rhs = (pix - Pv[..., 0, :]).unsqueeze(-1)  # (B,P,F,2,1)
    l12 = torch.linalg.solve(A.expand(B, H * W, F, 2, 2), rhs).squeeze(-1)
    lam = torch.cat([1 - l12.sum(-1, keepdim=True), l12], -1)  # (B,P,F,3)
    lc = lam.clamp_min(0)
    lc = lc / lc.sum(-1, keepdim=True)
    qpt = (lc[..., None] * Pv).sum(-2)  # clipped screen point (B,P,F,2)

    # depth: ray through the clipped point against the triangle's plane
    ray = torch.stack(
        [(qpt[..., 0] - cx) / fx, (qpt[..., 1] - cy) / fy, torch.ones_like(qpt[..., 0])],
        -1,
    )
    V0, V1, V2 = (V3[:, None, :, i] for i in range(3))  # (B,1,F,3)
    n = torch.linalg.cross(V1 - V0, V2 - V0)
    tz = (n * V0).sum(-1) / (n * ray).sum(-1)  # z of intersection (ray has z = 1)
    X = tz[..., None] * ray
    nn2 = (n * n).sum(-1)
    beta = torch.stack(
        [
            (torch.linalg.cross(V2 - V1, X - V1) * n).sum(-1) / nn2,
            (torch.linalg.cross(V0 - V2, X - V2) * n).sum(-1) / nn2,
            (torch.linalg.cross(V1 - V0, X - V0) * n).sum(-1) / nn2,
        ],
        -1,
    )  # (B,P,F,3) 3D barycentrics of X

    # ranking key: inverse depth where the ray through the pixel centre meets
    # the face's plane, clamped to the face's inverse-depth range
    dir_p = torch.stack(
        [((pix[..., 0] - cx) / fx).expand(B, H * W, F), ((pix[..., 1] - cy) / fy).expand(B, H * W, F),
         torch.ones(B, H * W, F, dtype=dt, device=dev)], -1,
    )
    iz_plane = (n * dir_p).sum(-1) / (n * V0).sum(-1)
    iz3 = 1.0 / V3[..., 2]  # (B, F, 3)
    iz_key = torch.minimum(torch.maximum(iz_plane, iz3.min(-1).values[:, None]), iz3.max(-1).values[:, None])

    # selection: within blur radius (or inside); keep the K lowest ranking scores
    ra, rb, mode = ranking_weights(settings)
    z_rank = 1.0 / iz_key.detach()
    d2d = d2.detach()
    cand = fvalid[:, None, :] & (inside | (d2d <= settings.blur_radius2))
    inf = torch.full_like(d2d, torch.inf)
    signed = torch.where(inside, -d2d, d2d)  # -s d^2
    w_score = ra * z_rank + rb * signed.clamp_min(0)
    c_score = rb * signed + 1e-6 * ra * z_rank  # depth breaks ties
    if mode == "depth":
        score = z_rank
    elif mode == "coverage":
        score = c_score
    elif mode == "weight":
        score = w_score
    else:  # hybrid: min of both, each relative to its best candidate at the pixel
        def rel(x):
            m = torch.where(cand, x, inf).min(-1, keepdim=True).values
            return x - torch.where(torch.isinf(m), torch.zeros_like(m), m)

        score = torch.minimum(rel(w_score), rel(c_score))
    key = torch.where(cand, score, torch.full_like(score, torch.inf))
    kk_ = min(K, F)
    kv, ki = torch.topk(key, kk_, dim=-1, largest=False, sorted=True)
    sel = torch.isfinite(kv)  # (B,P,kk)
    p2f = torch.where(sel, ki, torch.full_like(ki, -1))

    def take(x: Tensor) -> Tensor:
        return torch.gather(x, 2, ki)

    out: dict[str, Tensor] = {}
    pad = K - kk_

    def padk(x: Tensor, val: float) -> Tensor:
        if pad:
            x = torch.cat([x, torch.full((*x.shape[:-1], pad), val, dtype=x.dtype, device=dev)], -1)
        return x.reshape(B, H, W, K)

    out["pix_to_face"] = padk(p2f, -1)
    out["zbuf"] = padk(torch.where(sel, torch.gather(z_rank, 2, ki), torch.full_like(kv, -1.0)), -1.0)
    out["dists"] = padk(torch.where(sel, take(sd2), torch.full_like(kv, -1.0)).detach(), -1.0)

    ssd = take(sd2)
    if settings.sigma > 0:
        D = torch.sigmoid(ssd / settings.sigma)
    else:
        D = take(inside).to(dt)
    D = torch.where(sel, D, torch.zeros_like(D))
    out["silhouette"] = (1 - torch.prod(1 - D, dim=-1)).reshape(B, H, W)

    if attributes is not None or verts_next is not None:
        zeta = (far - take(tz)) / (far - near)
        zmax = torch.where(sel, zeta, torch.full_like(zeta, -torch.inf)).max(-1).values
        zmax = zmax.clamp_min(settings.blend_eps).detach()
        wk = torch.where(sel, D * torch.exp((torch.where(sel, zeta, zmax[..., None]) - zmax[..., None]) / settings.gamma), torch.zeros_like(D))
        bsel = torch.gather(beta, 2, ki[..., None].expand(-1, -1, -1, 3))  # (B,P,kk,3)
        fsel = torch.where(sel, ki, torch.zeros_like(ki))

        if attributes is not None:
            at = attributes.to(dt)
            if at.dim() == 2:
                at = at.unsqueeze(0)
            at = at.expand(B, -1, -1)
            C = at.shape[-1]
            afc = at[:, faces]  # (B,F,3,C)
            g = torch.stack([afc[b][fsel[b]] for b in range(B)])  # (B,P,kk,3,C)
            ck = (bsel[..., None] * g).sum(-2)
            bg = torch.as_tensor(background, dtype=dt, device=dev).expand(C)
            wbg = torch.exp((settings.blend_eps - zmax) / settings.gamma)
            col = ((wk[..., None] * ck).sum(-2) + wbg[..., None] * bg) / (wk.sum(-1) + wbg)[..., None]
            out["attributes"] = col.reshape(B, H, W, C)

        if verts_next is not None:
            camn = as_camera(cameras_next) if cameras_next is not None else cam
            kn = camn.intrinsics.to(dt).to(dev).expand(B, 4)
            vn = verts_next.to(dt).expand(B, -1, -1)[:, faces]  # (B,F,3,3)
            g = torch.stack([vn[b][fsel[b]] for b in range(B)])  # (B,P,kk,3,3)
            # where the face's plane is well behaved at the pixel (inverse depth
            # above half the face's smallest), the material point is the
            # ray-plane intersection at the pixel centre; otherwise the
            # clipped point on the triangle
            good = iz_plane > 0.5 * iz3.min(-1).values[:, None]
            izp = torch.where(good, iz_plane, torch.ones_like(iz_plane))
            Xp = dir_p / izp[..., None]
            beta_p = torch.stack(
                [
                    (torch.linalg.cross(V2 - V1, Xp - V1) * n).sum(-1) / nn2,
                    (torch.linalg.cross(V0 - V2, Xp - V2) * n).sum(-1) / nn2,
                    (torch.linalg.cross(V1 - V0, Xp - V0) * n).sum(-1) / nn2,
                ],
                -1,
            )
            beta_f = torch.where(good[..., None], beta_p, beta)
            q_f = torch.where(good[..., None], pix.expand(B, H * W, F, 2), qpt)
            bsel_f = torch.gather(beta_f, 2, ki[..., None].expand(-1, -1, -1, 3))
            Xn = (bsel_f[..., None] * g).sum(-2)
            zn = Xn[..., 2]
            un = kn[:, None, None, 0] * Xn[..., 0] / zn + kn[:, None, None, 2]
            vn_ = kn[:, None, None, 1] * Xn[..., 1] / zn + kn[:, None, None, 3]
            qs = torch.gather(q_f, 2, ki[..., None].expand(-1, -1, -1, 2))
            fk = torch.stack([un, vn_], -1) - qs
            den = wk.sum(-1)
            has = den > 0
            den = torch.where(has, den, torch.ones_like(den))
            fl = (wk[..., None] * fk).sum(-2) / den[..., None]
            out["flow"] = torch.where(has[..., None], fl, torch.zeros_like(fl)).reshape(B, H, W, 2)
    return out
