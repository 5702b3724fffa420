"""Videos and stills of a finished fit: ``python -m lasr.render run=OUTPUT_DIR [...]``.

Command line (``key=value`` arguments, as ``python -m lasr.evaluate``)::

    python -m lasr.render run=OUTPUT_DIR [out=DIR] [outputs=overlay,views,turntable]
                          [video=FOLDER|VIDEO|CACHE] [fps=10] [size=0] [stride=1]
                          [formats=mp4,gif] [stills=3] [turntable_frames=36]
                          [color=skin|texture|gray] [follow=false] [labels=true]
                          [supersample=1] [alpha=0.6] [elevation=20] [device=auto]
                          [chunk=8] [quiet=false]

``run=`` is a fit's output folder (``hydra.run.dir`` of ``python -m lasr.optimize``) or
its ``final/``.  Written to ``out=`` (default ``<run>/renders/``):

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

``video=`` gives the input images for the overlay: a folder of
images, a video file, or a preprocessing cache folder (``<cache_dir>/<name>``).  By
default they are found through the run's ``.hydra/config.yaml``: the preprocessing
cache (``cache_dir``/``name``) if it holds the fitted frames, else the ``video`` the fit
was given.  ``size=`` is the height of every panel in pixels (0: the input frame height, at
most 512 for the overlay and 384 for the other panels); ``stride=`` renders every n-th fitted frame; ``follow=true`` centres the
views on every frame's own centroid instead of the clip's; ``color=`` colours the views
(``skin``: skinning colours, ``texture``: the fitted vertex colours, ``gray``);
``elevation=`` raises the turntable camera above the object (degrees); ``supersample=2`` renders at
twice the size and averages down (anti-aliasing, 4x the time); ``chunk=`` frames are
rendered per call (bounds memory).

Cameras: ``final/meshes`` are in the fitted camera's coordinates (OpenCV: x right,
y down, z forward) and ``final/cameras.json`` holds its intrinsics in pixels of the
source frames; they are rescaled to whatever image size is rendered.
"""

from __future__ import annotations

import colorsys
import json
import math
import sys
import time
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .errors import InputError

__all__ = [
    "RenderOptions",
    "RunFiles",
    "locate_run",
    "find_frames",
    "bone_palette",
    "skin_colors",
    "shade_mesh",
    "look_rotation",
    "Mp4Writer",
    "write_mp4",
    "write_gif",
    "render_run",
    "main",
]

USAGE = (
    "usage: python -m lasr.render run=OUTPUT_DIR [out=DIR] [outputs=overlay,views,turntable] "
    "[video=FOLDER|VIDEO|CACHE] [fps=10] [size=0] [stride=1] [formats=mp4,gif] [stills=3] "
    "[turntable_frames=36] [color=skin|texture|gray] [follow=false] [labels=true] [supersample=1] "
    "[alpha=0.6] [elevation=20] [device=auto] [chunk=8] [quiet=false]"
)

OUTPUTS = ("overlay", "views", "turntable")
FORMATS = ("mp4", "gif")
VIEWS = ("front", "side", "back", "top")

LIGHT = np.array([-0.35, -0.6, -1.0]) / np.linalg.norm([-0.35, -0.6, -1.0])  # towards the light, camera coords
AMBIENT, DIFFUSE = 0.35, 0.7
OVERLAY_TINT = (1.0, 0.55, 0.15)
GRAY = (0.72, 0.72, 0.72)
BACKGROUND = (236, 236, 236)  # views / turntable
MARGIN = 0.1  # fraction of the half panel left free around the framed points (labels sit there)
MAX_AUTO_SIZE = 512


# ----------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------
def _truthy(s) -> bool:
    if isinstance(s, bool):
        return s
    v = str(s).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise InputError(f"expected true or false, got {s!r}")


