"""Pictures for people: flow colour coding and TensorBoard panels."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["flow_to_rgb", "log_panels"]


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(H,W,2) flow -> (H,W,3) uint8, hue = direction, saturation = magnitude (Middlebury-like)."""
    import cv2

    mag = np.linalg.norm(flow, axis=-1)
    ang = np.arctan2(flow[..., 1], flow[..., 0])
    scale = max_norm if max_norm else max(float(np.percentile(mag, 99)), 1e-6)
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = ((ang + np.pi) / (2 * np.pi) * 179).astype(np.uint8)
    hsv[..., 1] = np.clip(mag / scale * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


@torch.no_grad()
def log_panels(fitter, stage, step: int, frames: int = 4) -> None:
    """Observed vs rendered silhouette, flow and colour for a few frames, as one image."""
    from . import render as R

    T = fitter.data.num_frames
    ids = torch.linspace(0, T - 2, min(frames, T - 1)).round().long().to(fitter.device)
    direction = torch.ones_like(ids)
    m = fitter.model
    verts = m(torch.cat([ids, ids + 1]))
    K = fitter._crop_K(torch.cat([ids, ids + 1]))
    B = len(ids)
    out = R.render(verts[:B], m.faces, K[:B], fitter._settings(stage), attributes=m.colors,
                   verts_next=verts[B:], cameras_next=K[B:])
    c = fitter.crops
    flow_obs, conf = c.flow(ids, direction)
    rows = []
    for b in range(B):
        mask = c.mask[ids[b]].cpu().numpy()
        sil = out.silhouette[b].cpu().numpy()
        fo = flow_obs[b].cpu().numpy() * (mask[..., None] > 0.5)
        fr = out.flow[b].cpu().numpy() * out.mask[b].cpu().numpy()[..., None]
        scale = max(float(np.percentile(np.linalg.norm(fo, axis=-1), 99)), 1e-3)
        gray = lambda x: np.repeat((np.clip(x, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)  # noqa: E731
        rows.append(np.concatenate([
            (c.rgb[ids[b]].cpu().numpy() * 255).astype(np.uint8),
            gray(mask), gray(sil),
            flow_to_rgb(fo, scale), flow_to_rgb(fr, scale),
            (out.attributes[b].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8),
        ], axis=1))
    panel = np.concatenate(rows, axis=0)
    fitter.writer.add_image("panels/frame_mask_render_flowobs_flowrender_color", panel, step, dataformats="HWC")
