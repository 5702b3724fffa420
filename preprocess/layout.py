"""The one definition of a processed sequence on disk (the preprocessing cache).

::

    <cache_dir>/.<name>.lock     the sequence's inter-process lock (one writer at a time)
    <cache_dir>/<name>/
        meta.json            source, settings, per-part keys and file records, fingerprint (written last)
        frames/00000.png     RGB frames as used (after start/stride/max_frames/resize)
        masks/00000.png      uint8 0/255, same size as the frames
        flow/00000.npz       pair i -> i+1: ``fw`` (H,W,2) and ``bw`` (H,W,2) flow in px
                             (float16), ``conf_fw`` / ``conf_bw`` (H,W) in [0,1] (float16)
        .lasr-owned.json     only while a run works or after one was killed: its scratch folders

Frame files are numbered by processed index ``0..N-1``; ``meta["frames"][i]["source_frame"]``
is the index of that frame in the source video / folder. ``fw[y, x]`` maps pixel
``(x, y)`` of frame ``i`` to ``(x, y) + fw[y, x]`` in frame ``i+1``; ``bw[y, x]`` maps frame
``i+1`` back to frame ``i``. ``conf_fw`` lives on frame ``i``, ``conf_bw`` on frame ``i+1``.

Every part (frames, masks, flow) is written to a staging folder inside the run's own
scratch folder (:class:`Workspace`) and moved into place only when complete;
``meta.json`` records a part's key and each of its files' size and checksum
(``parts[part]["files"] = [[name, bytes, blake2b], ...]``) only after the move, and is
itself replaced atomically. A part whose key is missing or differs from the expected
one, or whose files do not match their record, is recomputed, so an interrupted run or
a damaged file never reads as complete. A run deletes only what it recorded as its own
(:func:`clean_leftovers`), never a file matched by its name.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import cv2
import numpy as np

from lasr.errors import InputError, LasrError
from lasr.files import file_digest, replace_dir, write_json_atomic

__all__ = [
    "LAYOUT_VERSION",
    "PARTS",
    "OWNED",
    "SequencePaths",
    "Sequence",
    "Workspace",
    "hash_json",
    "read_meta",
    "write_json_atomic",
    "staged_dir",
    "file_records",
    "part_problem",
    "incomplete_reason",
    "is_complete",
    "clean_leftovers",
    "claim_root",
    "load_sequence",
    "write_png",
    "read_png",
]

LAYOUT_VERSION = 1
PARTS = ("frames", "masks", "flow")
OWNED = ".lasr-owned.json"  # in the sequence folder: the scratch folders a run made (see Workspace)
_SUFFIX = {"frames": ".png", "masks": ".png", "flow": ".npz"}


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

    @property
    def lock(self) -> Path:
        """The sequence's lock file, beside its folder (it outlives the folder's content)."""
        return self.root.parent / f".{self.root.name}.lock"

    @property
    def owned(self) -> Path:
        return self.root / OWNED

    def part(self, name: str) -> Path:
        return self.root / name

    def frame(self, i: int) -> Path:
        return self.root / "frames" / f"{i:05d}.png"

    def mask(self, i: int) -> Path:
        return self.root / "masks" / f"{i:05d}.png"

    def flow(self, i: int) -> Path:
        return self.root / "flow" / f"{i:05d}.npz"

    def part_names(self, part: str, n: int) -> list[str]:
        """The file names of ``part`` for ``n`` frames (``n - 1`` flow pairs)."""
        count = n - 1 if part == "flow" else n
        return [f"{i:05d}{_SUFFIX[part]}" for i in range(count)]


def read_meta(paths: SequencePaths) -> dict:
    """The sequence's ``meta.json``, or ``{}`` when missing or unreadable."""
    try:
        meta = json.loads(paths.meta.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("layout_version") != LAYOUT_VERSION:
        return {}
    return meta


# ---------------------------------------------------------------------------------------
# What a run owns


def _read_owned(paths: SequencePaths) -> list[str]:
    try:
        names = json.loads(paths.owned.read_text()).get("scratch", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str)]


def _write_owned(paths: SequencePaths, names: list[str]) -> None:
    if names:
        write_json_atomic(paths.owned, {"scratch": sorted(set(names))})
    else:
        paths.owned.unlink(missing_ok=True)


def _plain_entry(paths: SequencePaths, name: str) -> Optional[Path]:
    """``root/name`` when ``name`` is a plain name inside the sequence folder, else None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).name != name:
        return None
    return paths.root / name


class Workspace:
    """A run's own scratch folder inside the sequence folder (staging folders, the old
    parts on their way out, temporary files), made on first use. Its name is recorded in
    ``.lasr-owned.json`` before it exists and dropped after it is gone, so that
    :func:`clean_leftovers` after a killed run removes exactly it. Use under the
    sequence's lock; :meth:`close` removes it."""

    def __init__(self, paths: SequencePaths):
        self.paths = paths
        self._dir: Optional[Path] = None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            name = f".work-{uuid.uuid4().hex[:12]}"
            _write_owned(self.paths, _read_owned(self.paths) + [name])
            self._dir = self.paths.root / name
            self._dir.mkdir()
        return self._dir

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            _write_owned(self.paths, [n for n in _read_owned(self.paths) if n != self._dir.name])
            self._dir = None


