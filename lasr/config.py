"""Typed configuration schemas (Hydra structured configs) of every command.

The YAML files in ``conf/`` extend these dataclasses; Hydra validates every override
against them at start-up, so a typo or a wrong type fails with the key's name
(``Key 'flw' not in 'PreprocessConfig'``) instead of an hour into a run.

``python -m preprocess`` reads :class:`InputConfig`; ``python -m lasr.optimize`` reads
:class:`LasrConfig`, which extends it, so both take the same keys for the same things.
``python -m lasr.videos``, ``python -m lasr.evaluate`` and ``python -m lasr.view`` read
:class:`VideosConfig`, :class:`EvaluateConfig` and :class:`ViewConfig`.

The comment after each field is its documentation: ``--help`` prints it
(:func:`describe`).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from .model.groups import PARAM_GROUPS

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
    "InputConfig",
    "LossWeights",
    "StageConfig",
    "ModelConfig",
    "TrainConfig",
    "LasrConfig",
    "VideosConfig",
    "EvaluateConfig",
    "ViewConfig",
    "EXAMPLE_SCHEDULE",
    "conf_dir",
    "describe",
    "register_configs",
]

EXAMPLE_SCHEDULE = "fast"  # the schedule of the built-in example (python -m lasr.optimize with no video)


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
    model: RaftModel = RaftModel.large  # large | small
    checkpoint: Optional[str] = None  # local state dict (.pth); else torchvision's weight enum
    iters: int = 12  # recurrent refinement iterations
    batch_size: int = 2  # frame pairs per forward pass


@dataclass
class DisConfig:
    preset: DisPreset = DisPreset.medium  # ultrafast | fast | medium
    finest_scale: Optional[int] = 0  # pyramid level of the finest search, 0 = full resolution; None: the preset's (1)
    patch_size: Optional[int] = None  # None: the preset's
    patch_stride: Optional[int] = None  # None: the preset's
    gradient_descent_iterations: Optional[int] = None  # None: the preset's
    variational_refinement_iterations: Optional[int] = None  # None: the preset's


@dataclass
class ConfidenceConfig:
    """Forward-backward consistency (Sundaram et al. 2010):
    ``conf = exp(-|f + b(x+f)|^2 / (alpha (|f|^2 + |b(x+f)|^2) + beta))``, 0 when ``x+f``
    leaves the image."""

    alpha: float = 0.01  # relative tolerance of the forward-backward check
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
    classes: List[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))  # COCO classes kept
    score_threshold: float = 0.5  # detections below are dropped
    mask_threshold: float = 0.5  # mask probability that counts as object


@dataclass
class Detectron2Config:
    config_file: Optional[str] = None  # a PointRend config (.yaml)
    checkpoint: Optional[str] = None  # its weights (.pkl / .pth)
    score_threshold: float = 0.5  # detections below are dropped


@dataclass
class PreprocessConfig:
    flow: FlowBackend = FlowBackend.auto  # auto (RAFT when its weights load, else DIS) | raft | dis
    segmenter: SegmenterBackend = SegmenterBackend.auto  # auto (a masks folder, Mask R-CNN, detectron2) | maskrcnn | detectron2
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
    """Weight of each loss term (0 switches a term off), in the order the terms are
    summed; each has its function in :mod:`lasr.fit.objective`."""

    silhouette: float = 1.0  # squared error of the soft silhouette against the mask
    soft_iou: float = 0.0  # 1 - soft IoU per frame (SoftRas); favours covering the mask over not spilling
    flow: float = 0.5  # end-point error of the rendered flow against the observed (confident) flow
    color: float = 0.0  # L1 of the rendered vertex colours against the frame
    laplacian: float = 0.5  # uniform Laplacian of the rest shape (smoothness)
    normal: float = 0.0  # normal consistency of the rest shape (1 - cos between neighbouring faces): against spikes
    posed_normal: float = 0.0  # the same on the batch's posed shapes (articulated stages): against folds at joints
    symmetry: float = 0.0  # the rest shape against its mirror image (stages with symmetric: true)
    deformation: float = 0.02  # least deformation (LASR): mean distance of articulated vertices from the rest shape
    edge: float = 0.1  # edge lengths kept between a frame and its neighbour
    arap: float = 0.0  # as rigid as possible: every pose keeps the rest shape's edge lengths
    motion_smooth: float = 0.0  # consecutive frames' bone transforms agree
    bones_inside: float = 0.1  # bone centres project inside the mask
    coverage: float = 0.0  # 2D chamfer between projected vertices and the mask (long-range silhouette)
    camera_smooth: float = 0.05  # consecutive root poses agree
    root_prior: float = 0.0  # root rotations near those the stage started from (the flow's), fading to 0 over the stage




@dataclass
class StageConfig:
    """One stage of a schedule. A schedule (``conf/stages/NAME.yaml``) is an ordered
    mapping ``stage name -> StageConfig``, so a sweep can override ``stages.NAME.iters``."""

    iters: int = 200  # optimizer steps
    resolution: int = 64  # crop side (px) the stage renders at
    batch_size: int = 8  # frames per step
    num_bones: int = 0  # 0: rigid (no articulation)
    num_faces: Optional[int] = None  # remesh (isotropic, symmetric) to about this many faces at the start; None: keep
    hypotheses: int = 1  # root-rotation hypotheses tried at the start (LASR: 16)
    mirror_hypotheses: bool = False  # also try each hypothesis with the root trajectory mirrored in depth
    trajectory: bool = False  # start the root from the rotations the flow shows (estimated once per fit)
    # with `trajectory` and restarts: the estimated turn scaled by each factor in turn (the
    # flow's estimate may overshoot where the view barely shows the turn); restart r starts
    # from its (r // len)-th best hypothesis with turn_scales[r % len], so `restarts` is the
    # hypotheses run through the stage times the factors
    turn_scales: List[float] = field(default_factory=lambda: [1.0])
    # run the schedule from this stage through `restart_until` this many times, each from
    # the state at the stage's start with its own seed, keep the run whose data terms
    # (silhouette, flow) over all frames are lowest and go on from it (several stages may
    # restart if the stages they repeat do not overlap)
    restarts: int = 1  # runs of this stage through restart_until, the best by the data terms kept
    restart_until: Optional[str] = None  # the last stage each restart runs; None: the schedule's last
    hypothesis_iters: int = 50  # steps each hypothesis runs before the best is kept
    # the flow term trains from this fraction of the stage's main steps on (> 0: not while
    # hypotheses run; 1: never); it scores hypotheses and restarts all the same
    flow_from: float = 0.0
    # what the flow term's gradient moves: "points" (the surface points each pixel sees, held
    # where the frame puts them, in both frames of the pair) or "surface" (also which point each
    # pixel sees: a step may slide the surface under the pixel instead of moving the point)
    flow_gradient: str = "surface"
    symmetric: bool = False  # use the symmetry loss (mirror about the rest shape's x = 0)
    mirrored_bones: bool = False  # with symmetric: new bones placed in mirrored pairs about that plane, kept so by the symmetry term
    train: List[str] = field(default_factory=lambda: list(PARAM_GROUPS))  # parameter groups it trains: shape, color, root, bones, motion, focal
    lr: float = 0.01  # Adam learning rate (x model.lr_scale of each group)
    shape_lambda: float = 0.0  # > 0: Laplacian-preconditioned shape steps, u = (I + λL) x (Nicolet et al. 2021); 0: Adam
    lr_final: float = 1.0  # learning rate at the end of the stage as a fraction of lr (cosine decay); 1: constant
    sigma: float = 0.1  # SoftRas sharpness in px^2 at this stage's resolution (LASR: 1e-4 in NDC)
    faces_per_pixel: int = 8  # faces the soft rasterizer blends per pixel
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class ModelConfig:
    subdivisions: int = 3  # icosphere level: 3 -> 642 vertices / 1280 faces
    init_width: float = 0.5  # the initial sphere's extent across the rest shape's mirror plane (rest x) over its height
    # and length: silhouettes of a body seen mostly from one side barely show its width and the fit keeps about what it
    # starts with (a sphere left the creature twice too wide: per-frame Chamfer 2.85 % against 1.78 % at 0.5, README)
    focal: float = 1.0  # initial focal length in units of the longer image side
    per_frame_focal: bool = False  # one focal length per frame (zooming cameras)
    rot_param: str = "6d"  # 6d | axis_angle
    skinning_temperature: float = 10.0  # softmax temperature of the Gaussian skinning (LASR: 10)
    crop_scale: float = 1.2  # crop side = crop_scale x the mask's bounding box
    fix_gauge: bool = False  # after every step, rest shape back at the origin with radius 1 (bones and root follow)
    lr_scale: Dict[str, float] = field(default_factory=lambda: {  # learning rate factor per parameter group
        "shape": 1.0, "color": 1.0, "root": 1.0, "bones": 0.5, "motion": 1.0, "focal": 0.2})


@dataclass
class TrainConfig:
    seed: int = 0  # the fit's random seed (batches, bone k-means, restarts)
    log_every: int = 10  # scalars
    image_every: int = 100  # image panels
    checkpoint_every: int = 200  # steps between checkpoints (ckpt/last.pt); 0: at stage ends only
    max_steps_per_stage: Optional[int] = None  # cap every stage (tests, smoke runs)
    distill_steps: int = 100  # at a bone-count change: steps fitting the new bones to the current deformation
    progress: bool = True  # progress bars


@dataclass
class InputConfig:
    """The keys of ``python -m preprocess``: the clip and its preprocessing."""

    video: Optional[str] = None  # a video file PyAV decodes, or a folder of frames
    masks: Optional[str] = None  # folder of PNG masks, one per frame (nonzero = object)
    name: Optional[str] = None  # sequence name; default: from the video's name
    cache_dir: str = "cache"  # preprocessing cache root
    device: Device = Device.auto  # auto (cuda when available) | cpu | cuda
    force: bool = False  # recompute the preprocessing cache even if it is up to date
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class LasrConfig(InputConfig):
    """The keys of ``python -m lasr.optimize``: the clip (as ``python -m preprocess``) and the fit."""

    fps: Optional[float] = None  # frame rate of the clip; default: the video's (a folder of frames has none)
    resume: bool = False  # continue the run in hydra.run.dir from its last checkpoint
    stages: Dict[str, StageConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


class ColorBy(str, Enum):
    skin = "skin"  # skinning weights (a colour per bone)
    texture = "texture"  # the fitted vertex colours
    gray = "gray"


@dataclass
class VideosConfig:
    """The keys of ``python -m lasr.videos``: videos and stills of a finished fit."""

    run: Optional[str] = None  # the fit's output folder (hydra.run.dir of lasr.optimize) or its final/
    out: Optional[str] = None  # where to write; default: <run>/renders
    outputs: str = "overlay+views+turntable"  # which videos: overlay, views, turntable, joined by + (or all)
    video: Optional[str] = None  # the input frames for the overlay (folder, video or cache); default: found via .hydra
    fps: float = 10.0  # frames per second of the videos
    size: int = 0  # panel height in px; 0: the input's (at most 512 for the overlay, 384 for the others)
    stride: int = 1  # render every n-th fitted frame
    formats: str = "mp4+gif"  # mp4, gif, joined by + (or none)
    stills: int = 3  # PNG stills per output
    turntable_frames: int = 36  # frames of the turntable's full turn
    color: ColorBy = ColorBy.skin  # how the views colour the mesh: skin | texture | gray
    follow: bool = False  # centre the views on every frame's own centroid, not the clip's
    labels: bool = True  # write view names and frame numbers on the panels
    supersample: int = 1  # render at this factor and average down (anti-aliasing)
    alpha: float = 0.6  # opacity of the overlay's mesh
    elevation: float = 20.0  # degrees the turntable camera looks down from
    device: Device = Device.auto  # auto | cpu | cuda
    chunk: int = 8  # frames rendered per call (bounds memory)
    quiet: bool = False  # print nothing but errors


@dataclass
class EvaluateConfig:
    """The keys of ``python -m lasr.evaluate``: a fit scored against a ground-truth clip."""

    run: Optional[str] = None  # the fit's output folder or its final/ (anything with meshes/ and cameras.json)
    gt: Optional[str] = None  # the clip folder (gt/meshes, gt/cameras.json, masks/) or its gt/
    frames: Optional[str] = None  # GT frames to score: start:stop[:step] or numbers joined by +; default all
    out: Optional[str] = None  # write the full result as JSON here
    keypoints: Optional[str] = None  # keypoints.json for the transfer PCK; default gt/keypoints.json; none: skip
    points: int = 20000  # surface samples per mesh
    icp_points: int = 5000  # of which the alignment uses
    iters: int = 40  # ICP iterations
    iou: bool = True  # render the masks and score their IoU
    quiet: bool = False  # print nothing but errors


@dataclass
class ViewConfig:
    """The keys of ``python -m lasr.view``: a finished fit in the browser."""

    run: Optional[str] = None  # the fit's output folder or its final/
    host: str = "127.0.0.1"  # the address the viewer serves on (0.0.0.0: every interface)
    port: int = 8080  # its port (when taken: the next free one; 0: any free one)
    video: Optional[str] = None  # the input frames (folder, video or cache); default: found via .hydra


def _field_docs(cls) -> dict[str, str]:
    """The trailing ``# comment`` of each field line in the class's source."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    docs = {}
    for line in src.splitlines():
        m = re.match(r"\s+(\w+):\s*[^#]*?#\s*(.+)$", line)
        if m:
            docs[m.group(1)] = m.group(2).strip()
    return docs


