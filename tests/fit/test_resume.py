"""A fit killed by SIGKILL (``kill -9``) after a checkpoint and resumed ends exactly as
the same fit not interrupted: the same per-frame mask IoU, on CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lasr.fit import fit
from tests.preprocess.synth import write_folder

from .synth import ellipsoid_scene

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from lasr.fit import fit
fit(**json.loads(sys.argv[2]))
"""


def test_a_fit_killed_after_a_checkpoint_resumes_to_the_same_result(tmp_path):
    data, *_ = ellipsoid_scene(T=5, size=40)
    clip = tmp_path / "clip"
    write_folder(clip / "frames", (data.rgb.numpy() * 255).astype(np.uint8))
    write_folder(clip / "masks", data.mask.numpy() > 0.5)
    # rigid restarts (two seeds), hypotheses and their mirrors, random batches of 3 of the 5 frames, the coverage
    # term (torch's global generator): every random state a resume must restore
    args = {"video": str(clip / "frames"), "masks": str(clip / "masks"), "stages": "rigid",
            "cache_dir": str(tmp_path / "cache"), "preprocess": {"flow": "dis"},
            "train": {"max_steps_per_stage": 3, "checkpoint_every": 1, "progress": False},
            "stages.rigid.restarts": 2, "stages.rigid.restart_until": "rigid", "stages.rigid.hypotheses": 2,
            "stages.rigid.hypothesis_iters": 2,
            **{f"stages.{s}.{k}": v for s in ("rigid", "refine")
               for k, v in (("resolution", 32), ("batch_size", 3), ("weights.coverage", 0.5))}}

    whole = fit(**args, out=str(tmp_path / "whole"))  # not interrupted

    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(torch.get_num_threads()),
                              json.dumps({**args, "out": str(run)})], env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (run / "ckpt" / "stage00_rigid_r0.pt").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)  # in the second restart; as kill -9: no cleanup, maybe mid-write
    child.wait(60)
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    assert not (run / "final").exists()

    resumed = fit(**args, out=str(run), resume=True)
    iou = [f["mask_iou"] for f in resumed.metrics["frames"]]
    assert iou == [f["mask_iou"] for f in whole.metrics["frames"]]
    assert resumed.metrics["restarts_kept"] == whole.metrics["restarts_kept"]
