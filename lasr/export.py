"""Write a fit's outputs in the layout ``../DESIGN.md`` fixes (``final/``).

``meshes/%05d.obj`` posed meshes in camera coordinates (OpenCV), ``cameras.json``
intrinsics in pixels of the input frames as the user gave them, ``rest.obj``,
``skeleton.npz``, ``animation.glb`` (glTF 2.0 rig, :mod:`lasr.gltf`) and ``metrics.json``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import VideoData
from .geometry.mesh import save_obj
from .model.articulated import ArticulatedModel

__all__ = ["source_intrinsics", "write_final", "observed_flow_error"]


def source_intrinsics(K: torch.Tensor, processed_size: tuple[int, int], source_size: tuple[int, int]) -> torch.Tensor:
    """(N,4) intrinsics of the processed frames -> of the source frames.

    Pixel centres at integer coordinates on both: ``u_src = (u + 0.5) * s - 0.5`` with
    ``s = W_src / W``.
    """
    H, W = processed_size
    Ws, Hs = source_size
    sx, sy = Ws / W, Hs / H
    return torch.stack([K[:, 0] * sx, K[:, 1] * sy, (K[:, 2] + 0.5) * sx - 0.5, (K[:, 3] + 0.5) * sy - 0.5], -1)


@torch.no_grad()
def observed_flow_error(fitter, chunk: int = 8) -> np.ndarray:
    """(N-1,) mean end-point error (px, processed frames) of the model's rendered forward
    flow against the observed flow, where the object is and the flow is reliable."""
    from . import render as R

    data: VideoData = fitter.data
    settings = R.RasterSettings(image_size=data.image_size, sigma=1e-3, faces_per_pixel=4)
    errs = []
    for ids, out in fitter.render_full(torch.arange(data.num_frames - 1), settings, chunk, flow=True):
        obs = data.flow_fw[ids.cpu()].to(fitter.device)
        w = (data.conf_fw[ids.cpu()].to(fitter.device) > 0.5) & (data.mask[ids.cpu()].to(fitter.device) > 0.5) & out.mask
        e = (out.flow - obs).norm(dim=-1)
        errs += [float(e[b][w[b]].mean()) if w[b].any() else float("nan") for b in range(len(ids))]
    return np.array(errs)


@torch.no_grad()
def write_final(fitter, out_dir: Path, stage_seconds: dict, extra: Optional[dict] = None) -> Path:
    """Write ``out_dir`` (``final/``) and return it."""
    from .trainer import full_intrinsics

    out_dir = Path(out_dir)
    (out_dir / "meshes").mkdir(parents=True, exist_ok=True)
    m: ArticulatedModel = fitter.model
    data: VideoData = fitter.data
    T = data.num_frames
    ids = torch.arange(T, device=fitter.device)
    verts = m(ids).cpu()
    faces = m.faces.cpu()
    for i in range(T):
        save_obj(out_dir / "meshes" / f"{i:05d}.obj", verts[i], faces)
    save_obj(out_dir / "rest.obj", m.rest_verts.detach().cpu(), faces, colors=m.colors.detach().clamp(0, 1).cpu())

    K = source_intrinsics(full_intrinsics(m.focal(ids).cpu(), data.image_size), data.image_size, data.source_size)
    Ws, Hs = data.source_size
    cameras = {"width": Ws, "height": Hs, "frames": [
        {"frame": i, "source_frame": int(data.source_frames[i]), "fx": float(K[i, 0]), "fy": float(K[i, 1]),
         "cx": float(K[i, 2]), "cy": float(K[i, 3])} for i in range(T)]}
    (out_dir / "cameras.json").write_text(json.dumps(cameras, indent=1))

    R, t = m.root_transforms(ids)
    bones = m.bones
    np.savez(
        out_dir / "skeleton.npz",
        bone_centers=bones.centers.detach().cpu().numpy(),
        bone_orientations=bones.rotations().detach().cpu().numpy(),
        bone_log_precisions=bones.log_precisions.detach().cpu().numpy(),
        skinning_weights=m.skinning_weights().detach().cpu().numpy(),
        root_rotations=R.cpu().numpy(),
        root_translations=t.cpu().numpy(),
        bone_transforms=m.bone_transforms(ids).cpu().numpy(),
        rest_vertices=m.rest_verts.detach().cpu().numpy(),
        faces=faces.numpy(),
    )

    from .gltf import write_glb

    glb = write_glb(out_dir / "animation.glb", out_dir / "skeleton.npz",
                    colors=m.colors.detach().clamp(0, 1).cpu().numpy(), fps=float(getattr(data, "fps", None) or 10.0),
                    intrinsics=(float(K[0, 0]), float(K[0, 1]), Ws, Hs))

    iou = fitter.full_frame_iou().numpy()
    flow_err = observed_flow_error(fitter)
    metrics = {
        "frames": [{"frame": i, "source_frame": int(data.source_frames[i]), "mask_iou": float(iou[i]),
                    "flow_epe_px": float(flow_err[i]) if i < len(flow_err) else None} for i in range(T)],
        "mean_mask_iou": float(iou.mean()),
        "worst_mask_iou": float(iou.min()),
        "mean_flow_epe_px": float(np.nanmean(flow_err)) if len(flow_err) else None,
        "final_loss_terms": {r.name: r.final_terms for r in fitter.results},
        "stage_transitions": {r.name: {"iou_before": r.iou_before_change, "iou_after": r.iou_after_change}
                              for r in fitter.results if r.iou_before_change is not None},
        "hypothesis_losses": {r.name: r.hypothesis_losses for r in fitter.results if r.hypothesis_losses},
        "restarts_kept": fitter.kept,
        "seconds_per_stage": stage_seconds,
        "glb_top4_truncation": {k: glb[k] for k in ("trunc_err_max", "trunc_err_mean", "top4_mass_min")},
        "num_vertices": m.num_verts, "num_faces": int(m.faces.shape[0]), "num_bones": m.num_bones,
        "device": str(fitter.device),
        "versions": {"lasr": __import__("lasr").__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        **(extra or {}),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return out_dir
