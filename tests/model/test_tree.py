"""lasr.model.tree: the kinematic tree over a fit's bones is recovered on skeletons whose
true tree is known (a chain, a star, two fingers side by side, the built-in four-legged
creature), with the joints where the parts really turn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lasr.model import tree as TR
from lasr.model.skinning import gaussian_skinning_weights


def _rot(axis, angle):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _about(pivot, R):
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = pivot - R @ pivot
    return M


def capsules(segments, radius=0.08, rings=10, segs=12):
    """Surface points of capsules ``[(start, end), ...]``: vertices (V, 3) and the segment of
    each vertex (V,)."""
    verts, owner = [], []
    for i, (a, b) in enumerate(segments):
        a, b = np.asarray(a, float), np.asarray(b, float)
        ax = (b - a) / np.linalg.norm(b - a)
        n1 = np.cross(ax, [0.3, 0.5, 0.8])
        n1 /= np.linalg.norm(n1)
        n2 = np.cross(ax, n1)
        th = 2 * np.pi * np.arange(segs) / segs
        for s in np.linspace(0, 1, rings):
            ring = a + s * (b - a) + radius * (np.cos(th)[:, None] * n1 + np.sin(th)[:, None] * n2)
            verts.append(ring)
            owner += [i] * segs
        verts.append(np.stack([a - radius * ax, b + radius * ax]))
        owner += [i, i]
    return np.concatenate(verts), np.array(owner)


def _part_skinning(X, owner, B):
    """Skinning weights of Gaussian bones (LASR's softmax, temperature 10), one fitted to
    the points ``X[owner == j]`` of each part ``j < B`` (centre, principal axes, spread)."""
    cent, rots, lps = [], [], []
    for j in range(B):
        P = X[owner == j]
        m = P.mean(0)
        e, U = np.linalg.eigh(np.cov((P - m).T) + 1e-6 * np.eye(3))
        if np.linalg.det(U) < 0:
            U[:, 0] *= -1
        cent.append(m), rots.append(U), lps.append(np.log(1 / (2 * 10 * e)))
    return gaussian_skinning_weights(*(torch.tensor(np.array(a)) for a in (X, cent, rots, lps))).numpy()


def fit_like_skeleton(segments, parents, frames=12, amplitude=0.6, seed=0, axes=None):
    """What a fit would export for an articulated body made of ``segments`` (bone ``i``
    turns about its start, the child of ``parents[i]``): Gaussian-bone skinning weights
    (LASR's softmax, temperature 10) fitted to each part's points, and the true per-frame
    bone transforms (forward kinematics of random smooth joint angles)."""
    X, owner = capsules(segments)
    B = len(segments)
    W = _part_skinning(X, owner, B)
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(B, 3)) if axes is None else np.asarray(axes, float)
    phase = rng.uniform(0, 2 * np.pi, B)
    G = np.zeros((frames, B, 4, 4))
    for t in range(frames):
        for b in range(B):  # parents precede children
            local = _about(np.asarray(segments[b][0], float),
                           _rot(axes[b], amplitude * np.sin(2 * np.pi * t / frames + phase[b])))
            G[t, b] = local if parents[b] < 0 else G[t, parents[b]] @ local
    return W, X, G


def _edges(parents):
    return {frozenset((b, int(p))) for b, p in enumerate(parents) if p >= 0}


def test_chain_is_recovered_and_rooted_in_the_middle():
    segments = [((i * 0.4, 0, 0), ((i + 1) * 0.4, 0, 0)) for i in range(5)]
    true = [-1, 0, 1, 2, 3]
    W, X, G = fit_like_skeleton(segments, true, axes=[(0, 0, 1)] * 5)
    parents = TR.kinematic_tree(W, X, G)
    assert _edges(parents) == _edges(true)
    assert parents.tolist() == [1, 2, -1, 2, 3]  # the middle bone is nearest the body's centre
    assert TR.tree_depth(parents) == 3


def test_star_hangs_every_arm_off_the_hub():
    arms = [(np.cos(a), np.sin(a), 0.1 * k) for k, a in enumerate(np.linspace(0, 2 * np.pi, 6, endpoint=False))]
    segments = [((-0.15, 0, 0), (0.15, 0, 0))] + [(0.2 * np.array(d), 0.8 * np.array(d)) for d in arms]
    true = [-1, 0, 0, 0, 0, 0, 0]
    W, X, G = fit_like_skeleton(segments, true, seed=1)
    parents = TR.kinematic_tree(W, X, G)
    assert parents.tolist() == true
    assert TR.tree_depth(parents) == 2


def test_motion_parts_fingers_that_touch():
    """Two fingers side by side (a narrow gap) on a palm: their bases share about as much skin
    with each other as with the palm; only how they move tells which joins which."""
    palm = ((0, 0, 0), (0, 0.4, 0))
    segments = [palm]
    true = [-1]
    for y in (0.12, 0.28):
        segments += [((0.05, y, 0), (0.45, y, 0)), ((0.45, y, 0), (0.85, y, 0))]
        true += [0, len(true)]
    W, X, G = fit_like_skeleton(segments, true, frames=16, amplitude=0.8, seed=3, axes=[(0, 1, 0)] * 5)
    skin_only = TR.kinematic_tree(W, X, None)
    with_motion = TR.kinematic_tree(W, X, G)
    assert _edges(with_motion) == _edges(true)
    assert _edges(skin_only) != _edges(true)  # the skin alone links one finger to the other
    assert TR.kinematic_tree(W, X, G, root=0).tolist() == true


def creature_rig(frames=16):
    """The built-in example's creature as a fit would export it: Gaussian bones fitted to
    its 13 parts, its true walk as bone transforms; returns (W, X, faces, G, creature)."""
    from lasr.examples.creature import BONES, build_creature, pose_creature

    c = build_creature()
    X, own = c.verts, c.weights.argmax(1)
    W = _part_skinning(X, own, len(BONES))
    G = np.stack([pose_creature(c, 2 * np.pi * t / frames) for t in range(frames)])
    return W, X, c.faces, G, c


def test_the_creature_rig_is_recovered_with_its_joints():
    from lasr.examples.creature import BONES, PARENTS

    W, X, F, G, c = creature_rig()
    parents = TR.kinematic_tree(W, X, G, F)
    assert parents.tolist() == list(PARENTS)  # body at the root; legs, neck, tail off it
    assert TR.kinematic_tree(W, X, None, F).tolist() == list(PARENTS)
    heads = TR.joint_heads(parents, W, X, G)
    diag = np.linalg.norm(X.max(0) - X.min(0))
    err = np.linalg.norm(heads - c.joints, axis=1) / diag
    assert err[1:].max() < 0.01, dict(zip(BONES, err.round(4)))  # hips, knees, neck, tail: within 1 %
    # the bind frames: +y from each joint toward its child's (legs point down to the knees)
    bind = TR.bind_frames(parents, heads, TR.bone_centroids(W, X))
    knee = BONES.index("shin_fl")
    hip = BONES.index("leg_fl")
    down = heads[knee] - heads[hip]
    assert np.allclose(bind[hip, :3, 1], down / np.linalg.norm(down))
    assert bind[hip, 1, 1] < -0.95  # straight down (the creature is +y up)
    assert np.allclose(bind[:, :3, :3] @ np.swapaxes(bind[:, :3, :3], 1, 2), np.eye(3))
    assert np.allclose(np.linalg.det(bind[:, :3, :3]), 1)


def test_shared_skin_and_tear_values():
    W = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    S = TR.shared_skin(W)
    m = W.sum(0)  # 1.5, 1.3, 1.2
    assert np.allclose(S, S.T) and np.all(np.diag(S) == 0)
    assert np.isclose(S[0, 1], 0.5 / 1.3) and np.isclose(S[1, 2], 0.2 / 1.2) and S[0, 2] == 0
    X = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    P = TR.meeting_points(W, X)
    assert np.allclose(P[0, 1], [1, 0, 0]) and np.allclose(P[1, 2], [2, 0, 0])
    assert np.allclose(P[0, 2], [2, 0, 0])  # no shared skin: between their nearest own vertices (1 and 3)
    # bone 1 turns 90 degrees about (1, 0, 0), bone 2 stays: their meeting point (2,0,0) tears
    # by sqrt(2) in one of two frames, bones 0 and 1 stay together at (1, 0, 0)
    G = np.tile(np.eye(4), (2, 3, 1, 1))
    G[1, 1] = _about(np.array([1.0, 0, 0]), _rot((0, 0, 1), np.pi / 2))
    r = TR.tear(G, P)
    assert np.isclose(r[0, 1], 0) and np.isclose(r[1, 2], np.sqrt(2 / 2)) and np.allclose(r, r.T)


def test_parents_checks_and_small_cases():
    assert TR.kinematic_tree(np.ones((5, 1)), np.random.default_rng(0).normal(size=(5, 3))).tolist() == [-1]
    assert TR.tree_depth([-1]) == 1 and TR.tree_depth([-1, 0, 1, 0]) == 3
    assert TR.children_of([-1, 0, 1, 0]) == [[1, 3], [2], [], []]
    for bad, what in (([0, 1], "one root"), ([-1, 2, 1], "cycle"), ([-1, 7], "indices"), ([-1, -1], "one root")):
        with pytest.raises(ValueError, match=what):
            TR.check_parents(bad)
    with pytest.raises(ValueError, match="root=3"):
        TR.kinematic_tree(np.ones((4, 2)) / 2, np.eye(4, 3), root=3)
    with pytest.raises(ValueError, match="weights must be"):
        TR.kinematic_tree(np.ones((3, 2)), np.eye(4, 3))
    # a lone bone's frame points up (-y in OpenCV axes); leaves point at their centroid
    M = TR.bind_frames([-1], np.zeros((1, 3)), np.zeros((1, 3)))
    assert np.allclose(M[0, :3, 1], [0, -1, 0])
