"""One batch of windows through the whole estimator: coarse NCC, ampcor statistics, sub-pixel refinement.

Amplitude mode follows ampcor on complex input (ISCE2 ``components/mroipac/ampcor/src/ampcor.F``): a pixel-level
amplitude NCC finds the integer peak and gives SNR and covariance; then the *complex* chips around that peak are
oversampled x2 before amplitude detection (this removes the ~0.1 px pixel-locking bias of amplitude correlation on
the raw grid) and a second amplitude NCC on the 0.5-px grid is refined by band-limited interpolation. Complex mode
correlates the complex chips coherently and refines that surface directly; it reaches the coherent Cramér-Rao bound.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from offset_cube.size import Size
from offset_cube.tracking import kernels as k
from offset_cube.tracking import strips
from offset_cube.tracking.backend import Backend

Mode = Literal["amplitude", "complex"]
Subpixel = Literal["dft", "parabolic"]
#: How amplitude mode computes its surfaces: 'window' chip by chip with FFTs (each window's chips oversampled x2
#: on their own), 'dense' from each tile's whole blocks (oversampled x2 once; each surface correlated strip by
#: strip, :mod:`offset_cube.tracking.strips`, or window by window from the blocks, :func:`dense_strips`, so windows
#: that overlap share the work), 'auto' the cheaper for the job (:func:`dense_is_cheaper`).
OversamplingPath = Literal["auto", "dense", "window"]

#: Guard band (px) around the chips that are oversampled x2, cropped after oversampling so that the periodic
#: FFT's edge ringing stays outside the window (without one, as in ampcor, azimuth errors are larger).
#: On bench/track_bench.py's pair, 2, 4 and 6 px give the same RMSE to 1e-4 px; 2 px keeps the FFTs smallest.
OS_GUARD = 2
#: Half range (px) of the oversampled search around the coarse peak. The coarse amplitude peak is within one
#: pixel of the true one (pixel-locking bias ~0.15 px), so +/-2 px would leave a margin (ampcor uses
#: min(search, 4)); +/-3 px gives the Lanczos refinement (kernels.LANCZOS_A = 6 samples of 0.5 px each side)
#: its whole support around any peak within +/-1.5 px: 2 px with a 4-sample kernel locked to the 0.5-px grid
#: (mean error swinging +/-0.008 px with the fraction at coherence 0.95, against +/-0.005 px now).
OS_HALF_SEARCH = 3


@dataclass(frozen=True)
class BatchParams:
    """Everything the batch estimator needs; shapes derived from the sizes are (lines, samples)."""

    window: Size
    search: Size
    mode: Mode
    subpixel: Subpixel
    oversampling: int
    complex_input: bool
    path: OversamplingPath = "window"
    #: Dense path: whether the (pixel-level, 0.5-px) surfaces are correlated strip by strip, else window by window
    #: from the tile's blocks (:func:`dense_strips`).
    strips: tuple[bool, bool] = (True, True)
    #: Windows per chunk of the per-window surfaces (their chips in the caches); 0: the whole batch at once.
    chunk: int = 0

    @property
    def lags(self) -> tuple[int, int]:
        return (2 * self.search.lines + 1, 2 * self.search.samples + 1)

    @property
    def search_shape(self) -> tuple[int, int]:
        return (self.window.lines + 2 * self.search.lines, self.window.samples + 2 * self.search.samples)

    @property
    def gather_shape(self) -> tuple[int, int]:
        """Shape at which search chips are gathered: in complex mode their FFT size, which spares a zero-padded
        copy (what lies past a chip never meets a valid lag, :func:`kernels.complex_surface`), else the chip."""
        if self.mode == "complex":
            return k.complex_search_shape(self.window.shape, self.lags)
        return self.search_shape

    @property
    def ref_margin(self) -> int:
        """Extra pixels needed around each reference chip (the oversampling guard band)."""
        return self._os_margin(0)

    @property
    def sec_margin(self) -> int:
        """Extra pixels needed around each search area (refinement search plus guard band)."""
        return self._os_margin(1)

    def _os_margin(self, which: int) -> int:
        if self.mode != "amplitude":
            return 0
        lines, samples = os_chip_shapes(self.window.shape)[which]
        return max((lines - self.window.lines) // 2, (samples - self.window.samples) // 2)

    def zoom_levels(self) -> int:
        """Matrix-DFT zoom levels so that the last grid spacing is at most 1/oversampling px."""
        # The oversampled amplitude surface has 0.5-px lags, so its grids are twice as fine in pixels.
        scale = 2.0 if self.mode == "amplitude" else 1.0
        return k.zoom_levels(scale / self.oversampling)

    def bytes_per_window(self) -> int:
        """Rough peak working memory per window of a batch (for sizing batches to a memory budget)."""
        sh, sw = self.search_shape
        stage1 = 96 * sh * sw
        if self.mode == "complex":
            return stage1
        _, (oh, ow) = os_chip_shapes(self.window.shape)
        return stage1 + 160 * oh * ow


@dataclass(frozen=True)
class BatchResult:
    """Host arrays, one value per window: the sub-pixel lag inside the search area and ampcor's statistics."""

    lag_az: np.ndarray  # float64, NaN where invalid
    lag_rg: np.ndarray
    snr: np.ndarray
    cov_az: np.ndarray
    cov_rg: np.ndarray
    cov_azrg: np.ndarray


