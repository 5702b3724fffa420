"""lasr.fit.objective: one registered term per loss weight, the weighted total, the
all-frame score that compares hypotheses."""

from dataclasses import fields

import pytest
import torch

from lasr.config import LossWeights
from lasr.fit import Fitter
from lasr.fit.objective import DATA_TERMS, TERMS, pair_direction, weighted_total
from lasr.geometry.mesh import normal_consistency

from .synth import ellipsoid_scene

ONE_RIGID = ("stages.rigid.restarts=1", "stages.rigid.mirror_hypotheses=false")  # one rigid run, no mirrors


def test_every_weight_has_a_term_and_every_term_a_weight():
    assert list(TERMS) == [f.name for f in fields(LossWeights)]


def test_weighted_total_sums_the_weighted_terms_present():
    w = LossWeights(silhouette=2.0, flow=0.0, laplacian=0.5)
    terms = {"silhouette": torch.tensor(0.25), "flow": torch.tensor(100.0), "laplacian": torch.tensor(4.0)}
    assert float(weighted_total(terms, w)) == pytest.approx(2.0 * 0.25 + 0.5 * 4.0)
    with pytest.raises(ValueError, match="all loss weights are zero"):
        weighted_total({"flow": torch.tensor(1.0)}, w)


def test_pair_direction_stays_inside_the_clip():
    ids = torch.tensor([0, 1, 2, 3, 4])
    assert pair_direction(ids, torch.tensor([-1, -1, 1, 1, 1]), 5).tolist() == [1, -1, 1, 1, -1]


