"""Frames per second of the flow backends (forward + backward per pair) on CPU.

    uv run python experiments/bench_preprocess.py [--video PATH] [--frames 8] [--sizes 256 512] [--json]

Frames come from ``--video`` (a file or a folder of frames; default: the real cat clip in
``../shared/data`` when present, else a synthetic texture), resized so the longest side
is each size. RAFT runs torchvision's real architecture with random weights (pretrained
weights cannot be downloaded here); its speed does not depend on the weights.
"frames/s" counts one processed frame = one forward and one backward flow.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lasr.config import DisConfig  # noqa: E402
from preprocess.flow import DISFlow, RAFTFlow, fb_confidence, forward_backward  # noqa: E402
from preprocess.frames import iter_frames, probe_source, processing_size, resize_frame  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared/data/real_videos/cat-pikachu-0.mp4"


def load_frames(video: str | None, n: int) -> tuple[np.ndarray, str]:
    if video or DEFAULT_VIDEO.exists():
        src = probe_source(video or DEFAULT_VIDEO)
        frames = [f for _, f in iter_frames(src, list(range(min(n, src.num_frames))))]
        return np.stack(frames), str(src.path)
    from tests.preprocess.synth import texture  # a fresh clone without ../shared

    base = texture(540, 960, 0)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)]), "synthetic texture"


def bench(estimator, frames: np.ndarray, repeat: int) -> float:
    """Median seconds per processed frame (one fw + one bw flow and the confidences)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _, fw, bw in forward_backward(estimator, frames):
            fb_confidence(fw[None], bw[None])
            fb_confidence(bw[None], fw[None])
        times.append((time.perf_counter() - t) / (len(frames) - 1))
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=None)
    ap.add_argument("--frames", type=int, default=6, help="frames per measurement (pairs = frames-1)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["dis", "raft_small", "raft_large"])
    ap.add_argument("--raft-iters", type=int, default=12)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    frames, source = load_frames(args.video, args.frames)
    if not args.json:
        print(f"source: {source}, {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, "
              f"{args.threads} threads, device cpu")
        print(f"{'backend':<11} {'size':>9} {'frames/s':>9} {'ms/frame':>9}")
    for size in args.sizes:
        w, h = processing_size(frames.shape[2], frames.shape[1], size)
        if max(frames.shape[1:3]) < size:  # bench at the asked size even for a small source
            s = size / max(frames.shape[1:3])
            w, h = round(frames.shape[2] * s), round(frames.shape[1] * s)
        fr = np.stack([resize_frame(f, (w, h)) for f in frames])
        for backend in args.backends:
            if backend == "dis":
                est, repeat = DISFlow(DisConfig()), 3
            else:
                from torchvision.models.optical_flow import raft_large, raft_small

                model = (raft_small if backend == "raft_small" else raft_large)(weights=None, progress=False)
                est, repeat = RAFTFlow(model, iters=args.raft_iters, batch_size=2), 1
            sec = bench(est, fr, repeat)
            row = {"backend": backend, "width": w, "height": h, "size": size, "device": "cpu",
                   "threads": args.threads, "frames_per_s": round(1 / sec, 2), "ms_per_frame": round(sec * 1e3, 1)}
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{backend:<11} {f'{w}x{h}':>9} {1 / sec:>9.2f} {sec * 1e3:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
