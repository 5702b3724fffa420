"""`python -m lasr.optimize` as a user runs it: a Hydra multirun over two schedules."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.preprocess.synth import write_folder

from .synth import ellipsoid_scene

ROOT = Path(__file__).resolve().parents[2]


def _clip(tmp_path: Path) -> Path:
    data, *_ = ellipsoid_scene(T=4, size=48)
    write_folder(tmp_path / "clip" / "frames", (data.rgb.numpy() * 255).astype(np.uint8))
    write_folder(tmp_path / "clip" / "masks", data.mask.numpy() > 0.5)
    return tmp_path / "clip"


def test_multirun_over_two_schedules_writes_two_complete_runs(tmp_path):
    clip = _clip(tmp_path)
    cmd = [sys.executable, "-m", "lasr.optimize", "-m", "stages=rigid,fast", f"video={clip / 'frames'}",
           f"masks={clip / 'masks'}", f"cache_dir={tmp_path / 'cache'}", "preprocess.flow=dis",
           "train.max_steps_per_stage=2", "train.progress=false", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "multirun").iterdir())
    runs = [p for p in runs if p.is_dir() and (p / "final").exists()]
    assert [p.name for p in runs] == ["0_rigid", "1_fast"]
    for run in runs:
        final = run / "final"
        assert len(list((final / "meshes").glob("*.obj"))) == 4
        for name in ("cameras.json", "rest.obj", "skeleton.npz", "animation.glb", "metrics.json"):
            assert (final / name).is_file(), (run, name)
        metrics = json.loads((final / "metrics.json").read_text())
        assert len(metrics["frames"]) == 4
        assert (run / ".hydra" / "config.yaml").is_file() and (run / "ckpt" / "last.pt").is_file()
        assert any((run / "tb").iterdir())
    assert json.loads((runs[1] / "final" / "metrics.json").read_text())["num_bones"] == 24  # fast: 24 bones in refine


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    clip = _clip(tmp_path)
    cmd = [sys.executable, "-m", "lasr.optimize", f"video={clip / 'frames'}", f"masks={clip / 'masks'}",
           f"cache_dir={tmp_path / 'cache'}", "resume=true", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "resume=true but" in r.stderr and "Traceback" not in r.stderr


def test_builtin_example_runs_reports_and_renders(tmp_path):
    """`python -m lasr.optimize` with no video: the creature clip is made, fitted (2 steps per
    stage here), scored against its truth, written to outputs/fast/<time> (the schedule it
    runs), its rig keyed at the clip's 12 fps and parented as a tree that re-skins, and its
    run folder is complete enough for `python -m lasr.videos` to find the input frames
    through .hydra/config.yaml."""
    from lasr.io.gltf import opencv_from_gltf
    from lasr.io.obj import read_obj
    from lasr.model.tree import tree_depth
    from tests.gltf_reader import glb_joint_parents, glb_key_times, read_glb_and_pose, validate_glb

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LASR_EXAMPLES": str(tmp_path / "examples")}
    cmd = [sys.executable, "-m", "lasr.optimize", f"cache_dir={tmp_path / 'cache'}",
           "train.max_steps_per_stage=2", "train.progress=false"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "fast").iterdir()
    times = glb_key_times(run / "final" / "animation.glb")
    assert len(times) == 32 and abs(times[-1] - 31 / 12) < 1e-6
    glb, parents = run / "final" / "animation.glb", np.load(run / "final" / "skeleton.npz")["parents"]
    assert glb_joint_parents(glb).tolist() == parents.tolist() and tree_depth(parents) >= 3
    assert validate_glb(glb) == []
    for t in (0, 31):
        V = read_obj(run / "final" / "meshes" / f"{t:05d}.obj")[0]
        err = np.abs(opencv_from_gltf(read_glb_and_pose(glb, frame=t)) - V).max()
        assert err < 0.01 * np.linalg.norm(V.max(0) - V.min(0))
    out = r.stdout + r.stderr
    assert "mask IoU" in out and "F-score" in out and str(run / "final") in out
    assert "rigid → articulate → refine" in out  # the fast schedule, not the lasr default
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "examples/creature/frames" in cfg
    assert len(list((run / "final" / "meshes").glob("*.obj"))) == 32
    r = subprocess.run([sys.executable, "-m", "lasr.videos", f"run={run}", "outputs=overlay", "formats=gif",
                        "stills=1", "size=64", "quiet=true"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "renders" / "overlay.gif").is_file()


def test_a_path_hydra_cannot_read_gets_the_quoted_form(tmp_path):
    """A quote or a non-ASCII letter stops Hydra's lexer: the error shows the override
    quoted (for Hydra and for the shell), and the quoted form reads back the path."""
    from lasr.cli import override_error, quoted_override

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "preprocess", "video=my clip's.mp4"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert """video="my clip's.mp4\"""" in r.stderr and "'video=\"my clip'\"'\"'s.mp4\"'" in r.stderr
    msg = override_error("masks=/data/clipé/masks")
    assert msg is not None and 'masks="/data/clipé/masks"' in msg
    assert override_error("video=plain/path.mp4") is None
    assert quoted_override("video", 'a"b\'c\\') == 'video="a\\"b\'c\\\\"'
