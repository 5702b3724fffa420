"""The creature's clip: rendered frames, masks, true meshes and cameras (the built-in example).

:func:`make_creature_clip` poses the creature of :mod:`lasr.examples.creature` through one
walk cycle, renders it with :mod:`lasr.render` from a camera orbiting it and writes the
clip folder (layout in :mod:`lasr.examples.creature`). The surface carries a procedural
solid texture under a Lambert light; the background is a noise texture at infinity.

    python -m lasr.examples.clip [out=DIR] [frames=32] [size=160] [orbit_deg=90]
                                 [elevation_deg=15] [seed=0] [force=true]
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch

from ..geometry.mesh import remove_unreferenced_vertices, vertex_normals
from ..io.obj import read_obj, write_obj
from ..io.video import write_mp4
from .creature import BONES, PARENTS, build_creature, hidden_faces, pose_creature, skin, smoothstep

__all__ = ["FPS", "GENERATOR_VERSION", "default_example_dir", "make_creature_clip", "read_truth", "truth_at",
           "true_flow", "main"]

#: bump when the generated content changes, so that cached clips are regenerated
GENERATOR_VERSION = 3

ASSET = "lasr creature"
FPS = 12.0
FOV_DEG = 50.0  # across the image side
FILL = 0.9  # every vertex of every frame stays inside this fraction of the half image
SS = 2  # supersampling factor (per axis)
LIGHT_DIR = np.array([0.45, 0.8, 0.4])  # world direction towards the light
AMBIENT, DIFFUSE = 0.38, 0.72

_CLIP_ENTRIES = {"frames", "masks", "gt", "video.mp4", "preview.png"}


class _Noise:
    """Seeded 3D value noise (a 32^3 lattice of random values, wrapped, smoothstep-trilinear)
    and its fBm; values in [0, 1]."""

    _ROT = np.array([[0.00, 0.80, 0.60], [-0.80, 0.36, -0.48], [-0.60, -0.48, 0.64]])  # decorrelates octaves
    _N = 32

    def __init__(self, rng: np.random.Generator) -> None:
        self.table = rng.random(self._N**3).astype(np.float32)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        n = self._N
        p = np.asarray(p, dtype=np.float32)
        fl = np.floor(p)
        f = p - fl
        i0 = fl.astype(np.int32) & (n - 1)
        i1 = (i0 + 1) & (n - 1)
        w = f * f * (3.0 - 2.0 * f)
        x0, x1 = i0[..., 0] * (n * n), i1[..., 0] * (n * n)
        y0, y1 = i0[..., 1] * n, i1[..., 1] * n
        z0, z1 = i0[..., 2], i1[..., 2]
        T, wx, wy, wz = self.table, w[..., 0], w[..., 1], w[..., 2]

        def lx(y, z):
            a = T[x0 + y + z]
            return a + wx * (T[x1 + y + z] - a)

        def ly(z):
            a = lx(y0, z)
            return a + wy * (lx(y1, z) - a)

        a = ly(z0)
        return a + wz * (ly(z1) - a)

    def fbm(self, p: np.ndarray, octaves: int, gain: float = 0.5) -> np.ndarray:
        tot, amp, norm = 0.0, 1.0, 0.0
        p = np.asarray(p, dtype=np.float32)
        for _ in range(octaves):
            tot = tot + amp * self(p)
            norm += amp
            amp *= gain
            p = 2.03 * (p @ self._ROT.T.astype(np.float32)) + np.float32(17.3)
        return tot / norm


def _creature_albedo(noise: _Noise, rest: np.ndarray, stripe: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """RGB albedo at rest-pose surface points ``rest (N, 3)``.

    Warm coat with noise-warped dark stripes (period ~0.1), blotches and
    fine speckle (features down to ~0.02 model units, 2-3 px in the default clip),
    a lighter belly, times the per-vertex ``tint``.
    """
    warp = noise.fbm(rest * 3.0 + 5.0, 3) - 0.5
    band = np.sin(2.0 * np.pi * (stripe / 0.1 + 1.6 * warp))
    dark = smoothstep(0.35, 0.6, band)
    blot = smoothstep(0.58, 0.66, noise.fbm(rest * 9.0 + 31.0, 3))
    speck = noise.fbm(rest * 40.0 + 71.0, 2)
    base = np.array([0.90, 0.55, 0.22])
    belly = np.array([0.96, 0.86, 0.66])
    t_belly = smoothstep(0.56, 0.47, rest[:, 1:2]) * smoothstep(0.80, 0.5, np.abs(rest[:, 2:3]))
    col = base * (1.0 - t_belly) + belly * t_belly
    col = col * (0.8 + 0.35 * noise.fbm(rest * 4.0 + 11.0, 2))[:, None]
    stripe_col = np.array([0.20, 0.11, 0.06])
    k = np.maximum(dark, 0.85 * blot)[:, None]
    col = col * (1.0 - k) + stripe_col * k
    col = col * (0.72 + 0.5 * speck)[:, None]
    return np.clip(col * tint, 0.0, 1.0)


def _background(noise: _Noise, dirs: np.ndarray) -> np.ndarray:
    """Cool-palette fBm texture at infinity for unit world ray directions ``(..., 3)``."""
    a = noise.fbm(dirs * 4.5 + 3.0, 5, gain=0.6)
    b = smoothstep(0.3, 0.7, noise.fbm(dirs * 2.5 + 41.0, 3))[..., None]
    green, violet, light = np.array([0.22, 0.50, 0.42]), np.array([0.36, 0.34, 0.68]), np.array([0.72, 0.86, 0.88])
    hue = green * (1.0 - b) + violet * b
    t = smoothstep(0.35, 0.75, a)[..., None]
    return np.clip(0.55 * hue * (1.0 - t) + light * t * 0.9 + 0.08 * (a[..., None] - 0.5), 0.0, 1.0)


# ----------------------------------------------------------------------------
# camera
# ----------------------------------------------------------------------------
def _look_rotation(azim_deg: float, elev_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation of a camera at (azimuth about +Y, elevation) looking at
    the origin (azimuth 0: on the +Z side, the creature's front; 90: its left side),
    and the unit direction from the target to the camera."""
    az, el = math.radians(azim_deg), math.radians(elev_deg)
    d = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    f = -d
    x = np.cross(np.array([0.0, -1.0, 0.0]), f)
    x /= np.linalg.norm(x)
    y = np.cross(f, x)
    return np.stack([x, y, f]), d


