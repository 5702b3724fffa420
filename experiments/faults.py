"""Every fault case of issue #18, run on a small clip this script makes, as a user runs them.

    uv run python experiments/faults.py              # all cases (about 10 minutes on 2 cores)
    uv run python experiments/faults.py --only lr    # the cases whose name contains "lr"

Each case runs the commands (``python -m preprocess``, ``python -m lasr.optimize``) in a
fresh scratch folder and is classified:

    clear error   exit status 2, ``error: ...`` naming the problem, no traceback, no data changed
    recovered     exit status 0 and the result checked (inputs intact, cache whole, fit finite...)
    traceback     a Python traceback or another exit status
    data lost     an input file changed or vanished, or the cache mixed two runs
    code ran      a crafted checkpoint ran its code
    unexpected    anything else (e.g. exit 0 where an error was due)

The script prints one row per case and exits 1 unless every row is "clear error" or
"recovered". It imports nothing from ``tests/``: the clip is drawn here.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
FIT = ["stages=rigid", "train.max_steps_per_stage=2", "train.progress=false", "stages.rigid.hypotheses=1",
       "stages.rigid.resolution=32", "stages.refine.resolution=32", "preprocess.flow=dis"]
OK, ERROR = "recovered", "clear error"


# ---------------------------------------------------------------------------------------
# The clip


def make_clip(folder: Path, n: int = 6, w: int = 64, h: int = 48, seed: int = 0, ext: str = ".jpg") -> Path:
    """``folder/frames`` (an ellipse moving over a texture) and ``folder/masks``."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 2)
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (w // 3 + (2 + seed) * i, h // 2), (w // 5, h // 6), 10 * i * (1 + seed), 0, 360, 255, -1)
        f = bg.copy()
        f[m > 0] = (200 - 40 * seed, 80 + 10 * i, 40 + 60 * seed)
        cv2.imwrite(str(folder / "frames" / f"{i:05d}{ext}"), f)
        cv2.imwrite(str(folder / "masks" / f"{i:05d}.png"), m)
    return folder


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------
# Running and judging


@dataclass
class Result:
    rc: int
    out: str
    err: str


def cli(module: str, *args: str, cwd: Path, timeout: int = 900) -> Result:
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


def error_line(r: Result) -> str:
    lines = [x for x in r.err.splitlines() if x.startswith("error:")]
    return lines[-1] if lines else (r.err.strip().splitlines() or ["(no message)"])[-1]


def judge_error(r: Result, *words: str) -> tuple[str, str]:
    """A clear error: status 2, ``error:`` with every word of ``words``, no traceback."""
    if "Traceback" in r.err + r.out:
        return "traceback", r.err.strip().splitlines()[-1]
    if r.rc == 2 and all(w in r.err for w in words):
        return ERROR, error_line(r)
    if r.rc == 0:
        return "unexpected", "exit 0 where an error was due"
    return "traceback" if r.rc not in (0, 2) else "unexpected", error_line(r)


def judge_ok(r: Result, check: Callable[[], Optional[str]], expect_in_log: str = "", note: str = "") -> tuple[str, str]:
    """Recovered: status 0 and ``check()`` None (else it says what is wrong); ``note`` says
    what was checked."""
    if "Traceback" in r.err + r.out:
        return "traceback", r.err.strip().splitlines()[-1]
    if r.rc != 0:
        return "unexpected", error_line(r)
    if expect_in_log and expect_in_log not in r.err + r.out:
        return "unexpected", f"the log does not say {expect_in_log!r}"
    why = check()
    if why is None and expect_in_log:
        said = next((x for x in (r.err + r.out).splitlines() if expect_in_log in x), "")
        note = f"{note}; log: {said.split('] - ')[-1].strip()}"
    return (OK, note) if why is None else ("data lost" if why.startswith("data lost") else "unexpected", why)


def metrics_ok(run: Path) -> Optional[str]:
    """None when ``run/final/metrics.json`` is strict JSON with finite IoUs."""
    p = run / "final" / "metrics.json"
    if not p.is_file():
        return f"{p} missing"
    m = json.loads(p.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))
    iou = [f["mask_iou"] for f in m["frames"]]
    return None if all(isinstance(x, float) for x in iou) else f"IoU {iou}"


