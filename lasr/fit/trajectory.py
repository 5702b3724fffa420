"""The root's rotation over the clip, estimated from the optical flow before any fitting.

A fit started from a root that does not turn keeps it from turning: the rigid stage's
loss prefers a rounder shape that fakes the turn, and the articulated stages deform it
further. So the rigid stage starts from the turn the video shows:

1. **Tracks.** Points on the object (inside the mask, where the flow is confident, off
   the mask's border) are carried from frame ``a`` through a window of frames by chaining
   the forward flow; a point whose flow turns unreliable or that leaves the mask is
   dropped. Windows of several lengths (short ones keep many points, long ones see more
   turn) start every few frames.
2. **Rotations of a window.** Affine factorisation (Tomasi & Kanade 1992): the centred
   tracks are the rank-3 product of each frame's projection and the points' shape; points
   that fit it far worse than most (legs, which move on their own) are dropped and it is
   repeated; the metric upgrade makes each frame's projection orthonormal (scaled
   orthography). Then, with the focal length, the tracks are corrected for perspective
   (Christy & Horaud 1996: each point's image offset scaled by ``1 + depth / distance``
   as the last factorisation gives them, and factorised again), once for either mirror
   image in depth, and the one that fits better kept. Unlike two-view geometry it does
   not confuse a small turn with a sideways shift (the essential matrix of frame pairs,
   used before, saw 47° of the creature's 90°: too few pairs passed its checks).
3. **Mirror images.** A window seen from afar is known only up to its mirror image in
   depth (turning left or right). Overlapping windows agree in one combination of their
   mirror images; the clearest of these relations (windows that see the most turn over
   the frames they share) are followed from the first window along a maximum spanning
   tree, so that a stretch where the object hardly turns does not flip the rest.
4. **Averaging.** The rotations of every frame, ``R_0 = I``, are the robust (iteratively
   reweighted) chordal average of all the windows' constraints ``R_j ≈ R_ij R_i``
   (each pair weighing the same), started by chaining.

The result is the object's rotation from frame 0 in camera coordinates; the rigid
stage's hypotheses then only choose the global orientation and, with
``mirror_hypotheses``, the trajectory's mirror image in depth
(:func:`mirror_in_depth`), which a small object seen from afar barely tells apart.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..data import VideoData
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["Trajectory", "estimate_trajectory", "track_window", "factorize_window", "average_rotations",
           "mirror_in_depth", "scale_turn", "turn_degrees"]


@dataclass
class Trajectory:
    """The estimated root rotations.

    Attributes:
        rotations: ``(T, 3, 3)`` float64, frame ``t``'s rotation from frame 0 (``R_0 = I``).
        windows: ``(first frame, last frame, points tracked, points used)`` of every window
            tried (0 used: it told nothing).
        residual_deg: the median angle between the windows' rotations and the trajectory's.
        seconds: how long the estimate took.
    """

    rotations: np.ndarray
    windows: list = field(default_factory=list)
    residual_deg: float = 0.0
    seconds: float = 0.0

    def turn(self) -> np.ndarray:
        """``(T,)`` degrees turned from frame 0 (:func:`turn_degrees`)."""
        return turn_degrees(self.rotations)

    def summary(self) -> str:
        """One line for the log: windows used, residual, largest turn, time."""
        return (f"{sum(w[3] > 0 for w in self.windows)} of {len(self.windows)} frame windows, median residual "
                f"{self.residual_deg:.1f} degrees, turning {self.turn().max():.0f} degrees at most "
                f"({self.seconds:.1f} s)")


def from_first(rotations: np.ndarray) -> np.ndarray:
    """``(T, 3, 3)`` rotations ``R_t R_0^T``: each frame's turn from the first frame."""
    return rotations @ rotations[0].T


def turn_degrees(rotations) -> np.ndarray:
    """``(T,)`` angle in degrees of each ``R_t R_0^T`` of ``(T, 3, 3)`` rotations."""
    rel = from_first(np.asarray(rotations, dtype=np.float64))
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


_MIRROR = np.diag([1.0, 1.0, -1.0])  # depth flipped (camera coordinates)


def mirror_in_depth(rotations: torch.Tensor) -> torch.Tensor:
    """The trajectory of the object's mirror image in depth: ``S R S`` with
    ``S = diag(1, 1, -1)`` (a turn about the vertical axis runs the other way)."""
    S = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=rotations.dtype, device=rotations.device))
    return S @ rotations @ S


