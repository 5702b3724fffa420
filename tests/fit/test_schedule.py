"""lasr.fit.schedule: restart windows and root hypotheses, from the config alone."""

import pytest
import torch

from lasr.errors import LasrError
from lasr.fit.schedule import Restarts, Window, capped, hypothesis_rotations, restart_windows


def test_hypothesis_rotations_are_distinct_rotations():
    R = hypothesis_rotations(16)
    assert R.shape == (16, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    d = (R[:, None] - R[None]).flatten(2).norm(dim=-1) + torch.eye(16) * 10
    assert d.min() > 0.3  # no two hypotheses alike
    assert torch.equal(hypothesis_rotations(1), torch.eye(3)[None])


def test_windows_from_the_config(compose_cfg):
    cfg = compose_cfg("stages=fast")
    assert restart_windows(list(cfg.stages.items())) == [Window(0, 0, 3), Window(1, 2, 2)]
    cfg = compose_cfg("stages=fast", "stages.rigid.turn_scales=[1.0,0.7]", "stages.rigid.restarts=6")
    assert restart_windows(list(cfg.stages.items())) == [Window(0, 0, 6, (1.0, 0.7)), Window(1, 2, 2)]
    cfg = compose_cfg("stages=fast", "stages.rigid.restarts=1")
    assert restart_windows(list(cfg.stages.items())) == [Window(1, 2, 2)]
    assert capped(500, None) == 500 and capped(500, 3) == 3


@pytest.mark.parametrize("bad, match", [
    (["stages.articulate.restarts=2", "stages.refine.restarts=2"], "overlaps the restarts of stages.refine"),
    (["stages.refine.restarts=0"], "restarts must be >= 1"),
    (["stages.rigid.restart_until=articulate"], "overlaps the restarts of stages.articulate"),
    (["stages.articulate.restarts=1", "stages.rigid.restarts=2", "stages.rigid.restart_until=nope"], "is not a stage"),
    (["stages.rigid.turn_scales=[1.0,0.7]"],
     r"turn_scales=\[1.0, 0.7\] .*: set stages.rigid.restarts to a multiple of 2 \(now 3\), or turn_scales=\[1.0\]"),
    (["stages.rigid.turn_scales=[1.0,0.7]", "stages.rigid.restarts=4", "stages.rigid.trajectory=false"],
     r"set stages.rigid.trajectory=true, or"),
])
def test_restarts_validation(bad, match, compose_cfg):
    cfg = compose_cfg("stages=fast", *bad)
    with pytest.raises(LasrError, match=match):
        restart_windows(list(cfg.stages.items()))


def test_later_restarts_of_a_hypothesis_stage_try_the_next_best_hypothesis():
    rs = Restarts([Window(1, 1, 3)])
    assert rs.hypotheses_to_try(1, 4) == [0, 1, 2, 3]  # the first run tries them all
    rs.rank_hypotheses(1, [0.2, 0.4, 0.1, 0.3])  # ... and ranks them
    assert rs.ranking == [2, 0, 3, 1]
    assert rs.hypotheses_to_try(1, 4) == [0, 1, 2, 3]
    rs.restart = 1
    assert rs.hypotheses_to_try(1, 4) == [0]  # the second best
    rs.restart = 2
    assert rs.hypotheses_to_try(1, 4) == [3]
    assert rs.hypotheses_to_try(2, 4) == [0, 1, 2, 3]  # a stage the window does not open tries all
    again = Restarts([Window(1, 1, 3)])
    again.load(rs.state())
    assert again.ranking == [2, 0, 3, 1] and again.hypotheses_to_try(1, 4) == [3]  # a resume keeps it


def test_restarts_with_turn_scales_run_each_hypothesis_with_every_scale():
    rs = Restarts([Window(0, 0, 6, (1.0, 0.7))])
    scales = [1.0, 0.7]
    rs.rank_hypotheses(0, [0.3, 0.1, 0.2, 0.4])  # ranking [1, 2, 0, 3]
    runs = []
    for r in range(6):
        rs.restart = r
        runs.append((rs.hypotheses_to_try(0, 4) if r else "all", rs.turn_scale(0, scales)))
    assert runs == [("all", 1.0), ([1], 0.7), ([2], 1.0), ([2], 0.7), ([0], 1.0), ([0], 0.7)]
    assert rs.turn_scale(1, scales) == 1.0  # a stage the window does not open: the first factor


def test_the_kept_restart_records_its_turn_scale():
    rs = Restarts([Window(0, 0, 4, (1.0, 0.7))])
    rs.restart, rs.best = 3, (0.5, {"restart": 3}, 0.8)
    assert rs.turn_label() == ", turn x0.7" and rs.turn_label(0) == ", turn x1"
    assert rs.keep_best("rigid") == {"restart": 3}
    assert rs.kept == [{"stage": "rigid", "restart": 4, "of": 4, "score": 0.5, "mask_iou": 0.8, "turn_scale": 0.7}]
    one = Restarts([Window(0, 0, 3)])
    one.best = (0.5, {"restart": 1}, 0.8)
    one.keep_best("rigid")
    assert "turn_scale" not in one.kept[0] and one.turn_label() == ""
