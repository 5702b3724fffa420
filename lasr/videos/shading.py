"""Drawing a mesh for people: Lambert shading with the soft rasterizer, bone colours,
compositing, labels and the virtual cameras that look at a fit from every side."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from ..io.final import source_intrinsics

__all__ = ["LIGHT", "bone_palette", "skin_colors", "shade_mesh", "composite", "label", "look_rotation",
           "view_rotations", "fit_focal", "bbox_centre", "rot_x", "rot_y", "scale_intrinsics"]

LIGHT = np.array([-0.35, -0.6, -1.0]) / np.linalg.norm([-0.35, -0.6, -1.0])  # towards the light, camera coords
AMBIENT, DIFFUSE = 0.35, 0.7
MARGIN = 0.1  # fraction of the half panel left free around the framed points (labels sit there)


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """``(N, 4)`` intrinsics of images of ``from_size (W, H)`` -> of the same images resized to
    ``to_size (W, H)`` (pixel centres at integer coordinates)."""
    K = np.asarray(K, dtype=np.float64).reshape(-1, 4)
    return source_intrinsics(K, (from_size[1], from_size[0]), to_size)


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
    from ..render import RasterSettings

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

    from ..geometry.mesh import vertex_normals
    from ..render import render

    dev = torch.device(device)
    N = verts.shape[0]
    H, W = size
    s = int(supersample)
    Ks = np.broadcast_to(np.asarray(K, dtype=np.float64).reshape(-1, 4), (N, 4)).copy()
    if s > 1:
        Ks = scale_intrinsics(Ks, (W, H), (W * s, H * s))
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


def composite(bg: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """``bg`` uint8 ``(H, W, 3)`` or colour tuple; returns uint8."""
    a = (alpha * opacity)[..., None]
    bgf = np.broadcast_to(np.asarray(bg, dtype=np.float32) / 255.0, rgb.shape)
    return (np.clip(bgf * (1 - a) + rgb * a, 0, 1) * 255 + 0.5).astype(np.uint8)


def label(img: np.ndarray, text: str, color=(60, 60, 60), outline=None) -> np.ndarray:
    """Write ``text`` in the top-left corner of ``img`` (in place)."""
    import cv2

    scale = max(0.35, img.shape[0] / 640)
    org, thick = (int(6 + 2 * scale), int(14 * scale + 6)), max(1, int(round(scale * 1.5)))
    if outline is not None:
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, outline, thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    return img


# ----------------------------------------------------------------------------
# virtual cameras
# ----------------------------------------------------------------------------
def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
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
        return rot_y(math.pi)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def view_rotations() -> dict[str, np.ndarray]:
    """Rotations of the object about its centre (fitted-camera axes) that show each view.

    ``side``: a quarter turn about the camera's vertical axis (the camera orbits to the
    left of the fitted one); ``back``: a half turn; ``top``: a quarter turn about the
    camera's x axis bringing the object's top (camera ``-y``) towards the camera, so the
    side the fitted camera saw ends at the bottom of the panel.
    """
    return {"front": np.eye(3), "side": rot_y(-math.pi / 2), "back": rot_y(math.pi), "top": rot_x(math.pi / 2)}


def fit_focal(points: list[np.ndarray], size: tuple[int, int], margin: float = MARGIN) -> float:
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


def bbox_centre(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1, 3)
    return 0.5 * (flat.min(0) + flat.max(0))
