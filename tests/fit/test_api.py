"""``lasr.fit(video, ...)``: the whole job from Python, checked against the schema."""

import numpy as np
import pytest
from omegaconf.errors import ConfigKeyError, ValidationError

import lasr
from lasr.fit.api import compose_config
from tests.preprocess.synth import write_folder

from .synth import ellipsoid_scene


def test_fit_from_python_returns_the_run_and_its_metrics(tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    clip = tmp_path / "clip 'quoted' é"  # any characters: no command-line lexer in the way
    write_folder(clip / "frames", (data.rgb.numpy() * 255).astype(np.uint8))
    write_folder(clip / "masks", data.mask.numpy() > 0.5)
    result = lasr.fit(clip / "frames", masks=clip / "masks", stages="rigid", out=tmp_path / "run",
                      cache_dir=str(tmp_path / "cache"), preprocess={"flow": "dis"}, fps=6.0,
                      train={"max_steps_per_stage": 2, "progress": False}, **{"stages.refine.iters": 1})
    assert result.run_dir == tmp_path / "run" and result.final == tmp_path / "run" / "final"
    assert len(result.metrics["frames"]) == 4 and 0 <= result.mask_iou <= 1
    assert (result.run_dir / ".hydra" / "config.yaml").is_file()  # the videos find the frames there
    assert result.metrics["seconds_per_stage"]["refine"] >= 0


def test_overrides_are_checked_by_the_schema():
    cfg = compose_config("fast", {"train": {"seed": 3}, "stages.refine.iters": 7}, overrides=("device=cpu",))
    assert cfg.train.seed == 3 and cfg.stages.refine.iters == 7 and cfg.device.value == "cpu"
    with pytest.raises(ConfigKeyError, match="trian"):
        compose_config("fast", {"trian": {"seed": 1}})
    with pytest.raises(ValidationError, match="seed"):
        compose_config("fast", {"train.seed": "one"})
