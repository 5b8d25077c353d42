"""Robust statistics over NaN-holed arrays without numpy's all-NaN warnings (which are errors in tests and noise
in thread pools, where ``warnings.catch_warnings`` is not safe)."""

from __future__ import annotations

from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.floating[Any]]]


def nan_median_last(values: FloatArray) -> tuple[FloatArray, np.ndarray[Any, np.dtype[np.intp]]]:
    """Median over the last axis ignoring NaN, and the count of finite values (median NaN where count is 0)."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.isfinite(values).sum(axis=-1)
    lo = np.clip((count - 1) // 2, 0, None)
    hi = np.clip(count // 2, 0, None)
    take = np.take_along_axis
    low = take(ordered, lo[..., None], axis=-1)[..., 0]
    high = take(ordered, hi[..., None], axis=-1)[..., 0]
    median = np.where(count > 0, (low + high) / 2, np.nan)
    return median, count


def nan_median(values: FloatArray, axis: int = 0) -> FloatArray:
    """Median along ``axis`` ignoring NaN; NaN where every value is NaN."""
    return nan_median_last(np.moveaxis(values, axis, -1))[0]


def local_median_mad(
    field: FloatArray, window: int, max_elements: int = 4_000_000
) -> tuple[FloatArray, FloatArray, np.ndarray[Any, np.dtype[np.intp]]]:
    """Median, median absolute deviation and finite count in a ``window`` x ``window`` box around each pixel.

    Processed in row blocks so memory stays near ``max_elements`` values whatever the window.
    """
    half = window // 2
    padded = np.pad(np.asarray(field, dtype=np.float64), half, constant_values=np.nan)
    rows, cols = field.shape
    median: FloatArray = np.full(field.shape, np.nan)
    mad: FloatArray = np.full(field.shape, np.nan)
    count = np.zeros(field.shape, dtype=np.intp)
    step = max(1, max_elements // max(cols * window * window, 1))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        block = padded[r0 : r1 + 2 * half]
        windows = np.lib.stride_tricks.sliding_window_view(block, (window, window)).reshape(r1 - r0, cols, -1)
        med, cnt = nan_median_last(windows)
        dev = np.abs(windows - med[..., None])
        median[r0:r1], count[r0:r1] = med, cnt
        mad[r0:r1] = nan_median_last(dev)[0]
    return median, mad, count
