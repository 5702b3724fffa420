"""How well the root trajectory is estimated from the flow, against the truth.

    uv run python experiments/trajectory_accuracy.py [CLIP ...] [--cache DIR]

Each CLIP is a folder with ``frames/``, ``masks/`` and the truth as the benchmark writes
it (``gt/meshes/*.obj`` in camera coordinates, ``gt/cameras.json``); without CLIP, the
built-in creature (the camera orbits it by 90°). The true turn is the camera's
(``world_to_camera``: the clips' bodies walk on the spot while the camera orbits), else the
meshes' (Procrustes from frame 0). The clip is preprocessed offline (DIS
flow, its masks), the trajectory estimated as a fit with ``stages.rigid.trajectory=true``
does (:func:`lasr.fit.estimate_trajectory` at the fit's initial focal length), and
printed against the true turn (up to the mirror image in depth, which the rigid stage's
hypotheses choose): the turn at every few frames, the
mean and worst error, the time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import preprocess  # noqa: E402
from lasr.config import ModelConfig  # noqa: E402
from lasr.data import to_video_data  # noqa: E402
from lasr.evaluate import turn_from_first  # noqa: E402
from lasr.examples import make_creature_clip, read_truth  # noqa: E402
from lasr.fit import estimate_trajectory  # noqa: E402
from lasr.fit.trajectory import turn_degrees  # noqa: E402


def angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((np.einsum("tij,tij->t", A, B) - 1) / 2, -1, 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips", nargs="*", type=Path, help="clip folders (default: the built-in creature)")
    ap.add_argument("--cache", type=Path, default=None, help="preprocessing cache (default: a temporary one)")
    args = ap.parse_args()
    clips = args.clips or [make_creature_clip()]
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lasr-trajectory-"))
    S = np.diag([1.0, 1.0, -1.0])
    for clip in clips:
        name = clip.name
        done = subprocess.run([sys.executable, "-m", "preprocess", f"video={clip / 'frames'}",
                               f"masks={clip / 'masks'}", "preprocess.flow=dis", f"cache_dir={cache}", f"name={name}"],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"preprocessing {clip} failed:\n{done.stderr}")
        data = to_video_data(preprocess.load_sequence(cache / name))
        V, _, cams = read_truth(clip)
        frames = data.source_frames.numpy()
        if all("world_to_camera" in c for c in cams["frames"]):  # the body's turn in the camera is the camera's
            Rw = np.array([np.array(c["world_to_camera"])[:3, :3] for c in cams["frames"]])[frames]
            true = Rw @ Rw[0].T
        else:  # the meshes' turn (legs and all)
            true = np.stack(turn_from_first(V[frames]))
        focal = ModelConfig().focal * max(data.image_size)
        t0 = time.perf_counter()
        est = estimate_trajectory(data, focal)
        seconds = time.perf_counter() - t0
        err = min((angles(est.rotations, true), angles(S @ est.rotations @ S, true)), key=lambda e: e.mean())
        step = max(1, len(frames) // 8)
        print(f"{name}: {len(frames)} frames, {sum(w[3] > 0 for w in est.windows)} of {len(est.windows)} windows used, "
              f"{seconds:.1f} s")
        print("  frame         ", " ".join(f"{k:5d}" for k in range(0, len(frames), step)))
        print("  true turn     ", " ".join(f"{x:5.0f}" for x in turn_degrees(true)[::step]))
        print("  estimated turn", " ".join(f"{x:5.0f}" for x in est.turn()[::step]))
        print(f"  error: mean {err.mean():.1f}°, worst {err.max():.1f}° (at frame {int(err.argmax())})")


if __name__ == "__main__":
    main()
