"""Compiled CPU path of :func:`lasr.render.rasterize` (Numba, no build step).

The same selection as the vectorised PyTorch path in :mod:`lasr.render.raster`
(which stays the path for GPUs and the fallback when Numba is missing), written
as the obvious loops a C rasteriser would use, compiled on first use and cached
on disk by Numba.  For every frame:

* every live face is evaluated at every pixel of its box (grown by the blur
  radius): the same affine edge functions as :func:`lasr.render.raster._face_coefs`,
  the exact squared point-to-triangle distance, the inside test, the nearest
  edge and the ranking depth; pixels inside or within the blur radius become
  candidates, appended to flat lists;
* the candidates are grouped by pixel (a counting sort, stable), scored as in
  :func:`lasr.render.raster.ranking_weights`, and the ``K`` best of every pixel
  are kept by an insertion into a ``K``-slot list (among equal scores the face
  with the lower index wins).

Everything is evaluated in float64 whatever the input dtype; the outputs are
written in place into the caller's (already padded) tensors.  The work arrays
are kept between calls (per thread): on a virtual machine the page faults of
fresh allocations cost as much as the rasterisation.  (Keeping each pixel's
``K`` slots while walking the faces, with no candidate lists, was tried: it
needs a second pass over the faces for the ``"hybrid"`` score and measured
1.5-2x slower.)
"""

from __future__ import annotations

import threading

import numpy as np

try:  # optional: the vectorised path works without it
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    numba = None

__all__ = ["available", "MODES", "rasterize_frames"]

# ranking modes, as integers for the compiled code
MODES = {"depth": 0, "coverage": 1, "weight": 2, "hybrid": 3}


def available() -> bool:
    """Whether the compiled path can run (Numba importable)."""
    return numba is not None


def _kernel(tri, tz, live, box, H, W, K, r2, near, a, b, mode, p2f, zbuf, dists, edge_out,
            cpix, cface, csd, cz, ce, order, score, start):
    """Select the K best faces of every pixel of every frame.

    Args:
        tri: (B,F,3,2) float64 projected vertices (px); tz: (B,F,3) float64 depths.
        live: (B,F) bool faces to rasterise; box: (4,B,F) int64 (u0,u1,v0,v1) inclusive.
        p2f, zbuf, dists, edge_out: (B,H,W,K) outputs, pre-filled with the padding.
        cpix .. score: work arrays of at least the largest number of box pixels of
            one frame's faces; start: at least H*W+1 (reused between calls: fresh
            allocations cost a page fault per touched page).
    """
    B, F = live.shape
    for bi in range(B):
        n = 0
        cu = np.empty(7)
        cv = np.empty(7)
        cc = np.empty(7)
        elen = np.empty(3)
        for f in range(F):
            if not live[bi, f]:
                continue
            # affine coefficients of (L_0, L_1, L_2, T_0, T_1, T_2, 1/z) in (u, v)
            area2 = ((tri[bi, f, 1, 0] - tri[bi, f, 0, 0]) * (tri[bi, f, 2, 1] - tri[bi, f, 0, 1])
                     - (tri[bi, f, 1, 1] - tri[bi, f, 0, 1]) * (tri[bi, f, 2, 0] - tri[bi, f, 0, 0]))
            if area2 == 0.0:
                area2 = 1.0
            sgn = 1.0 if area2 > 0 else -1.0
            cu[6] = 0.0
            cv[6] = 0.0
            cc[6] = 0.0
            izmin = np.inf
            izmax = -np.inf
            for i in range(3):
                i1 = (i + 1) % 3
                i2 = (i + 2) % 3
                ax = tri[bi, f, i1, 0]
                ay = tri[bi, f, i1, 1]
                ex = tri[bi, f, i2, 0] - ax
                ey = tri[bi, f, i2, 1] - ay
                el = max(np.sqrt(ex * ex + ey * ey), 1e-30)
                elen[i] = el
                c0 = ey * ax - ex * ay
                s = sgn / el
                cu[i] = -ey * s
                cv[i] = ex * s
                cc[i] = c0 * s
                cu[3 + i] = ex / el
                cv[3 + i] = ey / el
                cc[3 + i] = -(ax * ex + ay * ey) / el
                iz = 1.0 / max(tz[bi, f, i], near)
                izmin = min(izmin, iz)
                izmax = max(izmax, iz)
                w = iz / area2
                cu[6] -= ey * w
                cv[6] += ex * w
                cc[6] += c0 * w
            cu0, cu1, cu2, cu3, cu4, cu5, cu6 = cu[0], cu[1], cu[2], cu[3], cu[4], cu[5], cu[6]
            el0, el1, el2 = elen[0], elen[1], elen[2]
            for v in range(box[2, bi, f], box[3, bi, f] + 1):
                # the row's part of the affine functions
                r0 = cv[0] * v + cc[0]
                r1 = cv[1] * v + cc[1]
                r2_ = cv[2] * v + cc[2]
                r3 = cv[3] * v + cc[3]
                r4 = cv[4] * v + cc[4]
                r5 = cv[5] * v + cc[5]
                r6 = cv[6] * v + cc[6]
                for u in range(box[0, bi, f], box[1, bi, f] + 1):
                    L0 = cu0 * u + r0
                    L1 = cu1 * u + r1
                    L2 = cu2 * u + r2_
                    T0 = cu3 * u + r3
                    T1 = cu4 * u + r4
                    T2 = cu5 * u + r5
                    q0 = T0 - min(max(T0, 0.0), el0)
                    q1 = T1 - min(max(T1, 0.0), el1)
                    q2 = T2 - min(max(T2, 0.0), el2)
                    d20 = L0 * L0 + q0 * q0
                    d21 = L1 * L1 + q1 * q1
                    d22 = L2 * L2 + q2 * q2
                    d2 = min(min(d20, d21), d22)
                    mnl = min(min(L0, L1), L2)
                    sd = -d2 if mnl >= 0 else d2  # signed, negative inside
                    if sd > r2:
                        continue
                    izr = min(max(cu6 * u + r6, izmin), izmax)
                    e = 0 if d20 <= d2 else (1 if d21 <= d2 else 2)
                    cpix[n] = v * W + u
                    cface[n] = f
                    csd[n] = sd
                    cz[n] = 1.0 / izr
                    ce[n] = e
                    n += 1
        # group by pixel (counting sort, stable)
        if n == 0:
            continue
        npix = H * W
        start[: npix + 1] = 0
        for j in range(n):
            start[cpix[j] + 1] += 1
        for p in range(npix):
            start[p + 1] += start[p]
        fill = start[:-1].copy()
        for j in range(n):
            p = cpix[j]
            order[fill[p]] = j
            fill[p] += 1
        best = np.empty(K, np.int64)
        bsc = np.empty(K, np.float64)
        for p in range(npix):
            s0 = start[p]
            s1 = start[p + 1]
            if s0 == s1:
                continue
            if mode == 3:  # hybrid: the better of weight and coverage, each relative to the pixel's best
                wmin = np.inf
                cmin = np.inf
                for t in range(s0, s1):
                    j = order[t]
                    wmin = min(wmin, max(csd[j], 0.0) * b + a * cz[j])
                    cmin = min(cmin, csd[j] * b + cz[j] * (a * 1e-6))
                for t in range(s0, s1):
                    j = order[t]
                    score[t] = min(max(csd[j], 0.0) * b + a * cz[j] - wmin, csd[j] * b + cz[j] * (a * 1e-6) - cmin)
            elif mode == 2:
                for t in range(s0, s1):
                    j = order[t]
                    score[t] = max(csd[j], 0.0) * b + a * cz[j]
            elif mode == 1:
                for t in range(s0, s1):
                    j = order[t]
                    score[t] = csd[j] * b + cz[j] * (a * 1e-6)
            else:
                for t in range(s0, s1):
                    score[t] = cz[order[t]]
            # the K lowest scores, in order (insertion; ties keep the earlier candidate first)
            nk = 0
            for t in range(s0, s1):
                sc = score[t]
                if nk == K and sc >= bsc[K - 1]:
                    continue
                pos = nk if nk < K else K - 1
                while pos > 0 and bsc[pos - 1] > sc:
                    if pos < K:
                        bsc[pos] = bsc[pos - 1]
                        best[pos] = best[pos - 1]
                    pos -= 1
                bsc[pos] = sc
                best[pos] = order[t]
                if nk < K:
                    nk += 1
            v = p // W
            u = p - v * W
            for k in range(nk):
                j = best[k]
                p2f[bi, v, u, k] = cface[j]
                zbuf[bi, v, u, k] = cz[j]
                dists[bi, v, u, k] = -csd[j]
                edge_out[bi, v, u, k] = ce[j]


