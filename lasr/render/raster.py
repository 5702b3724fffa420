"""Face-centric screen-space rasterisation (no gradients).

For every pixel, find up to ``K`` faces whose projected triangle lies within
the blur radius of the pixel centre (the most important ones for the blend).  This only *selects*
faces; everything differentiable is recomputed from the vertices and the
selected indices by :mod:`lasr.render.shade`.  The split and the data type
follow PyTorch3D's ``rasterize_meshes`` / ``Fragments`` (Ravi et al. 2020);
the blur radius and the depth of pixels outside a triangle (clipped
barycentrics) follow SoftRas (Liu et al. 2019).

Algorithm (PyTorch, vectorised, no Python loop over pixels or faces; on CPU
a few steps use NumPy, whose sort and ``flatnonzero`` are much faster there):

1. project the vertices, cull faces behind ``near`` / beyond ``far`` /
   degenerate, and compute each face's pixel bounding box grown by the blur
   radius (clipped to the image);
2. *bands*: the rows of all frames, stacked (row ``b * H + v``), are split
   into horizontal bands of ``bin_size`` rows (:func:`choose_bin_size`); the
   candidates of a band's pixels are ranked together, so a band bounds the
   memory and the width of the sort key below;
3. *face-centric evaluation*: a band's faces (boxes clipped to the band) are
   sorted by box height, then width, and evaluated in chunks of up to
   ``chunk_pairs`` (pixel, face) pairs, each face against the pixels of its
   own box only (padded to the chunk's tallest and widest box).  The three distances to the edge
   lines, the three coordinates along the edges and the plane's inverse depth
   are affine in the pixel position, so they are sums of a per-(row, face) and
   a per-(column, face) term (layout ``(row, column, face)``, face innermost);
   the exact squared point-to-triangle distance (minimum over the three edge
   segments), the inside test, the ranking depth and the nearest edge follow
   element-wise, and the pairs within the blur radius (or inside) are
   compacted into flat candidate lists;
4. *selection*: the band's candidates are sorted by (pixel, ranking score)
   (see :func:`ranking_weights`; for float32 one sort of packed 64-bit keys
   ``pixel | score bits | candidate``, otherwise two stable sorts; the
   ``"hybrid"`` score first needs each pixel's best weight and coverage, a
   segmented minimum) and the first ``K`` of every pixel are written to the
   outputs.

Unlike screen-space binning, no (pixel, face) pair outside the face's own
grown box is ever evaluated, and no candidate list is padded to a bin's
longest one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import _raster_cpu
from .camera import PerspectiveCamera, as_camera
from .settings import RasterSettings

__all__ = ["Fragments", "rasterize", "choose_bin_size", "project_faces", "use_compiled", "nonzero_indices"]


@dataclass(frozen=True)
class Fragments:
    """Output of :func:`rasterize`: the ``K`` faces selected per pixel.

    All tensors are ``(B, H, W, K)``, indexed ``[b, v, u, k]``.  The slots
    hold up to ``K`` of the faces within the blur radius of the pixel centre
    (or containing it), the best first according to ``settings.rank`` (see
    :func:`ranking_weights`; ties in that score are in no particular order).
    Valid slots always come first; unused
    slots are padded with ``pix_to_face = -1``, ``zbuf = -1``, ``dists = -1``,
    ``nearest_edge = -1``.  None of these carry gradients.

    Attributes:
        pix_to_face: ``int64`` face indices into the ``(F, 3)`` face array
            (per-frame indices, not offset by ``b * F``).
        zbuf: ranking depth: the depth at which the pixel's ray meets the
            face's plane, clamped to the range of the face's vertex depths
            (``1/z`` is affine in screen space, so this is the face's
            perspective-correct depth extrapolated outside the triangle).
            When the pixel centre is inside the face it is the exact depth of
            the visible surface point.  Same dtype as the vertices.
        dists: signed squared screen distance (px^2) from the pixel centre to
            the projected triangle, **positive inside** (SoftRas sign, the
            opposite of PyTorch3D), so the SoftRas probability is
            ``sigmoid(dists / sigma)``.
        nearest_edge: ``int8`` index ``i`` of the triangle edge nearest to the
            pixel centre, edge ``i`` joining vertices ``(i+1) % 3`` and
            ``(i+2) % 3`` of the face (i.e. opposite vertex ``i``).  The blend
            recomputes ``|dists|`` differentiably from this edge alone, which
            equals the minimum over the three edges.
    """

    pix_to_face: Tensor
    zbuf: Tensor
    dists: Tensor
    nearest_edge: Tensor

    @property
    def valid(self) -> Tensor:
        """``(B, H, W, K)`` bool: slot holds a face."""
        return self.pix_to_face >= 0

    @property
    def mask(self) -> Tensor:
        """``(B, H, W)`` bool hard coverage: the pixel centre lies inside (or on
        the boundary of) at least one selected face."""
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
    fl = faces.reshape(-1)
    F = faces.shape[0]
    tri = uv.index_select(1, fl).view(b, F, 3, 2)
    tz = z.index_select(1, fl).view(b, F, 3)
    e1 = tri[:, :, 1] - tri[:, :, 0]
    e2 = tri[:, :, 2] - tri[:, :, 0]
    area2 = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    z0, z1, z2 = tz.unbind(-1)
    zmin = torch.minimum(torch.minimum(z0, z1), z2)
    zmax = torch.maximum(torch.maximum(z0, z1), z2)
    valid = (
        (zmin > settings.near)
        & (zmax < settings.far)
        & torch.isfinite(tri).view(b, F, 6).all(-1)
        & (area2.abs() > settings.min_area)
    )
    return tri, tz, valid


def _face_boxes(tri: Tensor, valid: Tensor, settings: RasterSettings) -> tuple[Tensor, Tensor]:
    """Pixel boxes ``(4, B * F)`` int64 ``(u0, u1, v0, v1)`` (inclusive) of the
    faces grown by the blur radius and clipped to the image, and ``live``
    ``(B * F,)``: valid with a non-empty box."""
    H, W = settings.image_size
    r = settings.blur_radius
    t0, t1, t2 = tri.unbind(2)
    lo = torch.minimum(torch.minimum(t0, t1), t2) - r
    hi = torch.maximum(torch.maximum(t0, t1), t2) + r
    big = float(max(H, W) + 2)
    box = torch.stack([
        torch.ceil(lo[..., 0].clamp(-1.0, big)).clamp(0, W),
        torch.floor(hi[..., 0].clamp(-1.0, big)).clamp(-1, W - 1),
        torch.ceil(lo[..., 1].clamp(-1.0, big)).clamp(0, H),
        torch.floor(hi[..., 1].clamp(-1.0, big)).clamp(-1, H - 1),
    ]).long().view(4, -1)
    live = valid.reshape(-1) & (box[0] <= box[1]) & (box[2] <= box[3])
    return box, live


def _key_bits(device: torch.device) -> int:
    """Bits of the packed 64-bit sort key left to the band-local pixel index
    and the candidate index (the other 32 hold the score; see
    :func:`_sort_by_pixel_then_score`): 32 on CPU (unsigned NumPy keys), 31
    elsewhere (signed torch keys)."""
    return 32 if device.type == "cpu" else 31


# memory bound of a band (automatic band height): at most this many (pixel,
# face) box pairs, unless a single row has more (~25 bytes per candidate are
# kept for the band)
_BAND_PAIRS = 1 << 20


def _row_pairs(gv0: Tensor, gv1: Tensor, nx: Tensor, nrows: int) -> np.ndarray:
    """Number of (pixel, face) box pairs in each of the ``nrows`` stacked rows,
    given the faces' first and last stacked box rows and box widths."""
    diff = torch.zeros(nrows + 1, dtype=torch.long, device=nx.device)
    diff.index_add_(0, gv0, nx)
    diff.index_add_(0, gv1 + 1, -nx)
    return torch.cumsum(diff[:-1], 0).cpu().numpy()


