"""lasr.fit.divergence: a fit that diverges without a NaN (an exploding loss or parameter)
stops with the report a NaN gets, and following its advice works."""

import pytest
import torch

from lasr.errors import LasrError
from lasr.fit import Fitter
from lasr.fit.divergence import Divergence, DivergenceWatch, Where
from lasr.geometry.mesh import icosphere
from lasr.model.articulated import ArticulatedModel

from .synth import ellipsoid_scene

SHORT = ("stages=rigid", "train.max_steps_per_stage=6", "train.checkpoint_every=1", "train.progress=false",
         "stages.rigid.hypotheses=1")


def test_an_exploding_loss_is_reported_and_a_lower_lr_resumes(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    fitter = Fitter(compose_cfg(*SHORT, "stages.rigid.lr=10"), data, tmp_path, torch.device("cpu"))
    with pytest.raises(LasrError, match=r"diverged at stage 'rigid', step \d .*the loss grew from .* most in the term "
                                        r"'\w+'\. Last good checkpoint: .*ckpt/last\.pt\. Lower stages\.rigid\.lr "
                                        r"\(now 10\)") as e:
        fitter.fit()
    named = str(e.value).split("Last good checkpoint: ")[1].split(". Lower")[0]
    again = Fitter(compose_cfg(*SHORT, "stages.rigid.lr=0.01"), data, tmp_path, torch.device("cpu"))
    again.load_checkpoint(named)  # as the report says: lower the rate, then resume
    assert {g["name"]: g["nominal_lr"] for g in again.optimizer.param_groups}["shape"] == pytest.approx(0.01)
    again.fit()
    assert again.global_step == 12 and all(torch.isfinite(p).all() for p in again.model.parameters())


def test_an_exploding_or_non_finite_parameter_is_reported():
    V, F = icosphere(1)
    model = ArticulatedModel(V, F, num_frames=3, num_bones=1)
    watch = DivergenceWatch(model)
    where = Where("articulate", 0.5, 7, 30, None)
    watch.check_parameters(model, where)  # as it started: fine
    with torch.no_grad():
        model.root_trans.add_(5e3)
    with pytest.raises(Divergence, match=r"stage 'articulate', step 7 \(global step 30\): the parameter 'root_trans' "
                                         r"grew to 5e\+03 .*Last good checkpoint: none yet\. Lower "
                                         r"stages\.articulate\.lr \(now 0\.5\) or model\.lr_scale\.root"):
        watch.check_parameters(model, where)
    with torch.no_grad():
        model.root_trans.sub_(5e3)
        model.rest_verts[0, 0] = float("nan")
    with pytest.raises(Divergence, match="the parameter 'rest_verts' became nan.*model.lr_scale.shape"):
        watch.check_parameters(model, where)
