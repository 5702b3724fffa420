"""experiments/shape_by_height.py: the per-band scores on clouds whose misses are known."""

import numpy as np

from tests.experiments import experiment


def _module():
    return experiment("shape_by_height")


def test_a_displaced_bottom_band_is_the_only_miss():
    mod = _module()
    rng = np.random.default_rng(0)
    truth = rng.uniform([-0.2, 0.0, 2.0], [0.2, 1.0, 2.4], size=(4000, 3))  # camera y: 0 top, 1 bottom
    diag = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    rec, prec = mod.band_scores(truth.copy(), truth, diag)
    assert np.allclose(rec, 1) and np.allclose(prec, 1)
    pred = truth.copy()
    low = pred[:, 1] >= 0.8  # the bottom fifth (the feet) pushed half the diagonal away in depth
    pred[low, 2] += 0.5 * diag
    rec, prec = mod.band_scores(pred, truth, diag)
    assert prec[-1] == 0
    assert rec[-1] < 0.15  # only true points within 2 % of the band above pair with it
    assert np.all(rec[:-1] == 1) and np.all(prec[:-1] == 1)  # the other bands are untouched
