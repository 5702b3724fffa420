"""Triangle-mesh utilities: icosphere, edges, normals, areas, Laplacians,
manifold checks and OBJ I/O.

Conventions:

* ``verts``: float tensor ``(V, 3)`` or batched ``(..., V, 3)``.
* ``faces``: integer tensor ``(F, 3)`` (``torch.long``), 0-based vertex indices,
  counter-clockwise (CCW) when seen from outside, i.e. face normals
  ``(v1 - v0) x (v2 - v0)`` point outward for closed meshes.
* Functions taking torch tensors are differentiable w.r.t. ``verts``.
  Connectivity-only helpers (manifold checks, OBJ I/O) also accept numpy arrays.
"""

from __future__ import annotations


import numpy as np
import torch

__all__ = [
    "icosphere",
    "edges_unique",
    "face_normals",
    "face_areas",
    "vertex_areas",
    "vertex_normals",
    "signed_volume",
    "signed_volume_np",
    "vertex_degrees",
    "uniform_laplacian",
    "cotangent_weights",
    "cotangent_laplacian",
    "laplacian_smoothing",
    "face_pairs",
    "normal_consistency",
    "folded_edges",
    "laplacian_matrix",
    "manifold_report",
    "is_closed_manifold",
    "euler_characteristic",
    "remove_unreferenced_vertices",
]


