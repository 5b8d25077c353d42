"""Batched correlation kernels: many windows at once, written once for any numpy-like array module.

Shapes: ``B`` windows per batch, chips ``(B, lines, samples)``, correlation surfaces ``(B, Ly, Lx)`` where lag
``(0, 0)`` puts the reference chip at the top-left corner of its search chip. Every function takes the
:class:`~offset_cube.tracking.backend.Backend` first and uses only what numpy and CuPy share.

Algorithms and constants follow ISCE2's ampcor (``components/mroipac/ampcor/src/ampcor.F``) and PyCuAmpcor
(``contrib/PyCuAmpcor/src``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

from offset_cube.tracking.backend import Backend

Array = Any  # a numpy or CuPy array

#: ampcor's SNR neighbourhood: the squared peak over the mean squared NCC of the +/-10 lags around it
#: (ampcor.F l.825-834; PyCuAmpcor's 21x21 corrStatWindowSize).
SNR_HALF_BOX = 10
#: ampcor caps the SNR it writes (ampcor.F l.1361).
SNR_MAX = 9999.99999
#: A chip needs this fraction of usable (finite, non-zero) pixels, as ampcor's "enough real estate" test
#: (ampcor.F, subroutine correlate: i_cntai >= 0.9*i_wsaxyi).
MIN_VALID_FRACTION = 0.9


@dataclass(frozen=True)
class Surface:
    """A batch of coherent correlation surfaces and what the DFT zoom needs to interpolate them."""

    ncc: Array  # (B, Ly, Lx) float32: |coherence|
    spectrum: Array  # cross-power spectrum whose inverse FFT is the unnormalised correlation
    fft_shape: tuple[int, int]
    energy: Array  # (B, Ly, Lx) float64: lag-dependent part of the normaliser (its square root divides)


@dataclass(frozen=True)
class Peak:
    """Integer peak of each surface and ampcor's statistics at it."""

    iy: Array  # (B,) int
    ix: Array
    value: Array  # (B,) float
    interior: Array  # (B,) bool: not on the border of the lag range
    snr: Array  # (B,) float
    cov_az: Array
    cov_rg: Array
    cov_azrg: Array


def gather(be: Backend, block: Array, tops: Array, lefts: Array, shape: tuple[int, int]) -> Array:
    """Chips ``block[top:top+h, left:left+w]`` for every (top, left): ``(B, h, w)``."""
    xp = be.xp
    h, w = shape
    if xp is np:  # a strided view is several times faster than fancy indexing on the CPU
        return np.lib.stride_tricks.sliding_window_view(block, (h, w))[tops, lefts]
    rows = tops[:, None, None] + xp.arange(h)[None, :, None]
    cols = lefts[:, None, None] + xp.arange(w)[None, None, :]
    return block[rows, cols]


def box_sums(be: Backend, values: Array, window: tuple[int, int], lags: tuple[int, int]) -> Array:
    """Sums of ``values`` (B, H, W) over the ``window`` placed at every lag: ``(B, Ly, Lx)`` float64.

    Needs W >= w + Lx - 1 and H >= h + Ly - 1 (a search chip and its lags; samples past them lie in no box). The
    sums are two products with 0/1 box matrices, ``box_y @ values @ box_x``: direct sums (no cancellation, unlike
    differences of a summed-area table) that run as matrix products, much faster than running sums on small chips
    (3-4x faster than cumulative sums in float64 on the peer and Shirase chips).
    """
    xp = be.xp
    height, width = values.shape[1:]
    h, w = window
    ly, lx = lags
    if width - w < lx - 1 or height - h < ly - 1:
        raise ValueError(f"box_sums: chip {height}x{width} does not match window {h}x{w} and lags {ly}x{lx}")
    box_x = _box_matrix(xp, width, lx, w, values.dtype)  # (W, Lx)
    box_y = _box_matrix(xp, height, ly, h, values.dtype).T  # (Ly, H)
    # The axis whose product leaves less to the second goes first (peer chips, 32x104: 0.8x the time of range
    # first; Shirase's, 84x316: 0.7x). Window by window (a product per window, not one over the whole batch), so
    # that a window's sums do not depend on how many share its batch.
    if ly * width * (height + lx) < height * lx * (width + ly):
        return xp.matmul(xp.matmul(box_y, values), box_x).astype(xp.float64)
    return xp.matmul(box_y, xp.matmul(values, box_x)).astype(xp.float64)


