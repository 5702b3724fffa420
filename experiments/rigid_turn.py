"""The rigid stage on a body that turns: trained on the flow or not, Adam or preconditioned.

    uv run python experiments/rigid_turn.py [--profiles 180 360 ...] [--variants ...]

The project renders a lopsided body turning about the vertical axis (27° field of view,
exact flow; ``tests/fit/synth.py``) by each profile; ``stages=fast``'s rigid stage
alone fits it from the trajectory the flow shows, as the schedule has it (the flow scores
the hypotheses only: ``flow_from: 1``), trained on the flow with plain Adam vertex steps
(``flow_from=0``), or trained on it with Laplacian-preconditioned steps (``shape_lambda=10``).
Printed per fit: the mask IoU, the flow's end-point error (crop px at 64 px), the turn
error against the truth at every frame (mean / worst) and the estimated trajectory's (the
stage's start). About a minute a fit on one core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fit.test_rigid_turn import rigid_turn_fit  # noqa: E402
from tests.fit.test_trajectory import PROFILES  # noqa: E402


VARIANTS = {
    "schedule": [],
    "adam+flow": ["stages.rigid.flow_from=0"],
    "lambda10+flow": ["stages.rigid.flow_from=0", "stages.rigid.shape_lambda=10"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=list(PROFILES),
                    help="turning profiles (default: all)")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                    help="rigid stages to compare (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'profile':12s} {'variant':>13s} {'IoU':>6s} {'flow px':>8s} {'turn err mean/worst':>20s} "
          f"{'estimate mean/worst':>20s} {'s':>5s}")
    for profile in args.profiles:
        for variant in args.variants:
            t0 = time.perf_counter()
            fit = rigid_turn_fit(PROFILES[profile], Path(tempfile.mkdtemp(prefix="lasr-rigid-turn-")),
                                 VARIANTS[variant])
            e, est = fit["error"], fit["estimate_error"]
            print(f"{profile:12s} {variant:>13s} {fit['iou']:6.3f} {fit['flow_px']:8.2f} "
                  f"{e.mean():9.1f} / {e.max():5.1f}° {est.mean():9.1f} / {est.max():5.1f}° "
                  f"{time.perf_counter() - t0:5.0f}", flush=True)


if __name__ == "__main__":
    main()
