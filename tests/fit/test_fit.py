import json

import numpy as np
import pytest
import torch

import lasr.losses as L
from lasr.config import conf_dir
from lasr.errors import LasrError
from lasr.export import write_final
from lasr.geometry.mesh import load_obj
from lasr.geometry.rotations import axis_angle_to_matrix
from lasr.trainer import Fitter, hypothesis_rotations, turn_rotations

from .synth import ellipsoid_scene

SCHEDULES = sorted(p.stem for p in (conf_dir() / "stages").glob("*.yaml"))
ONE_RIGID = ("stages.rigid.restarts=1", "stages.rigid.turns=[0]")  # fast without its rigid restarts (turns)


def test_hypothesis_rotations_are_distinct_rotations():
    R = hypothesis_rotations(16)
    assert R.shape == (16, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=1e-5)
    d = (R[:, None] - R[None]).flatten(2).norm(dim=-1) + torch.eye(16) * 10
    assert d.min() > 0.3  # no two hypotheses alike


def test_synthetic_scene_is_recovered(compose_cfg, tmp_path):
    torch.manual_seed(0)
    data, true_verts, _, _ = ellipsoid_scene(T=8, size=128)
    cfg = compose_cfg("stages=rigid", "stages.rigid.iters=150", "stages.rigid.hypotheses=1",
                      "stages.refine.iters=60", "stages.refine.resolution=64", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    before = fitter.full_frame_iou().mean()
    fitter.fit()
    iou = fitter.full_frame_iou()
    assert before < 0.8 and iou.mean() >= 0.9 and iou.min() >= 0.85, (before, iou)


def test_hypotheses_keep_the_lowest_all_frame_objective(compose_cfg, tmp_path):
    """Hypotheses are compared by the stage's loss over every frame (deterministic), and
    the one kept is the one with the lowest."""
    data, *_ = ellipsoid_scene(T=6, size=48)
    cfg = compose_cfg("stages=rigid", "stages.rigid.iters=0", "stages.rigid.hypotheses=4",
                      "stages.rigid.hypothesis_iters=3", "stages.rigid.batch_size=4", "stages.refine.iters=2",
                      "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stage = cfg.stages["rigid"]
    seen = {}

    def by_hand(f):  # frames 0-3 then 4-5, each paired with the next, the last with the one before
        with torch.no_grad():
            a = f.losses(stage, torch.arange(4), torch.ones(4, dtype=torch.long))[0]
            b = f.losses(stage, torch.tensor([4, 5]), torch.tensor([1, -1]))[0]
        return (4 * float(L.total_loss(a, stage.weights)) + 2 * float(L.total_loss(b, stage.weights))) / 6

    def rigid_end(f, result):
        if result.name == "rigid":
            seen.update(scores=result.hypothesis_losses, kept=f.objective(stage), again=f.objective(stage),
                        by_hand=by_hand(f))

    fitter.fit(on_stage_end=rigid_end)
    scores, kept = seen["scores"], seen["kept"]
    assert len(scores) == 4 and len(set(scores)) == 4
    assert kept == seen["again"]  # no randomness in the score
    assert kept == pytest.approx(min(scores), rel=1e-6)
    assert kept == pytest.approx(seen["by_hand"], rel=1e-6)


def test_every_loss_weight_has_its_term(compose_cfg, tmp_path):
    """Each weight of LossWeights, set non-zero, adds the term of that name (and only then)."""
    from dataclasses import fields

    from lasr.config import LossWeights

    data, *_ = ellipsoid_scene(T=4, size=48)
    names = [f.name for f in fields(LossWeights)]
    on = [f"stages.articulate.weights.{n}=1.0" for n in names]
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "stages.articulate.restarts=1", "stages.rigid.hypotheses=1",
                      "stages.articulate.symmetric=true", "train.max_steps_per_stage=1", "train.progress=false", *on)
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    seen = {}

    def articulate_end(f, result):
        if result.name == "articulate":
            stage = cfg.stages["articulate"]
            seen["all"] = set(f.losses(stage, torch.tensor([0, 1]), torch.tensor([1, 1]))[0])
            stage.weights.normal = 0.0
            seen["no_normal"] = set(f.losses(stage, torch.tensor([0, 1]), torch.tensor([1, 1]))[0])

    fitter.fit(on_stage_end=articulate_end)
    assert seen["all"] == set(names)
    assert seen["no_normal"] == set(names) - {"normal"}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_end_to_end(schedule, compose_cfg, tmp_path):
    assert {"lasr", "fast", "rigid"} <= set(SCHEDULES)
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg(f"stages={schedule}", "train.max_steps_per_stage=2", "train.progress=false",
                      "train.image_every=1", "train.log_every=1")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "tb")) as writer:
        fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"), writer)
        results = fitter.fit()
    assert [r.name for r in results] == list(cfg.stages.keys())
    # the stages from one that sets restarts through its restart_until run that many times
    names, stages = list(cfg.stages.keys()), list(cfg.stages.values())
    times = [1] * len(stages)
    for i, s in enumerate(stages):
        if s.restarts > 1:
            for j in range(i, len(stages) if s.restart_until is None else names.index(s.restart_until) + 1):
                times[j] = s.restarts
    assert fitter.global_step == sum(min(2, s.iters) * k for s, k in zip(stages, times))
    assert len(fitter.kept) == sum(s.restarts > 1 for s in stages)
    final = write_final(fitter, tmp_path / "final", {r.name: r.seconds for r in results})
    assert sorted(p.name for p in (final / "meshes").iterdir()) == [f"{i:05d}.obj" for i in range(4)]
    cams = json.loads((final / "cameras.json").read_text())
    assert cams["width"] == 48 and len(cams["frames"]) == 4 and cams["frames"][3]["source_frame"] == 3
    metrics = json.loads((final / "metrics.json").read_text())
    assert len(metrics["frames"]) == 4 and 0 <= metrics["mean_mask_iou"] <= 1
    assert metrics["restarts_kept"] == fitter.kept
    skel = np.load(final / "skeleton.npz")
    V, F = load_obj(final / "meshes" / "00002.obj")
    assert skel["skinning_weights"].shape == (V.shape[0], fitter.model.num_bones)
    assert np.allclose(skel["skinning_weights"].sum(1), 1, atol=1e-5)
    last = list(cfg.stages.values())[-1]
    if last.num_faces:
        assert abs(F.shape[0] - last.num_faces) <= 0.05 * last.num_faces
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())
    # the rig re-read by an independent glTF reader reproduces the posed meshes
    from lasr.gltf import opencv_from_gltf, read_glb_and_pose

    for t in range(4):
        V = np.asarray(load_obj(final / "meshes" / f"{t:05d}.obj")[0])
        posed = opencv_from_gltf(read_glb_and_pose(final / "animation.glb", frame=t))
        diag = np.linalg.norm(V.max(0) - V.min(0))
        assert np.abs(posed - V).max() < 0.01 * diag


