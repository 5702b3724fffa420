"""lasr.fit.fitter: the stage loop recovers a known scene; resume, restarts, the root trajectory, NaN."""

import logging
import re

import numpy as np
import pytest
import torch

import lasr.losses as L
from lasr.errors import LasrError
from lasr.fit import Fitter, fitter as fitter_module
from lasr.fit.checkpoint import load_checkpoint

from .synth import ellipsoid_scene

ONE_RIGID = ("stages.rigid.trajectory=false", "stages.rigid.mirror_hypotheses=false",
             "stages.rigid.restarts=1")  # one rigid run, no flow trajectory: quicker


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


def _interrupted_fit(cfg, data, run_dir, at_step: int) -> Fitter:
    """A fit stopped by an exception right after global step ``at_step`` (as Ctrl-C would)."""

    class Stop(Exception):
        pass

    fitter = Fitter(cfg, data, run_dir, torch.device("cpu"))

    def interrupt(f, rec):
        if f.global_step == at_step:
            raise Stop

    with pytest.raises(Stop):
        fitter.fit(on_step=interrupt)
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


def test_restarts_keep_the_best_run(compose_cfg, tmp_path):
    """The schedule from the restart stage on runs `restarts` times, each from the state at
    that stage's start with its own seed; the run with the lowest data terms over all frames
    is the result."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=1", "stages.articulate.restarts=3")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    ends = []

    def on_stage_end(f, res):
        if res.name == "rigid":
            ends.append(("rigid", {k: v.clone() for k, v in f.model.state_dict().items()}))
        if res.name == "refine":
            ends.append((f.objective(cfg.stages.refine), {k: v.clone() for k, v in f.model.state_dict().items()}))

    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 3 + 3 * (3 + 3)
    assert ends[0][0] == "rigid" and len(ends) == 4  # rigid once, then three restarts
    runs = ends[1:]
    # each restart differs (its own seed) ...
    assert not torch.equal(runs[0][1]["bone_rot"], runs[1][1]["bone_rot"])
    assert not torch.equal(runs[1][1]["rest_verts"], runs[2][1]["rest_verts"])
    # ... and the kept one is the best
    best = min(range(3), key=lambda r: runs[r][0])
    for k, v in fitter.model.state_dict().items():
        assert torch.equal(v, runs[best][1][k]), k
    assert fitter.restarts.kept[0]["score"] == runs[best][0]
    # the finished run resumes as finished
    again = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    again.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    again.fit()
    assert again.global_step == fitter.global_step
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, runs[best][1][k]), k


def test_restarts_until_a_stage_keep_the_best_there_and_go_on_once(compose_cfg, tmp_path, monkeypatch):
    """With ``restart_until``, the restarts end at that stage: the best run by the data
    terms there is kept and the stages after it run once, from it."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=1", "stages.articulate.restarts=1", "stages.rigid.restarts=3",
                      "stages.rigid.restart_until=articulate")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    ends, refine_start = [], []

    def on_stage_end(f, res):
        if res.name == "articulate":
            ends.append((f.objective(cfg.stages.articulate), {k: v.clone() for k, v in f.model.state_dict().items()}))

    orig = fitter_module.change_structure

    def change(model, stage, *a):  # the refine stage starts from the state it is handed
        if stage.num_bones == cfg.stages.refine.num_bones:
            refine_start.append({k: v.clone() for k, v in model.state_dict().items()})
        return orig(model, stage, *a)

    monkeypatch.setattr(fitter_module, "change_structure", change)
    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 3 * (3 + 3) + 3
    assert len(ends) == 3 and len(refine_start) == 1
    best = min(range(3), key=lambda r: ends[r][0])
    for k, v in refine_start[0].items():
        assert torch.equal(v, ends[best][1][k]), k
    assert (tmp_path / "ckpt" / "stage01_articulate_r2.pt").exists()
    assert (tmp_path / "ckpt" / "stage02_refine.pt").exists()
    for bad, match in (("stages.rigid.restart_until=nope", "is not a stage"),):
        with pytest.raises(LasrError, match=match):
            Fitter(compose_cfg("stages=fast", "stages.articulate.restarts=1", "stages.rigid.restarts=2", bad),
                   data, tmp_path, torch.device("cpu"))


