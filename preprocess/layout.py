"""The one definition of a processed sequence on disk (the preprocessing cache).

::

    <cache_dir>/<name>/
        meta.json            source, settings, per-part keys, fingerprint (written last)
        frames/00000.png     RGB frames as used (after start/stride/max_frames/resize)
        masks/00000.png      uint8 0/255, same size as the frames
        flow/00000.npz       pair i -> i+1: ``fw`` (H,W,2) and ``bw`` (H,W,2) flow in px
                             (float16), ``conf_fw`` / ``conf_bw`` (H,W) in [0,1] (float16)

Frame files are numbered by processed index ``0..N-1``; ``meta["frames"][i]["source_frame"]``
is the index of that frame in the source video / folder. ``fw[y, x]`` maps pixel
``(x, y)`` of frame ``i`` to ``(x, y) + fw[y, x]`` in frame ``i+1``; ``bw[y, x]`` maps frame
``i+1`` back to frame ``i``. ``conf_fw`` lives on frame ``i``, ``conf_bw`` on frame ``i+1``.

Every part (frames, masks, flow) is written to a hidden staging folder and moved into
place only when complete; ``meta.json`` records a part's key only after the move, and
is itself replaced atomically. A part whose key in ``meta.json`` is missing or differs
from the expected one is recomputed, so an interrupted run never reads as complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from lasr.errors import LasrError
from lasr.files import replace_dir

__all__ = [
    "LAYOUT_VERSION",
    "PARTS",
    "SequencePaths",
    "Sequence",
    "hash_json",
    "read_meta",
    "write_json_atomic",
    "staged_dir",
    "is_complete",
    "part_files_present",
    "clean_leftovers",
    "load_sequence",
    "write_png",
    "read_png",
]

LAYOUT_VERSION = 1
PARTS = ("frames", "masks", "flow")


def hash_json(obj: Any) -> str:
    """A short, stable fingerprint of a JSON-able object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass(frozen=True)
class SequencePaths:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    def part(self, name: str) -> Path:
        return self.root / name

    def frame(self, i: int) -> Path:
        return self.root / "frames" / f"{i:05d}.png"

    def mask(self, i: int) -> Path:
        return self.root / "masks" / f"{i:05d}.png"

    def flow(self, i: int) -> Path:
        return self.root / "flow" / f"{i:05d}.npz"


def read_meta(paths: SequencePaths) -> dict:
    """The sequence's ``meta.json``, or ``{}`` when missing or unreadable."""
    try:
        meta = json.loads(paths.meta.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("layout_version") != LAYOUT_VERSION:
        return {}
    return meta


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def staged_dir(paths: SequencePaths, part: str) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``root/part``.

    On an exception the staging folder is removed and ``root/part`` is left as it was.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.root / f".staging-{part}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, paths.part(part), paths.root / f".trash-{part}-{uuid.uuid4().hex[:8]}")


def clean_leftovers(paths: SequencePaths) -> None:
    """Remove staging / trash folders an interrupted run left behind."""
    if paths.root.is_dir():
        for p in paths.root.iterdir():
            if p.name.startswith((".staging-", ".trash-")) or p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def part_files_present(paths: SequencePaths, part: str, n: int) -> bool:
    if part == "frames":
        files = [paths.frame(i) for i in range(n)]
    elif part == "masks":
        files = [paths.mask(i) for i in range(n)]
    else:
        files = [paths.flow(i) for i in range(n - 1)]
    return all(f.is_file() for f in files)


def is_complete(paths: SequencePaths, meta: dict, keys: dict[str, str] | None = None) -> bool:
    """True when every part is recorded (with ``keys`` when given) and its files exist."""
    parts = meta.get("parts", {})
    n = len(meta.get("frames", []))
    if n < 2:
        return False
    for part in PARTS:
        rec = parts.get(part)
        if not rec or (keys is not None and rec.get("key") != keys.get(part)):
            return False
        if not part_files_present(paths, part, n):
            return False
    return True


def write_png(path: Path, img: np.ndarray) -> None:
    """Write an RGB (H,W,3) or gray (H,W) uint8 image."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def read_png(path: Path, gray: bool = False) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise LasrError(f"cannot read {path}: the cache is damaged; rerun with force=true")
    return img if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class Sequence:
    """A processed sequence in memory.

    Attributes:
        frames: (N,H,W,3) uint8 RGB.
        masks: (N,H,W) bool, True = object.
        flow_fw: (N-1,H,W,2) float32, pixel displacement frame i -> i+1 (x, y).
        flow_bw: (N-1,H,W,2) float32, frame i+1 -> i, on the pixels of frame i+1.
        conf_fw: (N-1,H,W) float32 in [0,1], reliability of ``flow_fw``.
        conf_bw: (N-1,H,W) float32 in [0,1], reliability of ``flow_bw``.
        source_frames: (N,) index of each frame in the source.
        source_size: (W, H) of the source frames as the user gave them.
        meta: the parsed ``meta.json``.
    """

    frames: np.ndarray
    masks: np.ndarray
    flow_fw: np.ndarray
    flow_bw: np.ndarray
    conf_fw: np.ndarray
    conf_bw: np.ndarray
    source_frames: np.ndarray
    source_size: tuple[int, int]
    meta: dict = field(repr=False)

    def __len__(self) -> int:
        return len(self.frames)


def load_sequence(root: str | Path) -> Sequence:
    """Read a complete sequence folder written by ``python -m preprocess``."""
    paths = SequencePaths(Path(root))
    meta = read_meta(paths)
    if not is_complete(paths, meta):
        raise LasrError(
            f"{paths.root} is not a complete preprocessed sequence; "
            f"run `python -m preprocess video=...` first"
        )
    n = len(meta["frames"])
    frames = np.stack([read_png(paths.frame(i)) for i in range(n)])
    masks = np.stack([read_png(paths.mask(i), gray=True) > 127 for i in range(n)])
    fw, bw, cfw, cbw = [], [], [], []
    for i in range(n - 1):
        with np.load(paths.flow(i)) as z:
            fw.append(z["fw"].astype(np.float32))
            bw.append(z["bw"].astype(np.float32))
            cfw.append(z["conf_fw"].astype(np.float32))
            cbw.append(z["conf_bw"].astype(np.float32))
    return Sequence(
        frames=frames,
        masks=masks,
        flow_fw=np.stack(fw),
        flow_bw=np.stack(bw),
        conf_fw=np.stack(cfw),
        conf_bw=np.stack(cbw),
        source_frames=np.array([f["source_frame"] for f in meta["frames"]], dtype=np.int64),
        source_size=(int(meta["source"]["width"]), int(meta["source"]["height"])),
        meta=meta,
    )
