"""A stand-in for ``offset_cube.tracking`` (issue 5) until the real tracker is merged: per-window phase
correlation with scikit-image, same call signature. Test-only; never imported by product code."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


def window_centres(
    shape: tuple[int, int], window: tuple[int, int], search: tuple[int, int], skip: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    tops = np.arange(search[1], shape[0] - window[1] - search[1] + 1, skip[1])
    lefts = np.arange(search[0], shape[1] - window[0] - search[0] + 1, skip[0])
    return tops + (window[1] - 1) / 2, lefts + (window[0] - 1) / 2


def track_offsets(
    reference: np.ndarray,
    secondary: np.ndarray,
    *,
    window: tuple[int, int],
    search: tuple[int, int],
    skip: tuple[int, int],
    gross_offset: Any = (0.0, 0.0),
    mode: str = "amplitude",
    lines: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    **_: Any,
) -> xr.Dataset:
    from scipy.ndimage import fourier_shift
    from skimage.registration import phase_cross_correlation

    if lines is None or samples is None:
        lines, samples = window_centres(reference.shape, window, search, skip)
    w, h = window
    g_az = np.broadcast_to(np.asarray(gross_offset[0], dtype=float), (len(lines), len(samples)))
    g_rg = np.broadcast_to(np.asarray(gross_offset[1], dtype=float), (len(lines), len(samples)))
    az = np.full((len(lines), len(samples)), np.nan, np.float32)
    rg = np.full_like(az, np.nan)
    snr = np.zeros_like(az)
    for i, cl in enumerate(lines):
        for j, cs in enumerate(samples):
            il, js = round(float(g_az[i, j])), round(float(g_rg[i, j]))
            top, left = round(cl - (h - 1) / 2), round(cs - (w - 1) / 2)
            r = reference[top : top + h, left : left + w]
            l0, s0 = top + il, left + js
            if l0 < 0 or s0 < 0 or l0 + h > secondary.shape[0] or s0 + w > secondary.shape[1]:
                continue
            s = secondary[l0 : l0 + h, s0 : s0 + w]
            if not np.any(r) or not np.any(s):
                continue
            shift, err, _ = phase_cross_correlation(
                _detect(r, mode), _detect(s, mode), upsample_factor=50, normalization=None
            )
            # Refine once on the secondary moved by the estimate: removes the bias of finite windows toward 0.
            moved = np.fft.ifft2(fourier_shift(np.fft.fft2(s), shift))
            extra, err, _ = phase_cross_correlation(
                _detect(r, mode), _detect(moved, mode), upsample_factor=50, normalization=None
            )
            shift = shift + extra
            az[i, j] = il - shift[0]
            rg[i, j] = js - shift[1]
            snr[i, j] = 1.0 / max(err, 1e-3)
    return xr.Dataset(
        {
            "azimuth_offset": (("line", "sample"), az),
            "range_offset": (("line", "sample"), rg),
            "snr": (("line", "sample"), snr),
        },
        coords={"line": lines, "sample": samples},
    )


def _detect(chip: np.ndarray, mode: str) -> np.ndarray:
    return np.abs(chip) if mode == "amplitude" else chip