def test_two_restart_windows_run_in_turn_and_resume(compose_cfg, tmp_path, monkeypatch):
    """The rigid stage restarts alone (its own seed each), the best is kept, then the
    articulated stages restart from it; a run stopped in the second window resumes there
    and ends exactly as the uninterrupted run does."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", "train.max_steps_per_stage=3", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.rigid.restarts=2",
                      "stages.rigid.restart_until=rigid", "stages.articulate.restarts=2",
                      "stages.articulate.weights.coverage=0.5", "stages.refine.weights.coverage=0.5")
    real_coverage = L.coverage_loss  # few sampled pixels: every step draws from torch's global generator
    monkeypatch.setattr(L, "coverage_loss", lambda *a, **k: real_coverage(*a, **{**k, "max_points": 16}))
    torch.manual_seed(0)
    fitter = Fitter(cfg, data, tmp_path / "a", torch.device("cpu"))
    rigid_ends, articulate_starts = [], []

    def on_stage_end(f, res):
        if res.name == "rigid":
            rigid_ends.append((f.objective(cfg.stages.rigid), f.model.state_dict()["root_rot"].clone()))

    orig = fitter_module.change_structure

    def change(model, stage, *a):
        if stage.num_bones == 21:
            articulate_starts.append(model.state_dict()["root_rot"].clone())
        return orig(model, stage, *a)

    monkeypatch.setattr(fitter_module, "change_structure", change)
    results = fitter.fit(on_stage_end=on_stage_end)
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert fitter.global_step == 2 * 3 + 2 * (3 + 3)
    assert len(rigid_ends) == 2 and len(articulate_starts) == 2
    best = min(range(2), key=lambda r: rigid_ends[r][0])
    assert [(k["stage"], k["of"]) for k in fitter.restarts.kept] == [("rigid", 2), ("articulate", 2)]
    assert fitter.restarts.kept[0]["restart"] == best + 1
    assert fitter.restarts.kept[0]["score"] == rigid_ends[best][0]
    for start in articulate_starts:  # both articulated restarts start from the kept rigid run
        assert torch.equal(start, rigid_ends[best][1])
    names = sorted(p.name for p in (tmp_path / "a" / "ckpt").glob("stage*.pt"))
    assert names == ["stage00_rigid_r0.pt", "stage00_rigid_r1.pt", "stage01_articulate_r0.pt",
                     "stage01_articulate_r1.pt", "stage02_refine_r0.pt", "stage02_refine_r1.pt"]

    torch.manual_seed(0)
    stopped = _interrupted_fit(cfg, data, tmp_path / "b", at_step=6 + 6 + 2)  # 2nd articulated restart, step 2
    torch.manual_seed(1234)  # another process, another state: the checkpoint restores it
    assert (stopped.restarts.window, stopped.restarts.restart) == (1, 1)
    again = Fitter(cfg, data, tmp_path / "b", torch.device("cpu"))
    again.load_checkpoint(tmp_path / "b" / "ckpt" / "last.pt")
    assert (again.restarts.window, again.restarts.restart, again.stage_index, again.stage_step) == (1, 1, 1, 2)
    results = again.fit()
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert again.global_step == fitter.global_step and (again.restarts.window, again.restarts.restart, again.restarts.best) == (2, 0, None)
    # exactly: the random states (batches, python, torch, k-means) went on from the checkpoint
    assert torch.equal(again.full_frame_iou(), fitter.full_frame_iou())
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, fitter.model.state_dict()[k]), k
    ckpt = tmp_path / "b" / "ckpt"
    assert (ckpt / "stage01_articulate_r1.pt").exists() and (ckpt / "stage02_refine_r1.pt").exists()
    for r in range(2):  # the first window ran as in the uninterrupted fit
        saved = load_checkpoint(ckpt / f"stage00_rigid_r{r}.pt")["model"]["root_rot"]
        assert torch.equal(saved, rigid_ends[r][1])


def test_resume_inside_a_restart(compose_cfg, tmp_path):
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=fast", *ONE_RIGID, "train.max_steps_per_stage=3", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.articulate.restarts=2")

    first = _interrupted_fit(cfg, data, tmp_path, at_step=3 + 6 + 2)  # second restart, articulate step 2
    assert first.restarts.restart == 1 and first.restarts.best is not None
    second = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    second.load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert (second.restarts.restart, second.stage_index, second.stage_step, second.global_step) == (1, 1, 2, 11)
    assert second.restarts.best[0] == first.restarts.best[0]
    results = second.fit()
    assert [r.name for r in results] == ["rigid", "articulate", "refine"]
    assert second.global_step == 3 + 2 * 6
    assert second.restarts.best is None and len(second.restarts.kept) == 1
    assert abs(float(second.full_frame_iou().mean()) - second.restarts.kept[0]["mask_iou"]) < 1e-6
    assert second.restarts.kept[0]["score"] <= first.restarts.best[0] and second.restarts.kept[0]["stage"] == "articulate"


@pytest.mark.parametrize("restart", [0, 1])
def test_resume_at_the_end_of_a_restart_window(compose_cfg, tmp_path, restart):
    """Stopped right after a restart's stage-end checkpoint, before the restart is scored,
    the fit resumes, scores it and goes on (a fresh Fitter has no crops yet)."""

    class Stop(Exception):
        pass

    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=rigid", *ONE_RIGID, "train.max_steps_per_stage=3", "train.checkpoint_every=1",
                      "train.progress=false", "stages.rigid.hypotheses=1", "stages.rigid.restarts=2",
                      "stages.rigid.restart_until=rigid")
    whole = Fitter(cfg, data, tmp_path / "whole", torch.device("cpu"))
    whole.fit()

    def stop(f, res):
        if res.name == "rigid" and f.restarts.restart == restart:
            raise Stop

    with pytest.raises(Stop):
        Fitter(cfg, data, tmp_path / "cut", torch.device("cpu")).fit(on_stage_end=stop)
    again = Fitter(cfg, data, tmp_path / "cut", torch.device("cpu"))
    again.load_checkpoint(tmp_path / "cut" / "ckpt" / "last.pt")
    results = again.fit()
    assert [r.name for r in results] == ["rigid", "refine"] and again.global_step == whole.global_step
    assert [k["restart"] for k in again.restarts.kept] == [k["restart"] for k in whole.restarts.kept]
    assert torch.equal(again.full_frame_iou(), whole.full_frame_iou())


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_the_initial_shape_is_init_width_as_wide_across_its_mirror_plane(compose_cfg, tmp_path, width):
    from lasr.geometry.symmetry import reflect

    data, _, _, _ = ellipsoid_scene(T=4, size=32)
    fitter = Fitter(compose_cfg("stages=rigid", f"model.init_width={width}"), data, tmp_path, torch.device("cpu"))
    V = fitter.model.rest_verts.detach()
    extent = V.amax(0) - V.amin(0)
    assert torch.allclose(extent, torch.tensor([2 * width, 2.0, 2.0]), atol=1e-5), extent
    assert torch.allclose(reflect(V)[fitter.mirror], V, atol=1e-6)  # the mirror map still pairs every vertex


def test_restarts_of_the_hypothesis_stage_run_its_best_hypotheses_in_turn(compose_cfg, tmp_path, caplog):
    """``restarts: 3`` on the stage that tries root hypotheses: the first run tries all of
    them (and their mirror images) and goes on from the best, the second and third go on
    from the second and third best of the first run's scores; the run with the lowest data
    terms at the stage's end is kept."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    cfg = compose_cfg("stages=rigid", "train.max_steps_per_stage=3", "train.progress=false",
                      "stages.rigid.hypotheses=4", "stages.rigid.restarts=3", "stages.rigid.restart_until=rigid",
                      "stages.rigid.hypothesis_iters=2", "stages.refine.iters=0")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    ends = []

    def on_stage_end(f, r):
        if r.name == "rigid":
            ends.append((list(r.hypothesis_losses), f.objective(cfg.stages.rigid)))

    with caplog.at_level(logging.INFO, logger="lasr"):
        fitter.fit(on_stage_end=on_stage_end)
    (first, _), (second, _), (third, _) = ends
    assert len(first) == 8 and len(second) == 1 and len(third) == 1  # 4 hypotheses and their mirror images
    kept = [int(n) for n in re.findall(r"hypothesis scores .* -> kept #(\d+)", caplog.text)]
    assert kept == [int(i) + 1 for i in np.argsort(first, kind="stable")[:3]]  # the best, the second, the third
    best = min(range(3), key=lambda r: ends[r][1])
    assert fitter.restarts.kept[0]["score"] == ends[best][1] and fitter.restarts.kept[0]["restart"] == best + 1
    assert fitter.restarts.ranking is None  # forgotten once the window is done
