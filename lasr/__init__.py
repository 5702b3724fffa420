"""lasr: articulated 3D shape from one video (a re-implementation of LASR, CVPR 2021)."""

__version__ = "0.1.0"
