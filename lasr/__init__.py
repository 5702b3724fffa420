"""lasr: articulated 3D shape from one video (a re-implementation of LASR, CVPR 2021)."""

import os as _os

# OpenMP threads that busy-wait make every step several times slower as soon as another
# process shares the CPU (measured: experiments/bench_raster.py). Set before torch loads;
# export OMP_WAIT_POLICY=ACTIVE to override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
