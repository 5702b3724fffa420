"""Every schedule runs end to end and its final/ keeps the contract (lasr.fit.export + lasr.io.final)."""

import json

import numpy as np
import pytest
import torch

from lasr.fit import Fitter
from lasr.fit.export import final_content, fit_metrics
from lasr.io.final import read_final, write_final
from lasr.io.gltf import opencv_from_gltf
from lasr.io.obj import read_obj
from tests.gltf_reader import read_glb_and_pose

from .synth import ellipsoid_scene

def _export(fitter, data, out, fps=None):
    metrics = fit_metrics(fitter.model, data, fitter.results, fitter.restarts.kept, {}, fitter.device)
    return write_final(out, final_content(fitter.model, data, metrics, fps))


def test_output_meshes_project_with_output_cameras(compose_cfg, tmp_path):
    """final/meshes + final/cameras.json reproduce the model's silhouettes (the contract)."""
    data, *_ = ellipsoid_scene(T=3, size=48)
    cfg = compose_cfg("stages=rigid", "train.max_steps_per_stage=3", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    fitter.fit()
    final = _export(fitter, data, tmp_path / "final")
    cams = json.loads((final / "cameras.json").read_text())["frames"]
    for t in range(3):
        V, _ = read_obj(final / "meshes" / f"{t:05d}.obj")
        c = cams[t]
        uv = np.stack([c["fx"] * V[:, 0] / V[:, 2] + c["cx"], c["fy"] * V[:, 1] / V[:, 2] + c["cy"]], -1)
        with torch.no_grad():
            ref = fitter.model(torch.tensor([t]))[0]
            K = fitter.model.focal(torch.tensor([t])) * 48
        ref_uv = (ref[:, :2] / ref[:, 2:] * K + 23.5).numpy()
        np.testing.assert_allclose(uv, ref_uv, atol=1e-3)


def test_final_is_replaced_whole_and_metrics_stay_json(compose_cfg, tmp_path):
    """A second export replaces final/ (no stale meshes), its glb keys run at the given fps,
    and a frame without reliable flow is null in metrics.json, not NaN."""
    data, *_ = ellipsoid_scene(T=3, size=48)
    data.conf_fw[1] = 0.0  # no reliable flow from frame 1 to 2
    cfg = compose_cfg("stages=rigid", "train.max_steps_per_stage=1", "train.progress=false")
    fitter = Fitter(cfg, data, tmp_path, torch.device("cpu"))
    fitter.fit()
    (tmp_path / "final" / "meshes").mkdir(parents=True)
    (tmp_path / "final" / "meshes" / "00009.obj").write_text("stale")
    final = _export(fitter, data, tmp_path / "final", fps=12.0)
    assert sorted(p.name for p in (final / "meshes").iterdir()) == ["00000.obj", "00001.obj", "00002.obj"]
    text = (final / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)["frames"][1]["flow_epe_px"] is None
    run = read_final(tmp_path)
    assert run.num_frames == 3 and run.metrics()["num_bones"] == 1
    assert not list(tmp_path.glob(".final*"))  # nothing left beside it
    from tests.gltf_reader import glb_key_times

    assert glb_key_times(final / "animation.glb")[-1] == pytest.approx(2 / 12.0)
