"""Which keypoints a fit transfers worst, and how often it carries them to the other side's.

    uv run python experiments/keypoint_sides.py RUN_FOLDER [CLIP_FOLDER]

For a clip with BADJA keypoints (default ``../shared/data/davis_camel``), the per-keypoint
PCK of the keypoint transfer `python -m lasr.evaluate` scores, and for the legs the share
of transfers that missed and landed within the threshold of the *other* leg's keypoint
(the left front foot carried to where the right front foot is). A fit whose legs on one
side stand in for the legs on the other, or whose left and right legs are one sheet on the
mirror plane, scores high there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# BADJA's SMAL joint order: the legs' joints, left with right (shoulder or hip, knee, foot)
LEGS = {8: 12, 9: 13, 10: 14, 18: 22, 19: 23, 20: 24}
PARTNERS = {**LEGS, **{b: a for a, b in LEGS.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("clip", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/davis_camel"))
    a = ap.parse_args(argv)
    from lasr.evaluate import evaluate

    res = evaluate(a.run, a.clip, do_iou=False, partners=PARTNERS)
    kp = res["keypoints"]
    if kp is None:
        print(f"{a.clip} has no keypoints"); return 1
    print(f"PCK pooled {kp['pck']:.3f} over {kp['tests']} transfers")
    swapped = kp.get("per_keypoint_swapped", {})
    for k, p in sorted(kp["per_keypoint"].items()):
        side = f"   on the other leg's keypoint {swapped[k]:.2f}" if k in swapped else ""
        print(f"  #{k:2d}  PCK {p:.2f}{side}")
    legs = list(swapped)
    if legs:
        print(f"legs: PCK {sum(kp['per_keypoint'][k] for k in legs) / len(legs):.2f}, "
              f"on the other leg {sum(swapped.values()) / len(legs):.2f} (unweighted means over {len(legs)} keypoints)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
