"""A synthetic walking creature with ground truth: the no-download example clip.

:func:`make_creature_clip` builds a four-legged animal from primitives (ellipsoid
body, neck, head with snout and ears, two-segment legs, a two-segment tail), rigs
it with 13 bones and linear blend skinning, animates one looping walk cycle (legs
in diagonal pairs, knees folding on the swing, tail wag, head bob, body bob and
sway) and renders it with :mod:`lasr.render` from a camera orbiting it.  The
surface carries a procedural *solid* texture (noise-warped stripes, blotches and
speckle evaluated per pixel at the rest-pose position of the visible surface
point, so the pattern is finer than the mesh and moves exactly with it) under a
Lambert light; the background is a noise texture at infinity (a function of the
world ray direction), so it rotates consistently with the camera, in a cool
palette that stays apart from the creature's warm one.

The clip folder has the layout of the project's ground-truth clips (see
:mod:`lasr.evaluate`)::

    DIR/frames/%05d.png        RGB (2x2 supersampled)
    DIR/masks/%05d.png         uint8 0/255 (2x2 sub-sample coverage >= 0.5)
    DIR/video.mp4              H.264 (when PyAV with libx264 is available and W, H are even)
    DIR/gt/meshes/%05d.obj     posed mesh in camera coordinates (OpenCV), same topology every frame
    DIR/gt/cameras.json        intrinsics and world_to_camera per frame
    DIR/gt/info.json           clip summary, bbox_diag (the evaluator's unit), generation params
    DIR/preview.png            6 frames side by side with the mask outline in green

World: +Y up, the creature faces +Z, model units (about 1.6 long, 1 tall).
Camera: OpenCV (x right, y down, z forward), ``X_cam = R X_world + t``,
``u = fx x / z + cx`` with pixel centres at integer coordinates.

This module is the creature (parts, rig, walk); :mod:`lasr.examples.clip` renders and
writes the clip. Run ``python -m lasr.examples.clip [out=DIR] [frames=32] [size=160]
[orbit_deg=90] [elevation_deg=15] [seed=0] [force=true]`` to write one from the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..geometry.mesh import signed_volume_np

__all__ = [
    "Creature",
    "build_creature",
    "hidden_faces",
    "pose_creature",
    "skin",
    "smoothstep",
    "walk_pose",
]





# ----------------------------------------------------------------------------
# small math
# ----------------------------------------------------------------------------
def smoothstep(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _rot(axis, angle: float) -> np.ndarray:
    """3x3 rotation about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def _about(pivot, R: np.ndarray) -> np.ndarray:
    """4x4 rotation ``R`` about the point ``pivot``."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(pivot) - R @ np.asarray(pivot)
    return T


def _translate(t) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = t
    return T


# ----------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------
def _tube(spine: np.ndarray, rx: np.ndarray, ry: np.ndarray, segs: int):
    """Closed surface swept along ``spine`` (n, 3); the first and last points are
    poles (their radii are ignored).  Rings are ellipses with half-axis ``rx``
    along world x and ``ry`` along ``tangent x x``; spines lie in the y-z plane.

    Returns ``(verts (V, 3), faces (F, 3), ring (V,) ring index 0..n-1)``,
    faces oriented outwards.
    """
    n = len(spine)
    tan = np.gradient(spine, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    ex = np.array([1.0, 0.0, 0.0])
    nrm = ex - tan * (tan @ ex)[:, None]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    bin_ = np.cross(tan, nrm)
    th = 2.0 * np.pi * np.arange(segs) / segs
    c, s = np.cos(th), np.sin(th)
    rings = (spine[1:-1, None, :] + rx[1:-1, None, None] * c[None, :, None] * nrm[1:-1, None, :]
             + ry[1:-1, None, None] * s[None, :, None] * bin_[1:-1, None, :])  # (n-2, segs, 3)
    verts = np.concatenate([spine[:1], rings.reshape(-1, 3), spine[-1:]])
    ring = np.concatenate([[0], np.repeat(np.arange(1, n - 1), segs), [n - 1]])
    p0, p1 = 0, len(verts) - 1
    idx = 1 + np.arange((n - 2) * segs).reshape(n - 2, segs)
    j, j1 = np.arange(segs), np.roll(np.arange(segs), -1)
    faces = [np.stack([np.full(segs, p0), idx[0, j1], idx[0, j]], 1)]
    for i in range(n - 3):
        a, b, cc, d = idx[i, j], idx[i, j1], idx[i + 1, j1], idx[i + 1, j]
        faces += [np.stack([a, b, cc], 1), np.stack([a, cc, d], 1)]
    faces.append(np.stack([idx[-1, j], idx[-1, j1], np.full(segs, p1)], 1))
    faces = np.concatenate(faces).astype(np.int64)
    if signed_volume_np(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces, ring


def _ellipsoid(center, radii, rings: int, segs: int):
    """Ellipsoid with its poles on the z axis; ``s`` in [0, 1] from -z to +z."""
    th = np.pi * np.arange(rings) / (rings - 1)
    cx, cy, cz = center
    ax, ay, az = radii
    spine = np.stack([np.full(rings, cx), np.full(rings, cy), cz - az * np.cos(th)], 1)
    v, f, r = _tube(spine, ax * np.sin(th), ay * np.sin(th), segs)
    return v, f, r / (rings - 1)


def _capsule(points: np.ndarray, radii: np.ndarray, n_cap: int, segs: int):
    """Tube along the polyline ``points`` (m, 3) with radii ``radii`` (m,),
    closed by hemispherical caps; ``s`` in [0, 1] is the arc-length parameter
    (caps clamped to 0 and 1)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s_body = arc / arc[-1]
    t0 = points[1] - points[0]
    t0 /= np.linalg.norm(t0)
    t1 = points[-1] - points[-2]
    t1 /= np.linalg.norm(t1)
    phi = 0.5 * np.pi * np.arange(n_cap) / n_cap  # 0 (pole) .. < pi/2
    cap0 = points[0] - radii[0] * np.cos(phi)[:, None] * t0
    cap1 = (points[-1] + radii[-1] * np.cos(phi)[:, None] * t1)[::-1]
    spine = np.concatenate([cap0, points, cap1])
    rad = np.concatenate([radii[0] * np.sin(phi), radii, radii[-1] * np.sin(phi)[::-1]])
    s_ring = np.concatenate([np.zeros(n_cap), s_body, np.ones(n_cap)])
    v, f, r = _tube(spine, rad, rad, segs)
    return v, f, s_ring[r]


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


