"""Preprocessing under faults: the user's files are never touched, cleanup removes only
what a run recorded, names are plain, runs on one cache never mix, damaged parts are
recomputed, an up-to-date cache is not rewritten (read-only storage), bad settings and
masks of another shape are clear errors."""

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import preprocess.flow as flowmod
from lasr.errors import ConfigError, InputError, LasrError
from preprocess import load_sequence, run
from preprocess.layout import SequencePaths, Workspace, read_meta

from tests.readonly import read_only

from .synth import moving_square, write_folder


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _stamps(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` -> (inode, mtime_ns, size): what a rewrite changes."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def square(tmp_path):
    frames, masks = moving_square(n=5, h=48, w=64, size=20, step=3)
    return frames, masks


def _cfg(compose_cfg, *overrides):
    return compose_cfg("preprocess.flow=dis", *overrides, config_name="preprocess_app")


@pytest.mark.parametrize("layout", ["dl/clip/frames+masks, cache_dir=dl", "clip+clip/masks, cache_dir=."])
def test_a_cache_inside_an_input_folder_is_refused_and_nothing_is_touched(layout, compose_cfg, tmp_path, square,
                                                                          monkeypatch):
    frames, masks = square
    if layout.startswith("dl"):
        video, mask_dir, cache = tmp_path / "dl/clip/frames", tmp_path / "dl/clip/masks", tmp_path / "dl"
        write_folder(video, frames, ".jpg")
    else:
        video, mask_dir, cache = tmp_path / "clip", tmp_path / "clip/masks", tmp_path
        write_folder(video, frames, ".jpg")
    write_folder(mask_dir, masks)
    (video / "notes.tmp").write_text("the user's notes")
    (mask_dir.parent / "notes.tmp").write_text("more notes")
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as e:
        run(_cfg(compose_cfg, f"video={video}", f"masks={mask_dir}", f"cache_dir={cache}"))
    msg = str(e.value)
    assert str(video.resolve()) in msg and "cache folder" in msg and "cache_dir=" in msg
    assert _tree(tmp_path) == before  # nothing replaced, nothing deleted, nothing added


def test_cleanup_removes_only_what_a_run_recorded(compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    cfg = _cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
               f"cache_dir={tmp_path / 'cache'}")
    root = run(cfg).root
    # files that only look like leftovers: the user's, kept
    (root / "notes.tmp").write_text("mine")
    (root / ".staging-frames-1234").mkdir()
    (root / ".staging-frames-1234" / "keep.txt").write_text("mine too")
    (root / ".trash-masks-abcd").write_text("and this")
    assert run(cfg).computed == ()
    assert (root / "notes.tmp").read_text() == "mine"
    assert (root / ".staging-frames-1234" / "keep.txt").is_file() and (root / ".trash-masks-abcd").is_file()
    # what a killed run left: recorded as its own before it was made, removed by the next run
    work = Workspace(SequencePaths(root))
    (work.dir / "staging-flow").mkdir()
    left = work.dir
    assert run(cfg).computed == ()
    assert not left.exists() and not (root / ".lasr-owned.json").exists()
    assert (root / "notes.tmp").read_text() == "mine" and (root / ".trash-masks-abcd").is_file()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "ABSOLUTE", "..", "."])
def test_sequence_names_are_plain_names(name, compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    (tmp_path / "deep/cache").mkdir(parents=True)
    name = str(tmp_path / "abs_name") if name == "ABSOLUTE" else name
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match=r"is not a plain name.*name="):
        run(_cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
                 f"cache_dir={tmp_path / 'deep/cache'}", f"name={name}"))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, inside or outside


def test_an_existing_folder_that_is_not_a_cache_is_not_written(compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    (tmp_path / "home/docs").mkdir(parents=True)
    (tmp_path / "home/docs/letter.txt").write_text("dear")
    with pytest.raises(InputError, match="is not a preprocessing cache"):
        run(_cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
                 f"cache_dir={tmp_path / 'home'}", "name=docs"))
    assert sorted(p.name for p in (tmp_path / "home/docs").iterdir()) == ["letter.txt"]


def test_concurrent_runs_on_one_cache_wait_and_never_mix(compose_cfg, tmp_path, monkeypatch):
    """Two runs with other resolutions on one cache: the second waits for the first, each
    gets the sequence it asked for, and the cache is one of them, whole."""
    frames, masks = moving_square(n=5, h=96, w=128, size=40, step=3)
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    real = flowmod.fb_confidence
    started = threading.Event()

    def slow(*a, **k):
        started.set()
        time.sleep(0.15)
        return real(*a, **k)

    monkeypatch.setattr(flowmod, "fb_confidence", slow)
    common = (f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}", f"cache_dir={tmp_path / 'cache'}")
    cfgs = [_cfg(compose_cfg, *common, f"preprocess.resolution={r}") for r in (128, 64)]
    results, errors = {}, []

    def work(i):
        try:
            results[i] = run(cfgs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    first = threading.Thread(target=work, args=(0,))
    first.start()
    assert started.wait(60)
    second = threading.Thread(target=work, args=(1,))
    second.start()
    first.join(120)
    second.join(120)
    assert not errors, errors
    assert results[0].meta["size"] == {"width": 128, "height": 96} and results[0].computed == ("frames", "masks", "flow")
    assert results[1].meta["size"] == {"width": 64, "height": 48} and results[1].computed == ("frames", "masks", "flow")
    seq = load_sequence(tmp_path / "cache" / "c")  # the cache holds the second run's, all of it
    assert seq.frames.shape[1:3] == seq.masks.shape[1:3] == seq.flow_fw.shape[1:3] == (48, 64)
    assert read_meta(SequencePaths(tmp_path / "cache" / "c"))["size"] == {"width": 64, "height": 48}


def test_damaged_parts_are_recomputed(compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    cfg = _cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
               f"cache_dir={tmp_path / 'cache'}")
    root = run(cfg).root
    good = load_sequence(root)
    flow = root / "flow" / "00002.npz"
    flow.write_bytes(flow.read_bytes()[: flow.stat().st_size // 2])  # truncated
    with pytest.raises(LasrError, match=r"flow/00002.npz"):
        load_sequence(root)
    assert run(cfg).computed == ("flow",)
    png = root / "masks" / "00001.png"  # same size, other bytes
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF
    png.write_bytes(bytes(data))
    assert run(cfg).computed == ("masks",)
    again = load_sequence(root)
    np.testing.assert_array_equal(again.masks, good.masks)
    np.testing.assert_array_equal(again.flow_fw, good.flow_fw)


def test_an_up_to_date_cache_is_not_rewritten(compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    cfg = _cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
               f"cache_dir={tmp_path / 'cache'}")
    run(cfg)
    before = _stamps(tmp_path / "cache")
    time.sleep(0.01)
    assert run(cfg).computed == ()
    assert _stamps(tmp_path / "cache") == before


def test_a_complete_cache_on_read_only_storage_is_used(compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    inputs = (f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}")
    run(_cfg(compose_cfg, *inputs, f"cache_dir={tmp_path / 'cache'}"))
    with read_only(tmp_path / "cache") as ro:
        res = run(_cfg(compose_cfg, *inputs, f"cache_dir={ro}"))
        assert res.computed == () and load_sequence(res.root).frames.shape == (5, 48, 64, 3)
        with pytest.raises(LasrError, match=r"cannot be written .* must be computed.*cache_dir="):
            run(_cfg(compose_cfg, *inputs, f"cache_dir={ro}", "preprocess.dis.preset=fast"))


def test_masks_of_another_aspect_ratio_are_refused(compose_cfg, tmp_path, square):
    frames, masks = square  # 64x48 frames
    write_folder(tmp_path / "c/frames", frames)
    square_masks = np.zeros((5, 48, 48), bool)
    square_masks[:, 10:30, 10:30] = True
    write_folder(tmp_path / "c/masks", square_masks)
    with pytest.raises(InputError, match=r"00000.png is 48x48 but the frames are 64x48: another aspect ratio"):
        run(_cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
                 f"cache_dir={tmp_path / 'cache'}"))
    half = masks[:, ::2, ::2]  # the same shape at half the size: fine
    write_folder(tmp_path / "c/masks", half)
    res = run(_cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
                   f"cache_dir={tmp_path / 'cache'}"), load=True)  # read under the lock
    assert res.sequence.masks.shape == (5, 48, 64) and res.sequence.flow_fw.shape == (4, 48, 64, 2)


@pytest.mark.parametrize("override, key", [("preprocess.resolution=0", "preprocess.resolution=0"),
                                           ("preprocess.stride=0", "preprocess.stride=0"),
                                           ("preprocess.max_frames=1", "preprocess.max_frames=1"),
                                           ("preprocess.raft.batch_size=0", "preprocess.raft.batch_size=0")])
def test_settings_out_of_range_name_the_key(override, key, compose_cfg, tmp_path, square):
    frames, masks = square
    write_folder(tmp_path / "c/frames", frames)
    write_folder(tmp_path / "c/masks", masks)
    with pytest.raises(ConfigError) as e:
        run(_cfg(compose_cfg, f"video={tmp_path / 'c/frames'}", f"masks={tmp_path / 'c/masks'}",
                 f"cache_dir={tmp_path / 'cache'}", override))
    assert str(e.value).startswith(key) and "must be >=" in str(e.value)
    assert not (tmp_path / "cache").exists()
