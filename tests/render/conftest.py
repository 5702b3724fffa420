"""Fixtures for the renderer tests (helpers live in ``render_helpers.py``)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _threads():
    # one intra-op thread: the renderer's chunks are cache-sized, so extra
    # OpenMP threads barely help, and they stall badly on a shared, loaded CPU
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
