"""experiments/true_flow_cache.py: a preprocessing cache with the true flow in it."""

import numpy as np
import pytest

from lasr.examples import make_creature_clip
from preprocess import load_sequence, run
from tests.experiments import experiment


def test_the_copy_holds_the_true_flow_and_is_read_as_it_is(compose_cfg, tmp_path):
    tf = experiment("true_flow_cache")
    clip = make_creature_clip(tmp_path / "clip", frames=24, size=96)
    cfg = [f"video={clip / 'frames'}", f"masks={clip / 'masks'}", "preprocess.flow=dis", "name=walk"]
    dis = load_sequence(run(compose_cfg(*cfg, f"cache_dir={tmp_path / 'cache'}")).root)
    r = tf.true_flow_cache(tmp_path / "cache" / "walk", clip, tmp_path / "oracle")
    assert r["path"] == tmp_path / "oracle" / "walk"

    # preprocessing with the same settings finds the copy up to date: a fit reads it as it is
    res = run(compose_cfg(*cfg, f"cache_dir={tmp_path / 'oracle'}"))
    assert res.computed == ()
    seq = load_sequence(res.root)
    np.testing.assert_array_equal(seq.frames, dis.frames)
    np.testing.assert_array_equal(seq.masks, dis.masks)
    assert not np.array_equal(seq.flow_fw, dis.flow_fw)

    # the true flow, told apart from its wrong conventions by an independent estimate (DIS):
    # on the object DIS agrees with it to a fraction of the motion, not with it negated or
    # with its axes swapped
    on = dis.masks[:-1] & (dis.conf_fw > 0.5) & (seq.conf_fw > 0.5)
    size = np.linalg.norm(seq.flow_fw, axis=-1)[on].mean()
    assert size > 0.5, size  # the creature and the camera move most of a pixel a frame at 96 px

    def epe(f, average=np.median):
        return average(np.linalg.norm(dis.flow_fw - f, axis=-1)[on])

    assert epe(seq.flow_fw) < 0.4 * size, (epe(seq.flow_fw), size)
    assert epe(seq.flow_fw) < 0.5 * min(epe(-seq.flow_fw), epe(seq.flow_fw[..., ::-1]))
    assert abs(r["estimated_epe"] - epe(seq.flow_fw, np.mean)) < 0.1 * size
    # forward and backward agree where nothing is hidden: most of the object is confident
    assert (seq.conf_fw[dis.masks[:-1]] > 0.9).mean() > 0.8
    assert (seq.conf_bw[dis.masks[1:]] > 0.9).mean() > 0.8
    # the backward flow carries frame t+1's pixels back: on the object it is about the
    # forward flow negated
    assert np.linalg.norm(seq.flow_bw + seq.flow_fw, axis=-1)[on & dis.masks[1:]].mean() < 0.5 * size

    # never over the cache it copies, nor over a folder that is not a cache
    before = sorted(p.name for p in (tmp_path / "cache" / "walk" / "flow").iterdir())
    with pytest.raises(SystemExit, match="itself"):
        tf.true_flow_cache(tmp_path / "cache" / "walk", clip, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "walk" / "flow").iterdir()) == before
    (tmp_path / "other" / "walk").mkdir(parents=True)
    (tmp_path / "other" / "walk" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a preprocessing cache"):
        tf.true_flow_cache(tmp_path / "cache" / "walk", clip, tmp_path / "other")
    assert (tmp_path / "other" / "walk" / "notes.txt").read_text() == "mine"
