"""``python -m lasr.videos``: overlay, views and turntable of a finished fit.

Every test builds its own tiny run folder (a box, two bones, four frames) with the
project's writers; no shared data, no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lasr import videos as R
from lasr.errors import InputError
from lasr.io.final import read_final
from lasr.io.frames import find_frames
from lasr.io.obj import write_obj as save_obj
from lasr.io.video import write_mp4
from lasr.videos.outputs import BACKGROUND
from lasr.videos.shading import bone_palette

N = 4  # frames
SRC = 128  # source frame size recorded in cameras.json
IMG = 64  # size of the input frames on disk (like a downscaled cache)
HALF = np.array([1.0, 0.2, 0.4])  # box half extents: long in x, thin in y, medium in z
BG = np.array(BACKGROUND)


def box(half):
    """A box centred at 0 (subdivided: 386 vertices, 768 outward CCW triangles)."""
    import trimesh

    m = trimesh.creation.box(extents=2 * np.asarray(half))
    for _ in range(3):
        m = m.subdivide()
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


def intrinsics():
    f = 1.2 * SRC
    return np.array([f, f, (SRC - 1) / 2.0, (SRC - 1) / 2.0])


def posed(i):
    V, _ = box(HALF)
    return V + np.array([0.1 * i, 0.0, 4.0])


def make_run(root: Path, hydra: bool = True) -> Path:
    """A finished fit's run folder: final/ as lasr.export writes it, frames, .hydra/."""
    final = root / "final"
    (final / "meshes").mkdir(parents=True)
    V, F = box(HALF)
    for i in range(N):
        save_obj(final / "meshes" / f"{i:05d}.obj", posed(i), F)
    fx, fy, cx, cy = intrinsics()
    cams = {"width": SRC, "height": SRC, "frames": [
        {"frame": i, "source_frame": i, "fx": fx, "fy": fy, "cx": cx, "cy": cy} for i in range(N)]}
    (final / "cameras.json").write_text(json.dumps(cams))
    save_obj(final / "rest.obj", V, F, colors=np.full((len(V), 3), 0.6))
    w = np.stack([V[:, 0] < 0, V[:, 0] > 0], 1).astype(np.float32)  # bone 0: x < 0, bone 1: x > 0
    w[V[:, 0] == 0] = 0.5
    np.savez(final / "skeleton.npz", bone_centers=np.array([[-0.5, 0, 0], [0.5, 0, 0]], np.float32),
             bone_orientations=np.stack([np.eye(3)] * 2).astype(np.float32),
             bone_log_precisions=np.zeros((2, 3), np.float32), skinning_weights=w,
             root_rotations=np.stack([np.eye(3)] * N).astype(np.float32),
             root_translations=np.zeros((N, 3), np.float32), rest_vertices=V.astype(np.float32), faces=F)
    frames = root / "input" / "frames"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N):
        cv2.imwrite(str(frames / f"{i:05d}.png"), rng.integers(0, 60, (IMG, IMG, 3), dtype=np.uint8))
    if hydra:
        (root / ".hydra").mkdir()
        (root / ".hydra" / "config.yaml").write_text(
            f"video: {frames}\nmasks: null\nname: null\ncache_dir: {root / 'nocache'}\n")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("fit"))


@pytest.fixture(scope="module")
def rendered(run) -> dict:
    """All three outputs, rendered once for the module."""
    return R.render_run(run, outputs="overlay,views,turntable", size=96, stills=N, labels=False,
                        turntable_frames=6, device="cpu", quiet=True)


def _read(p: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)


def _fg(panel: np.ndarray) -> np.ndarray:
    return np.abs(panel.astype(int) - BG).max(-1) > 2


def _bbox_aspect(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64) + 1e-6
    return x / x.sum(-1, keepdims=True)


