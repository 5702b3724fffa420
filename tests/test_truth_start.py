"""experiments/truth_start.py: the articulated stages started from a clip's truth."""

import json

import numpy as np
import pytest
import torch

from lasr.io.obj import write_obj
from lasr.model.skinning import weighted_kabsch
from tests.experiments import experiment
from tests.fit.synth import ellipsoid_scene


def _clip(tmp_path):
    """The turning ellipsoid, rendered by the project, written as a clip with 3D truth: the
    world frame is frame 0's camera frame."""
    data, verts, F, K = ellipsoid_scene(T=5, size=48)
    (tmp_path / "gt" / "meshes").mkdir(parents=True)
    Rs, ts = weighted_kabsch(verts[0], verts, torch.ones(verts.shape[1]))  # frame 0 -> frame t, rigid
    frames = []
    for t, (v, R, tr) in enumerate(zip(verts, Rs, ts)):
        write_obj(tmp_path / "gt" / "meshes" / f"{t:05d}.obj", v.numpy(), F.numpy())
        M = torch.eye(4)
        M[:3, :3], M[:3, 3] = R, tr
        frames.append({"frame": t, "fx": float(K[0]), "fy": float(K[1]), "cx": float(K[2]), "cy": float(K[3]),
                       "width": 48, "height": 48, "world_to_camera": M.tolist()})
    (tmp_path / "gt" / "cameras.json").write_text(json.dumps({"frames": frames}))
    return data, verts


def test_the_start_is_the_truth_and_the_stages_run_from_it(tmp_path):
    ts = experiment("truth_start")
    data, verts = _clip(tmp_path / "clip")
    small = ["stages.refine.resolution=48", "train.max_steps_per_stage=3"]
    posed = ts.run(data, tmp_path / "clip", tmp_path / "posed", True, small, log=lambda s: None)
    radius = float(verts[0].std(0).norm())
    assert posed["rms_start"] < 1e-3 * radius  # a rigid turn: the root holds it exactly
    s = posed["start"]
    assert s["chamfer_pct"] < 0.5 and s["f2"] > 0.99 and s["mask_iou"] > 0.9 and s["folds"] == 0.0, s
    assert np.isfinite(posed["end"]["data_terms"]) and posed["end"]["f2"] > 0.9  # 3 steps keep it
    rest = ts.run(data, tmp_path / "clip", tmp_path / "rest", False, [*small, "stages.articulate.resolution=48"],
                  log=lambda s: None)
    assert rest["rms_start"] < 1e-3 * radius and abs(rest["start"]["data_terms"] - s["data_terms"]) < 1e-6


def test_the_data_terms_are_lowest_at_the_truth(tmp_path):
    """The score the script prints: the true start against the same start grown by 10 %
    about its centre, turned by 10 degrees about it, or with its focal length 10 % longer."""
    ts = experiment("truth_start")
    data, _ = _clip(tmp_path / "clip")
    fitter = ts.make_fitter(data, tmp_path / "run", True, ["stages.refine.resolution=48"])
    ts.start_from_truth(fitter, *ts.true_clip(tmp_path / "clip", data.source_frames), True)
    stage = fitter.stages[-1][1]
    truth = fitter.objective(stage)
    m = fitter.model
    state = {k: v.detach().clone() for k, v in m.state_dict().items()}
    worse = []
    for change in ("grow", "turn", "focal"):
        with torch.no_grad():
            if change == "grow":
                c = m.rest_verts.mean(0)
                m.rest_verts.copy_(c + 1.1 * (m.rest_verts - c))
            elif change == "turn":
                from lasr.geometry.rotations import axis_angle_to_matrix
                R = axis_angle_to_matrix(torch.tensor([0.0, float(np.radians(10.0)), 0.0])).to(m.rest_verts.dtype)
                c = m.rest_verts.mean(0)
                m.rest_verts.copy_(c + (m.rest_verts - c) @ R.T)
            else:
                m.log_focal.add_(np.log(1.1))
        worse.append(fitter.objective(stage))
        m.load_state_dict(state)
    assert min(worse) > truth * 1.2, (truth, worse)


