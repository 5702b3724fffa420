"""End-point error of the DIS flow settings against the true flow of the built-in creature.

    uv run python experiments/flow_accuracy.py [--clip DIR]

The creature clip (written by :func:`lasr.examples.make_creature_clip`, 32 frames of
160 px, the camera orbiting by 90°) keeps its true meshes in camera coordinates; the true
forward flow of each pair is their motion rendered by the project's rasterizer. Printed:
the error on the pixels inside both the true mask and the rendered one, for DIS at its
default (search down to full resolution, ``finest_scale=0``), the medium preset's own
finest scale (1, half resolution), on frames upsampled 2× and 4×, and OpenCV's
Farnebäck, with the true flow's size for scale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.config import DisConfig  # noqa: E402
from lasr.examples import make_creature_clip, true_flow, truth_at  # noqa: E402
from preprocess.flow import DISFlow  # noqa: E402


def true_flow_of_clip(clip: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(N-1,H,W,2) true forward flow, (N-1,H,W) its mask, and the N RGB frames."""
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((clip / "frames").glob("*.png"))]
    H, W = rgb[0].shape[:2]
    verts, faces, K = truth_at(clip, range(len(rgb)), (W, H))
    fw, _, inside, _ = true_flow(verts, faces, K, (W, H))
    return fw, inside, rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, default=None, help="the creature clip (default: the built-in one)")
    args = ap.parse_args()
    clip = make_creature_clip(args.clip)
    gt, inside, rgb = true_flow_of_clip(clip)
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in sorted((clip / "masks").glob("*.png"))]
    inside &= np.stack(masks[:-1])

    def dis(cfg: DisConfig, up: int = 1):
        """Preprocessing's DIS (``DISFlow``) on the frames, upsampled ``up`` times."""
        est = DISFlow(cfg)

        def f(a, b):
            if up > 1:
                a, b = (cv2.resize(x, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC) for x in (a, b))
            flow = est(a[None], b[None])[0]
            if up > 1:
                flow = cv2.resize(flow, (flow.shape[1] // up, flow.shape[0] // up), interpolation=cv2.INTER_AREA) / up
            return flow
        return f

    def farneback(a, b):
        a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 5, 5, 1.1, 0)

    variants = [
        ("DIS medium, finest_scale=0 (default)", dis(DisConfig())),
        ("DIS medium, finest_scale=1 (the preset's)", dis(DisConfig(finest_scale=None))),
        ("DIS medium, preset's, frames 2x", dis(DisConfig(finest_scale=None), 2)),
        ("DIS medium, preset's, frames 4x", dis(DisConfig(finest_scale=None), 4)),
        ("Farneback", farneback),
    ]
    size = np.linalg.norm(gt, axis=-1)[inside]
    print(f"{clip}: {len(rgb)} frames {rgb[0].shape[1]}x{rgb[0].shape[0]}, true flow on the object "
          f"{size.mean():.2f} px on average (median {np.median(size):.2f})")
    print(f"{'flow':45s} {'EPE mean':>9s} {'median':>7s}")
    for name, fn in variants:
        est = np.stack([fn(rgb[k], rgb[k + 1]) for k in range(len(rgb) - 1)])
        e = np.linalg.norm(est - gt, axis=-1)[inside]
        print(f"{name:45s} {e.mean():9.3f} {np.median(e):7.3f}")


if __name__ == "__main__":
    main()
