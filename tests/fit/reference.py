"""Short fits of every schedule on a synthetic clip, recorded as a reference.

The file ``reference_fits.npz`` beside this module holds, for each schedule in
``conf/stages``, what a few steps per stage (fixed seed) produce: the posed vertices of
every frame (every k-th vertex), the full-frame intrinsics and the per-frame mask IoU.
``tests/fit/test_schedules.py`` reproduces them to 1e-6, so a change meant to move code
without changing what is fitted shows when it does change it.

A fit repeats to the last digit with one set of PyTorch's CPU kernels but not with another:
PyTorch picks them by the CPU's vector instructions (``torch.backends.cpu.get_cpu_capability()``:
``AVX512``, ``AVX2``, ``DEFAULT``), and they sum in other orders (README, Results: "The same
code on another CPU draws other fits"). So the file holds one set of references per
capability, under ``CAPABILITY/SCHEDULE/KEY``, and a short fit must reproduce the set of the
capability it runs with. The environment variable ``ATEN_CPU_CAPABILITY`` (``avx2``,
``default``) makes a CPU use a lower capability's kernels, so an AVX512 machine can record
and check the AVX2 set too.

When the fit changes on purpose, record anew (this drops the other capabilities' sets) and
say so in the commit; to add a capability's set to the recorded ones (the fit unchanged)::

    uv run python -m tests.fit.reference                                 # record anew
    uv run python -m tests.fit.reference --add                           # add this CPU's set
    ATEN_CPU_CAPABILITY=avx2 uv run python -m tests.fit.reference --add  # add the AVX2 set
    uv run python -m tests.fit.reference --check SCHEDULE                # exit 0 when reproduced
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(__file__).with_name("reference_fits.npz")
STEPS = 3  # per stage, hypotheses and restarts included
KEEP = 200  # vertices kept per frame (every k-th)


def short_fit(schedule: str, run_dir: Path, writer=None):
    """Fit ``schedule`` for ``STEPS`` steps per stage on a 4-frame synthetic clip; returns
    the fitter and the clip. A TensorBoard ``writer`` logs every step and draws panels
    (which changes nothing fitted)."""
    from hydra import compose, initialize_config_dir

    from lasr.config import conf_dir
    from lasr.fit import Fitter

    from .synth import ellipsoid_scene

    torch.manual_seed(0)
    data, *_ = ellipsoid_scene(T=4, size=48)
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"stages={schedule}", f"train.max_steps_per_stage={STEPS}",
                                           "train.progress=false", "train.distill_steps=5", "train.log_every=1",
                                           "train.image_every=1"])
    fitter = Fitter(cfg, data, run_dir, torch.device("cpu"), writer)
    fitter.fit()
    return fitter, data


def summary(fitter, data) -> dict[str, np.ndarray]:
    """What the reference records of a fit."""
    from lasr.data import full_intrinsics

    model = fitter.model
    with torch.no_grad():
        verts = model().cpu().numpy()
        K = full_intrinsics(model.focal().cpu(), data.image_size).numpy()
    step = max(1, verts.shape[1] // KEEP)
    return {"verts": verts[:, ::step].astype(np.float64), "num_verts": np.array(verts.shape[1]),
            "num_faces": np.array(model.faces.shape[0]), "num_bones": np.array(model.num_bones),
            "intrinsics": K.astype(np.float64), "iou": fitter.full_frame_iou().numpy().astype(np.float64)}


def schedules() -> list[str]:
    from lasr.config import conf_dir

    return sorted(p.stem for p in (conf_dir() / "stages").glob("*.yaml"))


def capability() -> str:
    """The vector kernels PyTorch runs with here: ``AVX512``, ``AVX2``, ``DEFAULT``, ..."""
    return torch.backends.cpu.get_cpu_capability()


# kernels a CPU with the key's capability can also run (ATEN_CPU_CAPABILITY), best first
LOWER = {"AVX512": ("AVX2", "DEFAULT"), "AVX2": ("DEFAULT",)}


def reference_sets(path: Path = REFERENCE) -> dict[str, dict[str, np.ndarray]]:
    """The recorded sets by capability: ``{"AVX512": {"SCHEDULE/KEY": array}, ...}``."""
    ref = np.load(path)
    sets: dict[str, dict[str, np.ndarray]] = {}
    for key in ref.files:
        cap, _, name = key.partition("/")
        sets.setdefault(cap, {})[name] = ref[key]
    return sets


def difference(got: dict, ref: dict, schedule: str):
    """None when ``got`` (a :func:`summary`) reproduces the set ``ref`` (counts equal,
    arrays to 1e-6), else what differs first."""
    for key in ("num_verts", "num_faces", "num_bones"):
        if int(got[key]) != int(ref[f"{schedule}/{key}"]):
            return f"{key} {int(got[key])} against {int(ref[f'{schedule}/{key}'])}"
    for key in ("verts", "intrinsics", "iou"):
        err = float(np.abs(got[key] - ref[f"{schedule}/{key}"]).max())
        if not err <= 1e-6:
            return f"{key} off by up to {err:.3g}"
    return None


def with_kernels(cap: str) -> dict[str, str]:
    """The environment of a process that runs PyTorch's ``cap`` kernels."""
    return {**os.environ, "ATEN_CPU_CAPABILITY": cap.lower()}


def check(schedule: str, path: Path = REFERENCE) -> str | None:
    """Run the short fit of ``schedule``; None when it reproduces this capability's set,
    else what differs (or that no set is recorded for it)."""
    import tempfile

    torch.set_num_threads(2)
    sets = reference_sets(path)
    if capability() not in sets:
        return f"no set recorded for {capability()} (recorded: {', '.join(sorted(sets))})"
    with tempfile.TemporaryDirectory() as tmp:
        got = summary(*short_fit(schedule, Path(tmp) / schedule))
    return difference(got, sets[capability()], schedule)


def record(path: Path = REFERENCE, add: bool = False) -> None:
    import tempfile

    torch.set_num_threads(2)
    cap = capability()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in schedules():
            for k, v in summary(*short_fit(name, Path(tmp) / name)).items():
                out[f"{cap}/{name}/{k}"] = v
            print(f"{cap} {name}: IoU {out[f'{cap}/{name}/iou'].round(4).tolist()}, "
                  f"{int(out[f'{cap}/{name}/num_faces'])} faces")
    if add and path.exists():
        old = {k: v for k, v in np.load(path).items() if not k.startswith(cap + "/")}
        out = {**old, **out}
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({path.stat().st_size} bytes, sets for {', '.join(sorted(reference_sets(path)))})")


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    if args[:1] == ["--check"]:
        problem = check(args[1])
        print(f"{args[1]} with {capability()} kernels: " + (problem or "reproduced"))
        sys.exit(problem is not None)
    record(add="--add" in args)
