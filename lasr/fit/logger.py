"""What a fit writes to TensorBoard. Every method is handed values: nothing here reads the
fitter. Without a writer every call does nothing."""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["FitLogger", "DIAGNOSTICS"]

DIAGNOSTICS = ("iou", "flow_epe_px")  # logged under metric/, the loss terms under loss/


class FitLogger:
    """Scalars, panels and meshes of a fit in a TensorBoard ``SummaryWriter``.

    Args:
        writer: a ``SummaryWriter`` or None (nothing is logged).
        log_every: steps between scalars; image_every: steps between panels (0: never).
    """

    def __init__(self, writer=None, log_every: int = 10, image_every: int = 100):
        self.writer, self.log_every, self.image_every = writer, int(log_every), int(image_every)

    def wants_scalars(self, step: int) -> bool:
        return self.writer is not None and step % self.log_every == 0

    def wants_panels(self, step: int) -> bool:
        return self.writer is not None and self.image_every > 0 and step % self.image_every == 0

    def step(self, step: int, record: dict[str, float], lrs: dict[str, float], focal: float) -> None:
        """One optimizer step's loss terms and diagnostics, learning rates and focal length."""
        if not self.wants_scalars(step):
            return
        for k, v in record.items():
            self.writer.add_scalar(f"{'metric' if k in DIAGNOSTICS else 'loss'}/{k}", v, step)
        for name, lr in lrs.items():
            self.writer.add_scalar(f"lr/{name}", lr, step)
        self.writer.add_scalar("model/focal", focal, step)

    def stage_start(self, step: int, index: int, num_bones: int, num_faces: int,
                    iou_before: Optional[float], iou_after: Optional[float]) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("stage/index", index, step)
        self.writer.add_scalar("stage/num_bones", num_bones, step)
        self.writer.add_scalar("stage/num_faces", num_faces, step)
        if iou_before is not None:
            self.writer.add_scalar("stage/iou_before_change", iou_before, index)
            self.writer.add_scalar("stage/iou_after_change", iou_after, index)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def panels(self, step: int, image: np.ndarray) -> None:
        if self.writer is not None:
            self.writer.add_image("panels/frame_mask_render_flowobs_flowrender_color", image, step, dataformats="HWC")

    def mesh(self, tag: str, step: int, verts, faces, colors) -> None:
        """A mesh (``(V,3)`` vertices, faces, ``(V,3)`` colours in [0, 1]) in the 3D tab."""
        if self.writer is None:
            return
        import torch

        self.writer.add_mesh(tag, vertices=verts[None].cpu(), faces=faces[None].cpu(),
                             colors=(colors.clamp(0, 1)[None] * 255).to(torch.uint8).cpu(), global_step=step)

    def turn(self, tag: str, degrees) -> None:
        """A per-frame curve (e.g. the root's turn from frame 0, degrees), frame as step."""
        if self.writer is not None:
            for t, d in enumerate(degrees):
                self.writer.add_scalar(tag, float(d), t)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)