# ----------------------------------------------------------------------------
def test_overlay_changes_exactly_the_projected_mesh(run, rendered):
    H = 96
    for i in range(N):
        img = _read(run / "renders" / f"overlay_{i:05d}.png")
        assert img.shape == (H, 2 * H, 3)
        left, right = img[:, :H].astype(int), img[:, H:].astype(int)
        src = cv2.resize(_read(run / "input" / "frames" / f"{i:05d}.png"), (H, H), interpolation=cv2.INTER_AREA)
        assert np.array_equal(left, src)  # the input frame, untouched
        changed = np.abs(right - left).max(-1) > 3
        # expected: the projected faces, filled (cameras.json is in 128 px source pixels)
        fx, fy, cx, cy = intrinsics()
        s = H / SRC
        V = posed(i)
        u = fx * s * V[:, 0] / V[:, 2] + (cx + 0.5) * s - 0.5
        v = fy * s * V[:, 1] / V[:, 2] + (cy + 0.5) * s - 0.5
        _, F = box(HALF)
        want = np.zeros((H, H), np.uint8)
        pts = np.round(np.stack([u, v], 1) * 16).astype(np.int32)
        for f in F:  # one call per face: fillPoly of several polygons fills their XOR
            cv2.fillPoly(want, [pts[f]], 1, lineType=cv2.LINE_8, shift=4)
        inner = cv2.erode(want, np.ones((3, 3), np.uint8)).astype(bool)
        outer = cv2.dilate(want, np.ones((3, 3), np.uint8)).astype(bool)
        assert changed[inner].all(), "mesh pixels left unchanged"
        assert not changed[~outer].any(), "pixels changed away from the mesh"
        assert changed.sum() > 0.9 * want.sum()


def test_views_framing_aspect_and_orientation(run, rendered):
    S = 96
    img = _read(run / "renders" / "views_00000.png")
    assert img.shape == (S, 4 * S, 3)
    front, side, back, top = (img[:, k * S:(k + 1) * S] for k in range(4))
    for p in (front, side, back, top):
        m = _fg(p)
        assert m.any()
        ys, xs = np.nonzero(m)
        assert xs.min() > 0 and ys.min() > 0 and xs.max() < S - 1 and ys.max() < S - 1  # not clipped
        assert abs((xs.min() + xs.max()) / 2 - (S - 1) / 2) < 0.1 * S  # centred
    # the box is 2.0 wide (x), 0.4 tall (y), 0.8 deep (z); mild perspective
    assert _bbox_aspect(_fg(top)) == pytest.approx(2.0 / 0.8, rel=0.15)
    assert _bbox_aspect(_fg(side)) == pytest.approx(0.8 / 0.4, rel=0.15)
    assert _bbox_aspect(_fg(front)) > 3.5
    # one scale for every view: the box's length looks the same from the front, back and top
    w = [np.ptp(np.nonzero(_fg(p))[1]) for p in (front, back, top)]
    assert max(w) - min(w) <= 0.12 * max(w)
    # bone 0 (x < 0) is on the left from the front and the top, on the right from the back
    pal = bone_palette(2)

    def side_of_bone(p, b):
        m = _fg(p)
        d = np.linalg.norm(_chroma(p) - _chroma(pal[b] * 255), axis=-1)
        xs = np.nonzero(m & (d < 0.06))[1]
        assert len(xs) > 20
        return xs.mean()

    for p in (front, top):
        assert side_of_bone(p, 0) < S / 2 < side_of_bone(p, 1)
    assert side_of_bone(back, 1) < S / 2 < side_of_bone(back, 0)


def test_turntable_first_frame_shows_the_bone_colours(run, rendered):
    S = 96
    img = _read(run / "renders" / "turntable_00000.png")
    assert img.shape == (S, 2 * S, 3)  # skinning colours | fitted colours (rest.obj has colours)
    skin, tex = img[:, :S], img[:, S:]
    m = _fg(skin)
    pal = bone_palette(2)
    for b in range(2):
        d = np.linalg.norm(_chroma(skin) - _chroma(pal[b] * 255), axis=-1)
        assert (m & (d < 0.06)).sum() > 0.15 * m.sum(), f"bone {b}'s colour missing"
    # the fitted colours are gray: no bone colour there
    mt = _fg(tex)
    assert mt.sum() > 0.5 * m.sum()
    assert np.abs(_chroma(tex[mt]) - 1 / 3).max() < 0.02


