"""The rigid stage of ``stages=fast`` on a body that turns by half a revolution, rendered
by the project itself, started from the flow's trajectory. Trained on the flow with
per-coordinate Adam steps on the vertices (``flow_from=0``), the flow term's gradient
crumples the shape (measured: mask IoU 0.59, flow error 7 px at 64 px, turn error 27
degrees at worst); the schedule lets the flow score the hypotheses and their mirror images
only (``flow_from: 1``) and fits the shape and keeps the turn (0.94, 1.0 px, 7.9 degrees at
worst). ``experiments/rigid_turn.py`` prints the same for every turning profile."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lasr.fit import Fitter
from lasr.fit.objective import pair_direction

from .synth import turning_scene
from .test_trajectory import _errors


def rigid_turn_fit(angles_deg, run_dir: Path, overrides=(), size: int = 64, on_fitter=None) -> dict:
    """``stages=fast``'s rigid stage alone on :func:`turning_scene` (27° field of view,
    the true focal length given as the initial one). Returns the mask IoU over all frames,
    the flow's end-point error (crop px, every frame with its neighbour), the turn error
    against the truth at every frame (degrees) and the estimated trajectory's; ``on_fitter``
    is called with the finished fitter."""
    from hydra import compose, initialize_config_dir

    from lasr.config import conf_dir

    torch.manual_seed(0)
    data, R_true, focal = turning_scene(angles_deg, size=size, distance=9.0)
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["stages=fast", "~stages.articulate", "~stages.refine",
                                           "train.progress=false", f"model.focal={focal / size}", *overrides])
    fitter = Fitter(cfg, data, run_dir, torch.device("cpu"))
    fitter.fit()
    if on_fitter is not None:
        on_fitter(fitter)
    R = fitter.model.root_transforms()[0].detach().double().numpy()
    est = fitter.trajectory.double().cpu().numpy()
    stage = cfg.stages.rigid
    ids = torch.arange(data.num_frames)
    direction = pair_direction(ids, torch.ones_like(ids), data.num_frames)
    with torch.no_grad():
        _, diag = fitter.losses(stage, ids, direction, ("flow",))
    return {"iou": float(fitter.full_frame_iou().mean()), "flow_px": float(diag["flow_epe_px"]),
            "error": _errors(R @ R[0].T, R_true), "estimate_error": _errors(est @ est[0].T, R_true)}


@pytest.mark.slow
def test_rigid_stage_keeps_a_half_turn_and_fits_the_shape(tmp_path):
    fit = rigid_turn_fit(np.linspace(0, 180, 16), tmp_path)
    assert fit["iou"] > 0.9 and fit["flow_px"] < 1.5, fit
    assert fit["error"].max() < 10.0, fit["error"].round(1)


@pytest.mark.slow
def test_adam_steps_trained_on_the_flow_lose_the_shape(tmp_path):
    fit = rigid_turn_fit(np.linspace(0, 180, 16), tmp_path, ["stages.rigid.flow_from=0"])
    assert fit["iou"] < 0.8 and fit["flow_px"] > 3.0, fit  # why the schedule does not train on it


@pytest.mark.slow
def test_the_restarts_undo_an_estimate_that_overshoots(tmp_path, monkeypatch):
    """An estimated turn 1/0.7 times the true one (as the flow's is on the side-on camel):
    ``turn_scales=[1.0,0.7]`` (``restarts=6``) runs each of the 3 best hypotheses from it and
    from 0.7 of it, and the data terms keep one from 0.7 of it, which the rigid stage ends
    within 10 degrees of the truth; `fast` as it is (the overshoot alone) ends further off."""
    from lasr.fit import fitter as fitter_module
    from lasr.fit.trajectory import scale_turn

    real = fitter_module.estimate_trajectory

    def overshooting(data, focal, **kw):
        est = real(data, focal, **kw)
        est.rotations = scale_turn(torch.as_tensor(est.rotations), 1 / 0.7).numpy()
        return est

    monkeypatch.setattr(fitter_module, "estimate_trajectory", overshooting)
    angles = np.linspace(0, 90, 16)
    kept = {}
    fit = rigid_turn_fit(angles, tmp_path / "scaled", ["stages.rigid.turn_scales=[1.0,0.7]", "stages.rigid.restarts=6"],
                         on_fitter=lambda f: kept.update(f.restarts.kept[0]))
    assert kept["turn_scale"] == 0.7, kept
    assert fit["estimate_error"].max() > 30.0  # the overshoot: 129 degrees for 90
    assert fit["error"].max() < 10.0, fit["error"].round(1)
    alone = rigid_turn_fit(angles, tmp_path / "alone")
    assert alone["error"].max() > 15.0, alone["error"].round(1)