# ----------------------------------------------------------------------------
# clip generation
# ----------------------------------------------------------------------------
def default_example_dir() -> Path:
    """``$LASR_EXAMPLES/creature`` (default ``~/.cache/lasr/examples/creature``)."""
    return Path(os.environ.get("LASR_EXAMPLES", "~/.cache/lasr/examples")).expanduser() / "creature"


def read_truth(clip) -> tuple[np.ndarray, np.ndarray, dict]:
    """A clip's truth as :func:`make_creature_clip` writes it: ``(T, V, 3)`` posed meshes in
    camera coordinates, their ``(F, 3)`` faces (one topology) and ``gt/cameras.json``."""
    gt = Path(clip) / "gt"
    cams = json.loads((gt / "cameras.json").read_text())
    meshes = [read_obj(gt / "meshes" / f"{i:05d}.obj") for i in range(len(cams["frames"]))]
    return np.stack([v for v, _ in meshes]), meshes[0][1], cams


def truth_at(clip, frames, size) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """The truth of a clip (:func:`read_truth`) at its ``frames`` seen at ``size (W, H)``:
    ``(N, V, 3)`` posed meshes in camera coordinates, their faces and ``(N, 4)`` cameras
    ``fx, fy, cx, cy`` scaled to ``size`` (pixel centres at integer coordinates)."""
    from ..io.final import source_intrinsics

    verts, faces, cams = read_truth(clip)
    frames = [int(f) for f in frames]
    if max(frames) >= len(verts):
        raise ValueError(f"{clip} has {len(verts)} true meshes; frame {max(frames)} was asked for")
    K = np.array([[c["fx"], c["fy"], c["cx"], c["cy"]] for c in cams["frames"]], dtype=np.float64)[frames]
    first = cams["frames"][0]
    K = source_intrinsics(K, (int(cams.get("height", first["height"])), int(cams.get("width", first["width"]))),
                          tuple(size))
    return torch.tensor(verts[frames], dtype=torch.float32), faces, torch.tensor(K, dtype=torch.float32)