def _box_matrix(xp: Any, size: int, lags: int, window: int, dtype: Any) -> Array:
    """(size, lags) matrix with ones where lag j <= index < j + window."""
    diff = xp.arange(size)[:, None] - xp.arange(lags)[None, :]
    return ((diff >= 0) & (diff < window)).astype(dtype)


def fft_shape(shape: tuple[int, int], real: bool) -> tuple[int, int]:
    """FFT size at least ``shape`` with only small prime factors (zero padding keeps valid lags exact)."""
    return (scipy.fft.next_fast_len(shape[0], real=False), scipy.fft.next_fast_len(shape[1], real=real))


def amplitude_surface(be: Backend, ref: Array, search: Array, lags: tuple[int, int]) -> Array:
    """Pearson NCC (B, Ly, Lx) float32 of real chips ``ref`` (B, h, w) over ``search`` (B, H, W) at every lag
    (ampcor's stage 1).

    NCC(l) = sum(r' s_l) / sqrt(sum(r'^2) * (sum(s_l^2) - sum(s_l)^2 / N)), r' = r - mean(r), as ampcor.F's
    ``correlate`` (r_corn), computed with FFTs and summed-area tables instead of a direct sum.
    """
    xp, fft = be.xp, be.fft
    h, w = ref.shape[1:]
    n = h * w
    r0 = ref - ref.mean(axis=(1, 2), keepdims=True)
    er = (r0 * r0).sum(axis=(1, 2), dtype=xp.float64)
    # Centring the search chip changes neither the numerator (sum(r') = 0) nor the variance, and keeps the
    # single-precision box sums of s and s^2 free of cancellation.
    search = search - search.mean(axis=(1, 2), keepdims=True)
    shape = fft_shape(search.shape[1:], real=True)
    spec = fft.rfft2(search, s=shape, axes=(1, 2), **be.fft_kwargs)
    ref_spec = _pruned_fft2(be, r0, shape)
    spec *= xp.conj(ref_spec, out=ref_spec)
    del ref_spec
    num = _pruned_ifft2(be, spec, shape, lags)
    s1 = box_sums(be, search, (h, w), lags)
    s2 = box_sums(be, search * search, (h, w), lags)
    var = xp.maximum(s2 - s1 * s1 / n, 0.0)
    denom = xp.sqrt(er[:, None, None] * var)
    return xp.where(denom > 0, num / xp.where(denom > 0, denom, 1.0), 0.0).astype(xp.float32)


def _pruned_fft2(be: Backend, chips: Array, shape: tuple[int, int]) -> Array:
    """``rfft2`` of real chips (B, h, w) zero-padded to ``shape``: the range transform runs on the h lines that
    hold data only (the padding lines' transforms are zero), then the azimuth transform."""
    fft = be.fft
    lines = fft.rfft(chips, n=shape[1], axis=2, **be.fft_kwargs)
    return fft.fft(lines, n=shape[0], axis=1, overwrite_x=True, **be.fft_kwargs)


def _power(xp: Any, values: Array) -> Array:
    """|values|^2 of complex values, in their real precision."""
    power = xp.square(values.real)
    power += xp.square(values.imag)
    return power


def _pruned_ifft2(be: Backend, spec: Array, shape: tuple[int, int], lags: tuple[int, int]) -> Array:
    """``irfft2(spec, s=shape)[:, :Ly, :Lx]``, overwriting ``spec``: the azimuth inverse first, then the range
    inverse on the Ly lag lines only (of the FFT's shape[0])."""
    fft = be.fft
    lines = fft.ifft(spec, axis=1, overwrite_x=True, **be.fft_kwargs)[:, : lags[0]]
    return fft.irfft(lines, n=shape[1], axis=2, **be.fft_kwargs)[:, :, : lags[1]]


