"""Change the resolution of a closed triangle mesh while keeping its surface.

LASR re-meshes the rest shape between optimization stages (more faces as the
fit improves).  :func:`remesh` goes up or down to an approximate face count:

1. **up**: loop-subdivide (x4 faces per step) until the face count reaches the
   target, projecting the new vertices back onto the *input* surface (loop
   subdivision alone shrinks convex regions slightly);
2. **down / to target**: quadric edge-collapse decimation with
   ``fast_simplification`` (retrying with different aggressiveness if the
   result misses the face-count tolerance or is not a closed manifold);
3. **relax** (optional, on by default): a few steps of tangential umbrella
   smoothing with projection onto the input surface, which evens out the
   triangle shapes produced by decimation without changing the surface.

The output is always checked with :func:`lasr.geometry.mesh.is_closed_manifold`
(when the input is one) and outward orientation is preserved.

:func:`transfer_vertex_attributes` carries per-vertex data (colors, skinning
weights, ...) from the old mesh to the new vertices by closest-point
barycentric interpolation.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .mesh import (as_numpy, face_normals, is_closed_manifold, manifold_report, remove_unreferenced_vertices,
                   signed_volume_np, vertex_normals)
from .proximity import closest_point_on_mesh

__all__ = ["remesh", "split_longest_edges", "transfer_vertex_attributes", "relax_on_surface", "delaunay_flip", "triangle_quality"]


def triangle_quality(verts, faces) -> np.ndarray:
    """Per-face shape quality ``4 sqrt(3) A / (a^2 + b^2 + c^2)`` in ``[0, 1]``
    (1 = equilateral, 0 = degenerate).  Returns ``(F,)`` float64."""
    v, f = as_numpy(verts).astype(np.float64), as_numpy(faces).astype(np.int64)
    t = v[f]
    e = (
        ((t[:, 1] - t[:, 2]) ** 2).sum(1)
        + ((t[:, 0] - t[:, 2]) ** 2).sum(1)
        + ((t[:, 0] - t[:, 1]) ** 2).sum(1)
    )
    area = 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    ok = e > 0
    return np.where(ok, 4.0 * np.sqrt(3.0) * area / np.where(ok, e, 1.0), 0.0)


def relax_on_surface(
    verts, faces, ref_verts, ref_faces, iters: int = 5, step: float = 0.5
) -> np.ndarray:
    """Tangential umbrella smoothing of ``(verts, faces)`` with re-projection
    onto the reference surface ``(ref_verts, ref_faces)`` after every step.

    Connectivity is unchanged.  An iteration that would flip any face normal
    (by more than 90 degrees) is rejected for the affected vertices and the
    step is halved.

    Returns:
        ``(V, 3)`` float64 relaxed positions.
    """
    v = as_numpy(verts).astype(np.float64).copy()
    f = as_numpy(faces).astype(np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    e = np.unique(np.sort(e, 1), axis=0)
    deg = np.bincount(e.reshape(-1), minlength=v.shape[0]).astype(np.float64)
    for _ in range(iters):
        acc = np.zeros_like(v)
        np.add.at(acc, e[:, 0], v[e[:, 1]])
        np.add.at(acc, e[:, 1], v[e[:, 0]])
        lap = acc / np.maximum(deg, 1)[:, None] - v
        n = vertex_normals(v, f)
        lap_t = lap - (lap * n).sum(1, keepdims=True) * n
        n_before = face_normals(v, f)
        cand = v + step * lap_t
        cand = closest_point_on_mesh(cand, ref_verts, ref_faces)[0]
        n_after = face_normals(cand, f)
        flipped = (n_before * n_after).sum(1) <= 0.0
        if flipped.any():
            bad = np.unique(f[flipped].reshape(-1))
            cand[bad] = v[bad]
            if ((face_normals(cand, f) * n_before).sum(1) <= 0.0).any():
                step *= 0.5
                continue
        v = cand
    return v


def delaunay_flip(verts, faces, max_passes: int = 10, max_dihedral_deg: float = 30.0) -> np.ndarray:
    """Greedy edge flips towards an (extrinsic) Delaunay triangulation.

    Edge ``(a, b)`` shared by faces ``(a, b, c)`` and ``(b, a, d)`` is replaced
    by ``(c, d)`` when the opposite angles satisfy ``angle(c) + angle(d) > pi``,
    provided that the two faces are nearly coplanar (dihedral below
    ``max_dihedral_deg``, so the surface barely changes), that ``(c, d)`` is not
    already an edge (keeps the mesh manifold) and that both new faces keep the
    orientation of the old ones.  Vertices are untouched; orientation and
    closedness are preserved.

    Returns:
        new faces ``(F, 3)`` int64.
    """
    v = as_numpy(verts).astype(np.float64)
    f = as_numpy(faces).astype(np.int64).copy()
    nv = v.shape[0]
    cos_max = np.cos(np.deg2rad(max_dihedral_deg))

    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-300)

    def angle_at(p, q, r):  # angle at p in triangles (p, q, r), vectorized
        u, w = v[q] - v[p], v[r] - v[p]
        return np.arctan2(np.linalg.norm(np.cross(u, w), axis=-1), (u * w).sum(-1))

    def normals(a, b, c):
        return unit(np.cross(v[b] - v[a], v[c] - v[a]))

    for _ in range(max_passes):
        nf = f.shape[0]
        # half-edge (a -> b) in face fi with opposite vertex c
        a = f[:, [0, 1, 2]].T.reshape(-1)
        b = f[:, [1, 2, 0]].T.reshape(-1)
        c = f[:, [2, 0, 1]].T.reshape(-1)
        fi = np.tile(np.arange(nf), 3)
        key = a * nv + b
        order = np.argsort(key)
        skey = key[order]
        twin_key = b * nv + a
        pos = np.searchsorted(skey, twin_key)
        pos = np.clip(pos, 0, skey.shape[0] - 1)
        has_twin = skey[pos] == twin_key
        sel = np.nonzero(has_twin & (a < b))[0]
        tw = order[pos[sel]]
        ea, eb, ec, f1 = a[sel], b[sel], c[sel], fi[sel]
        ed, f2 = c[tw], fi[tw]
        score = angle_at(ec, ea, eb) + angle_at(ed, ea, eb) - np.pi
        n1, n2 = normals(ea, eb, ec), normals(eb, ea, ed)
        m = n1 + n2
        ok = (
            (score > 1e-9)
            & (ec != ed)
            & ((n1 * n2).sum(-1) >= cos_max)
            & ((normals(ea, ed, ec) * m).sum(-1) > 0)
            & ((normals(ed, eb, ec) * m).sum(-1) > 0)
        )
        cand = np.nonzero(ok)[0]
        if cand.shape[0] == 0:
            break
        cand = cand[np.argsort(-score[cand])]
        und = np.sort(np.stack([a, b], 1), 1)
        edges = set((und[:, 0] * nv + und[:, 1]).tolist())
        touched = np.zeros(nf, dtype=bool)
        flips = 0
        for i in cand.tolist():
            g1, g2 = f1[i], f2[i]
            if touched[g1] or touched[g2]:
                continue
            pa, pb, pc, pd = int(ea[i]), int(eb[i]), int(ec[i]), int(ed[i])
            k_new = min(pc, pd) * nv + max(pc, pd)
            if k_new in edges:
                continue
            f[g1] = (pa, pd, pc)
            f[g2] = (pd, pb, pc)
            touched[g1] = touched[g2] = True
            edges.discard(min(pa, pb) * nv + max(pa, pb))
            edges.add(k_new)
            flips += 1
        if flips == 0:
            break
    return f


def _decimate(v: np.ndarray, f: np.ndarray, target: int, aggs: tuple[float, ...], tol: float):
    """Try fast_simplification with several aggressiveness values; return the
    first closed-manifold result within tolerance, else the best manifold one."""
    import fast_simplification

    best = None
    for agg in aggs:
        try:
            v2, f2 = fast_simplification.simplify(v, f, target_count=int(target), agg=float(agg))
        except Exception as exc:  # pragma: no cover - library failure
            warnings.warn(f"fast_simplification failed (agg={agg}): {exc}", stacklevel=2)
            continue
        v2, f2, _ = remove_unreferenced_vertices(np.asarray(v2, np.float64), np.asarray(f2, np.int64))
        if not is_closed_manifold(v2, f2):
            continue
        if np.any(triangle_quality(v2, f2) < 1e-6):
            continue
        err = abs(f2.shape[0] - target) / target
        if err <= tol:
            return v2, f2
        if best is None or err < best[0]:
            best = (err, v2, f2)
    if best is None:
        return None
    return best[1], best[2]


def remesh(
    verts,
    faces,
    target_faces: int,
    tolerance: float = 0.05,
    relax_iters: int = 5,
    project: bool = True,
    improve_triangles: bool = True,
    return_numpy: bool = False,
):
    """Remesh a closed triangle mesh to approximately ``target_faces`` faces.

    Args:
        verts: ``(V, 3)`` tensor/array; faces: ``(F, 3)`` integer tensor/array.
            Must be a closed, consistently oriented manifold (checked).
        target_faces: desired number of faces (closed triangle meshes always
            have an even face count; the result is within ``tolerance``
            relative error when the decimator reaches it, typically exact).
        tolerance: accepted relative face-count error before retrying.
        relax_iters: rounds of (edge flips +) tangential relaxation on the
            input surface (0 = plain decimation output).
        improve_triangles: interleave Delaunay edge flips with the relaxation.
        project: project loop-subdivision vertices onto the input surface.
        return_numpy: return float64/int64 numpy arrays instead of tensors.
    Returns:
        ``(verts2 (V2, 3), faces2 (F2, 3))``: torch tensors with the input's
        float dtype/device (float32 for numpy input) and ``torch.long`` faces,
        unless ``return_numpy``.  ``verts2`` lies on (or within the decimation
        error of) the input surface; the mesh is a closed manifold with the
        input's orientation.
    Raises:
        ValueError: input not a closed manifold / bad target.
        RuntimeError: no closed-manifold result could be produced.
    """
    dtype = verts.dtype if isinstance(verts, torch.Tensor) and verts.is_floating_point() else torch.float32
    device = verts.device if isinstance(verts, torch.Tensor) else None
    v0 = as_numpy(verts).astype(np.float64)
    f0 = as_numpy(faces).astype(np.int64)
    target = int(target_faces)
    if target < 4:
        raise ValueError(f"target_faces must be >= 4, got {target_faces}")
    if not is_closed_manifold(v0, f0, allow_unreferenced=True):
        raise ValueError(f"remesh expects a closed manifold, got {manifold_report(v0, f0)}")
    v0, f0, _ = remove_unreferenced_vertices(v0, f0)
    orient = np.sign(signed_volume_np(v0, f0)) or 1.0

    import trimesh

    v, f = v0, f0
    while f.shape[0] < target:
        v, f = trimesh.remesh.subdivide_loop(v, f, iterations=1)
        v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)
        if project:
            v = closest_point_on_mesh(v, v0, f0)[0]

    if abs(f.shape[0] - target) / target > 1e-9:
        res = _decimate(v, f, target, aggs=(7.0, 5.0, 3.0, 9.0, 2.0), tol=tolerance)
        if res is None:
            raise RuntimeError(
                f"could not produce a closed manifold with ~{target} faces from {f0.shape[0]} faces"
            )
        v, f = res

    for _ in range(relax_iters):
        if improve_triangles:
            f_new = delaunay_flip(v, f)
            if is_closed_manifold(v, f_new):
                f = f_new
        v = relax_on_surface(v, f, v0, f0, iters=1)
    if improve_triangles and relax_iters > 0:
        f_new = delaunay_flip(v, f)
        if is_closed_manifold(v, f_new):
            f = f_new

    if np.sign(signed_volume_np(v, f)) != orient:
        f = f[:, ::-1].copy()
    if not is_closed_manifold(v, f):  # pragma: no cover - guarded above
        raise RuntimeError(f"remesh produced a non-manifold mesh: {manifold_report(v, f)}")
    if return_numpy:
        return v, f
    return (
        torch.as_tensor(v, dtype=dtype, device=device),
        torch.as_tensor(np.ascontiguousarray(f), dtype=torch.long, device=device),
    )


def split_longest_edges(verts, faces, target_faces: int):
    """Refine a closed, oriented triangle mesh to exactly ``target_faces`` faces (same
    parity) by splitting its longest edges at their midpoints, longest first.

    Unlike :func:`remesh`, this changes no geometry at all: every old vertex stays, every
    new one is an edge midpoint, so the surface (and any silhouette rendered from it) is
    the same. Thin features that a decimator would smooth away (a limb grown as a
    spike) survive, which is what a stage change needs to keep the fit.

    Each split turns the two faces ``(a, b, c)`` and ``(b, a, d)`` around edge ``ab``
    into four, ``(a, m, c), (m, b, c), (b, m, d), (m, a, d)``, keeping the orientation.

    Returns ``(verts2 (V2, 3), faces2 (F2, 3))`` as float64 / int64 numpy arrays.
    """
    import heapq

    v = [tuple(p) for p in as_numpy(verts).astype(np.float64)]
    f = [list(t) for t in as_numpy(faces).astype(np.int64)]
    target = int(target_faces)
    if target < len(f) or (target - len(f)) % 2:
        raise ValueError(f"split_longest_edges: target {target} must be >= {len(f)} faces and of the same parity")
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for fi, t in enumerate(f):
        for k in range(3):
            edge_faces.setdefault(tuple(sorted((t[k], t[(k + 1) % 3]))), []).append(fi)
    if any(len(x) != 2 for x in edge_faces.values()):
        raise ValueError("split_longest_edges expects a closed manifold (every edge in two faces)")

    def length2(e):
        a, b = v[e[0]], v[e[1]]
        return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2

    heap = [(-length2(e), e) for e in edge_faces]
    heapq.heapify(heap)

    def oriented(fi, a, b):
        """Third vertex of face fi if it contains the directed edge a->b, else None."""
        t = f[fi]
        for k in range(3):
            if t[k] == a and t[(k + 1) % 3] == b:
                return t[(k + 2) % 3]
        return None

    def replace(edge, old, new):
        lst = edge_faces[tuple(sorted(edge))]
        lst[lst.index(old)] = new

    while len(f) < target:
        neg, e = heapq.heappop(heap)
        if e not in edge_faces or -neg != length2(e):
            continue  # stale entry
        f1, f2 = edge_faces.pop(e)
        a, b = e
        c = oriented(f1, a, b)
        if c is None:
            f1, f2 = f2, f1
            c = oriented(f1, a, b)
        d = oriented(f2, b, a)
        m = len(v)
        va, vb = v[a], v[b]
        v.append(((va[0] + vb[0]) / 2, (va[1] + vb[1]) / 2, (va[2] + vb[2]) / 2))
        n1, n2 = len(f), len(f) + 1
        f[f1] = [a, m, c]
        f[f2] = [b, m, d]
        f.append([m, b, c])
        f.append([m, a, d])
        replace((b, c), f1, n1)
        replace((a, d), f2, n2)
        for edge, owners in (((a, m), [f1, n2]), ((m, b), [n1, f2]), ((m, c), [f1, n1]), ((m, d), [f2, n2])):
            key = tuple(sorted(edge))
            edge_faces[key] = owners
            heapq.heappush(heap, (-length2(key), key))
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def transfer_vertex_attributes(verts_old, faces_old, attr_old, verts_new, method: str = "barycentric"):
    """Carry per-vertex attributes from an old mesh to new vertex positions.

    Args:
        verts_old: ``(V, 3)``; faces_old: ``(F, 3)``.
        attr_old: ``(V,)`` or ``(V, C)`` attributes (colors, weights, ...).
        verts_new: ``(V2, 3)`` query positions (e.g. vertices of a remeshed
            surface).
        method: ``"barycentric"`` -- interpolate the attribute at the closest
            point on the old surface (exact for attributes linear over each
            triangle); ``"nearest"`` -- copy from the nearest old vertex.
    Returns:
        ``(V2,)`` / ``(V2, C)``: a torch tensor if ``attr_old`` is one (same
        dtype/device), else a numpy array.
    """
    is_torch = isinstance(attr_old, torch.Tensor)
    a = as_numpy(attr_old)
    squeeze = a.ndim == 1
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    vo = as_numpy(verts_old).astype(np.float64)
    vn = as_numpy(verts_new).astype(np.float64)
    if method == "nearest":
        from scipy.spatial import cKDTree

        _, idx = cKDTree(vo).query(vn)
        out = a2[idx]
    elif method == "barycentric":
        fo = as_numpy(faces_old).astype(np.int64)
        _, _, fi, bary = closest_point_on_mesh(vn, vo, fo)
        out = np.einsum("nk,nkc->nc", bary, a2[fo[fi]])
    else:
        raise ValueError(f"unknown method {method!r}")
    if squeeze:
        out = out[:, 0]
    else:
        out = out.reshape(out.shape[0], *a.shape[1:])
    if is_torch:
        return torch.as_tensor(out, dtype=attr_old.dtype, device=attr_old.device)
    return out.astype(a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64)
