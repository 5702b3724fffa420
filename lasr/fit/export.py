"""The fitted model and its scores as the content of ``final/`` (:mod:`lasr.io.final`)."""

from __future__ import annotations

import platform
from typing import Optional

import numpy as np
import torch

from ..data import VideoData, full_intrinsics
from ..io.final import FinalContent, source_intrinsics
from ..model.articulated import ArticulatedModel
from ..model.tree import joint_heads, kinematic_tree
from .metrics import full_frame_iou, observed_flow_error

__all__ = ["DEFAULT_FPS", "fit_metrics", "final_content"]

DEFAULT_FPS = 10.0  # the animation's rate when the source's is unknown and no fps= is given


@torch.no_grad()
def fit_metrics(model: ArticulatedModel, data: VideoData, results: list, kept: list, seconds: dict,
                device: torch.device, extra: Optional[dict] = None, trajectory=None) -> dict:
    """``metrics.json``: per-frame mask IoU and flow error of the model, the root's turn
    from frame 0 (fitted, and estimated from the flow when ``trajectory`` (T,3,3) is
    given), each stage's final loss terms, structure changes and hypothesis scores, the
    kept restarts, timings, sizes, device and versions."""
    from .trajectory import turn_degrees

    iou = full_frame_iou(model, data).numpy()
    fitted_turn = turn_degrees(model.root_transforms()[0].detach().cpu().numpy())
    est_turn = None if trajectory is None else turn_degrees(torch.as_tensor(trajectory).cpu().numpy())
    flow_err = observed_flow_error(model, data)
    T = data.num_frames
    return {
        "frames": [{"frame": i, "source_frame": int(data.source_frames[i]), "mask_iou": float(iou[i]),
                    "flow_epe_px": float(flow_err[i]) if i < len(flow_err) else None,
                    "root_turn_deg": float(fitted_turn[i]),
                    "estimated_turn_deg": None if est_turn is None else float(est_turn[i])} for i in range(T)],
        "root_turn_deg": {"fitted_max": float(fitted_turn.max()),
                          "estimated_max": None if est_turn is None else float(est_turn.max())},
        "mean_mask_iou": float(iou.mean()),
        "worst_mask_iou": float(iou.min()),
        "mean_flow_epe_px": float(np.nanmean(flow_err)) if len(flow_err) and np.isfinite(flow_err).any() else None,
        "final_loss_terms": {r.name: r.final_terms for r in results},
        "stage_transitions": {r.name: {"iou_before": r.iou_before_change, "iou_after": r.iou_after_change}
                              for r in results if r.iou_before_change is not None},
        "hypothesis_losses": {r.name: r.hypothesis_losses for r in results if r.hypothesis_losses},
        "restarts_kept": kept,
        "seconds_per_stage": seconds,
        "num_vertices": model.num_verts, "num_faces": int(model.faces.shape[0]), "num_bones": model.num_bones,
        "device": str(device),
        "versions": {"lasr": __import__("lasr").__version__, "torch": torch.__version__,
                     "python": platform.python_version(),
                     # PyTorch's vector kernels (AVX512, AVX2, ...): the same fit on other kernels is another
                     # draw (README, Results); ATEN_CPU_CAPABILITY picks lower ones
                     "cpu_kernels": torch.backends.cpu.get_cpu_capability()},
        **(extra or {}),
    }


@torch.no_grad()
def final_content(model: ArticulatedModel, data: VideoData, metrics: dict, fps: Optional[float]) -> FinalContent:
    """The arrays of ``final/`` for ``model`` fitted to ``data``: posed meshes, source-pixel
    intrinsics, rest mesh and colours, the skeleton with its kinematic tree (``parents``,
    ``joint_positions``: :mod:`lasr.model.tree`); ``fps`` (None: :data:`DEFAULT_FPS`)."""
    T = data.num_frames
    ids = torch.arange(T, device=model.rest_verts.device)
    faces = model.faces.cpu().numpy()
    K = source_intrinsics(full_intrinsics(model.focal(ids).cpu(), data.image_size).numpy(), data.image_size,
                          data.source_size)
    R, t = model.root_transforms(ids)
    bones = model.bones
    skeleton = {
        "bone_centers": bones.centers.detach().cpu().numpy(),
        "bone_orientations": bones.rotations().detach().cpu().numpy(),
        "bone_log_precisions": bones.log_precisions.detach().cpu().numpy(),
        "skinning_weights": model.skinning_weights().detach().cpu().numpy(),
        "root_rotations": R.cpu().numpy(),
        "root_translations": t.cpu().numpy(),
        "bone_transforms": model.bone_transforms(ids).cpu().numpy(),
        "rest_vertices": model.rest_verts.detach().cpu().numpy(),
        "faces": faces,
    }
    W, X, G = skeleton["skinning_weights"], skeleton["rest_vertices"], skeleton["bone_transforms"]
    skeleton["parents"] = kinematic_tree(W, X, G, faces)
    skeleton["joint_positions"] = joint_heads(skeleton["parents"], W, X, G).astype(X.dtype)
    return FinalContent(verts=model(ids).cpu().numpy(), faces=faces, rest_verts=model.rest_verts.detach().cpu().numpy(),
                        colors=model.colors.detach().clamp(0, 1).cpu().numpy(), intrinsics=K,
                        source_size=data.source_size, source_frames=data.source_frames.numpy(), skeleton=skeleton,
                        fps=float(fps or DEFAULT_FPS), metrics=metrics)
