"""A kinematic tree over the bones of a fit, and the joints of a rig built on it.

A fit's bones are independent Gaussians, each with its own per-frame rigid transform
``G_tb`` (:mod:`lasr.model.articulated`); an animator's rig is a tree of joints. The tree
is estimated from what the fit says about each pair of bones ``(a, b)``:

* **shared skin**: ``S_ab = sum_v min(w_va, w_vb) / min(m_a, m_b)`` in [0, 1], the share of
  the smaller bone's skinning mass (``m_b = sum_v w_vb``) that it shares with the other;
  bones that meet on the surface share a band of vertices, bones far apart share none;
* **coherent motion**: the *meeting point* ``p_ab``, the centroid of the vertices weighted
  by ``w_va w_vb`` (the band where the two bones' influences meet), is carried by both
  bones; ``r_ab = sqrt(mean_t |G_ta p_ab - G_tb p_ab|^2)`` is how far the two bones tear it
  apart over the clip: about 0 for two parts joined there (whatever they rotate), large for
  two parts that only happen to be near each other (two legs of one pair).

The edge cost ``c_ab = -log(S_ab + eps) + (r_ab / sigma)^2 / 2`` is a negative
log-likelihood of "a and b are joined"; ``sigma`` is the tear to expect between joined
bones: 2 % of the rest shape's bounding-box diagonal, or more where the fit's bones tear
more (:data:`RIG_NOISE` times the median over the bones of the least tear between a bone and
one of the 3 bones it shares most skin with: a fit's bones do not move exactly together
where they meet, about 3 % of the diagonal on the built-in example's fit, and only a tear
that stands out from that tells).
The tree is the cost's minimum spanning tree (Prim), rooted at the bone whose centroid is
nearest the body's centre (the area-weighted centroid of the rest shape).

The rig (:func:`bind_frames`): bone ``b``'s joint (its *head*) sits where it meets its
parent (the meeting point, moved along the pair's common rotation centre when the clip
moves them, :func:`joint_heads`), the root's at its centroid; its local +y axis points at
its children's joints (the centroid of their directions), a leaf's at its own far end.
That is how Blender's glTF importer draws a bone (the tip on +y, as long as the distance
to the nearest child), so the armature follows legs, neck and tail.

Everything here is numpy; shapes: ``V`` vertices, ``B`` bones, ``T`` frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "RIG_SIGMA",
    "RIG_NOISE",
    "bone_centroids",
    "shared_skin",
    "meeting_points",
    "tear",
    "edge_costs",
    "body_centre",
    "kinematic_tree",
    "joint_heads",
    "bone_tails",
    "bind_frames",
    "children_of",
    "tree_depth",
    "check_parents",
    "skeleton_rig",
]

RIG_SIGMA = 0.02  # the least tear (a fraction of the rest diagonal) expected between joined bones
RIG_NOISE = 3.0  # sigma is at least this many times the median tear of a bone to its nearest joint
_EPS = 1e-9


def _diag(X: np.ndarray) -> float:
    X = np.asarray(X, dtype=np.float64)
    return float(np.linalg.norm(X.max(0) - X.min(0))) or 1.0


def bone_centroids(weights: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """``(B, 3)`` the skinning-weighted centroid of the rest vertices of each bone
    (``weights (V, B)``, ``rest (V, 3)``)."""
    W = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    return (W.T @ np.asarray(rest, dtype=np.float64)) / np.maximum(W.sum(0), 1e-300)[:, None]


def shared_skin(weights: np.ndarray) -> np.ndarray:
    """``(B, B)`` symmetric ``S_ab = sum_v min(w_va, w_vb) / min(m_a, m_b)`` in [0, 1]; 0 on
    the diagonal. ``weights (V, B)``, non-negative."""
    W = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    V, B = W.shape
    S = np.zeros((B, B))
    for a in range(B):  # (V, B) per bone keeps memory at V*B
        S[a] = np.minimum(W[:, a:a + 1], W).sum(0)
    m = W.sum(0)
    S /= np.maximum(np.minimum(m[:, None], m[None, :]), 1e-300)
    np.fill_diagonal(S, 0.0)
    return np.clip(S, 0.0, 1.0)


def meeting_points(weights: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """``(B, B, 3)`` the centroid of the rest vertices weighted by ``w_va w_vb``: where
    bones ``a`` and ``b`` meet. Where they share no weight at all, the midpoint of their
    two nearest vertices of each (most weight) is used."""
    W = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    X = np.asarray(rest, dtype=np.float64)
    num = np.einsum("va,vb,vi->abi", W, W, X)
    den = np.einsum("va,vb->ab", W, W)
    P = num / np.maximum(den, 1e-300)[..., None]
    empty = den <= 1e-12 * max(float(den.max()), 1e-300)
    if empty.any():  # disjoint skins: the midpoint of the closest pair of their vertices
        own = W.argmax(1)
        for a, b in zip(*np.nonzero(np.triu(empty, 1))):
            xa, xb = X[own == a], X[own == b]
            if len(xa) == 0 or len(xb) == 0:
                xa = X[[W[:, a].argmax()]] if len(xa) == 0 else xa
                xb = X[[W[:, b].argmax()]] if len(xb) == 0 else xb
            d = ((xa[:, None] - xb[None]) ** 2).sum(-1)
            i, j = np.unravel_index(d.argmin(), d.shape)
            P[a, b] = P[b, a] = 0.5 * (xa[i] + xb[j])
    return P


def tear(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(B, B)`` ``r_ab = sqrt(mean_t |G_ta p_ab - G_tb p_ab|^2)``: how far bones ``a``
    and ``b`` move their meeting point ``points (B, B, 3)`` apart under the per-frame
    transforms ``transforms (T, B, 4, 4)`` (rest frame)."""
    G = np.asarray(transforms, dtype=np.float64)
    P = np.asarray(points, dtype=np.float64)
    Ph = np.concatenate([P, np.ones(P.shape[:2] + (1,))], -1)  # (B, B, 4)
    moved = np.einsum("taij,abj->tabi", G[..., :3, :], Ph)  # bone a carries p_ab
    d = moved - np.swapaxes(moved, 1, 2)  # G_ta p_ab - G_tb p_ba, p symmetric
    return np.sqrt((d ** 2).sum(-1).mean(0))


