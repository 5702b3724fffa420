"""experiments/keypoint_turn.py: the turn from side-on read from BADJA keypoints, on a
quadruped's joints projected as it turns about the vertical."""

import json
import math

import numpy as np
import pytest

from tests.experiments import experiment

# (x: along the body, y: down, z: across) of the joints the script reads, BADJA's order
JOINTS = {8: (1.0, 0.0, 0.3), 12: (1.0, 0.0, -0.3), 18: (-1.0, 0.0, 0.3), 22: (-1.0, 0.0, -0.3),
          10: (1.1, 1.5, 0.3), 14: (0.9, 1.5, -0.3), 20: (-0.9, 1.5, 0.3), 24: (-1.1, 1.5, -0.3),
          25: (-1.2, -0.2, 0.0)}


def _keypoints(turns_deg) -> dict:
    frames = {}
    for f, deg in enumerate(turns_deg):
        a = math.radians(deg)
        kp = np.zeros((36, 3))
        for k, (x, y, z) in JOINTS.items():  # about the vertical (y), seen along z, 100 px a unit
            kp[k] = (320 + 100 * (x * math.cos(a) + z * math.sin(a)), 240 + 100 * y, 1.0)
        frames[f] = kp
    return frames


@pytest.mark.parametrize("turns", [[0, 20, 45, 70, 85], [10, 0, 30, 60]])
def test_the_turn_from_side_on_is_recovered(turns):
    got = experiment("keypoint_turn").side_on_degrees(_keypoints(turns))
    assert np.allclose([got[f] for f in range(len(turns))], np.abs(turns), atol=1e-6)


def test_the_script_prints_each_frame_beside_the_run(tmp_path, capsys):
    clip, run = tmp_path / "clip", tmp_path / "run"
    (clip / "gt").mkdir(parents=True)
    (run / "final").mkdir(parents=True)
    kps = _keypoints([0, 30, 60])
    (clip / "gt" / "keypoints.json").write_text(json.dumps({"frames": {str(f): kp.tolist() for f, kp in kps.items()}}))
    frames = [{"frame": f, "source_frame": f, "root_turn_deg": 1.5 * t, "estimated_turn_deg": 2.0 * t}
              for f, t in enumerate([0, 30, 60])]
    (run / "final" / "metrics.json").write_text(json.dumps({"frames": frames}))
    assert experiment("keypoint_turn").main([str(clip), "--run", str(run)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [[float(v) for v in r] for r in rows] == [[0, 0.0, 0.0, 0.0], [1, 30.0, 45.0, 60.0], [2, 60.0, 90.0, 120.0]]
    assert experiment("keypoint_turn").main([str(tmp_path)]) == 2  # no keypoints: says so
