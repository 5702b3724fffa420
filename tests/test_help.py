"""Every command starts its --help with what it does and examples, then documents its keys."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "lasr.optimize": ("Fit an articulated 3D model", ["video=", "stages.NAME.iters=", "train.seed="]),
    "preprocess": ("Preprocess one video", ["video=", "preprocess.flow=", "preprocess.raft.checkpoint="]),
    "lasr.videos": ("Videos and stills of a finished fit", ["run=", "outputs=", "color=skin"]),
    "lasr.evaluate": ("Score a fit", ["run=", "gt=", "frames="]),
    "lasr.view": ("Look at a finished fit in the browser", ["run=", "port=8080", "host=127.0.0.1", "video="]),
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_starts_with_a_description_and_examples(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    text = r.stdout
    what, keys = COMMANDS[module]
    assert text.splitlines()[0].startswith(f"python -m {module}")
    assert what in "\n".join(text.splitlines()[:3])
    assert text.index("Examples:") < text.index("Keys")
    for k in keys:
        assert k in text, k
    assert len(text.splitlines()) < 200
    if module == "preprocess":  # only what preprocessing reads
        assert "stages" not in text and "train." not in text and "resume" not in text