def edge_costs(weights: np.ndarray, rest: np.ndarray, transforms: np.ndarray | None = None,
               sigma: float = RIG_SIGMA, noise: float = RIG_NOISE) -> np.ndarray:
    """``(B, B)`` symmetric ``c_ab = -log(S_ab + eps) + (r_ab / s)^2 / 2`` with ``s = diag *
    max(sigma, noise * median_b min_{n in N(b)} r_bn / diag)``, ``N(b)`` the 3 bones sharing
    most skin with ``b`` (see the module's docstring); ``transforms`` None or one frame: the
    shared skin alone."""
    S = shared_skin(weights)
    C = -np.log(S + _EPS)
    if transforms is not None and np.asarray(transforms).shape[0] > 1:
        r = tear(transforms, meeting_points(weights, rest)) / _diag(rest)
        near = np.argsort(-S, axis=1, kind="stable")[:, :3]
        s = max(sigma, noise * float(np.median(np.take_along_axis(r, near, 1).min(1))))
        C = C + 0.5 * (r / s) ** 2
    np.fill_diagonal(C, np.inf)
    return C


def body_centre(rest: np.ndarray, faces: np.ndarray | None = None) -> np.ndarray:
    """``(3,)`` the area-weighted centroid of the rest surface (the vertex mean without
    faces)."""
    X = np.asarray(rest, dtype=np.float64)
    if faces is None or len(faces) == 0:
        return X.mean(0)
    F = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    a = 0.5 * np.linalg.norm(np.cross(X[F[:, 1]] - X[F[:, 0]], X[F[:, 2]] - X[F[:, 0]]), axis=1)
    if a.sum() <= 0:
        return X.mean(0)
    return (a[:, None] * X[F].mean(1)).sum(0) / a.sum()


