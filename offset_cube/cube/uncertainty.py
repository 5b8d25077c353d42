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
    ``ex``, ``ey`` above: where the engine gives the tracker's offset covariance (ampcor's, both engines), the
    covariance propagated through the offsets → velocity conversion, **scaled** so that its RMS over the stable
    cells equals ``vx_error``/``vy_error`` (the correlation-surface covariance is a relative measure: ampcor's
    estimate is not calibrated, the stable ground is); elsewhere the layer's ``vx_error``/``vy_error``.

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


def cell_errors(stable: StableSurface, sigma_x: Any = None, sigma_y: Any = None) -> tuple[FloatArray, FloatArray]:
    """Per-cell ``vx_error_cell``, ``vy_error_cell``: the tracker's σ scaled to the stable-surface errors where
    it is known (and the stable cells have it), else the layer's scalar errors."""
    shape = stable.cells.shape
    ex = np.full(shape, stable.vx_error)
    ey = np.full(shape, stable.vy_error)
    if sigma_x is None or sigma_y is None or not stable.usable:
        return ex, ey
    out = []
    for sigma, scalar, default in (
        (np.asarray(sigma_x), stable.vx_error, ex),
        (np.asarray(sigma_y), stable.vy_error, ey),
    ):
        known = stable.cells & np.isfinite(sigma)
        if int(known.sum()) < MIN_STABLE_CELLS:
            out.append(default)
            continue
        factor = scalar / math.sqrt(float(np.mean(sigma[known] ** 2)))
        out.append(np.where(np.isfinite(sigma), sigma * factor, scalar))
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
