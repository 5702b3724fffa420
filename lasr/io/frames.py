"""The input frames of a finished fit, for pictures drawn over them (videos, the viewer).

Found, in order: the ``video=`` given; else through the run's ``.hydra/config.yaml``, the
preprocessing cache (``cache_dir``/``name``) when it holds the fitted frames, else the
``video`` the fit was given (a folder of images or a video file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from .final import FinalRun

__all__ = ["FrameSource", "find_frames"]


@dataclass
class FrameSource:
    """Where the overlay's images come from; ``read(ids)`` yields RGB uint8 frames in order."""

    description: str
    size: tuple[int, int]  # (W, H)
    read: Callable[[list[int]], Iterator[np.ndarray]] = field(repr=False)


def _image_reader(files: list[Path]) -> Callable[[list[int]], Iterator[np.ndarray]]:
    def read(idx: list[int]) -> Iterator[np.ndarray]:
        import cv2

        for i in idx:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"cannot read image {files[i]}")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    return read


def _folder_source(folder: Path, rf: FinalRun, what: str) -> FrameSource:
    import cv2

    from preprocess.frames import list_images

    files = list_images(folder)
    if not files:
        raise InputError(f"{what}: {folder} holds no images")
    n, src = rf.num_frames, rf.source_frames
    if len(files) > int(src.max()):
        mapping, how = [int(s) for s in src], "source frame numbers"
    elif len(files) == n:
        mapping, how = list(range(n)), "fitted frame numbers"
    else:
        raise InputError(f"{what}: {folder} holds {len(files)} images but the fit has {n} frames "
                         f"(source frames up to {int(src.max())}); give the folder of the frames the fit used")
    first = cv2.imread(str(files[mapping[0]]), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read image {files[mapping[0]]}")
    read_files = _image_reader([files[m] for m in mapping])
    return FrameSource(f"{folder} ({how})", (first.shape[1], first.shape[0]), read_files)


def _video_source(path: Path, rf: FinalRun) -> FrameSource:
    from preprocess.frames import decode_frames

    src = [int(s) for s in rf.source_frames]

    def read(idx: list[int]) -> Iterator[np.ndarray]:
        want = {src[i]: k for k, i in enumerate(idx)}
        got: dict[int, np.ndarray] = {}
        nxt = 0
        last = max(want) if want else -1
        for j, frame in enumerate(decode_frames(path)):
            if j in want:
                got[want[j]] = frame
                while nxt in got:
                    yield got.pop(nxt)
                    nxt += 1
            if j >= last:
                break
        if nxt < len(idx):
            raise InputError(f"{path} has fewer frames than the fit used (source frame {src[idx[nxt]]} is missing)")

    first = next(iter(read([0])))
    return FrameSource(f"{path} (source frame numbers)", (first.shape[1], first.shape[0]), read)


def _cache_source(root: Path, rf: FinalRun, strict: bool) -> FrameSource | None:
    """A preprocessing cache folder (``meta.json`` + ``frames/``) that holds the fitted frames."""
    try:
        meta = json.loads((root / "meta.json").read_text())
        cached = [int(f["source_frame"]) for f in meta["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        if strict:
            raise InputError(f"{root}/meta.json is missing or unreadable: not a preprocessing cache folder") from None
        return None
    files = [root / "frames" / f"{i:05d}.png" for i in range(len(cached))]
    ok = cached == [int(s) for s in rf.source_frames] and all(f.is_file() for f in files)
    if not ok:
        if strict:
            raise InputError(f"{root} does not hold the frames this fit used (its meta.json lists source frames "
                             f"{cached[:5]}..., the fit {list(rf.source_frames[:5])}...); pass the frames "
                             f"folder or video instead")
        return None
    import cv2

    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        return None
    return FrameSource(f"{root} (preprocessing cache)", (first.shape[1], first.shape[0]), _image_reader(files))


def _any_source(p: Path, rf: FinalRun, what: str) -> FrameSource:
    if p.is_dir():
        if (p / "meta.json").is_file() and (p / "frames").is_dir():
            return _cache_source(p, rf, strict=True)
        from preprocess.frames import list_images

        if not list_images(p) and (p / "frames").is_dir():
            return _folder_source(p / "frames", rf, what)
        return _folder_source(p, rf, what)
    if p.is_file():
        return _video_source(p, rf)
    raise InputError(f"{what}: no such file or folder")


def find_frames(rf: FinalRun, frames: str | None = None) -> FrameSource:
    """The overlay's input images: ``frames`` when given, else found through ``.hydra/``."""
    if frames:
        return _any_source(Path(frames).expanduser(), rf, f"video={frames}")
    hint = ("pass video=<the folder of input frames, the video, or the preprocessing cache folder "
            "<cache_dir>/<name>>, or leave the overlay out with outputs=views,turntable")
    cfg_path = rf.root / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path} is missing, so the input frames for the overlay cannot be found; {hint}")
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(cfg_path)
        video, name, cache_dir = cfg.get("video"), cfg.get("name"), cfg.get("cache_dir") or "cache"
    except Exception as e:  # a damaged yaml
        raise InputError(f"{cfg_path} is unreadable ({e}); {hint}") from None
    cwd = None
    try:
        cwd = OmegaConf.load(rf.root / ".hydra" / "hydra.yaml").hydra.runtime.cwd
    except Exception:
        pass
    bases = [Path(cwd)] if cwd else []
    bases += [Path.cwd()] + list(rf.root.resolve().parents)[:4]

    def candidates(x: str) -> list[Path]:
        q = Path(str(x)).expanduser()
        return [q] if q.is_absolute() else [b / q for b in bases]

    tried = []
    if video or name:
        from preprocess.frames import default_name

        vid = next((c for c in candidates(video) if c.exists()), None) if video else None
        seq = name or default_name(vid if vid is not None else video)
        for c in candidates(cache_dir):
            tried.append(str(c / seq))
            s = _cache_source(c / seq, rf, strict=False)
            if s is not None:
                return s
        if vid is not None:
            return _any_source(vid, rf, f"video={video} (from {cfg_path})")
        if video:
            tried.append(str(video))
    what = ", ".join(tried) if tried else f"nothing: {cfg_path} names no video"
    raise InputError(f"cannot find the input frames of this fit (tried {what}); {hint}")