def test_every_loss_weight_adds_its_term(compose_cfg, tmp_path):
    """Each weight of LossWeights, set non-zero, adds the term of that name (and only then)."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    names = [f.name for f in fields(LossWeights)]
    on = [f"stages.articulate.weights.{n}=1.0" for n in names]
    # flow_from=0: the flow trains from the stage's first step (fast delays it; tested below)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "stages.articulate.restarts=1", "stages.rigid.hypotheses=1",
                      "stages.articulate.symmetric=true", "stages.articulate.flow_from=0",
                      "train.max_steps_per_stage=1", "train.progress=false", *on)
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    seen = {}

    def articulate_end(f, result):
        if result.name == "articulate":
            stage = cfg.stages["articulate"]
            seen["all"] = set(f.losses(stage, torch.tensor([0, 1]), torch.tensor([1, 1]))[0])
            stage.weights.normal = 0.0
            seen["no_normal"] = set(f.losses(stage, torch.tensor([0, 1]), torch.tensor([1, 1]))[0])
            stage.weights.silhouette = 0.0  # the data term is always computed
            seen["no_silhouette"] = set(f.losses(stage, torch.tensor([0, 1]), torch.tensor([1, 1]))[0])
            stage.weights.silhouette = stage.weights.normal = 1.0
            terms = f.losses(stage, torch.tensor([0, 2]), torch.tensor([1, -1]))[0]
            with torch.no_grad():
                seen["posed"] = float(normal_consistency(f.model.deform(torch.tensor([0, 2, 1, 1])), f.model.faces))
                seen["rest"] = float(normal_consistency(f.model.rest_verts, f.model.faces))
            seen["terms"] = {k: float(terms[k].detach()) for k in ("normal", "posed_normal")}

    fitter.fit(on_stage_end=articulate_end)
    assert seen["all"] == set(names)
    assert seen["no_normal"] == set(names) - {"normal"}
    assert seen["no_silhouette"] == set(names) - {"normal"}
    # normal: the rest surface; posed_normal: the batch's posed surfaces (frames and their pairs)
    assert seen["terms"]["normal"] == pytest.approx(seen["rest"], rel=1e-5)
    assert seen["terms"]["posed_normal"] == pytest.approx(seen["posed"], rel=1e-5)
    assert seen["posed"] != pytest.approx(seen["rest"], rel=1e-3)


def test_rigid_stage_has_no_deformation_terms(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=rigid", "stages.rigid.weights.edge=1", "stages.rigid.weights.deformation=1",
                      "stages.rigid.weights.posed_normal=1", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    fitter.prepare_crops(cfg.stages.rigid)
    terms, diag = fitter.losses(cfg.stages.rigid, torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert "edge" not in terms and "deformation" not in terms and "posed_normal" not in terms
    assert "symmetry" in terms
    assert set(diag) == {"iou", "flow_epe_px"}


def test_hypotheses_keep_the_lowest_all_frame_objective(compose_cfg, tmp_path):
    """Hypotheses are compared by the stage's data terms over every frame (deterministic),
    and the one kept is the one with the lowest; with mirror images in depth, twice as
    many."""
    data, *_ = ellipsoid_scene(T=6, size=48)
    cfg = compose_cfg("stages=rigid", "stages.rigid.iters=0", "stages.rigid.hypotheses=4",
                      "stages.rigid.mirror_hypotheses=true", "stages.rigid.hypothesis_iters=3", "stages.rigid.batch_size=4", "stages.refine.iters=2",
                      "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stage = cfg.stages["rigid"]
    seen = {}

    def by_hand(f):  # frames 0-3 then 4-5, each paired with the next, the last with the one before
        with torch.no_grad():
            a = f.losses(stage, torch.arange(4), torch.ones(4, dtype=torch.long), DATA_TERMS)[0]
            b = f.losses(stage, torch.tensor([4, 5]), torch.tensor([1, -1]), DATA_TERMS)[0]
            assert set(a) == {"silhouette", "flow"}  # the stage's data terms only
        return (4 * float(weighted_total(a, stage.weights)) + 2 * float(weighted_total(b, stage.weights))) / 6

    def rigid_end(f, result):
        if result.name == "rigid":
            seen.update(scores=result.hypothesis_losses, kept=f.objective(stage), again=f.objective(stage),
                        by_hand=by_hand(f))

    fitter.fit(on_stage_end=rigid_end)
    scores, kept = seen["scores"], seen["kept"]
    assert len(scores) == 8 and len(set(scores)) == 8
    assert kept == seen["again"]  # no randomness in the score
    assert kept == pytest.approx(min(scores), rel=1e-6)
    assert kept == pytest.approx(seen["by_hand"], rel=1e-6)


def test_flow_from_keeps_the_flow_out_of_training_but_not_out_of_the_score(compose_cfg, tmp_path):
    """``flow_from``: the flow term trains only from that share of the stage's steps on, yet
    the all-frame score (``only``), which chooses hypotheses and their mirror images, sees it
    (the value it would have with ``flow_from=0``)."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=rigid", "stages.rigid.flow_from=0.5", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stage = cfg.stages.rigid
    fitter.prepare_crops(stage)
    ids, direction = torch.tensor([0, 1, 2]), torch.tensor([1, 1, -1])
    fitter.progress = 0.25
    terms, diag = fitter.losses(stage, ids, direction)
    assert "flow" not in terms and "flow_epe_px" not in diag
    with torch.no_grad():
        score = fitter.losses(stage, ids, direction, DATA_TERMS)[0]
    fitter.progress = 0.5
    trained = {k: v.detach() for k, v in fitter.losses(stage, ids, direction)[0].items()}
    assert float(score["flow"]) == pytest.approx(float(trained["flow"]), rel=1e-6) and float(score["flow"]) > 0
    assert fitter.objective(stage) > fitter.objective(stage, only=("silhouette",))


def test_the_symmetry_term_holds_mirrored_bones_only_in_a_stage_that_asks(compose_cfg, tmp_path):
    from lasr.fit.structure import change_structure
    from lasr.geometry.symmetry import symmetry_loss
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", "stages.articulate.mirrored_bones=true", "stages.articulate.num_faces=null",
                      "train.progress=false")  # new bones on the same mesh
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stage = cfg.stages.articulate
    change_structure(fitter.model, stage, 0, lambda: 0.0, fitter.mirror)
    fitter.prepare_crops(stage)
    with torch.no_grad():
        fitter.model.bones.centers[0, 0] += 0.1  # one bone of a pair off its partner's mirror image
    ids, direction = torch.tensor([0, 1]), torch.tensor([1, 1])
    rest = float(symmetry_loss(fitter.model.rest_verts.detach(), fitter.mirror))
    terms, _ = fitter.losses(stage, ids, direction)
    assert float(terms["symmetry"].detach()) == pytest.approx(rest + 2 * 0.01 / 21, rel=1e-4)  # both bones of the pair
    fitter.prepare_crops(cfg.stages.refine)
    terms, _ = fitter.losses(cfg.stages.refine, ids, direction)  # refine does not ask: the rest shape only
    assert float(terms["symmetry"].detach()) == pytest.approx(rest, rel=1e-6)
