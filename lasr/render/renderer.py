"""Rasterise-then-blend convenience wrapper."""

from __future__ import annotations

from torch import Tensor

from .shade import RenderOutput, blend
from .camera import PerspectiveCamera
from .raster import Fragments, rasterize
from .settings import RasterSettings

__all__ = ["render", "SoftRenderer"]


def render(
    verts: Tensor,
    faces: Tensor,
    cameras: PerspectiveCamera | Tensor,
    settings: RasterSettings,
    *,
    silhouette: bool = True,
    attributes: Tensor | None = None,
    background: float | Tensor = 0.0,
    verts_next: Tensor | None = None,
    cameras_next: PerspectiveCamera | Tensor | None = None,
    fragments: Fragments | None = None,
) -> RenderOutput:
    """:func:`rasterize` (no grad) followed by :func:`blend` (differentiable).

    Shapes as in :func:`lasr.render.shade.blend`: ``verts (B, V, 3)`` camera
    space, ``faces (F, 3)``, ``cameras`` ``(B, 4)`` or
    :class:`PerspectiveCamera`; outputs ``silhouette (B, H, W)``,
    ``attributes (B, H, W, C)``, ``flow (B, H, W, 2)``, ``mask (B, H, W)``.
    Pass precomputed ``fragments`` to skip rasterisation.
    """
    if fragments is None:
        fragments = rasterize(verts.detach(), faces, cameras, settings)
    return blend(
        verts, faces, cameras, fragments, settings, silhouette=silhouette, attributes=attributes,
        background=background, verts_next=verts_next, cameras_next=cameras_next,
    )


class SoftRenderer:
    """Holds a :class:`RasterSettings`; ``renderer(verts, faces, cameras, ...)``
    is :func:`render` with those settings."""

    def __init__(self, settings: RasterSettings) -> None:
        self.settings = settings

    def rasterize(self, verts: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor) -> Fragments:
        return rasterize(verts.detach(), faces, cameras, self.settings)

    def __call__(self, verts: Tensor, faces: Tensor, cameras: PerspectiveCamera | Tensor, **kw) -> RenderOutput:
        return render(verts, faces, cameras, self.settings, **kw)

    def __repr__(self) -> str:
        return f"SoftRenderer({self.settings!r})"