def test_videos_and_gifs_have_every_frame(run, rendered):
    import av
    from PIL import Image

    out = run / "renders"
    expect = {"overlay": (N, 2 * 96, 96), "views": (N, 4 * 96, 96), "turntable": (6, 2 * 96, 96)}
    for name, (n, w, h) in expect.items():
        assert out / f"{name}.mp4" in rendered[name] and out / f"{name}.gif" in rendered[name]
        with av.open(str(out / f"{name}.mp4")) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == n and frames[0].shape == (h, w, 3)
        with Image.open(out / f"{name}.gif") as g:
            assert g.n_frames == n and g.size == (w, h)
    # the decoded video is the rendered still (up to compression)
    still = _read(out / "overlay_00001.png")
    with av.open(str(out / "overlay.mp4")) as c:
        f1 = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][1]
    blur = lambda x: cv2.GaussianBlur(x.astype(np.float32), (7, 7), 0)  # noqa: E731  (the frames are noise)
    assert np.abs(blur(f1) - blur(still)).mean() < 4


def test_stride_fps_and_odd_sizes(run, tmp_path):
    from PIL import Image

    out = tmp_path / "r"
    files = R.render_run(run, out=str(out), outputs="views", size=33, stride=3, fps=5, formats="gif", stills=1,
                         follow=True, supersample=2, device="cpu", quiet=True)
    assert sorted(p.name for p in files["views"]) == ["views.gif", "views_00000.png"]
    with Image.open(out / "views.gif") as g:
        assert g.n_frames == len(range(0, N, 3)) and g.size == (4 * 33, 34)  # padded to even
        assert g.info["duration"] == 200


def test_frames_are_found_through_hydra_cache_and_override(run, tmp_path):
    rf = read_final(run / "final")  # final/ itself works too
    assert rf.root == run
    assert "input/frames" in find_frames(rf).description  # .hydra: no cache, so the video= folder
    # a preprocessing cache (meta.json + frames/) named by .hydra is preferred
    seq = run / "nocache" / "input"
    (seq / "frames").mkdir(parents=True)
    for i in range(N):
        cv2.imwrite(str(seq / "frames" / f"{i:05d}.png"), np.zeros((32, 32, 3), np.uint8))
    (seq / "meta.json").write_text(json.dumps({"frames": [{"index": i, "source_frame": i} for i in range(N)]}))
    try:
        src = find_frames(rf)
        assert "preprocessing cache" in src.description and src.size == (32, 32)
        assert len(list(src.read(list(range(N))))) == N
    finally:
        import shutil

        shutil.rmtree(run / "nocache")
    # video= override: a video file (source frame numbers)
    vid = tmp_path / "clip.mp4"
    write_mp4(vid, [np.full((IMG, IMG, 3), 10 * i, np.uint8) for i in range(N + 2)], 10)
    src = find_frames(rf, str(vid))
    got = list(src.read([1, 3]))
    assert src.size == (IMG, IMG) and len(got) == 2 and abs(int(got[1].mean()) - 30) <= 3


def test_user_errors(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        R.render_run(tmp_path / "nope")
    r = make_run(tmp_path / "r", hydra=False)
    # no .hydra and no video=: the overlay cannot find its images
    with pytest.raises(InputError, match=r"\.hydra/config\.yaml is missing.*video="):
        R.render_run(r, outputs="overlay", quiet=True)
    (r / "final" / "meshes" / "00002.obj").unlink()
    with pytest.raises(InputError, match=r"00002\.obj is missing.*resume=true"):
        read_final(r)
    (r / "final" / "cameras.json").unlink()
    with pytest.raises(InputError, match=r"cameras\.json is missing"):
        read_final(r)
    r2 = make_run(tmp_path / "r2")
    (r2 / "final" / "skeleton.npz").unlink()
    with pytest.raises(InputError, match=r"skeleton\.npz is missing \(the turntable needs it\).*outputs="):
        R.render_run(r2, quiet=True)
    with pytest.raises(InputError, match="outputs=bogus"):
        R.VideoOptions(outputs="bogus")


def test_module_entry_point_exits_2_with_the_message(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lasr.videos", f"run={tmp_path / 'missing'}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("error: run=") and "no such folder" in p.stderr and "Traceback" not in p.stderr


def test_keys_are_typed(compose_cfg):
    from hydra.errors import ConfigCompositionException

    cfg = compose_cfg("run=x", "outputs=views+overlay", "color=texture", config_name="videos")
    opts = R.VideoOptions.from_config(cfg)
    assert opts.outputs == ("views", "overlay") and opts.color == "texture" and opts.formats == ("mp4", "gif")
    for bad in ("colour=skin", "stride=two", "color=purple"):
        with pytest.raises(ConfigCompositionException, match=bad.split("=")[0]):
            compose_cfg("run=x", bad, config_name="videos")
