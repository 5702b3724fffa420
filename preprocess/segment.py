"""Object masks: a masks folder, torchvision Mask R-CNN, or detectron2 PointRend.

Detectors return every instance of the kept classes (persons and animals, as LASR);
:func:`select_track` then picks one object consistently through the whole video
(a Viterbi path over detections that rewards score and frame-to-frame overlap), so a
higher-scoring passer-by in a few frames does not replace the animal.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import torch

from lasr.errors import InputError, LasrError

from .frames import list_images, resize_frame

__all__ = [
    "Detection",
    "WeightsUnavailable",
    "select_track",
    "box_iou",
    "masks_from_folder",
    "masks_from_track",
    "check_masks",
    "check_mask_shape",
    "load_maskrcnn",
    "maskrcnn_detect",
    "load_detectron2",
]

log = logging.getLogger(__name__)


class WeightsUnavailable(LasrError):
    """Pretrained weights could not be loaded (offline, or a bad checkpoint path)."""


@dataclass(frozen=True)
class Detection:
    """One detected instance: ``box`` (x0, y0, x1, y1) px, ``mask`` (H,W) bool."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: Optional[np.ndarray] = None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_track(
    detections: Sequence[Sequence[Detection]],
    overlap_weight: float = 1.0,
    class_change_penalty: float = 1.0,
    miss_penalty: float = 0.5,
) -> list[Optional[int]]:
    """Pick one object through the video.

    Maximizes ``Σ_t score(d_t) + overlap_weight · IoU(box_t, box_{t+1})
    - class_change_penalty · [label changes] - miss_penalty · [frame without detection]``
    over paths that choose one detection (or none) per frame, by dynamic programming.

    Args:
        detections: per frame, the candidate detections.
    Returns:
        per frame, the index of the chosen detection in that frame's list, or None.
    """
    T = len(detections)
    if T == 0:
        return []
    # State k < len(dets[t]) is detection k; state len(dets[t]) is "no detection".
    unary = [np.array([d.score for d in dets] + [-miss_penalty]) for dets in detections]
    score = unary[0].copy()
    back: list[np.ndarray] = []
    for t in range(1, T):
        prev, cur = detections[t - 1], detections[t]
        trans = np.zeros((len(prev) + 1, len(cur) + 1))
        for i, a in enumerate(prev):
            for j, b in enumerate(cur):
                trans[i, j] = overlap_weight * box_iou(a.box, b.box) - class_change_penalty * (a.label != b.label)
        total = score[:, None] + trans
        back.append(total.argmax(0))
        score = total.max(0) + unary[t]
    path = [int(score.argmax())]
    for bp in reversed(back):
        path.append(int(bp[path[-1]]))
    path.reverse()
    return [k if k < len(dets) else None for k, dets in zip(path, detections)]


def check_masks(masks: np.ndarray, source_frames: Sequence[int], hint: str) -> None:
    """Raise naming the frames whose mask is empty."""
    empty = [i for i in range(len(masks)) if not masks[i].any()]
    if empty:
        shown = ", ".join(f"{i} (source frame {source_frames[i]})" for i in empty[:10])
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        raise InputError(f"the object mask is empty in {len(empty)} frame(s): {shown}{more}. {hint}")


def _read_mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise InputError(f"cannot read mask {path}: damaged or not an image")
    if m.ndim == 3:
        m = m[..., :3].max(axis=2) if m.shape[2] != 4 else m[..., :3].max(axis=2) * (m[..., 3] > 0)
    return m > 0


def check_mask_shape(path: Path, mask_hw: tuple[int, int], frame_size: tuple[int, int]) -> None:
    """Raise when a mask of ``mask_hw`` (H, W) has another aspect ratio than frames of
    ``frame_size`` (W, H): resizing it would stretch the object (one pixel of rounding
    and 1 % are tolerated; masks at another resolution of the same shape are fine)."""
    mh, mw = mask_hw
    W, H = frame_size
    if abs(mh - mw * H / W) > max(1.0, 0.01 * mh):
        raise InputError(
            f"mask {path} is {mw}x{mh} but the frames are {W}x{H}: another aspect ratio ({mw / mh:.3f} against "
            f"{W / H:.3f}), so it would be stretched onto them. Give masks of the frames' size (or the same "
            f"aspect ratio), one per frame"
        )