def test_output_meshes_project_with_output_cameras(compose_cfg, tmp_path):
    """final/meshes + final/cameras.json reproduce the model's silhouettes (the contract)."""
    data, *_ = ellipsoid_scene(T=3, size=48)
    cfg = compose_cfg("stages=rigid", "train.max_steps_per_stage=3", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    fitter.fit()
    final = write_final(fitter, tmp_path / "final", {})
    cams = json.loads((final / "cameras.json").read_text())["frames"]
    for t in range(3):
        V, _ = load_obj(final / "meshes" / f"{t:05d}.obj")
        c = cams[t]
        uv = np.stack([c["fx"] * V[:, 0] / V[:, 2] + c["cx"], c["fy"] * V[:, 1] / V[:, 2] + c["cy"]], -1)
        with torch.no_grad():
            ref = fitter.model(torch.tensor([t]))[0]
            K = fitter.model.focal(torch.tensor([t])) * 48
        ref_uv = (ref[:, :2] / ref[:, 2:] * K + 23.5).numpy()
        np.testing.assert_allclose(uv, ref_uv, atol=1e-3)


def _interrupted_fit(cfg, data, run_dir, at_step: int) -> Fitter:
    """A fit stopped by an exception right after global step ``at_step`` (as Ctrl-C would)."""

    class Stop(Exception):
        pass

    fitter = Fitter(cfg, data, run_dir, torch.device("cpu"))
    real_log = fitter._log_step

    def interrupt(stage, name, rec):
        real_log(stage, name, rec)
        if fitter.global_step == at_step:
            raise Stop

    fitter._log_step = interrupt
    with pytest.raises(Stop):
        fitter.fit()
    return fitter


def test_resume_continues_where_it_stopped(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "train.max_steps_per_stage=4", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.articulate.restarts=1")

    first = _interrupted_fit(cfg, data, tmp_path, at_step=6)  # stage 2, step 2
    snapshot = {k: v.clone() for k, v in first.model.state_dict().items()}

    second = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    second.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (second.stage_index, second.stage_step, second.global_step) == (1, 2, 6)
    assert second.model.num_bones == cfg.stages.articulate.num_bones
    for k, v in second.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    results = second.fit()
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert second.global_step == 12


def test_nan_loss_stops_with_step_term_and_checkpoint(compose_cfg, tmp_path, monkeypatch):
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=rigid", "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=1")
    real = L.flow_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **k):
        calls["n"] += 1
        return real(*a, **k) * (float("nan") if calls["n"] == 5 else 1.0)

    monkeypatch.setattr(L, "flow_loss", sometimes_nan)
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    with pytest.raises(LasrError, match=r"stage 'refine', step 1 .*term 'flow'.*ckpt/last\.pt"):
        fitter.fit()


def test_stage_change_does_not_undo_the_fit(compose_cfg, tmp_path):
    torch.manual_seed(0)
    data, *_ = ellipsoid_scene(T=4, size=64)
    cfg = compose_cfg("stages=lasr", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    stages = dict(cfg.stages)
    fitter._change_structure(stages["bones21"])  # 21 bones
    with torch.no_grad():  # a strong, smooth articulation
        m = fitter.model
        m.bone_rot.add_(0.25 * torch.randn_like(m.bone_rot))
        m.bone_trans.add_(0.05 * torch.randn_like(m.bone_trans))
    before, after = fitter._change_structure(stages["bones36"])  # 36 bones and remesh to 2880 faces
    assert fitter.model.num_bones == 36 and abs(fitter.model.faces.shape[0] - 2880) < 150
    assert abs(before - after) <= 0.02, (before, after)


def test_restarts_keep_the_best_run(compose_cfg, tmp_path):
    """The schedule from the restart stage on runs `restarts` times, each from the state at
    that stage's start with its own seed; the run with the best mask IoU is the result."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=1", "stages.articulate.restarts=3")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    ends = []

    def on_stage_end(f, res):
        if res.name == "rigid":
            ends.append(("rigid", {k: v.clone() for k, v in f.model.state_dict().items()}))
        if res.name == "refine":
            ends.append((float(f.full_frame_iou().mean()), {k: v.clone() for k, v in f.model.state_dict().items()}))

    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 3 + 3 * (3 + 3)
    assert ends[0][0] == "rigid" and len(ends) == 4  # rigid once, then three restarts
    runs = ends[1:]
    # each restart differs (its own seed) ...
    assert not torch.equal(runs[0][1]["bone_rot"], runs[1][1]["bone_rot"])
    assert not torch.equal(runs[1][1]["rest_verts"], runs[2][1]["rest_verts"])
    # ... and the kept one is the best
    best = max(range(3), key=lambda r: runs[r][0])
    for k, v in fitter.model.state_dict().items():
        assert torch.equal(v, runs[best][1][k]), k
    assert abs(float(fitter.full_frame_iou().mean()) - runs[best][0]) < 1e-6
    # the finished run resumes as finished
    again = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    again.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    again.fit()
    assert again.global_step == fitter.global_step
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, runs[best][1][k]), k


def test_restarts_until_a_stage_keep_the_best_there_and_go_on_once(compose_cfg, tmp_path):
    """With ``restart_until``, the restarts end at that stage: the best run by mask IoU
    there is kept and the stages after it run once, from it."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=1", "stages.articulate.restarts=1", "stages.rigid.restarts=3",
                      "stages.rigid.restart_until=articulate", "stages.rigid.turns=[0,45,-45]")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    ends, refine_start = [], []

    def on_stage_end(f, res):
        if res.name == "articulate":
            ends.append((float(f.full_frame_iou().mean()), {k: v.clone() for k, v in f.model.state_dict().items()}))

    orig = fitter._change_structure

    def change(stage):  # the refine stage starts from the state it is handed
        if stage.num_bones == 48:
            refine_start.append({k: v.clone() for k, v in fitter.model.state_dict().items()})
        return orig(stage)

    fitter._change_structure = change
    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 3 * (3 + 3) + 3
    assert len(ends) == 3 and len(refine_start) == 1
    best = max(range(3), key=lambda r: ends[r][0])
    for k, v in refine_start[0].items():
        assert torch.equal(v, ends[best][1][k]), k
    assert (tmp_path / "ckpt" / "stage01_articulate_r2.pt").exists()
    assert (tmp_path / "ckpt" / "stage02_refine.pt").exists()
    for bad, match in (("stages.rigid.restart_until=nope", "is not a stage"),):
        with pytest.raises(LasrError, match=match):
            Fitter(compose_cfg("stages=fast", "stages.articulate.restarts=1", "stages.rigid.restarts=2", bad),
                   data, tmp_path, torch.device("cpu"))


def test_two_restart_windows_run_in_turn_and_resume(compose_cfg, tmp_path):
    """The rigid stage restarts alone (one turn each), the best is kept, then the
    articulated stages restart from it; a run stopped in the second window resumes there
    and ends as the uninterrupted run does."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", "train.max_steps_per_stage=3", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.rigid.restarts=2",
                      "stages.rigid.restart_until=rigid", "stages.rigid.turns=[0,45]", "stages.articulate.restarts=2")
    fitter = Fitter(cfg, data, tmp_path / "a", torch.device("cpu"))
    rigid_ends, articulate_starts = [], []

    def on_stage_end(f, res):
        if res.name == "rigid":
            rigid_ends.append((float(f.full_frame_iou().mean()), f.model.state_dict()["root_rot"].clone()))

    orig = fitter._change_structure

    def change(stage):
        if stage.num_bones == 21:
            articulate_starts.append(fitter.model.state_dict()["root_rot"].clone())
        return orig(stage)

    fitter._change_structure = change
    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 2 * 3 + 2 * (3 + 3)
    assert len(rigid_ends) == 2 and len(articulate_starts) == 2
    best = max(range(2), key=lambda r: rigid_ends[r][0])
    assert [(k["stage"], k["of"]) for k in fitter.kept] == [("rigid", 2), ("articulate", 2)]
    assert fitter.kept[0]["restart"] == best + 1 and fitter.kept[0]["turn"] == [0.0, 45.0][best]
    assert fitter.kept[0]["mask_iou"] == rigid_ends[best][0]
    for start in articulate_starts:  # both articulated restarts start from the kept rigid run
        assert torch.equal(start, rigid_ends[best][1])
    names = sorted(p.name for p in (tmp_path / "a" / "ckpt").glob("stage*.pt"))
    assert names == ["stage00_rigid_r0.pt", "stage00_rigid_r1.pt", "stage01_articulate_r0.pt",
                     "stage01_articulate_r1.pt", "stage02_refine_r0.pt", "stage02_refine_r1.pt"]

    stopped = _interrupted_fit(cfg, data, tmp_path / "b", at_step=6 + 6 + 2)  # 2nd articulated restart, step 2
    assert (stopped.window, stopped.restart) == (1, 1)
    again = Fitter(cfg, data, tmp_path / "b", torch.device("cpu"))
    again.load_checkpoint(tmp_path / "b" / "ckpt" / "last.pt")
    assert (again.window, again.restart, again.stage_index, again.stage_step) == (1, 1, 1, 2)
    results = again.fit()
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert again.global_step == fitter.global_step and (again.window, again.restart, again.best) == (2, 0, None)
    ckpt = tmp_path / "b" / "ckpt"
    assert (ckpt / "stage01_articulate_r1.pt").exists() and (ckpt / "stage02_refine_r1.pt").exists()
    for r in range(2):  # the first window ran as in the uninterrupted fit
        saved = torch.load(ckpt / f"stage00_rigid_r{r}.pt", weights_only=False)["model"]["root_rot"]
        assert torch.equal(saved, rigid_ends[r][1])


def test_resume_inside_a_restart(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "train.max_steps_per_stage=3", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.articulate.restarts=2")

    first = _interrupted_fit(cfg, data, tmp_path, at_step=3 + 6 + 2)  # second restart, articulate step 2
    assert first.restart == 1 and first.best is not None
    second = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    second.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (second.restart, second.stage_index, second.stage_step, second.global_step) == (1, 1, 2, 11)
    assert second.best[0] == first.best[0]
    results = second.fit()
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert second.global_step == 3 + 2 * 6
    assert second.best is None and len(second.kept) == 1
    assert abs(float(second.full_frame_iou().mean()) - second.kept[0]["mask_iou"]) < 1e-6
    assert second.kept[0]["mask_iou"] >= first.best[0] and second.kept[0]["stage"] == "articulate"


def test_restarts_validation(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    for bad, match in ((["stages.articulate.restarts=2", "stages.refine.restarts=2"], "overlaps the restarts of stages.refine"),
                       (["stages.refine.restarts=0"], "restarts must be >= 1")):
        cfg = compose_cfg("stages=fast", "train.progress=false", *bad)
        with pytest.raises(LasrError, match=match):
            Fitter(cfg, data, tmp_path, torch.device("cpu"))
    for bad, match in ((["stages.rigid.restarts=1", "stages.rigid.turns=[0,90]"], "set stages.rigid.restarts to at least 2"),
                       (["stages.rigid.restarts=3", "stages.rigid.turns=[0,90,-90,45]"],
                        "set stages.rigid.restarts to at least 4"),
                       (["stages.rigid.restart_until=null"], "overlaps the restarts of stages.articulate"),
                       (["stages.rigid.turns=[]"], "turns is empty")):
        cfg = compose_cfg("stages=fast", "train.progress=false", *bad)
        with pytest.raises(LasrError, match=match):
            Fitter(cfg, data, tmp_path, torch.device("cpu"))


def test_turn_rotations_turn_at_a_constant_rate_about_the_vertical():
    R = turn_rotations(7, 90.0, dtype=torch.float64)
    assert torch.allclose(R[0], torch.eye(3, dtype=torch.float64))
    assert torch.allclose(R[-1], torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=torch.float64), atol=1e-12)
    steps = R[1:] @ R[:-1].transpose(1, 2)  # the same 15 degrees about y from each frame to the next
    assert torch.allclose(steps, axis_angle_to_matrix(torch.tensor([0.0, np.pi / 12, 0.0], dtype=torch.float64)).expand(6, 3, 3),
                          atol=1e-12)
    assert torch.equal(turn_rotations(1, 90.0), torch.eye(3)[None])


@pytest.mark.parametrize("hypotheses", [1, 2])
def test_each_restart_starts_turning_by_its_turn(hypotheses, compose_cfg, tmp_path):
    """Restart r of the stage that sets ``turns`` starts its root rotations turning by
    turns[r] degrees from the first frame to the last (on top of each hypothesis)."""
    T = 5
    data, *_ = ellipsoid_scene(T=T, size=48)
    cfg = compose_cfg("stages=fast", "train.max_steps_per_stage=2", "train.progress=false",
                      "stages.articulate.restarts=1", "stages.rigid.restarts=2", "stages.rigid.turns=[0,60]",
                      f"stages.rigid.hypotheses={hypotheses}", "stages.rigid.lr=0")  # lr 0: the rigid stage keeps its start
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    start, _ = fitter.model.root_transforms()
    start = start.detach().clone()
    rigid_ends = []
    fitter.fit(on_stage_end=lambda f, r: r.name == "rigid" and rigid_ends.append(
        f.model.root_transforms()[0].detach().clone()))
    assert len(rigid_ends) == 2
    turn = turn_rotations(T, 60.0)
    if hypotheses == 1:  # the turn composes with the rotations the stage starts from
        assert torch.allclose(rigid_ends[0], start, atol=1e-5)
        assert torch.allclose(rigid_ends[1], turn @ start, atol=1e-5)
    else:  # every frame starts at the kept hypothesis, turned
        for R, t in zip(rigid_ends, (turn_rotations(T, 0.0), turn)):
            assert torch.allclose(R @ R[:1].transpose(1, 2), t, atol=1e-5)
    angle = torch.rad2deg(torch.arccos(((rigid_ends[1][-1] @ rigid_ends[1][0].T).trace() - 1) / 2))
    assert abs(float(angle) - 60.0) < 1e-2
