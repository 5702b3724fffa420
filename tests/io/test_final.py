"""lasr.io.final under faults: a degenerate model (what a diverged fit leaves) is a clear
error and no final/ appears, half written or whole; metrics.json is always valid JSON."""

import json

import numpy as np
import pytest

from lasr.errors import LasrError
from lasr.io.final import FinalContent, write_final
from lasr.io.gltf import write_glb

from .test_gltf import synthetic_skeleton


def _content(**change) -> FinalContent:
    sk = synthetic_skeleton(B=3, T=2)
    X = sk["rest_vertices"]
    T = sk["bone_transforms"].shape[0]
    base = dict(verts=np.stack([X] * T), faces=sk["faces"], rest_verts=X, colors=np.full_like(X, 0.5),
                intrinsics=np.tile([50.0, 50.0, 31.5, 23.5], (T, 1)), source_size=(64, 48),
                source_frames=np.arange(T), skeleton=sk, fps=10.0,
                metrics={"mean_mask_iou": float("nan"), "frames": [{"mask_iou": float("inf")}],
                         "loss": np.float64("nan")})
    base.update(change)
    return FinalContent(**base)


def test_metrics_json_is_always_valid_json(tmp_path):
    final = write_final(tmp_path / "final", _content())
    text = (final / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert metrics["mean_mask_iou"] is None and metrics["frames"][0]["mask_iou"] is None and metrics["loss"] is None


@pytest.mark.parametrize("change, says", [
    ({"intrinsics": np.tile([0.0, 0.0, 31.5, 23.5], (2, 1))}, "a focal length is not positive"),
    ({"verts": np.full((2, 1, 3), np.nan)}, "verts is not finite"),
])
def test_a_degenerate_model_is_a_clear_error_and_writes_nothing(change, says, tmp_path):
    write_final(tmp_path / "final", _content())  # an older, good final/
    before = sorted(p.name for p in (tmp_path / "final").iterdir())
    with pytest.raises(LasrError, match=f"cannot be exported: {says} .*Nothing was written"):
        write_final(tmp_path / "final", _content(**change))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temporary folder left
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == before


def test_the_gltf_writer_refuses_a_zero_focal_length(tmp_path):
    with pytest.raises(ValueError, match="intrinsics .* must be finite and > 0"):
        write_glb(tmp_path / "a.glb", synthetic_skeleton(B=3, T=2), intrinsics=(0.0, 0.0, 64, 48))