def test_a_finished_fit_is_scored_as_the_fitter_that_made_it(tmp_path):
    """``--run``: the fit's last checkpoint, loaded into a fitter of its own stages, scores
    what the fitter that wrote it scores."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from lasr.config import conf_dir
    from lasr.fit import Fitter

    ts = experiment("truth_start")
    data, _ = _clip(tmp_path / "clip")
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["stages=fast", "train.max_steps_per_stage=2", "train.progress=false",
                                           "stages.rigid.hypotheses=1", "stages.rigid.restarts=1",
                                           "stages.articulate.restarts=1", "stages.articulate.resolution=32",
                                           "stages.refine.resolution=32", "stages.articulate.num_faces=null",
                                           "stages.refine.num_faces=null"])
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    fitter = Fitter(cfg, data, run, torch.device("cpu"))
    fitter.fit()
    fitter.save_checkpoint("last.pt")
    mine = ts.scores(fitter, tmp_path / "clip", None)
    # the score derived from the terms' means is the one the fit chooses its runs by
    assert abs(mine["data_terms"] - fitter.objective(fitter.stages[-1][1])) <= 1e-6 * mine["data_terms"]
    again = ts.score_fit(run, data, tmp_path / "clip")
    assert set(mine) >= {"data_terms", "silhouette", "soft_iou", "flow", "flow_epe_px", "chamfer_pct", "f2"}
    for k in mine:
        assert abs(mine[k] - again[k]) <= 1e-6 * max(1.0, abs(mine[k])), (k, mine[k], again[k])


def test_the_bone_motion_spectrum_counts_the_motions_mixed():
    ts = experiment("truth_start")
    T, B = 10, 3
    t = torch.arange(T, dtype=torch.float64)
    G = torch.eye(4, dtype=torch.float64).repeat(T, B, 1, 1)
    # translations only: bone b moves along u_b by sin(t) and along v_b by cos(t): two motions
    u, v = torch.randn(B, 3, dtype=torch.float64), torch.randn(B, 3, dtype=torch.float64)
    G[..., :3, 3] = torch.sin(t)[:, None, None] * u + torch.cos(t)[:, None, None] * v + 5.0  # + a rest offset
    s = ts.motion_spectrum(G, 2.0, modes=(1, 2, 4))
    M = (G[..., :3, 3] / 2.0).reshape(T, -1)
    M = M - M.mean(0)  # the oracle: the centred matrix's singular values
    e = torch.linalg.svdvals(M).square()
    assert s["energy"] == pytest.approx(float(M.square().sum()) / (T * B), rel=1e-9)
    assert s["beyond"][1] == pytest.approx(float(e[1:].sum() / e.sum()), rel=1e-9) and s["beyond"][1] > 0.1
    assert s["beyond"][2] == pytest.approx(0.0, abs=1e-12) and s["beyond"][4] == pytest.approx(0.0, abs=1e-12)
    # one bone jittering on its own is a third motion
    G[::2, 0, 2, 3] += 0.5
    assert ts.motion_spectrum(G, 2.0, modes=(2,))["beyond"][2] > 1e-3


def test_the_printed_line_names_only_the_terms_the_stage_weighs():
    ts = experiment("truth_start")
    s = {"data_terms": 0.3, "silhouette": 0.01, "soft_iou": 0.09, "mask_iou": 0.9, "chamfer_pct": 1.5, "f2": 0.7,
         "folds": 0.004}
    line = ts._line(s)  # a stage with the flow's weight 0 (stages.refine.weights.flow=0): no flow term
    assert "soft IoU 0.09000" in line and "flow" not in line and "bone motion" not in line
    line = ts._line({**s, "flow": 0.005, "flow_epe_px": 0.5, "motion_energy": 0.2, "motion_beyond_4": 0.02})
    assert "flow 0.00500: 0.50 px" in line and "bone motion 0.200" in line and "4 motions 2.0 %" in line