def _names(value, allowed: tuple[str, ...], key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [x.strip() for x in value.replace("+", ",").split(",") if x.strip()]
    else:
        items = list(value)
    if items in (["all"], ["*"]):
        return allowed
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise InputError(f"{key}={','.join(items)}: choose from {','.join(allowed)} (comma separated)")
    return tuple(dict.fromkeys(items))


@dataclass
class RenderOptions:
    """Everything :func:`render_run` takes besides the run folder (see the module docstring)."""

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
        self.formats = _names(self.formats, FORMATS, "formats") if self.formats not in ("", (), "none") else ()
        try:
            self.fps = float(self.fps)
            self.size, self.stride, self.stills = int(self.size), int(self.stride), int(self.stills)
            self.turntable_frames, self.supersample = int(self.turntable_frames), int(self.supersample)
            self.chunk, self.alpha, self.elevation = int(self.chunk), float(self.alpha), float(self.elevation)
        except (TypeError, ValueError) as e:
            raise InputError(f"bad option value ({e}); {USAGE}") from None
        self.follow, self.labels, self.quiet = _truthy(self.follow), _truthy(self.labels), _truthy(self.quiet)
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
    def from_args(cls, argv: list[str]) -> tuple[str, "RenderOptions"]:
        """``(run, options)`` from ``key=value`` arguments; raises :class:`InputError`."""
        kv: dict[str, str] = {}
        for a in argv:
            if "=" not in a:
                raise InputError(f"bad argument {a!r} (expected key=value)\n{USAGE}")
            k, v = a.split("=", 1)
            kv[k.lstrip("+-").replace("-", "_")] = v
        known = {f.name for f in fields(cls)} | {"run"}
        unknown = sorted(set(kv) - known)
        if unknown:
            raise InputError(f"unknown keys {unknown}\n{USAGE}")
        if not kv.get("run"):
            raise InputError(f"run= is required (a fit's output folder or its final/)\n{USAGE}")
        run = kv.pop("run")
        return run, cls(**kv)


# ----------------------------------------------------------------------------
# the run folder
# ----------------------------------------------------------------------------
@dataclass
class RunFiles:
    """A finished fit's ``final/`` folder (and the run folder around it)."""

    final: Path
    root: Path
    cameras: dict
    num_frames: int
    source_frames: np.ndarray = field(repr=False)

    def mesh(self, i: int) -> Path:
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
                f"Finish it with `python -m lasr.optimize ... resume=true hydra.run.dir={self.root}`, "
                f"or leave {needed_for} out with outputs=..."
            )
        return p