def masks_from_folder(
    folder: str | Path, num_source: int, source_frames: Sequence[int], size: tuple[int, int],
    source_size: Optional[tuple[int, int]] = None,
) -> np.ndarray:
    """Masks for the kept frames from a folder with one image per source frame.

    Returns (N,H,W) bool at ``size`` = (W, H); every mask must have the aspect ratio of the
    source frames (``source_size`` (W, H), default ``size``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"masks={folder}: no such folder")
    files = list_images(folder)
    if len(files) != num_source:
        raise InputError(
            f"masks={folder} holds {len(files)} mask images but the video has {num_source} frames: "
            f"give exactly one mask per source frame, in the same (name-sorted) order"
        )
    out = []
    for i in source_frames:
        m = _read_mask(files[i]).astype(np.uint8)
        check_mask_shape(files[i], m.shape, source_size or size)
        out.append(resize_frame(m, size, nearest=True) > 0)
    masks = np.stack(out)
    check_masks(masks, source_frames, f"Check the files in {folder}.")
    return masks


def masks_from_track(
    detections: Sequence[Sequence[Detection]], shape: tuple[int, int], source_frames: Sequence[int]
) -> np.ndarray:
    """(N,H,W) bool masks of the track chosen by :func:`select_track`."""
    choice = select_track(detections)
    masks = np.zeros((len(detections),) + tuple(shape), dtype=bool)
    for t, k in enumerate(choice):
        if k is not None and detections[t][k].mask is not None:
            masks[t] = detections[t][k].mask
    check_masks(
        masks, source_frames,
        "The segmenter found no person or animal there: give masks=FOLDER, "
        "or drop those frames with preprocess.start / preprocess.max_frames.",
    )
    return masks


# --------------------------------------------------------------------------------------
# torchvision Mask R-CNN


def _maskrcnn_builders(version: str):
    from torchvision.models import detection as D

    if version == "v2":
        return D.maskrcnn_resnet50_fpn_v2, D.MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT
    if version == "v1":
        return D.maskrcnn_resnet50_fpn, D.MaskRCNN_ResNet50_FPN_Weights.DEFAULT
    raise LasrError(f"preprocess.maskrcnn.version={version}: use v1 or v2")


def load_state_dict_file(path: str | Path) -> dict:
    """A state dict saved with ``torch.save`` (also accepts ``{"model": sd}`` / ``{"state_dict": sd}``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"checkpoint {path}: no such file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsUnavailable(f"checkpoint {path} could not be read: {type(e).__name__}: {e}") from None
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


def load_weights_enum(weights, timeout_s: float = 20.0) -> dict:
    """``weights.get_state_dict()`` (torch hub cache or download) as WeightsUnavailable on failure."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # noqa: BLE001 - offline, proxy, corrupt cache...
        raise WeightsUnavailable(f"{weights} could not be loaded ({type(e).__name__}: {e})") from None
    finally:
        socket.setdefaulttimeout(old)


def load_maskrcnn(checkpoint: Optional[str], version: str = "v2") -> tuple[torch.nn.Module, list[str]]:
    """Mask R-CNN with COCO weights: a local state dict if given, else torchvision's enum.

    Returns the model in eval mode and its category names (index = label id).
    """
    build, weights = _maskrcnn_builders(version)
    sd = load_state_dict_file(checkpoint) if checkpoint else load_weights_enum(weights)
    model = build(weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]))
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise WeightsUnavailable(
            f"checkpoint {checkpoint or weights} does not fit maskrcnn {version}: {str(e).splitlines()[0]}"
        ) from None
    return model.eval(), list(weights.meta["categories"])


@torch.no_grad()
def maskrcnn_detect(
    model: torch.nn.Module,
    categories: list[str],
    frames: np.ndarray,
    classes: Sequence[str],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    device: torch.device | str = "cpu",
    progress: Optional[Callable[[int], None]] = None,
) -> list[list[Detection]]:
    """Detections of the kept ``classes`` in each (H,W,3) uint8 frame."""
    keep = set(classes)
    model = model.to(device)
    out: list[list[Detection]] = []
    for img in frames:
        x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).to(device)
        pred = model([x])[0]
        dets = []
        for label, score, box, mask in zip(pred["labels"], pred["scores"], pred["boxes"], pred["masks"]):
            name = categories[int(label)]
            if name in keep and float(score) >= score_threshold:
                dets.append(Detection(name, float(score), tuple(box.tolist()),
                                      (mask[0] >= mask_threshold).cpu().numpy()))
        out.append(dets)
        if progress:
            progress(1)
    return out


# --------------------------------------------------------------------------------------
# detectron2 PointRend (optional; used only when detectron2 is importable)


def detectron2_available() -> bool:
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return False
    return True


def load_detectron2(config_file: Optional[str], checkpoint: Optional[str], score_threshold: float):
    """A function ``frame (H,W,3) uint8 RGB -> list[Detection]`` from a PointRend model."""
    if not detectron2_available():
        raise WeightsUnavailable("detectron2 is not installed (it is optional: pip install it yourself)")
    if not config_file or not checkpoint:
        raise WeightsUnavailable(
            "detectron2 needs preprocess.detectron2.config_file=... and preprocess.detectron2.checkpoint=..."
        )
    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    try:
        from detectron2.projects import point_rend

        point_rend.add_pointrend_config(cfg)
    except ImportError:
        log.warning("detectron2.projects.point_rend not found; loading %s as a plain detectron2 config", config_file)
    cfg.merge_from_file(config_file)
    cfg.MODEL.WEIGHTS = checkpoint
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)
    names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).thing_classes

    def detect(img: np.ndarray) -> list[Detection]:
        inst = predictor(img[..., ::-1].copy())["instances"].to("cpu")
        return [
            Detection(names[int(c)], float(s), tuple(b.tolist()), m.numpy())
            for c, s, b, m in zip(inst.pred_classes, inst.scores, inst.pred_boxes.tensor, inst.pred_masks)
        ]

    return detect
