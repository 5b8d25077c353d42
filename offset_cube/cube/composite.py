"""Composites: one velocity map per month, season or year from all the cube's layers, with its uncertainty.

For a cell and a period P, each layer i with a velocity there contributes with the weight

    a_i = o_i / σ_i²,   o_i = |[t1_i, t2_i] ∩ P| / (t2_i − t1_i)

where ``t1``, ``t2`` are its acquisition times and σ_i its per-cell error (``vx_error_cell`` for ``vx``,
``vy_error_cell`` for ``vy``): a pair spanning a period boundary counts by its share of time in the period, a
noisier layer counts less. The composite is the weighted mean ``m = Σ a_i v_i / Σ a_i`` (inverse-variance
weighting, as ITS_LIVE's annual composites weight by 1/error², Gardner et al. 2018,
https://doi.org/10.5194/tc-12-521-2018).

Its error (one standard deviation) does not assume the layers' errors independent: layers that share an image
(a pair network) or the same geometry, windows and surface texture (every pair of a track: the tracker smooths
shear margins the same way each time) share part of their error, which no number of layers averages out. Each
layer's error σ_i is split into a part that varies from layer to layer and a part common to all of them; only
the first shows in the layers' scatter about the mean, ``χ² = Σ (v_i − m)² / σ_i²`` over the n layers, whose
expectation is ``f (n − 1)`` when a share f of each variance varies. With ``f = χ²/(n − 1)`` (1 for a single
layer):

    error² = f · Σ a_i² σ_i² / (Σ a_i)²  +  max(1 − f, 0) · Σ a_i σ_i² / Σ a_i

the varying part averages down as for independent errors, the common part stays at the layers' (weighted) error.
f = 1 gives the independent-errors formula; f > 1 (the layers scatter more than their errors say: blunders,
motion that changes within the period) widens it by √f; f → 0 keeps the error of one layer. The scatter cannot
tell errors that are shared from errors that are overstated: the formula takes the cautious reading.

**Layers that share an image** (a pair network: (A, B) and (A, C), or (A, B) and (B, C)) have correlated errors:
part of each offset's error comes from the speckle of each of its two images. With their correlation ρ_ij (per
component) the varying part's covariance is C_ij = ρ_ij σ_i σ_j, and the formula above becomes

    error² = f · wᵀ C w  +  max(1 − f, 0) · Σ a_i σ_i² / Σ a_i,     w = a / Σ a,
    f = χ² / E[χ²],   E[χ²] = Σ_i (C_ii − 2 (C w)_i + wᵀ C w) / σ_i²

(the expected χ² of correlated layers about their weighted mean, n − 1 when C is diagonal; not below
:data:`MIN_FREEDOM_SHARE` · (n − 1)); with ρ = 0 it is the formula above exactly. Generalised least squares with a
known error covariance (e.g. Aitken 1936, Proc. R. Soc. Edinburgh 55, 42–48; for the variance of a
weighted mean of correlated measurements, Schmelling 1995, "Averaging correlated data", Physica Scripta 51, 676–679).

ρ is **estimated from the layers**, per period and component (:func:`shared_image_correlation`): the cube keeps no
stable-ground mask, so each layer's stable cells are found again as the engine finds them without one
(:func:`offset_cube.cube.uncertainty.stable_surface`; on a sample of at most
:data:`CORRELATION_SAMPLE_CELLS` cells). Those cells may still move slowly, so the layers are not compared with
zero but with two reference layers k, l of the same period that share no image with i, j or each other (up to
:data:`MAX_REFERENCE_PAIRS` such pairs, the nearest in time): over the
cells stable in i and j, ``cov(v_i − v_k, v_j − v_l)`` is C_ij and ``cov(v_i − v_k, v_i − v_l)`` is σ_i², the
motion (the same in all four) and the references' errors cancel (the three-cornered-hat idea, Gray & Allan 1974, Proc.
28th Annual Symposium on Frequency Control, 243–246). These are summed over all reference pairs and, because one pair
of layers gives a noisy figure, pooled over all layer pairs of the period with the shared image in the **same role**
(first in both or second in both; expected positive) and over those with **opposite roles** (first in one, second
in the other; expected negative): ρ = Σ cov / Σ √(σ_i² σ_j²), clipped to [0, :data:`MAX_CORRELATION`] and
[−:data:`MAX_CORRELATION`, 0]. Fewer than :data:`MIN_CORRELATION_CELLS` cells or no two references (a
consecutive chain: each month's few layers all touch each other): ρ = 0. The matrix is made positive
semi-definite.

``v`` is the speed of the mean velocity (not the mean of speeds, which noise biases upwards) and ``v_error`` its
error from the component errors (:func:`offset_cube.cube.uncertainty.speed_error`). ``count`` is how many layers
contributed to the cell, ``days_covered`` how many days of the period their time spans cover together.

Layers without per-cell errors (cubes written before they existed) do not contribute. Periods are UTC calendar
months, meteorological seasons (DJF, MAM, JJA, SON; December counts with the following January) or calendar
years.

**Incremental.** The store records, per period, a fingerprint of the layers that overlap it (pair id, times and
the layer's processing record). A new run recomputes only the periods whose fingerprint changed (new, replaced or
removed layers) and copies the others from the previous store; the new store replaces the old one atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

import offset_cube
from offset_cube.atomic import atomic_path
from offset_cube.cube.grid import CubeGrid
from offset_cube.cube.product import add_xy_attrs, write_mapping
from offset_cube.cube.schema import SPACE_CHUNK
from offset_cube.cube.uncertainty import speed_error, stable_surface
from offset_cube.cube.versions import open_cube
from offset_cube.cube.zarrio import TIME_ENCODING, open_dataset, write_dataset
from offset_cube.errors import CubeError

log = logging.getLogger(__name__)

Period = Literal["month", "season", "year"]
PERIODS: tuple[Period, ...] = ("month", "season", "year")
#: Fewest days of a layer inside a period for it to count (shorter overlaps carry almost no weight anyway).
MIN_OVERLAP_DAYS = 0.5
#: Smallest per-cell error used as a weight, m/yr: no offset measurement is better (a noise-free synthetic
#: layer reports 0, which would take all the weight and give a zero error).
ERROR_FLOOR_M_PER_YR = 0.1
#: Fewest cells (stable in both layers, with two reference layers) for a correlation of shared-image layers.
MIN_CORRELATION_CELLS = 30
#: Largest |correlation| assigned to two layers that share an image.
MAX_CORRELATION = 0.8
#: Cells of the sample on which the correlations are estimated (every k-th row and column).
CORRELATION_SAMPLE_CELLS = 50_000
#: Reference pairs of layers per pair of layers that share an image (the nearest in time).
MAX_REFERENCE_PAIRS = 4
#: The expected χ² of correlated layers is not taken below this share of n − 1.
MIN_FREEDOM_SHARE = 0.1
#: Changes when the composite's definition does, so that stores written before are recomputed.
METHOD_VERSION = "2"

COMPOSITE_VARIABLES: dict[str, dict[str, str]] = {
    "vx": {
        "units": "meter/year",
        "standard_name": "land_ice_surface_x_velocity",
        "long_name": "error- and overlap-weighted mean velocity along the grid x axis",
    },
    "vy": {
        "units": "meter/year",
        "standard_name": "land_ice_surface_y_velocity",
        "long_name": "error- and overlap-weighted mean velocity along the grid y axis",
    },
    "v": {"units": "meter/year", "long_name": "speed of the mean velocity"},
    "vx_error": {"units": "meter/year", "long_name": "one-sigma error of vx (propagated, widened by excess scatter)"},
    "vy_error": {"units": "meter/year", "long_name": "one-sigma error of vy (propagated, widened by excess scatter)"},
    "v_error": {"units": "meter/year", "long_name": "one-sigma error of v"},
    "count": {"units": "1", "long_name": "number of layers that contributed"},
    "days_covered": {"units": "days", "long_name": "days of the period covered by the contributing layers"},
}


@dataclass(frozen=True)
class CompositeReport:
    """What a composite run did."""

    path: Path
    period: Period
    periods: int
    recomputed: tuple[str, ...]
    kept: int

    def summary(self) -> str:
        return (
            f"{self.periods} {self.period} composite(s) in {self.path}: {len(self.recomputed)} computed, "
            f"{self.kept} unchanged"
        )


@dataclass(frozen=True)
class LayerTimes:
    """What the composites need of the cube's layers (1-D, in cube order)."""

    img1: np.ndarray[Any, np.dtype[np.datetime64]]
    img2: np.ndarray[Any, np.dtype[np.datetime64]]
    tokens: list[str]


