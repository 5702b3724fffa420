"""Coarse-to-fine screen-space rasterisation (no gradients).

For every pixel, find the ``K`` nearest faces (in depth) whose projected
triangle lies within the blur radius of the pixel centre.  This only *selects*
faces; everything differentiable is recomputed from the vertices and the
selected indices by :mod:`lasr.render.blend`.  The split and the data type
follow PyTorch3D's ``rasterize_meshes`` / ``Fragments`` (Ravi et al. 2020);
the blur radius and the depth of pixels outside a triangle (clipped
barycentrics) follow SoftRas (Liu et al. 2019).

Algorithm (pure PyTorch, vectorised, no Python loop over pixels or faces):

1. project the vertices, cull faces behind ``near`` / beyond ``far`` /
   degenerate, and compute each face's screen bounding box grown by the blur
   radius;
2. *binning*: enumerate all (face, bin) pairs with ``repeat_interleave`` and
   sort them by bin, giving each square ``bin_size`` x ``bin_size`` bin a list
   of candidate faces;
3. *fine pass*: bins are processed in chunks (sorted by candidate count so the
   padding stays small).  For every face the three screen barycentrics and the
   three along-edge coordinates are affine functions of the pixel position,
   so one batched matmul evaluates them for all (pixel, candidate) pairs of a
   chunk; the exact squared point-to-triangle distance, the inside test and the
   depth at the clipped barycentrics follow element-wise;
4. ``topk`` over the candidates of each pixel keeps the ``K`` nearest faces
   within the blur radius, nearest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .camera import PerspectiveCamera, as_camera
from .settings import RasterSettings

__all__ = ["Fragments", "rasterize", "choose_bin_size", "project_faces"]


@dataclass(frozen=True)
class Fragments:
    """Output of :func:`rasterize`: the ``K`` faces selected per pixel.

    All tensors are ``(B, H, W, K)``, indexed ``[b, v, u, k]``; slot ``k``
    holds the ``k``-th nearest (in depth) face within the blur radius of the
    pixel centre.  Unused slots are padded: ``pix_to_face = -1``,
    ``zbuf = -1``, ``dists = -1``; valid slots always come first.
    None of these carry gradients.

    Attributes:
        pix_to_face: ``int64`` face indices into the ``(F, 3)`` face array
            (per-frame indices, not offset by ``b * F``).
        zbuf: camera-space depth of the face at the pixel, interpolated
            perspective-correctly at the clipped barycentrics (equal to the
            true depth of the surface point when the pixel centre is inside).
        dists: signed squared screen distance (px^2) from the pixel centre to
            the projected triangle, **positive inside** (SoftRas sign, i.e. the
            opposite of PyTorch3D), so the SoftRas probability is
            ``sigmoid(dists / sigma)``.
    """

    pix_to_face: Tensor
    zbuf: Tensor
    dists: Tensor

    @property
    def valid(self) -> Tensor:
        """``(B, H, W, K)`` bool: slot holds a face."""
        return self.pix_to_face >= 0

    @property
    def mask(self) -> Tensor:
        """``(B, H, W)`` bool hard coverage: the pixel centre lies inside (or on
        the boundary of) at least one unculled face."""
        return ((self.pix_to_face >= 0) & (self.dists >= 0)).any(-1)


def project_faces(
    verts: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor, settings: RasterSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """Project the mesh and flag the faces that may be rasterised.

    Args:
        verts: ``(B, V, 3)`` camera-space vertices (``B`` may be 1 when the
            cameras are batched).
        faces: ``(F, 3)`` int64 vertex indices shared by the batch.
        cameras: ``B`` (or 1) cameras.

    Returns:
        ``tri`` ``(B, F, 3, 2)`` projected vertices in pixels (depth clamped
        at ``near`` so the values are finite), ``tz`` ``(B, F, 3)`` unclamped
        depths and ``valid`` ``(B, F)`` bool: all three depths in
        ``(near, far)``, finite, and ``|2 * area| > min_area``.
    """
    cam = as_camera(cameras)
    uv, z = cam.project(verts, near=settings.near)
    b = max(uv.shape[0], cam.batch_size)
    uv = uv.expand(b, -1, -1)
    z = z.expand(b, -1)
    tri = uv[:, faces]
    tz = z[:, faces]
    e1 = tri[:, :, 1] - tri[:, :, 0]
    e2 = tri[:, :, 2] - tri[:, :, 0]
    area2 = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    valid = (
        (tz > settings.near).all(-1)
        & (tz < settings.far).all(-1)
        & torch.isfinite(tri).all(-1).all(-1)
        & (area2.abs() > settings.min_area)
    )
    return tri, tz, valid


def choose_bin_size(tri: Tensor, valid: Tensor, settings: RasterSettings) -> int:
    """Heuristic bin size (pixels) when ``settings.bin_size`` is ``None``.

    The fine pass costs about ``pixels * (faces per bin)``, and a face's
    blur-grown bounding box of side ``s`` overlaps about ``((bin + s) / bin)^2``
    bins, so both terms balance at a bin comparable to the typical face box.
    We use the median (over valid faces) of the grown box side, rounded to a
    power of two in ``[4, 64]`` (a larger bin on the GPU, where the per-chunk
    overhead dominates).
    """
    if settings.bin_size is not None:
        return int(settings.bin_size)
    h, w = settings.image_size
    if not bool(valid.any()):
        return 8
    ext = (tri.amax(-2) - tri.amin(-2))[valid]  # (N, 2)
    ext = ext.clamp(max=float(max(h, w)))
    side = float(ext.max(-1).values.median()) + 2.0 * settings.blur_radius
    lo = 8 if tri.device.type != "cpu" else 4
    s = 2 ** round(math.log2(max(side, 1.0)))
    s = int(min(max(s, lo), 64))
    if tri.device.type != "cpu":
        s = max(s, 16)
    return s


def _face_tables(tri: Tensor, tz: Tensor, valid: Tensor, settings: RasterSettings):
    """Per-face affine coefficients used by the fine pass.

    Edge ``i`` is the edge opposite vertex ``i``: from ``a_i = v_{i+1}`` to
    ``v_{i+2}``, ``e_i = v_{i+2} - v_{i+1}``.  For a pixel ``p``:

    * screen barycentric ``lam_i(p) = cross(e_i, p - a_i) / (2 A)`` (any winding),
    * along-edge coordinate ``T_i(p) = (p - a_i) . e_i / |e_i|``,
    * distance to the line of edge ``i`` (positive inside): ``lam_i * h_i``
      with ``h_i = |2 A| / |e_i|``,
    * squared distance to segment ``i``:
      ``(lam_i h_i)^2 + (T_i - clamp(T_i, 0, |e_i|))^2``.

    Returns ``coef (N, 3, 6)`` (rows: multiplier of u, of v, constant; columns
    lam_0..2, T_0..2) and ``extra (N, 9)`` (h_0..2, |e_0..2|, 1/z_0..2), with
    ``N = B * F``.
    """
    n = tri.shape[0] * tri.shape[1]
    t = tri.reshape(n, 3, 2)
    a = t.roll(-1, dims=1)
    e = t.roll(-2, dims=1) - a
    ex, ey = e[..., 0], e[..., 1]
    ax, ay = a[..., 0], a[..., 1]
    area2 = (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 1, 1] - t[:, 0, 1]) * (
        t[:, 2, 0] - t[:, 0, 0]
    )
    v = valid.reshape(n)
    area2 = torch.where(v, area2, torch.ones_like(area2))
    elen = torch.linalg.vector_norm(e, dim=-1).clamp_min(1e-30)
    inv_a = (1.0 / area2)[:, None]
    coef = torch.empty(n, 3, 6, dtype=tri.dtype, device=tri.device)
    coef[:, 0, 0:3] = -ey * inv_a
    coef[:, 1, 0:3] = ex * inv_a
    coef[:, 2, 0:3] = (ey * ax - ex * ay) * inv_a
    coef[:, 0, 3:6] = ex / elen
    coef[:, 1, 3:6] = ey / elen
    coef[:, 2, 3:6] = -(ax * ex + ay * ey) / elen
    extra = torch.cat(
        [area2.abs()[:, None] / elen, elen, 1.0 / tz.reshape(n, 3).clamp_min(settings.near)], dim=1
    )
    return coef, extra


@torch.no_grad()
def rasterize(
    verts: Tensor,
    faces: Tensor,
    cameras: PerspectiveCamera | Tensor,
    settings: RasterSettings,
) -> Fragments:
    """Select, for every pixel, the ``K`` nearest faces within the blur radius.

    Args:
        verts: ``(B, V, 3)`` float32/float64 vertices in camera coordinates
            (OpenCV: x right, y down, z forward).  ``B`` may be 1 with batched
            cameras.
        faces: ``(F, 3)`` int64 vertex indices, shared by the batch.  Both
            windings render (the inside test does not depend on orientation,
            back faces count).
        cameras: :class:`PerspectiveCamera` or ``(B, 4)`` intrinsics
            ``(fx, fy, cx, cy)`` in pixels.
        settings: :class:`RasterSettings`; uses ``image_size``, ``sigma``,
            ``blur_eps`` (blur radius), ``faces_per_pixel``, ``bin_size``,
            ``near``, ``far``, ``min_area``, ``chunk_pairs``.

    Returns:
        :class:`Fragments` with ``(B, H, W, K)`` tensors.  A face is selected
        at a pixel if the pixel centre is inside it or its squared distance is
        ``<= settings.blur_radius2``; among those the ``K`` with the smallest
        depth (at clipped barycentrics) are kept, nearest first.  Culled faces
        (any vertex depth ``<= near`` or ``>= far``, or degenerate on screen)
        are never selected.
    """
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    faces = faces.to(device=verts.device, dtype=torch.long)
    H, W = settings.image_size
    K = settings.faces_per_pixel
    dev, dt = verts.device, verts.dtype
    tri, tz, valid = project_faces(verts, faces, cameras, settings)
    B, F = tri.shape[:2]
    S = choose_bin_size(tri, valid, settings)
    nby, nbx = -(-H // S), -(-W // S)
    nbins = nby * nbx
    r2 = settings.blur_radius2
    r = math.sqrt(r2)

    # ---- coarse pass: (face, bin) pairs --------------------------------
    lo = tri.amin(2) - r  # (B, F, 2)
    hi = tri.amax(2) + r
    big = float(max(H, W) + 2)
    u0 = torch.ceil(lo[..., 0].clamp(-1.0, big)).long().clamp(0, W)
    u1 = torch.floor(hi[..., 0].clamp(-1.0, big)).long().clamp(-1, W - 1)
    v0 = torch.ceil(lo[..., 1].clamp(-1.0, big)).long().clamp(0, H)
    v1 = torch.floor(hi[..., 1].clamp(-1.0, big)).long().clamp(-1, H - 1)
    live = valid & (u0 <= u1) & (v0 <= v1)
    bx0, bx1 = u0 // S, u1.clamp_min(0) // S
    by0, by1 = v0 // S, v1.clamp_min(0) // S
    nx = (bx1 - bx0 + 1).clamp_min(1)
    ny = (by1 - by0 + 1).clamp_min(1)
    counts = torch.where(live, nx * ny, torch.zeros_like(nx)).reshape(-1)

    p2f_out = torch.full((B * nbins, S * S, K), -1, dtype=torch.long, device=dev)
    z_out = torch.full((B * nbins, S * S, K), -1.0, dtype=dt, device=dev)
    d_out = torch.full((B * nbins, S * S, K), -1.0, dtype=dt, device=dev)

    total = int(counts.sum())
    if total > 0:
        fid_all = torch.arange(B * F, device=dev)
        pf = torch.repeat_interleave(fid_all, counts, output_size=total)
        start = torch.cumsum(counts, 0) - counts
        off = torch.arange(total, device=dev) - start[pf]
        nxf = nx.reshape(-1)[pf]
        bx = bx0.reshape(-1)[pf] + off % nxf
        by = by0.reshape(-1)[pf] + off // nxf
        bin_id = (pf // F) * nbins + by * nbx + bx
        bin_sorted, order = torch.sort(bin_id, stable=True)
        face_sorted = pf[order]
        bin_counts = torch.bincount(bin_id, minlength=B * nbins)
        bin_start = torch.cumsum(bin_counts, 0) - bin_counts
        bin_order = torch.argsort(bin_counts, descending=True)
        n_live = int((bin_counts > 0).sum())
        bin_order = bin_order[:n_live]
        cnt_sorted = bin_counts[bin_order].tolist()

        coef, extra = _face_tables(tri, tz, valid, settings)
        jj, ii = torch.meshgrid(
            torch.arange(S, device=dev, dtype=dt), torch.arange(S, device=dev, dtype=dt), indexing="ij"
        )
        # local pixel grid of a bin: row-major (dv, du), homogeneous (du, dv, 1)
        pix = torch.stack([ii.reshape(-1), jj.reshape(-1), torch.ones(S * S, device=dev, dtype=dt)], -1)

        i = 0
        while i < n_live:
            M = cnt_sorted[i]
            nbc = max(1, min(n_live - i, settings.chunk_pairs // (S * S * M)))
            bins_c = bin_order[i : i + nbc]
            i += nbc
            _fine_chunk(
                bins_c, M, bin_start, bin_counts, face_sorted, coef, extra, pix,
                S, nbx, nbins, F, K, r2, p2f_out, z_out, d_out,
            )

    def _assemble(x: Tensor) -> Tensor:
        x = x.view(B, nby, nbx, S, S, K).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(B, nby * S, nbx * S, K)[:, :H, :W].contiguous()

    return Fragments(_assemble(p2f_out), _assemble(z_out), _assemble(d_out))


def _fine_chunk(
    bins_c: Tensor, M: int, bin_start: Tensor, bin_counts: Tensor, face_sorted: Tensor,
    coef: Tensor, extra: Tensor, pix: Tensor, S: int, nbx: int, nbins: int, F: int, K: int,
    r2: float, p2f_out: Tensor, z_out: Tensor, d_out: Tensor,
) -> None:
    """Evaluate all pixels of ``len(bins_c)`` bins against up to ``M`` candidates each."""
    dev = coef.device
    nbc = bins_c.shape[0]
    ar = torch.arange(M, device=dev)
    pv = ar[None, :] < bin_counts[bins_c][:, None]  # (nbc, M) slot holds a candidate
    idx = (bin_start[bins_c][:, None] + ar[None, :]).clamp_max(face_sorted.shape[0] - 1)
    fidx = face_sorted[idx]  # (nbc, M) flat face id b * F + f
    c = coef[fidx]  # (nbc, M, 3, 6)
    ex = extra[fidx]  # (nbc, M, 9)
    local = bins_c % nbins
    ox = ((local % nbx) * S).to(c.dtype)[:, None, None]
    oy = ((local // nbx) * S).to(c.dtype)[:, None, None]
    c[:, :, 2] += c[:, :, 0] * ox + c[:, :, 1] * oy  # shift to bin-local pixel coordinates
    cm = c.permute(0, 2, 3, 1).reshape(nbc, 3, 6 * M)
    out = torch.matmul(pix, cm).view(nbc, S * S, 6, M)
    lam = out[:, :, 0:3]
    tt = out[:, :, 3:6]
    ext = ex.permute(0, 2, 1)[:, None]  # (nbc, 1, 9, M)
    h, elen, iz = ext[:, :, 0:3], ext[:, :, 3:6], ext[:, :, 6:9]

    inside = lam.amin(2) >= 0  # (nbc, P, M)
    q = tt - torch.minimum(tt.clamp_min(0), elen)
    d2 = lam * h
    d2.mul_(d2).addcmul_(q, q)
    d2 = d2.amin(2)
    lc = lam.clamp_min(0)
    invz = (lc * iz).sum(2).div_(lc.sum(2))
    ok = inside | (d2 <= r2)
    ok &= pv[:, None, :]
    key = torch.where(ok, invz, torch.full_like(invz, -math.inf))

    k = min(K, M)
    vals, sel = key.topk(k, dim=-1, largest=True, sorted=True)
    has = vals > -math.inf
    face = torch.gather(fidx[:, None, :].expand(-1, S * S, -1), 2, sel) % F
    sd = torch.where(inside, d2, -d2)
    sd = torch.gather(sd, 2, sel)
    p2f_out[bins_c, :, :k] = torch.where(has, face, torch.full_like(face, -1))
    z_out[bins_c, :, :k] = torch.where(has, 1.0 / vals, torch.full_like(vals, -1.0))
    d_out[bins_c, :, :k] = torch.where(has, sd, torch.full_like(sd, -1.0))