def complex_surface(be: Backend, ref: Array, search: Array, lags: tuple[int, int]) -> Surface:
    """Coherent NCC |sum(conj(r) s_l)| / sqrt(sum|r|^2 sum|s_l|^2) of complex chips at every lag.

    ``search`` (B, H, W) holds the search chips (h + Ly - 1, w + Lx - 1) at their top-left, and may extend up to
    the FFT's size (:func:`complex_search_shape`): chips gathered at that size need no zero-padded copy, and what
    lies past a chip never meets a valid lag (lag l reads samples l .. l + w - 1 < W; the circular correlation
    wraps only past the FFT's size). ``search`` is overwritten (its transform is computed in place, 0.9x the
    time of a new array on the peer settings).
    """
    xp, fft = be.xp, be.fft
    h, w = ref.shape[1:]
    chip = (h + lags[0] - 1, w + lags[1] - 1)
    shape = complex_search_shape(ref.shape[1:], lags)
    if not chip[0] <= search.shape[1] <= shape[0] or not chip[1] <= search.shape[2] <= shape[1]:
        raise ValueError(f"complex_surface: search chips {search.shape[1:]} are not between {chip} and {shape}")
    er = _power(xp, ref).sum(axis=(1, 2), dtype=xp.float64)
    q = box_sums(be, _power(xp, search), (h, w), lags)
    spec = fft.fft2(search, s=shape, axes=(1, 2), overwrite_x=True, **be.fft_kwargs)
    del search
    spec *= _conj_padded_fft2(be, ref, shape)
    # The spectrum stays whole (the sub-pixel zoom reads it). The inverse runs along range first, on every line,
    # then along azimuth on the Lx lag columns only: 0.71x the time of azimuth first on the peer settings (strided
    # azimuth transforms cost more per point than the contiguous range ones).
    lines = fft.ifft(spec, axis=2, **be.fft_kwargs)[:, :, : lags[1]]
    num = xp.abs(fft.ifft(lines, axis=1, overwrite_x=True, **be.fft_kwargs)[:, : lags[0]])
    del lines
    denom = xp.sqrt(er[:, None, None] * q)
    ncc = xp.where(denom > 0, num / xp.where(denom > 0, denom, 1.0), 0.0).astype(xp.float32)
    return Surface(ncc, spec, shape, q)


def complex_search_shape(window: tuple[int, int], lags: tuple[int, int]) -> tuple[int, int]:
    """FFT size of complex mode's correlation: the search chip (window + lags - 1) grown to small prime factors;
    search chips may be gathered at this size (:func:`complex_surface`)."""
    return fft_shape((window[0] + lags[0] - 1, window[1] + lags[1] - 1), real=False)


def _conj_padded_fft2(be: Backend, chips: Array, shape: tuple[int, int]) -> Array:
    """``conj(fft2)`` of complex chips (B, h, w) zero-padded to ``shape``, as the unnormalised inverse transform of
    the conjugate chips (which conjugates h*w values instead of the whole spectrum): written once into the padded
    array, the range transform on the h lines that hold data, then the azimuth transform, both in place."""
    xp = be.xp
    b, h, w = chips.shape
    padded = xp.zeros((b, *shape), dtype=chips.dtype)
    xp.conj(chips, out=padded[:, :h, :w])
    _unnormalised_ifft_in_place(be, padded[:, :h], axis=2)
    _unnormalised_ifft_in_place(be, padded, axis=1)
    return padded


def _unnormalised_ifft_in_place(be: Backend, values: Array, axis: int) -> None:
    """Inverse FFT of complex ``values`` (a view) along ``axis`` without the 1/n, written back into it: scipy
    transforms views in place when asked to overwrite; where a backend returns a new array instead, it is copied
    back."""
    result = be.fft.ifft(values, axis=axis, norm="forward", overwrite_x=True, **be.fft_kwargs)
    if not be.xp.may_share_memory(result, values):
        values[...] = result


def find_peak(be: Backend, ncc: Array, n_pixels: int, statistics: bool = True) -> Peak:
    """Integer maximum of each surface, whether it is interior, and (if ``statistics``) ampcor's SNR and
    covariance there (NaN otherwise)."""
    xp = be.xp
    b, ly, lx = ncc.shape
    flat = xp.argmax(ncc.reshape(b, -1), axis=1)
    iy, ix = flat // lx, flat % lx
    batch = xp.arange(b)
    value = ncc[batch, iy, ix].astype(xp.float64)
    interior = (iy > 0) & (iy < ly - 1) & (ix > 0) & (ix < lx - 1)
    if not statistics:
        nan = xp.full(b, np.nan)
        return Peak(iy, ix, value, interior, nan, nan, nan, nan)
    snr = _ampcor_snr(be, ncc, iy, ix, value)
    cov_az, cov_rg, cov_azrg = _ampcor_covariance(be, ncc, iy, ix, value, n_pixels)
    nan = xp.float64(np.nan)
    return Peak(
        iy=iy,
        ix=ix,
        value=value,
        interior=interior,
        snr=snr,
        cov_az=xp.where(interior, cov_az, nan),
        cov_rg=xp.where(interior, cov_rg, nan),
        cov_azrg=xp.where(interior, cov_azrg, nan),
    )