def period_bounds(kind: Period, first: np.datetime64, last: np.datetime64) -> list[tuple[dt.datetime, dt.datetime]]:
    """The periods of ``kind`` (start inclusive, end exclusive, UTC) that intersect [first, last]."""
    if kind not in PERIODS:
        raise CubeError(f"period {kind!r} is not one of {', '.join(PERIODS)}")
    start = _as_datetime(first)
    end = _as_datetime(last)
    step = {"month": 1, "season": 3, "year": 12}[kind]
    year, month = start.year, start.month
    if kind == "year":
        month = 1
    elif kind == "season":  # seasons start in December, March, June, September
        month = 12 if start.month in (12, 1, 2) else start.month // 3 * 3
        year = start.year - 1 if start.month in (1, 2) else start.year
    out = []
    lo = dt.datetime(year, month, 1)
    while lo <= end:
        hi = _add_months(lo, step)
        if hi > start:
            out.append((lo, hi))
        lo = hi
    return out


def period_label(kind: Period, start: dt.datetime) -> str:
    """``2020-03`` (month), ``2019-DJF`` (season, by the year of its December), ``2020`` (year)."""
    if kind == "month":
        return f"{start:%Y-%m}"
    if kind == "year":
        return f"{start:%Y}"
    names = {12: "DJF", 3: "MAM", 6: "JJA", 9: "SON"}
    return f"{start.year}-{names[start.month]}"


