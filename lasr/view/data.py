"""What the viewer shows of a finished fit, as arrays (numpy; no server here).

Everything is in the video camera's frame (OpenCV: x right, y down, z forward), as
``final/meshes`` are: the camera sits at the origin looking down +z.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError
from ..io.final import FinalRun, read_final
from ..io.frames import find_frames
from ..model.tree import bone_centroids, bone_tails, skeleton_rig
from ..videos.shading import bone_palette, skin_colors

__all__ = ["ViewData", "load_view_data", "GRAY"]

GRAY = (0.72, 0.72, 0.72)
MAX_IMAGE_SIDE = 480  # the input frames are sent at most this large


@dataclass
class ViewData:
    """A fit as the viewer draws it.

    Attributes:
        verts: ``(T, V, 3)`` posed vertices (camera frame); faces ``(F, 3)``.
        colors: ``{"fitted": (V, 3), "skinning": (V, 3), "gray": (V, 3)}`` in [0, 1]; the
            first two only where ``final/`` has them.
        rest: ``(T, V, 3)`` the rest shape placed by each frame's root transform (None
            without a skeleton).
        parents: ``(B,)`` the bones' tree (-1 for the root), None without a skeleton.
        joints: ``(T, B, 3)`` each bone's joint carried by its bone; tails ``(T, B, 3)`` where
            it ends (the mean of its children's joints, a leaf's far end).
        rest_joints, rest_tails: the same in the rest shape (``(T, B, 3)``, root-placed).
        bone_colors: ``(B, 3)`` the skinning palette.
        intrinsics: ``(T, 4)`` ``fx, fy, cx, cy`` of the source frames; size ``(W, H)``.
        fps: the animation's frame rate.
        images: ``read(t)`` -> RGB uint8 input frame ``t`` (at most :data:`MAX_IMAGE_SIDE`
            pixels a side), None when the frames were not found (``image_note`` says why).
    """

    verts: np.ndarray
    faces: np.ndarray
    colors: dict[str, np.ndarray]
    intrinsics: np.ndarray
    size: tuple[int, int]
    fps: float
    rest: Optional[np.ndarray] = None
    parents: Optional[np.ndarray] = None
    joints: Optional[np.ndarray] = None
    tails: Optional[np.ndarray] = None
    rest_joints: Optional[np.ndarray] = None
    rest_tails: Optional[np.ndarray] = None
    bone_colors: Optional[np.ndarray] = None
    images: Optional[Callable[[int], np.ndarray]] = field(default=None, repr=False)
    image_note: str = ""
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_bones(self) -> int:
        return 0 if self.parents is None else len(self.parents)

    def segments(self, t: int, rest: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The skeleton of frame ``t`` as line segments: ``(S, 2, 3)`` points and ``(S, 2, 3)``
        colours in [0, 1]: parent joint -> child joint for every edge of the tree, and joint
        -> tail for every leaf (a lone bone: its joint -> tail); ``rest``: in the rest shape."""
        if self.parents is None:
            return np.zeros((0, 2, 3)), np.zeros((0, 2, 3))
        J = (self.rest_joints if rest else self.joints)[t]
        Tl = (self.rest_tails if rest else self.tails)[t]
        pts, cols = [], []
        has_kids = np.zeros(len(self.parents), dtype=bool)
        has_kids[self.parents[self.parents >= 0]] = True
        for b, p in enumerate(self.parents):
            if p >= 0:
                pts.append((J[p], J[b]))
                cols.append(self.bone_colors[b])
            if not has_kids[b]:
                pts.append((J[b], Tl[b]))
                cols.append(self.bone_colors[b])
        P = np.asarray(pts, dtype=np.float64).reshape(-1, 2, 3)
        C = np.repeat(np.asarray(cols, dtype=np.float64).reshape(-1, 1, 3), 2, axis=1)
        return P, C


def _carry(G: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(T, B, 3)``: ``points (B, 3)`` moved by each bone's ``G (T, B, 4, 4)`` then the root."""
    obj = np.einsum("tbij,bj->tbi", G[..., :3, :3], points) + G[..., :3, 3]
    return np.einsum("tij,tbj->tbi", R, obj) + t[:, None]


def _images(rf: FinalRun, video: Optional[str]) -> tuple[Optional[Callable[[int], np.ndarray]], str]:
    """A reader of the input frames, downscaled once (all of them are read at start)."""
    import cv2

    try:
        src = find_frames(rf, video)
        frames = []
        for img in src.read(list(range(rf.num_frames))):
            s = MAX_IMAGE_SIDE / max(img.shape[:2])
            if s < 1:
                img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(img))
    except InputError as e:
        return None, str(e)
    return (lambda t: frames[t]), src.description


def load_view_data(run: str | Path, video: Optional[str] = None, frames: bool = True) -> ViewData:
    """Read a run (its folder or ``final/``, :func:`lasr.io.final.read_final`) for the viewer;
    ``video``: the input frames (default: found through the run's ``.hydra``, as
    ``python -m lasr.videos`` does); ``frames=False`` skips them.

    Raises:
        InputError: the run is not a finished fit (the message says how to finish it).
    """
    rf = read_final(run)
    verts, faces = rf.meshes(list(range(rf.num_frames)))
    T, V = verts.shape[:2]
    colors = {"gray": np.broadcast_to(np.array(GRAY), (V, 3)).copy()}
    rest = rf.rest()
    if rest is not None and rest[2] is not None and rest[2].shape == (V, 3):
        colors["fitted"] = rest[2]
    data = ViewData(verts=verts, faces=faces, colors=colors, intrinsics=rf.intrinsics(), size=rf.source_size,
                    fps=rf.fps(), source=str(rf.final))
    skel = rf.skeleton()
    if skel is not None and np.shape(skel.get("skinning_weights"))[:1] == (V,) and "bone_transforms" in skel:
        W = np.asarray(skel["skinning_weights"], dtype=np.float64)
        X = np.asarray(skel["rest_vertices"], dtype=np.float64)
        G = np.asarray(skel["bone_transforms"], dtype=np.float64)[:T]
        R = np.asarray(skel["root_rotations"], dtype=np.float64)[:T]
        tr = np.asarray(skel["root_translations"], dtype=np.float64)[:T]
        parents, joints, _ = skeleton_rig(skel)
        tails = bone_tails(parents, joints, bone_centroids(W, X))
        eye = np.broadcast_to(np.eye(4), G.shape)
        colors["skinning"] = skin_colors(W)
        data.rest = np.einsum("tij,vj->tvi", R, X) + tr[:, None]
        data.parents, data.bone_colors = parents, bone_palette(W.shape[1])
        data.joints, data.tails = _carry(G, R, tr, joints), _carry(G, R, tr, tails)
        data.rest_joints, data.rest_tails = _carry(eye, R, tr, joints), _carry(eye, R, tr, tails)
    if frames:
        data.images, note = _images(rf, video)
        data.image_note = "" if data.images else note
    return data
