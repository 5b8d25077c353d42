"""Amplitude NCC surfaces of many overlapping windows computed once per image strip, not once per window.

Overlapping windows (the Shirase job's 256x64 windows every 44x8 px overlap 46-fold) make per-window FFTs
recompute the same products again and again. Here the numerator sum_window r(p) s(p + l) is split by axis:

* range: windows of one grid column share a reference strip (their w samples) and a secondary strip (the union
  of their search areas); one real FFT per line of each strip gives, after the inverse FFT, the correlation at
  every range lag, for every line;
* azimuth: for each azimuth shift d between reference line y and secondary line y + d, the per-line spectra
  products are summed over each window's lines (in segments of lines, then over segments by doubling: direct
  float32 sums, no running-sum cancellation), so the cost is lines x shifts x spectrum length, shared by every
  window of the column, whatever the window height.

The normalisation (window sums of s and s^2 at every lag, of r and r^2) comes from 2-D summed-area tables in
float64. The surfaces equal :func:`offset_cube.tracking.kernels.amplitude_surface`'s to float rounding, so the
integer peak, SNR and covariances are the same as on the per-window path.

Windows of a column whose search areas lie far apart (a gross-offset field, or the refinement stage around
scattered peaks) are split into clusters so that one outlier does not widen the strips of the others.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft

from offset_cube.tracking.backend import Backend

Array = Any

#: A cluster's azimuth shifts span at most this many lags beyond one window's (and its secondary strip at most
#: this many samples beyond one search area's width): wider spreads go into separate clusters.
CLUSTER_SPREAD = 8


def amplitude_ncc(
    be: Backend,
    ref_block: Array,
    sec_block: Array,
    corners: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    window: tuple[int, int],
    lags: tuple[int, int],
) -> Array:
    """Pearson NCC (B, Ly, Lx) float32 of real windows over their search areas, as ``amplitude_surface``.

    ``corners`` = host int arrays (reference tops, lefts, search-area tops, lefts) in the blocks' pixels;
    window i is ``ref_block[rt:rt+h, rl:rl+w]`` and lag (dy, dx) pairs it with
    ``sec_block[st+dy : st+dy+h, sl+dx : sl+dx+w]``.
    """
    xp = be.xp
    rt, rl, st, sl = corners
    h, w = window
    ly, lx = lags
    n = h * w
    # Each image centred on its block mean: the NCC does not change, the float32 products lose less.
    ref = (ref_block - ref_block.mean(dtype=xp.float64)).astype(xp.float32)
    sec = (sec_block - sec_block.mean(dtype=xp.float64)).astype(xp.float32)
    sum_r, sq_r = _box_sums(xp, ref, xp.asarray(rt), xp.asarray(rl), window)
    energy_r = sq_r - sum_r * sum_r / n
    lag_tops = xp.asarray(st)[:, None, None] + xp.arange(ly)[None, :, None]
    lag_lefts = xp.asarray(sl)[:, None, None] + xp.arange(lx)[None, None, :]
    sum_s, sq_s = _box_sums(xp, sec, lag_tops, lag_lefts, window)
    var_s = xp.maximum(sq_s - sum_s * sum_s / n, 0.0)
    num = correlation(be, ref, sec, corners, window, lags) - sum_r[:, None, None] * sum_s / n
    denom = xp.sqrt(xp.maximum(energy_r, 0.0)[:, None, None] * var_s)
    return xp.where(denom > 0, num / xp.where(denom > 0, denom, 1.0), 0.0).astype(xp.float32)


def _box_sums(xp: Any, image: Array, tops: Array, lefts: Array, window: tuple[int, int]) -> tuple[Array, Array]:
    """Sums of the image and of its square (float64) over the ``window`` at every (top, left), from two
    summed-area tables read at the same four flat corner indices."""
    h, w = window
    stride = image.shape[1] + 1
    first = tops * stride + lefts
    corners = (first + h * stride + w, first + w, first + h * stride, first)
    sums = []
    for square in (False, True):
        flat = _sat(xp, image, square).ravel()
        sums.append(flat[corners[0]] - flat[corners[1]] - flat[corners[2]] + flat[corners[3]])
    return sums[0], sums[1]


def _sat(xp: Any, image: Array, square: bool) -> Array:
    """Summed-area table (H + 1, W + 1) float64 of the image, or of its square, with a zero first line and
    column. Each table is its own contiguous float64 array, summed in place (twice as fast as the two in one
    complex128 array, whose real and imaginary parts are strided)."""
    sat = xp.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=xp.float64)
    inner = sat[1:, 1:]
    inner[...] = image
    if square:
        inner *= inner
    if xp is np:  # numpy's cumsum along the first axis is several times slower than adding line by line
        np.cumsum(inner, axis=1, out=inner)
        for i in range(1, inner.shape[0]):
            np.add(inner[i - 1], inner[i], out=inner[i])
    else:
        inner[...] = xp.cumsum(xp.cumsum(inner, axis=1), axis=0)
    return sat


def correlation(
    be: Backend,
    ref: Array,
    sec: Array,
    corners: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    window: tuple[int, int],
    lags: tuple[int, int],
) -> Array:
    """sum over each window of ref(p) * sec(p + corner offset + lag): (B, Ly, Lx) float64 (see module doc)."""
    xp = be.xp
    rt, rl, st, sl = corners
    out = xp.zeros((rt.size, *lags), dtype=xp.float64)
    for members in clusters(rt, rl, st, sl, lags):
        out[xp.asarray(members)] = _cluster_correlation(be, ref, sec, tuple(c[members] for c in corners), window, lags)
    return out


def clusters(rt: np.ndarray, rl: np.ndarray, st: np.ndarray, sl: np.ndarray, lags: tuple[int, int]) -> list[np.ndarray]:
    """Index arrays of windows that share a reference column and lie within CLUSTER_SPREAD of each other in
    azimuth shift (search top - reference top) and in search-area left edge."""
    groups = []
    shift = st - rt
    for column in np.unique(rl):
        members = np.nonzero(rl == column)[0]
        for by_shift in _split(members, shift[members]):
            groups.extend(_split(by_shift, sl[by_shift]))
    return groups


def _split(members: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
    """``members`` cut into runs of sorted ``values`` spanning at most CLUSTER_SPREAD each."""
    order = np.argsort(values, kind="stable")
    runs, start = [], 0
    for i in range(1, order.size + 1):
        if i == order.size or values[order[i]] - values[order[start]] > CLUSTER_SPREAD:
            runs.append(np.sort(members[order[start:i]]))
            start = i
    return runs


def _cluster_correlation(
    be: Backend,
    ref: Array,
    sec: Array,
    corners: tuple[np.ndarray, ...],
    window: tuple[int, int],
    lags: tuple[int, int],
) -> Array:
    """:func:`correlation` of windows sharing one reference column (their strips transformed once)."""
    xp, fft = be.xp, be.fft
    rt, rl, st, sl = corners
    h, w = window
    ly, lx = lags
    y0, y1 = int(rt.min()), int(rt.max()) + h
    shift = st - rt
    d0, d1 = int(shift.min()), int(shift.max()) + ly  # absolute azimuth shifts [d0, d1)
    e0, e1 = int(sl.min()), int(sl.max()) + w + lx - 1  # secondary columns of the strip
    left = int(rl[0])
    size = scipy.fft.next_fast_len(e1 - e0, real=True)
    ref_spec = xp.conj(fft.rfft(ref[y0:y1, left : left + w], n=size, axis=1, **be.fft_kwargs))
    sec_spec = fft.rfft(_rows(xp, sec[:, e0:e1], y0 + d0, y1 + d1 - 1), n=size, axis=1, **be.fft_kwargs)
    # Lines are summed in segments of g lines (g divides the window height and every window's first line), then
    # segments over each window by doubling.
    g = math.gcd(h, *(int(v) for v in np.unique(rt - y0)))
    first = xp.asarray((rt - y0) // g)
    lines, shifts = y1 - y0, d1 - d0
    segment_sums = _segment_products(xp, ref_spec, _shifted_lines(xp, sec_spec, lines, shifts), g)
    per_shift = sliding_sums(xp, segment_sums, h // g)[first].view(ref_spec.dtype)  # (n, shifts, K)
    batch = xp.arange(rt.size)[:, None]
    spectra = per_shift[batch, xp.asarray(shift - d0)[:, None] + xp.arange(ly)[None, :]]  # (n, Ly, K)
    corr = fft.irfft(spectra, n=size, axis=2, **be.fft_kwargs)  # (n, Ly, size): range lag from column e0
    cols = xp.asarray(sl - e0)[:, None] + xp.arange(lx)[None, :]
    return corr[batch[:, :, None], xp.arange(ly)[None, :, None], cols[:, None, :]]


#: Bytes of line products formed at once on the CPU (numpy): a chunk of segments whose products stay in a core's
#: cache while they are summed. All at once, the Shirase settings' refinement stage wrote and re-read 27 MB per
#: cluster; in chunks of 256 KiB the Shirase job ran 1.2-1.4x more windows per CPU-second (same sums, bit for bit).
PRODUCT_CHUNK_BYTES = 2**18


def _segment_products(xp: Any, ref_spec: Array, shifted: Array, g: int) -> Array:
    """Sums over each segment of ``g`` lines of the products of every reference line with the secondary line
    ``shift`` below it: (lines // g, shifts, 2K) float32, real and imaginary parts side by side (float32 sums
    are fast). ``shifted`` is (lines, shifts, K) with element [y, j] = secondary line y + j."""
    lines, shifts, size = shifted.shape
    segments = lines // g
    step = segments
    if xp is np:
        step = max(1, PRODUCT_CHUNK_BYTES // (g * shifts * size * ref_spec.itemsize))
    out = xp.empty((segments, shifts, 2 * size), dtype=xp.float32)
    for s0 in range(0, segments, step):
        s1 = min(segments, s0 + step)
        product = ref_spec[s0 * g : s1 * g, None, :] * shifted[s0 * g : s1 * g]
        out[s0:s1] = product.view(xp.float32).reshape(s1 - s0, g, shifts, 2 * size).sum(axis=1)
    return out


def sliding_sums(xp: Any, values: Array, length: int) -> Array:
    """Sums of ``length`` consecutive rows of ``values`` (n, m), for every first row: (n - length + 1, m).

    Built from sums of 1, 2, 4, ... rows (binary decomposition of ``length``): about log2(length) vectorised
    additions of whole arrays instead of a running sum (slow along the first axis, and cancelling).
    """
    total, covered, power, width = None, 0, values, 1
    count = values.shape[0] - length + 1
    while True:
        if length & width:
            part = power[covered : covered + count]
            total = part if total is None else total + part
            covered += width
        width *= 2
        if width > length:
            return total
        power = power[: -(width // 2)] + power[width // 2 :]


def _shifted_lines(xp: Any, spectra: Array, lines: int, shifts: int) -> Array:
    """(lines, shifts, K) view (numpy) or copy with element [y, j] = ``spectra[y + j]``."""
    if xp is np:
        return np.lib.stride_tricks.sliding_window_view(spectra, lines, axis=0).transpose(2, 0, 1)
    return spectra[xp.arange(lines)[:, None] + xp.arange(shifts)[None, :]]


def _rows(xp: Any, image: Array, start: int, stop: int) -> Array:
    """Lines [start, stop) of ``image``, zero where they fall outside it (never used by any window's lags)."""
    if start >= 0 and stop <= image.shape[0]:
        return image[start:stop]
    out = xp.zeros((stop - start, image.shape[1]), dtype=image.dtype)
    a, b = max(start, 0), min(stop, image.shape[0])
    if b > a:
        out[a - start : b - start] = image[a:b]
    return out
