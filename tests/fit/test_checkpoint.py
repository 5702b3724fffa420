"""lasr.fit.checkpoint: checkpoints run no code, are checked, fall back to the previous
one, never hold NaN, and belong to one sequence."""

import hashlib
import io
import logging
import os
import shutil
import struct

import pytest
import torch

import lasr.losses as L
from lasr.errors import LasrError
from lasr.fit import Fitter
from lasr.fit.checkpoint import CheckpointError, NonFiniteState, load_checkpoint, save_checkpoint

from .synth import ellipsoid_scene

SHORT = ("stages=rigid", "train.max_steps_per_stage=3", "train.checkpoint_every=1", "train.progress=false",
         "stages.rigid.hypotheses=1")


class _Evil:
    """Unpickling it runs a shell command (creates ``marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _with_header(payload: bytes) -> bytes:
    """``payload`` in the documented file format (a valid header and checksum)."""
    return struct.pack("<8sI32sQ", b"LASRCKPT", 2, hashlib.blake2b(payload, digest_size=32).digest(),
                       len(payload)) + payload


def test_a_crafted_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"model": _Evil(marker), "stage_index": 0}, buf)
    (tmp_path / "raw.pt").write_bytes(buf.getvalue())  # a plain torch file, as an attacker would send
    (tmp_path / "framed.pt").write_bytes(_with_header(buf.getvalue()))  # ... or one with a valid checksum
    with pytest.raises(CheckpointError, match="not a lasr checkpoint"):
        load_checkpoint(tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="framed.pt holds something else than tensors and plain values"):
        load_checkpoint(tmp_path / "framed.pt")
    assert not marker.exists()


def test_a_checkpoint_holds_tensors_and_finite_plain_values_only(tmp_path):
    state = {"model": {"w": torch.ones(3)}, "steps": [1, 2.5, None, "x", (True, 3)]}
    save_checkpoint(state, tmp_path, "a.pt")
    back = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(back["model"]["w"], torch.ones(3)) and back["steps"] == [1, 2.5, None, "x", (True, 3)]
    with open(tmp_path / "a.pt", "rb") as f:  # the payload is a torch file that weights_only reads
        f.seek(struct.calcsize("<8sI32sQ"))
        assert torch.load(io.BytesIO(f.read()), weights_only=True)["steps"][1] == 2.5
    for bad, key in (({"model": {"w": torch.tensor([1.0, float("nan")])}}, "state.model.w"),
                     ({"loss": float("inf")}, "state.loss")):
        with pytest.raises(NonFiniteState, match=key.replace(".", r"\.")):
            save_checkpoint(bad, tmp_path / "b", "b.pt")
    with pytest.raises(TypeError, match="tensors and plain values"):
        save_checkpoint({"x": object()}, tmp_path / "b", "b.pt")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A short fit with a checkpoint every step: (its run folder, its clip, its config)."""
    from hydra import compose, initialize_config_dir

    from lasr.config import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(SHORT))
    run_dir = tmp_path_factory.mktemp("fitted")
    data, *_ = ellipsoid_scene(T=4, size=48)
    Fitter(cfg, data, run_dir, torch.device("cpu")).fit()
    return run_dir, data, cfg


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "empty"])
def test_a_damaged_last_checkpoint_is_named_and_the_previous_one_used(damage, fitted, tmp_path, caplog):
    run_dir, data, cfg = fitted
    shutil.copytree(run_dir / "ckpt", tmp_path / "ckpt")
    last, prev = tmp_path / "ckpt" / "last.pt", tmp_path / "ckpt" / "prev.pt"
    prev_step = load_checkpoint(prev)["global_step"]
    blob = bytearray(last.read_bytes())
    if damage == "overwritten":
        blob[len(blob) // 2: len(blob) // 2 + 400] = os.urandom(400)
    elif damage == "truncated":
        blob = blob[: len(blob) // 3]
    else:
        blob = bytearray()
    last.write_bytes(bytes(blob))
    again = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="lasr"):
        used = again.load_checkpoint(last)
    assert used == prev and again.global_step == prev_step
    assert any(str(last) in r.getMessage() and str(prev) in r.getMessage() for r in caplog.records)
    again.save_checkpoint("last.pt")  # the next checkpoint keeps the good one as prev.pt
    assert load_checkpoint(prev)["global_step"] == prev_step and (tmp_path / "ckpt" / "last.pt.damaged").is_file()
    last.write_bytes(bytes(blob))
    prev.write_bytes(prev.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"last\.pt.*prev\.pt is damaged"):
        Fitter(cfg, data, tmp_path, torch.device("cpu")).load_checkpoint(last)


def test_the_last_good_checkpoint_holds_no_nan(compose_cfg, tmp_path, monkeypatch):
    """A NaN gradient (finite loss) turns the parameters into NaN: the step is reported
    before the next checkpoint, and the checkpoint the report names resumes finite."""
    data, *_ = ellipsoid_scene(T=4, size=48)
    real, calls = L.flow_loss, {"n": 0}

    def nan_gradient(flow, *a, **k):
        calls["n"] += 1
        out = real(flow, *a, **k)
        if calls["n"] == 3:  # forward 0, backward sqrt'(0) = inf -> NaN in every moved parameter
            out = out + torch.sqrt((flow - flow.detach()).abs().sum())
        return out

    monkeypatch.setattr(L, "flow_loss", nan_gradient)
    fitter = Fitter(compose_cfg(*SHORT), data, tmp_path, torch.device("cpu"))
    with pytest.raises(LasrError, match=r"stage 'rigid', step 2 .*Last good checkpoint: (\S+)\. Lower") as e:
        fitter.fit()
    named = str(e.value).split("Last good checkpoint: ")[1].split(". Lower")[0]
    state = load_checkpoint(named)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    monkeypatch.setattr(L, "flow_loss", real)
    again = Fitter(compose_cfg(*SHORT), data, tmp_path, torch.device("cpu"))
    again.load_checkpoint(named)
    again.fit()
    assert all(torch.isfinite(p).all() for p in again.model.parameters())


def test_a_resume_on_another_sequence_is_refused(fitted):
    run_dir, data, cfg = fitted
    other, *_ = ellipsoid_scene(T=4, size=48, turn_deg=-6.0)  # another clip of the same length and size
    with pytest.raises(LasrError, match="another sequence"):
        Fitter(cfg, other, run_dir, torch.device("cpu")).load_checkpoint(run_dir / "ckpt" / "last.pt")
    Fitter(cfg, data, run_dir, torch.device("cpu")).load_checkpoint(run_dir / "ckpt" / "last.pt")  # its own: fine
