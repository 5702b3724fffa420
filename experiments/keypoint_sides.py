"""Which keypoints a fit transfers worst, and how often it carries them to the other side's.

    uv run python experiments/keypoint_sides.py RUN_FOLDER [CLIP_FOLDER] [--segments N] [--halves]

For a clip with BADJA keypoints (default ``../shared/data/davis_camel``), the per-keypoint
PCK of the keypoint transfer `python -m lasr.evaluate` scores, and for the legs the share
of transfers that missed and landed within the threshold of the *other* leg's keypoint
(the left front foot carried to where the right front foot is). A fit whose legs on one
side stand in for the legs on the other, or whose left and right legs are one sheet on the
mirror plane, scores high there. With ``--segments N`` the clip is cut into N stretches of
frames and the PCK of the transfers from each stretch to each is printed, for the legs and
for the rest of the body: where in the clip (between which views) the transfers fail. With
``--halves``, where on the rest shape each leg keypoint is picked, across its mirror plane
``x = 0``: a fit whose legs are left-right pairs picks a left leg's keypoints on one half
and the right one's on the other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# BADJA's SMAL joint order: the legs' joints, left with right (shoulder or hip, knee, foot)
LEGS = {8: 12, 9: 13, 10: 14, 18: 22, 19: 23, 20: 24}
PARTNERS = {**LEGS, **{b: a for a, b in LEGS.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("clip", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/davis_camel"))
    ap.add_argument("--segments", type=int, default=0, help="PCK between N stretches of the clip")
    ap.add_argument("--halves", action="store_true", help="which half of the rest shape each leg keypoint is picked on")
    a = ap.parse_args(argv)
    from lasr.evaluate import evaluate

    res = evaluate(a.run, a.clip, do_iou=False, partners=PARTNERS, per_pair=a.segments > 0 or a.halves)
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
    if a.segments > 0:
        print_segments(kp, a.segments)
    if a.halves:
        print_halves(kp, a.run)
    return 0


def rest_sides(picked: dict, rest: np.ndarray, faces: np.ndarray, keys, margin: float) -> dict:
    """``{k: (share at x < -margin, share within margin, share at x > margin, mean x)}``: where
    on the rest shape (``rest``, ``faces``; x across its mirror plane) keypoint ``k`` was
    picked (``picked``: :func:`lasr.evaluate.keypoint_transfer`'s ``{frame: (face, bary,
    visible)}``) over the frames where it is visible."""
    out = {}
    for k in keys:
        xs = np.array([float(bary[k] @ rest[faces[face[k]], 0]) for _, (face, bary, vis) in sorted(picked.items())
                       if k < len(face) and vis[k] and face[k] >= 0])
        if len(xs):
            out[k] = (float((xs < -margin).mean()), float((np.abs(xs) <= margin).mean()),
                      float((xs > margin).mean()), float(xs.mean()))
    return out


def print_halves(kp: dict, run: str) -> None:
    from lasr.io.final import final_dir
    from lasr.io.obj import read_obj

    rest, faces = read_obj(final_dir(run) / "rest.obj")[:2]
    margin = 0.05 * float(np.abs(rest[:, 0]).max())
    sides = rest_sides(kp["picked"], rest, faces, sorted(PARTNERS), margin)
    print(f"where each leg keypoint is picked on the rest shape: share of its frames at x < -{margin:.3f}, "
          f"within, at x > {margin:.3f} (5 % of the half-width), and its mean x:")
    for a, b in LEGS.items():
        print("  " + "    ".join(f"#{k:2d} {sides[k][0]:.2f} / {sides[k][1]:.2f} / {sides[k][2]:.2f} ({sides[k][3]:+.2f})"
                                 if k in sides else f"#{k:2d} not visible" for k in (a, b)))


def segment_pck(frames, tests, hits, edges, keypoints):
    """``(S, S)``: entry ``[s, u]`` is the PCK over ``keypoints`` of the transfers from the
    frames of stretch ``s`` (``edges[s] <= frame < edges[s + 1]``) to those of stretch ``u``
    (NaN where none was tested), from :func:`lasr.evaluate.keypoint_transfer`'s ``per_pair``
    outcomes (``frames``, ``tests``, ``hits``)."""
    seg = np.searchsorted(edges, np.asarray(frames), side="right") - 1
    S = len(edges) - 1
    ks = [k for k in keypoints if k < tests.shape[2]]
    t = tests[:, :, ks].sum(2)
    h = hits[:, :, ks].sum(2)
    out = np.full((S, S), np.nan)
    for s in range(S):
        for u in range(S):
            n = t[np.ix_(seg == s, seg == u)].sum()
            if n:
                out[s, u] = h[np.ix_(seg == s, seg == u)].sum() / n
    return out


def print_segments(kp: dict, n: int) -> None:
    frames = kp["pair_frames"]
    if not frames:
        print("no keypoint transfers to split"); return
    edges = np.linspace(frames[0], frames[-1] + 1, n + 1).round().astype(int)
    K = kp["pair_tests"].shape[2]
    groups = {"the legs": sorted(PARTNERS), "the rest of the body": [k for k in range(K) if k not in PARTNERS]}
    for name, ks in groups.items():
        table = segment_pck(frames, kp["pair_tests"], kp["pair_hits"], edges, ks)
        print(f"PCK of the transfers of {name}, from the frames of a row to those of a column:")
        print("  from \\ to " + " ".join(f"{edges[u]:>3d}-{edges[u + 1] - 1:<3d}" for u in range(n)))
        for s in range(n):
            print(f"  {edges[s]:>3d}-{edges[s + 1] - 1:<3d}    " + " ".join(
                "   -   " if np.isnan(x) else f"  {x:.2f} " for x in table[s]))


if __name__ == "__main__":
    raise SystemExit(main())
