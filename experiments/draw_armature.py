"""Draw the armature Blender makes of a lasr ``animation.glb`` (numpy + Pillow, no Blender
needed to draw): bones as Blender draws them (an octahedron, seen as a diamond from head to
tail) over the mesh Blender deforms, at a few animation keys, from the video camera and
from the side.

    blender -b --factory-startup --python experiments/blender_armature.py -- RUN/final/animation.glb arm.json 0,16
    uv run python experiments/draw_armature.py arm.json [more.json ...] --out docs/armature.png [--keys 0,16]
        [--size 360] [--labels "first row" "second row"]

Blender's world axes (Z up) are turned back into the video camera's (OpenCV: x right, y
down, z forward): ``(x, y, z)_cv = (x, -z, y)_blender`` (glTF's axes, then lasr's
``opencv_to_gltf`` flip). The bones' colours go from dark (the root) to light (deep in the
tree). One row per JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def to_cv(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)


def depth_in_tree(bones: list[dict]) -> dict[str, int]:
    parent = {b["name"]: b["parent"] for b in bones}
    out = {}
    for name in parent:
        d, x = 0, name
        while parent[x] is not None:
            x, d = parent[x], d + 1
        out[name] = d
    return out


def panel(verts, faces, bones, depth, rot, size, title):
    """One orthographic picture: mesh (flat Lambert, painter's order) and bones on top."""
    V = verts @ rot.T
    segs = {n: (np.asarray(h) @ rot.T, np.asarray(t) @ rot.T) for n, (h, t) in bones.items()}
    pts = np.concatenate([V] + [np.stack(s) for s in segs.values()])
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    scale = 0.86 * size / max(hi - lo)
    off = 0.5 * size - scale * 0.5 * (lo + hi)

    def px(p):
        return (p[..., :2] * scale + off)

    img = Image.new("RGB", (size, size), (250, 250, 250))
    dr = ImageDraw.Draw(img, "RGBA")
    F = np.asarray(faces)
    tri = V[F]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([-0.3, -0.6, -0.75])
    lam = 0.45 + 0.5 * np.abs(n @ (light / np.linalg.norm(light)))
    order = np.argsort(-tri[:, :, 2].mean(1))  # far first (z forward)
    P = px(tri)
    for f in order:
        c = int(210 * lam[f])
        dr.polygon([tuple(q) for q in P[f]], fill=(c, c, int(c * 1.02) if c < 250 else c, 255))
    maxd = max(depth.values()) or 1
    for name in sorted(segs, key=lambda k: -depth[k]):
        h, t = px(segs[name][0]), px(segs[name][1])
        d = t - h
        L = float(np.linalg.norm(d))
        if L < 1e-6:
            continue
        u, w = d / L, np.array([-d[1], d[0]]) / L
        mid = h + 0.18 * d
        poly = [tuple(h), tuple(mid + 0.09 * L * w), tuple(t), tuple(mid - 0.09 * L * w)]
        k = depth[name] / maxd
        col = (int(40 + 160 * k), int(70 + 120 * k), int(160 + 60 * k))
        dr.polygon(poly, fill=col + (235,), outline=(20, 20, 30, 255))
        r = 0.035 * L + 1.5
        dr.ellipse([h[0] - r, h[1] - r, h[0] + r, h[1] + r], fill=(20, 20, 30, 255))
    dr.text((8, 6), title, fill=(30, 30, 30))
    return img


def row(res: dict, keys, size: int, label: str) -> Image.Image:
    arm = max(res["armatures"], key=lambda a: len(a["bones"]))
    depth = depth_in_tree(arm["bones"])
    keys = keys or list(arm["posed"])
    a = np.radians(90.0)
    side = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    tiles = []
    for k in keys:
        verts = to_cv(arm["mesh_world"][k])
        c = verts.mean(0)
        bones = {n: (to_cv(h) - c, to_cv(t) - c) for n, (h, t) in arm["posed"][k].items()}
        for rot, view in ((np.eye(3), "the video camera's view"), (side, "from the side")):
            tiles.append(panel(verts - c, arm["mesh_faces"], bones, depth, rot, size, f"key {k}: {view}"))
    out = Image.new("RGB", (size * len(tiles), size + 22), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, (i * size, 0))
    ImageDraw.Draw(out).text((8, size + 5), f"{label}Blender {res['blender']} glTF import: armature "
                             f"'{arm['name']}', {len(arm['bones'])} bones, tree depth {max(depth.values()) + 1}",
                             fill=(30, 30, 30))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--keys", default=None, help="animation keys to draw (default: all in the JSON)")
    ap.add_argument("--labels", nargs="*", default=None, help="a caption per row")
    ap.add_argument("--size", type=int, default=360)
    args = ap.parse_args()
    keys = args.keys.split(",") if args.keys else None
    labels = args.labels or [""] * len(args.json)
    rows = [row(json.loads(Path(j).read_text()), keys, args.size, (lab + ": ") if lab else "")
            for j, lab in zip(args.json, labels)]
    W = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        W.paste(r, (0, y))
        y += r.height
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    W.save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
