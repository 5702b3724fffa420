"""Folders and files that appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

__all__ = ["replace_dir"]


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
