"""Benchmark of the soft rasteriser: forward + backward of the silhouette.

Usage::

    uv run python experiments/bench_raster.py --json            # CPU, 2 threads, default cases
    uv run python experiments/bench_raster.py --json --device cuda
    uv run python experiments/bench_raster.py --case 1280,64,4 --case 2560,256,8

Each case renders a closed, bumpy UV-sphere mesh with exactly ``faces`` faces
(filling roughly 60% of the image width, a different rotation per frame) at
``res`` x ``res`` pixels for ``batch`` frames, with the default
:class:`lasr.render.RasterSettings` (sigma = 1 px^2, K = 8, band height
heuristic).  One timed iteration is ``rasterize`` + ``blend`` (silhouette) +
an L2 loss against a target + ``backward()`` to the vertices.

With ``--json`` each case prints one JSON object per line with keys
``faces, res, batch, device, fwd_bwd_ms`` (median over ``--repeats`` timed
iterations after warm-up), ``peak_mem_mb``, and extra diagnostics
(``raster_ms``: median of the no-grad rasterisation alone, ``threads``,
``backend`` (``numba``: the compiled CPU loops, the default on CPU;
``torch``: the vectorised path, the GPU path; choose with ``--backend``),
``bin_size`` (the vectorised rasteriser's band height in rows, see
:func:`lasr.render.choose_bin_size`; null for ``numba``), ``K``, ``sigma``, and ``loadavg_1m``,
the machine's 1-minute load average at the end of the case: on a shared
machine, timings with several intra-op threads degrade sharply once other
processes compete for the cores).

``peak_mem_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` during the timed
loop minus the allocation before it; on CPU (no allocator statistics), every
case runs in a fresh subprocess and reports the process' peak resident set
size (``ru_maxrss``) minus its resident size just before the first render.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

# OpenMP workers busy-wait between parallel regions by default; on a shared
# machine they then steal the core from the main thread and 2-thread timings
# collapse (10x).  Passive waiting is the sane setting there; --omp-active
# keeps the library default.  Must be set before torch is imported.
if "--omp-active" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lasr.render import RasterSettings, blend, choose_bin_size, project_faces, rasterize  # noqa: E402
from lasr.render.raster import use_compiled  # noqa: E402

DEFAULT_CASES = [(1280, 64, 4), (2560, 256, 8)]


def uv_sphere(n_faces: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed UV sphere with exactly ``n_faces`` faces (``n_faces`` even):
    ``n_rings`` latitude rings of ``n_lon`` vertices plus two poles,
    ``2 * n_lon * n_rings`` faces, ``n_lon`` close to ``2 * n_rings``."""
    half = n_faces // 2
    if 2 * half != n_faces:
        raise ValueError("n_faces must be even")
    best = None
    for rings in range(2, half + 1):
        if half % rings == 0:
            lon = half // rings
            if lon >= 3:
                score = abs(math.log(lon / (2.0 * rings)))
                if best is None or score < best[0]:
                    best = (score, rings, lon)
    if best is None:
        raise ValueError(f"cannot build a UV sphere with {n_faces} faces")
    _, rings, lon = best
    th = torch.arange(1, rings + 1, dtype=torch.float64) * math.pi / (rings + 1)
    ph = torch.arange(lon, dtype=torch.float64) * 2 * math.pi / lon
    t, p = torch.meshgrid(th, ph, indexing="ij")
    ring = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], -1).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), ring,
                       torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)])
    nv = verts.shape[0]
    f = []
    for j in range(lon):  # north fan
        f.append([0, 1 + (j + 1) % lon, 1 + j])
    for i in range(rings - 1):
        for j in range(lon):
            a, b = 1 + i * lon + j, 1 + i * lon + (j + 1) % lon
            c, d = a + lon, b + lon
            f += [[a, b, c], [b, d, c]]
    base = 1 + (rings - 1) * lon
    for j in range(lon):  # south fan
        f.append([nv - 1, base + j, base + (j + 1) % lon])
    faces = torch.tensor(f, dtype=torch.long)
    assert faces.shape[0] == n_faces
    return verts.to(dtype), faces


