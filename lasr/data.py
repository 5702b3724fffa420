"""Cache -> tensors the optimizer consumes: full frames plus square crops around the object.

Each frame gets a square crop box around its mask (LASR: 1.2x the bounding box), and a
stage resamples every frame's image, mask, flow and confidence into ``R x R`` crops.
Flow is carried into crop coordinates: a crop pixel of frame ``t`` is mapped to the full
frame, moved by the observed flow, and mapped into the crop of frame ``t±1``, so the
crop flow compares directly with flow rendered through the two crops' cameras.

Conventions: pixel centres at integer coordinates (OpenCV). A crop box is
``(cu, cv, L)``: centre ``(cu, cv)`` and side ``L`` in full-frame pixels; crop pixel
``j`` has its centre at ``cu - L/2 + (j + 0.5) * L / R`` in the full frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from preprocess.layout import Sequence

__all__ = ["VideoData", "Crops", "crop_boxes", "crop_intrinsics", "full_intrinsics", "make_crops", "to_video_data",
           "distance_maps", "data_fingerprint"]


@dataclass
class VideoData:
    """A processed sequence as float tensors (CPU), at the processing resolution.

    Attributes:
        rgb: (N,H,W,3) float in [0,1].
        mask: (N,H,W) float {0,1}.
        flow_fw / flow_bw: (N-1,H,W,2) px, frame i -> i+1 / i+1 -> i (on frame i+1).
        conf_fw / conf_bw: (N-1,H,W) in [0,1].
        boxes: (N,3) crop boxes (cu, cv, L) in px.
        source_frames: (N,) long; source_size (W, H) of the user's frames.
        fps: frames per second of the processed frames (the source's rate over the
            preprocessing stride), None when unknown (a folder of frames).
        fingerprint: the preprocessing cache's fingerprint (``meta.json``), None when the
            data did not come from a cache (:func:`data_fingerprint` then hashes it).
    """

    rgb: Tensor
    mask: Tensor
    flow_fw: Tensor
    flow_bw: Tensor
    conf_fw: Tensor
    conf_bw: Tensor
    boxes: Tensor
    source_frames: Tensor
    source_size: tuple[int, int]
    fps: Optional[float] = None
    fingerprint: Optional[str] = None

    @property
    def num_frames(self) -> int:
        return self.rgb.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the processed frames."""
        return tuple(self.rgb.shape[1:3])


def crop_boxes(mask: Tensor, scale: float = 1.2, min_size: float = 8.0) -> Tensor:
    """Square boxes (N,3) ``(cu, cv, L)`` around each (N,H,W) mask: ``scale`` x its bbox."""
    boxes = []
    for m in mask:
        ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
        if len(xs) == 0:
            h, w = m.shape
            boxes.append(torch.tensor([(w - 1) / 2, (h - 1) / 2, float(max(h, w))]))
            continue
        x0, x1 = xs.min().float() - 0.5, xs.max().float() + 0.5  # pixel edges
        y0, y1 = ys.min().float() - 0.5, ys.max().float() + 0.5
        side = max(float(max(x1 - x0, y1 - y0)) * scale, min_size)
        boxes.append(torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2, side]))
    return torch.stack(boxes)


def to_video_data(seq: Sequence, crop_scale: float = 1.2) -> VideoData:
    mask = torch.from_numpy(seq.masks.astype(np.float32))
    src_fps = (seq.meta.get("source") or {}).get("fps")
    stride = int((seq.meta.get("settings") or {}).get("stride") or 1)
    return VideoData(
        rgb=torch.from_numpy(seq.frames).float().div(255.0),
        mask=mask,
        flow_fw=torch.from_numpy(seq.flow_fw),
        flow_bw=torch.from_numpy(seq.flow_bw),
        conf_fw=torch.from_numpy(seq.conf_fw),
        conf_bw=torch.from_numpy(seq.conf_bw),
        boxes=crop_boxes(mask, crop_scale),
        source_frames=torch.from_numpy(seq.source_frames),
        source_size=seq.source_size,
        fps=float(src_fps) / stride if src_fps else None,
        fingerprint=seq.meta.get("fingerprint"),
    )


def data_fingerprint(data: VideoData) -> str:
    """What identifies the sequence a fit is fitted to: its cache's fingerprint, else a
    hash of its observations (frames, masks, flow and confidence)."""
    if data.fingerprint:
        return str(data.fingerprint)
    import hashlib

    h = hashlib.blake2b(digest_size=10)
    for t in (data.rgb, data.mask, data.flow_fw, data.flow_bw, data.conf_fw, data.conf_bw, data.source_frames):
        a = t.detach().cpu().contiguous().numpy()
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return "data:" + h.hexdigest()


