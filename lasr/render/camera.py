"""Batched pinhole camera in pixel units (OpenCV convention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PerspectiveCamera", "as_camera"]


@dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole intrinsics, one set per frame.

    Convention (OpenCV): camera x right, y down, z forward; a camera-space
    point ``(x, y, z)`` projects to ``u = fx * x / z + cx``,
    ``v = fy * y / z + cy`` in pixels, pixel centres at integer ``(u, v)``
    (so the image centre is ``((W - 1) / 2, (H - 1) / 2)``).

    Attributes:
        intrinsics: ``(B, 4)`` float tensor ``(fx, fy, cx, cy)`` in pixels
            (``(4,)`` is accepted and becomes ``(1, 4)``; a batch of 1
            broadcasts against any number of frames).
    """

    intrinsics: Tensor

    def __post_init__(self) -> None:
        k = torch.as_tensor(self.intrinsics)
        if k.dim() == 1:
            k = k.unsqueeze(0)
        if k.dim() != 2 or k.shape[-1] != 4:
            raise ValueError(f"intrinsics must be (B, 4) (fx, fy, cx, cy), got {tuple(k.shape)}")
        object.__setattr__(self, "intrinsics", k)

    @classmethod
    def from_fov(
        cls, image_size: tuple[int, int], fov_x_deg: float, batch: int = 1, **kw
    ) -> "PerspectiveCamera":
        """Square-pixel camera with horizontal field of view ``fov_x_deg``,
        principal point at the image centre ``((W-1)/2, (H-1)/2)``."""
        h, w = image_size
        f = (w / 2.0) / torch.tan(torch.deg2rad(torch.tensor(fov_x_deg / 2.0, dtype=torch.float64)))
        k = torch.tensor([float(f), float(f), (w - 1) / 2.0, (h - 1) / 2.0], **kw)
        return cls(k.expand(batch, 4).clone())

    @property
    def batch_size(self) -> int:
        return self.intrinsics.shape[0]

    def to(self, *args, **kwargs) -> "PerspectiveCamera":
        return PerspectiveCamera(self.intrinsics.to(*args, **kwargs))

    def project(self, points: Tensor, near: float | None = None) -> tuple[Tensor, Tensor]:
        """Project camera-space points to pixels.

        Args:
            points: ``(B, N, 3)`` camera-space points (B may be 1 on either side).
            near: if given, depths are clamped to ``>= near`` before the
                division, so points behind the camera give finite ``uv`` and
                finite (zero) gradients w.r.t. their depth.  Callers must
                treat such points as invalid themselves.

        Returns:
            ``uv``: ``(B, N, 2)`` pixel coordinates, and ``z``: ``(B, N)`` the
            (unclamped) depths.
        """
        k = self.intrinsics.to(dtype=points.dtype, device=points.device)
        z = points[..., 2]
        zs = z.clamp_min(near) if near is not None else z
        f = k[:, None, 0:2]
        c = k[:, None, 2:4]
        uv = points[..., :2] / zs.unsqueeze(-1) * f + c
        return uv, z


def as_camera(cameras: "PerspectiveCamera | Tensor") -> PerspectiveCamera:
    """Accept either a :class:`PerspectiveCamera` or a ``(B, 4)`` / ``(4,)``
    intrinsics tensor ``(fx, fy, cx, cy)``."""
    if isinstance(cameras, PerspectiveCamera):
        return cameras
    return PerspectiveCamera(torch.as_tensor(cameras))