@dataclass(frozen=True)
class BatchInput:
    """Image blocks on the backend's device and where each window's chips lie in them (device int arrays).

    ``ref_tops``/``ref_lefts`` locate the reference chips in ``ref_block``; ``sec_tops``/``sec_lefts`` the
    search areas in ``sec_block``. Both blocks carry the margins of :class:`BatchParams` around every chip.
    """

    ref_block: Any
    sec_block: Any
    ref_tops: Any
    ref_lefts: Any
    sec_tops: Any
    sec_lefts: Any
    #: Dense path (amplitude): both blocks oversampled x2 and detected (sample 2i on block pixel i), else None.
    oversampled: tuple[Any, Any] | None = None


def track_batch(be: Backend, params: BatchParams, data: BatchInput) -> BatchResult:
    """Estimate the offsets of a batch of windows.

    The returned lag is the offset of the match from the search area's top-left corner, so
    offset = (search corner - reference corner) + lag.
    """
    xp = be.xp
    h, w = params.window.shape
    if params.mode == "complex":
        ref = k.gather(be, data.ref_block, data.ref_tops, data.ref_lefts, params.window.shape)
        search = k.gather(be, data.sec_block, data.sec_tops, data.sec_lefts, params.gather_shape)
        surface = k.complex_surface(be, ref, search, params.lags)
        del ref, search
        peak = k.find_peak(be, surface.ncc, h * w)
        lag_az, lag_rg = _refine(be, params, surface, peak.iy, peak.ix)
        ok = peak.interior
        del surface
    else:
        peak = k.find_peak(be, _amplitude_ncc(be, params, data), h * w)
        lag_az, lag_rg, ok = _oversampled_refine(be, params, data, peak)
        ok = ok & peak.interior
    nan = xp.float64(np.nan)
    return BatchResult(
        lag_az=be.to_host(xp.where(ok, lag_az, nan)),
        lag_rg=be.to_host(xp.where(ok, lag_rg, nan)),
        snr=be.to_host(peak.snr),
        cov_az=be.to_host(peak.cov_az),
        cov_rg=be.to_host(peak.cov_rg),
        cov_azrg=be.to_host(peak.cov_azrg),
    )


def _amplitude_ncc(be: Backend, params: BatchParams, data: BatchInput) -> Any:
    """Stage 1 of amplitude mode: the pixel-level amplitude NCC (B, Ly, Lx) of every window, from the tile's
    strips (:mod:`offset_cube.tracking.strips`) where the dense path correlates strips, else window by window with
    FFTs."""
    if data.oversampled is not None and params.strips[0]:
        ref, sec = (_detect(be, block, params.complex_input) for block in (data.ref_block, data.sec_block))
        corners = _host_corners(be, data.ref_tops, data.ref_lefts, data.sec_tops, data.sec_lefts)
        return strips.amplitude_ncc(be, ref, sec, corners, params.window.shape, params.lags)

    def surfaces(part: BatchInput, _: k.Peak | None) -> Any:
        ref = k.gather(be, part.ref_block, part.ref_tops, part.ref_lefts, params.window.shape)
        search = k.gather(be, part.sec_block, part.sec_tops, part.sec_lefts, params.search_shape)
        detected = _detect(be, ref, params.complex_input), _detect(be, search, params.complex_input)
        del ref, search
        return k.amplitude_surface(be, *detected, params.lags)

    return _in_chunks(be, params.chunk, surfaces, data)


