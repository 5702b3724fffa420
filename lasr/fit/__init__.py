"""The fit, one job per module:

* :mod:`.fitter` -- the stage loop and its steps, hypotheses and restarts (:class:`Fitter`);
* :mod:`.objective` -- a batch -> named loss terms -> weighted total (where a term is added);
* :mod:`.schedule` -- stages, restart windows, root hypotheses, from the config;
* :mod:`.trajectory` -- the root's rotations over the clip, estimated from the flow;
* :mod:`.optimizer` -- parameter groups, learning-rate schedule, lazy steps;
* :mod:`.structure` -- remeshing and new bones between stages;
* :mod:`.metrics` -- the model rendered over the full frames: mask IoU, flow error;
* :mod:`.checkpoint` -- checkpoints on disk; :mod:`.logger`, :mod:`.panels` -- TensorBoard;
* :mod:`.export` -- the fitted model as the arrays of ``final/``;
* :mod:`.job` -- preprocess, fit, write ``final/`` (the whole job); :mod:`.api` -- ``lasr.fit(video, ...)``.

The package itself is callable: ``lasr.fit("cat.mp4")`` runs :func:`.api.fit`.
"""

from __future__ import annotations

import sys
import types

from ..data import full_intrinsics
from .api import FitResult, fit
from .fitter import Fitter, StageResult
from .schedule import hypothesis_rotations
from .trajectory import estimate_trajectory

__all__ = ["Fitter", "FitResult", "StageResult", "estimate_trajectory", "fit", "full_intrinsics",
           "hypothesis_rotations"]


class _CallableModule(types.ModuleType):
    """``lasr.fit`` is both this package and the function :func:`.api.fit`."""

    def __call__(self, *args, **kwargs):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
