"""How well a fit's kinematic tree matches the built-in creature's true rig.

    uv run python experiments/rig_vs_truth.py RUN_FOLDER CLIP_FOLDER [--sigma 0.02 0.05 ...]

The fit's posed meshes are aligned to the clip's true ones (one similarity for the clip,
lasr.evaluate's ICP); each fitted bone gets the true part (of the creature's 13) nearest its
skinning centroid, voted over the frames. An edge of the tree is *along the rig* when it
joins bones of one part or of a part and its true parent part, *across* otherwise (two legs,
a leg and the neck). A limb bone *hangs right* when every bone between it and the root is
of its own limb or the body. Printed for the tree in skeleton.npz and for trees estimated
again: 'default' (lasr.model.tree's settings), 'skin' (the shared skin alone), and a fixed
sigma (a fraction of the diagonal, not adapted to the fit's tears).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from scipy.spatial import cKDTree

    from lasr.evaluate.align import apply_similarity, icp_similarity, sample_surface
    import json

    from lasr.examples.creature import BONES, PARENTS, build_creature, pose_creature, skin
    from lasr.io.final import read_final
    from lasr.io.obj import read_obj
    from lasr.model import tree as TR

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("clip")
    ap.add_argument("--sigma", nargs="*", default=["default", "skin", "0.02", "0.05", "0.1", "0.2"])
    args = ap.parse_args()
    rf = read_final(args.run)
    T = rf.num_frames
    pred, pf = rf.meshes(list(range(T)))
    gts = [read_obj(Path(args.clip) / "gt" / "meshes" / f"{t:05d}.obj") for t in range(T)]
    gt = np.stack([v for v, _ in gts])
    sim = icp_similarity([sample_surface(v, pf, 3000, t) for t, v in enumerate(pred)],  # as lasr.evaluate does
                         [sample_surface(v, f, 3000, t) for t, (v, f) in enumerate(gts)])
    skel = rf.skeleton()
    W, X, G = skel["skinning_weights"], skel["rest_vertices"], skel["bone_transforms"]
    R, tr = skel["root_rotations"], skel["root_translations"]
    cen = TR.bone_centroids(W, X)
    posed = np.einsum("tij,tbj->tbi", R, np.einsum("tbij,bj->tbi", G[..., :3, :3], cen) + G[..., :3, 3]) + tr[:, None]
    # the true part of each GT vertex: the GT meshes keep the creature's visible vertices, in
    # camera coordinates (world_to_camera of gt/cameras.json, the walk's phase 2 pi t / T)
    c = build_creature()
    w2c = np.array(json.loads((Path(args.clip) / "gt" / "cameras.json").read_text())["frames"][0]["world_to_camera"])
    world0 = skin(c, pose_creature(c, 0.0))
    d, idx = cKDTree(world0 @ w2c[:3, :3].T + w2c[:3, 3]).query(gt[0])
    assert d.max() < 1e-4, f"GT vertices do not match the creature ({d.max():.2e})"
    part = c.weights.argmax(1)[idx]
    votes = np.zeros((len(cen), len(BONES)))
    for t in range(T):
        _, j = cKDTree(gt[t]).query(apply_similarity(sim, posed[t]))
        np.add.at(votes, (np.arange(len(cen)), part[j]), 1)
    label = votes.argmax(1)
    print("bones per true part:", {BONES[k]: int((label == k).sum()) for k in range(len(BONES))})
    limb = {k: ("leg_" + BONES[k].split("_")[1]) if BONES[k].startswith(("leg", "shin")) else
            ("tail" if BONES[k].startswith("tail") else ("neck" if BONES[k] in ("neck", "head") else "body"))
            for k in range(len(BONES))}

    def score(parents):
        along = sum(label[b] == label[p] or PARENTS[label[b]] == label[p] or PARENTS[label[p]] == label[b]
                    for b, p in enumerate(parents) if p >= 0)
        hang = total = 0
        for b in range(len(parents)):
            own = limb[label[b]]
            if own == "body":
                continue
            total += 1
            x, ok = b, True
            while parents[x] >= 0:
                x = parents[x]
                ok &= limb[label[x]] in (own, "body")
            hang += ok
        return along / max(len(parents) - 1, 1), hang / max(total, 1), TR.tree_depth(parents)

    a, h, d = score(skel["parents"]) if "parents" in skel else (np.nan, np.nan, 0)
    print(f"skeleton.npz: edges along the rig {a:.2f}, limb bones hanging right {h:.2f}, depth {d}, "
          f"root on {BONES[label[int(np.flatnonzero(skel['parents'] < 0)[0])]] if 'parents' in skel else '-'}")
    for s in args.sigma:
        if s in ("default", "skin"):
            par = TR.kinematic_tree(W, X, None if s == "skin" else G, skel["faces"])
        else:
            par = TR.kinematic_tree(W, X, G, skel["faces"], sigma=float(s), noise=0.0)
        a, h, d = score(par)
        print(f"sigma={s}: edges along the rig {a:.2f}, limb bones hanging right {h:.2f}, depth {d}")


if __name__ == "__main__":
    main()
