"""lasr.fit.schedule: restart windows, root hypotheses and turns, from the config alone."""

import numpy as np
import pytest
import torch

from lasr.errors import LasrError
from lasr.fit.schedule import Window, capped, hypothesis_rotations, restart_windows, stage_turn, turn_rotations
from lasr.geometry.rotations import axis_angle_to_matrix


def test_hypothesis_rotations_are_distinct_rotations():
    R = hypothesis_rotations(16)
    assert R.shape == (16, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    d = (R[:, None] - R[None]).flatten(2).norm(dim=-1) + torch.eye(16) * 10
    assert d.min() > 0.3  # no two hypotheses alike
    assert torch.equal(hypothesis_rotations(1), torch.eye(3)[None])


def test_turn_rotations_turn_at_a_constant_rate_about_the_vertical():
    R = turn_rotations(7, 90.0, dtype=torch.float64)
    assert torch.allclose(R[0], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(R[-1], torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64), atol=1e-12)
    steps = R[1:] @ R[:-1].transpose(1, 2)  # the same 15 degrees about y from each frame to the next
    assert torch.allclose(steps, axis_angle_to_matrix(torch.tensor([0.0, np.pi / 12, 0.0], dtype=torch.float64)
                                                      ).expand(6, 3, 3), atol=1e-12)
    assert torch.equal(turn_rotations(1, 90.0), torch.eye(3)[None])


def test_windows_from_the_config(compose_cfg):
    cfg = compose_cfg("stages=fast")
    stages = list(cfg.stages.items())
    assert restart_windows(stages) == [Window(0, 0, 3), Window(1, 2, 2)]
    assert [stage_turn(stages[0][1], r) for r in range(4)] == [0.0, 90.0, -90.0, 0.0]
    assert capped(500, None) == 500 and capped(500, 3) == 3


@pytest.mark.parametrize("bad, match", [
    (["stages.articulate.restarts=2", "stages.refine.restarts=2"], "overlaps the restarts of stages.refine"),
    (["stages.refine.restarts=0"], "restarts must be >= 1"),
    (["stages.rigid.restarts=1", "stages.rigid.turns=[0,90]"], "set stages.rigid.restarts to at least 2"),
    (["stages.rigid.restarts=3", "stages.rigid.turns=[0,90,-90,45]"], "set stages.rigid.restarts to at least 4"),
    (["stages.rigid.restart_until=null"], "overlaps the restarts of stages.articulate"),
    (["stages.rigid.turns=[]"], "turns is empty"),
    (["stages.articulate.restarts=1", "stages.rigid.restarts=2", "stages.rigid.restart_until=nope"], "is not a stage"),
])
def test_restarts_validation(bad, match, compose_cfg):
    cfg = compose_cfg("stages=fast", *bad)
    with pytest.raises(LasrError, match=match):
        restart_windows(list(cfg.stages.items()))
