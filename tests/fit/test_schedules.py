"""Every schedule: a short fit reproduces its recorded reference (``reference.py``: the
refactoring guard), runs each window's restarts, logs to TensorBoard, and exports a
``final/`` that keeps the contract."""

import json

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from lasr.fit.export import final_content, fit_metrics
from lasr.io.final import write_final
from lasr.io.gltf import opencv_from_gltf
from lasr.io.obj import read_obj
from tests.gltf_reader import glb_joint_parents, read_glb_and_pose, validate_glb

from .reference import (LOWER, REFERENCE, STEPS, capability, difference, reference_sets, schedules, short_fit,
                        summary, with_kernels)


@pytest.mark.parametrize("schedule", schedules())
def test_schedule_reproduces_its_reference_and_exports(schedule, tmp_path):
    assert {"lasr", "fast", "rigid"} <= set(schedules())
    sets = reference_sets(REFERENCE)
    cap = capability()
    usable = [c.lower() for c in LOWER.get(cap, ()) if c in sets]
    assert cap in sets, (
        f"no reference recorded for PyTorch's {cap} kernels (recorded: {', '.join(sorted(sets))}): "
        "add this CPU's set (`uv run python -m tests.fit.reference --add`)"
        + (f", or run the tests with the recorded {usable[0]} kernels (`ATEN_CPU_CAPABILITY={usable[0]}`)"
           if usable else ""))
    assert f"{schedule}/verts" in sets[cap], f"no reference for {schedule}: run `uv run python -m tests.fit.reference`"
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        fitter, data = short_fit(schedule, tmp_path, writer)
    miss = difference(summary(fitter, data), sets[cap], schedule)
    assert miss is None, (
        f"the short {schedule} fit does not reproduce the reference recorded for {cap} kernels: {miss}. "
        "If the fit changed on purpose, record anew (`uv run python -m tests.fit.reference`) and add the other "
        "kernels' sets this CPU can run (`ATEN_CPU_CAPABILITY=avx2 uv run python -m tests.fit.reference --add`)")

    cfg = fitter.cfg
    assert [r.name for r in fitter.results] == list(cfg.stages.keys())
    # the stages from one that sets restarts through its restart_until run that many times
    names, stages = list(cfg.stages.keys()), list(cfg.stages.values())
    times = [1] * len(stages)
    for i, s in enumerate(stages):
        if s.restarts > 1:
            for j in range(i, len(stages) if s.restart_until is None else names.index(s.restart_until) + 1):
                times[j] = s.restarts
    assert fitter.global_step == sum(min(STEPS, s.iters) * k for s, k in zip(stages, times))
    assert len(fitter.restarts.kept) == sum(s.restarts > 1 for s in stages)
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())

    metrics = fit_metrics(fitter.model, data, fitter.results, fitter.restarts.kept, {}, fitter.device)
    final = write_final(tmp_path / "final", final_content(fitter.model, data, metrics, None))
    assert sorted(p.name for p in (final / "meshes").iterdir()) == [f"{i:05d}.obj" for i in range(4)]
    cams = json.loads((final / "cameras.json").read_text())
    assert cams["width"] == 48 and len(cams["frames"]) == 4 and cams["frames"][3]["source_frame"] == 3
    metrics = json.loads((final / "metrics.json").read_text())
    assert len(metrics["frames"]) == 4 and 0 <= metrics["mean_mask_iou"] <= 1
    assert metrics["restarts_kept"] == fitter.restarts.kept
    assert metrics["versions"]["cpu_kernels"] == cap  # which kernels drew the fit
    skel = np.load(final / "skeleton.npz")
    V, F = read_obj(final / "meshes" / "00002.obj")
    assert skel["skinning_weights"].shape == (V.shape[0], fitter.model.num_bones)
    assert np.allclose(skel["skinning_weights"].sum(1), 1, atol=1e-5)
    if stages[-1].num_faces:  # the isotropic remesher aims at an edge length: the count is near the target
        assert abs(F.shape[0] - stages[-1].num_faces) <= 0.1 * stages[-1].num_faces
    # the rig re-read by an independent glTF reader reproduces the posed meshes
    for t in range(4):
        V = read_obj(final / "meshes" / f"{t:05d}.obj")[0]
        posed = opencv_from_gltf(read_glb_and_pose(final / "animation.glb", frame=t))
        diag = np.linalg.norm(V.max(0) - V.min(0))
        assert np.abs(posed - V).max() < 0.01 * diag
    # its joints are the skeleton's tree
    assert skel["parents"].shape == (fitter.model.num_bones,) and (skel["parents"] == -1).sum() == 1
    assert glb_joint_parents(final / "animation.glb").tolist() == skel["parents"].tolist()
    assert skel["joint_positions"].shape == (fitter.model.num_bones, 3)
    assert validate_glb(final / "animation.glb") == []


def test_other_kernels_reproduce_their_own_reference_not_this_ones():
    """Every recorded set this CPU can also run (a lower capability, through
    ``ATEN_CPU_CAPABILITY``) is reproduced by a short fit with those kernels, in a process of
    its own: the sets are the kernels', not the machines' (README: "The same code on another
    CPU draws other fits"). ``smooth`` is the schedule whose short fit the kernels part."""
    import subprocess
    import sys
    from pathlib import Path

    sets = reference_sets(REFERENCE)
    cap = capability()
    others = [c for c in LOWER.get(cap, ()) if c in sets]
    if not others:
        pytest.skip(f"no recorded set for kernels below {cap} (recorded: {', '.join(sorted(sets))})")
    root = Path(__file__).resolve().parents[2]
    for other in others:
        assert any(not np.array_equal(sets[other][k], sets[cap][k]) for k in sets[cap] if k.startswith("smooth/")), \
            f"the {other} and {cap} sets of smooth are the same: nothing to tell apart"
        run = subprocess.run([sys.executable, "-m", "tests.fit.reference", "--check", "smooth"], cwd=root,
                             env=with_kernels(other), capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"with {other} kernels: reproduced" in run.stdout
