"""The three videos of a finished fit: overlay, views and turntable (see :mod:`lasr.videos`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..io.final import FinalRun
from ..io.frames import FrameSource
from ..io.video import Mp4Writer, even_size, write_gif
from .shading import (bbox_centre, bone_palette, composite, fit_focal, label, look_rotation, rot_x, rot_y,
                      scale_intrinsics, shade_mesh, skin_colors, view_rotations)

__all__ = ["VIEWS", "load_rest", "render_overlay", "render_views", "render_turntable", "albedo_for", "still_ids"]

VIEWS = ("front", "side", "back", "top")
OVERLAY_TINT = (1.0, 0.55, 0.15)
GRAY = (0.72, 0.72, 0.72)
BACKGROUND = (236, 236, 236)  # views / turntable
MAX_AUTO_SIZE = 512


class _Output:
    """One output: streams its frames into the mp4, keeps them (palettised) for the gif,
    and writes the stills."""

    def __init__(self, name: str, out: Path, opts, still_ids: list[int]):
        self.name, self.out, self.opts = name, out, opts
        self.mp4 = Mp4Writer(out / f"{name}.mp4", opts.fps) if "mp4" in opts.formats else None
        self.gif: list = []
        self.still_ids = set(still_ids)
        self.written: list[Path] = []

    def add(self, img: np.ndarray, number: int) -> None:
        img = even_size(img)
        if self.mp4 is not None:
            self.mp4.add(img)
        if "gif" in self.opts.formats:
            from PIL import Image

            # what pillow's GIF writer does to an RGB frame, done now: 1 byte per pixel in memory
            self.gif.append(Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE))
        if number in self.still_ids:
            import cv2

            p = self.out / f"{self.name}_{number:05d}.png"
            cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            self.written.append(p)

    def close(self) -> list[Path]:
        if self.mp4 is not None:
            p = self.mp4.close()
            if p is not None:
                self.written.append(p)
        if self.gif:
            self.written.append(write_gif(self.out / f"{self.name}.gif", self.gif, self.opts.fps))
        self.gif = []
        return sorted(self.written)


def still_ids(n: int, k: int) -> list[int]:
    if k <= 0 or n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


# ----------------------------------------------------------------------------
# the three outputs
# ----------------------------------------------------------------------------
def _panel_size(opts, default_h: int) -> int:
    return opts.size if opts.size > 0 else min(default_h, MAX_AUTO_SIZE)


def load_rest(rf: FinalRun, num_verts: int | None):
    """``rest verts, faces, vertex colours or None, skeleton dict or None``; colours and
    skeleton only when they match ``num_verts``."""
    rest = rf.rest()
    rest, rest_f, colors = rest if rest is not None else (None, None, None)
    skel = rf.skeleton()
    if num_verts is not None:
        if colors is not None and colors.shape[0] != num_verts:
            colors = None
        if skel is not None and skel.get("skinning_weights", np.zeros((0, 0))).shape[0] != num_verts:
            skel = None
    return rest, rest_f, colors, skel


def albedo_for(kind: str, num_verts: int, colors, skel, warn: Callable[[str], None]) -> np.ndarray:
    if kind == "skin" and skel is not None and "skinning_weights" in skel:
        return skin_colors(skel["skinning_weights"])
    if kind in ("skin", "texture") and colors is not None:
        if kind == "skin":
            warn("no skinning weights matching the meshes in skeleton.npz: colouring the views by rest.obj colours")
        return colors
    if kind != "gray":
        warn(f"color={kind}: nothing to colour by in final/ (skeleton.npz / rest.obj colours); using gray")
    return np.broadcast_to(np.array(GRAY), (num_verts, 3)).copy()


def render_overlay(rf: FinalRun, ids: list[int], faces, verts_all, opts, dev, src: FrameSource, out: Path):
    import cv2

    Wf, Hf = src.size
    H = _panel_size(opts, Hf)
    W = max(2, int(round(Wf * H / Hf)))
    K = scale_intrinsics(rf.intrinsics()[ids], rf.source_size, (W, H))
    o = _Output("overlay", out, opts, [ids[k] for k in still_ids(len(ids), opts.stills)])
    albedo = np.broadcast_to(np.array(OVERLAY_TINT), (verts_all.shape[1], 3)).copy()
    images = src.read(ids)
    for c0 in range(0, len(ids), opts.chunk):
        sub = ids[c0:c0 + opts.chunk]
        rgb, alpha = shade_mesh(verts_all[c0:c0 + len(sub)], faces, K[c0:c0 + len(sub)], (H, W), albedo, dev,
                                opts.chunk, opts.supersample)
        for b, i in enumerate(sub):
            frame = next(images)
            if frame.shape[:2] != (H, W):
                frame = cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA)
            over = composite(frame, rgb[b], alpha[b], opts.alpha)
            left = frame.copy()
            if opts.labels:
                label(left, f"frame {i}", (255, 255, 255), outline=(0, 0, 0))
            o.add(np.concatenate([left, over], 1), i)
    return o.close()


def render_views(rf: FinalRun, ids, faces, verts_all, opts, dev, out: Path, albedo):
    S = _panel_size(opts, int(rf.source_size[1]))
    if opts.size <= 0:
        S = min(S, 384)
    rots = view_rotations()
    per_frame_c = np.stack([bbox_centre(v) for v in verts_all])  # (N, 3)
    c_clip = bbox_centre(verts_all)
    centres = per_frame_c if opts.follow else np.broadcast_to(c_clip, per_frame_c.shape)
    rel = verts_all - centres[:, None, :]
    r = float(np.linalg.norm(rel, axis=-1).max())
    D = max(float(np.linalg.norm(c_clip)), 2.0 * r, 1e-6)
    R_look = look_rotation(c_clip if np.linalg.norm(c_clip) > 1e-9 else np.array([0.0, 0.0, 1.0]))
    mats = {name: R_look @ rots[name] for name in VIEWS}

    def view(name: str, sl: slice) -> np.ndarray:
        return rel[sl] @ mats[name].T + np.array([0.0, 0.0, D])

    # one focal for every view and frame (chunked: no copy of the whole clip per view)
    f = min(fit_focal([view(n, slice(c, c + 64)) for c in range(0, len(ids), 64)], (S, S)) for n in VIEWS)
    K = np.array([f, f, (S - 1) / 2.0, (S - 1) / 2.0])
    o = _Output("views", out, opts, [ids[k] for k in still_ids(len(ids), opts.stills)])
    for c0 in range(0, len(ids), opts.chunk):
        sub = ids[c0:c0 + opts.chunk]
        panels = []
        for name in VIEWS:
            rgb, alpha = shade_mesh(view(name, slice(c0, c0 + len(sub))), faces, K, (S, S), albedo, dev,
                                    opts.chunk, opts.supersample)
            panels.append([composite(BACKGROUND, rgb[b], alpha[b]) for b in range(len(sub))])
        for b, i in enumerate(sub):
            row = []
            for name, p in zip(VIEWS, panels):
                img = p[b]
                if opts.labels:
                    label(img, name if name != "front" else f"front  {i}")
                row.append(img)
            o.add(np.concatenate(row, 1), i)
    return o.close()


def _ellipsoids(centers, rotations, radii, level: int = 2):
    """One mesh of ellipsoids: ``verts (B*V0, 3)``, ``faces``, ``bone id per vertex``."""
    import torch

    from ..geometry.mesh import icosphere

    v0, f0 = icosphere(level, dtype=torch.float64)
    v0, f0 = v0.numpy(), f0.numpy()
    vs, fs, ids = [], [], []
    for b in range(len(centers)):
        vs.append((v0 * radii[b]) @ rotations[b].T + centers[b])
        fs.append(f0 + b * len(v0))
        ids.append(np.full(len(v0), b))
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(ids)


def render_turntable(rf: FinalRun, opts, dev, out: Path, warn):
    import cv2

    rf.require("rest.obj", "the turntable")
    skel_path = rf.require("skeleton.npz", "the turntable")
    rest, faces, colors, skel = load_rest(rf, None)
    if skel is None or "skinning_weights" not in skel or skel["skinning_weights"].shape[0] != rest.shape[0]:
        raise InputError(f"{skel_path} has no skinning_weights for the {rest.shape[0]} vertices of rest.obj: "
                         f"rerun the export (`python -m lasr.optimize ... resume=true hydra.run.dir={rf.root}`)")
    w = skel["skinning_weights"].astype(np.float64)
    B = w.shape[1]
    pal = bone_palette(B)
    skin = skin_colors(w, pal)
    # orient the rest shape as the first frame's camera sees it
    R0 = skel["root_rotations"][0].astype(np.float64) if "root_rotations" in skel else np.eye(3)
    X = rest @ R0.T
    c = bbox_centre(X)
    X = X - c
    r = float(np.linalg.norm(X, axis=1).max()) or 1.0
    centers = skel["bone_centers"].astype(np.float64) @ R0.T - c if "bone_centers" in skel else np.zeros((B, 3))
    if "bone_orientations" in skel:
        brot = np.einsum("ij,bjk->bik", R0, skel["bone_orientations"].astype(np.float64))
    else:
        brot = np.broadcast_to(np.eye(3), (B, 3, 3))
    if "bone_log_precisions" in skel:  # 1-sigma of the skinning Gaussian: exp(l) = 1 / (2 T sigma^2), T = 10
        sig = 1.0 / np.sqrt(2 * 10.0 * np.exp(skel["bone_log_precisions"].astype(np.float64)))
        sig = sig * (0.05 * r / max(float(np.median(sig)), 1e-12))
        radii = np.clip(sig, 0.025 * r, 0.12 * r)
    else:
        radii = np.full((B, 3), 0.05 * r)
    bv, bf, bid = _ellipsoids(centers, brot, radii)
    bone_col = np.clip(pal[bid] * 0.85 + 0.15, 0, 1)

    S = _panel_size(opts, int(rf.source_size[1]))
    if opts.size <= 0:
        S = min(S, 384)
    n = opts.turntable_frames
    D = 3.0 * r
    el = rot_x(math.radians(opts.elevation))
    mats = [el @ rot_y(2 * math.pi * k / n) for k in range(n)]
    mesh_v = np.stack([X @ M.T for M in mats]) + np.array([0.0, 0.0, D])
    bone_v = np.stack([bv @ M.T for M in mats]) + np.array([0.0, 0.0, D])
    f = fit_focal([mesh_v], (S, S))
    K = np.array([f, f, (S - 1) / 2.0, (S - 1) / 2.0])
    o = _Output("turntable", out, opts, still_ids(n, opts.stills))
    for c0 in range(0, n, opts.chunk):
        ks = list(range(c0, min(n, c0 + opts.chunk)))
        rgb_s, a_s = shade_mesh(mesh_v[ks], faces, K, (S, S), skin, dev, opts.chunk, opts.supersample)
        rgb_b, a_b = shade_mesh(bone_v[ks], bf, K, (S, S), bone_col, dev, opts.chunk, opts.supersample)
        rgb_t = a_t = None
        if colors is not None:
            rgb_t, a_t = shade_mesh(mesh_v[ks], faces, K, (S, S), colors, dev, opts.chunk, opts.supersample)
        for b, k in enumerate(ks):
            panel = composite(BACKGROUND, rgb_s[b], a_s[b])
            # bones in X-ray: a dark rim, then the shaded ellipsoids on top
            rim = cv2.dilate((a_b[b] > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
            panel = composite(panel, np.zeros_like(rgb_b[b]), np.maximum(rim, a_b[b]), 0.8)
            panel = composite(panel, rgb_b[b], a_b[b], 1.0)
            row = [panel]
            if opts.labels:
                label(panel, f"skinning, {B} bones")
            if rgb_t is not None:
                tex = composite(BACKGROUND, rgb_t[b], a_t[b])
                if opts.labels:
                    label(tex, "fitted colours")
                row.append(tex)
            o.add(np.concatenate(row, 1), k)
    return o.close()
