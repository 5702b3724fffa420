"""A fit's ``final/`` folder: the one writer and reader of the layout ``DESIGN.md`` fixes.

::

    final/meshes/00000.obj   posed mesh of every processed frame, camera coordinates (OpenCV)
    final/cameras.json       {"width", "height", "frames": [{"frame", "source_frame", "fx", "fy",
                              "cx", "cy"}, ...]}, pixels of the source frames as the user gave them
    final/rest.obj           rest mesh with its fitted vertex colours
    final/skeleton.npz       bones, skinning weights, per-frame root and bone transforms, and
                             the rig: ``parents`` (B,) int64 (-1 for the root) and
                             ``joint_positions`` (B, 3) rest-frame joints (lasr.model.tree)
    final/animation.glb      the rig (glTF 2.0, :mod:`lasr.io.gltf`)
    final/metrics.json       per-frame mask IoU and flow error, loss terms, timings, versions

:func:`write_final` writes the folder beside its place and moves it in when complete, so
a ``final/`` is never half written. :func:`read_final` opens one for evaluation, videos,
the viewer and tests (a run folder or its ``final/``).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError, LasrError
from ..files import replace_dir
from .gltf import read_glb_extras, write_glb
from .obj import read_obj, write_obj

__all__ = ["FinalContent", "FinalRun", "write_final", "degenerate", "read_final", "read_cameras", "source_intrinsics", "final_dir",
           "mesh_ids", "source_frames", "FINAL_FILES"]

FINAL_FILES = ("cameras.json", "rest.obj", "skeleton.npz", "animation.glb", "metrics.json")


def source_intrinsics(K: np.ndarray, processed_size: tuple[int, int], source_size: tuple[int, int]) -> np.ndarray:
    """(N,4) intrinsics of images of ``processed_size (H, W)`` -> of the same images at
    ``source_size (W, H)``. Pixel centres at integer coordinates on both:
    ``u_src = (u + 0.5) * s - 0.5`` with ``s = W_src / W``."""
    K = np.asarray(K).reshape(-1, 4)  # float32 stays float32 (the fit's own precision)
    if not np.issubdtype(K.dtype, np.floating):
        K = K.astype(np.float64)
    H, W = processed_size
    Ws, Hs = source_size
    sx, sy = Ws / W, Hs / H
    return np.stack([K[:, 0] * sx, K[:, 1] * sy, (K[:, 2] + 0.5) * sx - 0.5, (K[:, 3] + 0.5) * sy - 0.5], -1)


@dataclass
class FinalContent:
    """Everything ``final/`` holds, as arrays.

    Attributes:
        verts: ``(T, V, 3)`` posed vertices, camera coordinates; faces ``(F, 3)``.
        rest_verts: ``(V, 3)``; colors: ``(V, 3)`` in [0, 1].
        intrinsics: ``(T, 4)`` ``fx, fy, cx, cy`` in source pixels; source_size ``(W, H)``.
        source_frames: ``(T,)`` index of each frame in the source.
        skeleton: the arrays of ``skeleton.npz`` (see :func:`lasr.io.gltf.skeleton_arrays`).
        fps: frames per second of the animation.
        metrics: the content of ``metrics.json`` (the glTF's skinning truncation is added).
    """

    verts: np.ndarray
    faces: np.ndarray
    rest_verts: np.ndarray
    colors: np.ndarray
    intrinsics: np.ndarray
    source_size: tuple[int, int]
    source_frames: np.ndarray
    skeleton: dict[str, np.ndarray]
    fps: float
    metrics: dict = field(default_factory=dict)


def _json_safe(x):
    """Non-finite floats as None: ``metrics.json`` stays valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def degenerate(content: FinalContent) -> Optional[str]:
    """Why ``content`` cannot be written as a model (a non-finite array, a focal length that
    is not positive, no frames, an fps that is not positive), or None when it can."""
    arrays = {"verts": content.verts, "rest_verts": content.rest_verts, "colors": content.colors,
              "intrinsics": content.intrinsics, **{f"skeleton.{k}": v for k, v in content.skeleton.items()}}
    for name, a in arrays.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            return f"{name} is not finite"
    K = np.asarray(content.intrinsics).reshape(-1, 4)
    if len(K) == 0 or len(content.verts) == 0:
        return "there are no frames"
    if not (K[:, :2] > 0).all():
        return f"a focal length is not positive ({float(K[:, :2].min()):.3g} px)"
    if not (math.isfinite(content.fps) and content.fps > 0):
        return f"fps={content.fps} is not positive"
    return None


def write_final(out_dir: Path, content: FinalContent) -> Path:
    """Write ``out_dir`` (``final/``) from ``content`` and return it. The folder is written
    next to ``out_dir`` and moved into place when complete (replacing an older one).

    Raises:
        LasrError: ``content`` is degenerate (:func:`degenerate`: a diverged fit); nothing
            is written.
    """
    why = degenerate(content)
    if why:
        raise LasrError(f"the fitted model cannot be exported: {why} (the fit diverged). Nothing was written to "
                        f"{out_dir}. Lower the learning rate (stages.NAME.lr) and fit again, or resume=true from a "
                        f"checkpoint of the run")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        _write(tmp, content)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write(d: Path, c: FinalContent) -> None:
    (d / "meshes").mkdir(parents=True)
    for i, v in enumerate(c.verts):
        write_obj(d / "meshes" / f"{i:05d}.obj", v, c.faces)
    colors = np.clip(c.colors, 0, 1)
    write_obj(d / "rest.obj", c.rest_verts, c.faces, colors=colors)
    W, H = c.source_size
    K = c.intrinsics
    cameras = {"width": int(W), "height": int(H), "frames": [
        {"frame": i, "source_frame": int(c.source_frames[i]), "fx": float(K[i, 0]), "fy": float(K[i, 1]),
         "cx": float(K[i, 2]), "cy": float(K[i, 3])} for i in range(len(K))]}
    (d / "cameras.json").write_text(json.dumps(cameras, indent=1))
    np.savez(d / "skeleton.npz", **c.skeleton)
    glb = write_glb(d / "animation.glb", c.skeleton, colors=colors, fps=c.fps,
                    intrinsics=(float(K[0, 0]), float(K[0, 1]), W, H))
    metrics = {**c.metrics, "glb_top4_truncation": {k: glb[k] for k in ("trunc_err_max", "trunc_err_mean",
                                                                          "top4_mass_min")}}
    (d / "metrics.json").write_text(json.dumps(_json_safe(metrics), indent=1, allow_nan=False))


# ----------------------------------------------------------------------------------------
def read_cameras(path) -> dict[int, dict]:
    """Per-frame intrinsics ``{frame: {fx, fy, cx, cy, width, height}}`` of a
    ``cameras.json``: lasr's and the bench's ``{"frames": [...]}`` (top-level ``width`` /
    ``height`` as defaults), a bare list of per-frame dicts, or one dict for every frame
    (then any frame number maps to it)."""
    with open(path) as fh:
        d = json.load(fh)
    if isinstance(d, dict) and "frames" in d:
        items, wh = d["frames"], (d.get("width"), d.get("height"))
    elif isinstance(d, list):
        items, wh = d, (None, None)
    elif isinstance(d, dict) and "fx" in d:
        items, wh = [d], (d.get("width"), d.get("height"))
    else:
        raise ValueError(f"unrecognised cameras.json layout in {path}")

    def conv(c):
        return {"fx": float(c["fx"]), "fy": float(c["fy"]), "cx": float(c["cx"]), "cy": float(c["cy"]),
                "width": c.get("width", wh[0]), "height": c.get("height", wh[1])}

    if isinstance(d, dict) and "fx" in d:
        return _SameForAll(conv(d))
    return {int(c.get("frame", i)): conv(c) for i, c in enumerate(items)}


class _SameForAll(dict):
    """One camera for every frame number."""

    def __init__(self, cam):
        super().__init__()
        self._cam = cam

    def __contains__(self, key):
        return True

    def __missing__(self, key):
        return self._cam

    def get(self, key, default=None):
        return self._cam


def final_dir(run: str | Path) -> Path:
    """The folder of a run's posed meshes: ``run/final`` for a run folder, else ``run``
    itself when it holds ``meshes/`` (a ``final/``, or any prediction in this layout)."""
    run = Path(run)
    for cand in (run / "final", run):
        if (cand / "meshes").is_dir():
            return cand
    raise FileNotFoundError(f"no meshes/ under {run} or {run}/final")


def mesh_ids(folder: str | Path) -> list[int]:
    """The frame numbers of the ``NNNNN.obj`` files in a meshes folder, sorted."""
    return sorted(int(p.stem) for p in Path(folder).glob("*.obj") if p.stem.isdigit())


def source_frames(path) -> dict[int, int]:
    """``{frame: source_frame}`` from a fit's cameras.json (empty when not given)."""
    with open(path) as fh:
        d = json.load(fh)
    items = d.get("frames", []) if isinstance(d, dict) else d
    return {int(c.get("frame", i)): int(c["source_frame"]) for i, c in enumerate(items)
            if isinstance(c, dict) and "source_frame" in c}


@dataclass
class FinalRun:
    """A finished fit's ``final/`` folder (and the run folder around it), read on demand."""

    final: Path
    root: Path
    cameras: dict
    num_frames: int
    source_frames: np.ndarray = field(repr=False)

    def mesh_path(self, i: int) -> Path:
        return self.final / "meshes" / f"{i:05d}.obj"

    def intrinsics(self) -> np.ndarray:
        """``(N, 4)`` float64 ``fx, fy, cx, cy`` in source pixels."""
        return np.array([[c["fx"], c["fy"], c["cx"], c["cy"]] for c in self.cameras["frames"]], dtype=np.float64)

    @property
    def source_size(self) -> tuple[int, int]:
        return int(self.cameras["width"]), int(self.cameras["height"])

    def require(self, name: str, needed_for: str) -> Path:
        p = self.final / name
        if not p.is_file():
            raise InputError(
                f"{p} is missing ({needed_for} needs it): the fit did not finish writing final/. "
                f"Finish it with `python -m lasr.optimize ... resume=true hydra.run.dir={self.root}`")
        return p

    def meshes(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(len(ids), V, 3)`` float64 posed vertices and the shared ``(F, 3)`` faces."""
        verts, faces = [], None
        for i in ids:
            try:
                v, f = read_obj(self.mesh_path(i))
            except (ValueError, IndexError, OSError) as e:
                raise InputError(f"{self.mesh_path(i)} is not a readable OBJ ({e}); rerun the export") from None
            if faces is None:
                faces = f
            elif v.shape[0] != verts[0].shape[0] or f.shape[0] != faces.shape[0]:
                raise InputError(f"{self.mesh_path(i)} has a different topology from {self.mesh_path(ids[0])}: "
                                 f"final/meshes must share one mesh")
            verts.append(v)
        return np.stack(verts), faces

    def rest(self) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        """``rest.obj`` as ``(verts, faces, colours in [0, 1] or None)``, None when absent."""
        p = self.final / "rest.obj"
        if not p.is_file():
            return None
        v, f, c = read_obj(p, colors=True)
        return v, f, None if c is None else np.clip(c, 0, 1)

    def skeleton(self) -> Optional[dict[str, np.ndarray]]:
        """The arrays of ``skeleton.npz``, None when absent."""
        p = self.final / "skeleton.npz"
        if not p.is_file():
            return None
        with np.load(p) as z:
            return {k: z[k] for k in z.files}

    def fps(self, default: float = 10.0) -> float:
        """The animation's frames per second (``animation.glb``'s), ``default`` without one."""
        p = self.final / "animation.glb"
        try:
            return float(read_glb_extras(p).get("fps", default)) if p.is_file() else default
        except (ValueError, OSError, struct.error):
            return default

    def metrics(self) -> Optional[dict]:
        p = self.final / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else None


def read_final(run: str | Path) -> FinalRun:
    """Open a run folder (``hydra.run.dir`` of ``python -m lasr.optimize``) or its ``final/``;
    checks ``cameras.json`` and that every mesh it lists exists.

    Raises:
        InputError: naming what is missing and how to finish the fit.
    """
    p = Path(run).expanduser()
    if not p.exists():
        raise InputError(f"run={run}: no such folder. Give the output folder of `python -m lasr.optimize` "
                         f"(its hydra.run.dir, holding final/) or that final/ folder")
    if not p.is_dir():
        raise InputError(f"run={run} is a file; give the run folder (holding final/) or its final/")
    if (p / "final").is_dir() or not ((p / "cameras.json").exists() or (p / "meshes").is_dir()):
        final, root = p / "final", p
    else:
        final, root = p, p.parent
    cams = final / "cameras.json"
    finish = f"`python -m lasr.optimize ... resume=true hydra.run.dir={root}`"
    if not final.is_dir():
        raise InputError(f"{final} does not exist: {p} is not a finished fit (a fit writes final/ when it ends). "
                         f"Give run=<the fit's output folder>, or finish the fit with {finish}")
    if not cams.is_file():
        raise InputError(f"{cams} is missing: the fit did not finish writing final/. Finish it with {finish}")
    try:
        cameras = json.loads(cams.read_text())
        frames = cameras["frames"]
        for c in frames:
            float(c["fx"]), float(c["fy"]), float(c["cx"]), float(c["cy"])
        int(cameras["width"]), int(cameras["height"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{cams} is not a cameras.json of lasr ({type(e).__name__}: {e}); "
                         f"expected {{'width', 'height', 'frames': [{{'fx', 'fy', 'cx', 'cy'}}, ...]}}") from None
    n = len(frames)
    if n == 0:
        raise InputError(f"{cams} lists no frames")
    src = np.array([int(c.get("source_frame", c.get("frame", i))) for i, c in enumerate(frames)], dtype=np.int64)
    run_files = FinalRun(final=final, root=root, cameras=cameras, num_frames=n, source_frames=src)
    missing = [i for i in range(n) if not run_files.mesh_path(i).is_file()]
    if missing:
        raise InputError(f"{run_files.mesh_path(missing[0])} is missing ({len(missing)} of the {n} meshes "
                         f"cameras.json lists): the fit did not finish writing final/. Finish it with {finish}")
    return run_files
