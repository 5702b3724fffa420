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

Run ``python -m lasr.examples.creature [out=DIR] [frames=32] [size=160] [orbit_deg=90]
[elevation_deg=15] [seed=0] [force=true]`` to write one from the command line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..geometry.mesh import remove_unreferenced_vertices

__all__ = [
    "Creature",
    "build_creature",
    "default_example_dir",
    "hidden_faces",
    "make_creature_clip",
    "pose_creature",
    "skin",
    "walk_pose",
]

#: bump when the generated content changes, so that cached clips are regenerated
GENERATOR_VERSION = 3

ASSET = "lasr creature"
FPS = 12.0
FOV_DEG = 50.0  # across the image side
FILL = 0.9  # every vertex of every frame stays inside this fraction of the half image
SS = 2  # supersampling factor (per axis)
LIGHT_DIR = np.array([0.45, 0.8, 0.4])  # world direction towards the light
AMBIENT, DIFFUSE = 0.38, 0.72

_CLIP_ENTRIES = {"frames", "masks", "gt", "video.mp4", "preview.png"}


# ----------------------------------------------------------------------------
# small math
# ----------------------------------------------------------------------------
def _smoothstep(e0: float, e1: float, x):
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
    if _signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces, ring


def _signed_volume(V: np.ndarray, F: np.ndarray) -> float:
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


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
    w[:, 2] = _smoothstep(0.55, 0.95, s)
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
        w[:, 7 + k] = _smoothstep(0.4, 0.6, s)
        w[:, 3 + k] = 1.0 - w[:, 7 + k]
        tint = 1.0 - 0.55 * _smoothstep(0.72, 0.86, s)[:, None] * np.array([1.0, 1.05, 1.1])
        add("leg_" + leg, v, f, w, tint)
    # tail: base / tip bones, dark tip
    rad = np.linspace(0.058, 0.024, len(tail_pts))
    v, f, s = _capsule(tail_pts, rad, 3, 12)
    w = np.zeros((len(v), J))
    w[:, 12] = _smoothstep(0.35, 0.65, s)
    w[:, 11] = 1.0 - w[:, 12]
    tint = 1.0 - 0.6 * _smoothstep(0.8, 0.92, s)[:, None] * np.array([1.0, 1.05, 1.1])
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


def _vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])  # area-weighted
    n = np.zeros_like(V)
    for k in range(3):
        for d in range(3):
            n[:, d] += np.bincount(F[:, k], weights=fn[:, d], minlength=len(V))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


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


# ----------------------------------------------------------------------------
# procedural textures
# ----------------------------------------------------------------------------
class _Noise:
    """Seeded 3D value noise (a 32^3 lattice of random values, wrapped, smoothstep-trilinear)
    and its fBm; values in [0, 1]."""

    _ROT = np.array([[0.00, 0.80, 0.60], [-0.80, 0.36, -0.48], [-0.60, -0.48, 0.64]])  # decorrelates octaves
    _N = 32

    def __init__(self, rng: np.random.Generator) -> None:
        self.table = rng.random(self._N**3).astype(np.float32)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        n = self._N
        p = np.asarray(p, dtype=np.float32)
        fl = np.floor(p)
        f = p - fl
        i0 = fl.astype(np.int32) & (n - 1)
        i1 = (i0 + 1) & (n - 1)
        w = f * f * (3.0 - 2.0 * f)
        x0, x1 = i0[..., 0] * (n * n), i1[..., 0] * (n * n)
        y0, y1 = i0[..., 1] * n, i1[..., 1] * n
        z0, z1 = i0[..., 2], i1[..., 2]
        T, wx, wy, wz = self.table, w[..., 0], w[..., 1], w[..., 2]

        def lx(y, z):
            a = T[x0 + y + z]
            return a + wx * (T[x1 + y + z] - a)

        def ly(z):
            a = lx(y0, z)
            return a + wy * (lx(y1, z) - a)

        a = ly(z0)
        return a + wz * (ly(z1) - a)

    def fbm(self, p: np.ndarray, octaves: int, gain: float = 0.5) -> np.ndarray:
        tot, amp, norm = 0.0, 1.0, 0.0
        p = np.asarray(p, dtype=np.float32)
        for _ in range(octaves):
            tot = tot + amp * self(p)
            norm += amp
            amp *= gain
            p = 2.03 * (p @ self._ROT.T.astype(np.float32)) + np.float32(17.3)
        return tot / norm


