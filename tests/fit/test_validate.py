"""lasr.fit.validate: every count and size is checked at start-up, before any work, with
errors that name the key and the fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lasr
from lasr.errors import ConfigError, LasrError
from lasr.fit import Fitter
from tests.readonly import read_only

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key, value, says", [
    ("stages.rigid.iters", -5, "must be >= 0 (optimizer steps"),
    ("stages.rigid.batch_size", 0, "must be >= 1 (frames per step)"),
    ("stages.rigid.hypotheses", 0, "must be >= 1 (root rotations"),
    ("stages.rigid.hypothesis_iters", 0, "must be >= 1 (steps of each hypothesis)"),
    ("stages.rigid.turn_scales", [1.0, -0.5], "factors of the estimated turn: at least one, each above 0"),
    ("stages.rigid.resolution", 0, "must be >= 8 (crop side"),
    ("stages.refine.num_faces", 3, "must be >= 20 (faces after remeshing), or null"),
    ("stages.refine.weights.flow", -1.0, "must be >= 0 (a loss weight"),
    ("model.init_width", 0.0, "must lie in [0.05, 1.0] (the initial shape's width over its height)"),
    ("stages.rigid.flow_from", 1.5, "must lie in [0, 1] (the fraction of the stage's steps before the flow trains)"),
    ("stages.rigid.flow_gradient", "pixels", "what the flow's gradient moves: points or surface"),
    ("preprocess.resolution", 0, "must be >= 16 (px of the longest side"),
    ("train.max_steps_per_stage", 0, "must be >= 1"),
    ("model.focal", 0.0, "must be > 0"),
    ("fps", 0.0, "must be > 0"),
])
def test_out_of_range_values_are_refused_before_any_work(key, value, says, tmp_path):
    with pytest.raises(ConfigError) as e:
        lasr.fit(tmp_path / "clip.mp4", stages="rigid", out=tmp_path / "run", cache_dir=str(tmp_path / "cache"),
                 **{key: value})
    assert str(e.value).startswith(f"{key}={value}: {says}")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "ckpt").exists()


def test_every_problem_is_listed_at_once_and_a_fitter_checks_its_stages(compose_cfg, tmp_path):
    cfg = compose_cfg("stages=rigid", "stages.rigid.iters=-5", "stages.rigid.batch_size=0",
                      "stages.refine.hypotheses=0")
    with pytest.raises(ConfigError) as e:  # before it reads its data
        Fitter(cfg, None, tmp_path, torch.device("cpu"))
    assert e.value.problems == ["stages.rigid.iters=-5: must be >= 0 (optimizer steps of the stage; 0 runs only "
                                "its structure change and hypotheses)",
                                "stages.rigid.batch_size=0: must be >= 1 (frames per step)",
                                "stages.refine.hypotheses=0: must be >= 1 (root rotations tried; 1 tries none)"]


def test_a_read_only_run_folder_is_a_clear_error(tmp_path):
    (tmp_path / "runs").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with read_only(tmp_path / "runs") as ro:
        with pytest.raises(LasrError, match=r"cannot write the run folder .*hydra\.run\.dir=.*out="):
            lasr.fit(tmp_path / "clip", stages="rigid", out=ro / "run", cache_dir=str(tmp_path / "cache"))
        r = subprocess.run([sys.executable, "-m", "lasr.optimize", f"video={tmp_path / 'clip'}",
                            f"hydra.run.dir={ro / 'run'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)  # Hydra makes the folder before the job: checked before it does
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: cannot write the run folder {ro / 'run'}" in r.stderr and "hydra.run.dir=" in r.stderr
    assert not (tmp_path / "cache").exists()
