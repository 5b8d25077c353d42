"""Composites: one velocity map per month, season or year from all the cube's layers, with its uncertainty.

For a cell and a period P, each layer i with a velocity there contributes with the weight

    a_i = o_i / σ_i²,   o_i = |[t1_i, t2_i] ∩ P| / (t2_i − t1_i)

where ``t1``, ``t2`` are its acquisition times and σ_i its per-cell error (``vx_error_cell`` for ``vx``,
``vy_error_cell`` for ``vy``): a pair spanning a period boundary counts by its share of time in the period, a
noisier layer counts less. The composite is the weighted mean ``m = Σ a_i v_i / Σ a_i`` (inverse-variance
weighting, as ITS_LIVE's annual composites weight by 1/error², Gardner et al. 2018,
https://doi.org/10.5194/tc-12-521-2018). Its error (one standard deviation) is the propagated error of that mean,
``sqrt(Σ a_i² σ_i²) / Σ a_i``, multiplied by ``sqrt(χ²/(n − 1))`` when the layers scatter more than their errors
say (``χ² = Σ (v_i − m)² / σ_i²`` over the n layers): errors that share an image in a pair network, or motion
that changes within the period, then widen the interval instead of being hidden. A 95 % interval is ±1.96 errors.

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
from offset_cube.cube.uncertainty import speed_error
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
    values: np.ndarray[Any, Any], sigma: np.ndarray[Any, Any], overlap: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Mean, one-sigma error and count along axis 0 of ``values`` (layers first) with weights overlap/σ².

    ``overlap`` has one value per layer. Layers with NaN value or σ do not count; σ is at least
    :data:`ERROR_FLOOR_M_PER_YR`.
    """
    o = np.asarray(overlap, dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    ok = np.isfinite(values) & np.isfinite(sigma) & (o > 0)
    var = np.maximum(np.where(ok, sigma, 1.0), ERROR_FLOOR_M_PER_YR) ** 2
    a = np.where(ok, o / var, 0.0)
    total = a.sum(axis=0)
    count = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, (a * np.where(ok, values, 0.0)).sum(axis=0) / total, np.nan)
        propagated = np.sqrt((a * a * var).sum(axis=0)) / total
        chi2 = (np.where(ok, (values - mean) ** 2, 0.0) / var).sum(axis=0)
        excess = np.where(count > 1, chi2 / np.maximum(count - 1, 1), 1.0)
    error = np.where(count > 0, propagated * np.sqrt(np.maximum(excess, 1.0)), np.nan)
    return mean, error, count


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
    for y0 in range(0, grid.ny, SPACE_CHUNK):
        rows = slice(y0, min(y0 + SPACE_CHUNK, grid.ny))
        block = {
            name: np.asarray(cube[name].isel(mid_date=members, y=rows).values, dtype=np.float64)
            for name in ("vx", "vy", "vx_error_cell", "vy_error_cell")
        }
        vx, ex, nx_ = weighted_mean(block["vx"], block["vx_error_cell"], overlap)
        vy, ey, ny_ = weighted_mean(block["vy"], block["vy_error_cell"], overlap)
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
    text = "\n".join(sorted(layers.tokens[i] for i in members))
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
