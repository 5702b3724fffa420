"""Checkpoints of a fit on disk: ``run_dir/ckpt/NAME.pt``; ``last.pt`` is always the newest
and ``prev.pt`` the one before it.

A checkpoint holds tensors and plain values only (dicts, lists, tuples, str, int, float,
bool, None), every number finite. The file is a header and a ``torch.save`` payload::

    b"LASRCKPT"  uint32 format version  32-byte BLAKE2b of the payload  uint64 payload bytes  payload

The payload is read with ``torch.load(weights_only=True)`` only after its length and
checksum match, so a truncated, overwritten or crafted file is refused before anything
in it is unpickled, and nothing in it can run code. :func:`load_latest` falls back from a
damaged ``last.pt`` to ``prev.pt``, naming the damaged file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import random
import struct
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import LasrError
from ..files import write_bytes_atomic

__all__ = ["FORMAT_VERSION", "CheckpointError", "NonFiniteState", "stage_checkpoint", "save_checkpoint", "load_checkpoint",
           "load_latest", "latest_checkpoint", "check_state", "capture_rng", "restore_global_rng", "restore_stage_rng"]

log = logging.getLogger("lasr")

MAGIC = b"LASRCKPT"
FORMAT_VERSION = 2
_HEADER = struct.Struct("<8sI32sQ")


class CheckpointError(LasrError):
    """A checkpoint file that cannot be used: missing, damaged, or not a lasr checkpoint."""


class NonFiniteState(ValueError):
    """A state that holds a NaN or an infinity (``key`` says where): never saved."""

    def __init__(self, key: str):
        super().__init__(f"{key} is not finite")
        self.key = key


def check_state(obj: Any, key: str = "state") -> None:
    """Raise ``TypeError`` when ``obj`` holds anything but tensors and plain values, and
    :class:`NonFiniteState` when a tensor or a float in it is NaN or infinite."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise NonFiniteState(key)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{key} has a key of type {type(k).__name__}")
            check_state(v, f"{key}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_state(v, f"{key}[{i}]")
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise NonFiniteState(key)
    elif not (obj is None or isinstance(obj, (str, int, bool))):
        raise TypeError(f"{key} is a {type(obj).__name__}: a checkpoint holds tensors and plain values only")


def _encode(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.blake2b(payload, digest_size=32).digest(), len(payload)) + payload


def stage_checkpoint(index: int, name: str, restart: int | None = None) -> str:
    """The file name of the state at the end of stage ``index`` (``name``), and of the
    ``restart``-th run of it when it runs in a restart window."""
    return f"stage{index:02d}_{name}" + (f"_r{restart}" if restart is not None else "") + ".pt"


def save_checkpoint(state: dict, ckpt_dir: Path, filename: str) -> Path:
    """Write ``state`` as ``ckpt_dir/filename`` and as ``last.pt`` (each atomically; the
    ``last.pt`` it replaces becomes ``prev.pt``); returns the path of ``last.pt``.

    Raises:
        NonFiniteState: ``state`` holds a NaN or an infinity (nothing is written).
        TypeError: ``state`` holds something else than tensors and plain values.
    """
    check_state(state)
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    blob = _encode(state)
    if filename != "last.pt":
        write_bytes_atomic(ckpt_dir / filename, blob)
    last, prev = ckpt_dir / "last.pt", ckpt_dir / "prev.pt"
    if last.exists():
        os.replace(last, prev)
    write_bytes_atomic(last, blob)
    return last


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The state saved in ``path``, its tensors on ``device``.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror or e})") from None
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise CheckpointError(f"{path} is not a lasr checkpoint (empty, truncated, written by an older lasr, or "
                              f"another file)")
    _, version, digest, size = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}; this lasr reads format {FORMAT_VERSION}")
    if len(payload) != size:
        raise CheckpointError(f"{path} is damaged: {len(payload)} of its {size} bytes are there (truncated)")
    if hashlib.blake2b(payload, digest_size=32).digest() != digest:
        raise CheckpointError(f"{path} is damaged: its content does not match its checksum")
    try:
        return torch.load(io.BytesIO(payload), map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything torch refuses is a bad file
        raise CheckpointError(f"{path} holds something else than tensors and plain values "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """``last.pt`` (or ``prev.pt`` when only it exists) in ``ckpt_dir``, else None."""
    for name in ("last.pt", "prev.pt"):
        if (Path(ckpt_dir) / name).is_file():
            return Path(ckpt_dir) / name
    return None


def load_latest(path: Path, device: torch.device | str = "cpu") -> tuple[dict, Path]:
    """``(state, file)`` of ``path``; when ``path`` is ``last.pt`` (or missing) and damaged,
    of ``prev.pt`` beside it, with a warning that names the damaged file. The damaged file
    is moved aside (``last.pt.damaged``), so that the next checkpoint does not rotate it
    into ``prev.pt`` in place of the good one.

    Raises:
        CheckpointError: no usable checkpoint, naming every file tried and why.
    """
    path = Path(path)
    tries = [path] + ([path.with_name("prev.pt")] if path.name == "last.pt" else [])
    problems = []
    for p in tries:
        if not p.exists():
            problems.append(f"{p} does not exist")
            continue
        try:
            state = load_checkpoint(p, device)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems:
            log.warning("%s; resuming from %s instead", "; ".join(problems), p)
            if path.exists() and p != path:
                try:
                    os.replace(path, path.with_name(path.name + ".damaged"))
                except OSError:
                    pass
        return state, p
    raise CheckpointError("no checkpoint to resume from: " + "; ".join(problems) +
                          ". Start the fit anew (resume=false, or another hydra.run.dir)")


# ---------------------------------------------------------------------------------------
# Random states


def capture_rng(batch_gen: Optional[torch.Generator], device: torch.device, kmeans_seed: int) -> dict:
    """The random states a fit draws from, as plain values and tensors: ``batches`` (the
    batch generator) and ``python`` (``random``) while stages run (``batch_gen`` given),
    else None (the next stages seed them from the seed); ``torch`` (the global generator:
    the coverage term's samples), ``cuda`` (on a GPU) and the k-means seed of new bones."""
    live = batch_gen is not None
    return {"batches": batch_gen.get_state() if live else None,
            "python": random.getstate() if live else None,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.device(device).type == "cuda" else None,
            "kmeans_seed": int(kmeans_seed)}


def restore_global_rng(rng: dict, device: torch.device) -> None:
    """Set torch's global generators (CPU, and CUDA on a GPU) to ``rng`` (:func:`capture_rng`)."""
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state_all([t.cpu() for t in rng["cuda"]])


def restore_stage_rng(rng: dict) -> torch.Generator:
    """Set Python's ``random`` to ``rng["python"]``; returns the batch generator of ``rng``."""
    gen = torch.Generator()
    gen.set_state(rng["batches"].cpu())
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    return gen
