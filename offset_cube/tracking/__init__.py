"""The built-in dense offset tracker: batched FFT normalised cross-correlation on numpy or CuPy.

Imports only numpy, scipy, xarray, threadpoolctl, :mod:`offset_cube.errors` and the robust statistics of
:mod:`offset_cube.cube.stats` (CuPy lazily), so it runs wherever those are installed. See
:mod:`offset_cube.tracking.tracker` for the conventions and contracts.
"""

from offset_cube.tracking.backend import cupy_available
from offset_cube.tracking.tracker import (
    DEFAULT_OUTLIER_MAD_K,
    DEFAULT_OVERSAMPLING,
    DEFAULT_SNR_THRESHOLDS,
    MODES,
    SUBPIXEL_METHODS,
    track_offsets,
    window_centres,
)

__all__ = [
    "DEFAULT_OUTLIER_MAD_K",
    "DEFAULT_OVERSAMPLING",
    "DEFAULT_SNR_THRESHOLDS",
    "MODES",
    "SUBPIXEL_METHODS",
    "cupy_available",
    "track_offsets",
    "window_centres",
]