_compiled = None


def _get_kernel():
    """The compiled :func:`_kernel` (compiled on the first call, cached on disk)."""
    global _compiled
    if _compiled is None:
        _compiled = numba.njit(cache=True, nogil=True, error_model="numpy")(_kernel)
    return _compiled


_local = threading.local()  # per-thread work arrays (concurrent renders must not share them)


def _work(cap: int, npix: int) -> list:
    """Work arrays for :func:`_kernel`, grown when too small, reused otherwise."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None or bufs[0].shape[0] < cap or bufs[-1].shape[0] < npix + 1:
        cap = max(cap, bufs[0].shape[0] if bufs else 0)
        npix = max(npix + 1, bufs[-1].shape[0] if bufs else 0)
        bufs = _local.bufs = [np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.float64),
                              np.empty(cap, np.float64), np.empty(cap, np.int8), np.empty(cap, np.int64),
                              np.empty(cap, np.float64), np.empty(npix, np.int64)]
    return bufs


def rasterize_frames(tri, tz, live, box, image_size, K, r2, near, rank, outputs) -> None:
    """Run the compiled selection on NumPy arrays (see :func:`_kernel`).

    ``tri``/``tz`` are converted to float64; ``outputs`` are the four
    ``(B,H,W,K)`` NumPy views (int64, float, float, int8) written in place.
    ``rank`` is ``(a, b, mode)`` from :func:`lasr.render.raster.ranking_weights`.
    """
    a, b, mode = rank
    H, W = image_size
    live = np.ascontiguousarray(live)
    box = np.ascontiguousarray(box)
    pairs = (box[1] - box[0] + 1) * (box[3] - box[2] + 1) * live  # (B, F)
    cap = int(pairs.sum(1).max()) if pairs.size else 0
    if cap == 0:
        return
    _get_kernel()(np.ascontiguousarray(tri, dtype=np.float64), np.ascontiguousarray(tz, dtype=np.float64),
                  live, box, int(H), int(W), int(K), float(r2), float(near), float(a), float(b), MODES[mode],
                  *outputs, *_work(cap, int(H) * int(W)))
