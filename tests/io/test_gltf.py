"""lasr.io.gltf: the written .glb re-read independently reproduces the LBS posed meshes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from lasr.io import gltf as G
from tests import gltf_reader as GR
from tests.meshes import uv_sphere
from lasr.model.skinning import lbs


def rotvec_to_matrix(r):
    r = np.asarray(r, float)
    a = np.linalg.norm(r, axis=-1, keepdims=True)
    k = r / np.maximum(a, 1e-12)
    K = np.zeros(r.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    a = a[..., None]
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def ellipsoid(n_lat=12, n_lon=20, radii=(1.0, 0.6, 0.4)):
    return uv_sphere(n_lat, n_lon, radii)


def synthetic_skeleton(B=8, T=5, max_bones=None, seed=0, bone_deg=35.0):
    """Gaussian bones -> smooth weights; random per-frame bone and root motion.

    ``max_bones``: keep only that many largest weights per vertex (renormalised)."""
    rng = np.random.default_rng(seed)
    X, F = ellipsoid()
    centers = X[rng.choice(len(X), B, replace=False)] * 0.7
    orient = rotvec_to_matrix(rng.normal(size=(B, 3)))
    log_prec = rng.uniform(0.5, 2.0, size=(B, 3))
    d = np.einsum("bij,vbj->vbi", np.swapaxes(orient, -1, -2), X[:, None] - centers[None])  # bone-local
    logit = -0.5 * (np.exp(log_prec)[None] * d**2).sum(-1) * 4.0
    W = np.exp(logit - logit.max(1, keepdims=True))
    W /= W.sum(1, keepdims=True)
    if max_bones is not None:
        cut = np.sort(W, 1)[:, -max_bones][:, None]
        W = np.where(W >= cut, W, 0.0)
        W /= W.sum(1, keepdims=True)
    Rb = rotvec_to_matrix(rng.normal(size=(T, B, 3)) * np.radians(bone_deg) / np.sqrt(3))
    tb = rng.normal(size=(T, B, 3)) * 0.05
    Gt = np.tile(np.eye(4), (T, B, 1, 1))
    Gt[..., :3, :3] = Rb
    Gt[..., :3, 3] = centers + tb - np.einsum("tbij,bj->tbi", Rb, centers)  # rotate about the centre
    Rr = rotvec_to_matrix(rng.normal(size=(T, 3)) * 1.2)
    tr = rng.normal(size=(T, 3)) * 0.3 + [0, 0, 4.0]
    return {"bone_centers": centers, "bone_orientations": orient, "bone_log_precisions": log_prec,
            "skinning_weights": W, "root_rotations": Rr, "root_translations": tr, "bone_transforms": Gt,
            "rest_vertices": X, "faces": F}


def posed_lbs(d, use_root=True):
    """The contract: X_cam = R_root (sum_b w_b G_tb X) + t_root, with lasr's own lbs."""
    P = lbs(torch.tensor(d["rest_vertices"]), torch.tensor(d["skinning_weights"]),
            torch.tensor(d["bone_transforms"])).numpy()
    if not use_root:
        return P
    return np.einsum("tij,tvj->tvi", d["root_rotations"], P) + d["root_translations"][:, None]


def diag(X):
    return float(np.linalg.norm(X.max(0) - X.min(0)))


# ----------------------------------------------------------------------------
@pytest.mark.parametrize("B,max_bones", [(8, 4), (6, 2), (3, None), (1, None)])
def test_exact_with_at_most_four_bones(tmp_path, B, max_bones):
    d = synthetic_skeleton(B=B, max_bones=max_bones, seed=B)
    path = tmp_path / "m.glb"
    info = G.write_glb(path, d, colors=np.random.default_rng(0).random((len(d["rest_vertices"]), 3)), fps=12)
    assert info["trunc_err_max"] < 1e-6 and info["bone_rigidity_err"] < 1e-6
    assert GR.validate_glb(path) == []
    ref = posed_lbs(d)
    for t in range(ref.shape[0]):
        got = G.opencv_from_gltf(GR.read_glb_and_pose(path, t))
        err = np.abs(got - ref[t]).max() / diag(ref[t])
        assert err < 1e-5, (t, err)
        # the same key by time
        got2 = G.opencv_from_gltf(GR.read_glb_and_pose(path, time=t / 12))
        assert np.abs(got2 - got).max() < 1e-6  # float32 key times