def _band_height(row_pairs: np.ndarray, W: int, key_bits: int) -> int:
    """Largest power-of-two band height whose pixel count and heaviest band
    (in box pairs) fit the packed sort key (``key_bits`` for pixel and
    candidate indices) and :data:`_BAND_PAIRS`.

    The box pairs overestimate the candidates (the corners of a face's box are
    farther than the blur radius; typically a quarter to a third of the
    pairs), so one bit of slack is allowed: a band whose candidates do not fit
    after all is sorted by the slower two-pass path."""
    n = row_pairs.shape[0]
    cum = np.concatenate([[0], np.cumsum(row_pairs)])
    h = 1 << (max(n, 1) - 1).bit_length()
    while h > 1:
        heaviest = int((cum[h:] - cum[:-h]).max()) if h <= n else int(cum[-1])
        bits = max(heaviest - 1, 0).bit_length() + (h * W - 1).bit_length()
        if bits <= key_bits + 1 and heaviest <= _BAND_PAIRS:
            break
        h //= 2
    return h


def choose_bin_size(tri: Tensor, valid: Tensor, settings: RasterSettings) -> int:
    """Height (rows) of the horizontal bands of :func:`rasterize`: ``settings.bin_size``
    if set, otherwise a heuristic.

    The rows of all ``B`` frames are stacked (row ``b * H + v``) and cut into
    bands of this many rows; the candidates of a band are ranked together.
    The heuristic takes the tallest power of two such that every band's pixel
    count and its number of (pixel, face) box pairs (about its number of
    candidates) fit the packed 64-bit sort key (32 bits of score, 31 bits for
    pixel and candidate indices) and at most ``2^20`` pairs are held at once:
    one band for small images, bands of a few dozen rows for large ones.

    Args:
        tri: ``(B, F, 3, 2)`` projected vertices, ``valid``: ``(B, F)`` (from
            :func:`project_faces`).
    """
    if settings.bin_size is not None:
        return int(settings.bin_size)
    B, F = tri.shape[:2]
    H, W = settings.image_size
    box, live = _face_boxes(tri, valid, settings)
    fid = nonzero_indices(live)
    b = box.index_select(1, fid)
    row = (fid // F) * H
    return _band_height(_row_pairs(b[2] + row, b[3] + row, b[1] - b[0] + 1, B * H), W, _key_bits(tri.device))


def _face_coefs(tri: Tensor, tz: Tensor, near: float) -> Tensor:
    """Per-face affine coefficients of the evaluation, ``(26, n)``.

    ``tri`` ``(n, 3, 2)`` projected vertices, ``tz`` ``(n, 3)`` depths.  Edge
    ``i`` is the edge opposite vertex ``i``: from ``a_i = v_{i+1}`` to
    ``v_{i+2}``, ``e_i = v_{i+2} - v_{i+1}``.  For a pixel ``p`` (all affine in
    ``p``; 2A is the signed doubled area, so any winding works):

    * screen barycentric ``lam_i(p) = cross(e_i, p - a_i) / 2A``,
    * distance to the line of edge ``i``, positive inside:
      ``L_i = lam_i * |2A| / |e_i| = sign(2A) cross(e_i, p - a_i) / |e_i|``,
    * coordinate along edge ``i``: ``T_i = (p - a_i) . e_i / |e_i|``,
    * squared distance to segment ``i``:
      ``L_i^2 + (T_i - clamp(T_i, 0, |e_i|))^2``,
    * inverse depth of the face's plane along the pixel's ray:
      ``1/z(p) = sum_i lam_i(p) / z_i`` (perspective-correct interpolation).

    Rows ``0:7`` factor of ``u``, ``7:14`` factor of ``v``, ``14:21`` constant,
    for the functions ``(L_0, L_1, L_2, T_0, T_1, T_2, 1/z)``; then
    ``|e_0..2|``, ``min_i 1/z_i``, ``max_i 1/z_i``.
    """
    n = tri.shape[0]
    x = tri[..., 0].t()  # (3 vertices, n)
    y = tri[..., 1].t()
    ax, ay = x.roll(-1, 0), y.roll(-1, 0)  # a_i = v_{i+1}
    ex, ey = x.roll(-2, 0) - ax, y.roll(-2, 0) - ay  # e_i = v_{i+2} - v_{i+1}
    area2 = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])
    area2 = torch.where(area2 == 0, torch.ones_like(area2), area2)
    elen = torch.sqrt(ex * ex + ey * ey).clamp_min_(1e-30)
    iz = tz.t().clamp_min(near).reciprocal_()  # (3, n)
    c0 = ey * ax - ex * ay  # cross(e_i, p - a_i) = -ey u + ex v + c0
    tab = torch.empty(26, n, dtype=tri.dtype, device=tri.device)
    s = torch.sign(area2) / elen  # (3, n)
    tab[0:3] = -ey * s
    tab[7:10] = ex * s
    tab[14:17] = c0 * s
    tab[3:6] = ex / elen
    tab[10:13] = ey / elen
    tab[17:20] = -(ax * ex + ay * ey) / elen
    w = iz / area2  # lam_i / z_i = cross_i * iz_i / 2A
    tab[6] = -(ey * w).sum(0)
    tab[13] = (ex * w).sum(0)
    tab[20] = (c0 * w).sum(0)
    tab[21:24] = elen
    tab[24] = iz.amin(0)
    tab[25] = iz.amax(0)
    return tab


