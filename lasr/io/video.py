"""Videos: mp4 (H.264 through PyAV, MPEG-4 part 2 where this FFmpeg has no libx264) and
looping GIFs (Pillow)."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

__all__ = ["Mp4Writer", "write_mp4", "write_gif", "even_size"]


def even_size(img: np.ndarray) -> np.ndarray:
    """Pad (edge) to even width and height (yuv420p needs them)."""
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


def _yuv420p(rgb8: np.ndarray) -> np.ndarray:
    """BT.601 limited-range planar YUV 4:2:0 ``(3H/2, W)`` uint8, computed here rather than
    by swscale so that the encoder's input, hence the file, is reproducible."""
    x = rgb8.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b
    H, W = y.shape
    sub = [c.reshape(H // 2, 2, W // 2, 2).mean((1, 3)).reshape(H // 4, W) for c in (u, v)]
    return np.clip(np.round(np.concatenate([y] + sub)), 0, 255).astype(np.uint8)


class Mp4Writer:
    """Streams RGB uint8 frames (even width and height) into an mp4.

    ``crf`` sets H.264's quality (lower is better); ``reproducible`` converts to YUV here
    and encodes on one thread, so the same frames give the same file. ``close()`` returns
    the path, or None (with a warning) when no encoder works."""

    def __init__(self, path: Path, fps: float, crf: int = 20, reproducible: bool = False):
        self.path, self.rate = Path(path), Fraction(fps).limit_denominator(1000)
        self.reproducible = reproducible
        x264 = {"crf": str(crf)}
        x264.update({"threads": "1"} if reproducible else {"preset": "medium"})
        self.codecs = (("libx264", x264), ("mpeg4", {"qscale": "3"}))
        self.container = self.stream = None
        self.failed = False

    def _frame(self, img: np.ndarray):
        import av

        if self.reproducible and img.shape[0] % 4 == 0:  # the planar layout needs H % 4 == 0
            return av.VideoFrame.from_ndarray(_yuv420p(img), format="yuv420p")
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")

    def _open(self, img: np.ndarray) -> None:
        import av

        err = None
        for codec, opts in self.codecs:
            c = None
            try:
                c = av.open(str(self.path), "w")
                st = c.add_stream(codec, rate=self.rate)
                st.width, st.height, st.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
                st.options = opts
                for pkt in st.encode(self._frame(img)):  # opens the encoder
                    c.mux(pkt)
                self.container, self.stream = c, st
                return
            except Exception as e:  # encoder missing in this FFmpeg build
                err = e
                if c is not None:
                    try:
                        c.close()
                    except Exception:
                        pass
                self.path.unlink(missing_ok=True)
        self.failed = True
        print(f"warning: could not write {self.path}: no usable encoder ({err})", file=sys.stderr)

    def add(self, img: np.ndarray) -> None:
        if self.failed:
            return
        if self.container is None:
            self._open(img)
            return
        for pkt in self.stream.encode(self._frame(img)):
            self.container.mux(pkt)

    def close(self) -> Optional[Path]:
        if self.container is None:
            return None
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        self.container = None
        return self.path


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float, **kw) -> Optional[Path]:
    """Write RGB uint8 frames (even width and height) as an mp4; see :class:`Mp4Writer`."""
    w = Mp4Writer(path, fps, **kw)
    for f in frames:
        w.add(f)
    return w.close()


def write_gif(path: Path, frames, fps: float) -> Path:
    """Looping GIF with Pillow (one adaptive palette per frame); ``frames`` are RGB arrays
    or PIL images."""
    from PIL import Image

    ims = [f if isinstance(f, Image.Image) else Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=max(int(round(1000.0 / fps)), 20), loop=0,
                optimize=False, disposal=1)
    return path