def composite_cube(
    cube_path: Path, kind: Period, out: Path, *, only_new: bool = True, confidence_note: str = ""
) -> CompositeReport:
    """Write the ``kind`` composites of the cube at ``cube_path`` to ``out`` (Zarr v3, written atomically).

    With ``only_new`` the periods whose layers did not change since the store at ``out`` was written are copied,
    not recomputed.
    """
    cube = open_cube(cube_path)
    try:
        if cube.sizes["mid_date"] == 0:
            raise CubeError(f"the cube {cube_path} has no layers to composite")
        grid = CubeGrid.from_attrs(dict(cube.attrs), where=str(cube_path))
        layers = _layer_times(cube)
        bounds = period_bounds(kind, layers.img1.min(), layers.img2.max())
        previous = _previous(out, kind, grid) if only_new else {}
        fields: dict[str, list[np.ndarray[Any, Any]]] = {name: [] for name in COMPOSITE_VARIABLES}
        fingerprints: dict[str, str] = {}
        recomputed: list[str] = []
        for lo, hi in bounds:
            label = period_label(kind, lo)
            members = _overlapping(layers, lo, hi)
            fingerprints[label] = _fingerprint(layers, members)
            old = previous.get(label)
            if old is not None and old[0] == fingerprints[label]:
                values = old[1]
            else:
                values = _compute_period(cube, layers, members, lo, hi, grid)
                recomputed.append(label)
            for name in COMPOSITE_VARIABLES:
                fields[name].append(values[name])
        ds = _composite_dataset(kind, bounds, fields, fingerprints, grid, cube, cube_path, confidence_note)
    finally:
        cube.close()
    with atomic_path(out) as tmp:
        write_dataset(ds, tmp, encoding=_encoding(ds, grid))
    report = CompositeReport(out, kind, len(bounds), tuple(recomputed), len(bounds) - len(recomputed))
    log.info(report.summary())
    return report


def default_composite_path(cube_path: Path, kind: Period) -> Path:
    """``<cube folder>/composites-<kind>.zarr``."""
    return Path(cube_path).parent / f"composites-{kind}.zarr"


