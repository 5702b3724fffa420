"""Short fits of every schedule on a synthetic clip, recorded as a reference.

The file ``reference_fits.npz`` beside this module holds, for each schedule in
``conf/stages``, what a few steps per stage (fixed seed) produce: the posed vertices of
every frame (every k-th vertex), the full-frame intrinsics and the per-frame mask IoU.
``tests/fit/test_schedules.py`` reproduces them to 1e-6, so a change meant to move code
without changing what is fitted shows when it does change it.

A fit repeats to the last digit on one machine but not on a CPU with other vector kernels
(README, Results: "The same code on another CPU draws other fits"), so the file may hold
one set of references per kind of machine (the first under ``SCHEDULE/KEY``, the others
under ``altN/SCHEDULE/KEY``), and a short fit must reproduce one of them.

When the fit changes on purpose, record anew (this drops every other machine's set) and
say so in the commit; to add this machine's set to the recorded ones (the fit unchanged)::

    uv run python -m tests.fit.reference          # record anew
    uv run python -m tests.fit.reference --add    # add this machine's set
"""

from __future__ import annotations

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


def reference_sets(path: Path = REFERENCE) -> list[dict[str, np.ndarray]]:
    """The recorded sets, one per kind of machine: ``{"SCHEDULE/KEY": array}`` each."""
    ref = np.load(path)
    sets: dict[str, dict[str, np.ndarray]] = {}
    for key in ref.files:
        head, _, rest = key.partition("/")
        prefix, name = (head, rest) if head.startswith("alt") else ("", key)
        sets.setdefault(prefix, {})[name] = ref[key]
    return [sets[k] for k in sorted(sets)]


def record(path: Path = REFERENCE, add: bool = False) -> None:
    import tempfile

    torch.set_num_threads(2)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in schedules():
            for k, v in summary(*short_fit(name, Path(tmp) / name)).items():
                out[f"{name}/{k}"] = v
            print(f"{name}: IoU {out[f'{name}/iou'].round(4).tolist()}, {int(out[f'{name}/num_faces'])} faces")
    if add and path.exists():
        old = dict(np.load(path))
        prefix = f"alt{len(reference_sets(path))}/"
        out = {**old, **{prefix + k: v for k, v in out.items()}}
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(reference_sets(path))} set(s))")


if __name__ == "__main__":
    import sys

    record(add="--add" in sys.argv[1:])