@contextmanager
def read_only(folder: Path):
    """``folder`` as a read-only view: permissions, or for root a read-only bind mount."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield folder
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    view = folder.with_name(folder.name + "_ro")
    view.mkdir()
    ok = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode == 0
    if not ok:
        subprocess.run(["umount", str(view)], capture_output=True)
        view.rmdir()
        raise RuntimeError("cannot make a read-only folder here (root without mount)")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


def fit_args(d: Path, clip: str = "clip", *extra: str, cache: str = "cache") -> list[str]:
    return [f"video={clip}/frames", f"masks={clip}/masks", f"cache_dir={cache}", *FIT, *extra]


# ---------------------------------------------------------------------------------------
# The cases: each gets a fresh folder ``d`` (the working directory) and returns (outcome, detail)


def cache_holds_the_input(d: Path):
    make_clip(d / "dl" / "clip")
    (d / "dl/clip/frames/notes.tmp").write_text("the user's notes")
    before = tree(d / "dl")
    r = cli("preprocess", "video=dl/clip/frames", "masks=dl/clip/masks", "cache_dir=dl", "preprocess.flow=dis", cwd=d)
    if tree(d / "dl") != before:
        return "data lost", "the input folder changed"
    return judge_error(r, "holds the input", "cache_dir=")


def cache_is_the_input(d: Path):
    make_clip(d / "tmpclip")
    (d / "clip").mkdir()
    for p in (d / "tmpclip/frames").iterdir():
        shutil.copy(p, d / "clip" / p.name)
    shutil.copytree(d / "tmpclip/masks", d / "clip/masks")
    before = tree(d / "clip")
    r = cli("preprocess", "video=clip", "masks=clip/masks", "cache_dir=.", "preprocess.flow=dis", cwd=d)
    if tree(d / "clip") != before:
        return "data lost", "the input folder changed"
    return judge_error(r, "is the input", "cache_dir=")


def name_traversal(d: Path):
    make_clip(d / "clip")
    (d / "deep/cache").mkdir(parents=True)
    before = sorted(str(p) for p in d.rglob("*"))
    r = cli("preprocess", "video=clip/frames", "masks=clip/masks", "cache_dir=deep/cache", "name=../../x",
            "preprocess.flow=dis", cwd=d)
    if sorted(str(p) for p in d.rglob("*")) != before:
        return "data lost", "something was written"
    return judge_error(r, "is not a plain name")


def name_absolute(d: Path):
    make_clip(d / "clip")
    r = cli("preprocess", "video=clip/frames", "masks=clip/masks", f"name={d / 'elsewhere'}", "preprocess.flow=dis",
            cwd=d)
    if (d / "elsewhere").exists():
        return "data lost", "wrote outside cache_dir"
    return judge_error(r, "is not a plain name")


def lookalike_files_kept(d: Path):
    make_clip(d / "clip")
    args = ["video=clip/frames", "masks=clip/masks", "preprocess.flow=dis", "cache_dir=cache"]
    cli("preprocess", *args, cwd=d)
    (d / "cache/clip/notes.tmp").write_text("mine")
    (d / "cache/clip/.staging-frames-1").mkdir()
    (d / "cache/clip/.trash-flow-2").write_text("mine")
    r = cli("preprocess", *args, "force=true", cwd=d)
    kept = all((d / "cache/clip" / n).exists() for n in ("notes.tmp", ".staging-frames-1", ".trash-flow-2"))
    return judge_ok(r, lambda: None if kept else "data lost: the user's files in the cache folder were deleted",
                    note="exit 0, notes.tmp, .staging-frames-1, .trash-flow-2 kept")


def concurrent_preprocess(d: Path):
    make_clip(d / "clip", w=128, h=96)
    args = ["video=clip/frames", "masks=clip/masks", "preprocess.flow=dis", "cache_dir=cache"]
    procs = [subprocess.Popen([sys.executable, "-m", "preprocess", *args, f"preprocess.resolution={res}"], cwd=d,
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for res in (128, 64)]
    outs = [p.communicate(timeout=600) for p in procs]
    rs = [Result(p.returncode, o, e) for p, (o, e) in zip(procs, outs)]
    bad = [r for r in rs if r.rc != 0]
    if bad:
        return judge_ok(bad[0], lambda: None)

    def whole() -> Optional[str]:
        from preprocess import load_sequence

        seq = load_sequence(d / "cache/clip")
        size = (seq.meta["size"]["height"], seq.meta["size"]["width"])
        shapes = {seq.frames.shape[1:3], seq.masks.shape[1:3], seq.flow_fw.shape[1:3], size}
        return None if len(shapes) == 1 else f"data lost: the cache mixes two runs {shapes}"

    return judge_ok(rs[1], whole, note="both exit 0 (one waited for the lock); the cache is one run's, whole")


def parallel_sweep(d: Path):
    make_clip(d / "clip")
    r = cli("lasr.optimize", "-m", "hydra/launcher=local", "train.seed=0,1", *fit_args(d),
            "hydra.sweep.dir=multi", cwd=d)
    runs = sorted((d / "multi").glob("*/final"))
    return judge_ok(r, lambda: None if len(runs) == 2 and not any(metrics_ok(p.parent) for p in runs)
                    else f"{len(runs)} complete runs", note="exit 0, both runs complete")


def crafted_checkpoint(d: Path):
    import torch

    make_clip(d / "clip")
    marker = d / "code_ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (d / "run/ckpt").mkdir(parents=True)
    buf = io.BytesIO()
    torch.save({"model": Evil()}, buf)
    (d / "run/ckpt/last.pt").write_bytes(buf.getvalue())
    r = cli("lasr.optimize", *fit_args(d), "resume=true", "hydra.run.dir=run", cwd=d)
    if marker.exists():
        return "code ran", "the checkpoint's code ran"
    return judge_error(r, "not a lasr checkpoint")


def _fitted(d: Path, *extra: str) -> Result:
    make_clip(d / "clip")
    return cli("lasr.optimize", *fit_args(d, "clip", "train.checkpoint_every=1", *extra), "hydra.run.dir=run", cwd=d)


def _damage(d: Path, how: str) -> None:
    last = d / "run/ckpt/last.pt"
    blob = bytearray(last.read_bytes())
    if how == "overwritten":
        blob[200:600] = os.urandom(400)
    last.write_bytes(bytes(blob[: len(blob) // 3] if how == "truncated" else b"" if how == "empty" else blob))


def damaged_checkpoint(how: str):
    def case(d: Path):
        _fitted(d)
        shutil.rmtree(d / "run/final")
        _damage(d, how)
        r = cli("lasr.optimize", *fit_args(d, "clip", "train.checkpoint_every=1"), "resume=true", "hydra.run.dir=run",
                cwd=d)
        return judge_ok(r, lambda: metrics_ok(d / "run"), expect_in_log="resuming from", note="exit 0, final/ written")

    case.__name__ = f"checkpoint_{how}"
    return case


def both_checkpoints_damaged(d: Path):
    _fitted(d)
    _damage(d, "truncated")
    (d / "run/ckpt/prev.pt").write_bytes(b"")
    r = cli("lasr.optimize", *fit_args(d), "resume=true", "hydra.run.dir=run", cwd=d)
    return judge_error(r, "last.pt", "prev.pt", "no checkpoint to resume from")


def lr_10(d: Path):
    return judge_error(_fitted(d, "stages.rigid.lr=10"), "diverged", "Last good checkpoint", "Lower stages.rigid.lr")


def lr_1e6(d: Path):
    r = _fitted(d, "stages.rigid.lr=1e6")
    if (d / "run/final").exists() or list((d / "run").glob(".final*")):
        return "data lost", "a final/ was written"
    return judge_error(r, "diverged", "Lower stages.rigid.lr")


def advice_followed(d: Path):
    r = _fitted(d, "stages.rigid.lr=10")
    named = error_line(r).split("Last good checkpoint: ")[-1].split(". Lower")[0]
    if r.rc != 2 or not Path(named).is_file():
        return "unexpected", f"no checkpoint named ({error_line(r)})"
    from lasr.fit.checkpoint import load_checkpoint

    state = load_checkpoint(named)
    if not all(bool(v.isfinite().all()) for v in state["model"].values() if v.is_floating_point()):
        return "data lost", f"{named} holds non-finite parameters"
    r = cli("lasr.optimize", *fit_args(d, "clip", "train.checkpoint_every=1", "stages.rigid.lr=0.01"), "resume=true",
            "hydra.run.dir=run", cwd=d)
    return judge_ok(r, lambda: metrics_ok(d / "run"),
                    note=f"{Path(named).name} finite; resumed at lr=0.01 to a complete final/")


def kill_9_resume(d: Path):
    make_clip(d / "clip")
    args = fit_args(d, "clip", "train.checkpoint_every=1", "train.max_steps_per_stage=4", "stages.rigid.restarts=2",
                    "stages.rigid.batch_size=3", "stages.refine.batch_size=3",
                    "stages.rigid.weights.coverage=0.5")
    whole = cli("lasr.optimize", *args, "hydra.run.dir=whole", cwd=d)
    if whole.rc != 0:
        return judge_ok(whole, lambda: None)
    p = subprocess.Popen([sys.executable, "-m", "lasr.optimize", *args, "hydra.run.dir=killed"], cwd=d, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (d / "killed/ckpt/stage00_rigid_r0.pt").exists() and p.poll() is None:
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    if p.returncode != -signal.SIGKILL:
        return "unexpected", "the fit ended before it was killed"
    r = cli("lasr.optimize", *args, "resume=true", "hydra.run.dir=killed", cwd=d)

    def same() -> Optional[str]:
        a, b = (json.loads((d / run / "final/metrics.json").read_text())["frames"] for run in ("whole", "killed"))
        ia, ib = [f["mask_iou"] for f in a], [f["mask_iou"] for f in b]
        return None if ia == ib else f"per-frame IoU {ib} after the resume, {ia} uninterrupted"

    return judge_ok(r, same, note="killed in the 2nd rigid restart; per-frame IoU equal to the uninterrupted fit's")


def config_case(*override: str, words: tuple[str, ...]):
    def case(d: Path):
        make_clip(d / "clip")
        r = cli("lasr.optimize", *fit_args(d), *override, "hydra.run.dir=run", cwd=d)
        if (d / "cache").exists():
            return "unexpected", "work started before the config was checked"
        return judge_error(r, *words)

    case.__name__ = "config_" + "_".join(override)
    return case


def masks_other_aspect(d: Path):
    make_clip(d / "clip")
    for p in (d / "clip/masks").iterdir():
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (48, 48), interpolation=cv2.INTER_NEAREST))
    return judge_error(cli("preprocess", "video=clip/frames", "masks=clip/masks", "preprocess.flow=dis", cwd=d),
                       "another aspect ratio")


def truncated_flow(d: Path):
    make_clip(d / "clip")
    args = ["video=clip/frames", "masks=clip/masks", "preprocess.flow=dis", "cache_dir=cache"]
    cli("preprocess", *args, cwd=d)
    f = d / "cache/clip/flow/00002.npz"
    f.write_bytes(f.read_bytes()[:100])
    r = cli("lasr.optimize", *fit_args(d), "hydra.run.dir=run", cwd=d)
    return judge_ok(r, lambda: metrics_ok(d / "run"), expect_in_log="recomputing flow", note="exit 0")


def read_only_cache(d: Path):
    make_clip(d / "clip")
    args = ["video=clip/frames", "masks=clip/masks", "preprocess.flow=dis"]
    cli("preprocess", *args, "cache_dir=cache", cwd=d)
    before = tree(d / "cache")
    with read_only(d / "cache") as ro:
        r = cli("lasr.optimize", *fit_args(d, cache=str(ro)), "hydra.run.dir=run", cwd=d)
    return judge_ok(r, lambda: metrics_ok(d / "run") or (None if tree(d / "cache") == before else "cache changed"),
                    note="exit 0, fitted from the read-only cache, nothing in it changed")


def read_only_run_folder(d: Path):
    make_clip(d / "clip")
    (d / "runs").mkdir()
    with read_only(d / "runs") as ro:
        r = cli("lasr.optimize", *fit_args(d), f"hydra.run.dir={ro}/run", cwd=d)
    return judge_error(r, "cannot write the run folder")


def resume_other_video(d: Path):
    _fitted(d)
    make_clip(d / "other", seed=1)  # another clip of the same length and size
    r = cli("lasr.optimize", *fit_args(d, "other"), "resume=true", "hydra.run.dir=run", cwd=d)
    return judge_error(r, "another sequence")


def path_with_quote(d: Path):
    make_clip(d / "my clip's")
    return judge_error(cli("lasr.optimize", "video=my clip's/frames", cwd=d), """video="my clip's/frames\"""")