def ranking_weights(settings: RasterSettings) -> tuple[float, float, str]:
    """``(a, b, mode)`` of the score used to choose the ``K`` faces kept per
    pixel among the candidates (lower is better), ``settings.rank`` being:

    * ``"weight"``: ``a z + b max(0, -s d^2)``, i.e. ``-log`` of the SoftRas
      blend weight ``D exp((zeta - zeta_max) / gamma)`` up to a per-pixel
      constant, with ``a = 1 / ((far - near) gamma)``, ``b = 1 / sigma`` and
      ``-log D`` replaced by its leading term (``d^2 / sigma`` outside, 0
      inside).  Keeps the faces that dominate colours and flow.
    * ``"coverage"``: ``b s' d^2`` with ``s' = -1`` inside, ``+1`` outside
      (``-log D`` up to its leading terms; depth breaks ties).  Keeps the
      faces that dominate the silhouette ``1 - prod(1 - D)``.
    * ``"hybrid"`` (default): ``min(weight - min_pixel(weight), coverage -
      min_pixel(coverage))`` (coverage with the depth tie-break): a face is kept if it is among the most important
      for either, so the silhouette stays close to the untruncated SoftRas
      silhouette and colours/flow close to the untruncated blend.
    * ``"depth"``: ``z`` only (PyTorch3D's K nearest).  When faces are smaller
      than the blur radius this drops the face covering the pixel as soon as
      K nearer faces lie within the blur radius.

    ``z`` is the ranking depth (:attr:`Fragments.zbuf`), ``d^2`` the squared
    screen distance.  With ``sigma == 0`` only faces containing the pixel are
    candidates and all modes reduce to ``"depth"``, the mode returned then
    (with ``b = 0``).
    """
    a = 1.0 / ((settings.far - settings.near) * settings.gamma)
    if settings.sigma == 0:
        return a, 0.0, "depth"
    return a, 1.0 / settings.sigma, settings.rank


