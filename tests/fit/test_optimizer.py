"""lasr.fit.optimizer: parameter groups from the model's declaration, the learning-rate
schedule, and lazy steps that leave the frames out of a batch where they are."""

import math

import pytest
import torch

from lasr.errors import LasrError
from lasr.fit.optimizer import build_optimizer, cosine_factor, lazy_step, set_lr_factor
from lasr.geometry.mesh import icosphere
from lasr.model.articulated import PARAM_GROUPS, ArticulatedModel


def _model(T=5, per_frame_focal=False):
    V, F = icosphere(1)
    return ArticulatedModel(V, F, T, num_bones=3, per_frame_focal=per_frame_focal)


def test_model_declares_every_group_and_every_parameter_once():
    m = _model()
    groups = m.param_groups()
    assert list(groups) == list(PARAM_GROUPS)
    params = [id(p) for g in groups.values() for p in g.values()]
    assert len(params) == len(set(params)) == len(list(m.parameters()))


def test_groups_rates_and_the_rigid_stage(compose_cfg):
    cfg = compose_cfg("stages=fast")
    m = _model()
    opt = build_optimizer(m, cfg.stages.articulate, cfg.model.lr_scale, depth_scale=4.0)
    names = [g["name"] for g in opt.param_groups]
    assert names == ["shape", "color", "root_rot", "root_trans", "bones", "motion", "focal"]
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    base = cfg.stages.articulate.lr
    assert lr["root_trans"] == pytest.approx(4.0 * lr["root_rot"]) and lr["bones"] == pytest.approx(0.5 * base)
    assert opt.param_groups[names.index("motion")]["params"] == [m.bone_rot, m.bone_trans]
    rigid = build_optimizer(m, cfg.stages.rigid, cfg.model.lr_scale, 1.0)
    assert "motion" not in [g["name"] for g in rigid.param_groups]  # rigid: no articulation
    cfg.stages.rigid.train = ["shape", "wings"]
    with pytest.raises(LasrError, match="unknown group 'wings'"):
        build_optimizer(m, cfg.stages.rigid, cfg.model.lr_scale, 1.0)


def test_cosine_factor_and_set_lr():
    assert cosine_factor(0, 100, 0.1) == 1.0 and cosine_factor(100, 100, 0.1) == pytest.approx(0.1)
    assert cosine_factor(50, 100, 0.1) == pytest.approx(0.55) and cosine_factor(500, 100, 0.1) == pytest.approx(0.1)
    assert cosine_factor(3, 100, 1.0) == 1.0
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.Adam([{"params": [p], "lr": 0.2}])
    set_lr_factor(opt, 0.5)
    set_lr_factor(opt, 0.25)  # always relative to the base rate
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert math.isclose(opt.param_groups[0]["base_lr"], 0.2)


@pytest.mark.parametrize("per_frame_focal", [False, True])
def test_lazy_step_moves_only_the_batch_frames(per_frame_focal):
    m = _model(per_frame_focal=per_frame_focal)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    for step in range(3):  # momentum from earlier steps would move every frame
        frames = torch.tensor([step, step + 1])
        before = {n: p.detach().clone() for n, p in m.per_frame_parameters().items()}
        rest_before = m.rest_verts.detach().clone()
        loss = sum(p.square().sum() for p in m.parameters()) + m(torch.arange(5)).sum() + m.focal().sum()
        opt.zero_grad()
        loss.backward()
        lazy_step(opt, m, frames)
        assert not torch.equal(rest_before, m.rest_verts)  # shared parameters move
        for n, p in m.per_frame_parameters().items():
            others = torch.ones(5, dtype=torch.bool)
            others[frames] = False
            assert torch.equal(p.detach()[others], before[n][others]), n
            assert not torch.equal(p.detach()[frames], before[n][frames]), n
    assert ("log_focal" in m.per_frame_parameters()) == per_frame_focal
