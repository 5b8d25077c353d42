"""Array backends of the tracker: one algorithm, written against numpy's API, run by numpy or CuPy.

A :class:`Backend` bundles an array module (``numpy`` or ``cupy``) with its FFT module (``scipy.fft`` or
``cupyx.scipy.fft``) and the two transfers between host and device. The kernels in
:mod:`offset_cube.tracking.kernels` use only functions both modules share, so the GPU path is the CPU path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np
import scipy.fft

from offset_cube.errors import TrackingError

BackendName = Literal["numpy", "cupy"]
BACKENDS: tuple[BackendName, ...] = ("numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """An array module, its FFT module and the host/device transfers."""

    name: BackendName
    xp: ModuleType
    fft: ModuleType
    #: Extra keyword arguments of every FFT call (scipy's ``workers``; nothing for CuPy).
    fft_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_device(self, array: np.ndarray) -> Any:
        """``array`` on this backend's device (no copy for numpy)."""
        return self.xp.asarray(array)

    def to_host(self, array: Any) -> np.ndarray:
        """A numpy copy (or view, for numpy) of a backend array."""
        if self.name == "cupy":
            return np.asarray(array.get())
        return np.asarray(array)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ('numpy' or 'cupy'); CuPy must be installed and see a GPU."""
    if name == "numpy":
        return Backend("numpy", np, scipy.fft, {"workers": 1})
    if name == "cupy":
        return _cupy_backend()
    raise TrackingError(f"backend {name!r} is not one of {list(BACKENDS)}")


def _cupy_backend() -> Backend:
    try:
        import cupy
        import cupyx.scipy.fft as cufft
    except ImportError as err:
        raise TrackingError(
            "backend 'cupy' needs CuPy (pip install 'offset-cube[gpu]' for CUDA 12) and an NVIDIA GPU"
        ) from err
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except cupy.cuda.runtime.CUDARuntimeError as err:
        raise TrackingError(f"backend 'cupy': CUDA is not usable on this machine ({err})") from err
    if count < 1:
        raise TrackingError("backend 'cupy': no CUDA device found")
    return Backend("cupy", cupy, cufft)


def cupy_available() -> bool:
    """True when the 'cupy' backend can run here (CuPy importable and a CUDA device present)."""
    try:
        _cupy_backend()
    except TrackingError:
        return False
    return True