def _ampcor_snr(be: Backend, ncc: Array, iy: Array, ix: Array, peak: Array) -> Array:
    """peak^2 / mean(NCC^2 over the +/-10-lag box around the peak, peak excluded), capped like ampcor.

    The box is clipped to the surface; like ampcor.F (l.825-834) it never includes the last lag of an axis.
    """
    xp = be.xp
    _, ly, lx = ncc.shape
    lag_y, lag_x = xp.arange(ly)[None, :], xp.arange(lx)[None, :]
    in_y = (xp.abs(lag_y - iy[:, None]) <= SNR_HALF_BOX) & (lag_y <= ly - 2)
    in_x = (xp.abs(lag_x - ix[:, None]) <= SNR_HALF_BOX) & (lag_x <= lx - 2)
    sq = ncc.astype(xp.float64) ** 2
    total = ((sq * in_x[:, None, :]).sum(axis=2) * in_y).sum(axis=1)
    count = in_y.sum(axis=1) * in_x.sum(axis=1)
    outside = (total - peak**2) / xp.maximum(count - 1, 1)
    return xp.minimum(peak**2 / xp.maximum(outside, 1e-10), SNR_MAX)


def _ampcor_covariance(
    be: Backend, ncc: Array, iy: Array, ix: Array, peak: Array, n_pixels: int
) -> tuple[Array, Array, Array]:
    """Offset (co)variances (az, rg, az-rg) in px^2 from the NCC curvature at the peak (ampcor.F l.1805-1850).

    With dxx, dyy, dxy the finite-difference curvatures times N (window pixels), n = 1 - peak and
    u = dxy^2 - dxx*dyy: cov_rg = (-2n*u*dyy + N n^2/2 (dyy^2 + dxy^2)) / u^2, cov_az the same with dxx,
    cov_azrg = (2n*u - N n^2/2 (dxx + dyy)) dxy / u^2. NaN where u = 0 (ampcor writes 99 and rejects).
    """
    xp = be.xp
    b, ly, lx = ncc.shape
    batch = xp.arange(b)[:, None, None]
    dy = xp.arange(-1, 2)[None, :, None]
    dx = xp.arange(-1, 2)[None, None, :]
    rows = xp.clip(iy[:, None, None] + dy, 0, ly - 1)
    cols = xp.clip(ix[:, None, None] + dx, 0, lx - 1)
    c = ncc[batch, rows, cols].astype(xp.float64)
    dxx = -(c[:, 1, 2] + c[:, 1, 0] - 2 * c[:, 1, 1]) * n_pixels
    dyy = -(c[:, 2, 1] + c[:, 0, 1] - 2 * c[:, 1, 1]) * n_pixels
    dxy = (c[:, 2, 2] + c[:, 0, 0] - c[:, 0, 2] - c[:, 2, 0]) / 4 * n_pixels
    noise = xp.maximum(1.0 - peak, 0.0)
    n2 = 2 * noise
    n4 = noise**2 * 0.5 * n_pixels
    u = dxy**2 - dxx * dyy
    ok = u != 0
    u2 = xp.where(ok, u * u, 1.0)
    nan = xp.float64(np.nan)
    cov_rg = xp.where(ok, (-n2 * u * dyy + n4 * (dyy**2 + dxy**2)) / u2, nan)
    cov_az = xp.where(ok, (-n2 * u * dxx + n4 * (dxx**2 + dxy**2)) / u2, nan)
    cov_azrg = xp.where(ok, ((n2 * u - n4 * (dxx + dyy)) * dxy) / u2, nan)
    return cov_az, cov_rg, cov_azrg