def scale_turn(rotations: torch.Tensor, factor: float) -> torch.Tensor:
    """The trajectory turning ``factor`` times as much: each frame's turn from the one
    before (``R_t R_{t-1}^T``) scaled along its geodesic (same axis, ``factor`` times the
    angle) and chained again from ``R_0``. Scaling the steps rather than each frame's
    rotation from the first keeps a turn past 180 degrees continuous (a whole revolution
    at ``factor`` 0.5 is half of one, not a turn back)."""
    if factor == 1.0:
        return rotations
    steps = rotations[1:] @ rotations[:-1].transpose(-1, -2)
    steps = axis_angle_to_matrix(matrix_to_axis_angle(steps) * factor)
    out = [rotations[0]]
    for D in steps:
        out.append(D @ out[-1])
    return torch.stack(out)


def _sample(field_: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``(H, W, C)`` at ``(N, 2)`` pixel positions (centres at integers)."""
    H, W = field_.shape[:2]
    grid = torch.stack([(pts[:, 0] + 0.5) / W * 2 - 1, (pts[:, 1] + 0.5) / H * 2 - 1], -1)
    out = F.grid_sample(field_.permute(2, 0, 1)[None].float(), grid[None, None].float(), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out[0, :, 0].T


def _start_points(data: VideoData, i: int, forward: bool, max_points: int, min_conf: float, border: int
                  ) -> torch.Tensor:
    """``(N, 2)`` pixel positions on the object in frame ``i`` (inside the eroded mask,
    where the flow is confident), on a regular grid of at most about ``max_points``."""
    mask = data.mask[i].numpy() > 0.5
    if border > 0:
        mask = cv2.erode(mask.astype(np.uint8), np.ones((2 * border + 1, 2 * border + 1), np.uint8)) > 0
    conf0 = (data.conf_fw[i] if forward else data.conf_bw[i - 1]).numpy()
    ys, xs = np.nonzero(mask & (conf0 > min_conf))
    if len(xs) == 0:
        return torch.zeros(0, 2)
    stride = max(1, int(math.ceil(math.sqrt(len(xs) / max_points))))
    keep = (ys % stride == 0) & (xs % stride == 0)
    return torch.from_numpy(np.stack([xs[keep], ys[keep]], 1).astype(np.float32))


def _advance(data: VideoData, pts: torch.Tensor, alive: torch.Tensor, k: int, forward: bool, min_conf: float
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Carry points of frame ``k`` one frame on; drop those whose flow is unreliable or
    that leave the image or the mask."""
    flow, conf = (data.flow_fw[k], data.conf_fw[k]) if forward else (data.flow_bw[k - 1], data.conf_bw[k - 1])
    c = _sample(conf[..., None], pts)[:, 0]
    pts = pts + _sample(flow, pts)
    k = k + 1 if forward else k - 1
    H, W = data.image_size
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= W - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= H - 1)
    on_mask = _sample(data.mask[k][..., None], pts)[:, 0] > 0.5
    return pts, alive & (c > min_conf) & inside & on_mask, k


