"""Which root hypothesis places the symmetric shape's mirror plane right, and who can tell.

    uv run python experiments/mirror_planes.py [--cache DIR] [--seed N] [--width W]

The built-in creature (first seen 45° off its side; the camera orbits it by 90°) is
preprocessed offline (DIS flow, its masks). `fast`'s rigid stage runs once from each
of its hypotheses (the flow's trajectory and its mirror image in depth, each turned by
0, 45, 90, 135° about the vertical: the rest shape's mirror plane x = 0 lands at that
azimuth) through the whole stage. Printed per hypothesis: the data terms over all frames
at the stage's end (what restarts keep), the mask IoU, and the per-frame Chamfer and F@2%
against the true meshes (every 4th frame, `lasr.evaluate`'s alignment).

Measured (README, Results): the right plane (the mirror path at 45°) has the lowest data
terms at the stage's end on seeds 0 and 1 and the best 3D; after the hypotheses' short
tries (40 steps) it does not always, which is why `fast` runs its 3 best short tries
through the whole rigid stage (`restarts: 3`).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

import preprocess  # noqa: E402
from lasr.config import conf_dir  # noqa: E402
from lasr.data import to_video_data  # noqa: E402
from lasr.evaluate.align import chamfer_f, icp_similarity, sample_surface  # noqa: E402
from lasr.examples import make_creature_clip, read_truth  # noqa: E402
from lasr.fit import Fitter  # noqa: E402
from lasr.fit.trajectory import estimate_trajectory, mirror_in_depth  # noqa: E402
from lasr.geometry import axis_angle_to_matrix  # noqa: E402


class _StageEnd(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="preprocessing cache (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0, help="train.seed")
    ap.add_argument("--width", type=float, default=0.5, help="model.init_width")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clip = make_creature_clip()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lasr-mirror-planes-"))
    if not (cache / "creature").exists():
        done = subprocess.run([sys.executable, "-m", "preprocess", f"video={clip / 'frames'}",
                               f"masks={clip / 'masks'}", "preprocess.flow=dis", f"cache_dir={cache}",
                               "name=creature"], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"preprocessing the creature failed:\n{done.stderr}")
    data = to_video_data(preprocess.load_sequence(cache / "creature"))
    V, F, _ = read_truth(clip)
    diag = float(np.linalg.norm(V[0].max(0) - V[0].min(0)))
    overrides = ["stages=fast", "train.progress=false", f"train.seed={args.seed}", f"model.init_width={args.width}",
                 "stages.rigid.hypotheses=1", "stages.rigid.mirror_hypotheses=false", "stages.rigid.restarts=1"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    first = Fitter(cfg, data, Path(tempfile.mkdtemp()), torch.device("cpu"))
    focal = float(first.model.focal()[0].detach()) * max(data.image_size)
    est = torch.as_tensor(estimate_trajectory(data, focal).rotations, dtype=torch.float32)
    print(f"seed {args.seed}, init_width {args.width}: the rigid stage from each hypothesis")
    print("path     azimuth  data terms  mask IoU  Chamfer %  F@2%")

    def stop(f, r):
        raise _StageEnd

    for mirrored in (False, True):
        for az in (0, 45, 90, 135):
            fitter = Fitter(cfg, data, Path(tempfile.mkdtemp()), torch.device("cpu"))
            path = mirror_in_depth(est) if mirrored else est
            fitter.trajectory = path @ axis_angle_to_matrix(torch.tensor([0.0, math.radians(az), 0.0]))
            try:
                fitter.fit(on_stage_end=stop)
            except _StageEnd:
                pass
            ids = torch.arange(0, data.num_frames, 4)
            with torch.no_grad():
                P = fitter.model.to_camera(fitter.model.deform(ids), ids).numpy()
            faces = fitter.model.faces.numpy()
            cds, f2 = [], []
            for k, i in enumerate(ids.tolist()):
                p, g = sample_surface(P[k], faces, 5000, 0), sample_surface(V[i], F, 5000, 1)
                tp, tg = cKDTree(p), cKDTree(g)
                cd, fs = chamfer_f(icp_similarity([p], [g], gt_trees=[tg], pred_trees=[tp]), p, g, tp, tg,
                                   [0.02 * diag])
                cds.append(100 * cd / diag)
                f2.append(fs[0])
            print(f"{'mirror' if mirrored else 'flow':8s} {az:5d}°   {fitter.objective(cfg.stages.rigid):.4f}"
                  f"     {float(fitter.full_frame_iou().mean()):.3f}     {np.mean(cds):.2f}      {np.mean(f2):.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
