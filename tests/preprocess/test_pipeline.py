import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import preprocess.flow as flowmod
from lasr.errors import InputError, LasrError
from preprocess import load_sequence, run
from preprocess.layout import SequencePaths, is_complete, read_meta

from .synth import moving_square, write_folder, write_video

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clip(tmp_path):
    frames, masks = moving_square(n=6, h=96, w=128, size=40, step=3)
    write_folder(tmp_path / "clip" / "frames", frames)
    write_folder(tmp_path / "clip" / "masks", masks)
    return tmp_path / "clip", frames, masks


def _cfg(compose_cfg, tmp_path, clip_dir, *extra):
    return compose_cfg(f"video={clip_dir / 'frames'}", f"masks={clip_dir / 'masks'}",
                       f"cache_dir={tmp_path / 'cache'}", "preprocess.flow=dis", *extra)


def test_writes_complete_cache_and_reads_it_back(compose_cfg, tmp_path, clip):
    clip_dir, frames, masks = clip
    res = run(_cfg(compose_cfg, tmp_path, clip_dir))
    assert res.root == tmp_path / "cache" / "clip"  # name from the folder above frames/
    assert res.computed == ("frames", "masks", "flow")
    seq = load_sequence(res.root)
    assert len(seq) == 6 and seq.source_size == (128, 96)
    np.testing.assert_array_equal(seq.frames, frames)  # PNG: lossless
    np.testing.assert_array_equal(seq.masks, masks)
    assert seq.flow_fw.shape == (5, 96, 128, 2) and seq.conf_bw.shape == (5, 96, 128)
    # the square moves +3 px a frame: forward flow inside it says so
    inner = masks[0] & masks[1]
    assert abs(np.median(seq.flow_fw[0][inner][:, 0]) - 3) < 0.5
    assert abs(np.median(seq.flow_bw[0][masks[1] & masks[0]][:, 0]) + 3) < 0.5
    meta = json.loads((res.root / "meta.json").read_text())
    assert meta["parts"]["flow"]["backend"] == "dis" and meta["parts"]["masks"]["backend"] == "folder"
    assert [f["source_frame"] for f in meta["frames"]] == list(range(6))


def test_cache_reuse_and_invalidation(compose_cfg, tmp_path, clip):
    clip_dir, frames, masks = clip
    assert run(_cfg(compose_cfg, tmp_path, clip_dir)).computed == ("frames", "masks", "flow")
    assert run(_cfg(compose_cfg, tmp_path, clip_dir)).computed == ()
    # a flow setting changes only the flow
    assert run(_cfg(compose_cfg, tmp_path, clip_dir, "preprocess.dis.preset=fast")).computed == ("flow",)
    # a mask file's content changes only the masks
    m = masks.copy()
    m[2, :4, :4] = True
    write_folder(clip_dir / "masks", m)
    assert run(_cfg(compose_cfg, tmp_path, clip_dir, "preprocess.dis.preset=fast")).computed == ("masks",)
    # frame selection changes everything
    res = run(_cfg(compose_cfg, tmp_path, clip_dir, "preprocess.dis.preset=fast", "preprocess.stride=2"))
    assert res.computed == ("frames", "masks", "flow")
    assert [f["source_frame"] for f in res.meta["frames"]] == [0, 2, 4]
    assert load_sequence(res.root).masks.shape == (3, 96, 128)
    # force recomputes everything
    res = run(_cfg(compose_cfg, tmp_path, clip_dir, "preprocess.dis.preset=fast", "preprocess.stride=2", "force=true"))
    assert res.computed == ("frames", "masks", "flow")


