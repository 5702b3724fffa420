"""experiments/long_range_matches.py: SIFT matches between far frames, scored against the truth."""

import cv2
import numpy as np

from tests.experiments import experiment


def _textured(size=128, seed=0):
    g = np.random.default_rng(seed)
    img = cv2.GaussianBlur(g.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.35 * size) ** 2
    return img.astype(np.uint8), mask


def test_matches_recover_a_known_shift():
    lm = experiment("long_range_matches")
    img, mask = _textured()
    shift = (5, 3)  # x, y
    img_b, mask_b = (np.roll(a, (shift[1], shift[0]), axis=(0, 1)) for a in (img, mask))
    p, q = lm.match(img, img_b, mask, mask_b)
    assert len(p) >= 20, len(p)
    right = np.linalg.norm(q - p - np.array(shift), axis=1) < 1.0
    assert right.mean() > 0.95, right.mean()
    assert mask[np.round(p[:, 1]).astype(int), np.round(p[:, 0]).astype(int)].all()


def test_score_counts_matches_against_the_true_motion():
    lm = experiment("long_range_matches")
    H = W = 64
    mask = np.zeros((H, W), bool)
    mask[10:50, 20:40] = True  # the object: rows 10-49
    fw = np.zeros((H, W, 2), np.float32)
    fw[..., 0], fw[..., 1] = 4.0, -2.0
    bw = -fw  # a shift: every point stays in view
    p = np.array([[25.0, 12.0], [30.0, 20.0], [35.0, 45.0], [22.0, 48.0]])  # the last two below 0.6 of the height
    s = lm.score(p, p + [4.0, -2.0], fw, bw, mask)
    assert s == {"valid": 4, "right": 4, "valid_low": 2, "right_low": 2}
    q = p + [4.0, -2.0]
    q[1] += 5.0  # one upper match 5 px off, one lower 2 px off (within 3)
    q[3] += [0.0, 2.0]
    assert lm.score(p, q, fw, bw, mask) == {"valid": 4, "right": 3, "valid_low": 2, "right_low": 2}
    # where frame b hides the point (the backward flow does not bring it back), a match is not counted
    bw2 = bw.copy()
    bw2[:, :, 0] = 0.0
    assert lm.score(p, p + [4.0, -2.0], fw, bw2, mask)["valid"] == 0
