"""`python -m lasr.view`: the viewer serves its page on 127.0.0.1 and holds the fit's scene
(posed mesh, skeleton tree, input frame in the camera's frustum) frame by frame."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lasr.io.final import FinalContent, write_final
from lasr.io.gltf import posed_vertices
from tests.model.test_tree import creature_rig
from tests.preprocess.synth import write_folder

ROOT = Path(__file__).resolve().parents[2]
T = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished fit's folder: the creature's rig over 4 frames as final/ (no tree given in
    skeleton.npz: the viewer estimates it), and its input frames (a gradient per frame)."""
    root = tmp_path_factory.mktemp("view")
    W, X, F, G, _ = creature_rig(frames=T)
    R = np.tile(np.diag([1.0, -1.0, -1.0]), (T, 1, 1))
    t = np.tile([0.0, 0.6, 3.0], (T, 1))
    skel = {"rest_vertices": X, "faces": F, "skinning_weights": W, "bone_transforms": G, "root_rotations": R,
            "root_translations": t}
    K = np.tile([100.0, 100.0, 47.5, 31.5], (T, 1))
    write_final(root / "final", FinalContent(
        verts=posed_vertices(X, W, G, R, t), faces=F, rest_verts=X, colors=np.full((len(X), 3), 0.3),
        intrinsics=K, source_size=(96, 64), source_frames=np.arange(T), skeleton=skel, fps=12.0))
    frames = np.zeros((T, 64, 96, 3), np.uint8)
    frames[..., 0] = np.arange(T)[:, None, None] * 60
    write_folder(root / "frames", frames)
    return root


def test_viewer_serves_the_fit(run):
    from lasr.view import serve

    viewer = serve(run, port=free_port(), video=str(run / "frames"))
    try:
        assert viewer.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(viewer.url, timeout=20).read().decode()
        assert "<html" in page.lower() and "<script" in page.lower()
        d = viewer.data
        assert (d.num_frames, d.num_bones, d.fps) == (T, 13, 12.0)
        assert {"mesh", "skeleton", "joints", "camera"} <= set(viewer.nodes)
        assert viewer.gui["frame"].max == T - 1

        from lasr.examples.creature import PARENTS

        assert d.parents.tolist() == list(PARENTS)
        for t in (2, 3):
            viewer.show(t)
            assert viewer.frame == t and viewer.gui["frame"].value == t
            seg = viewer.nodes["skeleton"]
            # the tree: one segment per parent -> child edge, one per leaf (head, 4 shins, tail tip)
            assert seg.points.shape == (12 + 6, 2, 3)
            J = d.joints[t]
            for b in np.flatnonzero(d.parents >= 0):  # every edge, parent joint -> child joint
                edge = np.stack([J[d.parents[b]], J[b]])
                assert np.abs(seg.points - edge).reshape(len(seg.points), -1).max(1).min() < 1e-5, b
            assert np.allclose(np.asarray(viewer.nodes["joints"].points), d.joints[t], atol=1e-5)
            # the mesh node holds frame t's posed vertices
            import trimesh

            mesh = trimesh.load(io.BytesIO(viewer.nodes["mesh"].glb_data), file_type="glb", force="mesh",
                                process=False)
            assert np.allclose(np.sort(mesh.vertices, 0), np.sort(d.verts[t], 0), atol=1e-5)
            # the input frame of frame t, in the GUI and in the camera's frustum
            assert viewer.gui["frame image"].image[0, 0, 0] == 60 * t
        assert viewer.nodes["camera"].fov == pytest.approx(2 * np.arctan(32 / 100))
        # the rest shape: the unposed body where the root puts it
        viewer.gui["rest"].value = True
        viewer.show(1)
        mesh = trimesh.load(io.BytesIO(viewer.nodes["mesh"].glb_data), file_type="glb", force="mesh", process=False)
        assert np.allclose(np.sort(mesh.vertices, 0), np.sort(d.rest[1], 0), atol=1e-5)
        # play: the frames advance on their own
        viewer.toggle_play()
        t0 = viewer.frame
        deadline = time.time() + 5
        while viewer.frame == t0 and time.time() < deadline:
            time.sleep(0.05)
        viewer.toggle_play()
        assert viewer.frame != t0 and viewer.gui["play"].label == "play"
    finally:
        viewer.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(viewer.url, timeout=5)


def test_command_prints_its_url_and_serves(run, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "lasr.view", f"run={run}", f"port={port}",
                             f"video={run / 'frames'}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "lasr.view: open" in line or not line:
                break
        assert f"lasr.view: open http://127.0.0.1:{port}" in "".join(lines), "".join(lines)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=20).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    r = subprocess.run([sys.executable, "-m", "lasr.view"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "run= is required" in r.stderr and "Traceback" not in r.stderr
