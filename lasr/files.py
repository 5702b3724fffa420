"""Files and folders that appear whole or not at all, their checksums, and locks.

Shared by the preprocessing cache (:mod:`preprocess.layout`) and the fit (checkpoints,
``final/``): a reader sees the old content or the new, never a mix; a damaged file is
told from a good one by its checksum; two processes never write one place at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

__all__ = ["replace_dir", "write_bytes_atomic", "write_json_atomic", "file_digest", "bytes_digest",
           "is_read_only_error", "exclusive_lock", "LockUnavailable"]

log = logging.getLogger("lasr")

READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def replace_dir(complete: Path, final: Path, trash: Path | None = None) -> None:
    """Move the complete folder ``complete`` to ``final``; an older ``final`` is first
    moved aside (to ``trash``, default a hidden name beside it) and then deleted, so
    ``final`` is at every moment either the old folder or the new one, never a mix."""
    complete, final = Path(complete), Path(final)
    if final.exists():
        trash = Path(trash) if trash is not None else final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.old"
        os.replace(final, trash)
        os.replace(complete, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(complete, final)


def write_bytes_atomic(path: Path, data: bytes, tmp_dir: Optional[Path] = None) -> None:
    """Write ``data`` to ``path`` through a temporary file (in ``tmp_dir``, default beside
    ``path``; same file system) that is flushed to disk and then renamed over ``path``."""
    path = Path(path)
    tmp = Path(tmp_dir or path.parent) / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any, tmp_dir: Optional[Path] = None) -> None:
    """``obj`` as indented JSON in ``path``, replaced atomically (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, json.dumps(obj, indent=1, default=str).encode(), tmp_dir)


def bytes_digest(data: bytes) -> str:
    """A 32-hex-digit BLAKE2b checksum of ``data``."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_digest(path: Path) -> str:
    """The :func:`bytes_digest` of a file's content, read in chunks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_read_only_error(e: BaseException) -> bool:
    """Whether ``e`` says the file system or the folder cannot be written."""
    return isinstance(e, OSError) and e.errno in READ_ONLY_ERRNOS


class LockUnavailable(OSError):
    """The lock file cannot be created: the folder is read-only (``errno`` tells)."""


@contextmanager
def exclusive_lock(path: Path, what: str, timeout: Optional[float] = None) -> Iterator[None]:
    """Hold the inter-process lock ``path`` (a file, created when missing) while in the
    block; when another process holds it, say so once (``what`` names what it guards)
    and wait for it (at most ``timeout`` seconds when given, then ``TimeoutError``).

    A process that dies (even by ``kill -9``) releases its lock. Raises
    :class:`LockUnavailable` when the lock file cannot be created (read-only storage)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=0)
    try:
        try:
            lock.acquire()
        except Timeout:
            log.warning("another process is writing %s (lock %s): waiting for it to finish", what, path)
            try:
                lock.acquire(timeout=-1 if timeout is None else timeout)
            except Timeout:
                raise TimeoutError(f"{what} is still locked by another process after {timeout:g} s "
                                   f"(lock file {path})") from None
    except OSError as e:
        if is_read_only_error(e) and not isinstance(e, TimeoutError):
            raise LockUnavailable(e.errno, f"cannot create the lock file {path}: {e.strerror}") from None
        raise
    try:
        yield
    finally:
        lock.release()
