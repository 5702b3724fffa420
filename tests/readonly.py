"""A folder made read-only for the test process, also when it runs as root."""

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for this process: by permissions, or for root (whom
    permissions do not stop) by a read-only bind mount; skips when neither works."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield folder
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    view = folder.with_name(folder.name + "_ro")
    view.mkdir()
    ok = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["umount", str(view)], capture_output=True)
        view.rmdir()
        pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()
