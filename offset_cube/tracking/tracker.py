"""Dense offsets between two co-registered images: the public API of the built-in tracker.

Conventions
-----------
* Sizes are ``(width, height)`` = (range samples, azimuth lines), as the job config; ``search`` is the *half*
  search range (ISCE2's ``SEARCH_WINDOW_SIZE_*``).
* A window of height ``h`` whose first line is ``top`` has its centre at ``top + (h - 1) / 2`` (0-based pixel
  centres), so even windows have half-integer centres: a 64x16 window over lines 118-133 and samples 192-255 is
  centred at (125.5, 223.5). That is the chip ISCE2's ampcor correlates for the window it *reports* at
  (127, 224) (ISCE2 ``contrib/PyCuAmpcor``; checked on ISCE's own dense-offset rasters in the test data).
* Offsets are **secondary - reference** in pixels (ISCE's sign): a feature at reference pixel p lies at
  p + (azimuth_offset, range_offset) in the secondary. They are total offsets: the gross offset is included.

Input contract
--------------
* ``reference`` and ``secondary`` are 2-D (lines, samples): numpy arrays, ``np.memmap`` or any array-like with
  ``shape``, ``dtype`` and 2-D slicing; only the tiles being processed are read. Non-finite or zero pixels are
  "no data"; a window whose reference chip or search area holds less than 90 % usable pixels is invalid
  (ampcor's rule).
* Complex inputs must have their spectra centred on zero frequency in both directions. Sentinel-1 TOPS bursts
  are not: the azimuth spectrum of a burst drifts with the steering (the Doppler centroid sweeps through the
  burst) and wraps at the line rate, so **the caller deramps each burst** (multiplies by the conjugate of its
  TOPS azimuth phase ramp) **before calling**, and tracks burst by burst (``lines``/``samples``/gross offsets
  per burst). Amplitude mode oversamples the complex chips in both directions and would otherwise alias in
  azimuth (ESA COPE-GSEG-EOPG-TN-14-0025, the TOPS SLC deramping note); complex mode needs the deramp for coherence.
  Range spectra of SLCs are at baseband already.

Outputs
-------
``snr`` and the covariances use ampcor's definitions (``ampcor.F``), on the pixel-level correlation surface of
the mode (amplitude Pearson NCC, or coherent |NCC| in complex mode):

* ``snr`` = peak² / mean(NCC² over the ±10-lag box around the integer peak, the peak itself excluded; clipped to
  the surface and, like ampcor, never including the last lag of an axis), capped at 9999.99999.
* With ``dxx``, ``dyy``, ``dxy`` the finite-difference curvatures of the NCC at the integer peak (x = range,
  y = azimuth) multiplied by the number of window pixels N, ``n = 1 - peak`` and ``u = dxy² - dxx·dyy``:
  ``cov_rg = (-2n·u·dyy + N·n²/2·(dyy² + dxy²)) / u²``, ``cov_az = (-2n·u·dxx + N·n²/2·(dxx² + dxy²)) / u²``,
  ``cov_azrg = (2n·u - N·n²/2·(dxx + dyy))·dxy / u²`` (px²).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import math
import os
import platform
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from offset_cube.cube.stats import local_median_mad
from offset_cube.errors import TrackingError
from offset_cube.size import Size
from offset_cube.tracking import kernels
from offset_cube.tracking.backend import BACKENDS, Backend, get_backend
from offset_cube.tracking.core import (
    BatchInput,
    BatchParams,
    BatchResult,
    Mode,
    OversamplingPath,
    Subpixel,
    dense_is_cheaper,
    dense_strips,
    dense_tile_shape,
    oversample_block,
    track_batch,
)

MODES: tuple[Mode, ...] = ("amplitude", "complex")
SUBPIXEL_METHODS: tuple[Subpixel, ...] = ("dft", "parabolic")
OVERSAMPLING_PATHS: tuple[OversamplingPath, ...] = ("auto", "dense", "window")
#: Default correlation-peak oversampling: the peak is interpolated on a grid of at most 1/8 px before the final
#: fit (finer grids change offsets by < 0.001 px RMS, tests/test_tracking.py).
DEFAULT_OVERSAMPLING = 8
#: Default SNR (ampcor definition) below which a window is invalid, per mode (the two surfaces differ). Measured
#: on pure speckle noise with a 64x16 window and a +/-20x8 search, the SNR is 10 (median) / 18 (99th percentile)
#: in amplitude mode and 7 / 11 in complex mode; matched windows at coherence 0.5 reach 19 (amplitude, 10th
#: percentile) and 67 (complex), at coherence 0.2 complex mode still gives 17 (median). Checked by
#: tests/test_tracking.py::test_pure_noise_is_low_snr_and_invalid.
DEFAULT_SNR_THRESHOLDS: dict[str, float] = {"amplitude": 15.0, "complex": 12.0}
#: Default consistency test: a window is an outlier when its offset (azimuth or range) differs from the median of
#: the SNR-valid windows in the OUTLIER_BOX x OUTLIER_BOX box around it by more than k * max(MAD, OUTLIER_FLOOR_PX)
#: of that box (the product stage's rule, ``product.outlier_mad_k``). A correlation peak on the wrong speckle
#: spot can pass an SNR cut (a window 7.3 px off was reported on a benchmark pair); offsets within
#: k * OUTLIER_FLOOR_PX = 0.5 px of their neighbours' median are never rejected.
DEFAULT_OUTLIER_MAD_K = 5.0
OUTLIER_BOX = 5
OUTLIER_FLOOR_PX = 0.1
#: Fewest SNR-valid windows in the box (the window included) for the test to judge; fewer leaves it valid.
OUTLIER_MIN_NEIGHBOURS = 4
#: Windows per batch at most: a GPU wants large batches (fewer kernel launches), bounded by the memory budget.
MAX_BATCH = {"numpy": 256, "cupy": 16384}
#: On the CPU in amplitude mode a batch's per-window surfaces (or a dense tile's) run in chunks of about this many
#: search-chip pixels, so that their chips, x2-oversampled copies and spectra stay in the caches; the batch (what is
#: read at once) stays large, since reading and deramping a block costs per block. Measured on 2 cores (the peer
#: settings' 32x104-px search chips, 2048x8192 px, two workers, malloc set as :func:`_keep_freed_memory` sets it,
#: three alternating runs, dense path): chunks of 78 windows (2**18 px) 6 437-6 825 windows/s, 39: 5 436-6 150,
#: 157: 5 621-6 687, 19: 4 855-5 330. Complex mode runs whole batches: batches of 256 ran 10 684-10 804 windows/s on
#: the whole 4096x8192 pair, of 157 10 082-10 913, of 78 9 315-10 028.
CPU_BATCH_SEARCH_PX = {"amplitude": 2**18}
MIN_BATCH = 8
MIN_WINDOW = 4
MAX_SIZE = 4096
MIN_SEARCH = 2


class ArrayLike2D(Protocol):
    """What the tracker needs of an input image: a shape, a dtype and 2-D slicing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, key: Any, /) -> Any: ...