def locate_run(run: str | Path) -> RunFiles:
    """Check a run folder (or its ``final/``) and read its ``cameras.json``."""
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
    if not final.is_dir():
        raise InputError(f"{final} does not exist: {p} is not a finished fit (a fit writes final/ when it ends). "
                         f"Give run=<the fit's output folder>, or finish the fit with "
                         f"`python -m lasr.optimize ... resume=true hydra.run.dir={p}`")
    if not cams.is_file():
        raise InputError(f"{cams} is missing: the fit did not finish writing final/. Finish it with "
                         f"`python -m lasr.optimize ... resume=true hydra.run.dir={root}`")
    try:
        cameras = json.loads(cams.read_text())
        frames = cameras["frames"]
        n = len(frames)
        for c in frames:
            float(c["fx"]), float(c["fy"]), float(c["cx"]), float(c["cy"])
        int(cameras["width"]), int(cameras["height"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{cams} is not a cameras.json of lasr ({type(e).__name__}: {e}); "
                         f"expected {{'width', 'height', 'frames': [{{'fx', 'fy', 'cx', 'cy'}}, ...]}}") from None
    if n == 0:
        raise InputError(f"{cams} lists no frames")
    src = np.array([int(c.get("source_frame", c.get("frame", i))) for i, c in enumerate(frames)], dtype=np.int64)
    rf = RunFiles(final=final, root=root, cameras=cameras, num_frames=n, source_frames=src)
    missing = [i for i in range(n) if not rf.mesh(i).is_file()]
    if missing:
        raise InputError(f"{rf.mesh(missing[0])} is missing ({len(missing)} of the {n} meshes cameras.json lists): "
                         f"the fit did not finish writing final/. Finish it with "
                         f"`python -m lasr.optimize ... resume=true hydra.run.dir={root}`")
    return rf


def _load_meshes(rf: RunFiles, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from .geometry.mesh import load_obj

    verts, faces = [], None
    for i in ids:
        try:
            v, f = load_obj(rf.mesh(i), dtype=torch.float64)
        except (ValueError, IndexError) as e:
            raise InputError(f"{rf.mesh(i)} is not a readable OBJ ({e}); rerun the export") from None
        if faces is None:
            faces = f.numpy()
        elif v.shape[0] != verts[0].shape[0] or f.shape[0] != faces.shape[0]:
            raise InputError(f"{rf.mesh(i)} has a different topology from {rf.mesh(ids[0])}: "
                             f"final/meshes must share one mesh")
        verts.append(v.numpy())
    return np.stack(verts), faces


# ----------------------------------------------------------------------------
# input frames
# ----------------------------------------------------------------------------
@dataclass
class FrameSource:
    """Where the overlay's images come from; ``read(ids)`` yields RGB uint8 frames in order."""

    description: str
    size: tuple[int, int]  # (W, H)
    read: Callable[[list[int]], Iterator[np.ndarray]] = field(repr=False)


def _image_reader(files: list[Path]) -> Callable[[list[int]], Iterator[np.ndarray]]:
    def read(idx: list[int]) -> Iterator[np.ndarray]:
        import cv2

        for i in idx:
            img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise InputError(f"cannot read image {files[i]}")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    return read


def _folder_source(folder: Path, rf: RunFiles, what: str) -> FrameSource:
    import cv2

    from preprocess.frames import list_images

    files = list_images(folder)
    if not files:
        raise InputError(f"{what}: {folder} holds no images")
    n, src = rf.num_frames, rf.source_frames
    if len(files) > int(src.max()):
        mapping, how = [int(s) for s in src], "source frame numbers"
    elif len(files) == n:
        mapping, how = list(range(n)), "fitted frame numbers"
    else:
        raise InputError(f"{what}: {folder} holds {len(files)} images but the fit has {n} frames "
                         f"(source frames up to {int(src.max())}); give the folder of the frames the fit used")
    first = cv2.imread(str(files[mapping[0]]), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read image {files[mapping[0]]}")
    read_files = _image_reader([files[m] for m in mapping])
    return FrameSource(f"{folder} ({how})", (first.shape[1], first.shape[0]), read_files)


def _video_source(path: Path, rf: RunFiles) -> FrameSource:
    from preprocess.frames import _decode

    src = [int(s) for s in rf.source_frames]

    def read(idx: list[int]) -> Iterator[np.ndarray]:
        want = {src[i]: k for k, i in enumerate(idx)}
        got: dict[int, np.ndarray] = {}
        nxt = 0
        last = max(want) if want else -1
        for j, frame in enumerate(_decode(path)):
            if j in want:
                got[want[j]] = frame
                while nxt in got:
                    yield got.pop(nxt)
                    nxt += 1
            if j >= last:
                break
        if nxt < len(idx):
            raise InputError(f"{path} has fewer frames than the fit used (source frame {src[idx[nxt]]} is missing)")

    first = next(iter(read([0])))
    return FrameSource(f"{path} (source frame numbers)", (first.shape[1], first.shape[0]), read)


def _cache_source(root: Path, rf: RunFiles, strict: bool) -> FrameSource | None:
    """A preprocessing cache folder (``meta.json`` + ``frames/``) that holds the fitted frames."""
    try:
        meta = json.loads((root / "meta.json").read_text())
        cached = [int(f["source_frame"]) for f in meta["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        if strict:
            raise InputError(f"{root}/meta.json is missing or unreadable: not a preprocessing cache folder") from None
        return None
    files = [root / "frames" / f"{i:05d}.png" for i in range(len(cached))]
    ok = cached == [int(s) for s in rf.source_frames] and all(f.is_file() for f in files)
    if not ok:
        if strict:
            raise InputError(f"{root} does not hold the frames this fit used (its meta.json lists source frames "
                             f"{cached[:5]}..., the fit {list(rf.source_frames[:5])}...); pass the frames "
                             f"folder or video instead")
        return None
    import cv2

    first = cv2.imread(str(files[0]), cv2.IMREAD_COLOR)
    if first is None:
        return None
    return FrameSource(f"{root} (preprocessing cache)", (first.shape[1], first.shape[0]), _image_reader(files))


def _any_source(p: Path, rf: RunFiles, what: str) -> FrameSource:
    if p.is_dir():
        if (p / "meta.json").is_file() and (p / "frames").is_dir():
            return _cache_source(p, rf, strict=True)
        from preprocess.frames import list_images

        if not list_images(p) and (p / "frames").is_dir():
            return _folder_source(p / "frames", rf, what)
        return _folder_source(p, rf, what)
    if p.is_file():
        return _video_source(p, rf)
    raise InputError(f"{what}: no such file or folder")


def find_frames(rf: RunFiles, frames: str | None = None) -> FrameSource:
    """The overlay's input images: ``frames`` when given, else found through ``.hydra/``."""
    if frames:
        return _any_source(Path(frames).expanduser(), rf, f"video={frames}")
    hint = ("pass video=<the folder of input frames, the video, or the preprocessing cache folder "
            "<cache_dir>/<name>>, or leave the overlay out with outputs=views,turntable")
    cfg_path = rf.root / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path} is missing, so the input frames for the overlay cannot be found; {hint}")
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(cfg_path)
        video, name, cache_dir = cfg.get("video"), cfg.get("name"), cfg.get("cache_dir") or "cache"
    except Exception as e:  # a damaged yaml
        raise InputError(f"{cfg_path} is unreadable ({e}); {hint}") from None
    cwd = None
    try:
        cwd = OmegaConf.load(rf.root / ".hydra" / "hydra.yaml").hydra.runtime.cwd
    except Exception:
        pass
    bases = [Path(cwd)] if cwd else []
    bases += [Path.cwd()] + list(rf.root.resolve().parents)[:4]

    def candidates(x: str) -> list[Path]:
        q = Path(str(x)).expanduser()
        return [q] if q.is_absolute() else [b / q for b in bases]

    tried = []
    if video or name:
        from preprocess.frames import default_name

        vid = next((c for c in candidates(video) if c.exists()), None) if video else None
        seq = name or default_name(vid if vid is not None else video)
        for c in candidates(cache_dir):
            tried.append(str(c / seq))
            s = _cache_source(c / seq, rf, strict=False)
            if s is not None:
                return s
        if vid is not None:
            return _any_source(vid, rf, f"video={video} (from {cfg_path})")
        if video:
            tried.append(str(video))
    what = ", ".join(tried) if tried else f"nothing: {cfg_path} names no video"
    raise InputError(f"cannot find the input frames of this fit (tried {what}); {hint}")


def _scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` intrinsics of images of ``from_size (W, H)`` -> of the same images resized to
    ``to_size (W, H)`` (pixel centres at integer coordinates; :func:`lasr.export.source_intrinsics`)."""
    from .export import source_intrinsics

    K = torch.as_tensor(np.asarray(K, dtype=np.float64).reshape(-1, 4))
    return source_intrinsics(K, (from_size[1], from_size[0]), to_size).numpy()


# ----------------------------------------------------------------------------
# colours and shading
# ----------------------------------------------------------------------------
def bone_palette(num_bones: int) -> np.ndarray:
    """``(B, 3)`` distinct saturated colours in [0, 1] (golden-ratio hues, alternating value)."""
    cols = []
    for b in range(num_bones):
        h = (b * 0.618033988749895) % 1.0
        v = 0.95 if b % 2 == 0 else 0.75
        s = 0.75 if b % 3 else 0.9
        cols.append(colorsys.hsv_to_rgb(h, s, v))
    return np.array(cols, dtype=np.float64).reshape(-1, 3)


def skin_colors(weights: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """``(V, 3)`` vertex colours ``weights (V, B) @ palette (B, 3)``."""
    w = np.asarray(weights, dtype=np.float64)
    pal = bone_palette(w.shape[1]) if palette is None else palette
    return np.clip(w @ pal, 0.0, 1.0)


def _settings(size: tuple[int, int], z: np.ndarray):
    from .render import RasterSettings

    zpos = z[z > 0]
    zmax = float(zpos.max()) if zpos.size else 1.0
    zmin = float(zpos.min()) if zpos.size else 1.0
    near = max(0.5 * zmin, 1e-4 * zmax)
    return RasterSettings(image_size=size, sigma=0.1, faces_per_pixel=4, near=near, far=2.0 * zmax + 1e-6)


@torch.no_grad()
def shade_mesh(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, size: tuple[int, int],
               albedo: np.ndarray, device: torch.device | str = "cpu", chunk: int = 8,
               supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Lambert-shaded render of camera-space meshes with :func:`lasr.render.render`.

    Args:
        verts: ``(N, V, 3)`` camera coordinates (OpenCV); faces ``(F, 3)``.
        K: ``(N, 4)`` or ``(4,)`` intrinsics ``fx, fy, cx, cy`` in pixels of ``size``.
        size: ``(H, W)``.
        albedo: ``(V, 3)`` or ``(N, V, 3)`` colours in [0, 1].
        supersample: render at this factor and average down (anti-aliasing).

    Returns:
        ``rgb (N, H, W, 3)`` float32 in [0, 1] (meaningful where ``alpha > 0``) and
        ``alpha (N, H, W)`` float32: the silhouette (coverage) of the mesh.

    The vertex normals and albedo are blended per pixel (the renderer's depth-softmax
    attribute blend); the normal is turned towards the viewer (two-sided), and lit by a
    light above-left of the camera: ``ambient + diffuse * max(0, n . l)``.
    """
    import cv2

    from .geometry.mesh import vertex_normals
    from .render import render

    dev = torch.device(device)
    N = verts.shape[0]
    H, W = size
    s = int(supersample)
    Ks = np.broadcast_to(np.asarray(K, dtype=np.float64).reshape(-1, 4), (N, 4)).copy()
    if s > 1:
        Ks = _scale_intrinsics(Ks, (W, H), (W * s, H * s))
    settings = _settings((H * s, W * s), verts[..., 2])
    f_t = torch.as_tensor(np.asarray(faces), dtype=torch.long, device=dev)
    alb = np.asarray(albedo, dtype=np.float32)
    light = torch.tensor(LIGHT, dtype=torch.float32, device=dev)
    u = torch.arange(W * s, dtype=torch.float32, device=dev)
    v = torch.arange(H * s, dtype=torch.float32, device=dev)
    rgb_out = np.zeros((N, H, W, 3), np.float32)
    a_out = np.zeros((N, H, W), np.float32)
    for c0 in range(0, N, chunk):
        sl = slice(c0, min(N, c0 + chunk))
        vt = torch.as_tensor(verts[sl], dtype=torch.float32, device=dev)
        B = vt.shape[0]
        kt = torch.as_tensor(Ks[sl], dtype=torch.float32, device=dev)
        nrm = vertex_normals(vt, f_t)
        at = torch.as_tensor(alb[sl] if alb.ndim == 3 else alb, device=dev)
        at = at.expand(B, -1, -1) if at.dim() == 3 else at[None].expand(B, -1, -1)
        out = render(vt, f_t, kt, settings, silhouette=True, attributes=torch.cat([at, nrm], -1))
        A = out.attributes
        n = A[..., 3:6]
        ray = torch.stack(torch.broadcast_tensors(
            (u[None, None, :] - kt[:, 2, None, None]) / kt[:, 0, None, None],
            (v[None, :, None] - kt[:, 3, None, None]) / kt[:, 1, None, None],
            torch.ones(1, 1, 1, device=dev)), -1)
        n = torch.where(((n * ray).sum(-1, keepdim=True) > 0), -n, n)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        lam = AMBIENT + DIFFUSE * (n @ light).clamp_min(0.0)
        rgb = (A[..., :3] * lam[..., None]).clamp(0, 1).cpu().numpy()
        # coverage: 1 where a pixel centre is inside a face (the soft silhouette dips below 1 along
        # the mesh's inner edges), the soft silhouette (anti-aliasing) outside
        sil = torch.where(out.mask, torch.ones_like(out.silhouette), out.silhouette.clamp(0, 1)).cpu().numpy()
        if s > 1:  # average premultiplied colour and coverage
            for b in range(B):
                pm = cv2.resize(rgb[b] * sil[b][..., None], (W, H), interpolation=cv2.INTER_AREA)
                al = cv2.resize(sil[b], (W, H), interpolation=cv2.INTER_AREA)
                rgb_out[c0 + b] = pm / np.maximum(al, 1e-6)[..., None]
                a_out[c0 + b] = al
        else:
            rgb_out[sl], a_out[sl] = rgb, sil
    return rgb_out, a_out


def _composite(bg: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """``bg`` uint8 ``(H, W, 3)`` or colour tuple; returns uint8."""
    a = (alpha * opacity)[..., None]
    bgf = np.broadcast_to(np.asarray(bg, dtype=np.float32) / 255.0, rgb.shape)
    return (np.clip(bgf * (1 - a) + rgb * a, 0, 1) * 255 + 0.5).astype(np.uint8)


def _label(img: np.ndarray, text: str, color=(60, 60, 60), outline=None) -> np.ndarray:
    """Write ``text`` in the top-left corner of ``img`` (in place)."""
    import cv2

    scale = max(0.35, img.shape[0] / 640)
    org, thick = (int(6 + 2 * scale), int(14 * scale + 6)), max(1, int(round(scale * 1.5)))
    if outline is not None:
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, outline, thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    return img


def _even(img: np.ndarray) -> np.ndarray:
    """Pad (edge) to even width and height (yuv420p needs them)."""
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img


# ----------------------------------------------------------------------------
# virtual cameras
# ----------------------------------------------------------------------------
def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def look_rotation(target: np.ndarray) -> np.ndarray:
    """The smallest rotation ``R`` with ``R @ target / |target| = (0, 0, 1)``: the fitted
    camera turned to look straight at ``target`` (keeping its "up" as far as possible)."""
    a = np.asarray(target, dtype=np.float64)
    a = a / max(np.linalg.norm(a), 1e-12)
    b = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # behind the camera: half turn about y
        return _rot_y(math.pi)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _view_rotations() -> dict[str, np.ndarray]:
    """Rotations of the object about its centre (fitted-camera axes) that show each view.

    ``side``: a quarter turn about the camera's vertical axis (the camera orbits to the
    left of the fitted one); ``back``: a half turn; ``top``: a quarter turn about the
    camera's x axis bringing the object's top (camera ``-y``) towards the camera, so the
    side the fitted camera saw ends at the bottom of the panel.
    """
    return {"front": np.eye(3), "side": _rot_y(-math.pi / 2), "back": _rot_y(math.pi), "top": _rot_x(math.pi / 2)}


def _fit_focal(points: list[np.ndarray], size: tuple[int, int], margin: float = MARGIN) -> float:
    """Largest focal (principal point at the image centre) that keeps every camera-space
    point of ``points`` inside the ``(H, W)`` image, ``margin`` of the half size free."""
    H, W = size
    m = 1e-12
    mx = my = m
    for p in points:
        z = np.maximum(p[..., 2], 1e-9)
        mx = max(mx, float(np.abs(p[..., 0] / z).max()))
        my = max(my, float(np.abs(p[..., 1] / z).max()))
    return min((W / 2.0) * (1 - margin) / mx, (H / 2.0) * (1 - margin) / my)


def _bbox_centre(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, 3)
    return 0.5 * (flat.min(0) + flat.max(0))


# ----------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------
class Mp4Writer:
    """Streams RGB frames into an H.264 mp4 (libx264, yuv420p, even sizes) with PyAV;
    MPEG-4 part 2 when this FFmpeg build has no libx264.  ``close()`` returns the path,
    or ``None`` (with a warning) when no encoder works."""

    CODECS = (("libx264", {"crf": "20", "preset": "medium"}), ("mpeg4", {"qscale": "3"}))

    def __init__(self, path: Path, fps: float):
        self.path, self.rate = Path(path), Fraction(fps).limit_denominator(1000)
        self.container = self.stream = None
        self.failed = False

    def _frame(self, img: np.ndarray):
        import av

        return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")

    def add(self, img: np.ndarray) -> None:
        if self.failed:
            return
        if self.container is None:
            import av

            err = None
            for codec, opts in self.CODECS:
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
            return
        for pkt in self.stream.encode(self._frame(img)):
            self.container.mux(pkt)

    def close(self) -> Path | None:
        if self.container is None:
            return None
        for pkt in self.stream.encode():
            self.container.mux(pkt)
        self.container.close()
        self.container = None
        return self.path


def write_mp4(path: Path, frames, fps: float) -> Path | None:
    """Write RGB uint8 frames (even width and height) as an mp4; see :class:`Mp4Writer`."""
    w = Mp4Writer(path, fps)
    for f in frames:
        w.add(f)
    return w.close()


def write_gif(path: Path, frames, fps: float) -> Path:
    """Looping GIF with pillow (one adaptive palette per frame); ``frames`` are RGB
    arrays or PIL images."""
    from PIL import Image

    ims = [f if isinstance(f, Image.Image) else Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=max(int(round(1000.0 / fps)), 20), loop=0,
                optimize=False, disposal=1)
    return path


class _Output:
    """One output: streams its frames into the mp4, keeps them (palettised) for the gif,
    and writes the stills."""

    def __init__(self, name: str, out: Path, opts: RenderOptions, still_ids: list[int]):
        self.name, self.out, self.opts = name, out, opts
        self.mp4 = Mp4Writer(out / f"{name}.mp4", opts.fps) if "mp4" in opts.formats else None
        self.gif: list = []
        self.still_ids = set(still_ids)
        self.written: list[Path] = []

    def add(self, img: np.ndarray, number: int) -> None:
        img = _even(img)
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


def _still_ids(n: int, k: int) -> list[int]:
    if k <= 0 or n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


# ----------------------------------------------------------------------------
# the three outputs
# ----------------------------------------------------------------------------
def _panel_size(opts: RenderOptions, default_h: int) -> int:
    return opts.size if opts.size > 0 else min(default_h, MAX_AUTO_SIZE)


def _load_rest(rf: RunFiles, num_verts: int | None):
    """``rest verts, faces, vertex colours or None, skeleton dict or None``."""
    from .geometry.mesh import load_obj

    colors = skel = rest = rest_f = None
    if (rf.final / "rest.obj").is_file():
        rest, rest_f, colors = load_obj(rf.final / "rest.obj", dtype=torch.float64, return_colors=True)
        rest, rest_f = rest.numpy(), rest_f.numpy()
        colors = None if colors is None else np.clip(colors.numpy(), 0, 1)
    if (rf.final / "skeleton.npz").is_file():
        with np.load(rf.final / "skeleton.npz") as z:
            skel = {k: z[k] for k in z.files}
    if num_verts is not None:
        if colors is not None and colors.shape[0] != num_verts:
            colors = None
        if skel is not None and skel.get("skinning_weights", np.zeros((0, 0))).shape[0] != num_verts:
            skel = None
    return rest, rest_f, colors, skel


def _albedo(kind: str, num_verts: int, colors, skel, warn: Callable[[str], None]) -> np.ndarray:
    if kind == "skin" and skel is not None and "skinning_weights" in skel:
        return skin_colors(skel["skinning_weights"])
    if kind in ("skin", "texture") and colors is not None:
        if kind == "skin":
            warn("no skinning weights matching the meshes in skeleton.npz: colouring the views by rest.obj colours")
        return colors
    if kind != "gray":
        warn(f"color={kind}: nothing to colour by in final/ (skeleton.npz / rest.obj colours); using gray")
    return np.broadcast_to(np.array(GRAY), (num_verts, 3)).copy()


def _render_overlay(rf: RunFiles, ids: list[int], faces, verts_all, opts, dev, src: FrameSource, out: Path):
    import cv2

    Wf, Hf = src.size
    H = _panel_size(opts, Hf)
    W = max(2, int(round(Wf * H / Hf)))
    K = _scale_intrinsics(rf.intrinsics()[ids], rf.source_size, (W, H))
    o = _Output("overlay", out, opts, [ids[k] for k in _still_ids(len(ids), opts.stills)])
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
            over = _composite(frame, rgb[b], alpha[b], opts.alpha)
            left = frame.copy()
            if opts.labels:
                _label(left, f"frame {i}", (255, 255, 255), outline=(0, 0, 0))
            o.add(np.concatenate([left, over], 1), i)
    return o.close()


def _render_views(rf: RunFiles, ids, faces, verts_all, opts, dev, out: Path, albedo):
    S = _panel_size(opts, int(rf.source_size[1]))
    if opts.size <= 0:
        S = min(S, 384)
    rots = _view_rotations()
    per_frame_c = np.stack([_bbox_centre(v) for v in verts_all])  # (N, 3)
    c_clip = _bbox_centre(verts_all)
    centres = per_frame_c if opts.follow else np.broadcast_to(c_clip, per_frame_c.shape)
    rel = verts_all - centres[:, None, :]
    r = float(np.linalg.norm(rel, axis=-1).max())
    D = max(float(np.linalg.norm(c_clip)), 2.0 * r, 1e-6)
    R_look = look_rotation(c_clip if np.linalg.norm(c_clip) > 1e-9 else np.array([0.0, 0.0, 1.0]))
    mats = {name: R_look @ rots[name] for name in VIEWS}

    def view(name: str, sl: slice) -> np.ndarray:
        return rel[sl] @ mats[name].T + np.array([0.0, 0.0, D])

    # one focal for every view and frame (chunked: no copy of the whole clip per view)
    f = min(_fit_focal([view(n, slice(c, c + 64)) for c in range(0, len(ids), 64)], (S, S)) for n in VIEWS)
    K = np.array([f, f, (S - 1) / 2.0, (S - 1) / 2.0])
    o = _Output("views", out, opts, [ids[k] for k in _still_ids(len(ids), opts.stills)])
    for c0 in range(0, len(ids), opts.chunk):
        sub = ids[c0:c0 + opts.chunk]
        panels = []
        for name in VIEWS:
            rgb, alpha = shade_mesh(view(name, slice(c0, c0 + len(sub))), faces, K, (S, S), albedo, dev,
                                    opts.chunk, opts.supersample)
            panels.append([_composite(BACKGROUND, rgb[b], alpha[b]) for b in range(len(sub))])
        for b, i in enumerate(sub):
            row = []
            for name, p in zip(VIEWS, panels):
                img = p[b]
                if opts.labels:
                    _label(img, name if name != "front" else f"front  {i}")
                row.append(img)
            o.add(np.concatenate(row, 1), i)
    return o.close()


def _ellipsoids(centers, rotations, radii, level: int = 2):
    """One mesh of ellipsoids: ``verts (B*V0, 3)``, ``faces``, ``bone id per vertex``."""
    from .geometry.mesh import icosphere

    v0, f0 = icosphere(level, dtype=torch.float64)
    v0, f0 = v0.numpy(), f0.numpy()
    vs, fs, ids = [], [], []
    for b in range(len(centers)):
        vs.append((v0 * radii[b]) @ rotations[b].T + centers[b])
        fs.append(f0 + b * len(v0))
        ids.append(np.full(len(v0), b))
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(ids)


def _render_turntable(rf: RunFiles, opts, dev, out: Path, warn):
    import cv2

    rf.require("rest.obj", "the turntable")
    skel_path = rf.require("skeleton.npz", "the turntable")
    rest, faces, colors, skel = _load_rest(rf, None)
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
    c = _bbox_centre(X)
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
    el = _rot_x(math.radians(opts.elevation))
    mats = [el @ _rot_y(2 * math.pi * k / n) for k in range(n)]
    mesh_v = np.stack([X @ M.T for M in mats]) + np.array([0.0, 0.0, D])
    bone_v = np.stack([bv @ M.T for M in mats]) + np.array([0.0, 0.0, D])
    f = _fit_focal([mesh_v], (S, S))
    K = np.array([f, f, (S - 1) / 2.0, (S - 1) / 2.0])
    o = _Output("turntable", out, opts, _still_ids(n, opts.stills))
    for c0 in range(0, n, opts.chunk):
        ks = list(range(c0, min(n, c0 + opts.chunk)))
        rgb_s, a_s = shade_mesh(mesh_v[ks], faces, K, (S, S), skin, dev, opts.chunk, opts.supersample)
        rgb_b, a_b = shade_mesh(bone_v[ks], bf, K, (S, S), bone_col, dev, opts.chunk, opts.supersample)
        rgb_t = a_t = None
        if colors is not None:
            rgb_t, a_t = shade_mesh(mesh_v[ks], faces, K, (S, S), colors, dev, opts.chunk, opts.supersample)
        for b, k in enumerate(ks):
            panel = _composite(BACKGROUND, rgb_s[b], a_s[b])
            # bones in X-ray: a dark rim, then the shaded ellipsoids on top
            rim = cv2.dilate((a_b[b] > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
            panel = _composite(panel, np.zeros_like(rgb_b[b]), np.maximum(rim, a_b[b]), 0.8)
            panel = _composite(panel, rgb_b[b], a_b[b], 1.0)
            row = [panel]
            if opts.labels:
                _label(panel, f"skinning, {B} bones")
            if rgb_t is not None:
                tex = _composite(BACKGROUND, rgb_t[b], a_t[b])
                if opts.labels:
                    _label(tex, "fitted colours")
                row.append(tex)
            o.add(np.concatenate(row, 1), k)
    return o.close()


def render_run(run: str | Path, options: RenderOptions | None = None, **kw) -> dict[str, list[Path]]:
    """Render the requested outputs of a finished fit; returns ``{output: [files]}``.

    Raises :class:`InputError` for a missing or incomplete run folder or input frames.
    """
    from .device import resolve_device

    opts = options if options is not None else RenderOptions(**kw)
    rf = locate_run(run)
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
        rf.require("rest.obj", "the turntable")
        rf.require("skeleton.npz", "the turntable")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    verts = faces = None
    if "overlay" in opts.outputs or "views" in opts.outputs:
        verts, faces = _load_meshes(rf, ids)
    for name in opts.outputs:
        t0 = time.perf_counter()
        if name == "overlay":
            say(f"overlay: {len(ids)} frames over {src.description}")
            written[name] = _render_overlay(rf, ids, faces, verts, opts, dev, src, out)
        elif name == "views":
            _, _, colors, skel = _load_rest(rf, verts.shape[1])
            albedo = _albedo(opts.color, verts.shape[1], colors, skel, warn)
            say(f"views: {len(ids)} frames x {len(VIEWS)} views ({opts.color} colours)")
            written[name] = _render_views(rf, ids, faces, verts, opts, dev, out, albedo)
        else:
            say(f"turntable: {opts.turntable_frames} frames")
            written[name] = _render_turntable(rf, opts, dev, out, warn)
        say(f"  {time.perf_counter() - t0:.1f} s")
    say(f"wrote to {out}:")
    for name in opts.outputs:
        for p in written[name]:
            say(f"  {p}")
    return written


def main(argv: list[str] | None = None) -> int:
    from .errors import exit_on_user_error

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        print(__doc__)
        return 0
    with exit_on_user_error():
        run, opts = RenderOptions.from_args(argv)
        render_run(run, opts)
    return 0