def make_scene(n_faces: int, res: int, batch: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v, f = uv_sphere(n_faces, dtype=torch.float64)
    # low-frequency bumps so the silhouette is not a perfect disc
    bump = 1.0 + 0.15 * torch.sin(3 * v[:, 0] + 1.0) * torch.cos(2 * v[:, 1]) + 0.1 * torch.sin(4 * v[:, 2])
    v = v * bump[:, None]
    frames = []
    for _ in range(batch):
        q = torch.randn(4, generator=g, dtype=torch.float64)
        q = q / q.norm()
        w, x, y, z = q
        R = torch.tensor([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ], dtype=torch.float64)
        frames.append(v @ R.T + torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64))
    verts = torch.stack(frames).float().to(device)
    focal = 0.6 * res * 4.0 / (2 * 1.15)  # object about 60% of the width
    k = torch.tensor([focal, focal, (res - 1) / 2, (res - 1) / 2]).expand(batch, 4).clone().to(device)
    return verts, f.to(device), k


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_case(n_faces: int, res: int, batch: int, device: str, repeats: int, warmup: int,
             backend: str = "auto") -> dict:
    settings = RasterSettings(image_size=(res, res), backend=backend)
    verts, faces, k = make_scene(n_faces, res, batch, device)
    with torch.no_grad():
        target = (blend(verts, faces, k, rasterize(verts, faces, k, settings), settings).silhouette > 0.5).float()
        tri, _, valid = project_faces(verts, faces, k, settings)
        compiled = use_compiled(settings, tri.device)
        bin_size = None if compiled else choose_bin_size(tri, valid, settings)
    verts = verts.clone().requires_grad_(True)

    def step() -> None:
        frags = rasterize(verts.detach(), faces, k, settings)
        sil = blend(verts, faces, k, frags, settings).silhouette
        loss = ((sil - target) ** 2).mean()
        verts.grad = None
        loss.backward()

    base_rss = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_alloc = torch.cuda.memory_allocated()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    rtimes = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        rasterize(verts.detach(), faces, k, settings)
        _sync(device)
        rtimes.append((time.perf_counter() - t0) * 1e3)
    if device.startswith("cuda"):
        peak = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {
        "faces": n_faces,
        "res": res,
        "batch": batch,
        "device": device,
        "fwd_bwd_ms": round(statistics.median(times), 2),
        "peak_mem_mb": round(peak, 1),
        "raster_ms": round(statistics.median(rtimes), 2),
        "threads": torch.get_num_threads(),
        "backend": "numba" if compiled else "torch",
        "bin_size": bin_size,
        "K": settings.faces_per_pixel,
        "sigma": settings.sigma,
        "loadavg_1m": round(os.getloadavg()[0], 2),  # other processes share the CPU
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--case", action="append", default=None, help="faces,res,batch (repeatable)")
    ap.add_argument("--in-process", action="store_true", help="do not spawn one subprocess per case")
    ap.add_argument("--omp-active", action="store_true", help="keep OpenMP's default (busy) wait policy")
    ap.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"],
                    help="rasteriser path (auto: compiled Numba loops on CPU, vectorised PyTorch on GPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [tuple(int(x) for x in c.split(",")) for c in args.case] if args.case else DEFAULT_CASES
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA requested but not available")

    for n_faces, res, batch in cases:
        if args.in_process or args.device.startswith("cuda") or len(cases) == 1:
            row = run_case(n_faces, res, batch, args.device, args.repeats, args.warmup, args.backend)
        else:  # fresh process per case so peak RSS is per case
            cmd = [sys.executable, os.path.abspath(__file__), "--json", "--device", args.device,
                   "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup",
                   str(args.warmup), "--case", f"{n_faces},{res},{batch}", "--backend", args.backend]
            cmd += ["--omp-active"] if args.omp_active else []
            outp = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(outp.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['faces']:6d} faces {row['res']:4d}px x{row['batch']:2d} {row['device']:5s} "
                  f"fwd+bwd {row['fwd_bwd_ms']:8.2f} ms  raster {row['raster_ms']:8.2f} ms  "
                  f"peak {row['peak_mem_mb']:7.1f} MB  {row['backend']}", flush=True)


if __name__ == "__main__":
    main()