def describe(cls, prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """One line per key of the schema ``cls`` (nested dataclasses expanded):
    ``key=default  documentation``; what ``--help`` prints."""
    docs = {}
    for klass in reversed(cls.__mro__):
        if is_dataclass(klass):
            docs.update(_field_docs(klass))
    lines = []
    for f in fields(cls):
        if f.name in skip:
            continue
        key = prefix + f.name
        if is_dataclass(f.type) if not isinstance(f.type, str) else False:
            lines.append(describe(f.type, key + "."))
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else "???")
        if is_dataclass(default):
            lines.append(describe(type(default), key + "."))
            continue
        value = getattr(default, "value", default)
        value = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
        if isinstance(default, dict) and not default:
            continue
        lines.append(f"  {key}={value}".ljust(36) + (f"  {docs[f.name]}" if f.name in docs else ""))
    return "\n".join(x for x in lines if x)


def conf_dir() -> Path:
    """The ``conf/`` folder: the checkout's when run from one, else the installed copy."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml next to {here}")


def _run_group(video, stages_choice) -> str:
    """The schedule a run of ``python -m lasr.optimize`` fits, for its folder name: the
    built-in example (no video) fits :data:`EXAMPLE_SCHEDULE` unless stages= is given."""
    if video is None:
        from hydra.core.hydra_config import HydraConfig

        chosen = any(o.split("=", 1)[0].lstrip("+~") in ("stages", "+stages")
                     for o in HydraConfig.get().overrides.task)
        if not chosen:
            return EXAMPLE_SCHEDULE
    return stages_choice


_SCHEMAS = {"lasr": LasrConfig, "input": InputConfig, "stage": StageConfig, "videos": VideosConfig,
            "evaluate": EvaluateConfig, "view": ViewConfig}


def _help(name: str) -> str:
    if name == "lasr":
        return describe(LasrConfig, skip=("stages",)) + "\n" + describe(StageConfig, "stages.NAME.")
    return describe(_SCHEMAS[name])


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore and the resolvers the YAML files use
    (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="lasr_schema", node=LasrConfig)
    cs.store(name="input_schema", node=InputConfig)
    cs.store(name="videos_schema", node=VideosConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="view_schema", node=ViewConfig)
    OmegaConf.register_new_resolver("lasr_run_group", _run_group, replace=True)
    OmegaConf.register_new_resolver("lasr_keys", _help, replace=True)


register_configs()
