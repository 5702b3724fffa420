"""Frames from a video file (PyAV) or a folder of images, with start/stride/max_frames
and resizing to the processing resolution. Frames keep their index in the source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from lasr.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "SourceInfo",
    "list_images",
    "probe_source",
    "iter_frames",
    "decode_frames",
    "select_indices",
    "processing_size",
    "resize_frame",
    "file_fingerprint",
    "default_name",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class SourceInfo:
    """What the source holds: ``kind`` is ``"video"`` or ``"frames"``."""

    path: Path
    kind: str
    num_frames: int
    width: int
    height: int
    fps: Optional[float]
    fingerprint: str


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def file_fingerprint(paths: list[Path]) -> str:
    """Content hash of files (names included, so a renamed frame changes it)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def default_name(video: str | Path) -> str:
    """Sequence name from the input: ``cat.mp4`` -> ``cat``; ``clip/frames`` -> ``clip``."""
    p = Path(video).resolve()
    if p.is_dir():
        return p.parent.name if p.name.lower() in ("frames", "images", "jpegimages", "rgb") else p.name
    return p.stem


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"cannot read image {path}: the file is damaged or not an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _open_video(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise InputError(
            f"{path} is not a video that PyAV can decode ({type(e).__name__}: {e}). "
            f"Give a video file (mp4, mov, avi, webm, ...) or a folder of jpg/png frames."
        ) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream. Give a video file or a folder of frames.")
    return container


def decode_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield every decodable frame of a video as (H,W,3) uint8 RGB."""
    import av

    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError:
            # A damaged tail: keep what decoded; zero frames is caught by the caller.
            return
    finally:
        container.close()


def probe_source(video: str | Path | None) -> SourceInfo:
    """Check that ``video`` exists and holds frames; count them (decodes a video once)."""
    if video is None or str(video) == "":
        raise InputError("no input given: pass video=PATH (a video file or a folder of frames)")
    path = Path(video).expanduser()
    if not path.exists():
        raise InputError(f"video={video}: no such file or folder")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(
                f"video={video}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        h, w = _read_image(files[0]).shape[:2]
        return SourceInfo(path, "frames", len(files), w, h, None, file_fingerprint(files))
    container = _open_video(path)
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else None
    container.close()
    n, w, h = 0, 0, 0
    for frame in decode_frames(path):
        if n == 0:
            h, w = frame.shape[:2]
        n += 1
    if n == 0:
        raise InputError(f"video={video}: the file has a video stream but no decodable frames")
    return SourceInfo(path, "video", n, w, h, fps, file_fingerprint([path]))


def select_indices(num_source: int, start: int, stride: int, max_frames: Optional[int]) -> list[int]:
    """Source indices kept by ``start``, ``stride`` and ``max_frames``."""
    if stride < 1:
        raise InputError(f"preprocess.stride={stride}: must be >= 1")
    if start < 0 or start >= num_source:
        raise InputError(f"preprocess.start={start}: the source has {num_source} frames (0..{num_source - 1})")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"preprocess.max_frames={max_frames}: must be >= 1 (or null for all)")
    idx = list(range(start, num_source, stride))
    return idx[:max_frames] if max_frames is not None else idx


def processing_size(width: int, height: int, resolution: Optional[int]) -> tuple[int, int]:
    """(W, H) after scaling the longest side down to ``resolution`` (never up)."""
    if resolution is None or max(width, height) <= resolution:
        return width, height
    s = resolution / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def resize_frame(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(img, size, interpolation=interp)


def iter_frames(info: SourceInfo, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(source_index, frame)`` for the kept indices, frames as (H,W,3) uint8 RGB."""
    wanted = set(indices)
    if info.kind == "frames":
        files = list_images(info.path)
        for i in indices:
            img = _read_image(files[i])
            if img.shape[:2] != (info.height, info.width):
                raise InputError(
                    f"{files[i]} is {img.shape[1]}x{img.shape[0]} but the first frame is "
                    f"{info.width}x{info.height}: all frames must have one size"
                )
            yield i, img
        return
    last = max(indices)
    for i, frame in enumerate(decode_frames(info.path)):
        if i in wanted:
            yield i, frame
        if i >= last:
            break
