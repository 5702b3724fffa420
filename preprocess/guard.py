"""What preprocessing checks before it writes anything: the settings' ranges, that the
sequence name is a plain name, and that the cache folder cannot touch the user's inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lasr.errors import InputError, Problems

__all__ = ["MIN_RESOLUTION", "check_settings", "check_name", "check_location"]

MIN_RESOLUTION = 16  # px: the smallest longest side preprocessing resizes frames to


def check_settings(cfg, problems: Optional[Problems] = None) -> None:
    """Raise :class:`lasr.errors.ConfigError` listing every ``preprocess.*`` count, size or
    threshold out of its range (``cfg`` is an ``InputConfig`` or ``LasrConfig``); with
    ``problems``, add them there instead (the caller raises)."""
    p = cfg.preprocess
    bad = problems if problems is not None else Problems()
    bad.at_least("preprocess.start", p.start, 0, "the first source frame kept")
    bad.at_least("preprocess.stride", p.stride, 1, "keep every stride-th frame")
    bad.at_least("preprocess.max_frames", p.max_frames, 2, "flow needs two frames", none_ok="all frames")
    bad.at_least("preprocess.resolution", p.resolution, MIN_RESOLUTION,
                 "px of the longest side after resizing", none_ok="the frames' own size")
    bad.at_least("preprocess.raft.iters", p.raft.iters, 1, "RAFT's refinement iterations")
    bad.at_least("preprocess.raft.batch_size", p.raft.batch_size, 1, "frame pairs per RAFT pass")
    bad.at_least("preprocess.confidence.alpha", p.confidence.alpha, 0, "relative tolerance of the flow check")
    bad.positive("preprocess.confidence.beta", p.confidence.beta, "px^2 tolerance of the flow check")
    for key in ("finest_scale", "gradient_descent_iterations", "variational_refinement_iterations"):
        bad.at_least(f"preprocess.dis.{key}", getattr(p.dis, key), 0, "DIS setting", none_ok="the preset's")
    for key in ("patch_size", "patch_stride"):
        bad.at_least(f"preprocess.dis.{key}", getattr(p.dis, key), 1, "DIS setting in px", none_ok="the preset's")
    for key in ("score_threshold", "mask_threshold"):
        bad.within(f"preprocess.maskrcnn.{key}", getattr(p.maskrcnn, key), 0, 1, "a probability")
    bad.within("preprocess.detectron2.score_threshold", p.detectron2.score_threshold, 0, 1, "a probability")
    if problems is None:
        bad.raise_any()


def check_name(name: str, given: bool = True) -> str:
    """``name`` when it is a plain folder name (no ``/``, ``\\``, ``..``, not absolute, not
    empty); raises :class:`InputError` otherwise (``given``: it came from ``name=``, else it
    was derived from the video's path)."""
    plain = bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    if plain and Path(name).name == name:
        return name
    suggestion = Path(str(name).replace("\\", "/")).name.strip(".") or "clip"
    if given:
        raise InputError(f"name={name} is not a plain name: the sequence is cached in cache_dir/<name>, so '/', "
                         f"'\\', '..' and absolute paths are not allowed. Give e.g. name={suggestion} and choose "
                         f"the folder with cache_dir=")
    raise InputError(f"cannot name the sequence after the video (got {name!r}): give name=<a plain name>")


def check_location(root: Path, inputs: dict[str, Optional[str]]) -> None:
    """Refuse a sequence folder ``root`` that is, holds or lies inside one of the ``inputs``
    (``{"video": path, "masks": path}``): preprocessing replaces ``frames/``, ``masks/`` and
    ``flow/`` there, which could be the user's own files."""
    r = Path(root).expanduser().resolve()
    for key, value in inputs.items():
        if not value:
            continue
        p = Path(value).expanduser().resolve()
        if r == p or r in p.parents or p in r.parents:
            where = "is" if r == p else "holds" if r in p.parents else "lies inside"
            raise InputError(
                f"the cache folder of this sequence, {r}, {where} the input {key}={value} ({p}): preprocessing "
                f"writes frames/, masks/ and flow/ into its cache folder and could replace your files. Give a "
                f"cache_dir= outside your inputs (e.g. cache_dir=cache) or another name=")
