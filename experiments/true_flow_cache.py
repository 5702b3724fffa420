"""Would better flow give truer fits? A copy of a preprocessing cache with the true flow in it.

    uv run python experiments/true_flow_cache.py CACHE CLIP OUT_CACHE_DIR

CACHE: a clip's preprocessing cache (``cache_dir/<name>``, as ``python -m lasr.optimize``
writes it); CLIP: a folder with the clip's true meshes in camera coordinates
(``gt/meshes/%05d.obj``, one topology) and cameras (``gt/cameras.json``: ``fx``, ``fy``,
``cx``, ``cy``, ``width``), as the built-in creature and ``../shared/data/cesiumman_walk``
have them. Written: ``OUT_CACHE_DIR/<name>``, the same cache with the forward and backward
flow of every pair of frames replaced by the motion of the true meshes, rendered by the
project's rasterizer (the flow the fit renders from its own mesh, so the truth is exactly
what the fit's flow term compares with), and their forward-backward confidences computed
as preprocessing computes them (occluded points fall to 0). Its ``meta.json`` records the
new files, so the fit reads the cache as it is: fit with the same command and
``cache_dir=OUT_CACHE_DIR``, e.g. ::

    uv run python experiments/true_flow_cache.py cache/cesiumman_walk \\
        ../shared/data/cesiumman_walk oracle
    uv run python -m lasr.optimize video=../shared/data/cesiumman_walk/frames \\
        masks=../shared/data/cesiumman_walk/masks preprocess.flow=dis cache_dir=oracle

Printed: the cached (estimated) flow's end-point error against the true flow, on the
object's pixels where both are confident, and the true flow's size there (README, Results:
"The true flow").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.config import ConfidenceConfig  # noqa: E402
from lasr.examples import read_truth  # noqa: E402
from lasr.render import RasterSettings, render  # noqa: E402
from preprocess.flow import fb_confidence  # noqa: E402
from preprocess.layout import SequencePaths, file_records, load_sequence, read_meta  # noqa: E402


def true_flow(verts: torch.Tensor, faces, K: torch.Tensor, hw: tuple[int, int], pairs=None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(P, H, W, 2)`` forward (frame a to b, on frame a) and backward (b to a, on frame b)
    flow of the posed meshes ``verts (T, V, 3)`` seen by cameras ``K (T, 4)``, for each
    ``(a, b)`` of ``pairs`` (default: every frame and the next)."""
    settings = RasterSettings(image_size=hw, sigma=1e-4, faces_per_pixel=4)
    F = torch.as_tensor(faces)
    pairs = [(t, t + 1) for t in range(verts.shape[0] - 1)] if pairs is None else pairs
    fw, bw = [], []
    with torch.no_grad():
        for a, b in pairs:  # a pair at a time: a clip's worth at once is gigabytes
            for dst, (x, y) in ((fw, (a, b)), (bw, (b, a))):
                x, y = slice(x, x + 1), slice(y, y + 1)
                dst.append(render(verts[x], F, K[x], settings, silhouette=False, verts_next=verts[y],
                                  cameras_next=K[y]).flow)
    return torch.cat(fw).numpy(), torch.cat(bw).numpy()


def truth_of_cache(meta: dict, clip: Path) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """The true meshes ``(N, V, 3)`` (camera coordinates), their faces and cameras ``K (N, 4)``
    of a cache's ``N`` frames (``meta``: its ``meta.json``), scaled to the cache's size."""
    source = [int(f["source_frame"]) for f in meta["frames"]]
    verts, faces, cams = read_truth(clip)
    if max(source) >= len(verts):
        raise SystemExit(f"{clip} has {len(verts)} true meshes; the cache uses frames up to {max(source)}")
    s = meta["size"]["width"] / float(cams["width"])
    K = torch.tensor([[c["fx"] * s, c["fy"] * s, c["cx"] * s, c["cy"] * s] for c in cams["frames"]],
                     dtype=torch.float32)[source]
    return torch.tensor(verts, dtype=torch.float32)[source], faces, K


def true_flow_cache(cache: Path, clip: Path, out_dir: Path, confidence: ConfidenceConfig = ConfidenceConfig()) -> dict:
    """Write ``out_dir/<cache's name>``: ``cache`` with the true flow of ``clip`` (module
    docstring), its confidences by ``confidence`` (``preprocess.confidence``). Returns the
    estimated flow's end-point error against the true one and the true flow's size (px,
    means over the object's confident pixels of every pair).

    Raises SystemExit when ``cache`` records no flow, when the copy would be ``cache``
    itself, or when ``out_dir/<name>`` exists and is not a preprocessing cache (it is
    replaced only then)."""
    cache, out = Path(cache), Path(out_dir) / Path(cache).name
    meta = read_meta(SequencePaths(cache))
    if "flow" not in meta.get("parts", {}):
        raise SystemExit(f"{cache} is not a preprocessing cache with flow (no meta.json recording it)")
    if out.resolve() == cache.resolve():
        raise SystemExit(f"the copy would replace {cache} itself: give another OUT_CACHE_DIR than its folder")
    if out.exists() and not read_meta(SequencePaths(out)):
        raise SystemExit(f"{out} exists and is not a preprocessing cache: give another OUT_CACHE_DIR")
    H, W = meta["size"]["height"], meta["size"]["width"]
    verts, faces, K = truth_of_cache(meta, clip)
    fw, bw = true_flow(verts, faces, K, (H, W))
    estimated = load_sequence(cache)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cache, out)
    names = SequencePaths(out).part_names("flow", len(verts))
    err, size = [], []
    for i, name in enumerate(names):
        cf = fb_confidence(fw[i:i + 1], bw[i:i + 1], confidence.alpha, confidence.beta)[0]
        cb = fb_confidence(bw[i:i + 1], fw[i:i + 1], confidence.alpha, confidence.beta)[0]
        np.savez_compressed(out / "flow" / name, fw=fw[i].astype(np.float16), bw=bw[i].astype(np.float16),
                            conf_fw=cf.astype(np.float16), conf_bw=cb.astype(np.float16))
        on = estimated.masks[i] & (cf > 0.5) & (estimated.conf_fw[i] > 0.5)
        err.append(np.linalg.norm(estimated.flow_fw[i] - fw[i], axis=-1)[on].mean())
        size.append(np.linalg.norm(fw[i], axis=-1)[on].mean())
    meta["parts"]["flow"]["files"] = file_records(out / "flow", names)
    meta["parts"]["flow"]["true_flow_of"] = str(Path(clip).resolve())  # the key is kept: the fit reads it as it is
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return {"path": out, "estimated_epe": float(np.nanmean(err)), "true_size": float(np.nanmean(size))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("out", type=Path, help="the cache_dir to write the copy into")
    a = ap.parse_args(argv)
    r = true_flow_cache(a.cache, a.clip, a.out)
    print(f"{r['path']}: the true flow written; the cached flow's end-point error against it "
          f"{r['estimated_epe']:.3f} px (the true flow {r['true_size']:.3f} px on average; object pixels "
          f"where both are confident)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
