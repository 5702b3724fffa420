"""lasr.evaluate: metrics on synthetic clips, rasteriser checks, keypoint transfer, CLI,
and (when the shared bench is present) agreement with the reference scorer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.meshes import uv_sphere
from lasr import evaluate as E
from lasr.evaluate.align import apply_similarity, invert_similarity
from lasr.io.final import mesh_ids
from lasr.io.final import read_cameras
from lasr.io.obj import read_obj

BENCH = Path("/work/shared/bench/evaluate.py")
CLIP = Path("/work/shared/data/cesiumman_walk")


# ----------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------
def rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(deg)
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def write_obj(path, V, F):
    with open(path, "w") as fh:
        np.savetxt(fh, V, fmt="v %.9g %.9g %.9g")
        np.savetxt(fh, F + 1, fmt="f %d %d %d")


W_IMG, H_IMG, FOCAL = 96, 80, 110.0


def gt_vertices(n_frames=6):
    """A bending, swinging 'worm' (elongated sphere) in camera space, one array per frame."""
    V0, F = uv_sphere()
    V0 = V0 * np.array([0.9, 0.35, 0.22])
    out = []
    for t in range(n_frames):
        bend = 0.6 * np.sin(2 * np.pi * t / n_frames)
        V = V0.copy()
        V[:, 1] += bend * V[:, 0] ** 2  # bend along y
        V = V @ rot([0, 1, 0.2], 25 * t).T + np.array([0.1 * t - 0.25, 0.05, 3.2])
        out.append(V)
    return out, F


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    (root / "gt" / "meshes").mkdir(parents=True)
    (root / "masks").mkdir()
    from PIL import Image

    Vs, F = gt_vertices()
    cams = {"width": W_IMG, "height": H_IMG, "frames": []}
    diags = []
    for i, V in enumerate(Vs):
        write_obj(root / "gt" / "meshes" / f"{i:05d}.obj", V, F)
        K = (FOCAL, FOCAL, (W_IMG - 1) / 2, (H_IMG - 1) / 2)
        m = E.silhouette(V, F, K, W_IMG, H_IMG, ss=2)
        Image.fromarray((m * 255).astype(np.uint8)).save(root / "masks" / f"{i:05d}.png")
        cams["frames"].append({"frame": i, "fx": FOCAL, "fy": FOCAL, "cx": K[2], "cy": K[3],
                               "width": W_IMG, "height": H_IMG})
        diags.append(float(np.linalg.norm(V.max(0) - V.min(0))))
    (root / "gt" / "cameras.json").write_text(json.dumps(cams))
    (root / "gt" / "info.json").write_text(json.dumps({"bbox_diag": float(np.median(diags))}))
    return root


def make_pred(root, gt_root, transform, cams_scale=1, frames=None, F_override=None):
    """Write PRED/final/{meshes,cameras.json}; ``transform(i, V, F) -> (V, F)``."""
    fin = Path(root) / "final"
    (fin / "meshes").mkdir(parents=True, exist_ok=True)
    g = json.loads((Path(gt_root) / "gt" / "cameras.json").read_text())
    ids = mesh_ids(Path(gt_root) / "gt" / "meshes")
    for i in ids if frames is None else frames:
        V, F = read_obj(Path(gt_root) / "gt" / "meshes" / f"{i:05d}.obj")
        V, F = transform(i, V, F)
        write_obj(fin / "meshes" / f"{i:05d}.obj", V, F)
    s = cams_scale
    cams = {"width": g["width"] * s, "height": g["height"] * s, "frames": [
        {"frame": c["frame"], "fx": c["fx"] * s, "fy": c["fy"] * s, "cx": (c["cx"] + 0.5) * s - 0.5,
         "cy": (c["cy"] + 0.5) * s - 0.5} for c in g["frames"]]}
    (fin / "cameras.json").write_text(json.dumps(cams))
    return Path(root)


FAST = dict(n_points=2500, icp_points=800)


# ----------------------------------------------------------------------------
# metrics on the synthetic clip
# ----------------------------------------------------------------------------
def test_identity(clip, tmp_path):
    pred = make_pred(tmp_path, clip, lambda i, V, F: (V, F))
    r = E.evaluate(pred, clip, **FAST)
    s = r["summary"]
    assert r["frames_evaluated"] == 6 and r["missing"] == []
    assert s["per_frame"]["chamfer_pct"]["mean"] < 1.0  # sampling floor at 4k points
    assert s["per_frame"]["f2"]["worst"] > 0.99 and s["sequence"]["f5"]["worst"] == 1.0
    assert s["mask_iou"]["worst"] == 1.0  # same rasteriser made the masks
    assert abs(r["sequence_transform"]["scale"] - 1) < 0.01
    for row in r["frames"]:
        assert abs(row["per_frame"]["scale"] - 1) < 0.01 and row["per_frame"]["rot_deg"] < 2.0


def test_scale_about_camera_keeps_iou(clip, tmp_path):
    pred = make_pred(tmp_path, clip, lambda i, V, F: (1.7 * V, F), cams_scale=2)  # also rescaled intrinsics
    r = E.evaluate(pred, clip, **FAST)
    s = r["summary"]
    assert s["mask_iou"]["worst"] > 0.995
    assert s["sequence"]["chamfer_pct"]["mean"] < 1.0
    assert abs(r["sequence_transform"]["scale"] - 1 / 1.7) < 0.01


def test_similarity_and_jitter(clip, tmp_path):
    R = rot([1, 2, 0.5], 10)

    def sim(i, V, F):
        return 1.3 * (V - [0, 0, 3.2]) @ R.T + [0.05, -0.02, 3.4], F

    r = E.evaluate(make_pred(tmp_path / "sim", clip, sim), clip, **FAST)
    s = r["summary"]
    assert s["per_frame"]["chamfer_pct"]["mean"] < 1.0 and s["sequence"]["chamfer_pct"]["mean"] < 1.0
    assert s["mask_iou"]["mean"] < 0.9
    assert abs(r["sequence_transform"]["scale"] - 1 / 1.3) < 0.01

    scales = np.random.default_rng(0).uniform(0.6, 1.6, 6)
    r = E.evaluate(make_pred(tmp_path / "jit", clip, lambda i, V, F: (V * scales[i], F)), clip, **FAST)
    s = r["summary"]
    assert s["per_frame"]["chamfer_pct"]["mean"] < 1.0
    assert s["sequence"]["chamfer_pct"]["mean"] > 3.0  # drifting scale is punished only by the sequence fit
    assert s["per_frame_scale_cv"] > 0.1


def test_sphere_is_bad_and_missing_frames(clip, tmp_path):
    SV, SF = uv_sphere(10, 16)

    def sphere(i, V, F):
        c = V.mean(0)
        return SV * np.sqrt(((V - c) ** 2).sum(1).mean()) + c, SF

    r = E.evaluate(make_pred(tmp_path, clip, sphere, frames=[0, 1, 2, 4, 5]), clip, **FAST)
    s = r["summary"]
    assert r["missing"] == [3] and r["frames_evaluated"] == 5
    assert s["per_frame"]["chamfer_pct"]["mean"] > 3.0
    assert s["per_frame"]["f2"]["mean"] < 0.7
    assert s["mask_iou"]["mean"] < 0.85
    assert s["mask_iou"]["worst_frame"] in (0, 1, 2, 4, 5)
    # frames subset
    r2 = E.evaluate(tmp_path, clip, frames="0:6:2", **FAST)
    assert [row["frame"] for row in r2["frames"]] == [0, 2, 4]
    assert r2["frames"][0]["per_frame"] == r["frames"][0]["per_frame"]  # seeds depend on the frame only


def test_source_frame_mapping(clip, tmp_path):
    """A fit on every 2nd frame numbers its meshes 0..2; cameras.json source_frame maps them back."""
    fin = tmp_path / "final"
    (fin / "meshes").mkdir(parents=True)
    cams = {"width": W_IMG, "height": H_IMG, "frames": []}
    for k, src in enumerate([0, 2, 4]):
        V, F = read_obj(clip / "gt" / "meshes" / f"{src:05d}.obj")
        write_obj(fin / "meshes" / f"{k:05d}.obj", V, F)
        cams["frames"].append({"frame": k, "source_frame": src, "fx": FOCAL, "fy": FOCAL,
                               "cx": (W_IMG - 1) / 2, "cy": (H_IMG - 1) / 2})
    (fin / "cameras.json").write_text(json.dumps(cams))
    r = E.evaluate(tmp_path, clip, **FAST)
    assert [row["frame"] for row in r["frames"]] == [0, 2, 4] and r["missing"] == [1, 3, 5]
    assert r["summary"]["mask_iou"]["worst"] == 1.0
    assert any("source_frame" in w for w in r["warnings"])


# ----------------------------------------------------------------------------
# geometry pieces
# ----------------------------------------------------------------------------
def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(200, 3))
    R = rot([0.3, -1, 0.4], 37)
    B = 2.5 * A @ R.T + [1, -2, 3]
    s, R2, t = E.umeyama(A, B)
    assert abs(s - 2.5) < 1e-9 and np.allclose(R2, R) and np.allclose(t, [1, -2, 3])


def test_icp_matches_rebuilt_tree_version():
    """The inverse-mapped query equals rebuilding a tree on the moved prediction."""
    from scipy.spatial import cKDTree

    V, F = uv_sphere()
    G = E.sample_surface(V * [1, 0.5, 0.3], F, 1500, 1)
    P = E.sample_surface(V * [1, 0.5, 0.3] * 2 + 0.3, F, 1500, 2)
    T = (0.6, rot([0, 0, 1], 5), np.array([0.1, 0, 0]))
    d_ref, j_ref = cKDTree(apply_similarity(T, P)).query(G)
    d, j = cKDTree(P).query(invert_similarity(T, G))
    assert np.array_equal(j, j_ref) and np.allclose(d * T[0], d_ref)
    s, R, t = E.icp_similarity([P], [G])
    assert abs(s - 0.5) < 0.02


def test_silhouette_matches_analytic_sphere():
    V, F = uv_sphere(64, 128)
    c, r = np.array([0.2, -0.1, 4.0]), 1.0
    K, W, H = (120.0, 120.0, 63.5, 55.5), 128, 112
    m = E.silhouette(V * r + c, F, K, W, H, ss=1)
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    d = np.stack([(u - K[2]) / K[0], (v - K[3]) / K[1], np.ones_like(u, float)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    b = d @ c
    hit = b * b - (c @ c - r * r) >= 0
    # the tessellated sphere is slightly inside the true one: disagreement only at the rim
    assert (m != hit).mean() < 0.01 and (m & ~hit).sum() == 0
    # supersampled coverage >= 0.5 equals the plain mask of the 2x render pooled
    m2 = E.silhouette(V * r + c, F, K, W, H, ss=2)
    assert abs(m2.sum() - m.sum()) / m.sum() < 0.02


def test_silhouette_drops_faces_behind_camera_and_empty():
    V = np.array([[0, 0, 1.0], [1, 0, 1.0], [0, 1, -1.0]])
    assert not E.silhouette(V, np.array([[0, 1, 2]]), (50, 50, 20, 20), 40, 40).any()
    assert not E.silhouette(V, np.zeros((0, 3), int), (50, 50, 20, 20), 40, 40).any()
    V[2, 2] = 1.0
    assert E.silhouette(V, np.array([[0, 1, 2]]), (50, 50, 20, 20), 40, 40).sum() > 100


def test_pick_surface_point_on_ray():
    V, F = uv_sphere()
    V = V + [0, 0, 3.0]
    K = (100.0, 100.0, 50.0, 50.0)
    pts = np.array([[50.0, 50.0], [60.3, 41.7], [0.0, 0.0]])
    face, bary = E.pick_surface(V, F, K, pts)
    assert face[2] == -1 and (face[:2] >= 0).all()
    X = (bary[:2, :, None] * V[F[face[:2]]]).sum(1)
    uv = np.stack([K[0] * X[:, 0] / X[:, 2] + K[2], K[1] * X[:, 1] / X[:, 2] + K[3]], 1)
    assert np.allclose(uv, pts[:2], atol=1e-6)
    assert (X[:, 2] < 3.0).all()  # the front half of the sphere


# ----------------------------------------------------------------------------
# keypoints
# ----------------------------------------------------------------------------
def test_keypoint_transfer(clip, tmp_path):
    V0, _ = read_obj(clip / "gt" / "meshes" / "00000.obj")
    vid = np.random.default_rng(0).choice(len(V0), 12, replace=False)
    kp_path = tmp_path / "keypoints.json"
    kp = E.make_keypoints(clip, vid, out=kp_path)
    vis = np.array([[k[2] for k in f["keypoints"]] for f in kp["frames"]])
    assert 0.2 < vis.mean() < 0.9  # a sphere-like body hides about half of its points

    r = E.evaluate(make_pred(tmp_path / "id", clip, lambda i, V, F: (V, F), cams_scale=2), clip,
                   keypoints=kp_path, **FAST)
    assert r["summary"]["keypoint_pck"]["pooled"] == 1.0
    assert r["keypoints"]["tests"] > 0

    V_first = {}

    def frozen(i, V, F):  # frame-0 shape re-centred on each frame: wrong articulation / rotation
        V_first.setdefault("v", V)
        return V_first["v"] - V_first["v"].mean(0) + V.mean(0), F

    r2 = E.evaluate(make_pred(tmp_path / "frozen", clip, frozen), clip, keypoints=kp_path, **FAST)
    assert r2["summary"]["keypoint_pck"]["pooled"] < 0.9
    assert "keypoint PCK" in E.format_table(r2)
    per_k = r2["keypoints"]["per_keypoint"]  # each keypoint's share, pooled back to the whole
    assert min(per_k.values()) < r2["summary"]["keypoint_pck"]["pooled"] <= max(per_k.values())
    worst = min(per_k, key=per_k.get)
    assert f"keypoints transferred worst: #{worst} {per_k[worst]:.2f}" in E.format_table(r2)

    # a default gt/keypoints.json is picked up; keypoints=False skips it
    r3 = E.evaluate(tmp_path / "id", clip, keypoints=False, **FAST)
    assert "keypoint_pck" not in r3["summary"]


def test_keypoint_snapping_off_silhouette():
    V, F = uv_sphere()
    meshes = {0: (V + [0, 0, 4.0], F), 1: (V + [0.2, 0, 4.0], F)}
    K = (60.0, 60.0, 31.5, 31.5)
    cams = {0: K, 1: K}
    # keypoint 0 just outside the silhouette in frame 0: snapped onto the rim
    kps = {0: np.array([[31.5, 31.5, 1], [31.5 + 17.0, 31.5, 1]]),
           1: np.array([[31.5 + 3.0, 31.5, 1], [31.5 + 18.5, 31.5, 1]])}
    res = E.keypoint_transfer(meshes, cams, kps, {0: 900.0, 1: 900.0}, (64, 64))
    assert res["snapped"] == 1 and res["tests"] == 4 and res["pck"] == 1.0
    assert res["per_keypoint"] == {0: 1.0, 1: 1.0}


def test_keypoint_transfer_per_keypoint():
    """Keypoint 0 follows the surface (the centre, moved with the sphere); keypoint 1 is a
    different body point in each frame (right of the centre, then below it), so its
    transfers fail both ways and the per-keypoint PCK tells the two apart."""
    V, F = uv_sphere()
    meshes = {0: (V + [0, 0, 4.0], F), 1: (V + [0.2, 0, 4.0], F)}  # 3 px to the right in frame 1
    K = (60.0, 60.0, 31.5, 31.5)
    kps = {0: np.array([[31.5, 31.5, 1], [43.5, 31.5, 1]]),
           1: np.array([[34.5, 31.5, 1], [34.5, 43.5, 1]])}
    res = E.keypoint_transfer(meshes, {0: K, 1: K}, kps, {0: 900.0, 1: 900.0}, (64, 64))
    assert res["per_keypoint"] == {0: 1.0, 1: 0.0} and res["pck"] == 0.5 and res["tests"] == 4


def test_keypoint_transfer_counts_transfers_that_land_on_the_partner():
    """A left and a right keypoint (20 px apart, the threshold 6 px): in frame 1 the true
    labels trade places while the surface stays, as when a fit carries a left foot to the
    right one. Every transfer misses and lands on its partner; a third keypoint that
    misses elsewhere is not counted as swapped."""
    V, F = uv_sphere()
    meshes = {0: (V + [0, 0, 4.0], F), 1: (V + [0, 0, 4.0], F)}
    K = (60.0, 60.0, 31.5, 31.5)
    c = 31.5
    kps = {0: np.array([[c - 10, c, 1], [c + 10, c, 1], [c, c - 10, 1]]),
           1: np.array([[c + 10, c, 1], [c - 10, c, 1], [c, c + 10, 1]])}
    res = E.keypoint_transfer(meshes, {0: K, 1: K}, kps, {0: 900.0, 1: 900.0}, (64, 64), partners={0: 1, 1: 0, 2: 0})
    assert res["pck"] == 0.0 and res["tests"] == 6
    assert res["per_keypoint_swapped"] == {0: 1.0, 1: 1.0, 2: 0.0}
    kps[1][:2] = kps[0][:2]  # labelled as in frame 0: every transfer of 0 and 1 hits
    res = E.keypoint_transfer(meshes, {0: K, 1: K}, kps, {0: 900.0, 1: 900.0}, (64, 64), partners={0: 1, 1: 0})
    assert res["per_keypoint"][0] == 1.0 and res["per_keypoint_swapped"] == {0: 0.0, 1: 0.0}
    assert "per_keypoint_swapped" not in E.keypoint_transfer(meshes, {0: K, 1: K}, kps, {0: 900.0, 1: 900.0}, (64, 64))


def test_keypoint_transfer_per_pair_outcomes():
    """Three frames of a still sphere: keypoint 0 stays on one surface point (every transfer
    hits), keypoint 1 is labelled elsewhere in frame 2 (its transfers to and from frame 2
    miss, those between 0 and 1 hit), keypoint 2 is hidden in frame 1 (not tested to or from
    it). The per-pair outcomes say exactly that and add up to the pooled PCK."""
    V, F = uv_sphere()
    meshes = {f: (V + [0, 0, 4.0], F) for f in (0, 1, 2)}
    K = (60.0, 60.0, 31.5, 31.5)
    c = 31.5
    base = np.array([[c, c, 1], [c - 10, c, 1], [c + 10, c, 1]])
    kps = {0: base.copy(), 1: base.copy(), 2: base.copy()}
    kps[2][1, :2] = (c + 10, c - 10)
    kps[1][2, 2] = 0
    res = E.keypoint_transfer(meshes, {f: K for f in meshes}, kps, {f: 900.0 for f in meshes}, (64, 64), per_pair=True)
    assert res["pair_frames"] == [0, 1, 2]
    tests, hits = res["pair_tests"], res["pair_hits"]
    assert tests.shape == hits.shape == (3, 3, 3) and not tests[[0, 1, 2], [0, 1, 2]].any()
    assert tests[:, :, 0].sum() == 6 and hits[:, :, 0].sum() == 6
    assert hits[0, 1, 1] and hits[1, 0, 1] and not hits[:, 2, 1].any() and not hits[2, :, 1].any()
    assert tests[:, :, 1].sum() == 6
    assert not tests[1, :, 2].any() and not tests[:, 1, 2].any() and tests[0, 2, 2] and hits[2, 0, 2]
    assert hits.sum() / tests.sum() == res["pck"]
    for f in meshes:  # the surface point each keypoint was picked on projects onto it
        face, bary, visible = res["picked"][f]
        assert (face >= 0).all() and np.allclose(bary.sum(1), 1.0)
        assert np.array_equal(visible, kps[f][:, 2] > 0)
        X = (bary[:, :, None] * meshes[f][0][F[face]]).sum(1)
        assert np.allclose(60.0 * X[:, :2] / X[:, 2:] + c, kps[f][:, :2], atol=1e-3)
    assert "pair_hits" not in E.keypoint_transfer(meshes, {f: K for f in meshes}, kps, {f: 900.0 for f in meshes},
                                                  (64, 64))
    none = E.keypoint_transfer(meshes, {}, kps, {}, (64, 64), per_pair=True)  # no frame to score
    assert none["pck"] is None and none["pair_frames"] == [] and none["pair_tests"].size == 0 and none["picked"] == {}


# ----------------------------------------------------------------------------
# I/O and command line
# ----------------------------------------------------------------------------
def test_read_obj_polygons_and_cameras(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text("v 0 0 0 1 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nf 1/1/1 2/1 3 4\nf -4 -3 -1\n")
    V, F = read_obj(p)
    assert V.shape == (4, 3) and F.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 3]]
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"fx": 1, "fy": 2, "cx": 3, "cy": 4, "width": 10, "height": 8}))
    cams = read_cameras(c)
    assert 17 in cams and cams[17]["fy"] == 2.0 and cams[5]["width"] == 10
    c.write_text(json.dumps([{"fx": 1, "fy": 2, "cx": 3, "cy": 4}, {"fx": 5, "fy": 2, "cx": 3, "cy": 4}]))
    assert read_cameras(c)[1]["fx"] == 5.0
    assert E.parse_frames("0:10:4") == [0, 4, 8] and E.parse_frames("3,5") == [3, 5] and E.parse_frames("3+5") == [3, 5] and E.parse_frames(None) is None


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lasr.evaluate", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_writes_json(clip, tmp_path):
    pred = make_pred(tmp_path / "run", clip, lambda i, V, F: (V, F))
    out = tmp_path / "res" / "r.json"
    r = _cli(f"run={pred}", f"gt={clip}", "frames=0:6:3", f"out={out}", "points=3000", "icp_points=1000")
    assert r.returncode == 0, r.stderr
    assert "mask IoU" in r.stdout and "per-frame sim Chamfer" in r.stdout
    res = json.loads(out.read_text())
    assert [row["frame"] for row in res["frames"]] == [0, 3]
    assert set(res["summary"]) >= {"per_frame", "sequence", "mask_iou", "per_frame_scale_cv"}
    r = _cli(f"run={tmp_path / 'nothing'}", f"gt={clip}", "frames=1+4")
    assert r.returncode == 2 and "no meshes/" in r.stderr and "Traceback" not in r.stderr


def test_cli_keys_are_typed(compose_cfg):
    from hydra.errors import ConfigCompositionException

    cfg = compose_cfg("run=a", "gt=b", "frames=0:48:4", "iou=false", config_name="evaluate")
    assert cfg.frames == "0:48:4" and cfg.iou is False and cfg.points == 20000
    for bad in ("bogus=1", "points=many"):
        with pytest.raises(ConfigCompositionException, match=bad.split("=")[0]):
            compose_cfg("run=a", bad, config_name="evaluate")


# ----------------------------------------------------------------------------
# agreement with the shared bench scorer (development clip)
# ----------------------------------------------------------------------------
def _run_bench(pred, frames, out):
    subprocess.run([sys.executable, str(BENCH), "--pred", str(pred), "--gt", str(CLIP), "--frames", frames,
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    return json.loads(Path(out).read_text())


def _compare(ref, mine, tol=0.01):
    bad = []
    for mode in ("per_frame", "sequence"):
        for m in ("chamfer_pct", "f2", "f5"):
            for st in ("mean", "median", "worst"):
                a, b = ref["summary"][mode][m][st], mine["summary"][mode][m][st]
                if abs(a - b) > tol * max(abs(a), 1e-12):
                    bad.append((mode, m, st, a, b))
    for key in ("mask_iou", "drift_deg", "turn_err_deg", "folds"):
        if key not in ref["summary"]:
            continue
        for st in ("mean", "median", "worst"):
            a, b = ref["summary"][key][st], mine["summary"][key][st]
            if abs(a - b) > tol * max(abs(a), 1e-12) + 1e-6:
                bad.append((key, st, a, b))
    return bad


@pytest.mark.skipif(not (BENCH.exists() and CLIP.exists()), reason="shared bench / development clip not present")
def test_agrees_with_shared_scorer(tmp_path):
    R = rot([0.3, 1, 0.2], 8)
    rng = np.random.default_rng(3)

    def sim_noise(i, V, F):
        c = V.mean(0)
        return 1.3 * ((V - c) @ R.T + c) + [0.02, -0.03, 0.1] + rng.normal(scale=0.01, size=V.shape), F

    frames = "0:48:12"
    pred = make_pred(tmp_path / "simnoise", CLIP, sim_noise, cams_scale=2, frames=range(0, 48, 12))
    # perturb the predicted intrinsics too (IoU below 1)
    cj = json.loads((pred / "final" / "cameras.json").read_text())
    for c in cj["frames"]:
        c["fx"] *= 1.05
        c["fy"] *= 1.05
        c["cx"] += 3
    (pred / "final" / "cameras.json").write_text(json.dumps(cj))
    ref = _run_bench(pred / "final", frames, tmp_path / "ref.json")
    mine = E.evaluate(pred, CLIP, frames=frames)
    assert _compare(ref, mine) == []
    assert mine["summary"]["mask_iou"]["mean"] < 0.95  # a non-trivial IoU was compared
    assert {"drift_deg", "turn_err_deg", "folds"} <= set(ref["summary"]) and mine["summary"]["folds"]["mean"] > 0

    SV, SF = uv_sphere(24, 48)

    def sphere(i, V, F):
        c = V.mean(0)
        return SV * np.sqrt(((V - c) ** 2).sum(1).mean()) + c, SF

    frames = "20"  # one frame: nearest-neighbour queries against a sphere are slow in both scorers
    pred = make_pred(tmp_path / "sphere", CLIP, sphere, frames=[20])
    ref = _run_bench(pred / "final", frames, tmp_path / "ref2.json")
    mine = E.evaluate(pred, CLIP, frames=frames)
    assert _compare(ref, mine) == []
    assert mine["summary"]["per_frame"]["f2"]["mean"] < 0.5


def test_a_clip_without_3d_truth_gets_iou_keypoints_and_folds(clip, tmp_path):
    """A real clip (masks and keypoints, no meshes) is scored by mask IoU, keypoint-transfer
    PCK and the prediction's folded edges."""
    import shutil

    real = tmp_path / "real"
    shutil.copytree(clip / "masks", real / "masks")
    (real / "gt").mkdir()
    E.make_keypoints(clip, [0, 17, 60, 101], out=real / "gt" / "keypoints.json")
    pred = make_pred(tmp_path / "run", clip, lambda i, V, F: (V, F))
    res = E.evaluate(pred, real, n_points=2000, icp_points=500)
    s = res["summary"]
    assert not res["has_3d_truth"] and "per_frame" not in s and res["bbox_diag"] is None
    assert s["mask_iou"]["mean"] > 0.99 and s["keypoint_pck"]["pooled"] > 0.95
    assert s["folds"]["mean"] == 0.0  # the true surfaces are smooth
    assert "no 3D truth" in E.format_table(res)
    with pytest.raises(FileNotFoundError, match="neither meshes/ nor masks"):
        E.evaluate(pred, tmp_path / "empty")


def test_truth_diagonal_from_info_else_median_of_frames(tmp_path):
    from lasr.evaluate.clip import read_info, truth_diagonal

    boxes = [np.array([[0, 0, 0], [s, 0, 0]], float) for s in (1.0, 3.0, 2.0)]  # diagonals 1, 3, 2
    assert read_info(tmp_path) == {}
    assert truth_diagonal(read_info(tmp_path), boxes) == 2.0
    (tmp_path / "info.json").write_text('{"bbox_diag": 1.75}')
    assert truth_diagonal(read_info(tmp_path), boxes) == 1.75
