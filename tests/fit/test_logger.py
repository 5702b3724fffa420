"""lasr.fit.logger and lasr.fit.panels: TensorBoard is handed values, and the flow colours
of several flows share one scale."""

import numpy as np
import torch

from lasr.fit.logger import FitLogger
from lasr.fit.panels import flow_colors


class Recorder:
    def __init__(self):
        self.calls = []

    def add_scalar(self, tag, value, step):
        self.calls.append(("scalar", tag, step))

    def add_image(self, tag, img, step, dataformats):
        self.calls.append(("image", tag, step))

    def add_mesh(self, tag, **kw):
        self.calls.append(("mesh", tag, kw["global_step"]))


def test_logger_logs_when_due_and_nothing_without_a_writer():
    rec = Recorder()
    log = FitLogger(rec, log_every=2, image_every=3)
    for step in (1, 2):
        log.step(step, {"silhouette": 0.5, "iou": 0.9}, {"shape": 0.01}, focal=1.2)
    assert ("scalar", "loss/silhouette", 2) in rec.calls and ("scalar", "metric/iou", 2) in rec.calls
    assert all(c[2] == 2 for c in rec.calls)  # step 1 is not due
    assert log.wants_panels(3) and not log.wants_panels(2)
    log.mesh("mesh/x", 5, torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), torch.ones(3, 3))
    assert rec.calls[-1] == ("mesh", "mesh/x", 5)
    quiet = FitLogger(None)
    quiet.step(10, {"a": 1.0}, {}, 1.0)
    quiet.stage_start(0, 0, 1, 1, None, None)
    assert not quiet.wants_scalars(10) and not quiet.wants_panels(100)


def test_flow_colors_share_one_scale():
    f = torch.zeros(2, 8, 8, 2)
    f[0, :, :, 0] = 1.0  # half the scale, to the right
    f[1, :, :, 0] = 5.0  # beyond the scale: clipped to it
    img = flow_colors(f, scale=2.0)
    assert img.shape == (2, 8, 8, 3) and img.dtype == np.uint8
    zero = flow_colors(torch.zeros(1, 4, 4, 2), scale=2.0)
    assert (zero == 255).all()  # no motion is white
    sat = lambda x: x.max(-1).astype(int) - x.min(-1).astype(int)  # noqa: E731
    assert (sat(img[1]) > sat(img[0])).all()  # twice the flow, more saturated
    assert np.array_equal(flow_colors(f[:1], 2.0)[0], img[0])  # colours do not depend on the other flows
