"""Synthetic SLC pairs with known offsets, for tests and benchmarks of the tracker.

The reference is circular complex Gaussian speckle with a flat, band-limited spectrum (oversampling ``beta`` =
sampling rate / bandwidth per axis; Sentinel-1 IW2 is about 1.5 in azimuth and 1.33 in range, from the
ESA Sentinel-1 User Guide's IW resolution and pixel spacing and the annotated chirp bandwidth).
The secondary is ``gamma * ref(q - d(q)) + sqrt(1 - gamma²) * noise(q)`` with independent noise of the same
spectrum, so a feature at reference pixel p sits at p + D(p) in the secondary, where D solves D = d(p + D).
Fields are periodic (made by FFT), so shifts wrap around the edges exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft
from scipy import ndimage

#: Oversampling (sampling rate / bandwidth) of Sentinel-1 IW2: azimuth ~1.5, range 64.345/48.3 MHz ~1.33.
S1_BETA = (1.5, 1.33)

Field = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def speckle(shape: tuple[int, int], rng: np.random.Generator, beta: tuple[float, float] = S1_BETA) -> np.ndarray:
    """Unit-power complex speckle (complex64) whose spectrum is flat over 1/beta of each axis' band."""
    white = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)
    spec = scipy.fft.fft2(white.astype(np.complex64))
    fy = np.abs(np.fft.fftfreq(shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(shape[1]))[None, :]
    spec *= (fy < 0.5 / beta[0]) & (fx < 0.5 / beta[1])
    field = scipy.fft.ifft2(spec)
    field /= np.sqrt(np.mean(np.abs(field) ** 2))
    return np.asarray(field, dtype=np.complex64)


def fourier_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image(p - shift)`` for a periodic band-limited image (exact), so features move by +shift."""
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    ramp = np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))
    return np.asarray(scipy.fft.ifft2(scipy.fft.fft2(image) * ramp), dtype=np.complex64)


def mix(shifted: np.ndarray, noise: np.ndarray, gamma: float) -> np.ndarray:
    """``gamma * shifted + sqrt(1 - gamma²) * noise``: a secondary of coherence ``gamma``."""
    return np.asarray(gamma * shifted + np.sqrt(1.0 - gamma**2) * noise, dtype=np.complex64)


def constant_shift_pair(
    shape: tuple[int, int],
    shift: tuple[float, float],
    gamma: float = 0.7,
    seed: int = 0,
    beta: tuple[float, float] = S1_BETA,
) -> tuple[np.ndarray, np.ndarray]:
    """(reference, secondary) whose true offset is ``shift`` = (azimuth, range) px everywhere."""
    rng = np.random.default_rng(seed)
    ref = speckle(shape, rng, beta)
    return ref, mix(fourier_shift(ref, shift), speckle(shape, rng, beta), gamma)


def glacier_field(shape: tuple[int, int]) -> Field:
    """A smooth offset field d(q) (azimuth, range) in px over an image of ``shape``, scaled with its size.

    The field of the ISCE test rasters (the test data's ``isce/README.md``): range 1.5 + 2 sin(...) in -0.5..3.5 px,
    azimuth -0.7 + 1.5 cos(...) in -2.2..0.8 px.
    """
    height, width = shape

    def field(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d_rg = 1.5 + 2.0 * np.sin(2 * np.pi * (1.3 * x / width + 0.4 * y / height) + 0.7)
        d_az = -0.7 + 1.5 * np.cos(2 * np.pi * (0.6 * x / width - 1.1 * y / height) + 0.2)
        return d_az, d_rg

    return field


def warp(image: np.ndarray, field: Field, rows_per_chunk: int = 256) -> np.ndarray:
    """``image(q - d(q))`` for a periodic band-limited image and a smooth field d in secondary coordinates.

    Interpolation: x2 FFT zero-padding (exact for band-limited data), then a quintic spline on that grid; the
    error is about -78 dB for a band of 0.8 of Nyquist (measured on the test data's ISCE rasters).
    """
    lines, samples = image.shape
    up = _upsample2(image)
    out = np.empty(image.shape, dtype=np.complex64)
    coeffs = [ndimage.spline_filter(part, order=5, mode="grid-wrap", output=np.float32) for part in (up.real, up.imag)]
    del up
    x = np.arange(samples, dtype=np.float64)
    for r0 in range(0, lines, rows_per_chunk):
        y = np.arange(r0, min(r0 + rows_per_chunk, lines), dtype=np.float64)
        yy, xx = np.meshgrid(y, x, indexing="ij")
        d_az, d_rg = field(yy, xx)
        coords = np.stack([2 * (yy - d_az), 2 * (xx - d_rg)])
        parts = [
            ndimage.map_coordinates(c, coords, order=5, mode="grid-wrap", prefilter=False, output=np.float32)
            for c in coeffs
        ]
        out[r0 : r0 + y.size] = parts[0] + 1j * parts[1]
    return out


def _upsample2(image: np.ndarray) -> np.ndarray:
    """x2 band-limited interpolation by zero-padding the spectrum (even sizes, no energy at Nyquist)."""
    lines, samples = image.shape
    spec = scipy.fft.fft2(image)
    padded = np.zeros((2 * lines, 2 * samples), dtype=np.complex64)
    hy, hx = lines // 2, samples // 2
    for sy_src, sy_dst in ((slice(0, hy), slice(0, hy)), (slice(hy, None), slice(2 * lines - hy, None))):
        for sx_src, sx_dst in ((slice(0, hx), slice(0, hx)), (slice(hx, None), slice(2 * samples - hx, None))):
            padded[sy_dst, sx_dst] = spec[sy_src, sx_src]
    return np.asarray(scipy.fft.ifft2(padded) * 4, dtype=np.complex64)


def true_offsets(
    field: Field, lines: np.ndarray, samples: np.ndarray, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """D(p) = d(p + D(p)) at reference positions (lines x samples grid), by fixed-point iteration."""
    yy, xx = np.meshgrid(np.asarray(lines, float), np.asarray(samples, float), indexing="ij")
    d_az, d_rg = np.zeros_like(yy), np.zeros_like(xx)
    for _ in range(iterations):
        d_az, d_rg = field(yy + d_az, xx + d_rg)
    return d_az, d_rg


def window_mean_offsets(
    field: Field, centres: tuple[np.ndarray, np.ndarray], window: tuple[int, int], groups: tuple[int, int] = (8, 4)
) -> tuple[np.ndarray, np.ndarray]:
    """True offsets averaged over each reference window (width, height) centred at ``centres`` (lines, samples).

    The window is split into ``groups`` (across, down) blocks of pixels and D is taken at each block's centre:
    exact for a field that is linear within a block, far below the tracker's error for smooth fields.
    """
    w, h = window
    ox = _group_centres(w, groups[0])
    oy = _group_centres(h, groups[1])
    lines, samples = (np.asarray(c, float) for c in centres)
    total_az = np.zeros((lines.size, samples.size))
    total_rg = np.zeros_like(total_az)
    for dy in oy:
        for dx in ox:
            d_az, d_rg = true_offsets(field, lines + dy, samples + dx)
            total_az += d_az
            total_rg += d_rg
    count = ox.size * oy.size
    return total_az / count, total_rg / count


def _group_centres(size: int, groups: int) -> np.ndarray:
    """Mean pixel offset (from the window centre) of each of ``groups`` equal blocks of a ``size`` window."""
    groups = groups if size % groups == 0 else 1
    block = size // groups
    return -(size - 1) / 2 + block * (np.arange(groups) + 0.5) - 0.5
