"""The fit's counts, sizes and rates checked at start-up, before anything runs.

Hydra's schemas check the keys and the types; these check the ranges: a step count, a
batch size or a resolution of 0 or below would otherwise run silently (a batch of 0
frames trains nothing) or fail an hour later. Each problem names the key, its value and
the fix; all are reported at once (:class:`lasr.errors.ConfigError`). The restart windows
are checked by :func:`.schedule.restart_windows`, the preprocessing settings by
:func:`preprocess.guard.check_settings`.
"""

from __future__ import annotations

from typing import Optional

from ..errors import Problems
from ..model.groups import PARAM_GROUPS
from ..render.settings import FLOW_GRADIENTS

__all__ = ["MIN_RESOLUTION", "MIN_FACES", "check_stages", "check_fit"]

MIN_RESOLUTION = 8  # px: the smallest crop a stage renders
MIN_FACES = 20  # the fewest faces a remesh may aim at


def _stage_problems(bad: Problems, stages: list[tuple[str, object]]) -> None:
    for name, st in stages:
        k = f"stages.{name}."
        bad.at_least(k + "iters", st.iters, 0, "optimizer steps of the stage; 0 runs only its structure change "
                                              "and hypotheses")
        bad.at_least(k + "batch_size", st.batch_size, 1, "frames per step")
        bad.at_least(k + "resolution", st.resolution, MIN_RESOLUTION, "crop side in px the stage renders at")
        bad.at_least(k + "hypotheses", st.hypotheses, 1, "root rotations tried; 1 tries none")
        bad.at_least(k + "hypothesis_iters", st.hypothesis_iters, 1, "steps of each hypothesis")
        if not len(st.turn_scales) or min(st.turn_scales) <= 0:
            bad.add(k + "turn_scales", list(st.turn_scales), "factors of the estimated turn: at least one, "
                                                              "each above 0 ([1.0]: the estimate as it is)")
        bad.at_least(k + "num_bones", st.num_bones, 0, "bones; 0 is rigid")
        bad.at_least(k + "num_faces", st.num_faces, MIN_FACES, "faces after remeshing", none_ok="keep the mesh")
        bad.at_least(k + "faces_per_pixel", st.faces_per_pixel, 1, "faces blended per pixel")
        bad.positive(k + "sigma", st.sigma, "the soft rasterizer's blur in px^2")
        bad.at_least(k + "lr", st.lr, 0, "Adam's learning rate")
        bad.at_least(k + "lr_final", st.lr_final, 0, "the final rate as a fraction of lr")
        bad.within(k + "flow_from", st.flow_from, 0, 1, "the fraction of the stage's steps before the flow trains")
        if st.flow_gradient not in FLOW_GRADIENTS:
            bad.add(k + "flow_gradient", st.flow_gradient, "what the flow's gradient moves: points or surface")
        weights = st.weights
        for term, weight in (dict(weights) if hasattr(weights, "items") else vars(weights)).items():
            bad.at_least(k + f"weights.{term}", weight, 0, "a loss weight; 0 switches the term off")
        unknown = [g for g in st.train if g not in PARAM_GROUPS]
        if unknown:
            bad.add(k + "train", list(st.train), f"unknown groups {unknown}; groups: {', '.join(PARAM_GROUPS)}")


def check_stages(stages: list[tuple[str, object]]) -> None:
    """Raise :class:`lasr.errors.ConfigError` listing every stage value out of its range
    (``stages``: ``[(name, StageConfig), ...]``)."""
    bad = Problems()
    _stage_problems(bad, stages)
    bad.raise_any()


def check_fit(cfg, problems: Optional[Problems] = None) -> None:
    """Raise :class:`lasr.errors.ConfigError` listing every value of the stages, ``model.*``,
    ``train.*`` and ``fps`` out of its range (``cfg``: a composed ``LasrConfig``); with
    ``problems``, add them there instead (the caller raises)."""
    bad = problems if problems is not None else Problems()
    _stage_problems(bad, list(cfg.stages.items()))
    m, t = cfg.model, cfg.train
    bad.within("model.subdivisions", m.subdivisions, 0, 7, "icosphere level: 3 is 642 vertices")
    bad.within("model.init_width", m.init_width, 0.05, 1.0, "the initial shape's width over its height")
    bad.positive("model.focal", m.focal, "focal length in units of the longer image side")
    bad.at_least("model.crop_scale", m.crop_scale, 1.0, "crop side over the mask's bounding box")
    bad.positive("model.skinning_temperature", m.skinning_temperature, "softmax temperature of the skinning")
    if m.rot_param not in ("6d", "axis_angle"):
        bad.add("model.rot_param", m.rot_param, "must be 6d or axis_angle")
    for group, scale in dict(m.lr_scale).items():
        bad.at_least(f"model.lr_scale.{group}", scale, 0, "factor of the group's learning rate")
    bad.at_least("train.log_every", t.log_every, 1, "steps between logged scalars")
    bad.at_least("train.image_every", t.image_every, 0, "steps between image panels; 0: never")
    bad.at_least("train.checkpoint_every", t.checkpoint_every, 0, "steps between checkpoints; 0: at stage ends")
    bad.at_least("train.max_steps_per_stage", t.max_steps_per_stage, 1, "a cap on every stage's steps",
                 none_ok="no cap")
    bad.at_least("train.distill_steps", t.distill_steps, 0, "steps fitting new bones")
    if "fps" in cfg and cfg.fps is not None:
        bad.positive("fps", cfg.fps, "frames per second of the clip; null: the video's")
    if problems is None:
        bad.raise_any()