def _in_chunks(be: Backend, size: int, surfaces: Any, data: BatchInput, peak: k.Peak | None = None) -> Any:
    """``surfaces(data, peak)`` (B, Ly, Lx) computed for consecutive parts of ``size`` windows of the batch (all
    at once for 0) and joined."""
    count = data.ref_tops.shape[0]
    if size <= 0 or count <= size:
        return surfaces(data, peak)
    parts = [slice(start, start + size) for start in range(0, count, size)]
    return be.xp.concatenate([surfaces(_part(data, p), None if peak is None else _part(peak, p)) for p in parts])


def _part(record: Any, part: slice) -> Any:
    """The windows ``part`` of a batch's corners (:class:`BatchInput`; its blocks are shared) or of its coarse
    peaks (:class:`~kernels.Peak`, one value per window in every field)."""
    names: tuple[str, ...] = ("ref_tops", "ref_lefts", "sec_tops", "sec_lefts")
    if not isinstance(record, BatchInput):
        names = tuple(field.name for field in dataclasses.fields(record))
    return dataclasses.replace(record, **{name: getattr(record, name)[part] for name in names})


def _host_corners(be: Backend, *corners: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rt, rl, st, sl = (be.to_host(c).astype(np.int64) for c in corners)
    return rt, rl, st, sl


def _detect(be: Backend, chips: Any, complex_input: bool) -> Any:
    """Amplitude of chips of complex images; chips of real images are used as they are (float32)."""
    xp = be.xp
    if complex_input:
        return xp.abs(chips).astype(xp.float32, copy=False)
    return (chips.real if xp.iscomplexobj(chips) else chips).astype(xp.float32, copy=False)


def _refine(be: Backend, params: BatchParams, surface: k.Surface, iy: Any, ix: Any) -> tuple[Any, Any]:
    if params.subpixel == "parabolic":
        return k.parabolic_peak(be, surface.ncc, iy, ix)
    return k.zoom_peak(be, surface, iy, ix, params.zoom_levels())


def os_chip_shapes(window: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """FFT-friendly shapes of the reference and secondary chips oversampled in amplitude mode.

    Each is the window (plus the refinement search for the secondary) plus a guard band of at least
    :data:`OS_GUARD` px per side, grown to an even length with small prime factors.
    """
    p, g = OS_HALF_SEARCH, OS_GUARD
    ref = tuple(k.even_fast_len(n + 2 * g) for n in window)
    sec = tuple(k.even_fast_len(n + 2 * p + 2 * g) for n in window)
    return (ref[0], ref[1]), (sec[0], sec[1])


#: Cost model constants (seconds per unit), fitted to one-worker timings of both paths on bench/track_bench.py's
#: pair with nine window/search/grid settings (peer, Shirase, the engine's 64x32, the demo's 160x32 and five
#: more; 2026-12-07, 2-core machine at load ~0.8): an n log2 n unit of FFT, and an element of the vectorised array
#: operations (the strips' products, segment sums, summed-area tables). Measured/model per window 0.45-0.91
#: (median 0.60 before scaling both by it). With the dense path's choice of surfaces per stage (:func:`dense_strips`)
#: the choice between the paths was right in eight of the nine settings in alternating runs the same afternoon
#: (the miss: a 64x32 window every 64x32 px, dense measured 0.89x the per-window path, model 1.09x).
FFT_UNIT_S = 6.0e-10
ELEMENT_S = 1.2e-9


def dense_is_cheaper(params: BatchParams, skip: tuple[int, int]) -> bool:
    """Whether the dense path costs less per window than the per-window path for a job whose windows are
    ``skip`` = (lines, samples) apart (the grid's spacing; the dense path shares work only between overlapping
    windows). Amplitude mode only; see :func:`window_cost_s` and :func:`dense_cost_s`."""
    return params.mode == "amplitude" and dense_cost_s(params, skip) < window_cost_s(params)


def _fft_work(*shape: int) -> float:
    n = math.prod(shape)
    return n * math.log2(max(n, 2))


def window_cost_s(params: BatchParams) -> float:
    """Seconds per window of the per-window path: the x2 oversampling of both chips (forward FFT, inverses at 2x
    and 4x the size) and the FFT surfaces (:func:`_surface_costs_s`)."""
    oversampling = sum(7 * _fft_work(*shape) for shape in os_chip_shapes(params.window.shape))
    return FFT_UNIT_S * oversampling + sum(_surface_costs_s(params))


def _surface_costs_s(params: BatchParams) -> tuple[float, float]:
    """Seconds per window of the per-window FFT surfaces (pixel level, 0.5-px level): three FFTs of the search
    chip, three of the oversampled search chip."""
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    coarse = 3 * _fft_work(*params.search_shape)
    fine = 3 * _fft_work(2 * h + 4 * p, 2 * w + 4 * p)
    return FFT_UNIT_S * coarse, FFT_UNIT_S * fine


def _strip_costs_s(params: BatchParams, skip: tuple[int, int]) -> tuple[float, float]:
    """Seconds per window of the strips' surfaces (pixel level, 0.5-px level): their share of the summed-area
    tables (one grid cell, skip_lines x skip_samples px, of each image, at 1x and 4x the pixels), the per-shift
    work (the cell's lines times the shifts times the strip's spectrum) and each window's inverse FFTs."""
    w = params.window.samples
    ly, lx = params.lags
    cell = skip[0] * skip[1]
    fine_lags = 4 * OS_HALF_SEARCH + 1
    coarse = FFT_UNIT_S * ly * _fft_work(w + lx)
    coarse += ELEMENT_S * (2 * 4 * cell + skip[0] * (w + lx) / 2 * (ly + strips.CLUSTER_SPREAD) * 3)
    fine = FFT_UNIT_S * fine_lags * _fft_work(2 * w + fine_lags)
    fine_shifts = fine_lags + 2 * strips.CLUSTER_SPREAD
    fine += ELEMENT_S * (2 * 4 * 4 * cell + 2 * skip[0] * (2 * w + fine_lags) / 2 * fine_shifts * 3)
    return coarse, fine


def dense_strips(params: BatchParams, skip: tuple[int, int]) -> tuple[bool, bool]:
    """Whether the dense path correlates each surface (pixel level, 0.5-px level) strip by strip (cheaper where
    windows overlap in azimuth: the strips share their products) rather than window by window from the blocks."""
    by_strips, by_window = _strip_costs_s(params, skip), _surface_costs_s(params)
    return by_strips[0] < by_window[0], by_strips[1] < by_window[1]


def dense_cost_s(params: BatchParams, skip: tuple[int, int]) -> float:
    """Seconds per window of the dense path: its share of the blocks' x2 oversampling (one grid cell of each
    image) and each surface the cheaper way (:func:`dense_strips`)."""
    oversampling = FFT_UNIT_S * 2 * 7 * skip[0] * skip[1] * math.log2(4 * 512 * 512)
    return oversampling + sum(map(min, _strip_costs_s(params, skip), _surface_costs_s(params)))


#: Bytes per block pixel of a dense-path tile in flight: the complex blocks, their x2-oversampled spectra and
#: detected copies (4x the pixels), the summed-area tables.
DENSE_BYTES_PER_PX = 400
#: Smallest (lines, samples) that a dense tile's windows span: small windows share little per tile otherwise, and
#: the per-tile work (oversampling margins, Python overhead per strip) dominates.
DENSE_TILE_PX = (256, 1024)


def dense_tile_shape(params: BatchParams, skip: tuple[int, int], budget_bytes: int) -> tuple[int, int]:
    """(window rows, window columns) of a dense-path tile: its blocks span 4x a search area's lines and 3x its
    samples, so the windows of a tile share most of their pixels; narrower only where ``budget_bytes`` (per
    tile in flight) does not hold that. The shape depends on the job, not on the number of workers, so the
    offsets do not either (the x2 oversampling of a block depends on the block's extent by ~0.003 px)."""
    sh, sw = params.search_shape
    margin = 2 * (params.sec_margin + 1)
    rows = max(1, math.ceil(max(3 * (sh + margin), DENSE_TILE_PX[0]) / max(skip[0], 1)))
    lines = rows * skip[0] + sh + margin
    cols = max(1, math.ceil(max(2 * (sw + margin), DENSE_TILE_PX[1]) / max(skip[1], 1)))
    fit = (budget_bytes // (DENSE_BYTES_PER_PX * lines) - sw - margin) // max(skip[1], 1)
    return rows, int(max(1, min(cols, fit)))


def _even(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0] + shape[0] % 2, shape[1] + shape[1] % 2)


def oversample_block(be: Backend, block: Any, complex_input: bool) -> Any:
    """A whole image block interpolated x2 (sample 2i on pixel i) and detected: the dense path's input.

    The block is padded with zero lines and samples at the end to even lengths with small prime factors (a tile's
    block had sizes such as 262 = 2 x 131 or 1112 = 8 x 139, whose FFTs are several times slower); the result
    covers the block evened (odd sizes gain one line or sample). The periodic FFT's edge ringing reaches a few
    pixels into the block, where the tile's margins (the per-window path's guard band) keep every chip away.
    """
    xp = be.xp
    lines, samples = _even(block.shape)
    fast = (k.even_fast_len(lines), k.even_fast_len(samples))
    padded = block
    if fast != block.shape:
        padded = xp.zeros(fast, dtype=block.dtype)
        padded[: block.shape[0], : block.shape[1]] = block
    return k.oversample2(be, padded[None], (0, 0), (2 * lines, 2 * samples), detect=complex_input)[0]


def _oversampled_chips(be: Backend, params: BatchParams, data: BatchInput, peak: k.Peak) -> tuple[Any, Any]:
    """Detected x2-oversampled reference chips (B, 2h, 2w) and search chips +/-OS_HALF_SEARCH px around the
    coarse peak (B, 2h + 4p, 2w + 4p), chip by chip (the per-window path)."""
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    ref_shape, sec_shape = os_chip_shapes(params.window.shape)
    gry, grx = (ref_shape[0] - h) // 2, (ref_shape[1] - w) // 2
    gsy, gsx = (sec_shape[0] - h - 2 * p) // 2, (sec_shape[1] - w - 2 * p) // 2
    ref = k.gather(be, data.ref_block, data.ref_tops - gry, data.ref_lefts - grx, ref_shape)
    sec_tops = data.sec_tops + peak.iy - p - gsy
    sec_lefts = data.sec_lefts + peak.ix - p - gsx
    sec = k.gather(be, data.sec_block, sec_tops, sec_lefts, sec_shape)
    detect = params.complex_input
    ref2 = k.oversample2(be, ref, (2 * gry, 2 * grx), (2 * h, 2 * w), detect)
    del ref
    return ref2, k.oversample2(be, sec, (2 * gsy, 2 * gsx), (2 * h + 4 * p, 2 * w + 4 * p), detect)


def _fine_ncc(be: Backend, params: BatchParams, data: BatchInput, peak: k.Peak) -> Any:
    """Amplitude NCC (B, 4p + 1, 4p + 1) of the x2-oversampled chips at 0.5-px lags within +/-p px of the
    coarse peak: from the dense blocks (strip by strip, or window by window), or chip by chip."""
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    lags = (4 * p + 1, 4 * p + 1)
    if data.oversampled is None:

        def chips(part: BatchInput, peaks: k.Peak) -> Any:
            return k.amplitude_surface(be, *_oversampled_chips(be, params, part, peaks), lags)

        return _in_chunks(be, params.chunk, chips, data, peak)
    ref_os, sec_os = data.oversampled
    if params.strips[1]:
        rt, rl, st, sl = _host_corners(be, data.ref_tops, data.ref_lefts, data.sec_tops, data.sec_lefts)
        iy, ix = be.to_host(peak.iy).astype(np.int64), be.to_host(peak.ix).astype(np.int64)
        corners = (2 * rt, 2 * rl, 2 * (st + iy - p), 2 * (sl + ix - p))
        return strips.amplitude_ncc(be, ref_os, sec_os, corners, (2 * h, 2 * w), lags)

    def from_blocks(part: BatchInput, peaks: k.Peak) -> Any:
        ref2 = k.gather(be, ref_os, 2 * part.ref_tops, 2 * part.ref_lefts, (2 * h, 2 * w))
        sec_tops, sec_lefts = 2 * (part.sec_tops + peaks.iy - p), 2 * (part.sec_lefts + peaks.ix - p)
        sec2 = k.gather(be, sec_os, sec_tops, sec_lefts, (2 * h + 4 * p, 2 * w + 4 * p))
        return k.amplitude_surface(be, ref2, sec2, lags)

    return _in_chunks(be, params.chunk, from_blocks, data, peak)


def _oversampled_refine(be: Backend, params: BatchParams, data: BatchInput, peak: k.Peak) -> tuple[Any, Any, Any]:
    """Amplitude NCC of the x2-oversampled complex chips around the coarse peak, refined; lags in px.

    The 0.5-px surface is sampled finely enough to be interpolated locally (Lanczos, :func:`k.lanczos_peak`),
    so both paths refine the same 9x9 surface the same way.
    """
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    ncc = _fine_ncc(be, params, data, peak)
    fine = k.find_peak(be, ncc, 4 * h * w, statistics=False)
    if params.subpixel == "parabolic":
        fy, fx = k.parabolic_peak(be, ncc, fine.iy, fine.ix)
    else:
        fy, fx = k.lanczos_peak(be, ncc, fine.iy, fine.ix, params.zoom_levels())
    lag_az = peak.iy - p + fy / 2
    lag_rg = peak.ix - p + fx / 2
    return lag_az, lag_rg, fine.interior
