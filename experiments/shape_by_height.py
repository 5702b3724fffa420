"""Where on the body a fit's shape misses: F@2% recall and precision per fifth of its height.

    uv run python experiments/shape_by_height.py RUN_FOLDER CLIP_FOLDER [--frames 0:48:4]

Each scored frame's posed mesh is aligned to the true one as `python -m lasr.evaluate` does
per frame (ICP with a similarity); the camera's vertical (OpenCV: y down) cuts both into
five bands of the true surface's height in the image, 1 the top (a person's head, an
animal's back and head) and 5 the bottom (feet). Recall: the share of true points of a
band within 2 % of the clip's diagonal (the evaluator's) of the fitted surface; precision:
the share of fitted points of a band within 2 % of the true surface. The per-frame F@2%
lies between them; a band far below the others is where the shape is wrong (e.g. legs
placed at the wrong depth: the silhouettes do not see it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BANDS = 5


def band_scores(pred: np.ndarray, truth: np.ndarray, diag: float, tau: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) per band of ``truth``'s height in the camera, for aligned point sets."""
    from scipy.spatial import cKDTree

    lo, hi = truth[:, 1].min(), truth[:, 1].max()  # camera y: down

    def band(points):
        h = (points[:, 1] - lo) / (hi - lo)
        return np.clip((h * BANDS).astype(int), 0, BANDS - 1)

    near_true = cKDTree(pred).query(truth)[0] < tau * diag
    near_pred = cKDTree(truth).query(pred)[0] < tau * diag
    bt, bp = band(truth), band(pred)
    recall = np.array([near_true[bt == b].mean() if (bt == b).any() else np.nan for b in range(BANDS)])
    precision = np.array([near_pred[bp == b].mean() if (bp == b).any() else np.nan for b in range(BANDS)])
    return recall, precision


def main() -> None:
    from lasr.evaluate.align import apply_similarity, icp_similarity, sample_surface
    from lasr.evaluate.clip import parse_frames, read_info, resolve_truth, truth_diagonal
    from lasr.io.obj import read_obj

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("clip")
    ap.add_argument("--frames", default=None, help="e.g. 0:48:4 (default: every frame with a true mesh)")
    ap.add_argument("--points", type=int, default=5000)
    a = ap.parse_args()
    gdir = Path(resolve_truth(a.clip)[0])
    pdir = Path(a.run) / "final" / "meshes"
    frames = parse_frames(a.frames) or sorted(int(p.stem) for p in (gdir / "meshes").glob("*.obj"))
    true_meshes = [read_obj(gdir / "meshes" / f"{t:05d}.obj") for t in frames]
    truths = [sample_surface(V, F, a.points, t) for t, (V, F) in zip(frames, true_meshes)]
    preds = [sample_surface(*read_obj(pdir / f"{t:05d}.obj"), a.points, t) for t in frames]
    diag = truth_diagonal(read_info(gdir), [V for V, _ in true_meshes])
    rec, prec = [], []
    for p, g in zip(preds, truths):
        T = icp_similarity([p], [g])
        r, q = band_scores(apply_similarity(T, p), g, diag)
        rec.append(r)
        prec.append(q)
    print(f"{a.run}: {len(frames)} frames, F@2% per fifth of the height (1 top, {BANDS} bottom)")
    print("band   recall  precision")
    for b in range(BANDS):
        print(f"{b + 1:>4}   {np.nanmean([r[b] for r in rec]):.3f}   {np.nanmean([q[b] for q in prec]):.3f}")


if __name__ == "__main__":
    main()