def _creature_albedo(noise: _Noise, rest: np.ndarray, stripe: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """RGB albedo at rest-pose surface points ``rest (N, 3)``.

    Warm coat with noise-warped dark stripes (period ~0.1), blotches and
    fine speckle (features down to ~0.02 model units, 2-3 px in the default clip),
    a lighter belly, times the per-vertex ``tint``.
    """
    warp = noise.fbm(rest * 3.0 + 5.0, 3) - 0.5
    band = np.sin(2.0 * np.pi * (stripe / 0.1 + 1.6 * warp))
    dark = _smoothstep(0.35, 0.6, band)
    blot = _smoothstep(0.58, 0.66, noise.fbm(rest * 9.0 + 31.0, 3))
    speck = noise.fbm(rest * 40.0 + 71.0, 2)
    base = np.array([0.90, 0.55, 0.22])
    belly = np.array([0.96, 0.86, 0.66])
    t_belly = _smoothstep(0.56, 0.47, rest[:, 1:2]) * _smoothstep(0.80, 0.5, np.abs(rest[:, 2:3]))
    col = base * (1.0 - t_belly) + belly * t_belly
    col = col * (0.8 + 0.35 * noise.fbm(rest * 4.0 + 11.0, 2))[:, None]
    stripe_col = np.array([0.20, 0.11, 0.06])
    k = np.maximum(dark, 0.85 * blot)[:, None]
    col = col * (1.0 - k) + stripe_col * k
    col = col * (0.72 + 0.5 * speck)[:, None]
    return np.clip(col * tint, 0.0, 1.0)


def _background(noise: _Noise, dirs: np.ndarray) -> np.ndarray:
    """Cool-palette fBm texture at infinity for unit world ray directions ``(..., 3)``."""
    a = noise.fbm(dirs * 4.5 + 3.0, 5, gain=0.6)
    b = _smoothstep(0.3, 0.7, noise.fbm(dirs * 2.5 + 41.0, 3))[..., None]
    green, violet, light = np.array([0.22, 0.50, 0.42]), np.array([0.36, 0.34, 0.68]), np.array([0.72, 0.86, 0.88])
    hue = green * (1.0 - b) + violet * b
    t = _smoothstep(0.35, 0.75, a)[..., None]
    return np.clip(0.55 * hue * (1.0 - t) + light * t * 0.9 + 0.08 * (a[..., None] - 0.5), 0.0, 1.0)


# ----------------------------------------------------------------------------
# camera
# ----------------------------------------------------------------------------
def _look_rotation(azim_deg: float, elev_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation of a camera at (azimuth about +Y, elevation) looking at
    the origin (azimuth 0: on the +Z side, the creature's front; 90: its left side),
    and the unit direction from the target to the camera."""
    az, el = math.radians(azim_deg), math.radians(elev_deg)
    d = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    f = -d
    x = np.cross(np.array([0.0, -1.0, 0.0]), f)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    return np.stack([x, y, f]), d


# ----------------------------------------------------------------------------
# clip generation
# ----------------------------------------------------------------------------
def default_example_dir() -> Path:
    """``$LASR_EXAMPLES/creature`` (default ``~/.cache/lasr/examples/creature``)."""
    return Path(os.environ.get("LASR_EXAMPLES", "~/.cache/lasr/examples")).expanduser() / "creature"


def _params(frames, size, orbit_deg, elevation_deg, seed) -> dict:
    return {"frames": int(frames), "size": int(size), "orbit_deg": float(orbit_deg),
            "elevation_deg": float(elevation_deg), "seed": int(seed), "version": GENERATOR_VERSION}


def _is_complete(d: Path, params: dict) -> bool:
    try:
        with open(d / "gt" / "info.json") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return False
    if info.get("params") != params:
        return False
    n = params["frames"]
    return all(len(list((d / sub).glob(pat))) == n
               for sub, pat in (("frames", "*.png"), ("masks", "*.png"), ("gt/meshes", "*.obj")))


def _looks_like_clip(d: Path) -> bool:
    """Whether ``d`` may be replaced: missing, empty, or only holding clip entries."""
    if not d.exists():
        return True
    if not d.is_dir():
        return False
    return {p.name for p in d.iterdir()} <= _CLIP_ENTRIES


def make_creature_clip(out_dir=None, frames: int = 32, size: int = 160, orbit_deg: float = 90.0,
                       elevation_deg: float = 15.0, seed: int = 0, force: bool = False) -> Path:
    """Write (or reuse) the synthetic creature clip in ``out_dir`` and return its path.

    Args:
        out_dir: the clip folder (default :func:`default_example_dir`).
        frames: number of frames; they span exactly one walk cycle (the clip loops).
        size: image width = height in pixels.
        orbit_deg: azimuth swept by the camera from the first to the last frame,
            centred on the creature's left side (a pure side view mid-clip).
        elevation_deg: camera elevation above the horizontal (looking down).
        seed: texture and background seed (the geometry and motion do not depend on it).
        force: regenerate even if a complete clip with these parameters exists.

    The same arguments give byte-identical files.  The clip is written to a
    temporary sibling folder and renamed into place, so an interrupted run
    never leaves a folder that reads as complete; a complete clip whose
    ``gt/info.json`` records the same parameters is returned untouched.
    """
    if frames < 2 or size < 16:
        raise ValueError(f"need frames >= 2 and size >= 16, got frames={frames}, size={size}")
    out = Path(default_example_dir() if out_dir is None else out_dir).expanduser()
    params = _params(frames, size, orbit_deg, elevation_deg, seed)
    if not force and _is_complete(out, params):
        return out
    if not _looks_like_clip(out):
        raise FileExistsError(f"{out} exists and does not look like a creature clip; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the clip is an ordinary folder
        _write_clip(tmp, params)
        if out.exists():
            if not force and _is_complete(out, params):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(out)
            except OSError:
                if _is_complete(out, params):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return out
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rasterize(verts_cam: np.ndarray, faces: np.ndarray, Ks: np.ndarray, attrs: np.ndarray, size: int, chunk: int = 8):
    """Hard (nearest-face) render at ``SS`` x the resolution with :func:`lasr.render.render`.

    Returns sub-sample coverage ``(N, SS*H, SS*W)`` bool and the interpolated
    per-vertex ``attrs (N, V, C)`` at the covered sub-samples, ``(P, C)`` float64.
    """
    import torch

    from lasr.render import RasterSettings, render

    settings = RasterSettings(image_size=(SS * size, SS * size), sigma=0.0, faces_per_pixel=1, near=1e-2, far=100.0)
    F = torch.from_numpy(faces)
    covs, vals = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small kernels on a shared CPU: one thread beats two contending ones
    try:
        for s0 in range(0, len(verts_cam), chunk):
            sl = slice(s0, min(len(verts_cam), s0 + chunk))
            K = Ks[sl].copy()
            K[:, :2] *= SS
            K[:, 2:] = SS * K[:, 2:] + (SS - 1) / 2.0
            with torch.no_grad():
                o = render(torch.from_numpy(verts_cam[sl]).float(), F, torch.from_numpy(K).float(), settings,
                           silhouette=False, attributes=torch.from_numpy(np.ascontiguousarray(attrs[sl])).float())
            cov = o.mask.numpy()
            covs.append(cov)
            vals.append(o.attributes.numpy()[cov].astype(np.float64))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(covs), np.concatenate(vals)


def _render_frames(verts_cam, normals_w, creature, Ks, R_wc, size, noise_fg, noise_bg):
    """Anti-aliased RGB ``(N, H, W, 3)`` in [0, 1] over the background, and masks ``(N, H, W)``
    (2x2 sub-sample coverage >= 0.5)."""
    N, H, W = len(verts_cam), size, size
    static = np.concatenate([creature.verts, creature.stripe[:, None], creature.tint], 1)  # (V, 7)
    attrs = np.concatenate([np.broadcast_to(static, (N,) + static.shape), normals_w], 2)  # (N, V, 10)
    cov, A = _rasterize(verts_cam, creature.faces, Ks, attrs, size)
    # shade the covered sub-samples: solid texture at the rest position, Lambert in world space
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
    alb = _creature_albedo(noise_fg, A[:, :3], A[:, 3], A[:, 4:7])
    n = A[:, 7:10] / np.maximum(np.linalg.norm(A[:, 7:10], axis=1, keepdims=True), 1e-12)
    shade = AMBIENT + DIFFUSE * np.clip(n @ light, 0.0, None)
    fg = np.zeros(cov.shape + (3,))
    fg[cov] = np.clip(alb * shade[:, None], 0.0, 1.0)
    fg = fg.reshape(N, H, SS, W, SS, 3).mean((2, 4))
    c = cov.reshape(N, H, SS, W, SS).mean((2, 4))
    # background at infinity: one sample per output pixel (world ray direction), replicated to the sub-samples
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rgb = np.empty((N, H, W, 3))
    for i in range(N):
        d_cam = np.stack([(u - Ks[i, 2]) / Ks[i, 0], (v - Ks[i, 3]) / Ks[i, 1], np.ones_like(u)], -1)
        d_w = d_cam @ R_wc[i]  # R^T d
        d_w /= np.linalg.norm(d_w, axis=-1, keepdims=True)
        rgb[i] = fg[i] + (1.0 - c[i])[..., None] * _background(noise_bg, d_w)
    return rgb, c >= 0.5


def _write_obj(path: Path, V: np.ndarray, F: np.ndarray) -> None:
    lines = ["# lasr creature: posed mesh, camera coordinates (OpenCV)"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in V]
    lines += [f"f {a} {b} {c}" for a, b, c in (F + 1)]
    path.write_text("\n".join(lines) + "\n")


def _outline(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return m & ~e


def _write_preview(path: Path, rgb8: np.ndarray, masks: np.ndarray, n: int = 6) -> None:
    from PIL import Image, ImageDraw

    N, H, W = masks.shape
    ids = np.unique(np.linspace(0, N - 1, min(n, N)).round().astype(int))
    z = max(1, int(round(320 / max(H, W))))
    tiles = []
    for i in ids:
        im = np.repeat(np.repeat(rgb8[i], z, 0), z, 1).copy()
        m = np.repeat(np.repeat(masks[i], z, 0), z, 1)
        im[_outline(m)] = (40, 255, 60)
        tile = Image.fromarray(im)
        ImageDraw.Draw(tile).text((3, 2), str(int(i)), fill=(255, 255, 0))
        tiles.append(tile)
    gap = 4
    sheet = Image.new("RGB", (len(tiles) * (W * z + gap) - gap, H * z), (255, 255, 255))
    for k, t in enumerate(tiles):
        sheet.paste(t, (k * (W * z + gap), 0))
    sheet.save(path)


def _yuv420p(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 limited-range planar YUV 4:2:0 ``(3H/2, W)`` uint8 (done here rather than by
    swscale so that the encoder input, hence the file, is reproducible)."""
    x = rgb8.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    H, W = y.shape
    sub = [c.reshape(H // 2, 2, W // 2, 2).mean((1, 3)).reshape(H // 4, W) for c in (u, v)]
    return np.clip(np.round(np.concatenate([y] + sub)), 0, 255).astype(np.uint8)


def _write_video(path: Path, rgb8: np.ndarray, fps: float) -> bool:
    N, H, W, _ = rgb8.shape
    if H % 2 or W % 2:
        return False
    try:
        import av
        from fractions import Fraction

        with av.open(str(path), "w") as c:
            st = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            st.width, st.height, st.pix_fmt = W, H, "yuv420p"
            st.options = {"crf": "18", "threads": "1"}
            for im in rgb8:
                if H % 4 == 0:
                    frame = av.VideoFrame.from_ndarray(_yuv420p(im), format="yuv420p")
                else:  # the planar layout needs H % 4 == 0; let swscale convert
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="rgb24")
                for pkt in st.encode(frame):
                    c.mux(pkt)
            for pkt in st.encode():
                c.mux(pkt)
        return True
    except Exception:  # no PyAV / no libx264: the video is optional
        if path.exists():
            path.unlink()
        return False


def _write_clip(d: Path, params: dict) -> None:
    from PIL import Image

    N, S = params["frames"], params["size"]
    orbit, elev, seed = params["orbit_deg"], params["elevation_deg"], params["seed"]
    rng = np.random.default_rng(seed)
    noise_fg, noise_bg = _Noise(rng), _Noise(rng)
    c = build_creature()

    # pose every frame: one walk cycle over the clip (frame N would be frame 0 again)
    phases = 2.0 * np.pi * np.arange(N) / N
    world = np.stack([skin(c, pose_creature(c, ph)) for ph in phases])  # (N, V, 3)
    normals = np.stack([_vertex_normals(w, c.faces) for w in world])
    lo, hi = world.reshape(-1, 3).min(0), world.reshape(-1, 3).max(0)
    target = 0.5 * (lo + hi)

    # camera: orbit centred on the creature's left side; one distance for the clip
    azim0 = 90.0 - orbit / 2.0
    azims = azim0 + orbit * np.arange(N) / max(N - 1, 1)
    fx = (S / 2.0) / math.tan(math.radians(FOV_DEG) / 2.0)
    cxy = (S - 1) / 2.0
    m = FILL * (S / 2.0) / fx
    Rs = np.stack([_look_rotation(a, elev)[0] for a in azims])
    rel = np.einsum("nab,nvb->nva", Rs, world - target)
    dist = float(np.max(np.maximum(np.abs(rel[..., 0]), np.abs(rel[..., 1])) / m - rel[..., 2]))
    ts = -np.einsum("nab,nb->na", Rs, target + dist * np.stack([_look_rotation(a, elev)[1] for a in azims]))
    cam = np.einsum("nab,nvb->nva", Rs, world) + ts[:, None, :]
    Ks = np.tile([fx, fx, cxy, cxy], (N, 1))

    rgb, masks = _render_frames(cam, normals, c, Ks, Rs, S, noise_fg, noise_bg)
    # ground-truth meshes: the rendered surface less the pieces buried inside other parts in every frame
    hidden = hidden_faces(c, world)
    _, gt_faces, used = remove_unreferenced_vertices(c.verts, c.faces[~hidden])
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    for sub in ("frames", "masks", "gt/meshes"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i in range(N):
        Image.fromarray(rgb8[i]).save(d / "frames" / f"{i:05d}.png")
        Image.fromarray(masks[i].astype(np.uint8) * 255).save(d / "masks" / f"{i:05d}.png")
        _write_obj(d / "gt" / "meshes" / f"{i:05d}.obj", cam[i][used], gt_faces)

    frames_json = []
    for i in range(N):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = Rs[i], ts[i]
        frames_json.append({"frame": i, "time": i / FPS, "fx": fx, "fy": fx, "cx": cxy, "cy": cxy,
                            "width": S, "height": S, "world_to_camera": T.tolist(),
                            "azimuth_deg": float(azims[i]), "elevation_deg": float(elev)})
    cams = {"convention": "OpenCV camera (x right, y down, z forward); world_to_camera maps world (+Y up, "
                          "creature facing +Z) points to camera coordinates; pixel centres at integer coordinates",
            "width": S, "height": S, "frames": frames_json}
    (d / "gt" / "cameras.json").write_text(json.dumps(cams, indent=1))

    _write_preview(d / "preview.png", rgb8, masks)
    has_video = _write_video(d / "video.mp4", rgb8, FPS)

    info = {
        "asset": ASSET, "frames": N, "fps": FPS, "times": [i / FPS for i in range(N)], "loop": True,
        "animation": "walk", "cycles": 1, "res": [S, S],
        "vertices": int(len(used)), "faces": int(len(gt_faces)),
        "vertices_rendered": int(len(c.verts)), "faces_rendered": int(len(c.faces)),
        "faces_note": "the GT meshes are the rendered union of closed parts less the faces buried inside "
                      "another part in every frame (open where parts join, the openings hidden)",
        "parts": list(c.parts), "bones": list(BONES), "parents": list(PARENTS),
        "bbox_diag": float(np.median(np.linalg.norm(world[:, used].max(1) - world[:, used].min(1), axis=1))),
        "bbox_diag_note": "median over frames of the world-space axis-aligned bbox diagonal (model units)",
        "bbox_diag_union": float(np.linalg.norm(np.ptp(world[:, used].reshape(-1, 3), axis=0))),
        "mask_coverage_mean": float(masks.mean()),
        "camera": {"fov_deg": FOV_DEG, "fx": fx, "distance": dist, "target_world": target.tolist(),
                   "azim0_deg": azim0, "orbit_deg": orbit, "elev_deg": elev, "fill": FILL},
        "render": {"ss": SS, "light": (LIGHT_DIR / np.linalg.norm(LIGHT_DIR)).tolist(), "ambient": AMBIENT,
                   "diffuse": DIFFUSE, "frames_format": "png", "video": has_video},
        "seed": seed, "params": params,
    }
    (d / "gt" / "info.json").write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kw: dict = {}
    conv = {"out": str, "frames": int, "size": int, "orbit_deg": float, "elevation_deg": float, "seed": int,
            "force": lambda s: s.lower() in ("1", "true", "yes")}
    for a in args:
        k, sep, val = a.partition("=")
        if not sep or k not in conv:
            print("usage: python -m lasr.examples.creature [out=DIR] [frames=32] [size=160] [orbit_deg=90] "
                  "[elevation_deg=15] [seed=0] [force=true]", file=sys.stderr)
            return 2
        kw["out_dir" if k == "out" else k] = conv[k](val)
    import time

    t0 = time.perf_counter()
    path = make_creature_clip(**kw)
    print(f"{path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
