"""Isotropic remeshing (Botsch & Kobbelt 2004) that keeps mirror symmetry exact.

:func:`isotropic_remesh` turns a closed manifold into one whose edges all have about the
target length ``L`` and whose triangles are near equilateral, on the same surface:
each iteration splits the edges longer than ``4/3 L``, collapses those shorter than
``4/5 L`` (when the collapse keeps a manifold, makes no edge longer than ``4/3 L`` and
turns no face over), flips edges towards valence 6, and relaxes every vertex
tangentially towards the centroid of its neighbours, projected back onto the input
surface. Limbs grown out of a sphere (few, long triangles) get as many triangles as
their area needs; the input's surface is kept (projection), so thin parts survive.

**Symmetry.** With a vertex ``mirror`` map (``mirror[i]`` the vertex at ``i``'s position
reflected about ``x = 0``, as :func:`lasr.geometry.symmetry.mirror_index` finds it on
a symmetric mesh) every operation is applied to an edge and its mirror image together
(an edge that crosses the plane is its own image), and the relaxed positions are
symmetrised, so a mirror-symmetric input stays exactly symmetric and the returned map
pairs the new vertices.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .mesh import as_numpy, face_areas, is_closed_manifold, manifold_report, remove_unreferenced_vertices
from .proximity import closest_point_on_mesh

__all__ = ["isotropic_remesh", "target_edge_length", "edge_length_stats"]


def target_edge_length(verts, faces, target_faces: int) -> float:
    """The edge length of ``target_faces`` equilateral triangles covering the surface."""
    import torch

    area = float(face_areas(torch.as_tensor(as_numpy(verts), dtype=torch.float64),
                            torch.as_tensor(as_numpy(faces), dtype=torch.long)).sum())
    return math.sqrt(4.0 * area / (math.sqrt(3.0) * max(int(target_faces), 1)))


def edge_length_stats(verts, faces) -> dict:
    """``{"mean", "cv" (std / mean), "min_angle_deg"}`` of a triangle mesh's edges and angles."""
    v, f = as_numpy(verts).astype(np.float64), as_numpy(faces).astype(np.int64)
    e = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1), axis=0)
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    angles = []
    for k in range(3):
        a, b, c = v[f[:, k]], v[f[:, (k + 1) % 3]], v[f[:, (k + 2) % 3]]
        u, w = b - a, c - a
        cos = (u * w).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1), 1e-300)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return {"mean": float(length.mean()), "cv": float(length.std() / length.mean()),
            "min_angle_deg": float(np.min(angles))}


