"""The rig in animation.glb: the built-in creature's bones, skinned and moving as a fit
exports them, come out as a joint tree (legs hanging off the body) that re-skins exactly,
keys at the clip's rate, and passes the structural checks and the Khronos validator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lasr.io.gltf import opencv_from_gltf, posed_vertices, write_glb
from lasr.model.tree import tree_depth
from tests.gltf_reader import glb_joint_parents, glb_key_times, read_glb_and_pose, read_glb_arrays, validate_glb
from tests.model.test_tree import creature_rig

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(os.environ.get("LASR_GLTF_VALIDATOR", ROOT / "experiments" / "gltf_validator"))


@pytest.fixture(scope="module")
def creature_glb(tmp_path_factory):
    """The creature's rig as a fit's skeleton.npz holds it (no tree given: the writer
    estimates it), seen by a camera 3 units in front of it (OpenCV axes), keyed at 12 fps."""
    W, X, F, G, _ = creature_rig(frames=16)
    T = len(G)
    d = {"rest_vertices": X, "faces": F, "skinning_weights": W, "bone_transforms": G,
         "root_rotations": np.tile(np.diag([1.0, -1.0, -1.0]), (T, 1, 1)),
         "root_translations": np.tile([0.0, 0.6, 3.0], (T, 1))}
    path = tmp_path_factory.mktemp("rig") / "animation.glb"
    info = write_glb(path, d, fps=12.0)
    return path, d, info


def test_the_creature_glb_is_a_rig_that_reskins(creature_glb):
    from lasr.examples.creature import BONES, PARENTS

    path, d, info = creature_glb
    parents = glb_joint_parents(path)
    assert parents.tolist() == list(PARENTS) == info["parents"].tolist()
    assert tree_depth(parents) >= 3
    for leg in ("fl", "fr", "bl", "br"):  # foot -> knee -> hip -> body
        shin = BONES.index("shin_" + leg)
        assert BONES[parents[shin]] == "leg_" + leg and BONES[parents[parents[shin]]] == "body"
    assert validate_glb(path) == []
    T = d["bone_transforms"].shape[0]
    times = glb_key_times(path)
    assert len(times) == T and abs(times[-1] - (T - 1) / 12) < 1e-6
    ref = posed_vertices(d["rest_vertices"], d["skinning_weights"], d["bone_transforms"], d["root_rotations"],
                         d["root_translations"])
    diag = np.linalg.norm(d["rest_vertices"].max(0) - d["rest_vertices"].min(0))
    for t in range(T):
        got = opencv_from_gltf(read_glb_and_pose(path, t))
        assert np.linalg.norm(got - ref[t], axis=1).max() < 0.01 * diag, t
    # the bind pose: joints where the parts turn (hip above knee above foot), each joint's
    # +y toward its child, as Blender's importer draws bones
    bind = np.linalg.inv(read_glb_arrays(path)["inverse_bind_matrices"])
    hip, knee = BONES.index("leg_fl"), BONES.index("shin_fl")
    assert bind[hip, 1, 3] > bind[knee, 1, 3] > 0.2
    step = bind[knee, :3, 3] - bind[hip, :3, 3]
    assert np.allclose(bind[hip, :3, 1], step / np.linalg.norm(step), atol=1e-6)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(not (VALIDATOR / "node_modules" / "gltf-validator").is_dir(),
                    reason="the Khronos validator is not installed (cd experiments/gltf_validator && npm install)")
def test_khronos_validator_finds_no_issue(creature_glb):
    path = creature_glb[0]
    r = subprocess.run(["node", str(VALIDATOR / "validate.mjs"), str(path)], capture_output=True, text=True,
                       timeout=120)
    report = json.loads(r.stdout.splitlines()[0])
    print(report)
    assert r.returncode == 0 and report["numErrors"] == 0, report["messages"]
    assert report["numWarnings"] == 0 and report["info"]["hasSkins"] and report["info"]["animationCount"] == 1
