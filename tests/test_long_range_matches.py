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
    on = np.zeros((H, W), bool)
    on[10:50, 20:40] = True  # the object: rows 10-49
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    fw = np.stack([0.2 * xx - 2.0, 0.05 * yy], -1)  # a motion that varies over the image: x and y told apart
    p = np.array([[25.0, 12.0], [30.0, 20.0], [35.0, 45.0], [22.0, 48.0]])  # the last two below 0.6 of the height
    q = p + fw[p[:, 1].astype(int), p[:, 0].astype(int)]
    # the backward flow, its inverse (x' = 1.2 x - 2, y' = 1.05 y): every point is seen
    bw = np.stack([(xx + 2.0) / 1.2 - xx, yy / 1.05 - yy], -1)
    s = lm.score(p, q, fw, bw, on)
    assert s == {"matches": 4, "hidden": 0, "right": 4, "matches_low": 2, "hidden_low": 0, "right_low": 2}, s
    bad = q.copy()
    bad[1] += 5.0  # one upper match 5 px off, one lower 2 px off (within 3)
    bad[3] += [0.0, 2.0]
    assert lm.score(p, bad, fw, bw, on)["right"] == 3
    # the matches scored where the flow is read at their first point, as (x, y): read at q
    # or with the axes swapped they would miss
    assert lm.score(q, p, fw, bw, on)["right"] == 0
    assert lm.score(p[:, ::-1].copy(), q[:, ::-1].copy(), fw, bw, on)["right"] < 4
    # a point frame b hides (the backward flow does not bring it back) or off the
    # silhouette is a wrong match, counted
    hidden = lm.score(p, q, fw, np.zeros_like(bw), on)
    assert hidden["matches"] == 4 and hidden["hidden"] == 4 and hidden["right"] == 0
    off = on.copy()
    off[47:50] = False  # the last point's row (48) off the silhouette
    assert lm.score(p, q, fw, bw, off)["hidden"] == 1