def _key(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class _Mesh:
    """A closed triangle mesh under local edits: faces (``None`` once deleted), the faces
    of every edge and of every vertex, and the vertex mirror map."""

    def __init__(self, v: np.ndarray, f: np.ndarray, mirror: Optional[np.ndarray]):
        self.v = [p for p in v.astype(np.float64)]
        self.f: list = [list(map(int, t)) for t in f]
        self.m = None if mirror is None else [int(x) for x in mirror]
        self.alive_v = [True] * len(self.v)
        self.ef: dict[tuple[int, int], set] = {}
        self.vf: list[set] = [set() for _ in self.v]
        for fi, t in enumerate(self.f):
            self._link(fi, t)

    # -- bookkeeping
    def _link(self, fi: int, t: list) -> None:
        for k in range(3):
            self.ef.setdefault(_key(t[k], t[(k + 1) % 3]), set()).add(fi)
            self.vf[t[k]].add(fi)

    def _unlink(self, fi: int) -> None:
        t = self.f[fi]
        for k in range(3):
            e = _key(t[k], t[(k + 1) % 3])
            s = self.ef[e]
            s.discard(fi)
            if not s:
                del self.ef[e]
            self.vf[t[k]].discard(fi)
        self.f[fi] = None

    def add_face(self, t: list) -> int:
        self.f.append(list(t))
        self._link(len(self.f) - 1, self.f[-1])
        return len(self.f) - 1

    def add_vertex(self, p: np.ndarray) -> int:
        self.v.append(np.asarray(p, dtype=np.float64))
        self.vf.append(set())
        self.alive_v.append(True)
        if self.m is not None:
            self.m.append(-1)
        return len(self.v) - 1

    def neighbours(self, i: int) -> set:
        out = set()
        for fi in self.vf[i]:
            out.update(self.f[fi])
        out.discard(i)
        return out

    def mirror_edge(self, e: tuple[int, int]) -> Optional[tuple[int, int]]:
        return None if self.m is None else _key(self.m[e[0]], self.m[e[1]])

    def length(self, e: tuple[int, int]) -> float:
        return float(np.linalg.norm(self.v[e[0]] - self.v[e[1]]))

    def opposite(self, e: tuple[int, int]) -> list[tuple[int, int]]:
        """``(face, vertex opposite e)`` of the (two) faces of ``e``."""
        out = []
        for fi in self.ef.get(e, ()):
            t = self.f[fi]
            out.append((fi, next(x for x in t if x not in e)))
        return out

    def normal(self, t) -> np.ndarray:
        a, b, c = (self.v[x] for x in t)
        return np.cross(b - a, c - a)

    # -- operations
    def split(self, e: tuple[int, int], p: np.ndarray) -> int:
        a, b = e
        n = self.add_vertex(p)
        for fi, c in self.opposite(e):
            t = self.f[fi]
            self._unlink(fi)
            # keep the winding: replace a by n in one half and b by n in the other
            self.add_face([n if x == a else x for x in t])
            self.add_face([n if x == b else x for x in t])
        return n

    def split_shared_face(self, e: tuple[int, int], me: tuple[int, int]) -> tuple[int, int, int]:
        """Split two mirror-image edges of one triangle ``(x, y, z)`` (``z`` on the plane)
        symmetrically: their midpoints ``n1``, ``n2`` and a vertex ``c`` on the plane in the
        quad they leave (``(n2, z, n1)`` and a fan of four around ``c``); the faces across
        ``e`` and ``me`` are split as :meth:`split` does. Returns ``(n1, n2, c)``."""
        (fi,) = self.ef[e] & self.ef[me]
        t = list(self.f[fi])
        n1 = self.add_vertex(0.5 * (self.v[e[0]] + self.v[e[1]]))
        n2 = self.add_vertex(0.5 * (self.v[me[0]] + self.v[me[1]]))
        x, y = (e[0] + e[1] - next(iter(set(e) & set(me)))), (me[0] + me[1] - next(iter(set(e) & set(me))))
        c = self.add_vertex(0.25 * (self.v[x] + self.v[y] + self.v[n1] + self.v[n2]))  # the quad's centroid
        for edge, n in ((e, n1), (me, n2)):
            (fo,) = self.ef[edge] - {fi}
            to = self.f[fo]
            self._unlink(fo)
            self.add_face([n if x == edge[0] else x for x in to])
            self.add_face([n if x == edge[1] else x for x in to])
        cycle = []
        for k in range(3):
            u, w = t[k], t[(k + 1) % 3]
            cycle.append(u)
            if _key(u, w) == e:
                cycle.append(n1)
            elif _key(u, w) == me:
                cycle.append(n2)
        self._unlink(fi)
        iz = next(i for i, x in enumerate(cycle) if x not in (n1, n2) and x in e and x in me)
        cyc = cycle[iz:] + cycle[:iz]  # z, next, a, b, prev
        self.add_face([cyc[4], cyc[0], cyc[1]])
        quad = [cyc[1], cyc[2], cyc[3], cyc[4]]
        for k in range(4):
            self.add_face([quad[k], quad[(k + 1) % 4], c])
        return n1, n2, c

    def can_collapse(self, e: tuple[int, int], p: np.ndarray, high: float) -> bool:
        a, b = e
        opp = [c for _, c in self.opposite(e)]
        if len(opp) != 2 or set(self.neighbours(a)) & set(self.neighbours(b)) != set(opp):
            return False  # link condition: a manifold stays one
        if len(self.neighbours(a)) + len(self.neighbours(b)) - 4 < 3:
            return False
        for x in (a, b):
            for fi in self.vf[x]:
                t = self.f[fi]
                if a in t and b in t:
                    continue
                new = [a if y == b else y for y in t]
                q = [p if y == a else self.v[y] for y in new]
                n_old = self.normal(t)
                n_new = np.cross(q[1] - q[0], q[2] - q[0])
                if np.dot(n_old, n_new) <= 0.05 * np.linalg.norm(n_old) * np.linalg.norm(n_new):
                    return False  # would turn a face over (or make it a sliver)
                for y in new:
                    if y != a and np.linalg.norm(self.v[y] - p) > high:
                        return False
        return True

    def collapse(self, e: tuple[int, int], p: np.ndarray) -> tuple:
        """Merge ``b`` into ``a`` at ``p``; returns what :meth:`undo_collapse` needs."""
        a, b = e
        removed, added = [], []
        for fi in list(self.vf[b]):
            t = self.f[fi]
            removed.append(list(t))
            self._unlink(fi)
            if a not in t:
                added.append(self.add_face([a if y == b else y for y in t]))
        record = (a, b, self.v[a].copy(), removed, added)
        self.v[a] = np.asarray(p, dtype=np.float64)
        self.alive_v[b] = False
        return record

    def undo_collapse(self, record: tuple) -> None:
        a, b, pa, removed, added = record
        for fi in added:
            self._unlink(fi)
        for t in removed:
            self.add_face(t)
        self.v[a] = pa
        self.alive_v[b] = True

    def flip_gain(self, e: tuple[int, int], valence: dict) -> Optional[tuple[int, int]]:
        """The flipped edge ``(c, d)`` when flipping ``e`` brings the four valences
        closer to 6 and keeps the two faces' orientation; else None."""
        opp = self.opposite(e)
        if len(opp) != 2:
            return None
        (f1, c), (f2, d) = opp
        if c == d or _key(c, d) in self.ef:
            return None
        a, b = e

        def dev(x, delta):
            return (valence[x] + delta - 6) ** 2

        before = dev(a, 0) + dev(b, 0) + dev(c, 0) + dev(d, 0)
        after = dev(a, -1) + dev(b, -1) + dev(c, 1) + dev(d, 1)
        if after >= before or valence[a] <= 3 or valence[b] <= 3:
            return None
        t1 = self.f[f1]
        # the new faces (c, d, .) with the winding of the old ones
        i = t1.index(c)
        n1, n2 = [c, t1[(i + 1) % 3], d], [d, t1[(i + 2) % 3], c]
        if t1[(i + 1) % 3] not in e or t1[(i + 2) % 3] not in e:
            return None
        old = self.normal(t1) + self.normal(self.f[f2])
        for t in (n1, n2):
            if np.dot(self.normal(t), old) <= 0:
                return None
        if min(self.min_angle(n1), self.min_angle(n2)) < 0.5 * min(self.min_angle(t1), self.min_angle(self.f[f2])):
            return None  # valence is not worth a sliver
        return (c, d)

    def min_angle(self, t) -> float:
        """The smallest angle (radians) of triangle ``t``."""
        p = [self.v[x] for x in t]
        out = math.pi
        for k in range(3):
            u, w = p[(k + 1) % 3] - p[k], p[(k + 2) % 3] - p[k]
            cos = float(np.dot(u, w)) / max(float(np.linalg.norm(u) * np.linalg.norm(w)), 1e-300)
            out = min(out, math.acos(max(-1.0, min(1.0, cos))))
        return out

    def flip(self, e: tuple[int, int]) -> None:
        (f1, c), (f2, d) = self.opposite(e)
        t1 = self.f[f1]
        i = t1.index(c)
        n1, n2 = [c, t1[(i + 1) % 3], d], [d, t1[(i + 2) % 3], c]
        self._unlink(f1)
        self._unlink(f2)
        self.add_face(n1)
        self.add_face(n2)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        faces = np.array([t for t in self.f if t is not None], dtype=np.int64).reshape(-1, 3)
        v = np.array(self.v, dtype=np.float64)
        v2, f2, used = remove_unreferenced_vertices(v, faces)
        mirror = None
        if self.m is not None:
            new_of = -np.ones(len(v), dtype=np.int64)
            new_of[used] = np.arange(len(used))
            mirror = new_of[np.asarray(self.m, dtype=np.int64)[used]]
        return v2, f2, mirror


def _pairs(mesh: _Mesh, edges: list) -> list:
    """Each edge with its mirror image (None when it is its own), each pair once."""
    seen, out = set(), []
    for e in edges:
        if e in seen:
            continue
        me = mesh.mirror_edge(e)
        seen.add(e)
        if me is not None and me != e:
            seen.add(me)
            out.append((e, me))
        else:
            out.append((e, None))
    return out


def _split_long(mesh: _Mesh, high: float) -> None:
    long = sorted((e for e in mesh.ef if mesh.length(e) > high), key=mesh.length, reverse=True)
    for e, me in _pairs(mesh, long):
        if e not in mesh.ef or (me is not None and me not in mesh.ef):
            continue
        if me is not None and mesh.ef[e] & mesh.ef[me]:  # both edges of one face
            n1, n2, c = mesh.split_shared_face(e, me)
            mesh.m[n1], mesh.m[n2], mesh.m[c] = n2, n1, c
            continue
        p = 0.5 * (mesh.v[e[0]] + mesh.v[e[1]])
        n = mesh.split(e, p)
        if mesh.m is None:
            continue
        if me is None:  # an edge across the plane: its midpoint is on it
            mesh.m[n] = n
        else:
            mn = mesh.split(me, 0.5 * (mesh.v[me[0]] + mesh.v[me[1]]))
            mesh.m[n], mesh.m[mn] = mn, n


def _salience(mesh: _Mesh, i: int) -> float:
    """How far vertex ``i`` sticks out of its neighbours' centroid (a tip's is large)."""
    nb = list(mesh.neighbours(i))
    return float(np.linalg.norm(mesh.v[i] - np.mean([mesh.v[j] for j in nb], 0))) if nb else 0.0


TIP = 1.5  # an endpoint sticking out this many times more than the other is a tip to keep


def _merge_side(mesh: _Mesh, a: int, b: int) -> int:
    """Where a short edge collapses to: 1 onto ``a``, -1 onto ``b``, 0 the midpoint. Onto
    an endpoint that sticks out much more than the other (a tip, the end of a thin part),
    which the midpoint would cut off (relaxation then projecting it onto the shortened
    surface); elsewhere the midpoint, which keeps the edges around even."""
    sa, sb = _salience(mesh, a), _salience(mesh, b)
    return 1 if sa > TIP * sb else -1 if sb > TIP * sa else 0


def _merge_point(mesh: _Mesh, a: int, b: int, side: int) -> np.ndarray:
    return (mesh.v[a] if side > 0 else mesh.v[b] if side < 0 else 0.5 * (mesh.v[a] + mesh.v[b])).copy()


def _collapse_short(mesh: _Mesh, low: float, high: float) -> None:
    short = sorted((e for e in mesh.ef if mesh.length(e) < low), key=mesh.length)
    for e, me in _pairs(mesh, short):
        if e not in mesh.ef or (me is not None and me not in mesh.ef) or mesh.length(e) >= low:
            continue
        a, b = e
        if me is None:  # no image, or its own: an edge across the plane or in it
            p = _merge_point(mesh, a, b, _merge_side(mesh, a, b))
            if mesh.m is not None:
                p[0] = 0.0
            if mesh.can_collapse(e, p, high):
                mesh.collapse(e, p)
                if mesh.m is not None:
                    mesh.m[a] = a
            continue
        shared = set(e) & set(me)
        if shared:  # two edges from one vertex on the plane: both collapse onto it
            z = shared.pop()
            if mesh.m[z] != z:
                continue
            ops = [((z, e[0] + e[1] - z), mesh.v[z].copy()), ((z, me[0] + me[1] - z), mesh.v[z].copy())]
        else:  # keep a and its image, merge b and its image into them
            ma, mb = mesh.m[a], mesh.m[b]
            side = _merge_side(mesh, a, b)  # the same choice on both sides
            ops = [((a, b), _merge_point(mesh, a, b, side)), ((ma, mb), _merge_point(mesh, ma, mb, side))]
        if not mesh.can_collapse(*ops[0], high):
            continue
        record = mesh.collapse(*ops[0])
        if mesh.can_collapse(*ops[1], high):
            mesh.collapse(*ops[1])
        else:
            mesh.undo_collapse(record)


def _flip_valence(mesh: _Mesh) -> None:
    valence = {i: len(mesh.vf[i]) for i in range(len(mesh.v)) if mesh.alive_v[i]}

    def count(e, new):
        for x, d in ((e[0], -1), (e[1], -1), (new[0], 1), (new[1], 1)):
            valence[x] += d

    for e, me in _pairs(mesh, list(mesh.ef)):
        if e not in mesh.ef or (me is not None and me not in mesh.ef):
            continue
        if me is not None and mesh.ef[e] & mesh.ef[me]:
            continue  # the two quads overlap
        new = mesh.flip_gain(e, valence)
        if new is None:
            continue
        mesh.flip(e)
        count(e, new)
        if me is None:
            continue
        new_m = mesh.flip_gain(me, valence)
        if new_m is None:  # its image cannot follow: undo
            mesh.flip(_key(*new))
            count(new, e)
            continue
        mesh.flip(me)
        count(me, new_m)


def _symmetrise(v: np.ndarray, mirror: Optional[np.ndarray]) -> np.ndarray:
    if mirror is None:
        return v
    r = v[mirror].copy()
    r[:, 0] *= -1
    out = 0.5 * (v + r)
    out[mirror == np.arange(len(v)), 0] = 0.0
    return out


def _relax(v: np.ndarray, f: np.ndarray, ref_v, ref_f, mirror, step: float = 0.5) -> np.ndarray:
    from .mesh import vertex_normals

    e = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1), axis=0)
    deg = np.bincount(e.reshape(-1), minlength=len(v)).astype(np.float64)
    acc = np.zeros_like(v)
    np.add.at(acc, e[:, 0], v[e[:, 1]])
    np.add.at(acc, e[:, 1], v[e[:, 0]])
    lap = acc / np.maximum(deg, 1)[:, None] - v
    n = vertex_normals(v, f)
    cand = v + step * (lap - (lap * n).sum(1, keepdims=True) * n)
    cand = _symmetrise(closest_point_on_mesh(cand, ref_v, ref_f)[0], mirror)
    # keep faces from turning over
    def fn(x):
        return np.cross(x[f[:, 1]] - x[f[:, 0]], x[f[:, 2]] - x[f[:, 0]])
    bad = (fn(v) * fn(cand)).sum(1) <= 0
    if bad.any():
        verts = np.unique(f[bad].reshape(-1))
        if mirror is not None:
            verts = np.unique(np.concatenate([verts, mirror[verts]]))
        cand[verts] = v[verts]
    return cand


