"""Export a fitted articulated model as an animated, skinned glTF 2.0 binary (.glb).

Layout of the file written by :func:`write_glb`::

    scene
    ├── node 0  "mesh"             skinned mesh, identity transform (glTF ignores a
    │                               skinned mesh node's transform; keeping it at the
    │                               scene root with identity keeps every viewer agreeing)
    └── node 1  "opencv_to_gltf"   fixed rotation of 180 deg about x (quaternion (1,0,0,0)):
        │                           OpenCV camera frame (x right, y down, z forward) ->
        │                           glTF (+y up, camera looking down -z), so the model opens
        │                           upright and the glTF default camera at the origin is the
        │                           video's camera
        └── node 2  "root"         per-frame root transform ``X_cam = R_root[t] X + t_root[t]``
            └── node 3+r "bone_r"  the root bone r of the kinematic tree (``parents[r] = -1``)
                ├── node 3+c "bone_c"   its children, and theirs: one joint node per bone,
                └── ...                 bone b is node 3+b, a child of its parent's node

The tree (``parents``, -1 for the root) and the joint positions come from the skeleton
(``parents`` / ``joint_positions`` of ``skeleton.npz``), else they are estimated here
(:mod:`lasr.model.tree`). ``B_b`` is joint ``b``'s bind frame in the rest (object) frame
(:func:`lasr.model.tree.bind_frames`: translation the joint, where the bone meets its
parent; local +y toward its children, so Blender's bones follow the limbs); the skin's
inverse bind matrix is ``B_b^-1``. A joint's animated LOCAL transform is relative to its
parent joint::

    L_tb = (G_tp B_p)^-1 (G_tb B_b)        (the root bone: L_tr = G_tr B_r)

so its world matrix is ``J_tb = Flip Root_t G_tb B_b`` whatever the tree, and standard glTF
skinning gives, for a rest vertex ``X``::

    sum_k w_k  J_k IBM_k X = Flip R_root[t] (sum_k w_k G_tk X) + Flip t_root[t]

(``Flip = diag(1, -1, -1)``), i.e.
exactly the fit's posed mesh of frame ``t`` (``final/meshes/t.obj``) seen in glTF
axes, up to float32 storage and the truncation of the skinning weights to the 4
largest per vertex (renormalised; the truncation error is measured and returned).
The animation has one key per frame at ``t / fps`` seconds, LINEAR interpolation,
translation + rotation channels for the root and every joint.  The joint nodes' and
root's default TRS is the frame-0 pose. ``extras.lasr`` holds ``fps``, ``frames``,
``include_root`` and ``parents`` (:func:`read_glb_extras` reads them back).

:func:`opencv_from_gltf` takes a reader's world (glTF) coordinates back to the OpenCV
camera frame. The tests read the files with an independent reader
(``tests/gltf_reader.py``: pygltflib for the container, accessor decoding, node
hierarchy, animation sampling and skinning written there) and validate them.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..model.tree import skeleton_rig

__all__ = [
    "GLTF_FROM_OPENCV",
    "write_glb",
    "read_glb_extras",
    "opencv_from_gltf",
    "top_k_weights",
    "skeleton_arrays",
    "posed_vertices",
    "quat_from_matrix",
    "matrix_from_quat",
]

GLTF_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])  # rotation by 180 deg about x

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_DTYPE = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}


# ----------------------------------------------------------------------------
# small math helpers
# ----------------------------------------------------------------------------
def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations -> ``(..., 4)`` unit quaternions ``(x, y, z, w)``."""
    R = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    # 4 q_i^2 for each component; take the largest for a well-conditioned solve
    cand = np.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22, 1 + m00 + m11 + m22], -1)
    k = np.argmax(cand, -1)
    q = np.empty(R.shape[:-2] + (4,))
    s = np.sqrt(np.maximum(np.take_along_axis(cand, k[..., None], -1)[..., 0], 1e-300)) * 2  # 4 |q_k|
    d21, d02, d10 = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    a01, a02, a12 = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    rows = {
        0: (0.25 * s, a01 / s, a02 / s, d21 / s),
        1: (a01 / s, 0.25 * s, a12 / s, d02 / s),
        2: (a02 / s, a12 / s, 0.25 * s, d10 / s),
        3: (d21 / s, d02 / s, d10 / s, 0.25 * s),
    }
    for kk, comps in rows.items():
        sel = k == kk
        q[sel] = np.stack([c[sel] for c in comps], -1)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions ``(x, y, z, w)`` (normalised here) -> ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1)
    return R.reshape(q.shape[:-1] + (3, 3))


