"""Differentiable soft rasteriser in pure PyTorch (CPU and GPU).

``rasterize`` (no gradients) selects K faces per pixel (within the blur radius), testing
each face only against the pixels of its own screen box in horizontal bands of rows
(never every pixel against every face); ``blend`` recomputes distances, depths and barycentrics
for those faces with plain tensor ops and produces the SoftRas silhouette
(Liu et al. 2019), depth-blended per-vertex attributes (SoftRas / PyTorch3D
softmax blend) and rendered optical flow (as in LASR, Yang et al. 2021).
Pixel units and OpenCV camera conventions throughout; see
:class:`RasterSettings` for the settings and their units.
"""

from .shade import RenderOutput, blend, blend_attributes, render_flow, soft_silhouette
from .camera import PerspectiveCamera, as_camera
from .raster import Fragments, choose_bin_size, project_faces, rasterize
from .renderer import SoftRenderer, render
from .settings import RasterSettings

__all__ = [
    "Fragments",
    "PerspectiveCamera",
    "RasterSettings",
    "RenderOutput",
    "SoftRenderer",
    "as_camera",
    "blend",
    "blend_attributes",
    "choose_bin_size",
    "project_faces",
    "rasterize",
    "render",
    "render_flow",
    "soft_silhouette",
]