def path_non_ascii(d: Path):
    make_clip(d / "clipé")
    return judge_error(cli("preprocess", "video=clipé/frames", cwd=d), 'video="clipé/frames"')


CASES: list[tuple[str, Callable]] = [
    ("cache inside the input (video=dl/clip/frames cache_dir=dl)", cache_holds_the_input),
    ("cache is the input (video=clip masks=clip/masks cache_dir=.)", cache_is_the_input),
    ("name=../../x", name_traversal),
    ("name=/absolute/path", name_absolute),
    ("user files named like leftovers in the cache", lookalike_files_kept),
    ("two preprocess runs on one cache (512/256-like)", concurrent_preprocess),
    ("parallel sweep on a fresh cache (-m hydra/launcher=local)", parallel_sweep),
    ("crafted last.pt with __reduce__, resume=true", crafted_checkpoint),
    ("last.pt: 400 bytes overwritten, resume=true", damaged_checkpoint("overwritten")),
    ("last.pt truncated, resume=true", damaged_checkpoint("truncated")),
    ("last.pt empty, resume=true", damaged_checkpoint("empty")),
    ("last.pt and prev.pt damaged, resume=true", both_checkpoints_damaged),
    ("lr=10", lr_10),
    ("lr=1e6 (no half-written final/)", lr_1e6),
    ("diverged, then the report's advice (lower lr, resume)", advice_followed),
    ("kill -9 after a checkpoint, resume: same per-frame IoU", kill_9_resume),
    ("stages.rigid.iters=-5", config_case("stages.rigid.iters=-5", words=("stages.rigid.iters=-5", "must be >= 0"))),
    ("stages.rigid.batch_size=0", config_case("stages.rigid.batch_size=0", words=("stages.rigid.batch_size=0",))),
    ("stages.rigid.hypotheses=0", config_case("stages.rigid.hypotheses=0", words=("stages.rigid.hypotheses=0",))),
    ("stages.rigid.resolution=0", config_case("stages.rigid.resolution=0", words=("stages.rigid.resolution=0",))),
    ("preprocess.resolution=0", config_case("preprocess.resolution=0", words=("preprocess.resolution=0",))),
    ("masks of another aspect ratio", masks_other_aspect),
    ("truncated flow .npz in the cache", truncated_flow),
    ("complete cache on read-only storage", read_only_cache),
    ("read-only run folder", read_only_run_folder),
    ("resume=true with another video of the same length", resume_other_video),
    ("video=my clip's/frames (a quote)", path_with_quote),
    ("video=clipé/frames (non-ASCII)", path_non_ascii),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = ap.parse_args()
    rows = []
    for name, case in CASES:
        if args.only not in name:
            continue
        d = Path(tempfile.mkdtemp(prefix="lasr-fault-"))
        t0 = time.perf_counter()
        try:
            outcome, detail = case(d)
        except Exception as e:  # noqa: BLE001 - the script itself failed on this case
            outcome, detail = "unexpected", f"{type(e).__name__}: {e}"
        finally:
            if not args.keep:
                shutil.rmtree(d, ignore_errors=True)
        rows.append((name, outcome, detail))
        print(f"{outcome:12s} {time.perf_counter() - t0:5.0f}s  {name}", file=sys.stderr, flush=True)
    width = max(len(n) for n, _, _ in rows)
    print(f"\n| {'case'.ljust(width)} | outcome     | what the user sees |")
    print(f"|{'-' * (width + 2)}|-------------|--------------------|")
    for name, outcome, detail in rows:
        print(f"| {name.ljust(width)} | {outcome.ljust(11)} | {detail[:300].replace('|', '/')} |")
    good = all(o in (OK, ERROR) for _, o, _ in rows)
    print(f"\n{sum(o in (OK, ERROR) for _, o, _ in rows)} of {len(rows)} cases: clear error or recovered")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
