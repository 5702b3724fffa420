"""Would matches between far-apart frames place the limbs? SIFT's, scored against the truth.

    uv run python experiments/long_range_matches.py CACHE CLIP [--gaps 2 4 8 16] [--ratio 0.8]

The flow links each frame to the next; a cue that links frames far apart could tell which
leg is which where the flow loses it. One that needs no downloaded weights: SIFT keypoints
inside each mask of two frames ``gap`` apart (a pair every ``gap / 2`` frames), matched
mutually nearest with Lowe's ratio test. CACHE: the clip's preprocessing cache (frames and
masks as the fit sees them); CLIP: the clip's 3D truth (``gt/meshes``, ``gt/cameras.json``,
as ``experiments/true_flow_cache.py`` reads it). Each match is scored against where the
surface point under its first keypoint truly goes (the true meshes' motion from frame a to
frame b, rendered); a match on a point that frame b hides (the true motion's
forward-backward check), or off the true silhouette, is wrong. Printed per gap: matches
per pair, how many and what share are within ``--tol`` px of the truth, how many were on
hidden points, and the same for the lowest 40 % of the object's height in frame a (the
legs) (README, Results: "The true flow does not lift the fits").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.examples import true_flow, truth_at  # noqa: E402
from preprocess.flow import fb_confidence  # noqa: E402
from preprocess.layout import load_sequence  # noqa: E402


def match(img_a: np.ndarray, img_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, ratio: float = 0.8,
          contrast: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` pixel positions (x, y) in ``img_a`` and their matches in ``img_b`` (RGB
    uint8): SIFT inside the masks, mutual nearest neighbours passing Lowe's ratio test."""
    sift = cv2.SIFT_create(contrastThreshold=contrast)
    found = [sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), m.astype(np.uint8) * 255)
             for im, m in ((img_a, mask_a), (img_b, mask_b))]
    (ka, da), (kb, db) = found
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    bf = cv2.BFMatcher(cv2.NORM_L2)
    back = {m[0].queryIdx: m[0].trainIdx for m in bf.knnMatch(db, da, k=1)}
    pairs = [(m[0].queryIdx, m[0].trainIdx) for m in bf.knnMatch(da, db, k=2)
             if len(m) == 2 and m[0].distance < ratio * m[1].distance and back.get(m[0].trainIdx) == m[0].queryIdx]
    return (np.array([ka[i].pt for i, _ in pairs]).reshape(-1, 2),
            np.array([kb[j].pt for _, j in pairs]).reshape(-1, 2))


def score(p: np.ndarray, q: np.ndarray, fw: np.ndarray, bw: np.ndarray, on: np.ndarray, tol: float = 3.0,
          low: float = 0.6) -> dict:
    """Matches ``p -> q`` ``(n, 2)`` (x, y) against the true flow ``fw`` (frame a to b, on a)
    and ``bw`` (b to a, on b) and the true silhouette ``on`` of frame a: all matches
    (``matches``), those on points frame b hides or off the silhouette (``hidden``: wrong),
    those within ``tol`` px of where their point truly goes (``right``), and the same for
    the points below ``low`` of the silhouette's height (``matches_low``, ``hidden_low``,
    ``right_low``)."""
    H, W = on.shape
    xy = np.clip(np.round(p).astype(int), 0, [W - 1, H - 1]).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    seen = (fb_confidence(fw[None], bw[None])[0][y, x] >= 0.5) & on[y, x]
    right = seen & (np.linalg.norm(p + fw[y, x] - q, axis=-1) < tol)
    rows = np.nonzero(on)[0]
    is_low = (y - rows.min()) > low * (rows.max() - rows.min())
    return {"matches": len(xy), "hidden": int((~seen).sum()), "right": int(right.sum()),
            "matches_low": int(is_low.sum()), "hidden_low": int((~seen & is_low).sum()),
            "right_low": int((right & is_low).sum())}


def run(cache: Path, clip: Path, gaps=(2, 4, 8, 16), ratio: float = 0.8, tol: float = 3.0) -> dict:
    """``{gap: {"pairs", "matches", "hidden", "right", ...}}`` (:func:`score`'s counts summed
    over the pairs)."""
    seq = load_sequence(cache)
    H, W = seq.masks.shape[1:]
    verts, faces, K = truth_at(clip, seq.source_frames, (W, H))
    out = {}
    for gap in gaps:
        pairs = [(a, a + gap) for a in range(0, len(seq) - gap, max(1, gap // 2))]
        fws, bws, ons, _ = true_flow(verts, faces, K, (W, H), pairs)
        tot = {"pairs": len(pairs)}
        for (a, b), fw, bw, on in zip(pairs, fws, bws, ons):
            p, q = match(seq.frames[a], seq.frames[b], seq.masks[a], seq.masks[b], ratio)
            for k, v in score(p, q, fw, bw, on, tol).items():
                tot[k] = tot.get(k, 0) + v
        out[gap] = tot
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--gaps", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--ratio", type=float, default=0.8, help="Lowe's ratio test")
    ap.add_argument("--tol", type=float, default=3.0, help="px from the truth counted right")
    a = ap.parse_args(argv)
    for gap, t in run(a.cache, a.clip, a.gaps, a.ratio, a.tol).items():
        n = max(t["pairs"], 1)
        line = [f"gap {gap:3d} ({t['pairs']} pairs):"]
        for what, sfx in (("all", ""), ("lowest 40 % of the height", "_low")):
            m, h, r = t.get("matches" + sfx, 0), t.get("hidden" + sfx, 0), t.get("right" + sfx, 0)
            line.append(f"{what} {m / n:5.1f} matches a pair, {r} of {m} ({r / max(m, 1):.2f}) within {a.tol:g} px, "
                        f"{h} on hidden points;")
        print(" ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
