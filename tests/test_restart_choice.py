"""experiments/restart_choice.py: which checkpoints end each restart window, and their posed meshes."""

import numpy as np
import torch

from lasr.fit.checkpoint import save_checkpoint
from lasr.geometry.mesh import icosphere
from lasr.io.obj import read_obj
from lasr.model.articulated import ArticulatedModel
from tests.experiments import experiment


def _module():
    return experiment("restart_choice")


def test_each_window_ends_at_its_last_stage(compose_cfg, tmp_path):
    """`fast`: rigid restarts alone (3), then articulate and refine restarted together (2):
    the rigid runs end at stage 0, the articulated ones at refine, named as the fit saves them."""
    windows = _module()._windows(list(compose_cfg("stages=fast").stages.items()), tmp_path)
    assert list(windows) == ["rigid", "articulate"]  # in the schedule's order
    assert [p.name for p in windows["rigid"]] == [f"stage00_rigid_r{k}.pt" for k in range(3)]
    assert [p.name for p in windows["articulate"]] == [f"stage02_refine_r{k}.pt" for k in range(2)]
    assert all(p.parent == tmp_path for p in windows["rigid"] + windows["articulate"])
    # a window through one stage only, and none at all
    one = compose_cfg("stages=fast", "stages.articulate.restarts=1", "stages.refine.restarts=2")
    assert {k: [p.name for p in v] for k, v in _module()._windows(list(one.stages.items()), tmp_path).items()} == {
        "rigid": [f"stage00_rigid_r{k}.pt" for k in range(3)], "refine": ["stage02_refine_r0.pt", "stage02_refine_r1.pt"]}
    assert _module()._windows(list(compose_cfg("stages=fast", "stages.rigid.restarts=1",
                                               "stages.articulate.restarts=1").stages.items()), tmp_path) == {}


def test_the_posed_meshes_are_the_checkpointed_model_s(tmp_path):
    torch.manual_seed(0)
    V, F = icosphere(2)
    model = ArticulatedModel(V * torch.tensor([0.5, 1.0, 0.8]), F, num_frames=3, num_bones=4, temperature=7.0)
    with torch.no_grad():  # a pose per frame and a root away from the camera
        model.bone_trans.normal_(std=0.1)
        model.root_trans[:, 2] = 4.0
    save_checkpoint({"model": model.state_dict(), "structure": {"num_bones": 4}}, tmp_path / "ckpt", "a.pt")
    names = ["00010.obj", "00011.obj", "00012.obj"]
    _module().posed_meshes(tmp_path / "ckpt" / "a.pt", 7.0, "6d", tmp_path / "out", names)
    with torch.no_grad():
        expected = model(torch.arange(3)).numpy()
    assert np.abs(expected[0] - expected[1]).max() > 0.01  # the frames differ
    for name, want in zip(names, expected):
        verts, faces = read_obj(tmp_path / "out" / "meshes" / name)[:2]
        np.testing.assert_allclose(verts, want, atol=1e-6)
        assert np.array_equal(faces, F.numpy())