BONES = ("body", "neck", "head",
         "leg_fl", "leg_fr", "leg_bl", "leg_br",
         "shin_fl", "shin_fr", "shin_bl", "shin_br",
         "tail", "tail_tip")
PARENTS = (-1, 0, 1, 0, 0, 0, 0, 3, 4, 5, 6, 0, 11)
LEGS = ("fl", "fr", "bl", "br")


@dataclass(frozen=True)
class Creature:
    """A rigged creature in its rest pose (world units, +Y up, facing +Z).

    Attributes:
        verts: ``(V, 3)`` rest vertices.
        faces: ``(F, 3)`` int64 triangles (outward), a union of closed parts.
        weights: ``(V, J)`` skinning weights (rows sum to 1).
        joints: ``(J, 3)`` rest pivot of each bone; ``PARENTS`` gives the tree.
        part: ``(V,)`` int part id (index into ``parts``).
        parts: part names.
        stripe: ``(V,)`` stripe coordinate (rest z on the trunk, head, tail; rest y on legs).
        tint: ``(V, 3)`` multiplicative colour per vertex (dark feet, tail tip, ears).
    """

    verts: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    joints: np.ndarray
    part: np.ndarray
    parts: tuple[str, ...]
    stripe: np.ndarray
    tint: np.ndarray