def parabolic_peak(be: Backend, ncc: Array, iy: Array, ix: Array) -> tuple[Array, Array]:
    """Sub-sample peak by a 3-point parabola along each axis through the integer maximum (fast, biased)."""
    xp = be.xp
    b, ly, lx = ncc.shape
    batch = xp.arange(b)
    y = xp.clip(iy, 1, ly - 2)
    x = xp.clip(ix, 1, lx - 2)
    c0 = ncc[batch, y, x].astype(xp.float64)
    fy = _vertex(xp, ncc[batch, y - 1, x].astype(xp.float64), c0, ncc[batch, y + 1, x].astype(xp.float64))
    fx = _vertex(xp, ncc[batch, y, x - 1].astype(xp.float64), c0, ncc[batch, y, x + 1].astype(xp.float64))
    return y + fy, x + fx


def _vertex(xp: Any, left: Array, centre: Array, right: Array) -> Array:
    """Vertex of the parabola through (-1, left), (0, centre), (1, right), clipped to [-1, 1]."""
    curvature = left - 2 * centre + right
    safe = xp.where(curvature < 0, curvature, -1.0)
    return xp.where(curvature < 0, xp.clip((left - right) / (2 * safe), -1.0, 1.0), 0.0)


#: Each zoom level evaluates a 5x5 grid whose spacing is this factor finer than the previous level's.
ZOOM_FACTOR = 4


def zoom_levels(spacing: float) -> int:
    """Zoom levels from a 1/2-px grid until the grid spacing is at most ``spacing`` px."""
    levels, current = 1, 0.5
    while current > spacing * (1 + 1e-9):
        current /= ZOOM_FACTOR
        levels += 1
    return levels


def zoom_peak(be: Backend, surface: Surface, iy: Array, ix: Array, levels: int) -> tuple[Array, Array]:
    """Band-limited sub-sample peak: matrix-DFT interpolation of the correlation around the integer peak.

    The correlation is evaluated exactly (Fourier interpolation by a matrix DFT of the cross-power spectrum,
    as Guizar-Sicairos et al. 2008) on the grids of :func:`_zoom`. Values are divided by the square root of the
    bilinearly interpolated lag-dependent energy, so the refinement maximises the same NCC as the integer search.

    With two levels or more, the first (1/2-px) level is replaced by a parabola through the integer samples:
    it lies within 0.16 px of the refined peak (2 560 peer-settings windows of the benchmark pair, coherence
    0.7), well inside the +/-0.25 px that the next level's grid spans, and costs next to nothing, where a level
    (its products with the whole spectrum) took a tenth of complex mode's time. Windows whose first grid has its
    maximum on its border (the parabola was off by more) are zoomed again from the integer peak through every
    level.
    The last grid's peak is that of its quartic interpolant (:func:`_quartic_peak`), not a parabola's: on those
    windows, against a 1/512-px zoom, 0.0007/0.0003 px RMS (azimuth/range) where two levels ending in a
    parabola were 0.0011/0.0008 px and one level ending in a parabola 0.0025/0.0017 px.
    """

    def evaluate(part: Surface) -> Any:
        return lambda cy, cx, spacing: _dft_values(be, part, cy, cx, spacing)

    if levels < 2:
        return _zoom(be, evaluate(surface), iy, ix, levels, quartic=True)[:2]
    py, px = parabolic_peak(be, surface.ncc, iy, ix)
    cy, cx, border = _zoom(be, evaluate(surface), py, px, levels - 1, 0.5 / ZOOM_FACTOR, quartic=True)
    if bool(border.any()):
        part = Surface(surface.ncc[border], surface.spectrum[border], surface.fft_shape, surface.energy[border])
        cy[border], cx[border], _ = _zoom(be, evaluate(part), iy[border], ix[border], levels, quartic=True)
    return cy, cx


#: Half-width (samples) of the Lanczos kernel that interpolates a finely sampled surface (:func:`lanczos_peak`).
LANCZOS_A = 6


