"""lasr.fit.structure: remeshing and new bones keep the fit."""

import torch
from omegaconf import OmegaConf

from lasr.fit import Fitter
from lasr.fit.structure import change_structure, needs_change

from .synth import ellipsoid_scene


def test_stage_change_does_not_undo_the_fit(compose_cfg, tmp_path):
    torch.manual_seed(0)
    data, *_ = ellipsoid_scene(T=4, size=64)
    cfg = compose_cfg("stages=lasr", "stages.refine.num_faces=2880", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stages = dict(cfg.stages)
    iou = lambda: float(fitter.full_frame_iou().mean())  # noqa: E731
    change_structure(fitter.model, stages["articulate"], 100, iou)  # 21 bones (and a remesh to 2000 faces)
    with torch.no_grad():  # a strong, smooth articulation
        m = fitter.model
        m.bone_rot.add_(0.25 * torch.randn_like(m.bone_rot))
        m.bone_trans.add_(0.05 * torch.randn_like(m.bone_trans))
    assert needs_change(fitter.model, stages["refine"]) == (True, True)
    change = change_structure(fitter.model, stages["refine"], 100, iou)  # 36 bones and remesh to 2880 faces
    before, after = change.iou_before, change.iou_after
    following = OmegaConf.merge(stages["refine"], {"num_faces": None})  # a later stage with the same structure
    assert change.remeshed and needs_change(fitter.model, following) == (False, False)
    assert fitter.model.num_bones == 36 and abs(fitter.model.faces.shape[0] - 2880) < 150
    assert abs(before - after) <= 0.02, (before, after)


def test_a_symmetric_stage_with_mirrored_bones_places_them_in_pairs(compose_cfg, tmp_path):
    from lasr.geometry.symmetry import bone_symmetry_loss
    torch.manual_seed(0)
    data, *_ = ellipsoid_scene(T=4, size=64)
    cfg = compose_cfg("stages=fast", "stages.articulate.mirrored_bones=true", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    iou = lambda: float(fitter.full_frame_iou().mean())  # noqa: E731
    change = change_structure(fitter.model, cfg.stages.articulate, 100, iou, fitter.mirror)
    m = fitter.model
    assert m.num_bones == 21 and torch.equal(m.bone_mirror[m.bone_mirror], torch.arange(21))
    assert (m.bone_mirror == torch.arange(21)).sum() == 1  # 10 pairs and one bone on the plane
    b = m.bones
    assert bone_symmetry_loss(b.centers, b.rotations(), b.log_precisions, m.bone_mirror) < 1e-10
    assert change.mirror is not None
    # without the option the same stage places plain k-means bones
    cfg2 = compose_cfg("stages=fast", "train.progress=false")
    fitter2 = Fitter(cfg2, data, tmp_path / "b", torch.device("cpu"))
    change_structure(fitter2.model, cfg2.stages.articulate, 100, iou, fitter2.mirror)
    assert (fitter2.model.bone_mirror == -1).all()