def _continuous_quats(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (time) so consecutive keys are on the same hemisphere."""
    q = q.copy()
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t][flip] *= -1
    return q


def _nearest_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    U[..., :, 2] *= d[..., None]
    return U @ Vt


def opencv_from_gltf(points: np.ndarray) -> np.ndarray:
    """World (glTF, +y up) coordinates of a file from :func:`write_glb` -> OpenCV camera frame."""
    return np.asarray(points) @ GLTF_FROM_OPENCV  # the flip is its own inverse (and symmetric)


# ----------------------------------------------------------------------------
# skeleton inputs
# ----------------------------------------------------------------------------
_REQUIRED = ("rest_vertices", "faces", "skinning_weights", "bone_transforms", "root_rotations", "root_translations")


def skeleton_arrays(skeleton) -> dict[str, np.ndarray]:
    """``skeleton.npz`` path or a mapping of its arrays (numpy or torch) -> dict of float64/int64 arrays."""
    if isinstance(skeleton, (str, os.PathLike)):
        with np.load(skeleton) as z:
            d = {k: z[k] for k in z.files}
    elif isinstance(skeleton, Mapping) or hasattr(skeleton, "files"):
        keys = skeleton.files if hasattr(skeleton, "files") else list(skeleton.keys())
        d = {k: skeleton[k] for k in keys}
    else:
        raise TypeError(f"skeleton must be a path or a mapping of arrays, got {type(skeleton)}")
    out = {}
    for k, v in d.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        v = np.asarray(v)
        out[k] = v.astype(np.int64) if k in ("faces", "parents") else v.astype(np.float64)
    missing = [k for k in _REQUIRED if k not in out]
    if missing:
        raise KeyError(f"skeleton arrays missing {missing}")
    V, B = out["skinning_weights"].shape
    T = out["bone_transforms"].shape[0]
    if out["rest_vertices"].shape != (V, 3) or out["bone_transforms"].shape != (T, B, 4, 4):
        raise ValueError("inconsistent skeleton shapes: rest_vertices (V,3), skinning_weights (V,B), "
                         "bone_transforms (T,B,4,4) expected")
    if out["root_rotations"].shape != (T, 3, 3) or out["root_translations"].shape != (T, 3):
        raise ValueError("root_rotations (T,3,3) and root_translations (T,3) expected")
    return out


def posed_vertices(rest: np.ndarray, weights: np.ndarray, G: np.ndarray, R_root: np.ndarray, t_root: np.ndarray):
    """``(T, V, 3)`` camera-space vertices ``R_root (sum_b w_b G_tb X) + t_root`` (numpy, float64)."""
    Xh = np.concatenate([rest, np.ones((len(rest), 1))], 1)
    out = np.empty((G.shape[0], len(rest), 3))
    for t in range(G.shape[0]):
        M = np.einsum("vb,bij->vij", weights, G[t, :, :3, :])  # (V, 3, 4) blended
        X = np.einsum("vij,vj->vi", M, Xh)
        out[t] = X @ R_root[t].T + t_root[t]
    return out


def top_k_weights(weights: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest weights per vertex, renormalised to sum to 1.

    Returns ``joints (V, k)`` int and ``w (V, k)`` float32 sorted by decreasing weight;
    slots with zero weight get joint 0; negative weights are clipped to 0; a vertex with
    no positive weight gets weight 1 on its largest entry.  The float32 weights are
    adjusted so that their float32 sum is 1 as closely as possible.
    """
    W = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    V, B = W.shape
    kk = min(k, B)
    order = np.argsort(-W, axis=1, kind="stable")[:, :kk]
    w = np.take_along_axis(W, order, 1)
    s = w.sum(1, keepdims=True)
    empty = s[:, 0] <= 0
    w[empty] = 0.0
    w[empty, 0] = 1.0
    w = w / w.sum(1, keepdims=True)
    if kk < k:
        order = np.concatenate([order, np.zeros((V, k - kk), dtype=order.dtype)], 1)
        w = np.concatenate([w, np.zeros((V, k - kk))], 1)
    w32 = w.astype(np.float32)
    w32[:, 0] = np.float32(1.0) - w32[:, 1:].sum(1, dtype=np.float32)  # w[:, 0] is the largest
    joints = np.where(w32 > 0, order, 0)
    return joints.astype(np.int64), w32


def _unit_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Unit vertex normals (:func:`lasr.geometry.mesh.vertex_normals`); a vertex without
    area gets +z (glTF requires unit normals)."""
    from ..geometry.mesh import vertex_normals

    n = vertex_normals(np.asarray(V, dtype=np.float64), F)
    bad = np.linalg.norm(n, axis=1) < 0.5
    n[bad] = (0.0, 0.0, 1.0)
    return n


# ----------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------
class _Bin:
    """Accumulates buffer views / accessors into one little-endian buffer (4-byte aligned views)."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, arr: np.ndarray, ctype: int, atype: str, target: int | None = None, minmax: bool = False,
            normalized: bool = False) -> int:
        arr = np.ascontiguousarray(arr, dtype=_DTYPE[ctype])
        n = _NCOMP[atype]
        count = arr.size // n
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-self.size) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        self.chunks.append(data)
        self.size += len(data)
        acc = {"bufferView": len(self.views) - 1, "componentType": ctype, "count": int(count), "type": atype}
        if normalized:
            acc["normalized"] = True
        if minmax:
            flat = arr.reshape(count, n)
            cast = float if ctype == _FLOAT else int
            acc["min"] = [cast(x) for x in flat.min(0)]
            acc["max"] = [cast(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        b = b"".join(self.chunks)
        return b + b"\0" * ((-len(b)) % 4)


def write_glb(path, skeleton, colors=None, *, fps: float = 10.0, include_root: bool = True,
              intrinsics=None, name: str = "lasr") -> dict:
    """Write the rest mesh, skin and per-frame animation of a fit as a .glb.

    Args:
        path: output ``.glb``.
        skeleton: ``skeleton.npz`` path or a mapping with its arrays (``rest_vertices``,
            ``faces``, ``skinning_weights``, ``bone_transforms``, ``root_rotations``,
            ``root_translations``; ``parents`` (B,) and ``joint_positions`` (B, 3) give the
            joint tree, else it is estimated: :func:`lasr.model.tree.skeleton_rig`).
        colors: optional ``(V, 3)`` vertex colours in [0, 1] (``COLOR_0``, float).
        fps: key ``t`` is at ``t / fps`` seconds.
        include_root: animate the root node with the per-frame root transform (the object
            moves in front of the video's camera); False leaves the root at identity
            (object-centric animation; the skinned mesh then equals ``sum_b w_b G_tb X``).
        intrinsics: optional ``(fx, fy, width, height)``: adds a perspective camera at the
            origin looking down -z (the video's camera in these axes); ``yfov`` from ``fy``.
        name: asset / mesh name.
    Returns:
        a summary dict: counts, byte size and the top-4 truncation error
        (``trunc_err_max``/``trunc_err_mean``: posed-vertex distance between dense and top-4
        skinning over all frames, as a fraction of the rest bbox diagonal), ``top4_mass_min``,
        and the joint tree ``parents`` (B,).
    """
    d = skeleton_arrays(skeleton)
    X, F = d["rest_vertices"], d["faces"].reshape(-1, 3)
    Wd, G = d["skinning_weights"], d["bone_transforms"]
    Rr, tr = d["root_rotations"], d["root_translations"]
    V, B = Wd.shape
    T = G.shape[0]
    if T < 1 or B < 1 or V < 1 or len(F) < 1:
        raise ValueError("need at least one frame, bone, vertex and face")
    if F.min() < 0 or F.max() >= V:
        raise ValueError("face indices out of range")
    if not np.isfinite(X).all() or not np.isfinite(G).all() or not np.isfinite(Rr).all() or not np.isfinite(tr).all():
        raise ValueError("non-finite skeleton arrays")

    parents, _, bind = skeleton_rig(d)  # (B,), (B, 3), (B, 4, 4)
    ibm = np.linalg.inv(bind)
    world = G @ bind[None]  # (T, B, 4, 4) joint matrices in the object frame
    rot_G = G[..., :3, :3]
    rigid_err = float(np.abs(rot_G @ np.swapaxes(rot_G, -1, -2) - np.eye(3)).max())
    world[..., :3, :3] = _nearest_rotation(world[..., :3, :3])
    L = world.copy()  # local transforms: relative to the parent joint
    has_parent = parents >= 0
    L[:, has_parent] = np.linalg.inv(world[:, parents[has_parent]]) @ world[:, has_parent]
    rot_L = L[..., :3, :3]
    q_joint = _continuous_quats(quat_from_matrix(_nearest_rotation(rot_L)))  # (T, B, 4)
    t_joint = L[..., :3, 3]
    q_root = _continuous_quats(quat_from_matrix(_nearest_rotation(Rr))[:, None])[:, 0]
    t_root = tr
    if not include_root:
        q_root = np.tile([0.0, 0.0, 0.0, 1.0], (T, 1))
        t_root = np.zeros((T, 3))

    joints, w4 = top_k_weights(Wd, 4)
    Wt = np.zeros_like(Wd)
    np.add.at(Wt, (np.repeat(np.arange(V), 4), joints.reshape(-1)), w4.reshape(-1).astype(np.float64))
    Rr_used = matrix_from_quat(q_root)
    dense = posed_vertices(X, Wd / np.maximum(Wd.sum(1, keepdims=True), 1e-300), G, Rr_used, t_root)
    trunc = posed_vertices(X, Wt, G, Rr_used, t_root)
    diag = float(np.linalg.norm(X.max(0) - X.min(0))) or 1.0
    err = np.linalg.norm(dense - trunc, axis=-1) / diag
    top4_mass = np.sort(np.clip(Wd, 0, None), 1)[:, ::-1][:, :4].sum(1) / np.maximum(np.clip(Wd, 0, None).sum(1), 1e-300)

    buf = _Bin()
    attrs = {"POSITION": buf.add(X, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True),
             "NORMAL": buf.add(_unit_normals(X, F), _FLOAT, "VEC3", _ARRAY_BUFFER)}
    if colors is not None:
        c = np.asarray(colors.detach().cpu() if hasattr(colors, "detach") else colors, dtype=np.float64)
        if c.shape != (V, 3):
            raise ValueError(f"colors must be (V, 3) = ({V}, 3), got {c.shape}")
        attrs["COLOR_0"] = buf.add(np.clip(c, 0.0, 1.0), _FLOAT, "VEC3", _ARRAY_BUFFER)
    jtype = _UBYTE if B <= 256 else _USHORT
    attrs["JOINTS_0"] = buf.add(joints, jtype, "VEC4", _ARRAY_BUFFER)
    attrs["WEIGHTS_0"] = buf.add(w4, _FLOAT, "VEC4", _ARRAY_BUFFER)
    itype = _USHORT if V <= 65535 else _UINT
    indices = buf.add(F.reshape(-1), itype, "SCALAR", _ELEMENT_ARRAY_BUFFER, minmax=True)
    ibm_acc = buf.add(np.transpose(ibm, (0, 2, 1)), _FLOAT, "MAT4")  # column-major

    n_mesh, n_top, n_root, n_joint0 = 0, 1, 2, 3
    nodes = [
        {"name": "mesh", "mesh": 0, "skin": 0},
        {"name": "opencv_to_gltf", "rotation": [1.0, 0.0, 0.0, 0.0], "children": [n_root]},
        {"name": "root", "translation": [float(x) for x in t_root[0]], "rotation": [float(x) for x in q_root[0]],
         "children": [n_joint0 + int(b) for b in np.flatnonzero(~has_parent)]},
    ]
    for b in range(B):
        nodes.append({"name": f"bone_{b:02d}", "translation": [float(x) for x in t_joint[0, b]],
                      "rotation": [float(x) for x in q_joint[0, b]]})
        kids = [n_joint0 + int(c) for c in np.flatnonzero(parents == b)]
        if kids:
            nodes[-1]["children"] = kids

    times = np.arange(T, dtype=np.float64) / float(fps)
    t_acc = buf.add(times, _FLOAT, "SCALAR", minmax=True)
    samplers, channels = [], []

    def animate(node, trans, quat):
        for path_, arr, atype in (("translation", trans, "VEC3"), ("rotation", quat, "VEC4")):
            out = buf.add(arr, _FLOAT, atype)
            samplers.append({"input": t_acc, "output": out, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path_}})

    if include_root:
        animate(n_root, t_root, q_root)
    for b in range(B):
        animate(n_joint0 + b, t_joint[:, b], q_joint[:, b])

    scene_nodes = [n_top, n_mesh]
    cameras = []
    if intrinsics is not None:
        fx, fy, w_img, h_img = (float(x) for x in intrinsics)
        if not all(np.isfinite(v) and v > 0 for v in (fx, fy, w_img, h_img)):
            raise ValueError(f"intrinsics (fx, fy, width, height) must be finite and > 0, got "
                             f"{(fx, fy, w_img, h_img)}")
        cameras.append({"type": "perspective", "name": "video_camera", "perspective": {
            "yfov": float(2 * np.arctan(0.5 * h_img / fy)), "aspectRatio": float((w_img / fx) / (h_img / fy)),
            "znear": 0.01}})
        nodes.append({"name": "video_camera", "camera": 0})
        scene_nodes.append(len(nodes) - 1)

    prim = {"attributes": attrs, "indices": indices, "mode": 4, "material": 0}
    doc = {
        "asset": {"version": "2.0", "generator": "lasr.gltf"},
        "scene": 0,
        "scenes": [{"name": name, "nodes": scene_nodes}],
        "nodes": nodes,
        "meshes": [{"name": name, "primitives": [prim]}],
        "materials": [{"name": "vertex_color", "doubleSided": True,
                       "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0}}],
        "skins": [{"name": "skeleton", "inverseBindMatrices": ibm_acc, "skeleton": n_root,
                   "joints": list(range(n_joint0, n_joint0 + B))}],
        "animations": [{"name": "video", "samplers": samplers, "channels": channels}],
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": 0}],
        "extras": {"lasr": {"fps": float(fps), "frames": int(T), "include_root": bool(include_root),
                            "parents": [int(p) for p in parents],
                            "axes": "node 'opencv_to_gltf' maps the OpenCV camera frame (x right, y down, "
                                    "z forward) to glTF (y up): diag(1, -1, -1)"}},
    }
    if cameras:
        doc["cameras"] = cameras
    blob = buf.blob()
    doc["buffers"][0]["byteLength"] = len(blob)
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(js), b"JSON"))
        fh.write(js)
        fh.write(struct.pack("<I4s", len(blob), b"BIN\0"))
        fh.write(blob)
    return {
        "path": str(path), "bytes": total, "vertices": int(V), "faces": int(len(F)), "bones": int(B),
        "frames": int(T), "fps": float(fps),
        "trunc_err_max": float(err.max()), "trunc_err_mean": float(err.mean()),
        "top4_mass_min": float(top4_mass.min()), "top4_mass_mean": float(top4_mass.mean()),
        "bone_rigidity_err": rigid_err, "parents": parents,
    }


def read_glb_extras(path) -> dict:
    """The ``extras.lasr`` of a .glb from :func:`write_glb` (``fps``, ``frames``, ``parents``,
    ...; empty for another writer's file). Reads the JSON chunk only."""
    with open(path, "rb") as fh:
        head = fh.read(20)
        magic, _, _, jlen, jtype = struct.unpack("<4sIII4s", head)
        if magic != b"glTF" or jtype != b"JSON":
            raise ValueError(f"{path} is not a binary glTF (.glb)")
        doc = json.loads(fh.read(jlen))
    return dict(doc.get("extras", {}).get("lasr", {}))