def true_flow(verts: torch.Tensor, faces, K: torch.Tensor, size, pairs=None):
    """The true optical flow of posed meshes ``verts (T, V, 3)`` seen by cameras ``K (T, 4)``
    at ``size (W, H)``, for each ``(a, b)`` of ``pairs`` (default: every frame and the
    next): ``fw (P, H, W, 2)`` from frame a to b on frame a's pixels, ``bw`` from b to a on
    frame b's, and the meshes' silhouettes ``mask_fw``, ``mask_bw (P, H, W)`` on those
    frames (the flow is 0 off them). Numpy arrays."""
    from lasr.render import RasterSettings, render

    W, H = size
    settings = RasterSettings(image_size=(H, W), sigma=1e-4, faces_per_pixel=4)
    F = torch.as_tensor(faces)
    pairs = [(t, t + 1) for t in range(verts.shape[0] - 1)] if pairs is None else pairs
    out = {"fw": [], "bw": [], "mask_fw": [], "mask_bw": []}
    with torch.no_grad():
        for a, b in pairs:  # a pair at a time: a clip's worth at once is gigabytes
            for d, (x, y) in (("fw", (a, b)), ("bw", (b, a))):
                x, y = slice(x, x + 1), slice(y, y + 1)
                o = render(verts[x], F, K[x], settings, silhouette=False, verts_next=verts[y], cameras_next=K[y])
                out[d].append(o.flow[0].numpy())
                out["mask_" + d].append(o.mask[0].numpy() > 0.5)
    return tuple(np.stack(out[k]) for k in ("fw", "bw", "mask_fw", "mask_bw"))


def _params(frames, size, orbit_deg, elevation_deg, seed) -> dict:
    return {"frames": int(frames), "size": int(size), "orbit_deg": float(orbit_deg),
            "elevation_deg": float(elevation_deg), "seed": int(seed), "version": GENERATOR_VERSION}


def _is_complete(d: Path, params: dict) -> bool:
    try:
        with open(d / "gt" / "info.json") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return False
    if info.get("params") != params:
        return False
    n = params["frames"]
    return all(len(list((d / sub).glob(pat))) == n
               for sub, pat in (("frames", "*.png"), ("masks", "*.png"), ("gt/meshes", "*.obj")))


def _looks_like_clip(d: Path) -> bool:
    """Whether ``d`` may be replaced: missing, empty, or only holding clip entries."""
    if not d.exists():
        return True
    if not d.is_dir():
        return False
    return {p.name for p in d.iterdir()} <= _CLIP_ENTRIES


