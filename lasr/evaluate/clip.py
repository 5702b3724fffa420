"""Where a ground-truth clip keeps its files, its size, and which frames to score."""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["read_mask", "resolve_truth", "read_info", "truth_diagonal", "parse_frames"]


def read_mask(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L")) >= 128


def resolve_truth(gt) -> tuple[str, str]:
    """(folder with meshes/cameras.json/info.json, masks folder)."""
    gt = str(gt)
    if os.path.isdir(os.path.join(gt, "gt")):
        return os.path.join(gt, "gt"), os.path.join(gt, "masks")
    return gt, os.path.join(os.path.dirname(os.path.abspath(gt)), "masks")


def read_info(gdir) -> dict:
    """The clip's ``info.json`` (``{}`` when it has none)."""
    path = os.path.join(gdir, "info.json")
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def truth_diagonal(info: dict, vertices) -> float:
    """The clip's size, the unit of Chamfer and of the F-score's thresholds: ``bbox_diag`` of
    its ``info.json``, else the median bounding-box diagonal of the true meshes' ``vertices``."""
    if "bbox_diag" in info:
        return float(info["bbox_diag"])
    return float(np.median([np.linalg.norm(V.max(0) - V.min(0)) for V in vertices]))


def parse_frames(spec) -> list[int] | None:
    """``"0:48:4"`` / ``"3+5+9"`` (or ``"3,5,9"``) / list / None -> list of frame numbers."""
    if spec is None or spec == "" or spec == "all":
        return None
    if isinstance(spec, (list, tuple, range)):
        return [int(x) for x in spec]
    spec = str(spec)
    if ":" in spec:
        return list(range(*[int(x) for x in spec.split(":")]))
    return [int(x) for x in spec.replace("+", ",").split(",") if x.strip()]