def build_creature() -> Creature:
    """The rest-pose creature (deterministic; 2190 vertices, 4336 faces in 11 closed parts)."""
    J = len(BONES)
    body_c = np.array([0.0, 0.62, 0.0])
    joints = np.zeros((J, 3))
    joints[0] = body_c
    joints[1] = (0.0, 0.70, 0.30)  # neck base (inside the body)
    joints[2] = (0.0, 0.87, 0.50)  # head joint (inside the head)
    hips = {"fl": (0.12, 0.55, 0.27), "fr": (-0.12, 0.55, 0.27),
            "bl": (0.12, 0.55, -0.27), "br": (-0.12, 0.55, -0.27)}
    foot_y = 0.02
    for k, leg in enumerate(LEGS):
        hip = np.array(hips[leg])
        joints[3 + k] = hip
        joints[7 + k] = (hip[0], 0.5 * (hip[1] + foot_y), hip[2])  # knee
    tail_base, tail_ctrl, tail_tip = (0.0, 0.70, -0.36), (0.0, 0.70, -0.66), (0.0, 0.92, -0.82)
    tail_pts = _bezier(tail_base, tail_ctrl, tail_tip, 13)
    joints[11] = tail_base
    joints[12] = tail_pts[6]

    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # name, v, f, w, tint

    def one_bone(nv, b):
        w = np.zeros((nv, J))
        w[:, b] = 1.0
        return w

    def add(name, v, f, w, tint=None):
        parts.append((name, v, f, w, np.ones((len(v), 3)) if tint is None else tint))

    # trunk
    v, f, s = _ellipsoid(body_c, (0.20, 0.19, 0.43), 22, 30)
    add("body", v, f, one_bone(len(v), 0))
    # neck: body-to-neck at the base, neck-to-head at the top
    pts = np.linspace((0.0, 0.66, 0.26), (0.0, 0.88, 0.52), 6)
    v, f, s = _capsule(pts, np.linspace(0.095, 0.075, 6), 3, 16)
    w = np.zeros((len(v), J))
    w[:, 2] = smoothstep(0.55, 0.95, s)
    w[:, 1] = 1.0 - w[:, 2]
    add("neck", v, f, w)
    # head, snout, ears
    v, f, s = _ellipsoid((0.0, 0.93, 0.58), (0.115, 0.115, 0.16), 14, 22)
    add("head", v, f, one_bone(len(v), 2))
    v, f, s = _ellipsoid((0.0, 0.885, 0.72), (0.07, 0.065, 0.095), 9, 16)
    add("snout", v, f, one_bone(len(v), 2), np.tile([0.55, 0.42, 0.38], (len(v), 1)))
    for side in (1.0, -1.0):
        v, f, s = _ellipsoid((0.0, 0.0, 0.0), (0.045, 0.075, 0.022), 7, 10)
        R = _rot((0.0, 0.0, 1.0), side * 0.35)
        v = v @ R.T + (side * 0.07, 1.04, 0.53)
        add("ear_l" if side > 0 else "ear_r", v, f, one_bone(len(v), 2), np.tile([0.45, 0.35, 0.32], (len(v), 1)))
    # legs: upper / lower bones blended around the knee, dark socks
    for k, leg in enumerate(LEGS):
        hip = np.array(hips[leg])
        foot = np.array([hip[0], foot_y + 0.045, hip[2] + 0.01])
        pts = np.linspace(hip, foot, 9)
        rad = np.interp(np.linspace(0, 1, 9), [0.0, 0.45, 0.85, 1.0], [0.078, 0.06, 0.052, 0.058])
        v, f, s = _capsule(pts, rad, 3, 14)
        w = np.zeros((len(v), J))
        w[:, 7 + k] = smoothstep(0.4, 0.6, s)
        w[:, 3 + k] = 1.0 - w[:, 7 + k]
        tint = 1.0 - 0.55 * smoothstep(0.72, 0.86, s)[:, None] * np.array([1.0, 1.05, 1.1])
        add("leg_" + leg, v, f, w, tint)
    # tail: base / tip bones, dark tip
    rad = np.linspace(0.058, 0.024, len(tail_pts))
    v, f, s = _capsule(tail_pts, rad, 3, 12)
    w = np.zeros((len(v), J))
    w[:, 12] = smoothstep(0.35, 0.65, s)
    w[:, 11] = 1.0 - w[:, 12]
    tint = 1.0 - 0.6 * smoothstep(0.8, 0.92, s)[:, None] * np.array([1.0, 1.05, 1.1])
    add("tail", v, f, w, tint)

    verts, faces, weights, part, tints, names = [], [], [], [], [], []
    off = 0
    for i, (name, v, f, w, t) in enumerate(parts):
        verts.append(v)
        faces.append(f + off)
        weights.append(w)
        part.append(np.full(len(v), i))
        tints.append(t)
        names.append(name)
        off += len(v)
    verts = np.concatenate(verts)
    part = np.concatenate(part)
    is_leg = np.isin(part, [i for i, n in enumerate(names) if n.startswith("leg_")])
    stripe = np.where(is_leg, verts[:, 1], verts[:, 2])
    return Creature(verts=verts, faces=np.concatenate(faces), weights=np.concatenate(weights), joints=joints,
                    part=part, parts=tuple(names), stripe=stripe, tint=np.concatenate(tints))


def walk_pose(phase: float) -> dict[str, float | np.ndarray]:
    """Joint angles (radians) and root offset of the walk cycle at ``phase`` (radians).

    Legs swing +-24 deg in diagonal pairs (front-left with back-right), the lower leg
    folds back by up to 40 deg while its leg swings forward; the tail wags, the head
    bobs twice per cycle, the body bobs, sways and rolls slightly.
    """
    offs = {"fl": 0.0, "br": 0.0, "fr": np.pi, "bl": np.pi}
    pose: dict[str, float | np.ndarray] = {}
    for leg in LEGS:
        a = phase + offs[leg]
        pose["leg_" + leg] = -math.radians(24.0) * math.sin(a)  # < 0: foot forward
        pose["shin_" + leg] = math.radians(40.0) * ((1.0 + math.cos(a)) / 2.0) ** 2
    pose["tail"] = math.radians(22.0) * math.sin(phase)
    pose["tail_lift"] = math.radians(6.0) * math.sin(2 * phase)
    pose["tail_tip"] = math.radians(28.0) * math.sin(phase - 1.0)
    pose["neck"] = math.radians(6.0) * math.sin(2 * phase + 0.6)
    pose["head"] = math.radians(-5.0) * math.sin(2 * phase + 1.4) + math.radians(4.0) * math.sin(phase)
    pose["head_yaw"] = math.radians(8.0) * math.sin(phase + 0.5)
    pose["body_yaw"] = math.radians(3.0) * math.sin(phase)
    pose["body_roll"] = math.radians(2.5) * math.sin(phase + 0.3)
    pose["body_y"] = 0.018 * math.cos(2 * phase)
    return pose


