"""The built-in creature's true rig as a fit would export it, written as animation.glb.

    uv run python experiments/creature_rig_glb.py OUT.glb [--frames 32]

Gaussian bones fitted to the creature's 13 parts give LASR-style skinning weights; its true
walk (``lasr.examples.creature.pose_creature``) gives the bone transforms; the camera looks
at it from 3 units. No tree is given: ``write_glb`` estimates it (lasr.model.tree), as for a
``skeleton.npz`` without ``parents``. The tests build the same rig
(``tests/model/test_tree.py`` ``creature_rig``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from lasr.io.gltf import write_glb
    from tests.model.test_tree import creature_rig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()
    W, X, F, G, _ = creature_rig(frames=args.frames)
    T = len(G)
    d = {"rest_vertices": X, "faces": F, "skinning_weights": W, "bone_transforms": G,
         "root_rotations": np.tile(np.diag([1.0, -1.0, -1.0]), (T, 1, 1)),
         "root_translations": np.tile([0.0, 0.6, 3.0], (T, 1))}
    info = write_glb(args.out, d, fps=12.0)
    print(f"wrote {args.out}: parents {info['parents'].tolist()}, top-4 truncation {info['trunc_err_max']:.1e}")


if __name__ == "__main__":
    main()
