"""Synthetic inputs for preprocessing tests: textured images, moving squares, videos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def texture(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth multi-scale random texture, (h,w,channels) uint8 (good for flow)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, channels), np.float32)
    for sigma, amp in [(1.0, 0.35), (2.5, 0.35), (6.0, 0.3)]:
        noise = rng.standard_normal((h, w, channels)).astype(np.float32)
        img += amp * cv2.GaussianBlur(noise, (0, 0), sigma).reshape(h, w, channels) / max(
            1e-6, cv2.GaussianBlur(noise, (0, 0), sigma).std())
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def moving_square(n: int = 6, h: int = 64, w: int = 80, size: int = 24, step: int = 3, seed: int = 0):
    """A textured square moving right by ``step`` px a frame over a static texture.

    Returns frames (n,h,w,3) uint8 and masks (n,h,w) bool.
    """
    bg = texture(h, w, seed)
    fg = texture(size, size, seed + 1)
    frames, masks = [], []
    y0 = (h - size) // 2
    for i in range(n):
        x0 = 8 + i * step
        f = bg.copy()
        f[y0 : y0 + size, x0 : x0 + size] = fg
        m = np.zeros((h, w), bool)
        m[y0 : y0 + size, x0 : x0 + size] = True
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def write_folder(folder: Path, images, ext: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        elif img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{i:05d}{ext}"), img)
    return folder


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