def pose_creature(c: Creature, phase: float) -> np.ndarray:
    """``(J, 4, 4)`` world transforms (rest -> posed) of the bones at ``phase``."""
    p = walk_pose(phase)
    ex, ey, ez = np.eye(3)
    local = [np.eye(4) for _ in BONES]
    local[0] = _translate((0.0, p["body_y"], 0.0)) @ _about(c.joints[0], _rot(ey, p["body_yaw"]) @ _rot(ez, p["body_roll"]))
    local[1] = _about(c.joints[1], _rot(ex, p["neck"]))
    local[2] = _about(c.joints[2], _rot(ey, p["head_yaw"]) @ _rot(ex, p["head"]))
    for k, leg in enumerate(LEGS):
        local[3 + k] = _about(c.joints[3 + k], _rot(ex, p["leg_" + leg]))
        local[7 + k] = _about(c.joints[7 + k], _rot(ex, p["shin_" + leg]))
    local[11] = _about(c.joints[11], _rot(ey, p["tail"]) @ _rot(ex, -p["tail_lift"]))
    local[12] = _about(c.joints[12], _rot(ey, p["tail_tip"]))
    G = np.zeros((len(BONES), 4, 4))
    for b, par in enumerate(PARENTS):  # parents precede children
        G[b] = local[b] if par < 0 else G[par] @ local[b]
    return G


def skin(c: Creature, G: np.ndarray) -> np.ndarray:
    """Linear blend skinning: ``(V, 3)`` posed vertices for bone transforms ``G (J, 4, 4)``."""
    M = np.einsum("vj,jab->vab", c.weights, G[:, :3, :])  # (V, 3, 4)
    return np.einsum("vab,vb->va", M[:, :, :3], c.verts) + M[:, :, 3]


def _winding(P: np.ndarray, V: np.ndarray, F: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Generalised winding number of the closed surface ``(V, F)`` at points ``P (n, 3)``
    (1 inside, 0 outside; van Oosterom & Strackee solid angles)."""
    w = np.zeros(len(P))
    px, py, pz = (P[:, k, None] for k in range(3))
    for s in range(0, len(F), chunk):
        f = F[s : s + chunk]
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = [[V[f[:, j], k][None] - q for k, q in enumerate((px, py, pz))]
                                                  for j in range(3)]
        la = np.sqrt(ax * ax + ay * ay + az * az)
        lb = np.sqrt(bx * bx + by * by + bz * bz)
        lc = np.sqrt(cx * cx + cy * cy + cz * cz)
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc + (bx * cx + by * cy + bz * cz) * la
               + (cx * ax + cy * ay + cz * az) * lb)
        w += 2.0 * np.arctan2(det, den).sum(1)
    return w / (4.0 * np.pi)


def hidden_faces(c: Creature, poses: np.ndarray) -> np.ndarray:
    """``(F,)`` bool: faces buried inside another part in every one of ``poses (N, V, 3)``.

    The parts overlap (leg tops, the neck's ends, the tail base sit inside the body
    or head); those buried pieces never show, but a surface-sampling evaluation would
    count them.  A face is hidden when its three vertices are inside some other part
    (winding number > 1/2) in every pose.
    """
    face_part = c.part[c.faces[:, 0]]
    hidden = np.ones(len(c.verts), dtype=bool)
    for V in np.asarray(poses, dtype=np.float32):  # float32 halves the time; same decisions here
        inside = np.zeros(len(V), dtype=bool)
        for p in range(len(c.parts)):
            Fp = c.faces[face_part == p]
            sel = c.part == p
            lo, hi = V[sel].min(0), V[sel].max(0)
            cand = np.flatnonzero(hidden & ~inside & ~sel & np.all((V >= lo) & (V <= hi), axis=1))
            if len(cand):
                inside[cand[_winding(V[cand], V, Fp) > 0.5]] = True
        hidden &= inside
    return hidden[c.faces].all(1)
