"""lasr.fit.trajectory: the root's rotation over the clip from the flow alone, on clips the
project renders itself (a lopsided body turning about the vertical axis)."""

import math

import numpy as np
import pytest
import torch

from lasr.fit.trajectory import average_rotations, estimate_trajectory, mirror_in_depth, turn_degrees
from lasr.geometry.rotations import axis_angle_to_matrix

from .synth import turning_scene

PROFILES = {
    "still": np.zeros(16),
    "60": np.linspace(0, 60, 16),
    "180": np.linspace(0, 180, 16),
    "360": np.linspace(0, 360, 20),
    "90 and back": np.concatenate([np.linspace(0, 90, 10), np.linspace(90, 0, 10)[1:]]),
}


def _errors(R_est, R_true) -> np.ndarray:
    rel = (R_true @ R_true[0].T).numpy()
    return np.degrees(np.arccos(np.clip((np.einsum("tij,tij->t", R_est, rel) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_estimated_trajectory_follows_the_true_turn(profile):
    data, R_true, focal = turning_scene(PROFILES[profile], size=80)
    est = estimate_trajectory(data, focal)
    err = _errors(est.rotations, R_true)
    assert err.max() < 10.0, (profile, err.round(1))
    assert abs(est.turn().max() - turn_degrees(R_true.numpy() @ R_true[0].numpy().T).max()) < 10.0


def test_averaging_rejects_wrong_pairs():
    rng = np.random.default_rng(0)
    T = 12
    truth = [axis_angle_to_matrix(torch.tensor([0.1 * t, math.radians(15 * t), 0.0], dtype=torch.float64)).numpy()
             for t in range(T)]
    meas = []
    for i in range(T):
        for gap in (1, 2, 3, 5):
            j = i + gap
            if j < T:
                noise = axis_angle_to_matrix(torch.tensor(rng.normal(scale=0.01, size=3))).numpy()
                meas.append((i, j, noise @ truth[j] @ truth[i].T, 1.0))
    bad = axis_angle_to_matrix(torch.tensor([0.0, 1.5, 0.0], dtype=torch.float64)).numpy()
    meas[3] = (meas[3][0], meas[3][1], bad, 1.0)  # wrong, and heavy
    meas[10] = (meas[10][0], meas[10][1], bad.T, 1.0)
    R, residual = average_rotations(T, meas)
    err = np.array([np.degrees(np.arccos(np.clip((np.trace(R[t].T @ truth[t] @ truth[0].T) - 1) / 2, -1, 1)))
                    for t in range(T)])
    assert err.max() < 2.0 and residual < 2.0, err


def test_mirror_in_depth_turns_the_other_way():
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.7, 0.0], [0.2, 0.3, 0.1]]))
    M = mirror_in_depth(R)
    assert torch.allclose(M[0], axis_angle_to_matrix(torch.tensor([0.0, -0.7, 0.0])), atol=1e-6)
    assert torch.allclose(mirror_in_depth(M), R, atol=1e-6)
    assert torch.allclose(M @ M.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
