"""The TensorBoard picture of a fit: for a few frames, the crop, the observed and rendered
silhouettes, the observed and rendered flow, and the rendered colours, side by side."""

from __future__ import annotations

import numpy as np
import torch

from ..data import Crops
from ..model.articulated import ArticulatedModel
from ..render import RasterSettings, render

__all__ = ["flow_colors", "render_panels"]


def flow_colors(flows: torch.Tensor, scale: float) -> np.ndarray:
    """``(N, H, W, 2)`` flows -> ``(N, H, W, 3)`` uint8 in torchvision's colour wheel, all on
    one scale: magnitudes are clipped at ``scale`` (e.g. the observed flow's 99th
    percentile), so the colours of several flows compare."""
    from torchvision.utils import flow_to_image  # imports all of torchvision (seconds): only when drawing

    f = flows.float()
    norm = f.norm(dim=-1, keepdim=True)
    f = f * (scale / norm.clamp_min(scale))  # |f| <= scale
    # one pixel at the full scale fixes flow_to_image's normalisation to `scale`
    pad = torch.zeros(1, *f.shape[1:], dtype=f.dtype, device=f.device)
    pad[0, 0, 0, 0] = scale
    img = flow_to_image(torch.cat([f, pad]).permute(0, 3, 1, 2))[:-1]
    return img.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def render_panels(model: ArticulatedModel, crops: Crops, K: torch.Tensor, ids: torch.Tensor,
                  settings: RasterSettings) -> np.ndarray:
    """One ``(rows x 6 panels)`` uint8 image for frames ``ids`` (each with the next one).

    Args:
        K: ``(2B, 4)`` crop intrinsics of ``ids`` then ``ids + 1``.
    """
    B = len(ids)
    verts = model(torch.cat([ids, ids + 1]))
    out = render(verts[:B], model.faces, K[:B], settings, attributes=model.colors, verts_next=verts[B:],
                 cameras_next=K[B:])
    flow_obs, _ = crops.flow(ids, torch.ones_like(ids))
    mask = crops.mask[ids]
    fo = flow_obs * (mask[..., None] > 0.5)
    fr = out.flow * out.mask[..., None]
    rows = []
    gray = lambda x: np.repeat((np.clip(x, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)  # noqa: E731
    for b in range(B):
        scale = max(float(np.percentile(fo[b].norm(dim=-1).cpu().numpy(), 99)), 1e-3)
        obs_rgb, ren_rgb = flow_colors(torch.stack([fo[b], fr[b]]), scale)
        rows.append(np.concatenate([
            (crops.rgb[ids[b]].cpu().numpy() * 255).astype(np.uint8),
            gray(mask[b].cpu().numpy()), gray(out.silhouette[b].cpu().numpy()),
            obs_rgb, ren_rgb,
            (out.attributes[b].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8),
        ], axis=1))
    return np.concatenate(rows, axis=0)
