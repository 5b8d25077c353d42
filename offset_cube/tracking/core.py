"""One batch of windows through the whole estimator: coarse NCC, ampcor statistics, sub-pixel refinement.

Amplitude mode follows ampcor on complex input (ISCE2 ``components/mroipac/ampcor/src/ampcor.F``): a pixel-level
amplitude NCC finds the integer peak and gives SNR and covariance; then the *complex* chips around that peak are
oversampled x2 before amplitude detection (this removes the ~0.1 px pixel-locking bias of amplitude correlation on
the raw grid) and a second amplitude NCC on the 0.5-px grid is refined by band-limited interpolation. Complex mode
correlates the complex chips coherently and refines that surface directly; it reaches the coherent Cramér-Rao bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from offset_cube.size import Size
from offset_cube.tracking import kernels as k
from offset_cube.tracking.backend import Backend

Mode = Literal["amplitude", "complex"]
Subpixel = Literal["dft", "parabolic"]
#: How amplitude mode oversamples: 'window' interpolates each window's chips x2 on their own, 'dense' the tile's
#: whole image blocks once (windows that overlap share the work), 'auto' picks the cheaper per tile
#: (:func:`dense_is_cheaper`).
OversamplingPath = Literal["auto", "dense", "window"]

#: Guard band (px) around the chips that are oversampled x2, cropped after oversampling so that the periodic
#: FFT's edge ringing stays outside the window (without one, as in ampcor, azimuth errors are larger).
#: On bench/track_bench.py's pair, 2, 4 and 6 px give the same RMSE to 1e-4 px; 2 px keeps the FFTs smallest.
OS_GUARD = 2
#: Half range (px) of the oversampled search around the coarse peak. The coarse amplitude peak is within one
#: pixel of the true one (pixel-locking bias ~0.15 px), so +/-2 px leaves a margin; ampcor uses min(search, 4).
OS_HALF_SEARCH = 2


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

    @property
    def lags(self) -> tuple[int, int]:
        return (2 * self.search.lines + 1, 2 * self.search.samples + 1)

    @property
    def search_shape(self) -> tuple[int, int]:
        return (self.window.lines + 2 * self.search.lines, self.window.samples + 2 * self.search.samples)

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
    ref = k.gather(be, data.ref_block, data.ref_tops, data.ref_lefts, params.window.shape)
    search = k.gather(be, data.sec_block, data.sec_tops, data.sec_lefts, params.search_shape)
    if params.mode == "complex":
        surface = k.complex_surface(be, ref, search, params.lags)
    else:
        detected = _detect(be, ref, params.complex_input), _detect(be, search, params.complex_input)
        surface = k.amplitude_surface(be, *detected, params.lags)
        del detected
    del ref, search
    peak = k.find_peak(be, surface.ncc, h * w)
    if params.mode == "complex":
        lag_az, lag_rg = _refine(be, params, surface, peak.iy, peak.ix)
        ok = peak.interior
    else:
        lag_az, lag_rg, ok = _oversampled_refine(be, params, data, peak)
        ok = ok & peak.interior
    del surface
    nan = xp.float64(np.nan)
    return BatchResult(
        lag_az=be.to_host(xp.where(ok, lag_az, nan)),
        lag_rg=be.to_host(xp.where(ok, lag_rg, nan)),
        snr=be.to_host(peak.snr),
        cov_az=be.to_host(peak.cov_az),
        cov_rg=be.to_host(peak.cov_rg),
        cov_azrg=be.to_host(peak.cov_azrg),
    )


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


def dense_is_cheaper(window: tuple[int, int], windows: int, blocks: list[tuple[int, int]]) -> bool:
    """Cost model of the x2 oversampling: FFT work (n log n over the samples transformed, forward and the two
    inverse passes at 2x and 4x the size) of ``windows`` separate chip pairs against that of the tile's
    ``blocks`` (reference and secondary, (lines, samples)) oversampled once."""

    def work(shape: tuple[int, int]) -> float:
        n = shape[0] * shape[1]
        return 7.0 * n * math.log2(max(n, 2))  # 1 + 2 + 4 times n: the forward FFT and the two padded inverses

    chips = sum(work(shape) for shape in os_chip_shapes(window))
    return sum(work(_even(shape)) for shape in blocks) < windows * chips


def _even(shape: tuple[int, ...]) -> tuple[int, int]:
    return (shape[0] + shape[0] % 2, shape[1] + shape[1] % 2)


def oversample_block(be: Backend, block: Any, complex_input: bool) -> Any:
    """A whole image block interpolated x2 (sample 2i on pixel i) and detected: the dense path's input.

    Odd sizes are padded with one zero line or sample at the end. The periodic FFT's edge ringing reaches a few
    pixels into the block, where the tile's margins (the per-window path's guard band) keep every chip away.
    """
    xp = be.xp
    lines, samples = _even(block.shape)
    padded = block
    if (lines, samples) != block.shape:
        padded = xp.zeros((lines, samples), dtype=block.dtype)
        padded[: block.shape[0], : block.shape[1]] = block
    return _detect(be, k.oversample2(be, padded[None], (0, 0), (2 * lines, 2 * samples))[0], complex_input)


def _oversampled_chips(be: Backend, params: BatchParams, data: BatchInput, peak: k.Peak) -> tuple[Any, Any]:
    """Detected x2-oversampled reference chips (B, 2h, 2w) and search chips +/-OS_HALF_SEARCH px around the
    coarse peak (B, 2h + 4p, 2w + 4p), from the dense blocks or chip by chip."""
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    if data.oversampled is not None:
        ref_os, sec_os = data.oversampled
        ref2 = k.gather(be, ref_os, 2 * data.ref_tops, 2 * data.ref_lefts, (2 * h, 2 * w))
        sec_tops, sec_lefts = 2 * (data.sec_tops + peak.iy - p), 2 * (data.sec_lefts + peak.ix - p)
        return ref2, k.gather(be, sec_os, sec_tops, sec_lefts, (2 * h + 4 * p, 2 * w + 4 * p))
    ref_shape, sec_shape = os_chip_shapes(params.window.shape)
    gry, grx = (ref_shape[0] - h) // 2, (ref_shape[1] - w) // 2
    gsy, gsx = (sec_shape[0] - h - 2 * p) // 2, (sec_shape[1] - w - 2 * p) // 2
    ref = k.gather(be, data.ref_block, data.ref_tops - gry, data.ref_lefts - grx, ref_shape)
    sec_tops = data.sec_tops + peak.iy - p - gsy
    sec_lefts = data.sec_lefts + peak.ix - p - gsx
    sec = k.gather(be, data.sec_block, sec_tops, sec_lefts, sec_shape)
    ref2 = _detect(be, k.oversample2(be, ref, (2 * gry, 2 * grx), (2 * h, 2 * w)), params.complex_input)
    del ref
    sec2 = k.oversample2(be, sec, (2 * gsy, 2 * gsx), (2 * h + 4 * p, 2 * w + 4 * p))
    return ref2, _detect(be, sec2, params.complex_input)


def _oversampled_refine(be: Backend, params: BatchParams, data: BatchInput, peak: k.Peak) -> tuple[Any, Any, Any]:
    """Amplitude NCC of the x2-oversampled complex chips around the coarse peak, refined; lags in px."""
    h, w = params.window.shape
    p = OS_HALF_SEARCH
    ref2, sec2 = _oversampled_chips(be, params, data, peak)
    surface = k.amplitude_surface(be, ref2, sec2, (4 * p + 1, 4 * p + 1))
    fine = k.find_peak(be, surface.ncc, 4 * h * w, statistics=False)
    if params.subpixel == "parabolic":
        fy, fx = k.parabolic_peak(be, surface.ncc, fine.iy, fine.ix)
    else:
        fy, fx = k.zoom_peak(be, surface, fine.iy, fine.ix, params.zoom_levels())
    lag_az = peak.iy - p + fy / 2
    lag_rg = peak.ix - p + fx / 2
    return lag_az, lag_rg, fine.interior