def clean_leftovers(paths: SequencePaths) -> list[str]:
    """Remove the scratch folders that killed runs recorded in ``.lasr-owned.json``, and
    nothing else; returns their names. Call it only under the sequence's lock (another
    run's scratch folder is in use while it holds the lock)."""
    names = _read_owned(paths)
    for name in names:
        p = _plain_entry(paths, name)
        if p is None:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
    if names or paths.owned.exists():
        _write_owned(paths, [])
    return names


def claim_root(paths: SequencePaths) -> None:
    """Make the sequence folder, or check that an existing one is a cache (it holds
    ``meta.json`` or a run's record): preprocessing never writes into another folder."""
    root = paths.root
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} exists and is not a folder: give another name= or cache_dir=")
    if not root.exists():
        root.mkdir(parents=True)
        return
    if paths.meta.exists() or paths.owned.exists() or not any(root.iterdir()):
        return
    raise InputError(f"{root} exists and is not a preprocessing cache (it has no meta.json): preprocessing writes "
                     f"only into its own folders. Give another name= or cache_dir=")


@contextmanager
def staged_dir(paths: SequencePaths, part: str, work: Workspace) -> Iterator[Path]:
    """Yield an empty staging folder (in ``work``); on success it replaces ``root/part``.

    On an exception the staging folder is removed and ``root/part`` is left as it was.
    """
    tmp = work.dir / f"staging-{part}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, paths.part(part), work.dir / f"trash-{part}")


# ---------------------------------------------------------------------------------------
# Parts and their records


def file_records(folder: Path, names: list[str]) -> list[list]:
    """``[[name, bytes, checksum], ...]`` of the files ``names`` in ``folder``."""
    return [[n, (folder / n).stat().st_size, file_digest(folder / n)] for n in names]


def part_problem(paths: SequencePaths, part: str, n: int, rec: Optional[dict], checksums: bool = True
                 ) -> Optional[str]:
    """Why the files of ``part`` (for ``n`` frames) do not match their record in
    ``meta.json`` (``rec = meta["parts"][part]``), or None when they do. Sizes are always
    compared; checksums when ``checksums``."""
    if not rec:
        return f"{part} is not recorded in meta.json"
    files = rec.get("files")
    names = paths.part_names(part, n)
    if not isinstance(files, list) or [f[0] if isinstance(f, list) and f else None for f in files] != names:
        return f"meta.json records no file sizes and checksums of {part} (an older or damaged cache)"
    folder = paths.part(part)
    for name, size, digest in files:
        p = folder / name
        try:
            actual = p.stat().st_size
        except OSError:
            return f"{part}/{name} is missing"
        if actual != size:
            return f"{part}/{name} is {actual} bytes, meta.json records {size}"
        if checksums and file_digest(p) != digest:
            return f"{part}/{name} does not match its checksum in meta.json"
    return None


def incomplete_reason(paths: SequencePaths, meta: dict, keys: dict[str, str] | None = None,
                      checksums: bool = False) -> Optional[str]:
    """Why the sequence is not complete (with ``keys`` when given), or None when every
    part is recorded and its files match their record."""
    n = len(meta.get("frames", []))
    if n < 2:
        return "no meta.json with two or more frames"
    for part in PARTS:
        rec = meta.get("parts", {}).get(part)
        if rec and keys is not None and rec.get("key") != keys.get(part):
            return f"{part} was made with other settings"
        problem = part_problem(paths, part, n, rec, checksums)
        if problem:
            return problem
    return None


def is_complete(paths: SequencePaths, meta: dict, keys: dict[str, str] | None = None) -> bool:
    """True when every part is recorded (with ``keys`` when given) and its files exist
    with their recorded sizes."""
    return incomplete_reason(paths, meta, keys) is None


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


_DAMAGED = "run the preprocessing again (it recomputes a damaged part) or give force=true"


def _read_flow(path: Path, hw: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """``fw, bw, conf_fw, conf_bw`` of one flow file as float32, checked against the size ``hw``."""
    try:
        with np.load(path) as z:
            out = tuple(z[k].astype(np.float32) for k in ("fw", "bw", "conf_fw", "conf_bw"))
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as e:
        raise LasrError(f"{path} is damaged ({type(e).__name__}: {e}): {_DAMAGED}") from None
    if out[0].shape != (*hw, 2) or out[1].shape != (*hw, 2) or out[2].shape != hw or out[3].shape != hw:
        raise LasrError(f"{path} holds flow of {out[0].shape[:2]} px, not the frames' {hw}: {_DAMAGED}")
    return out


def load_sequence(root: str | Path) -> Sequence:
    """Read a complete sequence folder written by ``python -m preprocess``.

    Raises:
        LasrError: naming what is missing or damaged and how to repair it.
    """
    paths = SequencePaths(Path(root))
    meta = read_meta(paths)
    reason = incomplete_reason(paths, meta)
    if reason:
        raise LasrError(
            f"{paths.root} is not a complete preprocessed sequence ({reason}); "
            f"run `python -m preprocess video=...` first"
        )
    n = len(meta["frames"])
    hw = (int(meta["size"]["height"]), int(meta["size"]["width"]))
    frames = np.stack([read_png(paths.frame(i)) for i in range(n)])
    masks = np.stack([read_png(paths.mask(i), gray=True) > 127 for i in range(n)])
    for what, arr in (("frames", frames), ("masks", masks)):
        if arr.shape[1:3] != hw:
            raise LasrError(f"{paths.root / what} holds images of {arr.shape[1:3]} px but meta.json says {hw}: "
                            f"{_DAMAGED}")
    fw, bw, cfw, cbw = zip(*(_read_flow(paths.flow(i), hw) for i in range(n - 1)))
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