def lasr_style_skeleton(B=8, T=6, seed=0, bone_deg=25.0):
    """Dense LASR Gaussian-bone weights (k-means init, temperature 10) and random bone rotations."""
    from lasr.model.skinning import gaussian_skinning_weights, init_bones_from_kmeans

    d = synthetic_skeleton(B=B, T=T, seed=seed, bone_deg=bone_deg)
    X = torch.tensor(d["rest_vertices"])
    c, q, lp = init_bones_from_kmeans(X, B, seed=seed)
    W = gaussian_skinning_weights(X, c, torch.eye(3, dtype=X.dtype).expand(B, 3, 3), lp).numpy()
    rng = np.random.default_rng(seed + 1)
    Rb = rotvec_to_matrix(rng.normal(size=(T, B, 3)) * np.radians(bone_deg) / np.sqrt(3))
    c = c.numpy()
    Gt = np.tile(np.eye(4), (T, B, 1, 1))
    Gt[..., :3, :3] = Rb
    Gt[..., :3, 3] = c - np.einsum("tbij,bj->tbi", Rb, c)
    d.update(skinning_weights=W, bone_centers=c, bone_orientations=np.tile(np.eye(3), (B, 1, 1)),
             bone_log_precisions=lp.numpy(), bone_transforms=Gt)
    return d


def test_dense_weights_top4_truncation_small(tmp_path):
    d = lasr_style_skeleton(B=8, T=6, seed=11)
    assert ((d["skinning_weights"] > 1e-3).sum(1) > 4).any()  # really dense
    path = tmp_path / "dense.glb"
    info = G.write_glb(path, d)
    ref = posed_lbs(d)
    errs = []
    for t in range(ref.shape[0]):
        got = G.opencv_from_gltf(GR.read_glb_and_pose(path, t))
        errs.append(np.linalg.norm(got - ref[t], axis=1).max() / diag(d["rest_vertices"]))
    print(f"top-4 truncation: max {max(errs):.2e} of the rest bbox diagonal; writer reports "
          f"{info['trunc_err_max']:.2e} (mean {info['trunc_err_mean']:.2e}), min top-4 mass {info['top4_mass_min']:.4f}")
    assert max(errs) < 0.01
    assert abs(max(errs) - info["trunc_err_max"]) < 1e-5  # the writer's own estimate is right
    # broader, randomly oriented bones with large independent rotations: still reported honestly
    hard = synthetic_skeleton(B=8, T=6, seed=11)
    info = G.write_glb(tmp_path / "hard.glb", hard)
    print(f"top-4 truncation, broad random bones: max {info['trunc_err_max']:.2e}, mean {info['trunc_err_mean']:.2e}, "
          f"min top-4 mass {info['top4_mass_min']:.3f}")
    assert info["trunc_err_max"] < 0.1