def as_numpy(x) -> np.ndarray:
    """A numpy view of a tensor (detached, on the CPU) or of anything array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------


def icosphere(
    level: int = 3,
    radius: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Geodesic sphere by ``level`` loop-style midpoint subdivisions of an
    icosahedron, with vertices projected onto the sphere.

    ``level`` -> (vertices, faces): 0 -> (12, 20), 1 -> (42, 80),
    2 -> (162, 320), 3 -> (642, 1280), 4 -> (2562, 5120).

    The mesh is closed, manifold, CCW/outward oriented, centered at the origin
    and mirror-symmetric about the planes x=0, y=0 and z=0 (vertex positions
    are exactly symmetric, see :func:`lasr.geometry.symmetry.mirror_index`).

    Returns:
        verts ``(V, 3)`` (``dtype``), faces ``(F, 3)`` ``torch.long``.
    """
    if level < 0:
        raise ValueError(f"level must be >= 0, got {level}")
    import trimesh  # local import: heavy

    m = trimesh.creation.icosphere(subdivisions=int(level), radius=1.0)
    v = np.asarray(m.vertices, dtype=np.float64)
    f = np.asarray(m.faces, dtype=np.int64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    # enforce outward orientation (trimesh already does, this is a guard)
    if signed_volume_np(v, f) < 0:
        f = f[:, ::-1].copy()
    verts = torch.as_tensor(v * radius, dtype=dtype, device=device)
    faces = torch.as_tensor(f, dtype=torch.long, device=device)
    return verts, faces


# ----------------------------------------------------------------------------
# differential quantities
# ----------------------------------------------------------------------------


def edges_unique(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges.

    Args:
        faces: ``(F, 3)`` long.
    Returns:
        ``(E, 2)`` long, each row sorted ``(i < j)``, rows sorted lexicographically.
    """
    return torch.unique(_face_edges(faces), dim=0)


def _face_edges(faces: torch.Tensor) -> torch.Tensor:
    """``(3F, 2)``: the three edges of every face, each row sorted ``(i < j)``; row
    ``k F + f`` is edge ``k`` of face ``f``."""
    return torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], dim=0).sort(dim=1).values


def _face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    v0 = verts[..., faces[:, 0], :]
    v1 = verts[..., faces[:, 1], :]
    v2 = verts[..., faces[:, 2], :]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def _tensors(verts, faces):
    """Torch views of numpy inputs (and whether to hand numpy back)."""
    if isinstance(verts, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(verts)), torch.as_tensor(np.asarray(faces, dtype=np.int64)), True
    return verts, faces, False


def face_normals(verts, faces, eps: float = 1e-12):
    """Unit face normals ``(..., F, 3)`` for ``verts (..., V, 3)``, ``faces (F, 3)``
    (tensors, or numpy arrays in and out)."""
    v, f, np_out = _tensors(verts, faces)
    n = _face_cross(v, f)
    n = n / n.norm(dim=-1, keepdim=True).clamp_min(eps)
    return n.numpy() if np_out else n


def face_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas ``(..., F)``."""
    return 0.5 * _face_cross(verts, faces).norm(dim=-1)


def vertex_areas(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V,) a third of the area of the faces around each vertex (sums to the mesh's area)."""
    a = face_areas(verts, faces) / 3.0
    return torch.zeros(verts.shape[0], dtype=verts.dtype, device=verts.device).index_add_(
        0, faces.reshape(-1), a.repeat_interleave(3))


def vertex_normals(verts, faces, eps: float = 1e-12):
    """Area-weighted unit vertex normals ``(..., V, 3)`` (tensors, or numpy arrays in and
    out): the one vertex-normal function of the project. A vertex with no area around it
    gets the zero vector."""
    v, f, np_out = _tensors(verts, faces)
    n = _face_cross(v, f)  # (..., F, 3), |n| = 2 area
    out = torch.zeros_like(v)
    for k in range(3):
        out = out.index_add(-2, f[:, k], n)
    out = out / out.norm(dim=-1, keepdim=True).clamp_min(eps)
    return out.numpy() if np_out else out


def signed_volume(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Signed enclosed volume ``(...)`` (positive for outward-oriented closed meshes)."""
    v0 = verts[..., faces[:, 0], :]
    v1 = verts[..., faces[:, 1], :]
    v2 = verts[..., faces[:, 2], :]
    return (v0 * torch.linalg.cross(v1, v2, dim=-1)).sum((-1, -2)) / 6.0


def signed_volume_np(v: np.ndarray, f: np.ndarray) -> float:
    v0, v1, v2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float((v0 * np.cross(v1, v2)).sum() / 6.0)


def vertex_degrees(faces: torch.Tensor, num_verts: int) -> torch.Tensor:
    """Number of unique neighbours per vertex, ``(V,)`` long."""
    e = edges_unique(faces)
    return torch.bincount(e.reshape(-1), minlength=num_verts)


def uniform_laplacian(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Uniform (umbrella) Laplacian ``L x_i = mean_{j in N(i)} x_j - x_i``.

    Zero for any vertex whose neighbours' centroid coincides with it (e.g. an
    interior vertex of a regular planar grid).  Isolated vertices get 0.

    Args:
        verts: ``(..., V, 3)``; faces ``(F, 3)``.
    Returns:
        ``(..., V, 3)`` differential coordinates.
    """
    e = edges_unique(faces)
    nv = verts.shape[-2]
    i, j = e[:, 0], e[:, 1]
    acc = torch.zeros_like(verts)
    acc = acc.index_add(-2, i, verts[..., j, :]).index_add(-2, j, verts[..., i, :])
    deg = torch.bincount(e.reshape(-1), minlength=nv).to(verts.dtype)
    mean = acc / deg.clamp_min(1.0)[:, None]
    return torch.where((deg > 0)[:, None], mean - verts, torch.zeros_like(verts))


def cotangent_weights(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-half-edge cotangent weights.

    For face ``(a, b, c)`` the angle at ``a`` contributes ``cot(a) / 2`` to the
    edge ``(b, c)``.  Returned as index pairs + weights (duplicates are meant to
    be summed, e.g. by ``index_add``), i.e. ``w_ij = (cot alpha_ij + cot beta_ij)/2``.

    Args:
        verts: ``(V, 3)`` (unbatched); faces ``(F, 3)``.
    Returns:
        ``pairs (3F, 2)`` long and ``weights (3F,)``.
    """
    pairs, ws = [], []
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        va, vb, vc = verts[faces[:, a]], verts[faces[:, b]], verts[faces[:, c]]
        u, w = vb - va, vc - va
        cot = (u * w).sum(-1) / torch.linalg.cross(u, w, dim=-1).norm(dim=-1).clamp_min(eps)
        pairs.append(torch.stack([faces[:, b], faces[:, c]], dim=-1))
        ws.append(0.5 * cot)
    return torch.cat(pairs, 0), torch.cat(ws, 0)


def cotangent_laplacian(
    verts: torch.Tensor, faces: torch.Tensor, weight_verts: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """Cotangent Laplacian normalized by the sum of weights:
    ``L x_i = sum_j w_ij (x_j - x_i) / sum_j w_ij``.

    Zero on any planar region's interior vertices (any triangulation) and, for
    smooth closed surfaces, approximately proportional to the mean-curvature
    normal.

    Args:
        verts: ``(..., V, 3)`` positions to apply the operator to.
        faces: ``(F, 3)``.
        weight_verts: ``(V, 3)`` positions used to compute the cot weights
            (default: ``verts.detach()`` reshaped to the first batch item). The
            weights are usually treated as constants in a smoothing loss.
    Returns:
        ``(..., V, 3)``.
    """
    if weight_verts is None:
        weight_verts = verts.detach().reshape(-1, verts.shape[-2], 3)[0]
    pairs, w = cotangent_weights(weight_verts, faces, eps)
    w = w.to(verts.dtype)
    i, j = pairs[:, 0], pairs[:, 1]
    nv = verts.shape[-2]
    wsum = torch.zeros(nv, dtype=verts.dtype, device=verts.device)
    wsum = wsum.index_add(0, i, w).index_add(0, j, w)
    diff_ij = (verts[..., j, :] - verts[..., i, :]) * w[:, None]
    acc = torch.zeros_like(verts)
    acc = acc.index_add(-2, i, diff_ij).index_add(-2, j, -diff_ij)
    safe = wsum.abs() > eps
    return torch.where(safe[:, None], acc / torch.where(safe, wsum, torch.ones_like(wsum))[:, None], torch.zeros_like(acc))


def laplacian_smoothing(verts: torch.Tensor, faces: torch.Tensor, method: str = "uniform") -> torch.Tensor:
    """Laplacian smoothing loss: mean over vertices (and batch) of ``||L x_i||_2``.

    Args:
        verts: ``(..., V, 3)``; faces ``(F, 3)``.
        method: ``"uniform"`` (umbrella operator) or ``"cot"`` (cotangent weights
            from the detached current geometry).
    Returns:
        scalar tensor.
    """
    if method == "uniform":
        lap = uniform_laplacian(verts, faces)
    elif method in ("cot", "cotangent"):
        if verts.dim() == 2:
            lap = cotangent_laplacian(verts, faces)
        else:  # per-item weights
            flat = verts.reshape(-1, verts.shape[-2], 3)
            lap = torch.stack([cotangent_laplacian(x, faces) for x in flat]).reshape(verts.shape)
    else:
        raise ValueError(f"unknown Laplacian method {method!r}")
    # sqrt with a tiny epsilon keeps the gradient finite when L x_i == 0
    return torch.sqrt((lap * lap).sum(-1) + 1e-20).mean()


def face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """``(P, 2)`` long: the two faces on each side of every edge that has exactly two
    (all edges of a closed manifold; boundary and non-manifold edges are left out)."""
    fid = torch.arange(faces.shape[0], device=faces.device).repeat(3)
    _, inverse, counts = torch.unique(_face_edges(faces), dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)  # occurrences of each edge, contiguous
    start = torch.cumsum(counts, 0) - counts
    two = start[counts == 2]
    return torch.stack([fid[order[two]], fid[order[two + 1]]], dim=1)


def normal_consistency(verts: torch.Tensor, faces: torch.Tensor, pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over edges (and batch) of ``1 - cos`` of the angle between the normals of the
    two faces that share the edge (PyTorch3D's ``mesh_normal_consistency``): 0 on a
    plane, 2 on a fold. Unlike the Laplacian, it does not depend on the mesh's scale and
    charges the sharp creases of a spike whatever its length.

    Args:
        verts: ``(..., V, 3)``; faces ``(F, 3)`` consistently oriented.
        pairs: ``face_pairs(faces)``, when already at hand.
    """
    pairs = face_pairs(faces) if pairs is None else pairs
    n = face_normals(verts, faces)
    return (1 - (n[..., pairs[:, 0], :] * n[..., pairs[:, 1], :]).sum(-1)).mean()


def folded_edges(verts, faces, pairs: torch.Tensor | None = None):
    """Share of the interior edges whose two faces fold over each other (normals more
    than 90 degrees apart): spikes, plates, crumpled surfaces; edges of a degenerate face
    are left out (the benchmark's measure). ``(...)`` for ``verts (..., V, 3)``; a smooth
    closed surface gives 0."""
    v, f, np_out = _tensors(verts, faces)
    pairs = face_pairs(f) if pairs is None else pairs
    cross = _face_cross(v, f)
    length = cross.norm(dim=-1)
    ok = length > 1e-12 * length.amax(-1, keepdim=True).clamp_min(1e-300)
    n = cross / length.clamp_min(1e-300)[..., None]
    keep = (ok[..., pairs[:, 0]] & ok[..., pairs[:, 1]]).to(v.dtype)
    fold = ((n[..., pairs[:, 0], :] * n[..., pairs[:, 1], :]).sum(-1) < 0).to(v.dtype)
    share = (fold * keep).sum(-1) / keep.sum(-1).clamp_min(1)
    return share.numpy() if np_out else share


def laplacian_matrix(faces: torch.Tensor, num_verts: int, dtype=torch.float32) -> torch.Tensor:
    """The combinatorial graph Laplacian ``L = D - A`` of the mesh's edges, ``(V, V)``
    sparse COO, coalesced (``D`` the vertex degrees, ``A`` the adjacency)."""
    e = edges_unique(faces)
    i = torch.cat([e[:, 0], e[:, 1], torch.arange(num_verts, device=faces.device)])
    j = torch.cat([e[:, 1], e[:, 0], torch.arange(num_verts, device=faces.device)])
    deg = torch.bincount(e.reshape(-1), minlength=num_verts).to(dtype)
    vals = torch.cat([-torch.ones(2 * len(e), dtype=dtype, device=faces.device), deg])
    return torch.sparse_coo_tensor(torch.stack([i, j]), vals, (num_verts, num_verts), check_invariants=True).coalesce()


# ----------------------------------------------------------------------------
# topology checks
# ----------------------------------------------------------------------------


def manifold_report(verts, faces, check_vertices: bool = True) -> dict:
    """Diagnose closed-manifold properties of a triangle mesh (numpy or torch).

    Returns a dict with integer counts / booleans:
      ``num_verts, num_faces, bad_indices, degenerate_faces, duplicate_faces,
      boundary_edges`` (used by 1 face), ``nonmanifold_edges`` (used by >2),
      ``inconsistent_edges`` (a directed half-edge used twice = flipped
      neighbour), ``nonmanifold_vertices`` (referenced vertices whose fan of
      faces is not a single disk), ``unreferenced_vertices``, ``components``
      (connected components of faces through shared edges), ``euler``
      (V_referenced - E + F).
    """
    v = as_numpy(verts)
    f = as_numpy(faces).astype(np.int64).reshape(-1, 3)
    nv, nf = int(v.shape[0]), int(f.shape[0])
    rep = dict(num_verts=nv, num_faces=nf)
    bad = int(((f < 0) | (f >= nv)).any(axis=1).sum())
    rep["bad_indices"] = bad
    if nf == 0 or bad:
        rep.update(degenerate_faces=0, duplicate_faces=0, boundary_edges=0, nonmanifold_edges=0,
                   inconsistent_edges=0, nonmanifold_vertices=0, unreferenced_vertices=nv,
                   components=0, euler=0)
        return rep
    rep["degenerate_faces"] = int(((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])).sum())
    rep["duplicate_faces"] = int(nf - np.unique(np.sort(f, axis=1), axis=0).shape[0])

    # half-edges a->b of face k
    he = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], axis=0)  # (3F, 2)
    key_dir = he[:, 0] * nv + he[:, 1]
    und = np.sort(he, axis=1)
    key_und = und[:, 0] * nv + und[:, 1]
    _, und_counts = np.unique(key_und, return_counts=True)
    rep["boundary_edges"] = int((und_counts == 1).sum())
    rep["nonmanifold_edges"] = int((und_counts > 2).sum())
    _, dir_counts = np.unique(key_dir, return_counts=True)
    rep["inconsistent_edges"] = int((dir_counts > 1).sum())
    num_edges = int(und_counts.shape[0])

    referenced = np.zeros(nv, dtype=bool)
    referenced[f.reshape(-1)] = True
    rep["unreferenced_vertices"] = int((~referenced).sum())
    rep["euler"] = int(referenced.sum()) - num_edges + nf

    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # face components through shared (undirected) edges
    face_of_he = np.tile(np.arange(nf), 3)
    order = np.argsort(key_und, kind="stable")
    ks, fs = key_und[order], face_of_he[order]
    same = ks[1:] == ks[:-1]
    a, b = fs[:-1][same], fs[1:][same]
    adj = coo_matrix((np.ones(a.shape[0]), (a, b)), shape=(nf, nf))
    rep["components"] = int(connected_components(adj, directed=False)[0])

    if check_vertices:
        # corner graph: corner (face k, vertex v) is linked to the corner of v in
        # any other face sharing an edge incident to v.  A vertex is manifold iff
        # its corners form a single connected fan.
        corners_v = f.reshape(-1)  # corner id c = 3*k + slot
        corner_id = np.arange(3 * nf).reshape(nf, 3)
        # for each half-edge (a->b) in face k: corners (k,a) and (k,b)
        rows = []
        for s0, s1 in ((0, 1), (1, 2), (2, 0)):
            ea = f[:, s0]
            eb = f[:, s1]
            key = np.minimum(ea, eb) * nv + np.maximum(ea, eb)
            rows.append(np.stack([key, ea, corner_id[:, s0]], 1))
            rows.append(np.stack([key, eb, corner_id[:, s1]], 1))
        tab = np.concatenate(rows, 0)  # (edge key, vertex, corner)
        # corners that share (edge, vertex) belong to the same vertex fan
        order = np.lexsort((tab[:, 1], tab[:, 0]))
        t = tab[order]
        same = (t[1:, 0] == t[:-1, 0]) & (t[1:, 1] == t[:-1, 1])
        ca, cb = t[:-1, 2][same], t[1:, 2][same]
        g = coo_matrix((np.ones(ca.shape[0]), (ca, cb)), shape=(3 * nf, 3 * nf))
        ncomp, lab = connected_components(g, directed=False)
        comps_per_vertex = np.zeros(nv, dtype=np.int64)
        uniq = np.unique(np.stack([corners_v, lab], 1), axis=0)
        np.add.at(comps_per_vertex, uniq[:, 0], 1)
        rep["nonmanifold_vertices"] = int((comps_per_vertex > 1).sum())
    else:
        rep["nonmanifold_vertices"] = 0
    return rep


def is_closed_manifold(
    verts,
    faces,
    require_single_component: bool = False,
    allow_unreferenced: bool = False,
    check_vertices: bool = True,
) -> bool:
    """True iff the triangle mesh is a closed, consistently oriented 2-manifold:

    * valid indices, no degenerate or duplicate faces;
    * every undirected edge is shared by exactly 2 faces;
    * every directed half-edge occurs once (neighbours have consistent winding);
    * every referenced vertex has a single disk-like fan (``check_vertices``);
    * no unreferenced vertices unless ``allow_unreferenced``;
    * one connected component if ``require_single_component``.

    Accepts numpy arrays or torch tensors (``(V, 3)`` and ``(F, 3)``).
    """
    r = manifold_report(verts, faces, check_vertices=check_vertices)
    ok = (
        r["num_faces"] > 0
        and r["bad_indices"] == 0
        and r["degenerate_faces"] == 0
        and r["duplicate_faces"] == 0
        and r["boundary_edges"] == 0
        and r["nonmanifold_edges"] == 0
        and r["inconsistent_edges"] == 0
        and r["nonmanifold_vertices"] == 0
    )
    if ok and not allow_unreferenced:
        ok = r["unreferenced_vertices"] == 0
    if ok and require_single_component:
        ok = r["components"] == 1
    return bool(ok)


def euler_characteristic(verts, faces) -> int:
    """``V - E + F`` counting referenced vertices only (2 for a sphere-like mesh)."""
    return manifold_report(verts, faces, check_vertices=False)["euler"]


def remove_unreferenced_vertices(verts, faces):
    """Drop vertices not referenced by any face.

    Works on numpy arrays or torch tensors (returns the same kind).
    Returns ``(verts_new, faces_new, old_index_of_new (V_new,))``.
    """
    is_torch = isinstance(verts, torch.Tensor)
    v, f = as_numpy(verts), as_numpy(faces).astype(np.int64)
    used = np.unique(f.reshape(-1))
    remap = -np.ones(v.shape[0], dtype=np.int64)
    remap[used] = np.arange(used.shape[0])
    v2, f2 = v[used], remap[f]
    if is_torch:
        return (
            torch.as_tensor(v2, dtype=verts.dtype, device=verts.device),
            torch.as_tensor(f2, dtype=torch.long, device=verts.device),
            torch.as_tensor(used, dtype=torch.long, device=verts.device),
        )
    return v2, f2, used
