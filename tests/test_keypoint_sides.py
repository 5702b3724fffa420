"""experiments/keypoint_sides.py: the PCK between stretches of a clip, from the per-pair
outcomes of the keypoint transfer."""

import numpy as np

from tests.experiments import experiment


def test_segment_pck_pools_the_transfers_between_stretches():
    ks = experiment("keypoint_sides")
    frames = [0, 1, 2, 3]  # two stretches: 0-1 and 2-3
    K = 26
    tests = np.ones((4, 4, K), dtype=bool)
    tests[np.arange(4), np.arange(4)] = False
    hits = np.zeros_like(tests)
    same = np.array([[a // 2 == b // 2 for b in range(4)] for a in range(4)])
    hits[:, :, 8] = tests[:, :, 8] & same  # a leg: right within a stretch, wrong across
    hits[:, :, 25] = tests[:, :, 25]  # the tail base: always right
    hits[0, 2, 25] = False  # but once
    tests[3, :, 10] = False  # a foot hidden in frame 3
    legs = ks.segment_pck(frames, tests, hits, np.array([0, 2, 4]), [8])
    assert np.array_equal(legs, [[1.0, 0.0], [0.0, 1.0]])
    body = ks.segment_pck(frames, tests, hits, np.array([0, 2, 4]), [25])
    assert np.allclose(body, [[1.0, 0.75], [1.0, 1.0]])  # 3 of the 4 transfers from 0-1 to 2-3
    foot = ks.segment_pck(frames, tests, hits, np.array([0, 2, 4]), [10])
    assert np.allclose(foot, [[0.0, 0.0], [0.0, 0.0]])  # tested where visible, never right
    none = ks.segment_pck(frames, np.zeros_like(tests), hits, np.array([0, 2, 4]), [8])
    assert np.isnan(none).all()