def lanczos_peak(be: Backend, ncc: Array, iy: Array, ix: Array, levels: int) -> tuple[Array, Array]:
    """Sub-sample peak of surfaces sampled finely enough to interpolate locally (amplitude mode's 0.5-px grid).

    The surface is interpolated with a Lanczos kernel of :data:`LANCZOS_A` samples each side (weights
    normalised to sum 1 where the kernel meets the surface's edge) on the grids of :func:`_zoom`. On the
    x2-oversampled amplitude NCC (13x13 lags of 0.5 px) it gives the matrix-DFT zoom's RMSE against the truth
    (0.0331/0.0316 px vs 0.0330/0.0316 px with the peer settings, 0.0210/0.0588 vs 0.0210/0.0591 with the
    Shirase settings, glacier field) and needs only that surface, not each window's cross-power spectrum: so
    the dense path, which never forms one, and the per-window path refine alike.
    """
    xp = be.xp
    surface = ncc.astype(xp.float64)
    _, ly, lx = ncc.shape

    def values(cy: Array, cx: Array, spacing: float) -> Array:
        offsets = spacing * xp.arange(-2, 3, dtype=xp.float64)
        wy = _lanczos_weights(xp, cy[:, None] + offsets[None, :], ly)
        wx = _lanczos_weights(xp, cx[:, None] + offsets[None, :], lx)
        return xp.matmul(xp.matmul(wy, surface), wx.transpose(0, 2, 1))

    return _zoom(be, values, iy, ix, levels)[:2]


def _lanczos_weights(xp: Any, positions: Array, size: int) -> Array:
    """(B, n, size) weights of the samples 0..size-1 at ``positions`` (B, n)."""
    t = positions[:, :, None] - xp.arange(size, dtype=xp.float64)[None, None, :]
    weights = xp.where(xp.abs(t) < LANCZOS_A, xp.sinc(t) * xp.sinc(t / LANCZOS_A), 0.0)
    total = weights.sum(axis=2, keepdims=True)
    return weights / xp.where(total != 0, total, 1.0)


