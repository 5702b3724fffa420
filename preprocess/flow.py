"""Optical flow (forward and backward for consecutive frames) and its confidence.

Backends: RAFT from ``torchvision.models.optical_flow`` (large or small; weights from
torchvision's enum or a local state dict) and OpenCV DIS (no weights, works offline).
Flow arrays are (H,W,2) float32 in pixels, ``(dx, dy)``: pixel ``(x, y)`` of the first
image moves to ``(x + dx, y + dy)`` in the second.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lasr.config import DisConfig, RaftConfig

from .segment import WeightsUnavailable, load_state_dict_file, load_weights_enum

__all__ = [
    "FlowEstimator",
    "DISFlow",
    "RAFTFlow",
    "load_raft",
    "forward_backward",
    "fb_confidence",
    "warp_backward",
]


class FlowEstimator(Protocol):
    name: str

    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        """(N,H,W,3) uint8 pairs -> (N,H,W,2) float32 flow from img1 to img2."""


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISFlow:
    """OpenCV's Dense Inverse Search flow (Kroeger et al., ECCV 2016) on gray images."""

    name = "dis"

    def __init__(self, cfg: DisConfig | None = None):
        cfg = cfg or DisConfig()
        preset = getattr(cfg.preset, "value", cfg.preset)
        self.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
        for attr, setter in [
            ("finest_scale", self.dis.setFinestScale),
            ("patch_size", self.dis.setPatchSize),
            ("patch_stride", self.dis.setPatchStride),
            ("gradient_descent_iterations", self.dis.setGradientDescentIterations),
            ("variational_refinement_iterations", self.dis.setVariationalRefinementIterations),
        ]:
            value = getattr(cfg, attr)
            if value is not None:
                setter(int(value))

    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        out = []
        for a, b in zip(img1, img2):
            ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
            gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
            out.append(self.dis.calc(ga, gb, None))
        return np.stack(out).astype(np.float32)


def load_raft(cfg: RaftConfig) -> torch.nn.Module:
    """RAFT (Teed & Deng, ECCV 2020) from torchvision, in eval mode.

    Weights: ``cfg.checkpoint`` (a local state dict) if given, else torchvision's
    ``Raft_Large_Weights.DEFAULT`` / ``Raft_Small_Weights.DEFAULT`` (torch hub cache or
    download). Raises :class:`WeightsUnavailable` when neither can be loaded.
    """
    from torchvision.models import optical_flow as of

    model_name = getattr(cfg.model, "value", cfg.model)
    if model_name == "large":
        build, weights = of.raft_large, of.Raft_Large_Weights.DEFAULT
    elif model_name == "small":
        build, weights = of.raft_small, of.Raft_Small_Weights.DEFAULT
    else:
        raise WeightsUnavailable(f"preprocess.raft.model={model_name}: use large or small")
    sd = load_state_dict_file(cfg.checkpoint) if cfg.checkpoint else load_weights_enum(weights)
    model = build(weights=None, progress=False)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise WeightsUnavailable(
            f"checkpoint {cfg.checkpoint or weights} does not fit raft_{model_name}: {str(e).splitlines()[0]}"
        ) from None
    return model.eval()


class RAFTFlow:
    """RAFT on RGB frames.

    Images are padded (replicate) to a multiple of 8 and to at least 128 px a side, as
    RAFT's correlation pyramid needs, and the flow is cropped back.
    """

    name = "raft"

    def __init__(self, model: torch.nn.Module, iters: int = 12, batch_size: int = 2,
                 device: torch.device | str = "cpu"):
        self.model = model.to(device).eval()
        self.iters = iters
        self.batch_size = batch_size
        self.device = torch.device(device)

    @staticmethod
    def _to_tensor(img: np.ndarray, device) -> torch.Tensor:
        # torchvision's OpticalFlow preset: [0,1] float, then normalize to [-1, 1].
        return torch.from_numpy(img).to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    @torch.no_grad()
    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> np.ndarray:
        H, W = img1.shape[1:3]
        ph, pw = max(128, H + (-H) % 8) - H, max(128, W + (-W) % 8) - W
        out = []
        for s in range(0, len(img1), self.batch_size):
            a = self._to_tensor(img1[s : s + self.batch_size], self.device)
            b = self._to_tensor(img2[s : s + self.batch_size], self.device)
            if ph or pw:
                a = F.pad(a, (0, pw, 0, ph), mode="replicate")
                b = F.pad(b, (0, pw, 0, ph), mode="replicate")
            flow = self.model(a, b, num_flow_updates=self.iters)[-1]
            out.append(flow[:, :, :H, :W].permute(0, 2, 3, 1).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def warp_backward(field: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``field`` (N,C,H,W) at ``x + flow(x)`` (bilinear, border clamp).

    ``flow`` is (N,H,W,2) in pixels; returns (N,C,H,W).
    """
    N, _, H, W = field.shape
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=flow.dtype, device=flow.device),
        torch.arange(W, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    gx = (xs + flow[..., 0]) * (2.0 / max(W - 1, 1)) - 1.0
    gy = (ys + flow[..., 1]) * (2.0 / max(H - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)


def fb_confidence(fw: np.ndarray, bw: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """Forward-backward consistency confidence of ``fw`` (Sundaram et al., ECCV 2010).

    For each pixel ``x`` of the first image: ``b' = bw(x + fw(x))``,
    ``conf = exp(-|fw + b'|^2 / (alpha (|fw|^2 + |b'|^2) + beta))``, and 0 where
    ``x + fw(x)`` falls outside the second image. Occluded / disoccluded pixels, whose
    forward and backward flows disagree, get values near 0.

    Args:
        fw: (N,H,W,2) flow image1 -> image2; bw: (N,H,W,2) flow image2 -> image1.
    Returns:
        (N,H,W) float32 in [0, 1].
    """
    f = torch.from_numpy(np.ascontiguousarray(fw, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(bw, dtype=np.float32))
    N, H, W, _ = f.shape
    b_at = warp_backward(b.permute(0, 3, 1, 2), f).permute(0, 2, 3, 1)
    err = (f + b_at).square().sum(-1)
    scale = alpha * (f.square().sum(-1) + b_at.square().sum(-1)) + beta
    conf = torch.exp(-err / scale)
    xs = torch.arange(W, dtype=f.dtype) + f[..., 0]
    ys = torch.arange(H, dtype=f.dtype)[:, None] + f[..., 1]
    inside = (xs >= 0) & (xs <= W - 1) & (ys >= 0) & (ys <= H - 1)
    return (conf * inside).numpy().astype(np.float32)


def forward_backward(
    estimator: Callable[[np.ndarray, np.ndarray], np.ndarray],
    frames: np.ndarray,
    pairs_per_call: int = 4,
    progress: Optional[Callable[[int], None]] = None,
):
    """Yield ``(i, fw_i, bw_i)`` for each consecutive pair (frames[i], frames[i+1])."""
    n = len(frames)
    for s in range(0, n - 1, pairs_per_call):
        e = min(s + pairs_per_call, n - 1)
        a, b = frames[s:e], frames[s + 1 : e + 1]
        flows = estimator(np.concatenate([a, b]), np.concatenate([b, a]))
        k = e - s
        for j in range(k):
            yield s + j, flows[j], flows[k + j]
        if progress:
            progress(k)
