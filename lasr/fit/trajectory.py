"""The root's rotation over the clip, estimated from the optical flow before any fitting.

A fit started from a root that does not turn keeps it from turning: the rigid stage's
loss prefers a rounder shape that fakes the turn, and the articulated stages deform it
further. So the rigid stage starts from the turn the video shows:

1. **Tracks.** Points on the object (inside the mask, where the flow is confident, off
   the mask's border) are carried from frame ``i`` to frame ``j`` by chaining the flow
   of every pair between them (forward or backward); a point whose flow turns
   unreliable or that leaves the mask is dropped.
2. **Relative rotations.** For pairs at several gaps (small gaps are precise but see
   little rotation; large ones see more but track fewer points), the essential matrix of
   the tracks under the focal length's estimate, with RANSAC (points on parts that move
   on their own, legs, are outliers), gives the rotation ``R_ij`` with
   ``X_j = R_ij X_i + t`` in camera coordinates (OpenCV's ``findEssentialMat`` /
   ``recoverPose``).
3. **Averaging.** The rotations of every frame, ``R_0 = I``, are the robust (iteratively
   reweighted) chordal average of all the pairs' constraints ``R_j ≈ R_ij R_i``, started
   by chaining the pairs.

The result is the object's rotation from frame 0 in camera coordinates; the rigid
stage's hypotheses then only choose the global orientation and, with
``mirror_hypotheses``, the trajectory's mirror image in depth
(:func:`mirror_in_depth`), which a small object seen from afar barely tells apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..data import VideoData

__all__ = ["Trajectory", "estimate_trajectory", "track_points", "relative_rotation", "average_rotations",
           "mirror_in_depth", "turn_degrees"]


@dataclass
class Trajectory:
    """The estimated root rotations.

    Attributes:
        rotations: ``(T, 3, 3)`` float64, frame ``t``'s rotation from frame 0 (``R_0 = I``).
        pairs: ``(i, j, points, inliers)`` of every pair that gave a rotation.
        residual_deg: the median angle between the pairs' rotations and the trajectory's.
    """

    rotations: np.ndarray
    pairs: list = field(default_factory=list)
    residual_deg: float = 0.0

    def turn(self) -> np.ndarray:
        """``(T,)`` degrees turned from frame 0 (:func:`turn_degrees`)."""
        return turn_degrees(self.rotations)


def turn_degrees(rotations) -> np.ndarray:
    """``(T,)`` angle in degrees of each ``R_t R_0^T`` of ``(T, 3, 3)`` rotations."""
    R = np.asarray(rotations, dtype=np.float64)
    rel = R @ R[0].T
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def mirror_in_depth(rotations: torch.Tensor) -> torch.Tensor:
    """The trajectory of the object's mirror image in depth: ``S R S`` with
    ``S = diag(1, 1, -1)`` (a turn about the vertical axis runs the other way)."""
    S = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=rotations.dtype, device=rotations.device))
    return S @ rotations @ S


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


_LK = dict(winSize=(11, 11), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))


def track_points(data: VideoData, i: int, j: int, max_points: int = 600, min_conf: float = 0.5,
                 border: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Points of frame ``i`` carried to frame ``j`` through the flow of every pair between.

    Returns:
        ``(P_i, P_j)`` two ``(N, 2)`` float64 arrays of pixel positions (processed frames).
    """
    forward = j > i
    start = _start_points(data, i, forward, max_points, min_conf, border)
    pts, alive, k = start.clone(), torch.ones(len(start), dtype=torch.bool), i
    while k != j:
        pts, alive, k = _advance(data, pts, alive, k, forward, min_conf)
    return start[alive].double().numpy(), pts[alive].double().numpy()


METHOD = cv2.LMEDS
PROB = 0.99


def _essential_rotation(p_i, p_j, K, threshold):
    E, inl = cv2.findEssentialMat(p_i, p_j, K, method=METHOD, prob=PROB, threshold=threshold)
    if E is None or E.shape != (3, 3):
        return None, 0
    n, R, _, _ = cv2.recoverPose(E, p_i, p_j, K, mask=inl)
    return R.astype(np.float64), int(n)


def relative_rotation(p_i: np.ndarray, p_j: np.ndarray, K: np.ndarray, threshold: float = 1.0,
                      agree_deg: float = 2.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """The rotation ``R_ij`` (``X_j = R_ij X_i + t``) from tracked points and the
    intrinsics ``K (3, 3)``, and the number of RANSAC inliers (0 when it fails).

    When the points see too little rotation (or too flat an object) to tell it from a
    translation, many essential matrices explain them within the threshold and RANSAC
    returns any of them. So the rotation is also estimated from two random halves of the
    points: a pair whose three estimates disagree by more than ``agree_deg`` is rejected.
    """
    if len(p_i) < 24:
        return np.eye(3), 0
    R, n = _essential_rotation(p_i, p_j, K, threshold)
    if R is None:
        return np.eye(3), 0
    perm = np.random.default_rng(seed).permutation(len(p_i))
    for half in (perm[: len(perm) // 2], perm[len(perm) // 2:]):
        Rh, _ = _essential_rotation(p_i[half], p_j[half], K, threshold)
        if Rh is None or _angle(Rh.T @ R) > agree_deg:
            return np.eye(3), 0
    return R, n


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


GAPS = (1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64)


def estimate_trajectory(data: VideoData, focal: float, gaps: Sequence[int] = GAPS, max_points: int = 600,
                        min_inliers: int = 20, min_kept: float = 0.3) -> Trajectory:
    """The root rotations of the clip from its flow (see the module docstring).

    Args:
        data: the observations (flow, confidence, masks).
        focal: the focal length in pixels of the processed frames.
        gaps: frame gaps of the pairs compared (forward from every frame); a track ends
            once fewer than ``min_kept`` of its points survive.
    """
    T = data.num_frames
    H, W = data.image_size
    K = np.array([[focal, 0.0, (W - 1) / 2], [0.0, focal, (H - 1) / 2], [0.0, 0.0, 1.0]])
    wanted = sorted(set(int(g) for g in gaps if 0 < g < T))
    measurements, pairs = [], []
    for i in range(T - 1):
        start = _start_points(data, i, True, max_points, 0.5, 2)
        pts, alive, k = start.clone(), torch.ones(len(start), dtype=torch.bool), i
        for gap in wanted:
            if i + gap >= T:
                break
            while k < i + gap:
                pts, alive, k = _advance(data, pts, alive, k, True, 0.5)
            if alive.sum() < max(min_inliers, min_kept * len(start)):
                break
            p_i, p_j = start[alive].double().numpy(), pts[alive].double().numpy()
            Rij, n = relative_rotation(p_i, p_j, K, seed=i * 131 + gap)
            if n < min_inliers or n < 0.5 * len(p_i):
                continue
            # the rotation's error shrinks with the baseline, which grows with the gap: weigh
            # by inliers x gap^2
            measurements.append((i, i + gap, Rij, float(n) * gap * gap))
            pairs.append((i, i + gap, len(p_i), n))
    if not measurements:
        return Trajectory(np.tile(np.eye(3), (T, 1, 1)), [], 0.0)
    R, residual = average_rotations(T, measurements)
    return Trajectory(R, pairs, residual)
