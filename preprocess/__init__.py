"""Preprocessing: video -> frames, masks, forward/backward optical flow (+confidence) -> cache.

The names load on first use (``python -m preprocess --help`` needs no torch).
"""

__all__ = ["Sequence", "SequencePaths", "load_sequence", "PreprocessResult", "run", "sequence_dir"]

_HOME = {"Sequence": "layout", "SequencePaths": "layout", "load_sequence": "layout",
         "PreprocessResult": "pipeline", "run": "pipeline", "sequence_dir": "pipeline"}


def __getattr__(name: str):
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
