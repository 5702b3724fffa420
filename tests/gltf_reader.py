"""An independent reader and validator of the .glb files lasr writes (tests only).

pygltflib reads the container; accessor decoding, the node hierarchy, animation sampling
(LINEAR / slerp, STEP, CUBICSPLINE) and skinning are written here, apart from the writer
(:mod:`lasr.io.gltf`), so that a test of one against the other means something.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from lasr.io.gltf import matrix_from_quat

__all__ = ["read_glb_and_pose", "read_glb_arrays", "validate_glb", "glb_key_times", "glb_joint_parents"]

_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_DTYPE = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}


def _trs_matrix(t=None, q=None, s=None) -> np.ndarray:
    M = np.eye(4)
    R = np.eye(3) if q is None else matrix_from_quat(q)
    S = np.ones(3) if s is None else np.asarray(s, dtype=np.float64)
    M[:3, :3] = R * S[None, :]
    if t is not None:
        M[:3, 3] = t
    return M


def _load(path):
    import pygltflib

    g = pygltflib.GLTF2().load(str(path))
    blob = g.binary_blob()
    return g, blob


def _buffer_bytes(g, blob, i: int) -> bytes:
    buf = g.buffers[i]
    if buf.uri is None:
        return blob
    if buf.uri.startswith("data:"):
        import base64

        return base64.b64decode(buf.uri.split(",", 1)[1])
    raise ValueError("external buffers are not supported")


def _read_accessor(g, blob, index: int) -> np.ndarray:
    """Decode an accessor to ``(count, n)`` (float64 for normalised ints, else native)."""
    a = g.accessors[index]
    n = _NCOMP[a.type]
    dt = np.dtype(_DTYPE[a.componentType]).newbyteorder("<")
    if a.sparse is not None:
        raise NotImplementedError("sparse accessors are not supported")
    if a.bufferView is None:
        out = np.zeros((a.count, n), dtype=dt)
    else:
        bv = g.bufferViews[a.bufferView]
        data = _buffer_bytes(g, blob, bv.buffer)
        start = (bv.byteOffset or 0) + (a.byteOffset or 0)
        elem = dt.itemsize * n
        stride = bv.byteStride or elem
        if stride == elem:
            out = np.frombuffer(data, dtype=dt, count=a.count * n, offset=start).reshape(a.count, n)
        else:
            rows = [np.frombuffer(data, dtype=dt, count=n, offset=start + i * stride) for i in range(a.count)]
            out = np.stack(rows) if rows else np.zeros((0, n), dtype=dt)
    if a.normalized:
        if dt.kind == "u":
            out = out.astype(np.float64) / np.iinfo(dt).max
        else:
            out = np.maximum(out.astype(np.float64) / np.iinfo(dt).max, -1.0)
    return out


def read_glb_arrays(path) -> dict:
    """Decoded arrays of the first skinned primitive and the skin (for checks)."""
    g, blob = _load(path)
    mesh_node = next(n for n in g.nodes if n.mesh is not None)
    prim = g.meshes[mesh_node.mesh].primitives[0]
    at = prim.attributes
    out = {"POSITION": _read_accessor(g, blob, at.POSITION).astype(np.float64)}
    for key in ("NORMAL", "COLOR_0", "JOINTS_0", "WEIGHTS_0"):
        idx = getattr(at, key)
        if idx is not None:
            out[key] = _read_accessor(g, blob, idx)
    out["indices"] = _read_accessor(g, blob, prim.indices).reshape(-1, 3).astype(np.int64)
    if mesh_node.skin is not None:
        skin = g.skins[mesh_node.skin]
        out["joints"] = list(skin.joints)
        out["inverse_bind_matrices"] = _read_accessor(g, blob, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    return out


def _sample(interp: str, times: np.ndarray, values: np.ndarray, t: float, path_: str) -> np.ndarray:
    """Evaluate one sampler at time ``t`` (clamped to the keys)."""
    if interp == "CUBICSPLINE":
        values = values.reshape(len(times), 3, -1)
        if t <= times[0]:
            return values[0, 1]
        if t >= times[-1]:
            return values[-1, 1]
        k = int(np.searchsorted(times, t, side="right") - 1)
        dt = times[k + 1] - times[k]
        s = (t - times[k]) / dt
        p0, m0 = values[k, 1], dt * values[k, 2]
        p1, m1 = values[k + 1, 1], dt * values[k + 1, 0]
        v = ((2 * s**3 - 3 * s**2 + 1) * p0 + (s**3 - 2 * s**2 + s) * m0 + (-2 * s**3 + 3 * s**2) * p1
             + (s**3 - s**2) * m1)
        return v / np.linalg.norm(v) if path_ == "rotation" else v
    if t <= times[0]:
        return values[0]
    if t >= times[-1]:
        return values[-1]
    k = int(np.searchsorted(times, t, side="right") - 1)
    if interp == "STEP":
        return values[k]
    s = (t - times[k]) / (times[k + 1] - times[k])
    a, b = values[k], values[k + 1]
    if path_ != "rotation":
        return (1 - s) * a + s * b
    dot = float(np.dot(a, b))
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:
        v = (1 - s) * a + s * b
    else:
        th = np.arccos(dot)
        v = (np.sin((1 - s) * th) * a + np.sin(s * th) * b) / np.sin(th)
    return v / np.linalg.norm(v)


def read_glb_and_pose(path, frame: int | None = None, time: float | None = None, animation: int = 0) -> np.ndarray:
    """Posed vertices ``(V, 3)`` of the first skinned mesh of a .glb, in world (glTF) coordinates.

    Independent of the writer: reads the file with pygltflib, decodes accessors, applies
    animation ``animation`` at key ``frame`` (the ``frame``-th time of the first channel's
    input) or at ``time`` seconds (LINEAR / slerp, STEP, CUBICSPLINE; clamped), composes the
    node hierarchy and evaluates linear blend skinning ``sum_k w_k J_k IBM_k X`` (the mesh
    node's own transform is ignored, as the spec says).  With neither ``frame`` nor ``time``
    the nodes' static TRS are used.  A mesh without a skin is returned in world coordinates
    of its node.  Use :func:`opencv_from_gltf` on the result for a :func:`write_glb` file's
    camera-space vertices.
    """
    g, blob = _load(path)
    n_nodes = len(g.nodes)
    local_trs = []
    for n in g.nodes:
        if n.matrix is not None:
            local_trs.append(("M", np.asarray(n.matrix, dtype=np.float64).reshape(4, 4).T))
        else:
            local_trs.append(("TRS", {"translation": None if n.translation is None else np.asarray(n.translation, float),
                                      "rotation": None if n.rotation is None else np.asarray(n.rotation, float),
                                      "scale": None if n.scale is None else np.asarray(n.scale, float)}))
    if (frame is not None or time is not None) and g.animations:
        anim = g.animations[animation]
        if time is None:
            first = anim.samplers[anim.channels[0].sampler]
            keys = _read_accessor(g, blob, first.input)[:, 0].astype(np.float64)
            if not 0 <= frame < len(keys):
                raise IndexError(f"frame {frame} outside the {len(keys)} keys")
            time = float(keys[frame])
        for ch in anim.channels:
            smp = anim.samplers[ch.sampler]
            node, path_ = ch.target.node, ch.target.path
            if node is None or path_ not in ("translation", "rotation", "scale"):
                continue
            times = _read_accessor(g, blob, smp.input)[:, 0].astype(np.float64)
            vals = _read_accessor(g, blob, smp.output).astype(np.float64)
            v = _sample(smp.interpolation or "LINEAR", times, vals, time, path_)
            kind, trs = local_trs[node]
            if kind == "TRS":
                trs[path_] = v
    local = []
    for kind, v in local_trs:
        local.append(v if kind == "M" else _trs_matrix(v["translation"], v["rotation"], v["scale"]))
    parent = [-1] * n_nodes
    for i, n in enumerate(g.nodes):
        for c in n.children or []:
            parent[c] = i
    world: list = [None] * n_nodes

    def world_of(i):
        if world[i] is None:
            world[i] = local[i] if parent[i] < 0 else world_of(parent[i]) @ local[i]
        return world[i]

    mesh_node = next(i for i, n in enumerate(g.nodes) if n.mesh is not None)
    arr = read_glb_arrays(path)
    Xh = np.concatenate([arr["POSITION"], np.ones((len(arr["POSITION"]), 1))], 1)
    if g.nodes[mesh_node].skin is None:
        return (Xh @ world_of(mesh_node).T)[:, :3]
    J = np.stack([world_of(j) for j in arr["joints"]]) @ arr["inverse_bind_matrices"]  # (B, 4, 4)
    jid = arr["JOINTS_0"].astype(np.int64)
    w = arr["WEIGHTS_0"].astype(np.float64)
    M = np.einsum("vk,vkij->vij", w, J[jid])  # (V, 4, 4) blended joint matrices
    return np.einsum("vij,vj->vi", M, Xh)[:, :3]


def validate_glb(path) -> list[str]:
    """Structural checks of a .glb (header, chunk alignment, accessor bounds, min/max, skin and
    animation rules); returns the list of problems found (empty when none)."""
    problems = []
    raw = Path(path).read_bytes()
    magic, version, length = struct.unpack_from("<4sII", raw, 0)
    if magic != b"glTF" or version != 2 or length != len(raw):
        problems.append(f"bad GLB header {magic!r} v{version} length {length} vs {len(raw)}")
    jlen, jtype = struct.unpack_from("<I4s", raw, 12)
    if jtype != b"JSON" or jlen % 4:
        problems.append("JSON chunk missing or not 4-byte padded")
    doc = json.loads(raw[20:20 + jlen])
    off = 20 + jlen
    blen, btype = struct.unpack_from("<I4s", raw, off)
    if btype != b"BIN\0" or blen % 4:
        problems.append("BIN chunk missing or not 4-byte padded")
    if doc["buffers"][0]["byteLength"] > blen:
        problems.append("buffer byteLength exceeds the BIN chunk")
    g, blob = _load(path)
    for i, bv in enumerate(doc["bufferViews"]):
        if bv.get("byteOffset", 0) + bv["byteLength"] > doc["buffers"][bv["buffer"]]["byteLength"]:
            problems.append(f"bufferView {i} out of the buffer")
        if bv.get("byteOffset", 0) % 4:
            problems.append(f"bufferView {i} not 4-byte aligned")
    for i, a in enumerate(doc["accessors"]):
        bv = doc["bufferViews"][a["bufferView"]]
        size = np.dtype(_DTYPE[a["componentType"]]).itemsize
        need = a.get("byteOffset", 0) + a["count"] * size * _NCOMP[a["type"]]
        if need > bv["byteLength"]:
            problems.append(f"accessor {i} overruns its bufferView")
        if (bv.get("byteOffset", 0) + a.get("byteOffset", 0)) % size:
            problems.append(f"accessor {i} misaligned")
        if "min" in a:
            v = _read_accessor(g, blob, i)
            if not (np.allclose(v.min(0), a["min"], rtol=0, atol=0) and np.allclose(v.max(0), a["max"], rtol=0, atol=0)):
                problems.append(f"accessor {i} min/max do not match the data")
    mesh_node = next(n for n in doc["nodes"] if "mesh" in n)
    prim = doc["meshes"][mesh_node["mesh"]]["primitives"][0]
    at = prim["attributes"]
    nv = doc["accessors"][at["POSITION"]]["count"]
    for k, acc in at.items():
        if doc["accessors"][acc]["count"] != nv:
            problems.append(f"attribute {k} count differs from POSITION")
        if doc["bufferViews"][doc["accessors"][acc]["bufferView"]].get("target") != _ARRAY_BUFFER:
            problems.append(f"attribute {k} bufferView target is not ARRAY_BUFFER")
    if "min" not in doc["accessors"][at["POSITION"]]:
        problems.append("POSITION has no min/max")
    arr = read_glb_arrays(path)
    if arr["indices"].max() >= nv:
        problems.append("index out of range")
    if "NORMAL" in arr and not np.allclose(np.linalg.norm(arr["NORMAL"], axis=1), 1, atol=1e-5):
        problems.append("NORMAL not unit length")
    if "skin" in mesh_node:
        skin = doc["skins"][mesh_node["skin"]]
        nj = len(skin["joints"])
        jnt, wts = arr["JOINTS_0"].astype(np.int64), arr["WEIGHTS_0"].astype(np.float64)
        if jnt.max() >= nj:
            problems.append("JOINTS_0 index >= number of joints")
        if (wts < 0).any():
            problems.append("negative weight")
        if np.abs(wts.sum(1) - 1).max() > 2e-6:
            problems.append(f"weights do not sum to 1 (max dev {np.abs(wts.sum(1) - 1).max():.2e})")
        if ((wts == 0) & (jnt != 0)).any():
            problems.append("zero-weight slots with non-zero joint index")
        for v in range(len(jnt)):  # a joint at most once with non-zero weight
            nz = jnt[v][wts[v] > 0]
            if len(set(nz.tolist())) != len(nz):
                problems.append(f"vertex {v}: joint repeated with non-zero weights")
                break
        if doc["accessors"][skin["inverseBindMatrices"]]["count"] < nj:
            problems.append("fewer inverse bind matrices than joints")
        ibm = arr["inverse_bind_matrices"]
        if not np.allclose(ibm[:, 3], [0, 0, 0, 1], atol=1e-6):
            problems.append("inverse bind matrices are not affine")
    for a in doc.get("animations", []):
        for ch in a["channels"]:
            s = a["samplers"][ch["sampler"]]
            ia, oa = doc["accessors"][s["input"]], doc["accessors"][s["output"]]
            if "min" not in ia or "max" not in ia:
                problems.append("animation input without min/max")
            t = _read_accessor(g, blob, s["input"])[:, 0]
            if len(t) > 1 and not (np.diff(t) > 0).all():
                problems.append("animation times not strictly increasing")
            if oa["count"] != ia["count"] * (3 if s.get("interpolation") == "CUBICSPLINE" else 1):
                problems.append("sampler output count does not match input")
            if ch["target"]["path"] == "rotation":
                q = _read_accessor(g, blob, s["output"]).astype(np.float64)
                if not np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5):
                    problems.append("rotation keys not unit quaternions")
    return problems


def glb_key_times(path, animation: int = 0) -> np.ndarray:
    """The key times (seconds) of the first channel of an animation."""
    g, blob = _load(path)
    anim = g.animations[animation]
    return _read_accessor(g, blob, anim.samplers[anim.channels[0].sampler].input)[:, 0].astype(np.float64)


def glb_joint_parents(path, skin: int = 0) -> np.ndarray:
    """``(J,)`` the joint tree of a skin read from the node hierarchy: entry ``j`` is the
    index (in ``skin.joints``) of the nearest ancestor node of joint ``j`` that is a joint,
    -1 when none is."""
    g, _ = _load(path)
    parent = [-1] * len(g.nodes)
    for i, n in enumerate(g.nodes):
        for c in n.children or []:
            parent[c] = i
    joints = list(g.skins[skin].joints)
    index = {node: j for j, node in enumerate(joints)}
    out = []
    for node in joints:
        up = parent[node]
        while up >= 0 and up not in index:
            up = parent[up]
        out.append(index[up] if up >= 0 else -1)
    return np.array(out, dtype=np.int64)
