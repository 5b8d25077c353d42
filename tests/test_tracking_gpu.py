"""The CuPy backend gives the numpy backend's offsets (within 0.005 px); skipped without CuPy and a GPU.

Runs without pydantic or Prefect (``PYTHONPATH=. python3 -m pytest tests/test_tracking_gpu.py`` on a GPU
machine that only has numpy, scipy, xarray and cupy).
"""

from __future__ import annotations

import numpy as np
import pytest

from offset_cube.tracking import cupy_available, track_offsets
from offset_cube.tracking.synthetic import constant_shift_pair

pytestmark = pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA device")


@pytest.mark.parametrize(("mode", "path"), [("amplitude", "window"), ("amplitude", "dense"), ("complex", "window")])
def test_cupy_matches_numpy(mode: str, path: str) -> None:
    ref, sec = constant_shift_pair((512, 2048), (0.37, -2.61), gamma=0.6, seed=21)
    options = {"window": (64, 16), "search": (20, 8), "skip": (32, 16), "mode": mode, "snr_threshold": 0.0}
    options["oversampling_path"] = path
    cpu = track_offsets(ref, sec, backend="numpy", **options)
    gpu = track_offsets(ref, sec, backend="cupy", **options)
    assert gpu.attrs["backend"] == "cupy"
    for name in ("azimuth_offset", "range_offset"):
        a, b = cpu[name].values, gpu[name].values
        both = np.isfinite(a) & np.isfinite(b)
        assert both.mean() > 0.99
        assert np.abs(a[both] - b[both]).max() < 0.005
    np.testing.assert_allclose(gpu.snr.values, cpu.snr.values, rtol=1e-3)
