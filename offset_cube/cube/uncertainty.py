"""How good one layer is: the stable-surface shift and spread of its velocity, and a per-cell error map.

Definitions (names and meanings of ITS_LIVE's autoRIFT granules and cubes, Gardner et al. 2018,
https://doi.org/10.5194/tc-12-521-2018, §2.3, and the ITS_LIVE cube documentation; units m/yr):

``vx_stable_shift``, ``vy_stable_shift``
    the median of ``vx``, ``vy`` over the layer's *stable cells* (ground that does not move), the shift that
    remained after the engine's own bias removal; **subtracted** from the layer when ``stable_shift_flag`` > 0
    (``product.stable_shift``: by default only with a stable-ground mask, since without one an area that moves
    as a whole would lose its motion).
``vx_error``, ``vy_error``
    the root-mean-square of ``vx``, ``vy`` about that shift over the stable cells: the error of one cell's
    velocity where nothing moves.
``stable_count``
    how many stable cells these come from (a layer with fewer than :data:`MIN_STABLE_CELLS` gets NaN errors and
    no shift). ``stable_shift_flag`` (ITS_LIVE's codes): 0 = shift not applied, 1 = applied, stable cells from
    the job's stable-ground mask (``product.stable_mask``), 2 = applied, from slow cells of the layer itself.
``v_error`` (per cell)
    the error of the speed ``v`` from the cell's component errors, ``sqrt((ex·vx/v)² + (ey·vy/v)²)`` (ITS_LIVE's
    per-pixel ``v_error``); where ``v`` = 0, ``sqrt((ex² + ey²)/2)``.
``vx_error_cell``, ``vy_error_cell`` (per cell)
    ``ex``, ``ey`` above: the larger of two estimates made on the engine's point lattice (both in m/yr, then
    carried to the grid as the error of the interpolated velocity, :func:`offset_cube.cube.product.resample_to_grid`):

    * the tracker's offset covariance (ampcor's, both engines; ISCE2 ``components/mroipac/ampcor/src/ampcor.F``)
      propagated through the offsets → velocity conversion, σ² = J C Jᵀ: the noise of a window whose shift is
      uniform, which gets worse as the pair decorrelates;
    * the *local scatter*: the RMS, over the 5 × 5 points around, of each valid point's difference from the mean
      of its valid 4-neighbours (a discrete Laplacian, blind to uniform gradients). It sees what the covariance
      cannot: strain inside the window on moving ice (shear decorrelates the speckle and breaks the uniform-shift
      assumption of the covariance, Bamler & Eineder 2005, https://doi.org/10.1109/LGRS.2004.843203; Dall et al.,
      Fringe 2015), and false peaks that pass the outlier test in clusters where a long pair has decorrelated.
      Judging a displacement by its consistency with its neighbours is autoRIFT's NDC filter (Lei, Gardner &
      Agram 2021, https://doi.org/10.3390/rs13040749).

    The maximum, not the quadrature sum: where the window's shift is uniform both measure the same speckle noise.
    No factor is applied to the scatter: its ×1/√1.25 for independent neighbours and the ×~1.3 that 50 %
    overlapping windows need (their errors are correlated, which hides part of the noise from the difference)
    roughly cancel. Where neither estimate exists, the layer's ``vx_error``/``vy_error``.

    The stable ground is **not** used to scale the per-cell map: on ice the errors are 2-3 times the stable ground's
    (strain, false peaks), and without a mask the stable set grows into the slow ice margins, whose motion inflates
    the spread. ``bench/errors_bench.py`` checks the maps against a simulated truth.

**Choosing stable cells without a mask.** ITS_LIVE falls back to the slowest 25 % of a *reference* velocity map.
We have none, and the slowest 25 % of the layer's own speeds are the cells where the noise happened to be small:
their spread underestimates the error (by ~1.8× when half the area is stable). So the slowest quartile only
seeds a sigma-clipping iteration: keep the cells within ±3 errors of the shift in both components, re-estimate
shift and error (divided by the variance a ±3σ-truncated normal keeps, 0.9733), until the set stops changing.
Noise-free ice moving slower than ~3 errors is counted as stable, as with ITS_LIVE's slow-ground error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

#: Fewest stable cells for which a shift and an error are reported (ITS_LIVE's stable_count gate is similar).
MIN_STABLE_CELLS = 10
#: The slowest fraction of a layer's cells that seeds the stable set without a mask (ITS_LIVE: slowest 25 %).
SEED_QUANTILE = 0.25
#: Half-width of the clipping window, in errors.
CLIP_SIGMA = 3.0
#: Variance of a unit normal truncated to ±CLIP_SIGMA: 1 − 2kφ(k)/(2Φ(k) − 1).
CLIP_VARIANCE = 1.0 - 2.0 * CLIP_SIGMA * math.exp(-(CLIP_SIGMA**2) / 2) / math.sqrt(2 * math.pi) / math.erf(
    CLIP_SIGMA / math.sqrt(2)
)
MAX_ITERATIONS = 50
#: Box (points of the engine's lattice) over which the local scatter is taken, and the fewest differences in it.
SCATTER_WINDOW = 5
MIN_SCATTER_VALUES = 5
#: Variance of a point minus the mean of 4 neighbours, all independent with unit variance.
LAPLACIAN_VARIANCE = 1.25
FLAG_NOT_APPLIED = 0
FLAG_MASK = 1
FLAG_SLOW = 2


@dataclass(frozen=True)
class StableSurface:
    """Shift and spread of a layer over its stable cells (NaN errors and zero shifts when too few)."""

    vx_shift: float
    vy_shift: float
    vx_error: float
    vy_error: float
    count: int
    flag: int
    cells: BoolArray

    @property
    def usable(self) -> bool:
        return self.count >= MIN_STABLE_CELLS

    def attrs(self) -> dict[str, float | int]:
        """The product/cube attributes (ITS_LIVE names)."""
        return {
            "vx_stable_shift": _round(self.vx_shift),
            "vy_stable_shift": _round(self.vy_shift),
            "vx_error": _round(self.vx_error),
            "vy_error": _round(self.vy_error),
            "stable_count": int(self.count),
            "stable_shift_flag": int(self.flag),
        }


def stable_surface(vx: Any, vy: Any, mask: Any = None) -> StableSurface:
    """Shift and error of ``vx``, ``vy`` (m/yr, NaN = no value) over stable cells; see the module docstring.

    ``mask`` (bool, same shape) restricts the stable cells to known stable ground; without it the layer's slow
    cells seed the estimate.
    """
    x = np.asarray(vx, dtype=np.float64)
    y = np.asarray(vy, dtype=np.float64)
    valid = np.isfinite(x) & np.isfinite(y)
    flag = FLAG_SLOW
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
        flag = FLAG_MASK
    if int(valid.sum()) < MIN_STABLE_CELLS:
        return StableSurface(0.0, 0.0, math.nan, math.nan, int(valid.sum()), flag, valid)
    speed = np.hypot(x, y)
    cells = valid if mask is not None else valid & (speed <= np.quantile(speed[valid], SEED_QUANTILE))
    sx, sy, ex, ey = _shift_and_spread(x[cells], y[cells], truncated=False)
    for _ in range(MAX_ITERATIONS):
        tiny = 1e-6
        chosen = valid & (np.abs(x - sx) <= CLIP_SIGMA * max(ex, tiny)) & (np.abs(y - sy) <= CLIP_SIGMA * max(ey, tiny))
        if int(chosen.sum()) < MIN_STABLE_CELLS:
            break
        sx, sy, ex, ey = _shift_and_spread(x[chosen], y[chosen], truncated=True)
        if np.array_equal(chosen, cells):
            break
        cells = chosen
    count = int(cells.sum())
    if count < MIN_STABLE_CELLS:
        return StableSurface(0.0, 0.0, math.nan, math.nan, count, flag, cells)
    return StableSurface(sx, sy, ex, ey, count, flag, cells)


def _shift_and_spread(x: FloatArray, y: FloatArray, truncated: bool) -> tuple[float, float, float, float]:
    sx, sy = float(np.median(x)), float(np.median(y))
    scale = CLIP_VARIANCE if truncated else 1.0
    ex = math.sqrt(float(np.mean((x - sx) ** 2)) / scale)
    ey = math.sqrt(float(np.mean((y - sy) ** 2)) / scale)
    return sx, sy, ex, ey


def tracker_velocity_sigma(
    jacobian: tuple[FloatArray, FloatArray, FloatArray, FloatArray], cov_az: Any, cov_rg: Any, cov_azrg: Any
) -> tuple[FloatArray, FloatArray]:
    """Standard deviations of vx, vy (m/yr) from the offsets' covariance (px²) through the linear conversion.

    ``jacobian`` = (dvx/daz, dvx/drg, dvy/daz, dvy/drg) per point, in m/yr per pixel: σ² = J C Jᵀ.
    """
    xa, xr, ya, yr = jacobian
    caz, crg, cx = (np.asarray(c, dtype=np.float64) for c in (cov_az, cov_rg, cov_azrg))
    var_x = xa * xa * caz + 2 * xa * xr * cx + xr * xr * crg
    var_y = ya * ya * caz + 2 * ya * yr * cx + yr * yr * crg
    ok = np.isfinite(var_x) & np.isfinite(var_y) & (var_x > 0) & (var_y > 0)
    return np.sqrt(np.where(ok, var_x, np.nan)), np.sqrt(np.where(ok, var_y, np.nan))


def local_scatter(values: Any, valid: Any, window: int = SCATTER_WINDOW) -> FloatArray:
    """Per point of a 2-D lattice: the error of one point that the local scatter implies — the RMS over the
    ``window`` × ``window`` box of each valid point's difference from the mean of its valid 4-neighbours, over
    √(1 + 1/4) (that difference's standard deviation for independent points of unit error); NaN where fewer than
    :data:`MIN_SCATTER_VALUES` such differences. ``values`` in m/yr; ``valid`` marks the points to use. See the
    module docstring (``vx_error_cell``).
    """
    field = np.where(np.asarray(valid, dtype=bool), np.asarray(values, dtype=np.float64), np.nan)
    padded = np.pad(field, 1, constant_values=np.nan)
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    known = np.isfinite(neighbours)
    count = known.sum(axis=0)
    total = np.where(known, neighbours, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(np.isfinite(field) & (count >= 2), field - total / count, np.nan)
    have = np.isfinite(diff)
    half = window // 2
    squares = np.pad(np.where(have, diff * diff, 0.0), half)
    counts = np.pad(have.astype(np.float64), half)
    box_sum = np.lib.stride_tricks.sliding_window_view(squares, (window, window)).sum(axis=(-1, -2))
    box_count = np.lib.stride_tricks.sliding_window_view(counts, (window, window)).sum(axis=(-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(box_sum / box_count / LAPLACIAN_VARIANCE)
    return np.asarray(np.where(box_count >= MIN_SCATTER_VALUES, rms, np.nan))


def cell_errors(
    stable: StableSurface,
    sigma_x: Any = None,
    sigma_y: Any = None,
    scatter_x: Any = None,
    scatter_y: Any = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-cell ``vx_error_cell``, ``vy_error_cell``: the larger of the tracker's σ and the local scatter where
    either is known, else the layer's scalar errors (see the module docstring)."""
    shape = stable.cells.shape
    out = []
    for sigma, scatter, scalar in ((sigma_x, scatter_x, stable.vx_error), (sigma_y, scatter_y, stable.vy_error)):
        estimates = [np.broadcast_to(np.asarray(a, dtype=np.float64), shape) for a in (sigma, scatter) if a is not None]
        error = np.full(shape, scalar)
        if estimates:
            stacked = np.stack(estimates)
            known = np.isfinite(stacked).any(axis=0)
            largest = np.max(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
            error = np.where(known, largest, scalar)
        out.append(error)
    return out[0], out[1]


def speed_error(vx: Any, vy: Any, ex: Any, ey: Any) -> FloatArray:
    """ITS_LIVE's per-cell ``v_error``: sqrt((ex·vx/v)² + (ey·vy/v)²); sqrt((ex²+ey²)/2) where v is 0."""
    x, y = np.asarray(vx, dtype=np.float64), np.asarray(vy, dtype=np.float64)
    ex, ey = np.asarray(ex, dtype=np.float64), np.asarray(ey, dtype=np.float64)
    v = np.hypot(x, y)
    moving = v > 0
    safe = np.where(moving, v, 1.0)
    along = np.hypot(ex * x / safe, ey * y / safe)
    return np.asarray(np.where(moving, along, np.sqrt((ex**2 + ey**2) / 2)))


def _round(value: float) -> float:
    return round(float(value), 4) if math.isfinite(value) else math.nan