def full_intrinsics(focal: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(N,4) full-frame intrinsics from (N,) focal lengths in units of the longer side;
    principal point at the image centre."""
    H, W = image_size
    f = focal * max(H, W)
    c = focal.new_tensor([(W - 1) / 2, (H - 1) / 2]).expand(focal.shape[0], 2)
    return torch.cat([f[:, None], f[:, None], c], -1)


def distance_maps(mask: Tensor) -> Tensor:
    """(N,R,R) distance (in units of R) from each pixel to the (N,R,R) mask (0 inside)."""
    out = []
    for m in mask.cpu().numpy():
        outside = (m < 0.5).astype(np.uint8)
        d = cv2.distanceTransform(outside, cv2.DIST_L2, 3) if outside.any() else np.zeros_like(m)
        out.append(torch.from_numpy(d.astype(np.float32)) / m.shape[0])
    return torch.stack(out)


def crop_intrinsics(K: Tensor, boxes: Tensor, res: int) -> Tensor:
    """Full-frame intrinsics (...,4) ``(fx, fy, cx, cy)`` -> intrinsics of the ``res`` crops.

    ``u_crop = (u - (cu - L/2)) / s - 0.5`` with ``s = L / res``.
    """
    s = boxes[..., 2] / res
    left = boxes[..., 0] - boxes[..., 2] / 2
    top = boxes[..., 1] - boxes[..., 2] / 2
    return torch.stack([K[..., 0] / s, K[..., 1] / s, (K[..., 2] - left) / s - 0.5, (K[..., 3] - top) / s - 0.5], -1)


def _crop_grid(boxes: Tensor, res: int, size_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Full-frame pixel coords (N,R,R,2) of crop pixel centres, and grid_sample coords."""
    H, W = size_hw
    j = torch.arange(res, dtype=torch.float32) + 0.5
    s = boxes[:, 2:3] / res
    u = boxes[:, 0:1] - boxes[:, 2:3] / 2 + j[None] * s  # (N,R)
    v = boxes[:, 1:2] - boxes[:, 2:3] / 2 + j[None] * s
    uv = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), -1)  # (N,R,R,2) [y][x]
    grid = torch.stack([(uv[..., 0] + 0.5) / W * 2 - 1, (uv[..., 1] + 0.5) / H * 2 - 1], -1)
    return uv, grid


def _sample(img: Tensor, grid: Tensor, mode: str = "bilinear") -> Tensor:
    """(N,H,W,C) sampled at grid (N,R,R,2) -> (N,R,R,C); zeros outside."""
    out = F.grid_sample(img.permute(0, 3, 1, 2), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.permute(0, 2, 3, 1)


@dataclass
class Crops:
    """Every frame resampled into its ``res x res`` crop.

    Attributes:
        res: crop side in px.
        boxes: (N,3) (cu, cv, L) in full-frame px.
        rgb: (N,R,R,3); mask: (N,R,R) in [0,1]; inside: (N,R,R) 1 where the crop pixel
            lies inside the frame (silhouettes are unknown outside).
        flow_fw: (N-1,R,R,2) crop flow from crop t to crop t+1; conf_fw (N-1,R,R).
        flow_bw: (N-1,R,R,2) crop flow from crop t+1 to crop t (on crop t+1); conf_bw.
    """

    res: int
    boxes: Tensor
    rgb: Tensor
    mask: Tensor
    inside: Tensor
    flow_fw: Tensor
    conf_fw: Tensor
    flow_bw: Tensor
    conf_bw: Tensor

    def to(self, device) -> "Crops":
        return Crops(self.res, *(getattr(self, k).to(device) for k in
                                 ("boxes", "rgb", "mask", "inside", "flow_fw", "conf_fw", "flow_bw", "conf_bw")))

    def flow(self, ids: Tensor, direction: Tensor) -> tuple[Tensor, Tensor]:
        """Crop flow and confidence (B,R,R,2), (B,R,R) from frame ``ids`` to ``ids + direction``."""
        fw = direction > 0
        pair = torch.where(fw, ids, ids - 1)
        flow = torch.where(fw[:, None, None, None], self.flow_fw[pair.clamp(max=len(self.flow_fw) - 1)],
                           self.flow_bw[pair.clamp(min=0)])
        conf = torch.where(fw[:, None, None], self.conf_fw[pair.clamp(max=len(self.conf_fw) - 1)],
                           self.conf_bw[pair.clamp(min=0)])
        return flow, conf


def _crop_flow(flow: Tensor, conf: Tensor, box_a: Tensor, box_b: Tensor, res: int, size_hw) -> tuple[Tensor, Tensor]:
    uv_a, grid_a = _crop_grid(box_a, res, size_hw)
    f = _sample(flow, grid_a)  # full-frame flow at the crop pixels of frame a
    c = _sample(conf[..., None], grid_a)[..., 0]
    target = uv_a + f  # full-frame position in frame b
    s_b = box_b[:, None, None, 2:3] / res
    corner_b = box_b[:, None, None, 0:2] - box_b[:, None, None, 2:3] / 2
    target_crop = (target - corner_b) / s_b - 0.5
    j = torch.arange(res, dtype=torch.float32)
    own = torch.stack(torch.broadcast_tensors(j[None, None, :], j[None, :, None]), -1)
    return target_crop - own, c


def make_crops(data: VideoData, res: int) -> Crops:
    """Resample every frame into its crop at ``res`` px (see the module docstring)."""
    size = data.image_size
    _, grid = _crop_grid(data.boxes, res, size)
    rgb = _sample(data.rgb, grid)
    mask = _sample(data.mask[..., None], grid)[..., 0]
    inside = _sample(torch.ones_like(data.mask[..., None]), grid)[..., 0]
    fw, cfw = _crop_flow(data.flow_fw, data.conf_fw, data.boxes[:-1], data.boxes[1:], res, size)
    bw, cbw = _crop_flow(data.flow_bw, data.conf_bw, data.boxes[1:], data.boxes[:-1], res, size)
    return Crops(res, data.boxes, rgb, mask, inside, fw, cfw, bw, cbw)
