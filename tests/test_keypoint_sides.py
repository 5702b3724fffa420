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


def test_rest_sides_says_which_half_of_the_rest_shape_a_keypoint_is_picked_on():
    ks = experiment("keypoint_sides")
    rest = np.array([[-1.0, 0, 0], [-1.0, 1, 0], [-1.0, 0, 1], [1.0, 0, 0], [1.0, 1, 0], [1.0, 0, 1],
                     [0.0, 0, 0], [0.0, 1, 0], [0.0, 0, 1]])
    faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])  # at x = -1, x = +1, on the plane
    third = np.full((2, 3), 1 / 3)
    seen = np.array([True, True])
    picked = {0: (np.array([0, 1]), third, seen), 1: (np.array([0, 2]), third, seen),
              2: (np.array([1, -1]), third, seen),
              3: (np.array([0, 1]), third, np.array([True, False]))}  # keypoint 1 hidden in frame 3: not counted
    out = ks.rest_sides(picked, rest, faces, [0, 1, 5], margin=0.1)
    assert set(out) == {0, 1}  # keypoint 5 is never picked
    assert np.allclose(out[0], (0.75, 0.0, 0.25, -0.5))  # frames 0, 1, 3 at x = -1, frame 2 at +1
    assert np.allclose(out[1], (0.0, 0.5, 0.5, 0.5))  # frame 0 at +1, frame 1 on the plane, frame 2 not picked
