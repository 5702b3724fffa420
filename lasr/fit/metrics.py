"""The model rendered over the full frames and compared with the observations: the mask
IoU that restarts are kept by and ``metrics.json`` reports, and the flow error."""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from .. import losses as L
from ..data import VideoData, full_intrinsics
from ..model.articulated import ArticulatedModel
from ..render import RasterSettings, RenderOutput, render

__all__ = ["render_full", "full_frame_iou", "observed_flow_error"]


@torch.no_grad()
def render_full(model: ArticulatedModel, ids: torch.Tensor, image_size: tuple[int, int], settings: RasterSettings,
                chunk: int = 8, flow: bool = False) -> Iterator[tuple[torch.Tensor, RenderOutput]]:
    """Render the model over the full frames ``ids`` in chunks (bounded memory).

    Yields ``(chunk ids, RenderOutput)``; with ``flow`` the output holds the flow from
    each frame to the next (``ids`` must then exclude the last frame)."""
    device = model.rest_verts.device
    for s in range(0, len(ids), chunk):
        b = ids[s : s + chunk].to(device)
        K = full_intrinsics(model.focal(b), image_size)
        kw = {}
        if flow:
            kw = {"verts_next": model(b + 1), "cameras_next": full_intrinsics(model.focal(b + 1), image_size)}
        yield b, render(model(b), model.faces, K, settings, silhouette=False, **kw)


@torch.no_grad()
def full_frame_iou(model: ArticulatedModel, data: VideoData, ids: Optional[torch.Tensor] = None,
                   chunk: int = 8) -> torch.Tensor:
    """(N,) hard mask IoU of the model against the observed full-frame masks (CPU)."""
    ids = torch.arange(data.num_frames) if ids is None else ids
    settings = RasterSettings(image_size=data.image_size, sigma=0.0, faces_per_pixel=1)
    device = model.rest_verts.device
    out = [L.mask_iou(o.mask.float(), data.mask[b.cpu()].to(device)).cpu()
           for b, o in render_full(model, ids, data.image_size, settings, chunk)]
    return torch.cat(out)


@torch.no_grad()
def observed_flow_error(model: ArticulatedModel, data: VideoData, chunk: int = 8) -> np.ndarray:
    """(N-1,) mean end-point error (px, processed frames) of the model's rendered forward
    flow against the observed flow, where the object is and the flow is reliable."""
    device = model.rest_verts.device
    settings = RasterSettings(image_size=data.image_size, sigma=1e-3, faces_per_pixel=4)
    errs = []
    for ids, out in render_full(model, torch.arange(data.num_frames - 1), data.image_size, settings, chunk, flow=True):
        c = ids.cpu()
        obs = data.flow_fw[c].to(device)
        w = (data.conf_fw[c].to(device) > 0.5) & (data.mask[c].to(device) > 0.5) & out.mask
        e = (out.flow - obs).norm(dim=-1)
        errs += [float(e[b][w[b]].mean()) if w[b].any() else float("nan") for b in range(len(ids))]
    return np.array(errs)