def _project_so3(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    return U @ np.diag([1.0, 1.0, d]) @ Vt


def _angle(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def average_rotations(num_frames: int, measurements: Sequence[tuple[int, int, np.ndarray, float]],
                      iters: int = 30, scale_deg: float = 5.0) -> tuple[np.ndarray, float]:
    """Rotations ``R_t`` (``R_0 = I``) that best agree with relative measurements
    ``(i, j, R_ij, weight)`` meaning ``R_j ≈ R_ij R_i``: chained along the heaviest pairs,
    then Gauss-Seidel chordal averaging with Cauchy weights on the angular residuals
    (``scale_deg``) so that a few wrong pairs do not bend the trajectory. A frame no pair
    reaches keeps its neighbour's rotation.

    Returns:
        ``(T, 3, 3)`` rotations and the median residual angle (degrees).
    """
    T = num_frames
    R = [None] * T
    R[0] = np.eye(3)
    best_first = sorted(measurements, key=lambda m: -m[3])
    for _ in range(T):  # chain along the heaviest pairs (a maximum spanning tree from frame 0)
        for i, j, Rij, w in best_first:
            if (R[i] is None) != (R[j] is None):
                if R[j] is None:
                    R[j] = Rij @ R[i]
                else:
                    R[i] = Rij.T @ R[j]
                break
        else:
            break
    for t in range(T):
        if R[t] is None:
            R[t] = R[t - 1].copy()
    R = np.stack(R)
    weights = np.array([m[3] for m in measurements], dtype=np.float64)
    touching = [[] for _ in range(T)]  # the measurements of each frame
    for k, (i, j, _, _) in enumerate(measurements):
        touching[i].append(k)
        touching[j].append(k)
    for _ in range(iters):
        res = np.array([_angle(R[j].T @ Rij @ R[i]) for i, j, Rij, _ in measurements])
        robust = weights / (1.0 + (res / scale_deg) ** 2)
        for t in range(1, T):
            M = np.zeros((3, 3))
            for k in touching[t]:
                i, j, Rij, _ = measurements[k]
                M += robust[k] * (Rij @ R[i] if j == t else Rij.T @ R[j])
            if touching[t]:
                R[t] = _project_so3(M)
    res = [_angle(R[j].T @ Rij @ R[i]) for i, j, Rij, _ in measurements]
    return R, float(np.median(res)) if res else 0.0


def track_window(data: VideoData, a: int, lengths: Sequence[int], max_points: int = 800, min_conf: float = 0.5,
                 border: int = 2) -> list[np.ndarray]:
    """Points on the object in frame ``a`` carried through the forward flow, for windows of
    each of ``lengths`` frames: a window keeps the points tracked through all its frames.

    Returns:
        per length, ``(length, N, 2)`` float64 pixel positions (processed frames).
    """
    start = _start_points(data, a, True, max_points, min_conf, border)
    pts, alive, k = start.clone(), torch.ones(len(start), dtype=torch.bool), a
    seq, alive_at = [pts], [alive]
    while k < a + max(lengths) - 1:
        pts, alive, k = _advance(data, pts, alive, k, True, min_conf)
        seq.append(pts)
        alive_at.append(alive)
    seq = torch.stack(seq).double()
    return [seq[:n, alive_at[n - 1]].numpy() for n in lengths]


def _metric_upgrade(M: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray, float]]:
    """The metric upgrade of the ``(2L, 3)`` motion matrix of an affine factorisation:
    the symmetric ``Q Q^T`` that makes every frame's two rows orthogonal and of equal
    length (scaled orthography), by linear least squares.

    Returns:
        ``(R, Q, orth)``: ``(L, 3, 3)`` rotations (rows: the frame's image axes and its
        depth axis), ``Q`` and how far the rows are from orthonormal after it (0: exactly);
        ``None`` when ``Q Q^T`` is not positive definite.
    """
    A, B = M[0::2], M[1::2]

    def sym(u, v):  # the coefficients of u^T X v in X's six unknowns
        return np.stack([u[:, 0] * v[:, 0], u[:, 0] * v[:, 1] + u[:, 1] * v[:, 0], u[:, 0] * v[:, 2] + u[:, 2] * v[:, 0],
                         u[:, 1] * v[:, 1], u[:, 1] * v[:, 2] + u[:, 2] * v[:, 1], u[:, 2] * v[:, 2]], 1)

    G = np.concatenate([sym(A, A) - sym(B, B), sym(A, B), 10.0 * sym(A[:1], A[:1])])
    rhs = np.zeros(len(G))
    rhs[-1] = 10.0
    x = np.linalg.lstsq(G, rhs, rcond=None)[0]
    X = np.array([[x[0], x[1], x[2]], [x[1], x[3], x[4]], [x[2], x[4], x[5]]])
    e, V = np.linalg.eigh(X)
    if e.min() <= 0:
        return None
    Q = V * np.sqrt(e)
    a, b = A @ Q, B @ Q
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    orth = float(np.mean(np.abs(1 - nb / na) + np.abs(np.einsum("ij,ij->i", a, b)) / (na * nb)))
    r1 = a / na[:, None]
    r2 = b - r1 * np.einsum("ij,ij->i", r1, b)[:, None]
    r2 /= np.linalg.norm(r2, axis=1, keepdims=True)
    R = np.stack([_project_so3(np.stack([u, v, np.cross(u, v)])) for u, v in zip(r1, r2)])
    return R, Q, orth


def _affine(W: np.ndarray, keep: np.ndarray):
    """Rank-3 factorisation of the ``(2L, N)`` tracks ``W`` on the points ``keep``: the
    motion ``(2L, 3)``, the singular values and every point's shape ``(3, N)``."""
    Wc = W - W[:, keep].mean(1, keepdims=True)
    e, U = np.linalg.eigh(Wc[:, keep] @ Wc[:, keep].T)  # the SVD's left side, from the small Gram matrix
    s = np.sqrt(np.clip(e[::-1], 0, None))
    M = U[:, ::-1][:, :3] * s[:3]
    return M, s, np.linalg.solve(M.T @ M + 1e-12 * s[0] ** 2 * np.eye(3), M.T @ Wc), Wc


def factorize_window(tracks: np.ndarray, focal: Optional[float] = None, center=(0.0, 0.0), outliers: float = 3.0,
                     rounds: int = 2, min_depth: float = 0.01, max_orth: float = 0.15,
                     perspective_iters: int = 8) -> Optional[np.ndarray]:
    """The object's rotations over a window of frames from its point tracks, by affine
    factorisation (Tomasi & Kanade 1992): the centred tracks are the rank-3 product of the
    frames' projections and the points' shape; the points that fit it far worse than most
    (the parts that move on their own) are dropped and the factorisation repeated. With the focal
    length, the tracks are then corrected for perspective (Christy & Horaud 1996: each
    point's image offset scaled by ``1 + depth / distance`` as the last factorisation
    gives them, and factorised again), once for each mirror image in depth; the one that
    fits better is kept.

    Args:
        tracks: ``(L, N, 2)`` pixel positions.
        focal, center: the camera's focal length and principal point in pixels
            (``None``: scaled orthography only).
        outliers: points whose residual is more than this many times the median are
            dropped (each round and each perspective correction).
        min_depth: below this ratio of the third singular value to the first the points
            show no depth (too little turn to tell): the window's rotations are then only
            its in-image turn.
        max_orth: windows whose metric upgrade leaves the projections further than this
            from orthonormal are rejected.

    Returns:
        ``(L, 3, 3)`` rotations from the window's first frame in camera coordinates
        (up to the mirror image in depth), or ``None`` when the window cannot tell.
    """
    L, N, _ = tracks.shape
    x = tracks - np.asarray(center, dtype=np.float64)
    W = x.transpose(0, 2, 1).reshape(2 * L, N)
    keep = np.ones(N, dtype=bool)
    floor = 0.5 * math.sqrt(L)  # px: a residual this small is no outlier however small the median
    for r in range(rounds + 1):
        M, s, shape, Wc = _affine(W, keep)
        if r == rounds or keep.sum() < 12:
            break
        res = np.linalg.norm(Wc - M @ shape, axis=0)
        keep = res <= max(outliers * np.median(res), floor)
    if s[2] < min_depth * s[0]:  # flat motion: the in-image rotation of the points alone
        c = tracks - tracks.mean(1, keepdims=True)
        ang = np.arctan2((c[0, :, 0] * c[:, :, 1] - c[0, :, 1] * c[:, :, 0]).sum(1),
                         (c[0, :, 0] * c[:, :, 0] + c[0, :, 1] * c[:, :, 1]).sum(1))
        R = np.tile(np.eye(3), (L, 1, 1))
        R[:, 0, 0] = R[:, 1, 1] = np.cos(ang)
        R[:, 1, 0], R[:, 0, 1] = np.sin(ang), -np.sin(ang)
        return R
    up = _metric_upgrade(M)
    if up is None or up[2] > max_orth:
        return None
    R0, Q, _ = up
    if not focal or perspective_iters <= 0:
        return from_first(R0)
    best, keep0 = None, keep
    for sign in (1.0, -1.0):  # the two mirror images in depth
        R, Qb, Mb, shape_b, keep = R0, Q, M, shape, keep0
        for _ in range(perspective_iters):
            X = np.linalg.solve(Qb, shape_b)  # (3, N) metric shape
            scale = 0.5 * (np.linalg.norm(Mb[0::2] @ Qb, axis=1) + np.linalg.norm(Mb[1::2] @ Qb, axis=1))
            eps = sign * scale[:, None] * np.einsum("fk,kn->fn", R[:, 2], X) / focal  # depth / distance
            Wp = (x * (1 + eps)[..., None]).transpose(0, 2, 1).reshape(2 * L, N)
            Mb, _, shape_b, Wc = _affine(Wp, keep)
            res = np.linalg.norm(Wc - Mb @ shape_b, axis=0)  # the outliers again, now that the
            keep = res <= max(outliers * np.median(res), floor)  # perspective no longer hides them
            Mb, _, shape_b, Wc = _affine(Wp, keep)
            up = _metric_upgrade(Mb)
            if up is None:
                break
            Rn, Qb, _ = up
            # the upgrade's mirror image is arbitrary: keep the one nearest the last
            # (compared from the first frame on: the upgrade's orientation of the shape is arbitrary too)
            flipped = _MIRROR @ Rn @ _MIRROR
            rel = from_first(R)
            if (sum(_angle(a.T @ b) for a, b in zip(from_first(flipped), rel))
                    < sum(_angle(a.T @ b) for a, b in zip(from_first(Rn), rel))):
                Rn, Qb = flipped, Qb @ _MIRROR  # (the shape's depth flips with it)
            R = Rn
        else:
            # RMS over the points kept: the two images may keep different numbers of points
            err = float(np.linalg.norm((Wc - Mb @ shape_b)[:, keep])) / math.sqrt(max(int(keep.sum()), 1))
            if best is None or err < best[0]:
                best = (err, R)
    return from_first(R0 if best is None else best[1])


LENGTHS = (4, 6, 8, 12, 16, 24)


def _consistent_branches(windows: list) -> np.ndarray:
    """Which mirror image in depth of each window to take so that overlapping windows
    agree: for every pair that shares frames, whether they agree as they are or with one
    mirrored, and how clearly (the difference of the two disagreements over the shared
    frames' turns; windows that see little turn tell little); the clearest relations are
    followed from the first window along a maximum spanning tree. Returns ``(W,)`` of +1 /
    -1 (the other mirror image). ``windows``: ``(first frame, (L, 3, 3) rotations)``."""
    n = len(windows)
    edges = []
    for i in range(n):
        a_i, R_i = windows[i]
        for j in range(i + 1, n):
            a_j, R_j = windows[j]
            lo, hi = max(a_i, a_j), min(a_i + len(R_i), a_j + len(R_j)) - 1
            if hi - lo < 1:
                continue
            f = np.arange(lo + 1, hi + 1)
            rel_j = R_j[f - a_j] @ R_j[lo - a_j].T
            same = R_i[f - a_i] @ R_i[lo - a_i].T
            flip = _MIRROR @ same @ _MIRROR
            cost = [float(np.degrees(np.arccos(np.clip((np.einsum("fij,fij->f", c, rel_j) - 1) / 2, -1, 1))).sum())
                    for c in (same, flip)]
            edges.append((abs(cost[0] - cost[1]), i, j, 1 if cost[0] <= cost[1] else -1))
    signs = np.zeros(n, dtype=int)
    signs[0] = 1
    adjacency = [[] for _ in range(n)]
    for w, i, j, rel in edges:
        adjacency[i].append((w, j, rel))
        adjacency[j].append((w, i, rel))
    heap = [(-w, j, rel, 0) for w, j, rel in adjacency[0]]
    heapq.heapify(heap)
    while heap:  # Prim's algorithm: the clearest relation to a window not yet signed
        _, j, rel, i = heapq.heappop(heap)
        if signs[j]:
            continue
        signs[j] = signs[i] * rel
        for w, k, r in adjacency[j]:
            if not signs[k]:
                heapq.heappush(heap, (-w, k, r, j))
    signs[signs == 0] = 1  # windows that share no frame with the others
    return signs


def estimate_trajectory(data: VideoData, focal: Optional[float] = None, lengths: Sequence[int] = LENGTHS,
                        stride: int = 2, max_points: int = 800, min_points: int = 40) -> Trajectory:
    """The root rotations of the clip from its flow (see the module docstring).

    Args:
        data: the observations (flow, confidence, masks).
        focal: the focal length in pixels of the processed frames (the principal point at
            their centre), for the perspective correction; ``None``: scaled orthography.
        lengths: frames per window (a clip shorter than a window is one window).
        stride: frames between the starts of windows of one length (the last window of
            each length ends at the clip's last frame).
    """
    t0 = time.perf_counter()
    T = data.num_frames
    H, W = data.image_size
    center = ((W - 1) / 2, (H - 1) / 2)
    windows, tried = [], []
    lengths = sorted(set(min(int(n), T) for n in lengths if n > 1))
    starts = {n: set(range(0, T - n + 1, stride)) | {T - n} for n in lengths}
    for a in sorted(set().union(*starts.values())):
        here = [n for n in lengths if a in starts[n]]
        for n, tracks in zip(here, track_window(data, a, here, max_points)):
            R = factorize_window(tracks, focal, center) if tracks.shape[1] >= min_points else None
            tried.append((a, a + n - 1, tracks.shape[1], 0 if R is None else tracks.shape[1]))
            if R is not None:
                windows.append((a, R))
    if not windows:
        return Trajectory(np.tile(np.eye(3), (T, 1, 1)), tried, 0.0, time.perf_counter() - t0)

    signs = _consistent_branches(windows)
    chosen = [(a, R if sign > 0 else _MIRROR @ R @ _MIRROR) for (a, R), sign in zip(windows, signs)]
    # every frame pair of a window weighs the same: a window's error grows with the frames
    # between (about a quarter of the turn on the creature and CesiumMan), so weighting by them
    # let the long windows, the least accurate, dominate the chaining and the average
    R, residual = average_rotations(T, [(a, a + k, Rw[k], 1.0) for a, Rw in chosen for k in range(1, len(Rw))])
    return Trajectory(from_first(R), tried, residual, time.perf_counter() - t0)
