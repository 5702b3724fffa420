"""How far a quadruped turns about the vertical, read from its BADJA keypoints alone.

    uv run python experiments/keypoint_turn.py [CLIP_FOLDER] [--run RUN_FOLDER]

A rough check of the root trajectory on a clip without 3D truth (default
``../shared/data/davis_camel``). In each annotated frame: the body's length across the
image (the mean of the two shoulders' x minus the mean of the two hips') over its height
(the feet's mean y minus the tail base's y), which a turn about the vertical axis does not
change. Against the frame where it is largest (the most side-on), that ratio is ``cos`` of
the turn from side-on, printed in degrees beside the run's fitted and estimated turn from
its first frame (``final/metrics.json``) when ``--run`` is given. It assumes the camera
looks at the animal from about its height; the legs' swing scatters it (on the camel by
about ±15 degrees over the side-on frames).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHOULDERS, HIPS, FEET, TAIL = (8, 12), (18, 22), (10, 14, 20, 24), 25  # BADJA's SMAL joint order


def side_on_degrees(keypoints: dict[int, np.ndarray]) -> dict[int, float]:
    """``{frame: degrees turned from side-on}`` of ``{frame: (K, 3) [u, v, visible]}``."""
    ratio = {}
    for f, kp in sorted(keypoints.items()):
        k = kp[:, :2]
        top = k[TAIL, 1]
        height = k[list(FEET), 1].mean() - top
        length = abs(k[list(SHOULDERS), 0].mean() - k[list(HIPS), 0].mean())
        if height > 0:
            ratio[f] = length / height
    ref = max(ratio.values())
    return {f: math.degrees(math.acos(min(r / ref, 1.0))) for f, r in ratio.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/davis_camel"))
    ap.add_argument("--run", help="a run folder: its fitted and estimated turn beside")
    a = ap.parse_args(argv)
    from lasr.evaluate.keypoints import read_keypoints

    path = Path(a.clip) / "gt" / "keypoints.json"
    if not path.exists():
        print(f"{path} does not exist: give a clip folder with BADJA keypoints (gt/keypoints.json)")
        return 2
    side = side_on_degrees(read_keypoints(path))
    rows = {}
    if a.run:
        m = json.loads((Path(a.run) / "final" / "metrics.json").read_text())
        rows = {r["source_frame"]: r for r in m["frames"]}
    print("frame  from side-on (keypoints)%s" % ("  fitted turn  estimated turn" if rows else ""))
    for f, deg in side.items():
        extra = ""
        if f in rows:
            r = rows[f]
            est = r.get("estimated_turn_deg")
            extra = f"  {r['root_turn_deg']:11.1f}" + (f"  {est:14.1f}" if est is not None else "")
        print(f"{f:5d}  {deg:23.1f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