def test_structure(tmp_path):
    d = synthetic_skeleton(B=5, T=4, seed=3, max_bones=4)
    V = len(d["rest_vertices"])
    parents = np.array([-1, 0, 1, 0, 3])  # a given tree: 0 -> 1 -> 2, 0 -> 3 -> 4
    joints = np.random.default_rng(3).normal(size=(5, 3)) * 0.3
    d.update(parents=parents, joint_positions=joints)
    path = tmp_path / "s.glb"
    info = G.write_glb(path, d, colors=np.full((V, 3), 0.5), fps=10, intrinsics=(300.0, 310.0, 640, 480))
    assert info["parents"].tolist() == parents.tolist()
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", raw)
    assert (magic, version, length) == (b"glTF", 2, len(raw)) and len(raw) % 4 == 0
    jlen = struct.unpack_from("<I", raw, 12)[0]
    doc = json.loads(raw[20:20 + jlen])
    assert GR.validate_glb(path) == []

    prim = doc["meshes"][0]["primitives"][0]
    acc = doc["accessors"]
    pos = acc[prim["attributes"]["POSITION"]]
    X32 = d["rest_vertices"].astype(np.float32)
    assert pos["count"] == V and pos["min"] == X32.min(0).tolist() and pos["max"] == X32.max(0).tolist()
    assert acc[prim["indices"]]["count"] == 3 * len(d["faces"])
    assert {"POSITION", "NORMAL", "COLOR_0", "JOINTS_0", "WEIGHTS_0"} <= set(prim["attributes"])
    for bv in doc["bufferViews"]:
        assert bv["byteOffset"] % 4 == 0

    arr = GR.read_glb_arrays(path)
    assert np.allclose(arr["COLOR_0"], 0.5) and np.array_equal(arr["indices"], d["faces"])
    assert arr["JOINTS_0"].max() < 5 and np.allclose(arr["WEIGHTS_0"].sum(1), 1, atol=1e-6)
    skin = doc["skins"][0]
    assert len(skin["joints"]) == 5 and acc[skin["inverseBindMatrices"]]["count"] == 5
    # the joints form the tree: bone b is node 3 + b, a child of its parent's node
    assert doc["nodes"][2]["children"] == [3]
    for b in range(5):
        assert doc["nodes"][3 + b].get("children", []) == [3 + c for c in np.flatnonzero(parents == b)]
    # inverse bind matrices are the inverses of the joint frames: at the joint, local +y
    # toward the children (the centroid of their directions), a leaf's toward its centroid
    bind = np.linalg.inv(arr["inverse_bind_matrices"])
    assert np.allclose(bind[:, :3, 3], joints, atol=1e-5)
    assert np.allclose(bind[:, :3, :3] @ np.swapaxes(bind[:, :3, :3], 1, 2), np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(bind[:, :3, :3]), 1, atol=1e-5)
    centroid = d["skinning_weights"].T @ d["rest_vertices"] / d["skinning_weights"].sum(0)[:, None]
    for b, toward in [(0, joints[1] + joints[3] - 2 * joints[0]), (1, joints[2] - joints[1]),
                      (2, centroid[2] - joints[2]), (4, centroid[4] - joints[4])]:
        assert np.allclose(bind[b, :3, 1], toward / np.linalg.norm(toward), atol=1e-5), b
    # the animated LOCAL transforms compose along the tree to the bone transforms
    ref = posed_lbs(d)
    for t in range(4):
        got = G.opencv_from_gltf(GR.read_glb_and_pose(path, t))
        assert np.abs(got - ref[t]).max() / diag(ref[t]) < 1e-5

    anim = doc["animations"][0]
    assert len(anim["channels"]) == 2 * (5 + 1)  # root + joints, translation + rotation
    assert all(s["interpolation"] == "LINEAR" for s in anim["samplers"])
    times = acc[anim["samplers"][0]["input"]]
    assert times["count"] == 4 and times["min"] == [0.0] and abs(times["max"][0] - 0.3) < 1e-7
    names = [n.get("name") for n in doc["nodes"]]
    assert names[:4] == ["mesh", "opencv_to_gltf", "root", "bone_00"]
    assert doc["extras"]["lasr"]["parents"] == parents.tolist()
    assert doc["nodes"][1]["rotation"] == [1.0, 0.0, 0.0, 0.0]
    cam = doc["cameras"][0]["perspective"]
    assert abs(cam["yfov"] - 2 * np.arctan(240 / 310)) < 1e-9

    # without animation the nodes' static TRS show frame 0
    static = G.opencv_from_gltf(GR.read_glb_and_pose(path))
    assert np.abs(static - G.opencv_from_gltf(GR.read_glb_and_pose(path, 0))).max() < 1e-6

    # pygltflib and trimesh both open it
    import trimesh

    scene = trimesh.load(path)
    assert len(scene.geometry) == 1


