"""What the rigid stage's data terms say about the root's turn, with the true shape.

    uv run python experiments/turn_oracle.py [--cache DIR]

The built-in creature (the camera orbits it by 90°) is preprocessed offline (DIS flow,
its masks) and its true mesh of frame 0 is put into the model as a rigid shape, with the
true focal length and, per frame, the root that carries it onto each true mesh (rotation
by Procrustes, translation the centroid). Printed, for the root turning as the truth
does, not turning at all, and turning as the truth's mirror image in depth: the rigid
stage's terms over all frame pairs, the flow's end-point error (crop px) and the
all-frame data objective that scores hypotheses and restarts.

Read it against a fitted rigid stage's objective (``lasr.optimize ... stages=fast``, the
log's "hypothesis scores"): the data terms prefer the true turn over no turn with the
true shape, yet a free shape that does not turn reaches a lower objective still, since a
rigid shape cannot follow the legs (see the README's "The root turn").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

import preprocess  # noqa: E402
from lasr.config import conf_dir  # noqa: E402
from lasr.data import to_video_data  # noqa: E402
from lasr.evaluate import turn_from_first  # noqa: E402
from lasr.examples import make_creature_clip, read_truth  # noqa: E402
from lasr.fit import Fitter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=None, help="preprocessing cache (default: a temporary one)")
    args = ap.parse_args()
    clip = make_creature_clip()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="lasr-turn-oracle-"))
    done = subprocess.run([sys.executable, "-m", "preprocess", f"video={clip / 'frames'}", f"masks={clip / 'masks'}",
                           "preprocess.flow=dis", f"cache_dir={cache}", "name=creature"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"preprocessing the creature failed:\n{done.stderr}")
    data = to_video_data(preprocess.load_sequence(cache / "creature"))
    T = data.num_frames
    V, faces, cams = read_truth(clip)
    faces = torch.as_tensor(faces)
    turn = np.stack(turn_from_first(V[:T]))
    mirror = np.diag([1.0, 1.0, -1.0])

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["stages=fast", "train.progress=false"])
    fitter = Fitter(cfg, data, tempfile.mkdtemp(prefix="lasr-turn-oracle-run-"), torch.device("cpu"))
    stage = cfg.stages.rigid
    fitter.prepare_crops(stage)
    model = fitter.model
    model.set_rest_shape(torch.tensor(V[0] - V[0].mean(0), dtype=torch.float32), faces)
    fitter.mirror = None  # the true mesh has no vertex-to-vertex mirror map
    fitter._set_topology()
    with torch.no_grad():
        model.log_focal.fill_(float(np.log(cams["frames"][0]["fx"] / cams["width"])))
    ids, forward = torch.arange(T - 1), torch.ones(T - 1, dtype=torch.long)
    print(f"the creature's true mesh as a rigid model, {T} frames, rigid stage at {stage.resolution} px")
    for name, R in [("true turn", turn), ("no turn", np.broadcast_to(np.eye(3), turn.shape)),
                    ("mirror turn", mirror @ turn @ mirror)]:
        with torch.no_grad():
            model.root_rot.copy_(model.rot_from_matrix(torch.tensor(np.ascontiguousarray(R), dtype=torch.float32)))
            model.root_trans.copy_(torch.tensor(V.mean(1), dtype=torch.float32))
            terms, diag = fitter.losses(stage, ids, forward)
        print(f"{name:12s} silhouette {float(terms['silhouette']):.4f}  flow {float(terms['flow']):.4f}  "
              f"flow EPE {float(diag['flow_epe_px']):.3f} px  data objective {fitter.objective(stage):.4f}")


if __name__ == "__main__":
    main()
