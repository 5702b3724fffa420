"""Settings of the soft rasterizer (one frozen dataclass, no literals elsewhere)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RasterSettings", "FLOW_GRADIENTS"]

FLOW_GRADIENTS = ("surface", "points")  # what the rendered flow's gradient moves (RasterSettings.flow_gradient)


@dataclass(frozen=True)
class RasterSettings:
    """Everything that parameterises :func:`rasterize` and the blend functions.

    Units are pixels throughout (OpenCV convention, pixel ``(u, v)`` has its
    centre at integer coordinates ``(u, v)``).

    Attributes:
        image_size: ``(H, W)`` of the rendered images; rendered tensors are
            indexed ``[..., v, u]``.
        sigma: SoftRas sharpness in **squared pixels**.  A face contributes
            ``D = sigmoid(s * d^2 / sigma)`` to a pixel, with ``d`` the Euclidean
            pixel-to-triangle distance in pixels and ``s = +1`` inside the
            projected triangle, ``-1`` outside (Liu et al. 2019, eq. 3).  To
            convert SoftRas' NDC sigma (image spanning [-1, 1]) use
            ``sigma_px = sigma_ndc * (W / 2)**2``; e.g. LASR's ``1e-4`` at 256 px
            is ~1.6 px^2.  ``sigma = 0`` gives a hard (0/1) coverage test.
        gamma: SoftRas/PyTorch3D softmax temperature of the depth-aware blend,
            acting on the normalised depth ``(far - z) / (far - near)``
            (dimensionless, 1 at ``near``, 0 at ``far``).
        faces_per_pixel: ``K``, the number of faces kept per pixel among those
            within the blur radius (chosen by ``rank``).
        rank: how the ``K`` faces are chosen when more are within the blur
            radius: ``"hybrid"`` (default), ``"weight"``, ``"coverage"`` or
            ``"depth"``; see :func:`lasr.render.raster.ranking_weights`.
        bin_size: height in rows of the horizontal bands the rasteriser
            processes one at a time (the rows of all frames stacked; the
            candidate faces of a band's pixels are ranked together); ``None``
            picks the tallest band that keeps the sort keys and memory bounded
            (see :func:`lasr.render.raster.choose_bin_size`).  Results do not
            depend on it.
        blur_eps: faces whose probability ``D`` at a pixel would be below this
            value are ignored there.  This sets the blur radius
            ``r^2 = sigma * log(1 / blur_eps - 1)`` (SoftRas ``dist_eps``).
        near: faces with any vertex at ``z <= near`` are culled (never
            rasterised, never produce NaN); also the ``near`` of the depth
            normalisation.
        far: faces with any vertex at ``z >= far`` are culled; also the
            ``far`` of the depth normalisation.
        blend_eps: the background's normalised depth in the softmax blend
            (PyTorch3D ``softmax_rgb_blend`` eps); the background colour gets
            weight ``exp((blend_eps - zmax) / gamma)``.
        min_area: faces with ``|2 * area| <= min_area`` (squared pixels) on
            screen are treated as degenerate and culled.
        chunk_pairs: number of (pixel, face) pairs, counted over the
            faces' padded bounding boxes, that the rasteriser evaluates at
            once; bounds memory and, on CPU, keeps the temporaries near the
            cache.  ``None``: 32768 on CPU, 4M on GPU.  Used by the
            vectorised path only.
        backend: how :func:`lasr.render.rasterize` runs: ``"auto"`` (the
            compiled Numba loops on CPU when Numba is installed, else the
            vectorised PyTorch path), ``"numba"`` (CPU only) or ``"torch"``
            (vectorised; the GPU path).  Both select the same faces.
        flow_gradient: what the rendered flow's gradient moves (its values are the same
            either way): ``"surface"`` (the flow as a function of every vertex: moving
            frame ``t``'s vertices also slides which surface point each pixel sees, and
            its blend weights) or ``"points"`` (each pixel's surface points and blend
            weights held where frame ``t`` puts them: the flow
            ``pi_t'(X'(beta)) - pi_t(X(beta))`` moves only those points, in both frames;
            see :func:`lasr.render.shade.blend`).
    """

    image_size: tuple[int, int]
    sigma: float = 1.0
    gamma: float = 1e-4
    faces_per_pixel: int = 8
    rank: str = "hybrid"
    bin_size: int | None = None
    blur_eps: float = 1e-4
    near: float = 1e-2
    far: float = 100.0
    blend_eps: float = 1e-10
    min_area: float = 1e-10
    chunk_pairs: int | None = None
    backend: str = "auto"
    flow_gradient: str = "surface"

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.image_size)
        object.__setattr__(self, "image_size", (h, w))
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.faces_per_pixel < 1:
            raise ValueError(f"faces_per_pixel must be >= 1, got {self.faces_per_pixel}")
        if self.rank not in ("hybrid", "weight", "coverage", "depth"):
            raise ValueError(f"rank must be hybrid, weight, coverage or depth, got {self.rank!r}")
        if self.bin_size is not None and self.bin_size < 1:
            raise ValueError(f"bin_size must be >= 1 or None, got {self.bin_size}")
        if not 0.0 < self.blur_eps < 0.5:
            raise ValueError(f"blur_eps must be in (0, 0.5), got {self.blur_eps}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        if self.chunk_pairs is not None and self.chunk_pairs < 1:
            raise ValueError("chunk_pairs must be >= 1")
        if self.backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be auto, numba or torch, got {self.backend!r}")
        if self.flow_gradient not in FLOW_GRADIENTS:
            raise ValueError(f"flow_gradient must be surface or points, got {self.flow_gradient!r}")

    @property
    def blur_radius2(self) -> float:
        """Squared blur radius in px^2: ``sigma * log(1 / blur_eps - 1)``."""
        return self.sigma * math.log(1.0 / self.blur_eps - 1.0)

    @property
    def blur_radius(self) -> float:
        """Blur radius in pixels (0 when ``sigma == 0``)."""
        return math.sqrt(self.blur_radius2)