def test_object_frame_and_interpolation(tmp_path):
    d = synthetic_skeleton(B=4, T=3, seed=5)
    path = tmp_path / "o.glb"
    G.write_glb(path, d, include_root=False, fps=2)
    ref = posed_lbs(d, use_root=False)
    for t in range(3):
        got = G.opencv_from_gltf(GR.read_glb_and_pose(path, t))
        assert np.abs(got - ref[t]).max() / diag(ref[t]) < 1e-5
    # halfway between keys: LINEAR translations, slerped rotations -> between the two poses
    mid = G.opencv_from_gltf(GR.read_glb_and_pose(path, time=0.25))
    a, b = ref[0], ref[1]
    assert np.linalg.norm(mid - 0.5 * (a + b), axis=1).max() < np.linalg.norm(a - b, axis=1).max()
    # past the last key: clamped
    assert np.allclose(GR.read_glb_and_pose(path, time=99.0), GR.read_glb_and_pose(path, 2))


def test_translation_only_interpolates_linearly(tmp_path):
    d = synthetic_skeleton(B=2, T=2, seed=7)
    d["bone_transforms"] = np.tile(np.eye(4), (2, 2, 1, 1))
    d["root_rotations"] = np.tile(np.eye(3), (2, 1, 1))
    d["root_translations"] = np.array([[0, 0, 4.0], [1.0, -2.0, 6.0]])
    path = tmp_path / "t.glb"
    G.write_glb(path, d, fps=1)
    got = G.opencv_from_gltf(GR.read_glb_and_pose(path, time=0.25))
    assert np.allclose(got, d["rest_vertices"] + [0.25, -0.5, 4.5], atol=1e-5)


def test_npz_path_and_torch_inputs(tmp_path):
    d = synthetic_skeleton(B=3, T=2, seed=9, max_bones=3)
    npz = tmp_path / "skeleton.npz"
    np.savez(npz, **{k: (v.astype(np.float32) if k != "faces" else v) for k, v in d.items()})
    G.write_glb(tmp_path / "a.glb", npz)
    G.write_glb(tmp_path / "b.glb", {k: torch.tensor(v) for k, v in d.items()},
                colors=torch.rand(len(d["rest_vertices"]), 3))
    ref = posed_lbs(d)
    for name in ("a.glb", "b.glb"):
        got = G.opencv_from_gltf(GR.read_glb_and_pose(tmp_path / name, 1))
        assert np.abs(got - ref[1]).max() / diag(ref[1]) < 2e-5  # float32 npz inputs
    with pytest.raises(KeyError):
        G.write_glb(tmp_path / "c.glb", {"rest_vertices": d["rest_vertices"]})
    with pytest.raises(ValueError):
        G.write_glb(tmp_path / "c.glb", d, colors=np.zeros((3, 3)))
    for bad in ([-1, 0], [-1, -1, 0], [1, 2, 0], [-1, 0, 5]):  # wrong length, two roots, a cycle, no bone 5
        with pytest.raises(ValueError, match="parents"):
            G.write_glb(tmp_path / "c.glb", {**d, "parents": np.array(bad)})


def test_quaternion_roundtrip_near_pi():
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(200, 3))
    angles = np.concatenate([rng.uniform(0, np.pi, 150), np.pi - rng.uniform(0, 1e-6, 50)])
    R = rotvec_to_matrix(axes / np.linalg.norm(axes, axis=1, keepdims=True) * angles[:, None])
    q = G.quat_from_matrix(R)
    assert np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.abs(G.matrix_from_quat(q) - R).max() < 1e-9


def test_top_k_weights():
    W = np.array([[0.1, 0.2, 0.3, 0.15, 0.25], [1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    j, w = G.top_k_weights(W, 4)
    assert j[0].tolist() == [2, 4, 1, 3] and np.isclose(w[0].sum(), 1, atol=1e-7)
    assert np.allclose(w[0], np.array([0.3, 0.25, 0.2, 0.15]) / 0.9, atol=1e-7)
    assert j[1].tolist() == [0, 0, 0, 0] and w[1].tolist() == [1, 0, 0, 0]
    assert w[2, 0] == 1.0  # no positive weight -> all on the first joint
