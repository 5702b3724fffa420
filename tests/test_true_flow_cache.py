"""experiments/true_flow_cache.py: a preprocessing cache with the true flow in it; and the
truth it is made from (``lasr.examples.truth_at``, ``true_flow``)."""

import json

import numpy as np
import pytest
import torch

from lasr.examples import make_creature_clip, true_flow, truth_at
from preprocess import load_sequence, run
from tests.experiments import experiment


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_the_truth_at_another_size_keeps_pixel_centres(tmp_path):
    """A clip's cameras scaled to half its size: a point seen at pixel centre ``u`` is seen
    at ``(u + 0.5) / 2 - 0.5`` (pixel centres at integer coordinates), as
    :func:`lasr.io.final.source_intrinsics` has it."""
    clip = make_creature_clip(tmp_path / "clip", frames=3, size=64)
    v, _, K = truth_at(clip, [0, 2], (64, 64))
    v2, _, K2 = truth_at(clip, [0, 2], (32, 32))
    cams = json.loads((clip / "gt" / "cameras.json").read_text())["frames"]
    assert torch.equal(v, v2)
    assert K[1].tolist() == pytest.approx([cams[2][k] for k in ("fx", "fy", "cx", "cy")])

    def project(v, K):
        return torch.stack([K[:, None, 0] * v[..., 0] / v[..., 2] + K[:, None, 2],
                            K[:, None, 1] * v[..., 1] / v[..., 2] + K[:, None, 3]], -1)

    torch.testing.assert_close(project(v2, K2), (project(v, K) + 0.5) / 2 - 0.5)


def test_the_copy_holds_the_true_flow_and_is_read_as_it_is(compose_cfg, tmp_path):
    tf = experiment("true_flow_cache")
    clip = make_creature_clip(tmp_path / "clip", frames=24, size=96)
    # every second frame at 64 px: the cache's frames are not the clip's, nor at its size
    cfg = [f"video={clip / 'frames'}", f"masks={clip / 'masks'}", "preprocess.flow=dis", "name=walk",
           "preprocess.stride=2", "preprocess.resolution=64"]
    dis = load_sequence(run(compose_cfg(*cfg, f"cache_dir={tmp_path / 'cache'}")).root)
    assert list(dis.source_frames) == list(range(0, 24, 2)) and dis.masks.shape[1:] == (64, 64)
    r = tf.true_flow_cache(tmp_path / "cache" / "walk", clip, tmp_path / "oracle")
    assert r["path"] == tmp_path / "oracle" / "walk"

    # preprocessing with the same settings finds the copy up to date: a fit reads it as it is
    res = run(compose_cfg(*cfg, f"cache_dir={tmp_path / 'oracle'}"))
    assert res.computed == ()
    seq = load_sequence(res.root)
    np.testing.assert_array_equal(seq.frames, dis.frames)
    np.testing.assert_array_equal(seq.masks, dis.masks)
    assert not np.array_equal(seq.flow_fw, dis.flow_fw)

    # the truth is the cache's frames': the true silhouettes match its masks, and those of
    # the frames next to them do not as well
    verts, faces, K = truth_at(clip, seq.source_frames, (64, 64))
    _, _, on, _ = true_flow(verts, faces, K, (64, 64), [(t, t + 1) for t in range(len(verts) - 1)])
    own = np.mean([_iou(on[t], seq.masks[t]) for t in range(len(on))])
    verts1, faces1, K1 = truth_at(clip, seq.source_frames + 1, (64, 64))
    _, _, on1, _ = true_flow(verts1, faces1, K1, (64, 64), [(t, t + 1) for t in range(len(verts1) - 1)])
    other = np.mean([_iou(on1[t], seq.masks[t]) for t in range(len(on1))])
    assert own > 0.85 and own > other + 0.04, (own, other)

    # the true flow, told apart from its wrong conventions by an independent estimate (DIS):
    # on the object DIS agrees with it to a fraction of the motion, not with it negated or
    # with its axes swapped
    on = dis.masks[:-1] & (dis.conf_fw > 0.5) & (seq.conf_fw > 0.5)
    size = np.linalg.norm(seq.flow_fw, axis=-1)[on].mean()
    assert size > 0.5, size  # two frames apart at 64 px: about a pixel

    def epe(f):
        return np.median(np.linalg.norm(dis.flow_fw - f, axis=-1)[on])

    assert epe(seq.flow_fw) < 0.6 * epe(0 * seq.flow_fw), (epe(seq.flow_fw), size)  # DIS sees the motion
    assert epe(seq.flow_fw) < 0.5 * min(epe(-seq.flow_fw), epe(seq.flow_fw[..., ::-1]))
    per_pair = [np.linalg.norm(dis.flow_fw[t] - seq.flow_fw[t], axis=-1)[on[t]].mean() for t in range(len(on))]
    assert r["estimated_epe"] == pytest.approx(np.mean(per_pair), rel=1e-3)  # what the script prints
    # forward and backward agree where nothing is hidden: most of the object is confident;
    # off the true silhouette nothing is
    assert (seq.conf_fw[dis.masks[:-1]] > 0.9).mean() > 0.8
    assert (seq.conf_bw[dis.masks[1:]] > 0.9).mean() > 0.8
    assert seq.conf_fw[~dis.masks[:-1]].mean() < 0.05
    # the backward flow carries frame t+1's pixels back: on the object it is about the
    # forward flow negated
    assert np.linalg.norm(seq.flow_bw + seq.flow_fw, axis=-1)[on & dis.masks[1:]].mean() < 0.5 * size

    # written again over its own copy; never over the cache it copies, into it, or over a
    # folder this script did not write (a user's cache of the same name included)
    assert tf.true_flow_cache(tmp_path / "cache" / "walk", clip, tmp_path / "oracle")["path"] == r["path"]
    meta = (tmp_path / "cache" / "walk" / "meta.json").read_bytes()
    for out in (tmp_path / "cache", tmp_path / "cache" / "walk"):
        with pytest.raises(SystemExit, match="into"):
            tf.true_flow_cache(tmp_path / "cache" / "walk", clip, out)
    assert (tmp_path / "cache" / "walk" / "meta.json").read_bytes() == meta
    assert not (tmp_path / "cache" / "walk" / "walk").exists()
    assert load_sequence(tmp_path / "cache" / "walk").flow_fw.tobytes() == dis.flow_fw.tobytes()
    run(compose_cfg(*cfg, f"cache_dir={tmp_path / 'users'}"))  # a real cache named walk
    users = (tmp_path / "users" / "walk" / "meta.json").read_bytes()
    (tmp_path / "other" / "walk").mkdir(parents=True)
    (tmp_path / "other" / "walk" / "notes.txt").write_text("mine")
    for out in (tmp_path / "users", tmp_path / "other"):
        with pytest.raises(SystemExit, match="not a copy this script wrote"):
            tf.true_flow_cache(tmp_path / "cache" / "walk", clip, out)
    assert (tmp_path / "users" / "walk" / "meta.json").read_bytes() == users
    assert (tmp_path / "other" / "walk" / "notes.txt").read_text() == "mine"