def weighted_mean(
    values: np.ndarray[Any, Any],
    sigma: np.ndarray[Any, Any],
    overlap: np.ndarray[Any, Any],
    correlation: np.ndarray[Any, Any] | None = None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Mean, one-sigma error and count along axis 0 of ``values`` (layers first) with weights overlap/σ².

    ``overlap`` has one value per layer; ``correlation`` (layers x layers, positive semi-definite, unit diagonal;
    default: the identity) the correlation of the layers' errors. Layers with NaN value or σ do not count; σ is
    at least :data:`ERROR_FLOOR_M_PER_YR`.
    """
    o = np.asarray(overlap, dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    ok = np.isfinite(values) & np.isfinite(sigma) & (o > 0)
    var = np.maximum(np.where(ok, sigma, 1.0), ERROR_FLOOR_M_PER_YR) ** 2
    a = np.where(ok, o / var, 0.0)
    total = a.sum(axis=0)
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, (a * np.where(ok, values, 0.0)).sum(axis=0) / total, np.nan)
        propagated = (a * a * var).sum(axis=0) / total**2
        typical = (a * var).sum(axis=0) / total
        chi2 = (np.where(ok, (values - mean) ** 2, 0.0) / var).sum(axis=0)
        freedom = count - 1.0
        if correlation is not None:
            extra, lost = _correlated_terms(np.where(ok, np.sqrt(var), 0.0), a / total, correlation, ok)
            propagated = propagated + extra
            freedom = np.maximum(freedom - lost, MIN_FREEDOM_SHARE * freedom)
        # share of the layers' variance that their scatter about the mean shows (1 when they tell nothing)
        random = np.where(count > 1, chi2 / np.maximum(freedom, 1e-12), 1.0)
    variance = random * np.maximum(propagated, 0.0) + np.maximum(1.0 - random, 0.0) * typical
    error = np.where(count > 0, np.sqrt(variance), np.nan)
    return mean, error, count


def _correlated_terms(
    s: np.ndarray[Any, Any], w: np.ndarray[Any, Any], correlation: np.ndarray[Any, Any], ok: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """What the off-diagonal correlations ρᵢⱼ add to the weighted mean's variance, Σᵢ≠ⱼ wᵢwⱼρᵢⱼsᵢsⱼ, and take
    from the expected χ² of the layers about the mean, Σᵢ (2 Σⱼ≠ᵢ ρᵢⱼwⱼsⱼ / sᵢ − extra / sᵢ²) (layers first;
    s = σ of the counted layers, 0 elsewhere; w the normalised weights)."""
    off = np.asarray(correlation, dtype=np.float64) - np.eye(correlation.shape[0])
    u = np.where(ok, w * s, 0.0)
    mixed = np.tensordot(off, u, axes=(1, 0))  # Σⱼ≠ᵢ ρᵢⱼ wⱼ sⱼ per layer and cell
    extra = (u * mixed).sum(axis=0)
    safe = np.where(ok, s, 1.0)
    lost = np.where(ok, 2.0 * mixed / safe - extra / safe**2, 0.0).sum(axis=0)
    return extra, lost


def shared_image_correlation(
    values: np.ndarray[Any, Any],
    stable: np.ndarray[Any, Any],
    img1: np.ndarray[Any, Any],
    img2: np.ndarray[Any, Any],
) -> np.ndarray[Any, Any]:
    """Correlation matrix (layers x layers) of the layers' errors in one component, estimated from the layers.

    ``values`` (layers x cells, m/yr, NaN = none) and ``stable`` (the layers' stable cells, same shape) are one
    period's member layers on a sample of cells; ``img1``, ``img2`` their acquisition times. Two layers that share
    an image get the correlation of their class, *same role* (the shared image first in both or second in both)
    or *opposite roles* (first in one, second in the other); the others 0. See the module docstring.
    """
    n = values.shape[0]
    t1, t2 = np.asarray(img1), np.asarray(img2)
    roles = np.zeros((n, n), dtype=np.int8)
    for i in range(n):
        for j in range(i + 1, n):
            if t1[i] == t1[j] or t2[i] == t2[j]:
                roles[i, j] = 1
            elif t2[i] == t1[j] or t1[i] == t2[j]:
                roles[i, j] = -1
    sums = {1: [0.0, 0.0, 0], -1: [0.0, 0.0, 0]}  # Σ covariance, Σ sqrt(var_i var_j), cells
    finite = np.isfinite(values)
    middle = t1 + (t2 - t1) / 2
    for i, j in zip(*np.nonzero(roles), strict=True):
        shared = {t1[i], t2[i], t1[j], t2[j]}
        references = _references(t1, t2, middle, shared, middle[i] + (middle[j] - middle[i]) / 2)
        cov = var_i = var_j = 0.0
        cells_used = 0
        for k, m in references:
            cells = stable[i] & stable[j] & finite[i] & finite[j] & finite[k] & finite[m]
            if int(cells.sum()) < MIN_CORRELATION_CELLS:
                continue
            ik, im, jk, jm = (
                _centred(values[p, cells] - values[q, cells]) for p, q in ((i, k), (i, m), (j, k), (j, m))
            )
            cov += float(np.mean(ik * jm + im * jk)) / 2
            var_i += float(np.mean(ik * im))
            var_j += float(np.mean(jk * jm))
            cells_used += int(cells.sum())
        if cells_used and var_i > 0 and var_j > 0:
            entry = sums[int(roles[i, j])]
            entry[0] += cov
            entry[1] += float(np.sqrt(var_i * var_j))
            entry[2] += cells_used
    rho = {}
    for sign, (cov, scale, count) in sums.items():
        estimate = cov / scale if count >= MIN_CORRELATION_CELLS and scale > 0 else 0.0
        rho[sign] = float(
            np.clip(estimate, 0.0, MAX_CORRELATION) if sign > 0 else np.clip(estimate, -MAX_CORRELATION, 0)
        )
    upper = np.where(roles == 1, rho[1], np.where(roles == -1, rho[-1], 0.0))
    return _nearest_correlation(upper + upper.T + np.eye(n))


def _references(
    t1: np.ndarray[Any, Any], t2: np.ndarray[Any, Any], middle: np.ndarray[Any, Any], shared: set[Any], when: Any
) -> list[tuple[int, int]]:
    """Up to :data:`MAX_REFERENCE_PAIRS` pairs of layers (k, l) that share no image with ``shared`` or with each
    other, the layers nearest to ``when`` first (the motion they are compared across should be the same)."""
    others = [k for k in np.argsort(np.abs(middle - when), kind="stable") if not {t1[k], t2[k]} & shared]
    found: list[tuple[int, int]] = []
    for a, k in enumerate(others):
        for m in others[:a]:
            if not {t1[k], t2[k]} & {t1[m], t2[m]}:
                found.append((int(m), int(k)))
                if len(found) == MAX_REFERENCE_PAIRS:
                    return found
    return found


def _centred(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.asarray(values - values.mean())


def _nearest_correlation(matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``matrix`` made positive semi-definite (negative eigenvalues to 0, unit diagonal restored)."""
    values, vectors = np.linalg.eigh(matrix)
    if values.min() >= 0:
        return matrix
    fixed = (vectors * np.maximum(values, 0.0)) @ vectors.T
    scale = np.sqrt(np.maximum(np.diag(fixed), 1e-12))
    return np.asarray(fixed / np.outer(scale, scale))


def _stable_sample(
    cube: xr.Dataset, members: np.ndarray[Any, Any], grid: CubeGrid
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """vx, vy and stable cells (layers x cells) of the member layers on every k-th row and column
    (at most about :data:`CORRELATION_SAMPLE_CELLS` cells): the stable cells are the layer's own
    (:func:`offset_cube.cube.uncertainty.stable_surface`, slow cells; the cube keeps no stable-ground mask)."""
    step = max(1, int(np.ceil(np.sqrt(grid.ny * grid.nx / CORRELATION_SAMPLE_CELLS))))
    xs, ys, cells = [], [], []
    for i in members:
        layer = cube[["vx", "vy"]].isel(mid_date=int(i), y=slice(None, None, step), x=slice(None, None, step))
        vx, vy = (np.asarray(layer[name].values, dtype=np.float64) for name in ("vx", "vy"))
        xs.append(vx.ravel())
        ys.append(vy.ravel())
        cells.append(stable_surface(vx, vy).cells.ravel())
    return np.stack(xs), np.stack(ys), np.stack(cells)


def _compute_period(
    cube: xr.Dataset,
    layers: LayerTimes,
    members: np.ndarray[Any, Any],
    lo: dt.datetime,
    hi: dt.datetime,
    grid: CubeGrid,
) -> dict[str, np.ndarray[Any, Any]]:
    """The composite fields of one period, read one band of rows at a time."""
    shape = grid.shape
    out = {name: np.full(shape, np.nan, dtype=np.float32) for name in COMPOSITE_VARIABLES}
    out["count"] = np.zeros(shape, dtype=np.float32)
    out["days_covered"] = np.zeros(shape, dtype=np.float32)
    if members.size == 0:
        return out
    overlap = _overlap_fraction(layers, members, lo, hi)
    days = _day_cover(layers, members, lo, hi)
    have_errors = "vx_error_cell" in cube and "vy_error_cell" in cube
    if not have_errors:
        log.warning("the cube has no per-cell errors (written by an older version): composites stay empty")
        return out
    rho_x = rho_y = None
    if members.size > 2:
        sample_x, sample_y, stable = _stable_sample(cube, members, grid)
        t1, t2 = layers.img1[members], layers.img2[members]
        rho_x = shared_image_correlation(sample_x, stable, t1, t2)
        rho_y = shared_image_correlation(sample_y, stable, t1, t2)
    for y0 in range(0, grid.ny, SPACE_CHUNK):
        rows = slice(y0, min(y0 + SPACE_CHUNK, grid.ny))
        block = {
            name: np.asarray(cube[name].isel(mid_date=members, y=rows).values, dtype=np.float64)
            for name in ("vx", "vy", "vx_error_cell", "vy_error_cell")
        }
        vx, ex, nx_ = weighted_mean(block["vx"], block["vx_error_cell"], overlap, rho_x)
        vy, ey, ny_ = weighted_mean(block["vy"], block["vy_error_cell"], overlap, rho_y)
        both = (nx_ > 0) & (ny_ > 0)
        vx, vy, ex, ey = (np.where(both, a, np.nan) for a in (vx, vy, ex, ey))
        out["vx"][rows], out["vy"][rows] = vx, vy
        out["vx_error"][rows], out["vy_error"][rows] = ex, ey
        out["v"][rows] = np.hypot(vx, vy)
        out["v_error"][rows] = speed_error(vx, vy, ex, ey)
        out["count"][rows] = np.where(both, np.minimum(nx_, ny_), 0)
        contributed = np.isfinite(block["vx"]) & np.isfinite(block["vx_error_cell"]) & np.isfinite(block["vy"])
        # days covered by the union of the contributing layers' spans: (cells x layers) @ (layers x days) > 0
        cells = contributed.reshape(contributed.shape[0], -1).T.astype(np.float32)
        out["days_covered"][rows] = ((cells @ days) > 0).sum(axis=1).reshape(vx.shape)
    return out


def _layer_times(cube: xr.Dataset) -> LayerTimes:
    img1 = cube["acquisition_date_img1"].values.astype("datetime64[us]")
    img2 = cube["acquisition_date_img2"].values.astype("datetime64[us]")
    identity = [cube[name].values for name in ("pair_id", "processing_parameters") if name in cube]
    tokens = ["|".join(str(column[i]) for column in identity) + f"|{img1[i]}|{img2[i]}" for i in range(img1.size)]
    return LayerTimes(img1, img2, tokens)


def _overlapping(layers: LayerTimes, lo: dt.datetime, hi: dt.datetime) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Indices of the layers with at least MIN_OVERLAP_DAYS inside [lo, hi)."""
    start = np.maximum(layers.img1, np.datetime64(lo, "us"))
    end = np.minimum(layers.img2, np.datetime64(hi, "us"))
    inside_days = (end - start) / np.timedelta64(1, "D")
    return np.flatnonzero(inside_days >= MIN_OVERLAP_DAYS)


def _overlap_fraction(
    layers: LayerTimes, members: np.ndarray[Any, Any], lo: dt.datetime, hi: dt.datetime
) -> np.ndarray[Any, Any]:
    t1, t2 = layers.img1[members], layers.img2[members]
    inside = np.minimum(t2, np.datetime64(hi, "us")) - np.maximum(t1, np.datetime64(lo, "us"))
    return np.asarray(inside / (t2 - t1), dtype=np.float64)


def _day_cover(
    layers: LayerTimes, members: np.ndarray[Any, Any], lo: dt.datetime, hi: dt.datetime
) -> np.ndarray[Any, Any]:
    """(layers x days of the period): 1 where the layer's span covers the day's middle."""
    n_days = (hi - lo).days
    noon = np.datetime64(lo, "us") + (np.arange(n_days) * 24 + 12) * np.timedelta64(1, "h")
    t1, t2 = layers.img1[members][:, None], layers.img2[members][:, None]
    return np.asarray((noon[None, :] >= t1) & (noon[None, :] < t2), dtype=np.float32)


def _fingerprint(layers: LayerTimes, members: np.ndarray[Any, Any]) -> str:
    text = "\n".join([f"method {METHOD_VERSION}", *sorted(layers.tokens[i] for i in members)])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _previous(out: Path, kind: Period, grid: CubeGrid) -> dict[str, tuple[str, dict[str, np.ndarray[Any, Any]]]]:
    """Fingerprint and fields per period of an existing composite store made for the same grid and period."""
    if not (out / "zarr.json").is_file():
        return {}
    try:
        old = open_dataset(out)
    except (OSError, ValueError, KeyError) as err:
        log.warning("cannot read the previous composites %s (%s); recomputing all periods", out, err)
        return {}
    with old:
        attrs = dict(old.attrs)
        if attrs.get("period") != kind or CubeGrid.from_attrs(attrs, where=str(out)).problems_against(grid):
            return {}
        prints = json.loads(str(attrs.get("period_fingerprints", "{}")))
        labels = [str(v) for v in old["period_label"].values]
        found = {}
        for i, label in enumerate(labels):
            if label in prints and all(name in old for name in COMPOSITE_VARIABLES):
                found[label] = (prints[label], {n: np.asarray(old[n].isel(time=i).values) for n in COMPOSITE_VARIABLES})
        return found


def _composite_dataset(
    kind: Period,
    bounds: Sequence[tuple[dt.datetime, dt.datetime]],
    fields: dict[str, list[np.ndarray[Any, Any]]],
    fingerprints: dict[str, str],
    grid: CubeGrid,
    cube: xr.Dataset,
    cube_path: Path,
    confidence_note: str,
) -> xr.Dataset:
    starts = np.array([np.datetime64(lo, "us") for lo, _ in bounds])
    ends = np.array([np.datetime64(hi, "us") for _, hi in bounds])
    dims = ("time", "y", "x")
    data: dict[str, Any] = {
        name: (dims, np.stack(values).astype(np.float32)) for name, values in fields.items() if values
    }
    data["time_bnds"] = (("time", "nv"), np.stack([starts, ends], axis=1))
    data["period_label"] = ("time", np.array([period_label(kind, lo) for lo, _ in bounds], dtype=object))
    ds = xr.Dataset(data, coords={"time": starts + (ends - starts) // 2, "y": grid.y, "x": grid.x})
    for name, attrs in COMPOSITE_VARIABLES.items():
        ds[name].attrs.update(attrs)
        ds[name].attrs["cell_methods"] = "time: mean (weighted by period overlap / error^2)"
    ds["time"].attrs.update({"long_name": "middle of the period", "bounds": "time_bnds", "standard_name": "time"})
    ds["period_label"].attrs["long_name"] = f"{kind} (UTC)"
    add_xy_attrs(ds)
    ds = write_mapping(ds, grid)
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"offset-cube {kind} velocity composites",
        "period": kind,
        "source_cube": str(Path(cube_path).resolve()),
        "source_layers": int(cube.sizes["mid_date"]),
        "error_confidence": "one standard deviation (68 %); a 95 % interval is +-1.96 errors",
        "method": "per cell: mean of layers weighted by (days in period / layer days) / error^2; see README",
        "period_fingerprints": json.dumps(fingerprints, sort_keys=True),
        "software_version": offset_cube.__version__,
        "date_created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **({"note": confidence_note} if confidence_note else {}),
        **grid.to_attrs(),
    }
    return ds


def _encoding(ds: xr.Dataset, grid: CubeGrid) -> dict[str, dict[str, Any]]:
    chunks = (1, min(SPACE_CHUNK, grid.ny), min(SPACE_CHUNK, grid.nx))
    encoding: dict[str, dict[str, Any]] = {
        name: {"_FillValue": np.float32(np.nan), "chunks": chunks} for name in COMPOSITE_VARIABLES
    }
    encoding["time"] = dict(TIME_ENCODING)
    encoding["time_bnds"] = dict(TIME_ENCODING)
    return encoding


def _as_datetime(value: np.datetime64) -> dt.datetime:
    seconds = np.asarray(value).astype("datetime64[s]").astype("int64")
    return dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(seconds))


def _add_months(when: dt.datetime, months: int) -> dt.datetime:
    index = when.year * 12 + when.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1)