def isotropic_remesh(verts, faces, target_length: Optional[float] = None, target_faces: Optional[int] = None,
                     iters: int = 6, mirror=None) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Remesh a closed manifold to edges of about ``target_length`` (or the length that
    gives about ``target_faces`` faces) on the same surface (see the module docstring).

    Args:
        verts: ``(V, 3)``; faces: ``(F, 3)`` consistently oriented closed manifold.
        mirror: optional ``(V,)`` mirror map of a mesh symmetric about ``x = 0``.
    Returns:
        ``verts (V', 3)`` float64, ``faces (F', 3)`` int64 with the input's orientation,
        and the new ``(V',)`` mirror map (None without one).
    Raises:
        ValueError: the input is not a closed manifold, or neither target is given.
    """
    v0, f0 = as_numpy(verts).astype(np.float64), as_numpy(faces).astype(np.int64)
    if not is_closed_manifold(v0, f0, allow_unreferenced=True):
        raise ValueError(f"isotropic_remesh expects a closed manifold, got {manifold_report(v0, f0)}")
    if target_length is None:
        if target_faces is None:
            raise ValueError("give target_length or target_faces")
        target_length = target_edge_length(v0, f0, target_faces)
    L = float(target_length)
    mirror = None if mirror is None else as_numpy(mirror).astype(np.int64)
    mesh = _Mesh(v0, f0, mirror)
    v, f, m = v0, f0, mirror
    for _ in range(iters):
        _split_long(mesh, 4.0 / 3.0 * L)
        _collapse_short(mesh, 4.0 / 5.0 * L, 4.0 / 3.0 * L)
        _flip_valence(mesh)
        v, f, m = mesh.arrays()
        v = _relax(v, f, v0, f0, m)
        mesh = _Mesh(v, f, m)
    if not is_closed_manifold(v, f):  # pragma: no cover - every operation keeps it
        raise RuntimeError(f"isotropic_remesh produced a non-manifold mesh: {manifold_report(v, f)}")
    return v, f, m