def kinematic_tree(weights: np.ndarray, rest: np.ndarray, transforms: np.ndarray | None = None,
                   faces: np.ndarray | None = None, root: int | None = None,
                   sigma: float = RIG_SIGMA, noise: float = RIG_NOISE) -> np.ndarray:
    """The bones' kinematic tree: ``parents (B,)`` int64, -1 for the root.

    Args:
        weights: ``(V, B)`` skinning weights of the rest vertices.
        rest: ``(V, 3)`` rest vertices.
        transforms: ``(T, B, 4, 4)`` per-frame bone transforms in the rest frame (None: the
            tree from the shared skin alone).
        faces: ``(F, 3)``: the body's centre is area weighted (else the vertex mean).
        root: the root bone; default the one whose centroid is nearest the body's centre.
        sigma, noise: the tear expected between joined bones (:func:`edge_costs`).
    Returns:
        the minimum spanning tree of :func:`edge_costs` grown from the root (Prim):
        ``parents[b]`` is ``b``'s parent bone.
    """
    W = np.asarray(weights, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != np.asarray(rest).shape[0]:
        raise ValueError(f"weights must be (V, B) with V = len(rest) = {np.asarray(rest).shape[0]}, "
                         f"got {W.shape}")
    B = W.shape[1]
    if root is None:
        root = int(np.linalg.norm(bone_centroids(W, rest) - body_centre(rest, faces), axis=1).argmin())
    if not 0 <= root < B:
        raise ValueError(f"root={root} is not a bone (B = {B})")
    parents = np.full(B, -1, dtype=np.int64)
    if B == 1:
        return parents
    C = edge_costs(W, rest, transforms, sigma, noise)
    C = np.where(np.isfinite(C), C, np.inf)
    inside = np.zeros(B, dtype=bool)
    inside[root] = True
    best, via = C[root].copy(), np.full(B, root)
    for _ in range(B - 1):
        cand = np.where(inside, np.inf, best)
        b = int(np.argmin(cand))  # ties: the lowest index (deterministic)
        inside[b] = True
        parents[b] = via[b]
        closer = ~inside & (C[b] < best)
        best[closer], via[closer] = C[b][closer], b
    return parents


def children_of(parents: np.ndarray) -> list[list[int]]:
    """``children[b]``: the bones whose parent is ``b``, in index order."""
    out: list[list[int]] = [[] for _ in range(len(parents))]
    for b, p in enumerate(parents):
        if p >= 0:
            out[int(p)].append(b)
    return out


def check_parents(parents, num_bones: int | None = None) -> np.ndarray:
    """``parents`` as int64 after checking it is one tree (a single -1, every bone reaching
    it, no cycle); raises ValueError naming the bad entry."""
    p = np.asarray(parents).astype(np.int64).reshape(-1)
    if num_bones is not None and len(p) != num_bones:
        raise ValueError(f"parents has {len(p)} entries for {num_bones} bones")
    if (p < -1).any() or (p >= len(p)).any():
        raise ValueError(f"parents must hold -1 or bone indices < {len(p)}, got {p.tolist()}")
    if (p == -1).sum() != 1:
        raise ValueError(f"parents must have exactly one root (-1), got {int((p == -1).sum())}: {p.tolist()}")
    for b in range(len(p)):
        seen, x = 0, b
        while p[x] >= 0:
            x, seen = int(p[x]), seen + 1
            if seen > len(p):
                raise ValueError(f"parents has a cycle through bone {b}: {p.tolist()}")
    return p


def tree_depth(parents) -> int:
    """The number of bones on the longest root-to-leaf path (a single bone: 1)."""
    p = check_parents(parents)
    depth = np.zeros(len(p), dtype=np.int64)
    for b in range(len(p)):
        d, x = 1, b
        while p[x] >= 0:
            x, d = int(p[x]), d + 1
        depth[b] = d
    return int(depth.max())


def joint_heads(parents, weights: np.ndarray, rest: np.ndarray, transforms: np.ndarray | None = None,
                prior_angle: float = 0.05) -> np.ndarray:
    """``(B, 3)`` rest-frame joint positions: the root's is its centroid; bone ``b``'s is
    where it meets its parent ``a``: ``argmin_x sum_t |(G_tb - G_ta) x|^2 + T prior_angle^2
    |x - p_ab|^2`` with ``p_ab`` the meeting point (:func:`meeting_points`), i.e. the meeting
    point moved toward the pair's common centre of rotation as far as the clip shows one
    (relative rotations well above ``prior_angle`` radians; kept within 10 % of the rest
    diagonal of the meeting point)."""
    p = check_parents(parents)
    W = np.asarray(weights, dtype=np.float64)
    X = np.asarray(rest, dtype=np.float64)
    heads = bone_centroids(W, X)
    diag = _diag(X)
    for b in np.flatnonzero(p >= 0):
        a = int(p[b])
        w = W[:, a] * W[:, b]
        x0 = (w @ X) / w.sum() if w.sum() > 1e-12 * max(W.max(), 1e-300) ** 2 else meeting_points(
            W[:, [a, b]], X)[0, 1]
        x = x0
        if transforms is not None and np.asarray(transforms).shape[0] > 1:
            D = np.asarray(transforms, dtype=np.float64)[:, b, :3, :] - np.asarray(transforms)[:, a, :3, :]
            A, r = D[..., :3], D[..., 3]  # (T, 3, 3), (T, 3): (G_b - G_a) x = A x + r
            lam = len(D) * prior_angle ** 2
            M = np.einsum("tji,tjk->ik", A, A) + lam * np.eye(3)
            rhs = -np.einsum("tji,tj->i", A, r) + lam * x0
            x1 = np.linalg.solve(M, rhs)
            if np.linalg.norm(x1 - x0) <= 0.1 * diag:
                x = x1
        heads[b] = x
    return heads


def bone_tails(parents, heads: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``(B, 3)`` where each bone ends: the mean of its children's heads; a leaf's runs from
    its head through its centroid as far again (the far end of its part)."""
    p = check_parents(parents)
    kids = children_of(p)
    tails = np.empty_like(np.asarray(heads, dtype=np.float64))
    for b in range(len(p)):
        if kids[b]:
            tails[b] = np.mean([heads[c] for c in kids[b]], 0)
        else:
            tails[b] = 2.0 * centroids[b] - heads[b]
    return tails


def _frame_from_y(y: np.ndarray) -> np.ndarray:
    """A rotation whose second column is the unit vector ``y`` (first column orthogonal to
    ``y`` and to the coordinate axis least aligned with it: a deterministic roll)."""
    ref = np.eye(3)[int(np.argmin(np.abs(y)))]
    x = np.cross(y, ref)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], 1)


def bind_frames(parents, heads: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``(B, 4, 4)`` rest-frame bind matrices of the joints: translation the head, local +y
    toward the centroid of the children's heads (a leaf: toward its centroid, else its
    parent's direction; a lone bone: -y of the rest frame, which is up in OpenCV axes)."""
    p = check_parents(parents)
    H = np.asarray(heads, dtype=np.float64)
    Cn = np.asarray(centroids, dtype=np.float64)
    kids = children_of(p)
    scale = _diag(np.concatenate([H, Cn])) if len(H) > 1 else 1.0
    order = [int(np.flatnonzero(p < 0)[0])]
    for b in order:  # parents before children
        order.extend(kids[b])
    dirs = np.zeros((len(p), 3))
    M = np.tile(np.eye(4), (len(p), 1, 1))
    for b in order:
        d = np.sum([H[c] - H[b] for c in kids[b]], 0) if kids[b] else Cn[b] - H[b]
        if np.linalg.norm(d) <= 1e-6 * scale:
            d = dirs[p[b]] if p[b] >= 0 else np.array([0.0, -1.0, 0.0])
        dirs[b] = d / np.linalg.norm(d)
        M[b, :3, :3] = _frame_from_y(dirs[b])
        M[b, :3, 3] = H[b]
    return M


def skeleton_rig(skeleton: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rig of a ``skeleton.npz``'s arrays (``skinning_weights (V, B)``, ``rest_vertices
    (V, 3)``, ``bone_transforms (T, B, 4, 4)``, optional ``faces``, ``parents``,
    ``joint_positions``): ``parents (B,)`` int64, ``joints (B, 3)`` rest-frame joint
    positions and ``bind (B, 4, 4)`` bind frames (:func:`bind_frames`).

    ``parents`` / ``joint_positions`` are taken as given when present (a fit's), else
    estimated (:func:`kinematic_tree`, :func:`joint_heads`: a ``skeleton.npz`` written before
    lasr had rigs)."""
    W = np.asarray(skeleton["skinning_weights"], dtype=np.float64)
    X = np.asarray(skeleton["rest_vertices"], dtype=np.float64)
    G = np.asarray(skeleton["bone_transforms"], dtype=np.float64)
    B = W.shape[1]
    if skeleton.get("parents") is not None:
        parents = check_parents(skeleton["parents"], B)
    else:
        parents = kinematic_tree(W, X, G, skeleton.get("faces"))
    joints = skeleton.get("joint_positions")
    if joints is None or np.shape(joints) != (B, 3):
        joints = joint_heads(parents, W, X, G)
    joints = np.asarray(joints, dtype=np.float64)
    return parents, joints, bind_frames(parents, joints, bone_centroids(W, X))