def test_interrupted_run_never_reads_as_complete(compose_cfg, tmp_path, clip, monkeypatch):
    clip_dir, *_ = clip
    cfg = _cfg(compose_cfg, tmp_path, clip_dir)
    calls = {"n": 0}
    real = flowmod.fb_confidence

    def dies_midway(*a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(flowmod, "fb_confidence", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    paths = SequencePaths(tmp_path / "cache" / "clip")
    assert not is_complete(paths, read_meta(paths))
    assert not paths.part("flow").exists()  # the half-written flow never moved into place
    with pytest.raises(LasrError, match="not a complete preprocessed sequence"):
        load_sequence(paths.root)
    monkeypatch.setattr(flowmod, "fb_confidence", real)
    assert run(cfg).computed == ("flow",)  # frames and masks were complete and are reused
    assert not [p for p in paths.root.iterdir() if p.name.startswith(".")]


def test_video_input_with_stride_and_resolution(compose_cfg, tmp_path):
    frames, masks = moving_square(n=10, h=64, w=96, size=20, step=2)
    video = write_video(tmp_path / "sq.mp4", frames)
    write_folder(tmp_path / "m", masks)
    cfg = compose_cfg(f"video={video}", f"masks={tmp_path / 'm'}", f"cache_dir={tmp_path / 'c'}",
                      "preprocess.flow=dis", "preprocess.stride=3", "preprocess.resolution=48")
    res = run(cfg)
    seq = load_sequence(res.root)
    assert res.root.name == "sq"
    assert [f["source_frame"] for f in res.meta["frames"]] == [0, 3, 6, 9]
    assert seq.frames.shape == (4, 32, 48, 3) and seq.source_size == (96, 64)
    assert res.meta["source"]["num_frames"] == 10 and res.meta["scale"] == 0.5
    import cv2

    for i, s in enumerate([0, 3, 6, 9]):  # decoded frame s, not another one
        ref = cv2.resize(frames[s], (48, 32), interpolation=cv2.INTER_AREA).astype(float)
        err = np.abs(seq.frames[i] - ref).mean()
        others = [np.abs(seq.frames[i] - cv2.resize(frames[j], (48, 32), interpolation=cv2.INTER_AREA)).mean()
                  for j in range(10) if j != s]
        assert err < 6 and err < min(others)


def test_auto_flow_falls_back_to_dis_with_one_warning(compose_cfg, tmp_path, clip, monkeypatch, caplog):
    import torch
    import urllib.error

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    clip_dir, *_ = clip
    cfg = compose_cfg(f"video={clip_dir / 'frames'}", f"masks={clip_dir / 'masks'}", f"cache_dir={tmp_path / 'cache'}")
    assert cfg.preprocess.flow.value == "auto"
    with caplog.at_level("WARNING"):
        res = run(cfg)
    assert res.meta["parts"]["flow"]["backend"] == "dis"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "using dis flow" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_no_segmenter_says_which_option_to_give(compose_cfg, tmp_path, clip, monkeypatch):
    import torch
    import urllib.error

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    clip_dir, *_ = clip
    cfg = compose_cfg(f"video={clip_dir / 'frames'}", f"cache_dir={tmp_path / 'cache'}", "preprocess.flow=dis")
    with pytest.raises(LasrError, match=r"no segmenter can run .*masks=FOLDER.*preprocess\.maskrcnn\.checkpoint=PATH"):
        run(cfg)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_are_clear_errors(compose_cfg, tmp_path, clip):
    clip_dir, frames, masks = clip

    def attempt(*overrides):
        with pytest.raises(InputError) as e:
            run(compose_cfg(f"cache_dir={tmp_path / 'cache'}", "preprocess.flow=dis", *overrides))
        return str(e.value)

    assert "no such file or folder" in attempt(f"video={tmp_path / 'nope.mp4'}")
    assert "no input given" in attempt()
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    assert "is not a video that PyAV can decode" in attempt(f"video={tmp_path / 'notes.mp4'}")
    # an mp4 whose header survives but whose frames are cut off
    video = write_video(tmp_path / "full.mp4", frames)
    data = video.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 4])
    msg = attempt(f"video={tmp_path / 'cut.mp4'}")
    assert "no decodable frames" in msg or "is not a video" in msg
    write_video(tmp_path / "one.mp4", frames[:1])
    assert "flow needs at least two frames" in attempt(f"video={tmp_path / 'one.mp4'}", f"masks={clip_dir / 'masks'}")
    write_folder(tmp_path / "five_masks", masks[:5])
    assert "holds 5 mask images but the video has 6 frames" in attempt(
        f"video={clip_dir / 'frames'}", f"masks={tmp_path / 'five_masks'}")
    holes = masks.copy()
    holes[[1, 4]] = False
    write_folder(tmp_path / "holes", holes)
    msg = attempt(f"video={clip_dir / 'frames'}", f"masks={tmp_path / 'holes'}")
    assert "empty in 2 frame(s): 1 (source frame 1), 4 (source frame 4)" in msg
    (tmp_path / "empty_dir").mkdir()
    assert "holds no images" in attempt(f"video={tmp_path / 'empty_dir'}")


def test_cli_bad_input_exits_nonzero_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "preprocess", f"video={tmp_path / 'missing.mp4'}",
                        f"cache_dir={tmp_path}"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert "error: video=" in r.stderr and "no such file or folder" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    r = subprocess.run([sys.executable, "-m", "preprocess", "video=x", "preprocess.flw=dis"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode != 0 and "preprocess.flw" in r.stderr