def make_creature_clip(out_dir=None, frames: int = 32, size: int = 160, orbit_deg: float = 90.0,
                       elevation_deg: float = 15.0, seed: int = 0, force: bool = False) -> Path:
    """Write (or reuse) the synthetic creature clip in ``out_dir`` and return its path.

    Args:
        out_dir: the clip folder (default :func:`default_example_dir`).
        frames: number of frames; they span exactly one walk cycle (the clip loops).
        size: image width = height in pixels.
        orbit_deg: azimuth swept by the camera from the first to the last frame,
            centred on the creature's left side (a pure side view mid-clip).
        elevation_deg: camera elevation above the horizontal (looking down).
        seed: texture and background seed (the geometry and motion do not depend on it).
        force: regenerate even if a complete clip with these parameters exists.

    The same arguments give byte-identical files.  The clip is written to a
    temporary sibling folder and renamed into place, so an interrupted run
    never leaves a folder that reads as complete; a complete clip whose
    ``gt/info.json`` records the same parameters is returned untouched.
    """
    if frames < 2 or size < 16:
        raise ValueError(f"need frames >= 2 and size >= 16, got frames={frames}, size={size}")
    out = Path(default_example_dir() if out_dir is None else out_dir).expanduser()
    params = _params(frames, size, orbit_deg, elevation_deg, seed)
    if not force and _is_complete(out, params):
        return out
    if not _looks_like_clip(out):
        raise FileExistsError(f"{out} exists and does not look like a creature clip; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the clip is an ordinary folder
        _write_clip(tmp, params)
        if out.exists():
            if not force and _is_complete(out, params):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                tmp.rename(out)
            except OSError:
                if _is_complete(out, params):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return out
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rasterize(verts_cam: np.ndarray, faces: np.ndarray, Ks: np.ndarray, attrs: np.ndarray, size: int, chunk: int = 8):
    """Hard (nearest-face) render at ``SS`` x the resolution with :func:`lasr.render.render`.

    Returns sub-sample coverage ``(N, SS*H, SS*W)`` bool and the interpolated
    per-vertex ``attrs (N, V, C)`` at the covered sub-samples, ``(P, C)`` float64.
    """
    import torch

    from lasr.render import RasterSettings, render

    settings = RasterSettings(image_size=(SS * size, SS * size), sigma=0.0, faces_per_pixel=1, near=1e-2, far=100.0)
    F = torch.from_numpy(faces)
    covs, vals = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small kernels on a shared CPU: one thread beats two contending ones
    try:
        for s0 in range(0, len(verts_cam), chunk):
            sl = slice(s0, min(len(verts_cam), s0 + chunk))
            K = Ks[sl].copy()
            K[:, :2] *= SS
            K[:, 2:] = SS * K[:, 2:] + (SS - 1) / 2.0
            with torch.no_grad():
                o = render(torch.from_numpy(verts_cam[sl]).float(), F, torch.from_numpy(K).float(), settings,
                           silhouette=False, attributes=torch.from_numpy(np.ascontiguousarray(attrs[sl])).float())
            cov = o.mask.numpy()
            covs.append(cov)
            vals.append(o.attributes.numpy()[cov].astype(np.float64))
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(covs), np.concatenate(vals)


def _render_frames(verts_cam, normals_w, creature, Ks, R_wc, size, noise_fg, noise_bg):
    """Anti-aliased RGB ``(N, H, W, 3)`` in [0, 1] over the background, and masks ``(N, H, W)``
    (2x2 sub-sample coverage >= 0.5)."""
    N, H, W = len(verts_cam), size, size
    static = np.concatenate([creature.verts, creature.stripe[:, None], creature.tint], 1)  # (V, 7)
    attrs = np.concatenate([np.broadcast_to(static, (N,) + static.shape), normals_w], 2)  # (N, V, 10)
    cov, A = _rasterize(verts_cam, creature.faces, Ks, attrs, size)
    # shade the covered sub-samples: solid texture at the rest position, Lambert in world space
    light = LIGHT_DIR / np.linalg.norm(LIGHT_DIR)
    alb = _creature_albedo(noise_fg, A[:, :3], A[:, 3], A[:, 4:7])
    n = A[:, 7:10] / np.maximum(np.linalg.norm(A[:, 7:10], axis=1, keepdims=True), 1e-12)
    shade = AMBIENT + DIFFUSE * np.clip(n @ light, 0.0, None)
    fg = np.zeros(cov.shape + (3,))
    fg[cov] = np.clip(alb * shade[:, None], 0.0, 1.0)
    fg = fg.reshape(N, H, SS, W, SS, 3).mean((2, 4))
    c = cov.reshape(N, H, SS, W, SS).mean((2, 4))
    # background at infinity: one sample per output pixel (world ray direction), replicated to the sub-samples
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rgb = np.empty((N, H, W, 3))
    for i in range(N):
        d_cam = np.stack([(u - Ks[i, 2]) / Ks[i, 0], (v - Ks[i, 3]) / Ks[i, 1], np.ones_like(u)], -1)
        d_w = d_cam @ R_wc[i]  # R^T d
        d_w /= np.linalg.norm(d_w, axis=-1, keepdims=True)
        rgb[i] = fg[i] + (1.0 - c[i])[..., None] * _background(noise_bg, d_w)
    return rgb, c >= 0.5


def _outline(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return m & ~e


def _write_preview(path: Path, rgb8: np.ndarray, masks: np.ndarray, n: int = 6) -> None:
    from PIL import Image, ImageDraw

    N, H, W = masks.shape
    ids = np.unique(np.linspace(0, N - 1, min(n, N)).round().astype(int))
    z = max(1, int(round(320 / max(H, W))))
    tiles = []
    for i in ids:
        im = np.repeat(np.repeat(rgb8[i], z, 0), z, 1).copy()
        m = np.repeat(np.repeat(masks[i], z, 0), z, 1)
        im[_outline(m)] = (40, 255, 60)
        tile = Image.fromarray(im)
        ImageDraw.Draw(tile).text((3, 2), str(int(i)), fill=(255, 255, 0))
        tiles.append(tile)
    gap = 4
    sheet = Image.new("RGB", (len(tiles) * (W * z + gap) - gap, H * z), (255, 255, 255))
    for k, t in enumerate(tiles):
        sheet.paste(t, (k * (W * z + gap), 0))
    sheet.save(path)


def _write_clip(d: Path, params: dict) -> None:
    from PIL import Image

    N, S = params["frames"], params["size"]
    orbit, elev, seed = params["orbit_deg"], params["elevation_deg"], params["seed"]
    rng = np.random.default_rng(seed)
    noise_fg, noise_bg = _Noise(rng), _Noise(rng)
    c = build_creature()

    # pose every frame: one walk cycle over the clip (frame N would be frame 0 again)
    phases = 2.0 * np.pi * np.arange(N) / N
    world = np.stack([skin(c, pose_creature(c, ph)) for ph in phases])  # (N, V, 3)
    normals = vertex_normals(world, c.faces)
    lo, hi = world.reshape(-1, 3).min(0), world.reshape(-1, 3).max(0)
    target = 0.5 * (lo + hi)

    # camera: orbit centred on the creature's left side; one distance for the clip
    azim0 = 90.0 - orbit / 2.0
    azims = azim0 + orbit * np.arange(N) / max(N - 1, 1)
    fx = (S / 2.0) / math.tan(math.radians(FOV_DEG) / 2.0)
    cxy = (S - 1) / 2.0
    m = FILL * (S / 2.0) / fx
    Rs = np.stack([_look_rotation(a, elev)[0] for a in azims])
    rel = np.einsum("nab,nvb->nva", Rs, world - target)
    dist = float(np.max(np.maximum(np.abs(rel[..., 0]), np.abs(rel[..., 1])) / m - rel[..., 2]))
    ts = -np.einsum("nab,nb->na", Rs, target + dist * np.stack([_look_rotation(a, elev)[1] for a in azims]))
    cam = np.einsum("nab,nvb->nva", Rs, world) + ts[:, None, :]
    Ks = np.tile([fx, fx, cxy, cxy], (N, 1))

    rgb, masks = _render_frames(cam, normals, c, Ks, Rs, S, noise_fg, noise_bg)
    # ground-truth meshes: the rendered surface less the pieces buried inside other parts in every frame
    hidden = hidden_faces(c, world)
    _, gt_faces, used = remove_unreferenced_vertices(c.verts, c.faces[~hidden])
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    for sub in ("frames", "masks", "gt/meshes"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i in range(N):
        Image.fromarray(rgb8[i]).save(d / "frames" / f"{i:05d}.png")
        Image.fromarray(masks[i].astype(np.uint8) * 255).save(d / "masks" / f"{i:05d}.png")
        write_obj(d / "gt" / "meshes" / f"{i:05d}.obj", cam[i][used], gt_faces, digits=6,
                  comment="lasr creature: posed mesh, camera coordinates (OpenCV)")

    frames_json = []
    for i in range(N):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = Rs[i], ts[i]
        frames_json.append({"frame": i, "time": i / FPS, "fx": fx, "fy": fx, "cx": cxy, "cy": cxy,
                            "width": S, "height": S, "world_to_camera": T.tolist(),
                            "azimuth_deg": float(azims[i]), "elevation_deg": float(elev)})
    cams = {"convention": "OpenCV camera (x right, y down, z forward); world_to_camera maps world (+Y up, "
                          "creature facing +Z) points to camera coordinates; pixel centres at integer coordinates",
            "width": S, "height": S, "frames": frames_json}
    (d / "gt" / "cameras.json").write_text(json.dumps(cams, indent=1))

    _write_preview(d / "preview.png", rgb8, masks)
    has_video = S % 2 == 0 and write_mp4(d / "video.mp4", rgb8, FPS, crf=18, reproducible=True) is not None

    info = {
        "asset": ASSET, "frames": N, "fps": FPS, "times": [i / FPS for i in range(N)], "loop": True,
        "animation": "walk", "cycles": 1, "res": [S, S],
        "vertices": int(len(used)), "faces": int(len(gt_faces)),
        "vertices_rendered": int(len(c.verts)), "faces_rendered": int(len(c.faces)),
        "faces_note": "the GT meshes are the rendered union of closed parts less the faces buried inside "
                      "another part in every frame (open where parts join, the openings hidden)",
        "parts": list(c.parts), "bones": list(BONES), "parents": list(PARENTS),
        "bbox_diag": float(np.median(np.linalg.norm(world[:, used].max(1) - world[:, used].min(1), axis=1))),
        "bbox_diag_note": "median over frames of the world-space axis-aligned bbox diagonal (model units)",
        "bbox_diag_union": float(np.linalg.norm(np.ptp(world[:, used].reshape(-1, 3), axis=0))),
        "mask_coverage_mean": float(masks.mean()),
        "camera": {"fov_deg": FOV_DEG, "fx": fx, "distance": dist, "target_world": target.tolist(),
                   "azim0_deg": azim0, "orbit_deg": orbit, "elev_deg": elev, "fill": FILL},
        "render": {"ss": SS, "light": (LIGHT_DIR / np.linalg.norm(LIGHT_DIR)).tolist(), "ambient": AMBIENT,
                   "diffuse": DIFFUSE, "frames_format": "png", "video": has_video},
        "seed": seed, "params": params,
    }
    (d / "gt" / "info.json").write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kw: dict = {}
    conv = {"out": str, "frames": int, "size": int, "orbit_deg": float, "elevation_deg": float, "seed": int,
            "force": lambda s: s.lower() in ("1", "true", "yes")}
    for a in args:
        k, sep, val = a.partition("=")
        if not sep or k not in conv:
            print("usage: python -m lasr.examples.clip [out=DIR] [frames=32] [size=160] [orbit_deg=90] "
                  "[elevation_deg=15] [seed=0] [force=true]", file=sys.stderr)
            return 2
        kw["out_dir" if k == "out" else k] = conv[k](val)
    import time

    t0 = time.perf_counter()
    path = make_creature_clip(**kw)
    print(f"{path}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
