"""Preprocessing: video -> frames, masks, forward/backward optical flow (+confidence) -> cache."""

from .layout import Sequence, SequencePaths, load_sequence
from .pipeline import PreprocessResult, run, sequence_dir

__all__ = ["Sequence", "SequencePaths", "load_sequence", "PreprocessResult", "run", "sequence_dir"]
