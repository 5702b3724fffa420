"""Videos and stills of a finished fit: ``python -m lasr.videos run=OUTPUT_DIR [...]``.

``run=`` is a fit's output folder (``hydra.run.dir`` of ``python -m lasr.optimize``) or
its ``final/``. Written to ``out=`` (default ``<run>/renders/``):

* ``overlay.mp4|gif`` -- the input frame and, beside it, the posed mesh rendered with
  the fitted camera (Lambert-shaded, ``alpha`` opaque) over that frame;
* ``views.mp4|gif`` -- the posed mesh from four virtual cameras orbiting the clip's
  centroid: ``front`` (from the fitted camera's position), ``side`` (orbited 90 degrees
  to its left), ``back`` and ``top`` (from above, the fitted camera at the bottom of the
  panel); one panel per view, one scale for all four, one video frame per fitted frame;
* ``turntable.mp4|gif`` -- the rest shape turning once about the vertical axis (the
  first frame's camera "up"), coloured by skinning weights (vertex colour =
  weights @ a bone palette) with the bones drawn on top as ellipsoids in their colours
  (X-ray); beside it the fitted vertex colours of ``rest.obj`` when it has them;
* a few PNG stills of each (``overlay_00000.png``, ...).

The input images of the overlay come from ``video=`` or are found through the run's
``.hydra/config.yaml`` (:func:`lasr.io.frames.find_frames`). ``python -m lasr.videos
--help`` lists every key (:class:`lasr.config.VideosConfig`).

Cameras: ``final/meshes`` are in the fitted camera's coordinates (OpenCV: x right,
y down, z forward) and ``final/cameras.json`` holds its intrinsics in pixels of the
source frames; they are rescaled to whatever image size is rendered.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import InputError

__all__ = ["VideoOptions", "render_run", "OUTPUTS", "FORMATS"]

OUTPUTS = ("overlay", "views", "turntable")
FORMATS = ("mp4", "gif")


def _names(value, allowed: tuple[str, ...], key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [x.strip() for x in value.replace(",", "+").split("+") if x.strip()]
    else:
        items = list(value)
    if items in (["all"], ["*"]):
        return allowed
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise InputError(f"{key}={'+'.join(items)}: choose from {', '.join(allowed)} (joined by +, or all)")
    return tuple(dict.fromkeys(items))


@dataclass
class VideoOptions:
    """Everything :func:`render_run` takes besides the run folder, checked (see
    :class:`lasr.config.VideosConfig` for each key's meaning)."""

    out: str | None = None
    outputs: tuple[str, ...] = OUTPUTS
    video: str | None = None
    fps: float = 10.0
    size: int = 0
    stride: int = 1
    formats: tuple[str, ...] = FORMATS
    stills: int = 3
    turntable_frames: int = 36
    color: str = "skin"
    follow: bool = False
    labels: bool = True
    supersample: int = 1
    alpha: float = 0.6
    elevation: float = 20.0
    device: str = "auto"
    chunk: int = 8
    quiet: bool = False

    def __post_init__(self) -> None:
        self.outputs = _names(self.outputs, OUTPUTS, "outputs")
        self.formats = () if self.formats in ("", (), "none") else _names(self.formats, FORMATS, "formats")
        self.color, self.device = getattr(self.color, "value", self.color), getattr(self.device, "value", self.device)
        if self.color not in ("skin", "texture", "gray"):
            raise InputError(f"color={self.color}: use skin, texture or gray")
        for k, lo in (("fps", 1e-3), ("stride", 1), ("turntable_frames", 1), ("supersample", 1), ("chunk", 1)):
            if getattr(self, k) < lo:
                raise InputError(f"{k}={getattr(self, k)}: must be >= {lo}")
        if self.size < 0 or self.stills < 0:
            raise InputError("size= and stills= must be >= 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha={self.alpha}: must be in [0, 1]")

    @classmethod
    def from_config(cls, cfg) -> "VideoOptions":
        """From a :class:`lasr.config.VideosConfig` (or its DictConfig)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def render_run(run: str | Path, options: VideoOptions | None = None, **kw) -> dict[str, list[Path]]:
    """Render the requested outputs of a finished fit; returns ``{output: [files]}``.

    Raises :class:`InputError` for a missing or incomplete run folder or input frames.
    """
    from ..device import resolve_device
    from ..io.final import read_final
    from ..io.frames import find_frames
    from .outputs import VIEWS, albedo_for, load_rest, render_overlay, render_turntable, render_views

    opts = options if options is not None else VideoOptions(**kw)
    rf = read_final(run)
    out = Path(opts.out).expanduser() if opts.out else rf.root / "renders"
    dev = resolve_device(opts.device)

    def say(msg: str) -> None:
        if not opts.quiet:
            print(msg, flush=True)

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr, flush=True)

    ids = list(range(0, rf.num_frames, opts.stride))
    src = find_frames(rf, opts.video) if "overlay" in opts.outputs else None  # fail early
    if "turntable" in opts.outputs:
        for name in ("rest.obj", "skeleton.npz"):
            try:
                rf.require(name, "the turntable")
            except InputError as e:
                raise InputError(f"{e}, or leave the turntable out with outputs=overlay+views") from None
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    verts = faces = None
    if "overlay" in opts.outputs or "views" in opts.outputs:
        verts, faces = rf.meshes(ids)
    for name in opts.outputs:
        t0 = time.perf_counter()
        if name == "overlay":
            say(f"overlay: {len(ids)} frames over {src.description}")
            written[name] = render_overlay(rf, ids, faces, verts, opts, dev, src, out)
        elif name == "views":
            _, _, colors, skel = load_rest(rf, verts.shape[1])
            albedo = albedo_for(opts.color, verts.shape[1], colors, skel, warn)
            say(f"views: {len(ids)} frames x {len(VIEWS)} views ({opts.color} colours)")
            written[name] = render_views(rf, ids, faces, verts, opts, dev, out, albedo)
        else:
            say(f"turntable: {opts.turntable_frames} frames")
            written[name] = render_turntable(rf, opts, dev, out, warn)
        say(f"  {time.perf_counter() - t0:.1f} s")
    say(f"wrote to {out}:")
    for name in opts.outputs:
        for p in written[name]:
            say(f"  {p}")
    return written
