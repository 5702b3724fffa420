"""The synthetic creature clip (lasr.examples.creature): layout, truth, motion, determinism, cache."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lasr import evaluate as ev
from lasr.geometry.mesh import signed_volume_np
from lasr.examples import clip as clipmod
from lasr.examples import creature as cr
from lasr.io.obj import read_obj
from lasr.examples import default_example_dir, make_creature_clip, read_truth

N, S, SEED = 6, 64, 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_creature_clip(tmp_path_factory.mktemp("clip") / "creature", frames=N, size=S, seed=SEED)


def _cams(clip):
    return json.loads((clip / "gt" / "cameras.json").read_text())


def _world_meshes(clip):
    """Camera-space GT meshes mapped back to world with the GT world_to_camera."""
    out = []
    for i, c in enumerate(_cams(clip)["frames"]):
        V, F = read_obj(clip / "gt" / "meshes" / f"{i:05d}.obj")
        T = np.array(c["world_to_camera"])
        out.append(((V - T[:3, 3]) @ T[:3, :3], F))
    return out


@pytest.fixture(scope="module")
def truth():
    """The creature, its posed world vertices for the N frames, hidden faces, GT vertex ids."""
    c = cr.build_creature()
    world = np.stack([cr.skin(c, cr.pose_creature(c, ph)) for ph in 2 * np.pi * np.arange(N) / N])
    hidden = cr.hidden_faces(c, world)
    return c, world, hidden, np.unique(c.faces[~hidden])


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _decoded(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_layout(clip):
    for sub, ext in (("frames", "png"), ("masks", "png"), ("gt/meshes", "obj")):
        assert sorted(p.name for p in (clip / sub).iterdir()) == [f"{i:05d}.{ext}" for i in range(N)]
    for i in range(N):
        im = Image.open(clip / "frames" / f"{i:05d}.png")
        assert im.mode == "RGB" and im.size == (S, S)
        m = np.asarray(Image.open(clip / "masks" / f"{i:05d}.png"))
        assert m.dtype == np.uint8 and m.shape == (S, S) and set(np.unique(m)) <= {0, 255}
    assert Image.open(clip / "preview.png").size[1] >= S
    info = json.loads((clip / "gt" / "info.json").read_text())
    V, F = read_obj(clip / "gt" / "meshes" / "00000.obj")
    assert info["asset"] == "lasr creature" and info["frames"] == N and info["res"] == [S, S]
    assert (info["vertices"], info["faces"]) == (len(V), len(F)) and len(F) <= 6000
    assert info["seed"] == SEED and info["bbox_diag"] > 0 and info["fps"] > 0
    cams = _cams(clip)
    assert cams["convention"].startswith("OpenCV") and (cams["width"], cams["height"]) == (S, S)
    assert [c["frame"] for c in cams["frames"]] == list(range(N))
    for c in cams["frames"]:
        assert (c["cx"], c["cy"]) == ((S - 1) / 2, (S - 1) / 2) and c["fx"] == c["fy"] > 0
        T = np.array(c["world_to_camera"])
        assert T.shape == (4, 4) and np.allclose(T[3], [0, 0, 0, 1])
        assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9) and np.linalg.det(T[:3, :3]) > 0
    if info["render"]["video"]:
        assert (clip / "video.mp4").stat().st_size > 0


def test_masks_match_meshes(clip):
    """Masks are non-empty, inside the frame, and equal the evaluator's own
    re-projection of the GT meshes with the GT cameras."""
    cams = _cams(clip)["frames"]
    for i in range(N):
        m = np.asarray(Image.open(clip / "masks" / f"{i:05d}.png")) >= 128
        assert 0.03 < m.mean() < 0.6
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
        V, F = read_obj(clip / "gt" / "meshes" / f"{i:05d}.obj")
        assert V[:, 2].min() > 0
        c = cams[i]
        sil = ev.silhouette(V, F, np.array([c["fx"], c["fy"], c["cx"], c["cy"]]), S, S)
        iou = (sil & m).sum() / (sil | m).sum()
        assert iou > 0.98, (i, iou)


def test_creature_differs_from_background(clip):
    """The creature is warm, the background cool: a mean-colour gap, and texture on both."""
    for i in (0, N - 1):
        im = np.asarray(Image.open(clip / "frames" / f"{i:05d}.png")).astype(float)
        m = np.asarray(Image.open(clip / "masks" / f"{i:05d}.png")) >= 128
        fg, bg = im[m], im[~m]
        assert fg[:, 0].mean() - fg[:, 2].mean() > 40  # red over blue on the creature
        assert bg[:, 2].mean() - bg[:, 0].mean() > 5  # blue over red behind it
        assert fg.std(0).mean() > 20 and bg.std(0).mean() > 10


def test_topology_constant(clip):
    meshes = _world_meshes(clip)
    V0, F0 = meshes[0]
    for V, F in meshes[1:]:
        assert V.shape == V0.shape and np.array_equal(F, F0)
    assert F0.min() == 0 and F0.max() == len(V0) - 1


def test_articulates(clip, truth):
    """After the best rigid alignment to frame 0, frames still differ by several % of
    the size (legs, tail, head move relative to the body), while the body part alone
    stays rigid."""
    meshes = _world_meshes(clip)
    c, _, _, used = truth
    part = c.part[used]
    body = part == c.parts.index("body")
    diag = json.loads((clip / "gt" / "info.json").read_text())["bbox_diag"]

    def rigid_residual(A, B):
        a, b = A - A.mean(0), B - B.mean(0)
        U, _, Vt = np.linalg.svd(a.T @ b)
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
        R = U @ D @ Vt
        return np.sqrt(((a @ R - b) ** 2).sum(1).mean())

    V0 = meshes[0][0]
    whole = [rigid_residual(V, V0) / diag for V, _ in meshes[1:]]
    trunk = [rigid_residual(V[body], V0[body]) / diag for V, _ in meshes[1:]]
    assert max(whole) > 0.03, whole
    assert max(trunk) < 1e-4, trunk
    # the gait: front-left and front-right legs swing in opposite phase
    fl, fr = (part == c.parts.index(n) for n in ("leg_fl", "leg_fr"))
    zs = np.array([[V[fl, 2].mean() - V[body, 2].mean(), V[fr, 2].mean() - V[body, 2].mean()] for V, _ in meshes])
    dz = zs - zs.mean(0)
    assert np.corrcoef(dz[:, 0], dz[:, 1])[0, 1] < -0.8


def test_gt_mesh_is_the_visible_surface(clip, truth):
    """The GT meshes are the posed creature less the faces buried inside other parts in
    every frame; world_to_camera maps the posed world mesh onto them; and no buried face
    is ever the visible one (4x4 sub-samples per pixel)."""
    import torch

    from lasr.render import RasterSettings
    from lasr.render.raster import rasterize

    c, world, hidden, used = truth
    assert 0.05 < hidden.mean() < 0.3
    meshes = _world_meshes(clip)
    assert len(meshes[0][1]) == (~hidden).sum() and len(meshes[0][0]) == len(used)
    for i, (V, _) in enumerate(meshes):
        assert np.abs(V - world[i, used]).max() < 1e-5
    ss = 4
    for i, cam in enumerate(_cams(clip)["frames"]):
        T = np.array(cam["world_to_camera"])
        Vc = world[i] @ T[:3, :3].T + T[:3, 3]
        K = torch.tensor([[ss * cam["fx"], ss * cam["fy"], ss * cam["cx"] + (ss - 1) / 2, ss * cam["cy"] + (ss - 1) / 2]])
        fr = rasterize(torch.from_numpy(Vc)[None], torch.from_numpy(c.faces), K,
                       RasterSettings(image_size=(ss * S, ss * S), sigma=0.0, faces_per_pixel=1))
        p2f = fr.pix_to_face[0, ..., 0].numpy()
        assert not hidden[p2f[p2f >= 0]].any()


def test_camera_orbits(clip):
    cams = _cams(clip)["frames"]
    Rs = [np.array(c["world_to_camera"])[:3, :3] for c in cams]
    ts = [np.array(c["world_to_camera"])[:3, 3] for c in cams]
    for a, b in zip(Rs, Rs[1:]):
        assert not np.allclose(a, b)
    rel = Rs[-1] @ Rs[0].T
    angle = np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))
    assert angle == pytest.approx(90.0, abs=1e-6)
    centres = [-R.T @ t for R, t in zip(Rs, ts)]  # camera centres in world
    assert np.ptp([np.linalg.norm(ci - centres[0]) for ci in centres]) > 0.5
    # the camera looks down at the creature from above (elevation 15 deg, world +Y up)
    target = np.array(json.loads((clip / "gt" / "info.json").read_text())["camera"]["target_world"])
    for ci in centres:
        d = ci - target
        assert np.degrees(np.arcsin(d[1] / np.linalg.norm(d))) == pytest.approx(15.0, abs=1e-6)


def test_deterministic(clip, tmp_path):
    same = make_creature_clip(tmp_path / "same", frames=N, size=S, seed=SEED)
    a, b = _files(clip), _files(same)
    assert a.keys() == b.keys()
    # every file is bit-identical, except the H.264 preview video: x264's output bytes
    # are not reproducible from run to run here, so the decoded frames are compared
    assert [k for k in a if a[k] != b[k] and k != "video.mp4"] == []
    if "video.mp4" in a:
        va, vb = _decoded(clip / "video.mp4"), _decoded(same / "video.mp4")
        assert va.shape == vb.shape == (N, S, S, 3)
        assert np.abs(va.astype(int) - vb.astype(int)).mean() < 1.0
    other = make_creature_clip(tmp_path / "other", frames=N, size=S, seed=SEED + 1)
    c = _files(other)
    for i in range(N):
        assert c[f"frames/{i:05d}.png"] != a[f"frames/{i:05d}.png"]
        # the seed sets the texture, not the geometry or motion
        assert c[f"gt/meshes/{i:05d}.obj"] == a[f"gt/meshes/{i:05d}.obj"]


def test_cache_reuse_and_force(tmp_path):
    d = tmp_path / "creature"
    kw = dict(frames=3, size=32, seed=0)
    assert make_creature_clip(d, **kw) == d
    info = d / "gt" / "info.json"
    stamp = (info.stat().st_mtime_ns, (d / "frames" / "00000.png").stat().st_mtime_ns, d.stat().st_ino)
    t0 = time.perf_counter()
    make_creature_clip(d, **kw)
    assert time.perf_counter() - t0 < 1.0
    assert (info.stat().st_mtime_ns, (d / "frames" / "00000.png").stat().st_mtime_ns, d.stat().st_ino) == stamp
    make_creature_clip(d, force=True, **kw)
    assert d.stat().st_ino != stamp[2] or info.stat().st_mtime_ns != stamp[0]
    # other parameters regenerate in place
    make_creature_clip(d, frames=4, size=32, seed=0)
    assert json.loads(info.read_text())["frames"] == 4 and len(list((d / "masks").iterdir())) == 4
    # an incomplete clip (a frame deleted) is regenerated
    (d / "masks" / "00001.png").unlink()
    make_creature_clip(d, frames=4, size=32, seed=0)
    assert (d / "masks" / "00001.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["creature"]  # no temp / old folders left


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(clipmod, "_write_preview", boom)
    with pytest.raises(RuntimeError):
        make_creature_clip(tmp_path / "creature", frames=2, size=32)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_foreign_folder(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        make_creature_clip(d, frames=2, size=32)
    assert (d / "notes.txt").read_text() == "keep me"


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LASR_EXAMPLES", str(tmp_path / "ex"))
    assert default_example_dir() == tmp_path / "ex" / "creature"
    monkeypatch.delenv("LASR_EXAMPLES")
    assert default_example_dir() == Path("~/.cache/lasr/examples/creature").expanduser()


def test_evaluator_scores_truth_as_perfect(clip, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copytree(clip / "gt" / "meshes", pred / "meshes")
    shutil.copy(clip / "gt" / "cameras.json", pred / "cameras.json")
    res = ev.evaluate(pred, clip, icp_points=2000)
    s = res["summary"]
    assert res["frames_evaluated"] == N and not res["missing"]
    assert s["mask_iou"]["worst"] > 0.995
    assert s["per_frame"]["f2"]["worst"] == pytest.approx(1.0)
    assert s["sequence"]["f5"]["worst"] == pytest.approx(1.0)


def test_rig_is_sane():
    c = cr.build_creature()
    assert np.allclose(c.weights.sum(1), 1.0) and (c.weights >= 0).all()
    assert len(c.faces) <= 6000 and c.faces.max() == len(c.verts) - 1
    # every part is a closed, outward-oriented surface: each edge used twice, positive volume
    for p in range(len(c.parts)):
        sel = np.flatnonzero(c.part == p)
        F = c.faces[np.isin(c.faces[:, 0], sel)]
        e = np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), 1)
        _, cnt = np.unique(e, axis=0, return_counts=True)
        assert (cnt == 2).all(), c.parts[p]
        assert signed_volume_np(c.verts, F) > 0
    # the walk cycle loops
    G = cr.pose_creature(c, 0.0)
    assert np.allclose(cr.skin(c, G), cr.skin(c, cr.pose_creature(c, 2 * np.pi)))


def test_read_truth_gives_the_written_meshes_and_cameras(clip):
    V, F, cams = read_truth(clip)
    assert V.shape[0] == N == len(cams["frames"]) and V.shape[2] == 3
    for i in (0, N - 1):
        Vi, Fi = read_obj(clip / "gt" / "meshes" / f"{i:05d}.obj")
        assert np.array_equal(V[i], Vi) and np.array_equal(F, Fi)
    assert cams == _cams(clip)