def _zoom(
    be: Backend, evaluate: Any, cy: Array, cx: Array, levels: int, spacing: float = 0.5, quartic: bool = False
) -> tuple[Array, Array, Array]:
    """Iterated grid search: ``evaluate(cy, cx, spacing)`` gives (B, 5, 5) surface values on the grid
    ``c + spacing * (-2..2)``; from a grid of ``spacing`` lags around (cy, cx) (the integer peak and 1/2 lag
    unless given), a parabola through the grid's maximum along each axis estimates the peak and the next level
    evaluates a grid :data:`ZOOM_FACTOR` times finer around that estimate, ``levels`` times in all. With
    ``quartic``, the last level's estimate is the peak of the grid's quartic interpolant instead.

    Returns the estimate and, per window, whether the first grid's maximum lay on its border."""
    xp = be.xp
    b = cy.shape[0]
    batch = xp.arange(b)
    steps = xp.arange(-2, 3, dtype=xp.float64)
    cy, cx = cy.astype(xp.float64), cx.astype(xp.float64)
    border = xp.zeros(b, dtype=bool)
    for level in range(levels):
        values = evaluate(cy, cx, spacing)
        flat = xp.argmax(values.reshape(b, -1), axis=1)
        if level == 0:
            border = (flat // 5 % 4 == 0) | (flat % 5 % 4 == 0)
        if quartic and level == levels - 1:
            ty, tx = _quartic_peak(xp, values, flat // 5, flat % 5)
            return cy + ty * spacing, cx + tx * spacing, border
        ky, kx = xp.clip(flat // 5, 1, 3), xp.clip(flat % 5, 1, 3)
        c0 = values[batch, ky, kx]
        vy = _vertex(xp, values[batch, ky - 1, kx], c0, values[batch, ky + 1, kx])
        vx = _vertex(xp, values[batch, ky, kx - 1], c0, values[batch, ky, kx + 1])
        cy, cx = cy + (steps[ky] + vy) * spacing, cx + (steps[kx] + vx) * spacing
        spacing /= ZOOM_FACTOR
    return cy, cx, border


#: Rows turn five samples at steps -2..2 into the coefficients (of t^0 .. t^4) of their interpolating quartic.
_QUARTIC = np.linalg.inv(np.vander(np.arange(-2.0, 3.0), 5, increasing=True))
#: Newton steps from the grid's maximum to the interpolant's peak (a third changes it by < 1e-6 steps).
QUARTIC_NEWTON_STEPS = 2


def _quartic_peak(xp: Any, values: Array, ky: Array, kx: Array) -> tuple[Array, Array]:
    """Peak (in grid steps from the centre) of the tensor-product quartic through each (B, 5, 5) grid: Newton
    steps on its gradient from the grid maximum (ky, kx), none where its Hessian is not negative definite, kept
    within the grid."""
    basis = xp.asarray(_QUARTIC)
    coef = xp.matmul(xp.matmul(basis, values), basis.T)  # p(y, x) = sum_ij coef[i, j] y^i x^j
    y, x = (ky - 2).astype(xp.float64), (kx - 2).astype(xp.float64)

    def form(left: Array, right: Array) -> Array:
        return xp.matmul(xp.matmul(left[:, None, :], coef), right[:, :, None])[:, 0, 0]

    for _ in range(QUARTIC_NEWTON_STEPS):
        (py, dy, ddy), (px, dx, ddx) = _monomials(xp, y), _monomials(xp, x)
        gy, gx = form(dy, px), form(py, dx)
        hyy, hxx, hxy = form(ddy, px), form(py, ddx), form(dy, dx)
        det = hyy * hxx - hxy * hxy
        ok = (det > 0) & (hyy < 0)
        safe = xp.where(ok, det, 1.0)
        y = xp.clip(y - xp.where(ok, (hxx * gy - hxy * gx) / safe, 0.0), -2.0, 2.0)
        x = xp.clip(x - xp.where(ok, (hyy * gx - hxy * gy) / safe, 0.0), -2.0, 2.0)
    return y, x


def _monomials(xp: Any, t: Array) -> tuple[Array, Array, Array]:
    """t^0..t^4 (B, 5) and their first and second derivatives."""
    one, zero = xp.ones_like(t), xp.zeros_like(t)
    value = xp.stack([one, t, t**2, t**3, t**4], axis=1)
    first = xp.stack([zero, one, 2 * t, 3 * t**2, 4 * t**3], axis=1)
    second = xp.stack([zero, zero, 2 * one, 6 * t, 12 * t**2], axis=1)
    return value, first, second


def _frequencies(be: Backend, surface: Surface) -> tuple[Array, Array]:
    """Signed frequency indices of the spectrum's axes."""
    my, mx = surface.fft_shape
    return be.xp.asarray(np.fft.fftfreq(my) * my), be.xp.asarray(np.fft.fftfreq(mx) * mx)


def _dft_values(be: Backend, surface: Surface, cy: Array, cx: Array, spacing: float) -> Array:
    """Normalised correlation on the 5x5 grid ``c + spacing * (-2..2)`` around each (cy, cx): (B, 5, 5).

    corr(y, x) = sum_f X(fy, fx) exp(2 pi i (fy y / My + fx x / Mx)): two batched matrix products with small
    DFT matrices (the grid offsets times each window's centre phase), (B, 5, My) @ X (B, My, Mx) @ (B, Mx, 5).
    """
    xp = be.xp
    my, mx = surface.fft_shape
    spec = surface.spectrum
    ctype = spec.dtype
    fy, fx = _frequencies(be, surface)
    offsets = spacing * xp.arange(-2, 3, dtype=xp.float64)
    phase_x = _unit_phases(xp, cx, fx / mx, ctype)
    phase_y = _unit_phases(xp, cy, fy / my, ctype)
    kern_x = xp.exp((2j * np.pi / mx) * (fx[:, None] * offsets[None, :])).astype(ctype)  # (Mx', 5)
    kern_y = xp.exp((2j * np.pi / my) * (fy[:, None] * offsets[None, :])).astype(ctype)  # (My, 5)
    # Per-window kernels (the centre's phase folded into the small DFT matrices) and batched products.
    partial = xp.matmul(spec, phase_x[:, :, None] * kern_x[None, :, :])  # (B, My, 5)
    corr = xp.matmul((phase_y[:, :, None] * kern_y[None, :, :]).transpose(0, 2, 1), partial)  # (B, 5, 5)
    values = xp.abs(corr)
    gy = cy[:, None] + offsets[None, :]
    gx = cx[:, None] + offsets[None, :]
    energy = _bilinear(be, surface.energy, gy, gx)
    return values / xp.sqrt(xp.maximum(energy, 1e-30))


def _unit_phases(xp: Any, centres: Array, frequencies: Array, dtype: Any) -> Array:
    """exp(2 pi i c f) (B, M) of ``dtype`` for centres c (B,) and frequencies f (M,) in cycles per sample.

    The phase is reduced to one turn in float64 and its cosine and sine taken in ``dtype``'s real precision: 5x
    faster than a complex128 exponential on the CPU, within 2e-7 of it in complex64.
    """
    turns = centres[:, None] * frequencies[None, :]
    turns -= xp.round(turns)
    angle = (2 * np.pi * turns).astype(np.finfo(dtype).dtype)
    phases = xp.empty(angle.shape, dtype=dtype)
    xp.cos(angle, out=phases.real)
    xp.sin(angle, out=phases.imag)
    return phases


def _bilinear(be: Backend, grid: Array, gy: Array, gx: Array) -> Array:
    """``grid`` (B, Ly, Lx) interpolated bilinearly at the outer product of ``gy`` and ``gx``: (B, n, n)."""
    xp = be.xp
    b, ly, lx = grid.shape
    y0 = xp.clip(xp.floor(gy).astype(xp.int64), 0, ly - 2)
    x0 = xp.clip(xp.floor(gx).astype(xp.int64), 0, lx - 2)
    wy = xp.clip(gy - y0, 0.0, 1.0)[:, :, None]
    wx = xp.clip(gx - x0, 0.0, 1.0)[:, None, :]
    batch = xp.arange(b)[:, None, None]
    r0, r1 = y0[:, :, None], y0[:, :, None] + 1
    c0, c1 = x0[:, None, :], x0[:, None, :] + 1
    top = grid[batch, r0, c0] * (1 - wx) + grid[batch, r0, c1] * wx
    bottom = grid[batch, r1, c0] * (1 - wx) + grid[batch, r1, c1] * wx
    return top * (1 - wy) + bottom * wy


def even_fast_len(target: int) -> int:
    """Smallest even FFT-friendly length at least ``target``."""
    n = scipy.fft.next_fast_len(target, real=False)
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1, real=False)
    return int(n)


def oversample2(
    be: Backend, chips: Array, start: tuple[int, int], size: tuple[int, int], detect: bool | None = None
) -> Array:
    """Chips (B, H, W) with even H, W interpolated x2 by zero-padding their spectra, cropped: (B, *size).

    Returns samples ``start`` .. ``start + size`` of the (2H, 2W) interpolated chips: sample 2i is input pixel i,
    sample 2i + 1 the band-limited value half-way to pixel i + 1 (the Nyquist bin split between the two new
    halves, so that real input stays real). Each axis in turn: the even samples are the input itself and the odd
    ones one inverse FFT of the spectrum shifted by half a sample, which equals the inverse FFT of the
    zero-padded spectrum at half its length (and no padded copy). Assumes the chips' spectra are centred on zero
    frequency (deramped), as ampcor's stage 2 (ampcor.F, after ``derampc``).

    ``detect``: None keeps the complex values; True returns their amplitude, False their real part (real input),
    float32, written as the last axis is interleaved (no complex interleaved copy).
    """
    lines = _interleave_half_samples(be, chips, 1, start[0], size[0])
    return _interleave_half_samples(be, lines, 2, start[1], size[1], detect)


def _interleave_half_samples(
    be: Backend, values: Array, axis: int, start: int, size: int, detect: bool | None = None
) -> Array:
    """Samples ``start`` .. ``start + size`` of ``values`` (B, H, W) interpolated x2 along ``axis`` (1 or 2),
    detected as :func:`oversample2` says."""
    xp, fft = be.xp, be.fft
    n = values.shape[axis]
    spec = fft.fft(values, axis=axis, **be.fft_kwargs)
    frequencies = np.fft.fftfreq(n) * n
    shift = np.exp(1j * np.pi * frequencies / n)
    if n % 2 == 0:
        shift[n // 2] = 0.0  # the split Nyquist bin's two halves cancel half-way between samples
    shape = [1, 1, 1]
    shape[axis] = n
    spec *= xp.asarray(shift.astype(spec.dtype)).reshape(shape)
    odd = fft.ifft(spec, axis=axis, overwrite_x=True, **be.fft_kwargs)
    first, stop = start // 2, (start + size + 1) // 2
    out_shape = list(values.shape)
    out_shape[axis] = 2 * (stop - first)
    out = xp.empty(tuple(out_shape), dtype=odd.dtype if detect is None else xp.float32)

    def at(index: slice) -> tuple[slice, ...]:
        return (slice(None), index, slice(None)) if axis == 1 else (slice(None), slice(None), index)

    for parity, part in ((0, values), (1, odd)):
        target, source = out[at(slice(parity, None, 2))], part[at(slice(first, stop))]
        if detect:
            xp.abs(source, out=target)
        elif detect is None:
            target[...] = source
        else:
            target[...] = source.real
    return out[at(slice(start - 2 * first, start - 2 * first + size))]