def window_centres(
    shape: tuple[int, int], window: tuple[int, int], search: tuple[int, int], skip: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (lines, samples) of the regular grid of windows whose search area fits in an image of ``shape``.

    ``shape`` is (lines, samples); ``window``, ``search`` and ``skip`` are (width, height). The first window
    starts ``search`` pixels from the top-left corner (so its search area starts at pixel 0), windows follow
    every ``skip`` pixels while the search area still fits. A window of height h starting at line ``top`` is
    centred at ``top + (h - 1) / 2``: even windows have half-integer centres (0-based pixel coordinates).
    """
    win, srch, stp = _checked_sizes(window, search, skip)
    lines, samples = _checked_shape(shape, "shape")
    _check_fits((lines, samples), win, srch)
    tops = np.arange(srch.lines, lines - win.lines - srch.lines + 1, stp.lines)
    lefts = np.arange(srch.samples, samples - win.samples - srch.samples + 1, stp.samples)
    return tops + (win.lines - 1) / 2, lefts + (win.samples - 1) / 2


def track_offsets(
    reference: ArrayLike2D,
    secondary: ArrayLike2D,
    *,
    window: tuple[int, int],
    search: tuple[int, int],
    skip: tuple[int, int] | None,
    gross_offset: tuple[float | np.ndarray, float | np.ndarray] = (0.0, 0.0),
    mode: str = "amplitude",
    oversampling: int = DEFAULT_OVERSAMPLING,
    subpixel: str = "dft",
    backend: str = "numpy",
    workers: int = 2,
    memory_budget_mb: int = 512,
    lines: Sequence[float] | np.ndarray | None = None,
    samples: Sequence[float] | np.ndarray | None = None,
    snr_threshold: float | None = None,
    outlier_mad_k: float | None = DEFAULT_OUTLIER_MAD_K,
    oversampling_path: str = "window",
) -> xr.Dataset:
    """Dense offsets of ``secondary`` relative to ``reference`` on a grid of windows.

    Args:
        reference, secondary: 2-D images (lines, samples), complex or real, see the module docstring.
        window: correlation window (width, height), even sizes.
        search: half search range (width, height) around the gross offset, at least 2.
        skip: grid spacing (width, height) of the default grid; unused (may be None) when both ``lines`` and
            ``samples`` are given.
        gross_offset: (azimuth, range) in pixels, each a number or a 2-D array shaped (len(lines),
            len(samples)) on the window grid, e.g. a predicted geometric offset field. Each value is rounded
            to the nearest pixel to place that window's search area; the measured offset is total (rounded
            gross + measured residual), so the fraction of the gross offset never biases the result. A NaN
            gross value makes its window invalid.
        mode: 'amplitude' (incoherent; complex chips oversampled x2 before detection) or 'complex' (coherent,
            complex inputs only).
        oversampling: the correlation peak is located by band-limited (matrix-DFT) interpolation on a grid of
            at most 1/oversampling px (but at least one 1/2-px grid) before a final fit; a power of two
            from 1 to 256 (the job config's ``tracking.oversampling``; beyond 8 offsets change by < 0.001 px RMS).
        subpixel: 'dft' (that interpolation; unbiased) or 'parabolic' (3-point parabola on the correlation
            samples: faster, biased by up to ~0.1 px).
        backend: 'numpy' (CPU) or 'cupy' (NVIDIA GPU, same algorithm).
        workers: CPU threads working on tiles at once (numpy backend).
        memory_budget_mb: working memory for the batches in flight (all workers together).
        lines, samples: explicit window centres (0-based reference pixel coordinates); each is snapped to the
            nearest centre of a whole-pixel chip (``top + (h - 1) / 2``; halfway values go to the later one)
            and the snapped values are the returned coordinates. Default: :func:`window_centres` of the reference.
        snr_threshold: windows whose SNR is below this are invalid (offsets NaN); None: the mode's default
            from :data:`DEFAULT_SNR_THRESHOLDS` (amplitude 15, complex 12).
        outlier_mad_k: windows whose offset differs from the median of their SNR-valid neighbours (5x5 box) by
            more than this times max(local MAD, 0.1 px) are invalid too (see :data:`DEFAULT_OUTLIER_MAD_K`);
            None turns the test off (as the engine does: its product stage filters with its own settings).
        oversampling_path: how amplitude mode computes its surfaces: 'window' (chip by chip with FFTs, each
            window's chips oversampled x2 on their own; the default), 'dense' (from each tile's blocks,
            oversampled x2 once, each surface correlated strip by strip or window by window from the blocks,
            whichever is cheaper, so overlapping windows share the work; the same integer surfaces, offsets within
            0.005 px RMS of 'window's; :mod:`offset_cube.tracking.strips`) or
            'auto' (the cheaper for the job by a cost model, :func:`~offset_cube.tracking.core.dense_is_cheaper`;
            the attribute ``oversampling_path`` records the choice). The dense path's offsets depend on the
            tiling (explicit centres, a memory budget too small for its tiles) by up to ~0.003 px, so it is
            opt-in. Complex mode always runs per window.

    Returns:
        Dataset with dims (line, sample), coords = window centres, float32 ``azimuth_offset``,
        ``range_offset`` (NaN where invalid), ``snr`` (NaN where no surface was computed), ``cov_az``,
        ``cov_rg``, ``cov_azrg`` (px², NaN where the offset is invalid); attrs record the parameters.
    """
    ref_shape = _checked_shape(reference.shape, "reference")
    sec_shape = _checked_shape(secondary.shape, "secondary")
    mode_name = _choice(mode, MODES, "mode")
    complex_input = _input_kind(reference, secondary, mode_name)
    win, srch, stp = _checked_sizes(window, search, skip if skip is not None else (1, 1))
    _check_fits(ref_shape, win, srch, "reference")
    _check_fits(sec_shape, win, srch, "secondary")
    params = BatchParams(
        window=win,
        search=srch,
        mode=cast(Mode, mode_name),
        subpixel=cast(Subpixel, _choice(subpixel, SUBPIXEL_METHODS, "subpixel")),
        oversampling=_checked_oversampling(oversampling),
        complex_input=complex_input,
        path=cast(OversamplingPath, _choice(oversampling_path, OVERSAMPLING_PATHS, "oversampling_path")),
    )
    if workers < 1:
        raise TrackingError(f"workers must be at least 1; got {workers}")
    if memory_budget_mb < 16:
        raise TrackingError(f"memory_budget_mb must be at least 16; got {memory_budget_mb}")
    be = get_backend(_choice(backend, BACKENDS, "backend"))
    grid = _grid(ref_shape, win, srch, stp if skip is not None else None, lines, samples)
    params = dataclasses.replace(params, path=_resolved_path(params, grid))
    gross = _gross_fields(gross_offset, grid.shape)
    plan = _Plan.build(grid, gross, params, ref_shape, sec_shape)
    result = _run(be, params, plan, (reference, secondary), grid.spacing, workers, memory_budget_mb)
    threshold = DEFAULT_SNR_THRESHOLDS[mode_name] if snr_threshold is None else float(snr_threshold)
    outlier_k = _checked_outlier_k(outlier_mad_k)
    thresholds = (threshold, outlier_k)
    return _dataset(grid, plan, result, params, thresholds, gross_offset, be.name, stp if skip is not None else None)


@dataclass(frozen=True)
class _Grid:
    tops: np.ndarray  # (nl,) int: first line of each window row
    lefts: np.ndarray  # (ns,) int
    centre_lines: np.ndarray  # (nl,) float
    centre_samples: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.tops.size, self.lefts.size)

    @property
    def spacing(self) -> tuple[int, int]:
        """Typical (median) distance in px between window rows and between columns (1 for a single one)."""
        return _median_step(self.tops), _median_step(self.lefts)


def _median_step(values: np.ndarray) -> int:
    steps = np.diff(np.unique(values))
    return max(1, int(np.median(steps))) if steps.size else 1


def _resolved_path(params: BatchParams, grid: _Grid) -> OversamplingPath:
    """'dense' or 'window' for this job: complex mode has only the per-window path; 'auto' asks the cost model."""
    if params.mode != "amplitude":
        return "window"
    if params.path != "auto":
        return params.path
    return "dense" if dense_is_cheaper(params, grid.spacing) else "window"


@dataclass(frozen=True)
class _Plan:
    """Per-window placement: reference chip corner, search-area corner (image pixels) and validity."""

    ref_top: np.ndarray  # (nl, ns) int64
    ref_left: np.ndarray
    sec_top: np.ndarray
    sec_left: np.ndarray
    placeable: np.ndarray  # (nl, ns) bool: chip and search area inside the images, gross offset finite

    @classmethod
    def build(
        cls,
        grid: _Grid,
        gross: tuple[np.ndarray, np.ndarray],
        params: BatchParams,
        ref_shape: tuple[int, int],
        sec_shape: tuple[int, int],
    ) -> _Plan:
        finite = np.isfinite(gross[0]) & np.isfinite(gross[1])
        gy = np.where(finite, np.rint(np.where(finite, gross[0], 0)), 0).astype(np.int64)
        gx = np.where(finite, np.rint(np.where(finite, gross[1], 0)), 0).astype(np.int64)
        ref_top = np.broadcast_to(grid.tops[:, None], grid.shape).astype(np.int64)
        ref_left = np.broadcast_to(grid.lefts[None, :], grid.shape).astype(np.int64)
        sec_top = ref_top + gy - params.search.lines
        sec_left = ref_left + gx - params.search.samples
        (h, w), (sh, sw) = params.window.shape, params.search_shape
        inside = (
            (ref_top >= 0)
            & (ref_top + h <= ref_shape[0])
            & (ref_left >= 0)
            & (ref_left + w <= ref_shape[1])
            & (sec_top >= 0)
            & (sec_top + sh <= sec_shape[0])
            & (sec_left >= 0)
            & (sec_left + sw <= sec_shape[1])
        )
        return cls(ref_top, ref_left, sec_top, sec_left, inside & finite)


@dataclass
class _Result:
    lag_az: np.ndarray
    lag_rg: np.ndarray
    snr: np.ndarray
    cov_az: np.ndarray
    cov_rg: np.ndarray
    cov_azrg: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> _Result:
        return cls(*(np.full(shape, np.nan) for _ in range(6)))

    def fill(self, index: tuple[np.ndarray, np.ndarray], batch: BatchResult) -> None:
        for name in ("lag_az", "lag_rg", "snr", "cov_az", "cov_rg", "cov_azrg"):
            getattr(self, name)[index] = getattr(batch, name)


@dataclass(frozen=True)
class _Tile:
    rows: slice
    cols: slice


def _run(
    be: Backend,
    params: BatchParams,
    plan: _Plan,
    images: tuple[ArrayLike2D, ArrayLike2D],
    spacing: tuple[int, int],
    workers: int,
    memory_budget_mb: int,
) -> _Result:
    """Process the window grid tile by tile (in a thread pool on the CPU) and collect the results."""
    parallel = workers if be.name == "numpy" else 1
    result = _Result.empty(plan.placeable.shape)
    params = dataclasses.replace(params, chunk=_chunk_size(params, be.name))
    if params.path == "dense":
        budget = memory_budget_mb * 2**20 // parallel
        tiles = list(_shaped_tiles(plan.placeable.shape, dense_tile_shape(params, spacing, budget)))
        params = dataclasses.replace(params, strips=dense_strips(params, spacing))
    else:
        batch = _batch_size(params, memory_budget_mb, parallel, be.name)
        tiles = list(_tiles(plan.placeable.shape, batch))

    def work(tile: _Tile) -> tuple[tuple[np.ndarray, np.ndarray], BatchResult] | None:
        return _process_tile(be, params, plan, tile, *images)

    _keep_freed_memory()
    with _single_threaded_blas():
        if parallel > 1 and len(tiles) > 1:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="tracker") as pool:
                outputs: Iterator[Any] = pool.map(work, tiles)
                for output in outputs:
                    if output is not None:
                        result.fill(*output)
        else:
            for tile in tiles:
                output = work(tile)
                if output is not None:
                    result.fill(*output)
    return result


_blas_lock = threading.Lock()
_blas_users: list[threadpool_limits] = []


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while any tracker runs in this process.

    The tracker owns its parallelism: BLAS (the batched matrix products) runs inside each worker, and its own
    thread pool competes with the workers (OPENBLAS_NUM_THREADS=1 took the Shirase settings from 202 to 285
    windows/s on 2 cores; the FFTs already run with workers=1). The limit is process-wide (threadpoolctl), so
    concurrent trackers (two pairs at once) share one limit, lifted when the last of them ends.
    """
    with _blas_lock:
        if not _blas_users:
            _blas_users.append(threadpool_limits(limits=1, user_api="blas"))
        else:
            _blas_users.append(_blas_users[0])
    try:
        yield
    finally:
        with _blas_lock:
            limiter = _blas_users.pop()
            if not _blas_users:
                limiter.restore_original_limits()


#: glibc malloc settings (mallopt parameters M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1) that the tracker sets
#: once per process: arrays up to 8 MiB (a batch's chips and spectra) come from the heap, and up to 64 MiB of freed
#: heap stays with the process. Larger thresholds (32 MiB, 256 MiB) saved no more faults but fragmented the heap:
#: the Shirase settings' dense tiles peaked 323 MiB above the start against 240 MiB (glibc's defaults: 211 MiB).
#: See :func:`_keep_freed_memory`.
MALLOC_SETTINGS = ((-3, 8 * 2**20), (-1, 64 * 2**20))
#: Environment variables with which users set these thresholds themselves; then the tracker leaves them alone.
MALLOC_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


@functools.cache
def _keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing each batch's freed arrays back to the kernel (process-wide, once).

    By default glibc maps arrays above a threshold (128 KiB at first, raised as such arrays are freed) straight
    from the kernel and unmaps them when freed, and trims free memory at the top of each thread's heap: every
    batch's chips, spectra and surfaces (0.1-10 MB each) are then faulted in page by page again, the kernel zeroing
    each page. Measured on 2 cores (peer settings, 1024x8192 px, a fresh process as the command line runs it):
    0.6-1.0 million page faults and 2.3-3.4 s of system time per run, a quarter to a third of its CPU time; with
    these settings ~15 000 faults (1 000 in a second run) and 0.1-0.2 s, and 0.6-0.8x the CPU per window. Peak
    memory grows a little (:data:`MALLOC_SETTINGS`); memory freed after a run stays with the process, up to the
    trim threshold.
    Does nothing (returns False) off glibc or when the environment sets malloc's thresholds.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or any(v in os.environ for v in MALLOC_ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in MALLOC_SETTINGS)


def _batch_size(params: BatchParams, memory_budget_mb: int, parallel: int, backend: str) -> int:
    """Windows per batch (a tile read at once) so that ``parallel`` batches in flight fit the memory budget."""
    fit = memory_budget_mb * 2**20 // (parallel * params.bytes_per_window())
    return int(max(MIN_BATCH, min(MAX_BATCH[backend], fit)))


def _chunk_size(params: BatchParams, backend: str) -> int:
    """Windows per chunk of a batch's per-window surfaces: on the CPU in amplitude mode, what fits the caches
    (:data:`CPU_BATCH_SEARCH_PX`); else 0, the whole batch at once."""
    if backend != "numpy" or params.mode not in CPU_BATCH_SEARCH_PX:
        return 0
    return max(MIN_BATCH, CPU_BATCH_SEARCH_PX[params.mode] // math.prod(params.search_shape))


def _tiles(shape: tuple[int, int], batch: int) -> Iterator[_Tile]:
    """Rectangles of the window grid holding about ``batch`` windows, row-major."""
    ns = shape[1]
    if ns <= batch:
        return _shaped_tiles(shape, (max(1, batch // max(ns, 1)), ns))
    return _shaped_tiles(shape, (1, batch))


def _shaped_tiles(shape: tuple[int, int], tile: tuple[int, int]) -> Iterator[_Tile]:
    """Rectangles of the window grid of at most ``tile`` = (rows, columns) windows, row-major."""
    nl, ns = shape
    rows_per_tile, cols_per_tile = tile
    for r0 in range(0, nl, rows_per_tile):
        for c0 in range(0, ns, cols_per_tile):
            yield _Tile(slice(r0, min(r0 + rows_per_tile, nl)), slice(c0, min(c0 + cols_per_tile, ns)))


def _process_tile(
    be: Backend,
    params: BatchParams,
    plan: _Plan,
    tile: _Tile,
    reference: ArrayLike2D,
    secondary: ArrayLike2D,
) -> tuple[tuple[np.ndarray, np.ndarray], BatchResult] | None:
    """Read the tile's reference and secondary blocks and estimate its windows' offsets."""
    ok = plan.placeable[tile.rows, tile.cols]
    if not ok.any():
        return None
    local = np.nonzero(ok)
    index = (local[0] + tile.rows.start, local[1] + tile.cols.start)
    ref_top, ref_left = plan.ref_top[index], plan.ref_left[index]
    sec_top, sec_left = plan.sec_top[index], plan.sec_left[index]
    (h, w), (sh, sw) = params.window.shape, params.search_shape
    gr, gs = params.ref_margin, params.sec_margin
    r_origin = (int(ref_top.min()) - gr, int(ref_left.min()) - gr)
    s_origin = (int(sec_top.min()) - gs, int(sec_left.min()) - gs)
    dtype = np.complex64 if params.complex_input else np.float32
    ref_block, ref_usable = _read_block(
        reference, r_origin, (int(ref_top.max()) + h + gr, int(ref_left.max()) + w + gr), dtype
    )
    gh, gw = params.gather_shape
    sec_block, sec_usable = _read_block(
        secondary, s_origin, (int(sec_top.max()) + gh + gs, int(sec_left.max()) + gw + gs), dtype
    )
    rt, rl = ref_top - r_origin[0], ref_left - r_origin[1]
    st, sl = sec_top - s_origin[0], sec_left - s_origin[1]
    enough = (_usable_fraction(ref_usable, rt, rl, (h, w)) >= kernels.MIN_VALID_FRACTION) & (
        _usable_fraction(sec_usable, st, sl, (sh, sw)) >= kernels.MIN_VALID_FRACTION
    )
    if not enough.any():
        return None
    index = (index[0][enough], index[1][enough])
    xp = be.xp
    ref_device, sec_device = be.to_device(ref_block), be.to_device(sec_block)
    oversampled = None
    if params.path == "dense":
        oversampled = tuple(oversample_block(be, block, params.complex_input) for block in (ref_device, sec_device))
    data = BatchInput(
        ref_block=ref_device,
        sec_block=sec_device,
        ref_tops=xp.asarray(rt[enough]),
        ref_lefts=xp.asarray(rl[enough]),
        sec_tops=xp.asarray(st[enough]),
        sec_lefts=xp.asarray(sl[enough]),
        oversampled=(oversampled[0], oversampled[1]) if oversampled else None,
    )
    return index, track_batch(be, params, data)


def _read_block(
    image: ArrayLike2D, start: tuple[int, int], stop: tuple[int, int], dtype: type[np.generic]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels [start, stop) of ``image`` (zero outside it) as ``dtype``, and the mask of usable pixels
    (finite, non-zero), or None when every pixel read from the image is usable."""
    lines, samples = image.shape[0], image.shape[1]
    block = np.zeros((stop[0] - start[0], stop[1] - start[1]), dtype=dtype)
    r0, r1 = max(start[0], 0), min(stop[0], lines)
    c0, c1 = max(start[1], 0), min(stop[1], samples)
    if r1 <= r0 or c1 <= c0:
        return block, np.zeros(block.shape, dtype=bool)
    inner = block[r0 - start[0] : r1 - start[0], c0 - start[1] : c1 - start[1]]
    inner[...] = np.asarray(image[r0:r1, c0:c1])
    good = np.isfinite(inner) & (inner != 0)
    if good.all():
        return block, None
    inner[~good] = 0
    usable = np.zeros(block.shape, dtype=bool)
    usable[r0 - start[0] : r1 - start[0], c0 - start[1] : c1 - start[1]] = good
    return block, usable


def _usable_fraction(
    usable: np.ndarray | None, tops: np.ndarray, lefts: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Fraction of usable pixels inside each chip (chips lie inside the image; summed-area table of the mask)."""
    if usable is None:
        return np.ones(tops.shape)
    sat = np.zeros((usable.shape[0] + 1, usable.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(usable, axis=0, dtype=np.int64), axis=1)
    h, w = shape
    bottom, right = tops + h, lefts + w
    total = sat[bottom, right] - sat[tops, right] - sat[bottom, lefts] + sat[tops, lefts]
    return np.asarray(total / (h * w))


def _dataset(
    grid: _Grid,
    plan: _Plan,
    result: _Result,
    params: BatchParams,
    thresholds: tuple[float, float | None],
    gross_offset: tuple[Any, Any],
    backend: str,
    skip: Size | None,
) -> xr.Dataset:
    """The result Dataset: total offsets (rounded gross + lag - search), masked where invalid."""
    snr_threshold, outlier_k = thresholds
    base_az = (plan.sec_top - plan.ref_top).astype(np.float64)
    base_rg = (plan.sec_left - plan.ref_left).astype(np.float64)
    offsets = (base_az + result.lag_az, base_rg + result.lag_rg)
    passing = np.isfinite(result.lag_az) & np.isfinite(result.lag_rg) & (result.snr >= snr_threshold)
    outliers = outlier_windows(offsets, passing, outlier_k) if outlier_k is not None else np.zeros_like(passing)
    valid = passing & ~outliers
    dims = ("line", "sample")

    def var(values: np.ndarray, units: str, long_name: str, mask: bool = True) -> xr.Variable:
        data = np.where(valid, values, np.nan) if mask else values
        return xr.Variable(dims, data.astype(np.float32), {"units": units, "long_name": long_name})

    ds = xr.Dataset(
        {
            "azimuth_offset": var(offsets[0], "pixel", "azimuth offset, secondary - reference"),
            "range_offset": var(offsets[1], "pixel", "range offset, secondary - reference"),
            "snr": var(result.snr, "1", "correlation peak SNR (ampcor definition)", mask=False),
            "cov_az": var(result.cov_az, "pixel2", "azimuth offset variance (ampcor definition)"),
            "cov_rg": var(result.cov_rg, "pixel2", "range offset variance (ampcor definition)"),
            "cov_azrg": var(result.cov_azrg, "pixel2", "azimuth-range offset covariance (ampcor definition)"),
        },
        coords={
            "line": ("line", grid.centre_lines, {"units": "pixel", "long_name": "window centre line (0-based)"}),
            "sample": (
                "sample",
                grid.centre_samples,
                {"units": "pixel", "long_name": "window centre sample (0-based)"},
            ),
        },
    )
    window, search = params.window, params.search
    gross_az, gross_rg = (_gross_attr(value) for value in gross_offset)
    ds.attrs.update(
        {
            "tracker": "offset-cube built-in",
            "convention": "secondary - reference, pixels; centre = first pixel + (size - 1) / 2",
            "mode": params.mode,
            "subpixel": params.subpixel,
            "oversampling": params.oversampling,
            "oversampling_path": params.path,
            "window_width": window.width,
            "window_height": window.height,
            "search_width": search.width,
            "search_height": search.height,
            "skip_width": -1 if skip is None else skip.width,
            "skip_height": -1 if skip is None else skip.height,
            "gross_offset_azimuth": gross_az,
            "gross_offset_range": gross_rg,
            "snr_threshold": float(snr_threshold),
            "outlier_mad_k": "off" if outlier_k is None else outlier_k,
            "outlier_windows": int(outliers.sum()),
            "backend": backend,
            "windows": int(valid.size),
            "valid_windows": int(valid.sum()),
        }
    )
    return ds


def outlier_windows(offsets: tuple[np.ndarray, np.ndarray], passing: np.ndarray, k: float) -> np.ndarray:
    """Windows among ``passing`` whose azimuth or range offset is more than k * max(MAD, floor) from the median
    of the passing windows in the :data:`OUTLIER_BOX`-wide box around them (constants above)."""
    outliers = np.zeros(passing.shape, dtype=bool)
    for values in offsets:
        median, mad, count = local_median_mad(np.where(passing, values, np.nan), OUTLIER_BOX)
        limit = k * np.maximum(np.nan_to_num(mad, nan=0.0), OUTLIER_FLOOR_PX)
        deviation = np.abs(np.where(passing, values, 0.0) - np.nan_to_num(median, nan=0.0))
        outliers |= passing & (count >= OUTLIER_MIN_NEIGHBOURS) & (deviation > limit)
    return outliers


def _checked_outlier_k(value: float | None) -> float | None:
    if value is None:
        return None
    k = float(value)
    if not np.isfinite(k) or k <= 0:
        raise TrackingError(f"outlier_mad_k must be a positive number (or None for no outlier test); got {value!r}")
    return k


def _gross_attr(value: Any) -> float | str:
    return "field" if np.ndim(value) else float(value)


def _grid(
    ref_shape: tuple[int, int],
    win: Size,
    srch: Size,
    skip: Size | None,
    lines: Sequence[float] | np.ndarray | None,
    samples: Sequence[float] | np.ndarray | None,
) -> _Grid:
    """Window tops/lefts and centres, from explicit centres (snapped) or the default grid."""
    if skip is None and (lines is None or samples is None):
        raise TrackingError("skip is needed unless both lines and samples (window centres) are given")
    default_lines, default_samples = window_centres(ref_shape, win, srch, skip or Size(1, 1))
    tops = _tops(default_lines if lines is None else lines, win.lines, "lines")
    lefts = _tops(default_samples if samples is None else samples, win.samples, "samples")
    if tops.size == 0 or lefts.size == 0:
        raise TrackingError("no windows to track: lines and samples must each hold at least one centre")
    return _Grid(tops, lefts, tops + (win.lines - 1) / 2, lefts + (win.samples - 1) / 2)


def _tops(centres: Sequence[float] | np.ndarray, size: int, name: str) -> np.ndarray:
    values = np.asarray(centres, dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise TrackingError(f"{name} must be a 1-D sequence of finite window centres; got shape {values.shape}")
    return np.floor(values - (size - 1) / 2 + 0.5).astype(np.int64)


def _gross_fields(gross: tuple[Any, Any], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    try:
        az, rg = gross
    except (TypeError, ValueError) as err:
        raise TrackingError(f"gross_offset must be (azimuth, range); got {gross!r}") from err
    fields = []
    for name, value in (("azimuth", az), ("range", rg)):
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 0:
            if not np.isfinite(array):
                raise TrackingError(f"gross {name} offset must be finite; got {value!r}")
            array = np.full(shape, float(array))
        elif array.shape != shape:
            raise TrackingError(
                f"gross {name} offset field has shape {array.shape}; it must be a number or match the window "
                f"grid (len(lines), len(samples)) = {shape}"
            )
        fields.append(array)
    return fields[0], fields[1]


def _checked_sizes(window: tuple[int, int], search: tuple[int, int], skip: tuple[int, int]) -> tuple[Size, Size, Size]:
    """(width, height) sizes validated and returned as :class:`Size`."""
    win = _size(window, "window")
    srch = _size(search, "search")
    stp = _size(skip, "skip")
    for value, what in ((win.width, "width"), (win.height, "height")):
        if value % 2 or not MIN_WINDOW <= value <= MAX_SIZE:
            raise TrackingError(
                f"window {what} {value} is not allowed: window sizes must be even (as ampcor's) and between "
                f"{MIN_WINDOW} and {MAX_SIZE}; got window {win}"
            )
    if min(srch) < MIN_SEARCH or max(srch) > MAX_SIZE:
        raise TrackingError(
            f"search {srch} is not allowed: half search ranges must be between {MIN_SEARCH} and "
            f"{MAX_SIZE} pixels (a peak on the border of the search is rejected)"
        )
    if min(stp) < 1:
        raise TrackingError(f"skip {stp} is not allowed: skips must be at least 1 pixel")
    return win, srch, stp


def _size(value: Any, name: str) -> Size:
    try:
        width, height = value
        size = Size(int(width), int(height))
    except (TypeError, ValueError) as err:
        raise TrackingError(f"{name} must be (width, height) in pixels; got {value!r}") from err
    if size.width != width or size.height != height:
        raise TrackingError(f"{name} must be whole pixels; got {value!r}")
    return size


def _checked_shape(shape: Any, name: str) -> tuple[int, int]:
    dims = tuple(int(n) for n in shape)
    if len(dims) != 2:
        raise TrackingError(f"{name} must be a 2-D image (lines, samples); got shape {dims}")
    return dims[0], dims[1]


def _check_fits(shape: tuple[int, int], win: Size, srch: Size, name: str = "image") -> None:
    lines, samples = shape
    need = Size(win.width + 2 * srch.width, win.height + 2 * srch.height)
    if need.lines > lines or need.samples > samples:
        raise TrackingError(
            f"window {win} with search {srch} needs {need.samples} samples x {need.lines} lines, "
            f"but the {name} is only {samples} x {lines}; use a smaller search or window"
        )


def _input_kind(reference: ArrayLike2D, secondary: ArrayLike2D, mode: str) -> bool:
    """Whether the inputs are complex; they must be of one kind and numeric."""
    kinds = []
    for name, image in (("reference", reference), ("secondary", secondary)):
        dtype = np.dtype(image.dtype)
        if dtype.kind not in "biufc":
            raise TrackingError(f"{name} has dtype {dtype}; expected a numeric (real or complex) image")
        kinds.append(dtype.kind == "c")
    if kinds[0] != kinds[1]:
        raise TrackingError("reference and secondary must both be complex or both be real")
    if mode == "complex" and not kinds[0]:
        raise TrackingError("mode 'complex' needs complex images (SLCs); use mode 'amplitude' for real images")
    return bool(kinds[0])


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> str:
    text = str(getattr(value, "value", value)).lower()
    if text not in allowed:
        raise TrackingError(f"{name} {value!r} is not one of {list(allowed)}")
    return text


def _checked_oversampling(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 256 or value & (value - 1):
        raise TrackingError(f"oversampling must be a power of two from 1 to 256; got {value!r}")
    return value
