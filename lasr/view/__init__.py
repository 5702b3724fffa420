"""``python -m lasr.view run=<run folder>``: a finished fit in the browser (viser).

:func:`serve` starts a :class:`Viewer` of a run and returns it (``viewer.url``,
``viewer.stop()``); :func:`load_view_data` reads what it shows (:mod:`lasr.view.data`).
The names load on first use, so that ``python -m lasr.view --help`` imports neither torch
nor viser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["serve", "Viewer", "ViewData", "load_view_data"]


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8080, video: Optional[str] = None,
          verbose: bool = False):
    """Start a :class:`Viewer` of ``run`` (a fit's output folder or its ``final/``) on
    ``host:port`` and return it; ``video``: the input frames when they cannot be found through
    the run's ``.hydra`` (shown without them otherwise)."""
    from .app import Viewer
    from .data import load_view_data

    return Viewer(load_view_data(run, video), host=host, port=port, verbose=verbose)


def __getattr__(name: str):
    if name == "Viewer":
        from .app import Viewer

        return Viewer
    if name in ("ViewData", "load_view_data"):
        from . import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
