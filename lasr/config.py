"""Typed configuration schemas (Hydra structured configs).

The YAML files in ``conf/`` extend these dataclasses; Hydra validates every override
against them at start-up, so a typo or a wrong type fails with the key's name
(``Key 'flw' not in 'PreprocessConfig'``) instead of an hour into a run.

Both entry points (``python -m preprocess`` and ``python -m lasr.optimize``) compose the
same root config, so they take the same keys for the same things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore

__all__ = [
    "Device",
    "FlowBackend",
    "SegmenterBackend",
    "RaftModel",
    "DisPreset",
    "RaftConfig",
    "DisConfig",
    "ConfidenceConfig",
    "MaskRCNNConfig",
    "Detectron2Config",
    "PreprocessConfig",
    "LossWeights",
    "StageConfig",
    "ModelConfig",
    "TrainConfig",
    "LasrConfig",
    "conf_dir",
    "register_configs",
]


class Device(str, Enum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class FlowBackend(str, Enum):
    auto = "auto"  # RAFT when its weights load, else OpenCV DIS (with a warning)
    raft = "raft"
    dis = "dis"


class SegmenterBackend(str, Enum):
    auto = "auto"  # a given `masks` folder, else Mask R-CNN, else detectron2
    maskrcnn = "maskrcnn"
    detectron2 = "detectron2"


class RaftModel(str, Enum):
    large = "large"
    small = "small"


class DisPreset(str, Enum):
    ultrafast = "ultrafast"
    fast = "fast"
    medium = "medium"


@dataclass
class RaftConfig:
    model: RaftModel = RaftModel.large
    checkpoint: Optional[str] = None  # local state dict (.pth); else torchvision's weight enum
    iters: int = 12  # recurrent refinement iterations
    batch_size: int = 2  # frame pairs per forward pass


@dataclass
class DisConfig:
    preset: DisPreset = DisPreset.medium
    finest_scale: Optional[int] = None  # None: the preset's (0 = full resolution)
    patch_size: Optional[int] = None
    patch_stride: Optional[int] = None
    gradient_descent_iterations: Optional[int] = None
    variational_refinement_iterations: Optional[int] = None


@dataclass
class ConfidenceConfig:
    """Forward-backward consistency (Sundaram et al. 2010):
    ``conf = exp(-|f + b(x+f)|^2 / (alpha (|f|^2 + |b(x+f)|^2) + beta))``, 0 when ``x+f``
    leaves the image."""

    alpha: float = 0.01
    beta: float = 0.5  # px^2


# COCO classes LASR keeps: persons and animals (torchvision's category names).
DEFAULT_CLASSES = [
    "person", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe",
]


@dataclass
class MaskRCNNConfig:
    checkpoint: Optional[str] = None  # local state dict; else torchvision's weight enum
    version: str = "v2"  # maskrcnn_resnet50_fpn_v2 ("v2") or maskrcnn_resnet50_fpn ("v1")
    classes: List[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    score_threshold: float = 0.5
    mask_threshold: float = 0.5


@dataclass
class Detectron2Config:
    config_file: Optional[str] = None  # a PointRend config (.yaml)
    checkpoint: Optional[str] = None  # its weights (.pkl / .pth)
    score_threshold: float = 0.5


@dataclass
class PreprocessConfig:
    flow: FlowBackend = FlowBackend.auto
    segmenter: SegmenterBackend = SegmenterBackend.auto
    start: int = 0  # first source frame
    stride: int = 1  # keep every stride-th source frame
    max_frames: Optional[int] = None  # keep at most this many frames
    resolution: Optional[int] = 512  # longest side in px after resizing (never upscales); None: as is
    raft: RaftConfig = field(default_factory=RaftConfig)
    dis: DisConfig = field(default_factory=DisConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    maskrcnn: MaskRCNNConfig = field(default_factory=MaskRCNNConfig)
    detectron2: Detectron2Config = field(default_factory=Detectron2Config)


@dataclass
class LossWeights:
    """Weight of each loss term (0 switches a term off). See :mod:`lasr.losses`."""

    silhouette: float = 1.0
    soft_iou: float = 0.0  # 1 - soft IoU per frame (SoftRas); favours covering the mask over not spilling
    flow: float = 0.5
    color: float = 0.0
    laplacian: float = 0.5
    normal: float = 0.0  # normal consistency of the rest shape (1 - cos between neighbouring faces): against spikes
    symmetry: float = 0.0
    deformation: float = 0.02
    edge: float = 0.1
    camera_smooth: float = 0.05
    bones_inside: float = 0.1
    coverage: float = 0.0


# Parameter groups a stage can train (see lasr.trainer.PARAM_GROUPS).
ALL_GROUPS = ["shape", "color", "root", "bones", "motion", "focal"]


@dataclass
class StageConfig:
    """One stage of a schedule. A schedule (``conf/stages/NAME.yaml``) is an ordered
    mapping ``stage name -> StageConfig``, so a sweep can override ``stages.NAME.iters``."""

    iters: int = 200  # optimizer steps
    resolution: int = 64  # crop side (px) the stage renders at
    batch_size: int = 8  # frames per step
    num_bones: int = 0  # 0: rigid (no articulation)
    num_faces: Optional[int] = None  # remesh to about this many faces at the start; None: keep
    hypotheses: int = 1  # root-rotation hypotheses tried at the start (LASR: 16)
    # run the schedule from this stage through `restart_until` this many times, each from
    # the state at the stage's start with its own seed, keep the run whose full-frame mask
    # IoU against the observed masks is highest and go on from it (several stages may
    # restart if the stages they repeat do not overlap)
    restarts: int = 1
    restart_until: Optional[str] = None  # the last stage each restart runs; None: the schedule's last
    # root turns tried (degrees about the camera's vertical axis, from the first frame to
    # the last, at a constant rate): restart r of this stage starts its root rotations (each
    # hypothesis) turning by turns[r % len(turns)]. The stage's loss cannot tell a turn (it
    # needs a longer, more detailed shape) from a rounder shape that does not turn, so the
    # turns are compared as restarts are, by the mask IoU.
    turns: List[float] = field(default_factory=lambda: [0.0])
    hypothesis_iters: int = 50  # steps each hypothesis runs before the best is kept
    symmetric: bool = False  # use the symmetry loss (mirror about the rest shape's x = 0)
    train: List[str] = field(default_factory=lambda: list(ALL_GROUPS))
    lr: float = 0.01
    lr_final: float = 1.0  # learning rate at the end of the stage as a fraction of lr (cosine decay); 1: constant
    sigma: float = 0.1  # SoftRas sharpness in px^2 at this stage's resolution (LASR: 1e-4 in NDC)
    faces_per_pixel: int = 8
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class ModelConfig:
    subdivisions: int = 3  # icosphere level: 3 -> 642 vertices / 1280 faces
    focal: float = 1.0  # initial focal length in units of the longer image side
    per_frame_focal: bool = False
    rot_param: str = "6d"  # 6d | axis_angle
    skinning_temperature: float = 10.0
    crop_scale: float = 1.2  # crop side = crop_scale x the mask's bounding box
    lr_scale: Dict[str, float] = field(default_factory=lambda: {
        "shape": 1.0, "color": 1.0, "root": 1.0, "bones": 0.5, "motion": 1.0, "focal": 0.2})


@dataclass
class TrainConfig:
    seed: int = 0
    log_every: int = 10  # scalars
    image_every: int = 100  # image panels
    checkpoint_every: int = 200
    max_steps_per_stage: Optional[int] = None  # cap every stage (tests, smoke runs)
    distill_steps: int = 100  # at a bone-count change: steps fitting the new bones to the current deformation
    eval_resolution: Optional[int] = None  # full-frame render for metrics; None: processing size
    progress: bool = True


@dataclass
class LasrConfig:
    """The root config shared by ``python -m preprocess`` and ``python -m lasr.optimize``."""

    video: Optional[str] = None  # a video file PyAV decodes, or a folder of frames
    masks: Optional[str] = None  # folder of PNG masks, one per frame (nonzero = object)
    name: Optional[str] = None  # sequence name; default: from the video's name
    cache_dir: str = "cache"  # preprocessing cache root
    device: Device = Device.auto
    resume: bool = False
    force: bool = False  # recompute the preprocessing cache even if it is up to date
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    stages: Dict[str, StageConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def conf_dir() -> Path:
    """The ``conf/`` folder: the checkout's when run from one, else the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {here}")


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="lasr_schema", node=LasrConfig)


register_configs()