def nonzero_indices(mask: Tensor) -> Tensor:
    """Flat indices of the true entries (NumPy on CPU: ~10x faster than
    ``torch.nonzero`` there)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


class _Scratch:
    """Work buffers reused across the chunks and bands of one call (on CPU,
    fresh large allocations cost page faults): :meth:`take` returns a view of
    the named buffer, grown when too small."""

    def __init__(self, device: torch.device):
        self.device = device
        self.bufs: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        n = math.prod(shape)
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype:
            buf = self.bufs[name] = torch.empty(n, dtype=dtype, device=self.device)
        return buf[:n].view(shape)


def _chunk_pairs(settings: RasterSettings, device: torch.device) -> int:
    if settings.chunk_pairs is not None:
        return int(settings.chunk_pairs)
    # CPU: ~32k pairs (the temporaries stay near the cache, single planes
    # below PyTorch's intra-op parallel grain, which stalls on a loaded
    # machine, while still amortising the per-op cost; measured 5-10% faster
    # than 64k); GPU: large chunks so kernel launches are amortised.
    return 1 << 15 if device.type == "cpu" else 1 << 22


def _ordered_i32(x: Tensor) -> Tensor:
    """float32 -> int32 with the same order (no NaN; -0.0 just below +0.0)."""
    bits = x.view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negatives: flip all but the sign bit


def _sort_by_pixel_then_score(lp: Tensor, score: Tensor, npix: int) -> tuple[Tensor, Tensor]:
    """Sort candidates by pixel, then by score (ties in any order).

    ``lp``: int32/int64 pixel index in ``[0, npix)``, ``score``: float.
    Returns the sorted pixel indices and the permutation (int64).  float32
    scores whose indices fit :func:`_key_bits` use one sort of packed 64-bit
    keys ``pixel | score bits | candidate`` (on CPU unsigned, with NumPy's
    vectorised sort of values, far faster than an argsort); otherwise two
    stable sorts (by score, then by pixel)."""
    m = lp.shape[0]
    ib = max(m - 1, 1).bit_length()
    pb = 32 + ib  # position of the pixel bits
    if score.dtype == torch.float32 and ib + max(npix - 1, 1).bit_length() <= _key_bits(lp.device):
        if lp.device.type == "cpu":
            # pixel << (32 + ib) | (ordered score ^ 2^31) << ib | candidate
            key = lp.numpy().astype(np.uint64)
            key <<= np.uint64(pb)
            sc = score.numpy().view(np.int32)
            sc = (sc ^ ((sc >> 31) & 0x7FFFFFFF)).view(np.uint32) ^ np.uint32(1 << 31)
            key |= sc.astype(np.uint64) << np.uint64(ib)
            key |= np.arange(m, dtype=np.uint64)
            key.sort()
            order = (key & np.uint64((1 << ib) - 1)).view(np.int64)
            key >>= np.uint64(pb)
            return torch.from_numpy(key.view(np.int64)), torch.from_numpy(order)
        # lp * 2^(32+ib) + (ordered score + 2^31) * 2^ib + candidate, in 3 passes
        off = 1 << (31 + ib)
        key = torch.arange(off, off + m, device=lp.device)
        key.add_(_ordered_i32(score), alpha=1 << ib)
        key.add_(lp, alpha=1 << pb)
        key = torch.sort(key).values
        return key >> pb, key & ((1 << ib) - 1)
    if lp.device.type == "cpu":
        o = np.argsort(score.numpy(), kind="stable")
        lo = lp.numpy()[o].astype(np.int64)
        o = o[np.argsort(lo.astype(np.uint16) if npix <= 1 << 16 else lo, kind="stable")]
        order = torch.from_numpy(o)
    else:
        order = torch.sort(score, stable=True)[1]
        order = order.index_select(0, torch.sort(lp.index_select(0, order), stable=True)[1])
    return lp.index_select(0, order).long(), order


def _segment_min(x: Tensor, idx: Tensor, n: int) -> Tensor:
    """``(n,)`` minimum of ``x`` over the entries with each ``idx`` value (+inf
    where none)."""
    if x.device.type == "cpu":
        out = np.full(n, np.inf, dtype=x.numpy().dtype)
        np.minimum.at(out, idx.numpy(), x.numpy())
        return torch.from_numpy(out)
    return torch.full((n,), math.inf, dtype=x.dtype, device=x.device).scatter_reduce_(0, idx.long(), x, "amin")


def _ranking_score(sd: Tensor, zr: Tensor, lp: Tensor, npix: int, rank: tuple[float, float, str]) -> Tensor:
    """Ranking score (lower is better, see :func:`ranking_weights`) of
    candidates with signed squared distance ``sd`` (negative inside), ranking
    depth ``zr`` at band-local pixel ``lp``."""
    a, b, mode = rank
    if mode == "depth":
        return zr
    if mode == "coverage":
        return (sd * b).add_(zr, alpha=a * 1e-6)  # depth only breaks ties
    score = sd.clamp_min(0.0)  # -log D ~ d^2 / sigma outside, ~0 inside
    score.mul_(b).add_(zr, alpha=a)  # -log(blend weight) + const
    if mode == "hybrid":
        # -log D up to its leading terms (signed); depth breaks ties (faces sharing
        # the nearest vertex are equally near a pixel outside them)
        cov = (sd * b).add_(zr, alpha=a * 1e-6)
        for x in (score, cov):  # relative to the pixel's best candidate
            x.sub_(_segment_min(x, lp, npix).index_select(0, lp))
        torch.minimum(score, cov, out=score)
    return score


def use_compiled(settings: RasterSettings, device: torch.device) -> bool:
    """Whether :func:`rasterize` takes the compiled CPU path (``settings.backend``:
    ``"auto"`` takes it on CPU when Numba is installed)."""
    if settings.backend == "torch":
        return False
    if device.type != "cpu":
        if settings.backend == "numba":
            raise ValueError(f"backend='numba' runs on CPU only, the vertices are on {device}; use backend='auto'")
        return False
    if not _raster_cpu.available():
        if settings.backend == "numba":
            raise ImportError("backend='numba' needs the numba package: pip install numba (or use backend='auto')")
        return False
    return True


@torch.no_grad()
def rasterize(
    verts: Tensor,
    faces: Tensor,
    cameras: PerspectiveCamera | Tensor,
    settings: RasterSettings,
) -> Fragments:
    """Select, for every pixel, up to ``K`` faces within the blur radius.

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
            ``blur_eps`` (blur radius), ``faces_per_pixel``, ``rank``,
            ``bin_size`` (band height), ``near``, ``far``, ``min_area``,
            ``chunk_pairs``.

    Returns:
        :class:`Fragments` with ``(B, H, W, K)`` tensors.  A face is a
        candidate at a pixel if the pixel centre is inside it or within
        ``settings.blur_radius`` of it; the ``K`` candidates with the lowest
        ranking score (:func:`ranking_weights`) are kept, best first.
        Culled faces (any vertex depth ``<= near`` or ``>= far``, or
        ``|2 area| <= min_area`` on screen) are never selected.
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
    r2 = settings.blur_radius2

    # outputs, flat (B * H * W * K,), written band by band
    N = B * H * W
    p2f_out = torch.full((N * K,), -1, dtype=torch.long, device=dev)
    z_out = torch.full((N * K,), -1.0, dtype=dt, device=dev)
    d_out = torch.full((N * K,), -1.0, dtype=dt, device=dev)
    e_out = torch.full((N * K,), -1, dtype=torch.int8, device=dev)
    result = Fragments(*(x.view(B, H, W, K) for x in (p2f_out, z_out, d_out, e_out)))

    box, live = _face_boxes(tri, valid, settings)
    if use_compiled(settings, dev):
        _raster_cpu.rasterize_frames(tri.numpy(), tz.numpy(), live.view(B, F).numpy(), box.view(4, B, F).numpy(),
                                     (H, W), K, r2, settings.near, ranking_weights(settings),
                                     [x.numpy() for x in (result.pix_to_face, result.zbuf, result.dists, result.nearest_edge)])
        return result
    fid = nonzero_indices(live)  # live faces, flat index b * F + f
    nf = fid.shape[0]
    if nf == 0:
        return result
    tab = _face_coefs(tri.reshape(-1, 3, 2).index_select(0, fid), tz.reshape(-1, 3).index_select(0, fid),
                      settings.near)  # (26, nf)
    fbox = box.index_select(1, fid)
    fb = fid // F
    fface = fid - fb * F  # per-frame face index
    frow = fb * H  # stacked row of the frame's first row
    gv0 = fbox[2] + frow  # stacked rows of the box
    gv1 = fbox[3] + frow
    nx = fbox[1] - fbox[0] + 1
    nrows = B * H
    if settings.bin_size is not None:
        band = int(settings.bin_size)
    else:
        band = _band_height(_row_pairs(gv0, gv1, nx, nrows), W, _key_bits(dev))
    chunk = _chunk_pairs(settings, dev)
    rank = ranking_weights(settings)
    # row / column indices along the (row, column, face) axes of a chunk, and
    # the band-local pixel offset of (row, column) in a box
    ary = torch.arange(max(H, W), device=dev)[:, None, None]
    arx = ary[:, 0]
    arfy, arfx = ary.to(dt), arx.to(dt)
    offs = ary * W + arx
    zero = torch.zeros((), dtype=dt, device=dev)
    ws = _Scratch(dev)

    for r0 in range(0, nrows, band):
        r1 = min(r0 + band, nrows)
        if r0 == 0 and r1 == nrows:
            sel = torch.arange(nf, device=dev)
            cv0, cv1 = gv0, gv1
        else:
            sel = nonzero_indices((gv0 < r1) & (gv1 >= r0))
            if sel.numel() == 0:
                continue
            cv0 = gv0.index_select(0, sel).clamp_min(r0)
            cv1 = gv1.index_select(0, sel).clamp_max(r1 - 1)
        ny_b = cv1 - cv0 + 1
        nx_b = nx.index_select(0, sel)
        cap = int((ny_b * nx_b).sum())
        # faces by decreasing box height, then width, so that chunks pad little
        key = (ny_b * (W + 1) + nx_b).cpu().numpy()
        order_np = np.argsort(-key, kind="stable")
        ny_np, nx_np = ny_b.cpu().numpy()[order_np], nx_b.cpu().numpy()[order_np]
        order = torch.from_numpy(order_np).to(dev)
        # per-face quantities of the band's faces, in that order
        fi_b = sel.index_select(0, order)  # index into the live faces
        c_b = tab.index_select(1, fi_b)  # (26, nb)
        ox = fbox[0].index_select(0, fi_b)
        oy = cv0.index_select(0, order)
        c0_b = c_b[14:21] + c_b[0:7] * ox.to(dt) + c_b[7:14] * (oy - frow.index_select(0, fi_b)).to(dt)  # at (ox, oy)
        c4, c04 = c_b[:, None, None, :], c0_b[:, None, None, :]  # (function, row, column, face)
        # band-local pixel of (ox, oy), with the per-frame face index in the
        # upper 32 bits (carried along with the candidates)
        lp0_b = fface.index_select(0, fi_b).bitwise_left_shift(32).add_((oy - r0) * W + ox)
        ny_s, nx_s = ny_b.index_select(0, order), nx_b.index_select(0, order)
        # the band's candidates: face << 32 | band-local pixel, signed
        # distance, ranking inverse depth, nearest edge
        lp_all = ws.take("lp_all", (cap,), torch.long)
        sd_all = ws.take("sd_all", (cap,), dt)
        zr_all = ws.take("zr_all", (cap,), dt)
        e_all = ws.take("e_all", (cap,), torch.uint8)
        m = 0
        i, nb = 0, order.shape[0]
        while i < nb:
            # as many faces as fit ``chunk`` padded pairs (the first face is
            # the tallest; a later one may be wider)
            Py = int(ny_np[i])
            pxm = np.maximum.accumulate(nx_np[i : i + max(1, chunk // (Py * int(nx_np[i])))])
            n = max(1, int(np.count_nonzero(np.arange(1, pxm.shape[0] + 1) * (Py * pxm) <= chunk)))
            Px = int(pxm[n - 1])
            f = slice(i, i + n)
            i += n
            c = c4[..., f]
            # (function, row, column, face) with the face innermost, so every
            # broadcast operand is contiguous along the fastest axis
            vpart = torch.addcmul(c04[..., f], c[7:14], arfy[:Py])
            shape = (Py, Px, n)
            val = torch.addcmul(vpart, c[0:7], arfx[:Px], out=ws.take("val", (7, *shape), dt))
            L, T = val[0:3], val[3:6]
            mnl = torch.amin(L, 0, out=ws.take("mnl", shape, dt))  # >= 0 inside
            q = torch.clamp(T, min=zero, max=c[21:24], out=ws.take("q", (3, *shape), dt))
            torch.sub(T, q, out=q)
            d2e = torch.mul(L, L, out=ws.take("d2e", (3, *shape), dt))
            d2e.addcmul_(q, q)  # (3, ...) squared distance to each edge segment
            d2 = torch.amin(d2e, 0, out=ws.take("d2", shape, dt))
            sd = torch.copysign(d2, mnl.neg_(), out=mnl)  # signed, negative inside
            cand = torch.le(sd, r2, out=ws.take("cand", shape, torch.bool))  # inside, or within the blur radius
            cand.logical_and_(ary[:Py] < ny_s[f]).logical_and_(arx[:Px] < nx_s[f])  # within the face's box
            ci = nonzero_indices(cand)
            k = ci.shape[0]
            if k == 0:
                continue
            # ranking inverse depth: the plane's along the ray, clamped to the face's range
            izr = torch.clamp(val[6], min=c[24], max=c[25], out=d2e[2])
            lp = torch.add(lp0_b[f], offs[:Py, :Px], out=ws.take("lp", shape, torch.long))
            # index of the nearest edge (first minimum), used by the blend
            g0 = torch.gt(d2e[0], d2, out=ws.take("g0", shape, torch.bool))
            g1 = torch.gt(d2e[1], d2, out=ws.take("g1", shape, torch.bool)).logical_and_(g0)
            edge = g0.view(torch.uint8).add_(g1.view(torch.uint8))
            s = slice(m, m + k)
            torch.index_select(lp.view(-1), 0, ci, out=lp_all[s])
            torch.index_select(sd.view(-1), 0, ci, out=sd_all[s])
            torch.index_select(izr.view(-1), 0, ci, out=zr_all[s])
            torch.index_select(edge.view(-1), 0, ci, out=e_all[s])
            m += k
        if m == 0:
            continue

        # ---- keep the K best candidates of every pixel of the band ----
        npix = (r1 - r0) * W
        lpf = lp_all[:m]
        lp = lpf & 0xFFFFFFFF
        sd, zr = sd_all[:m], zr_all[:m].reciprocal_()
        score = _ranking_score(sd, zr, lp, npix, rank)
        lps, j = _sort_by_pixel_then_score(lp, score, npix)
        # the first K of every pixel's run: those whose K-th predecessor is
        # another pixel's
        keep = torch.ones(m, dtype=torch.bool, device=dev)
        keep[K:] = lps[K:] != lps[:-K]
        kk = nonzero_indices(keep)
        j = j.index_select(0, kk)
        lk = lps.index_select(0, kk)
        mk = lk.shape[0]
        pos = torch.arange(mk, device=dev)
        new = torch.ones(mk, dtype=torch.long, device=dev)
        new[1:] = lk[1:] != lk[:-1]
        slot = pos - torch.cummax(pos * new, 0).values  # rank within the pixel
        dest = (lk + r0 * W) * K + slot
        p2f_out.index_copy_(0, dest, lpf.index_select(0, j).bitwise_right_shift_(32))
        z_out.index_copy_(0, dest, zr.index_select(0, j))
        d_out.index_copy_(0, dest, sd.index_select(0, j).neg_())
        e_out.index_copy_(0, dest, e_all.index_select(0, j).view(torch.int8))
    return result
