"""Would better flow give truer fits? A copy of a preprocessing cache with the true flow in it.

    uv run python experiments/true_flow_cache.py CACHE CLIP OUT_CACHE_DIR

CACHE: a clip's preprocessing cache (``cache_dir/<name>``, as ``python -m lasr.optimize``
writes it); CLIP: a folder with the clip's true meshes in camera coordinates
(``gt/meshes/%05d.obj``, one topology) and cameras (``gt/cameras.json``: ``fx``, ``fy``,
``cx``, ``cy``, ``width``), as the built-in creature and ``../shared/data/cesiumman_walk``
have them. Written: ``OUT_CACHE_DIR/<name>``, the same cache with the forward and backward
flow of every pair of frames replaced by the motion of the true meshes, rendered by the
project's rasterizer (as the fit's renderer computes the flow of its own mesh), and their
forward-backward confidences computed as preprocessing computes them (occluded points fall
to 0; so do pixels off the true silhouette, where the true flow says nothing). Give
``--alpha``/``--beta`` when the cache was made with other ``preprocess.confidence``
settings. Its ``meta.json`` records the new files (and ``parts.flow.true_flow_of``: the
clip), so the fit reads the cache as it is: fit with the same command and
``cache_dir=OUT_CACHE_DIR``, e.g. ::

    uv run python experiments/true_flow_cache.py cache/cesiumman_walk \\
        ../shared/data/cesiumman_walk oracle
    uv run python -m lasr.optimize video=../shared/data/cesiumman_walk/frames \\
        masks=../shared/data/cesiumman_walk/masks preprocess.flow=dis cache_dir=oracle

Printed: the cached (estimated) flow's end-point error against the true flow, on the
object's pixels where both are confident, and the true flow's size there (README, Results:
"The true flow does not lift the fits"). The copy is written beside ``OUT_CACHE_DIR/<name>``
and moved in place when complete; an existing ``OUT_CACHE_DIR/<name>`` is replaced only if
this script wrote it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.config import ConfidenceConfig  # noqa: E402
from lasr.examples import true_flow, truth_at  # noqa: E402
from lasr.files import replace_dir, write_json_atomic  # noqa: E402
from preprocess.flow import fb_confidence  # noqa: E402
from preprocess.layout import SequencePaths, file_records, load_sequence, read_meta  # noqa: E402

MARK = "true_flow_of"  # parts.flow's key naming the clip whose true flow a copy holds


def true_flow_cache(cache: Path, clip: Path, out_dir: Path, confidence: ConfidenceConfig | None = None) -> dict:
    """Write ``out_dir/<cache's name>``: ``cache`` with the true flow of ``clip`` (module
    docstring), its confidences by ``confidence`` (default: ``preprocess.confidence``'s
    defaults). Returns the path, the estimated flow's end-point error against the true one
    and the true flow's size (px, means over the object's pixels where both are confident).

    Raises SystemExit when ``cache`` records no flow, when the copy would be ``cache``
    itself or inside it, or when ``out_dir/<name>`` exists and this script did not write it."""
    confidence = confidence or ConfidenceConfig()
    cache = Path(cache)
    out = Path(out_dir) / cache.name
    meta = read_meta(SequencePaths(cache))
    if "flow" not in meta.get("parts", {}):
        raise SystemExit(f"{cache} is not a preprocessing cache with flow (no meta.json recording it)")
    if out.resolve() == cache.resolve() or cache.resolve() in out.resolve().parents:
        raise SystemExit(f"the copy would go into {cache} itself: give an OUT_CACHE_DIR outside it")
    if out.exists() and MARK not in read_meta(SequencePaths(out)).get("parts", {}).get("flow", {}):
        raise SystemExit(f"{out} exists and is not a copy this script wrote: give another OUT_CACHE_DIR")
    estimated = load_sequence(cache)
    H, W = estimated.masks.shape[1:]
    verts, faces, K = truth_at(clip, estimated.source_frames, (W, H))  # the cache's frames, at its size
    fw, bw, on_fw, on_bw = true_flow(verts, faces, K, (W, H))
    stage = out.parent / f".{out.name}.true_flow_tmp"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(cache, stage)
    names = SequencePaths(stage).part_names("flow", len(verts))
    err, size = [], []
    a, b = confidence.alpha, confidence.beta
    for i, name in enumerate(names):
        cf = fb_confidence(fw[i:i + 1], bw[i:i + 1], a, b)[0] * on_fw[i]
        cb = fb_confidence(bw[i:i + 1], fw[i:i + 1], a, b)[0] * on_bw[i]
        np.savez_compressed(stage / "flow" / name, fw=fw[i].astype(np.float16), bw=bw[i].astype(np.float16),
                            conf_fw=cf.astype(np.float16), conf_bw=cb.astype(np.float16))
        on = estimated.masks[i] & (cf > 0.5) & (estimated.conf_fw[i] > 0.5)
        err.append(np.linalg.norm(estimated.flow_fw[i] - fw[i], axis=-1)[on].mean())
        size.append(np.linalg.norm(fw[i], axis=-1)[on].mean())
    meta["parts"]["flow"]["files"] = file_records(stage / "flow", names)
    meta["parts"]["flow"][MARK] = str(Path(clip).resolve())  # the key is kept: the fit reads the copy as it is
    write_json_atomic(stage / "meta.json", meta)
    replace_dir(stage, out)
    return {"path": out, "estimated_epe": float(np.nanmean(err)), "true_size": float(np.nanmean(size))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", type=Path)
    ap.add_argument("clip", type=Path)
    ap.add_argument("out", type=Path, help="the cache_dir to write the copy into")
    d = ConfidenceConfig()
    ap.add_argument("--alpha", type=float, default=d.alpha, help="preprocess.confidence.alpha of the cache")
    ap.add_argument("--beta", type=float, default=d.beta, help="preprocess.confidence.beta of the cache")
    a = ap.parse_args(argv)
    r = true_flow_cache(a.cache, a.clip, a.out, ConfidenceConfig(alpha=a.alpha, beta=a.beta))
    print(f"{r['path']}: the true flow written; the cached flow's end-point error against it "
          f"{r['estimated_epe']:.3f} px (the true flow {r['true_size']:.3f} px on average; object pixels "
          f"where both are confident)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
