"""Per-pair product: an engine result (offsets on its own grid) → velocity on the cube grid, with masks.

Steps:

1. **Clip.** Only result points near the cube grid are used: a lon/lat pre-filter (the grid's outline, expanded by
   a margin, in lon/lat), then the bounding rows/columns of those points. The swath outside the area is never
   transformed or resampled.
2. **Mask.** Each result point gets a reason code: no measurement (NaN offsets or geometry), SNR below
   ``product.snr_threshold``, or outlier: ``|offset − local median| > k · max(local MAD, 0.05 px)`` in azimuth or
   range over an ``outlier_window``² box of SNR-valid points (k = ``product.outlier_mad_k``; a point with fewer
   than 3 valid values in its box cannot be confirmed and counts as an outlier).
3. **Convert** offsets to ``vx, vy`` (m/yr, cube CRS) with :mod:`offset_cube.cube.velocity`.
4. **Resample** to the cube grid by linear (barycentric) interpolation on a triangulation of the points' own
   lattice (two triangles per quad of neighbouring points) in map coordinates. Why: the points form a
   curvilinear lattice (radar geometry, or lat/lon), so regular-grid interpolation does not apply; linear
   interpolation is exact for a locally linear field, never overshoots, and a blunder only reaches its own
   triangles. A cell takes ``vx, vy`` only if **all three** vertices of its triangle are valid (no interpolation
   across masked points), and nothing is extrapolated: quads with a missing corner or stretched across a gap
   are left out, and cells in no triangle stay empty. ``azimuth_offset``, ``range_offset`` and ``snr`` are
   interpolated from every measured point, so the cube shows what was measured where ``vx`` was masked.
5. **Record** ``valid`` (1/0) and ``invalid_reason`` per cell (the worst code of its triangle's vertices).
6. **Errors** (:mod:`offset_cube.cube.uncertainty`): the stable-surface shift is removed from ``vx``, ``vy`` and
   the layer's ``vx_error``, ``vy_error``, ``stable_count`` become attributes; ``v_error`` and the per-cell
   ``vx_error_cell``, ``vy_error_cell`` become variables. The points' errors (tracker covariance, local scatter)
   reach a cell through the same weights as ``vx``, as the error of that weighted sum: σ² = Σⱼₖ wⱼwₖρⱼₖσⱼσₖ,
   with ρ the correlation of two points' errors — the share of their correlation windows that overlap, which
   :func:`window_overlap` reads from the engine's window and skip (a radar-lattice result; measured on the point
   lattice of a simulated glacier pair, 64 × 16 windows every 32 × 8 at coherence 0.5: neighbours 50 % overlapped
   correlate 0.46-0.54, diagonal ones 25 % overlapped 0.2-0.35, two steps apart 0.05-0.08). Without them (ISCE2's
   geocoded grid) ρ = 1: the errors are
   interpolated like ``vx``, the cautious bound.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from scipy.spatial import cKDTree

import offset_cube
from offset_cube.atomic import atomic_path
from offset_cube.config import ProductConfig
from offset_cube.conventions import MAP_VARIABLES, X_ATTRS, Y_ATTRS, PairRecord
from offset_cube.cube.grid import CubeGrid, from_lonlat, to_lonlat
from offset_cube.cube.stats import local_median_mad
from offset_cube.cube.uncertainty import (
    FLAG_NOT_APPLIED,
    StableSurface,
    cell_errors,
    local_scatter,
    speed_error,
    stable_surface,
    tracker_velocity_sigma,
)
from offset_cube.cube.velocity import offsets_to_velocity, velocity_from_result
from offset_cube.cube.zarrio import iso_utc, open_dataset, parse_utc, write_dataset
from offset_cube.errors import CubeError
from offset_cube.result import read_pair_result

log = logging.getLogger(__name__)

PRODUCT_NAME = "product.zarr"
QUICKLOOK_NAME = "quicklook.png"
#: Offsets closer than this to the local median are never outliers: the sub-pixel precision of dense offset
#: tracking is ~0.05-0.1 px, so a smaller MAD (a very smooth field) would flag noise as blunders.
MAD_FLOOR_PX = 0.05
#: Fewest SNR-valid values in a point's box for the outlier test to confirm it.
MIN_WINDOW_VALUES = 3

#: Float variables of a product and the cube: their CF attributes.
VARIABLES: dict[str, dict[str, str]] = {name: c.attrs() for name, c in MAP_VARIABLES.items()}
#: Per-cell error variables, absent from products made before they existed (read as NaN).
ERROR_VARIABLES = ("v_error", "vx_error_cell", "vy_error_cell")


#: Per-point error fields (m/yr) that reach the grid as the error of the interpolated value.
POINT_ERROR_FIELDS = ("sigma_vx", "sigma_vy", "scatter_vx", "scatter_vy")


class Reason(IntEnum):
    """Why a point or cell has no velocity (``invalid_reason``); 0 means it has one."""

    VALID = 0
    NO_MEASUREMENT = 1
    LOW_SNR = 2
    OUTLIER = 3


REASON_MEANINGS = "valid no_measurement low_snr outlier"


def product_path(pairs_dir: Path, pair_id: str) -> Path:
    """Where the product of ``pair_id`` lives: ``<pairs_dir>/<pair_id>/product.zarr``."""
    return pairs_dir / pair_id / PRODUCT_NAME


def make_pair_product(
    result_path: Path,
    grid: CubeGrid,
    config: ProductConfig,
    out: Path,
    record_type: type[PairRecord] = PairRecord,
) -> Path:
    """Turn the engine result at ``result_path`` into the product at ``out`` (written atomically); return ``out``.

    The result's pair attributes are read as ``record_type`` and written to the product with its coverage added.
    """
    result = read_pair_result(result_path)
    crop = _crop_to_grid(result, grid, config.outlier_window, where=str(result_path))
    reasons = classify_points(crop, config)
    velocity = velocity_from_result(crop, grid.crs)
    x, y = from_lonlat(grid).transform(crop["longitude"].values, crop["latitude"].values)
    valid = reasons == Reason.VALID
    fields = {
        "vx": np.where(valid, velocity.vx, np.nan),
        "vy": np.where(valid, velocity.vy, np.nan),
        "azimuth_offset": crop["azimuth_offset"].values,
        "range_offset": crop["range_offset"].values,
        "snr": crop["snr"].values,
    }
    sigma = _tracker_sigma(crop, grid)
    if sigma is not None:
        fields["sigma_vx"], fields["sigma_vy"] = sigma
    fields["scatter_vx"] = local_scatter(velocity.vx, valid)
    fields["scatter_vy"] = local_scatter(velocity.vy, valid)
    overlap = window_overlap(result.attrs)
    gridded, cell_reasons = resample_to_grid(
        np.asarray(x), np.asarray(y), fields, reasons, grid, errors=POINT_ERROR_FIELDS, overlap=overlap
    )
    mask = read_stable_mask(config.stable_mask, grid) if config.stable_mask is not None else None
    apply_shift = config.stable_shift == "always" or (config.stable_shift == "mask" and mask is not None)
    stable = add_errors(gridded, mask, apply_shift=apply_shift)
    try:
        record = record_type.from_attrs(result.attrs, where=str(result_path))
    except ValueError as err:
        raise CubeError(str(err)) from err
    figures = stable.attrs()
    record = dataclasses.replace(
        record,
        vx_error=figures["vx_error"],
        vy_error=figures["vy_error"],
        vx_stable_shift=figures["vx_stable_shift"],
        vy_stable_shift=figures["vy_stable_shift"],
        stable_count=float(figures["stable_count"]),
        stable_shift_flag=float(figures["stable_shift_flag"]),
    )
    ds = _product_dataset(record, str(result.attrs["grid"]), gridded, cell_reasons, grid, config)
    with atomic_path(out) as tmp:
        write_dataset(ds, tmp, encoding=_encoding(ds))
    log.info(
        "product %s: %.1f%% of %d cells valid -> %s", ds.attrs["pair_id"], ds.attrs["valid_percentage"], ds.v.size, out
    )
    return out


def _tracker_sigma(result: xr.Dataset, grid: CubeGrid) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """σ of vx, vy (m/yr) at each result point from the tracker's offset covariance, or None without one."""
    if not all(name in result for name in ("cov_az", "cov_rg", "cov_azrg")):
        return None
    geometry: dict[str, Any] = {
        "azimuth_spacing_m": result["azimuth_spacing"].values,
        "range_spacing_m": result["range_spacing"].values,
        "incidence_deg": result["incidence_angle"].values,
        "heading_deg": result["heading"].values,
        "longitude": result["longitude"].values,
        "latitude": result["latitude"].values,
        "dt_days": float(result.attrs["dt_days"]),
        "crs": grid.crs,
    }
    one, zero = np.ones(result["azimuth_offset"].shape), np.zeros(result["azimuth_offset"].shape)
    per_az = offsets_to_velocity(one, zero, **geometry)
    per_rg = offsets_to_velocity(zero, one, **geometry)
    jacobian = (per_az.vx, per_rg.vx, per_az.vy, per_rg.vy)
    return tracker_velocity_sigma(jacobian, result["cov_az"].values, result["cov_rg"].values, result["cov_azrg"].values)


def add_errors(
    gridded: dict[str, np.ndarray[Any, Any]], mask: np.ndarray[Any, Any] | None, *, apply_shift: bool
) -> StableSurface:
    """Stable-surface shift and errors of a gridded layer (:mod:`offset_cube.cube.uncertainty`).

    Subtracts the shift from ``vx``, ``vy`` when asked and known (else ``stable_shift_flag`` is 0), adds
    ``v_error``, ``vx_error_cell``, ``vy_error_cell`` in place and drops the tracker's σ and local-scatter fields.
    """
    sigma_x, sigma_y = gridded.pop("sigma_vx", None), gridded.pop("sigma_vy", None)
    scatter_x, scatter_y = gridded.pop("scatter_vx", None), gridded.pop("scatter_vy", None)
    stable = stable_surface(gridded["vx"], gridded["vy"], mask)
    if apply_shift and stable.usable:
        gridded["vx"] = gridded["vx"] - stable.vx_shift
        gridded["vy"] = gridded["vy"] - stable.vy_shift
    else:
        stable = dataclasses.replace(stable, flag=FLAG_NOT_APPLIED)
    ex, ey = cell_errors(stable, sigma_x, sigma_y, scatter_x, scatter_y)
    measured = np.isfinite(gridded["vx"]) & np.isfinite(gridded["vy"])
    gridded["vx_error_cell"] = np.where(measured, ex, np.nan)
    gridded["vy_error_cell"] = np.where(measured, ey, np.nan)
    gridded["v_error"] = np.where(measured, speed_error(gridded["vx"], gridded["vy"], ex, ey), np.nan)
    return stable


def read_stable_mask(path: Path, grid: CubeGrid) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A raster of stable ground (any GDAL raster with a CRS; non-zero = stable) on the cube grid (nearest)."""
    import rasterio
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    s = grid.spacing_m
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise CubeError(f"product.stable_mask {path} has no CRS; give a georeferenced raster (e.g. GeoTIFF)")
            band = src.read(1, masked=True).astype(np.float32).filled(np.nan)
            reproject(
                band,
                out,
                src_transform=src.transform,
                src_crs=src.crs,
                src_nodata=np.nan,
                dst_transform=Affine(s, 0.0, grid.x_min, 0.0, -s, grid.y_max),
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
    except rasterio.errors.RasterioError as err:
        raise CubeError(f"product.stable_mask {path} cannot be read as a raster: {err}") from err
    return np.asarray(np.isfinite(out) & (out != 0))


def product_figures(path: Path) -> dict[str, float | str]:
    """Key figures of a product for people: valid coverage, median speed and SNR over valid cells."""
    ds = read_product(path)
    valid = np.asarray(ds["valid"].values).astype(bool) if "valid" in ds else np.isfinite(ds["v"].values)
    speed = np.asarray(ds["v"].values)[valid]
    snr = np.asarray(ds["snr"].values)[valid]
    return {
        "pair_id": str(ds.attrs["pair_id"]),
        "reference_date": str(ds.attrs["reference_time"])[:10],
        "secondary_date": str(ds.attrs["secondary_time"])[:10],
        "track": str(ds.attrs["track"]),
        "direction": str(ds.attrs["direction"]),
        "dt_days": round(float(ds.attrs["dt_days"]), 3),
        "valid_percentage": float(ds.attrs.get("valid_percentage", 100.0 * valid.mean() if valid.size else 0.0)),
        "median_speed_m_per_yr": round(float(np.median(speed)), 2) if speed.size else float("nan"),
        "p90_speed_m_per_yr": round(float(np.percentile(speed, 90)), 2) if speed.size else float("nan"),
        "median_snr": round(float(np.median(snr)), 2) if snr.size else float("nan"),
        "vx_error": float(ds.attrs.get("vx_error", float("nan"))),
        "vy_error": float(ds.attrs.get("vy_error", float("nan"))),
        "orbit_type": str(ds.attrs.get("orbit_type", "")),
        "engine": str(ds.attrs.get("engine", "")),
    }


def read_product(path: Path) -> xr.Dataset:
    """Open a product written by :func:`make_pair_product` (lazily)."""
    if not (path / "zarr.json").is_file():
        raise CubeError(f"pair product {path} does not exist or is not a Zarr store")
    ds = open_dataset(path)
    missing = [v for v in (*VARIABLES, "valid", "invalid_reason") if v not in ds and v not in ERROR_VARIABLES]
    if missing or "pair_id" not in ds.attrs:
        raise CubeError(f"{path} is not a pair product (missing {missing or ['pair_id attribute']})")
    return ds


def classify_points(result: xr.Dataset, config: ProductConfig) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A :class:`Reason` code per result point (SNR threshold, then local median ± k·MAD outliers)."""
    az = result["azimuth_offset"].values.astype(np.float64)
    rg = result["range_offset"].values.astype(np.float64)
    snr = result["snr"].values.astype(np.float64)
    geometry = [result[v].values for v in ("incidence_angle", "heading", "azimuth_spacing", "range_spacing")]
    measured = np.isfinite(az) & np.isfinite(rg)
    for values in geometry:
        measured &= np.isfinite(values)
    reasons = np.full(az.shape, Reason.NO_MEASUREMENT, dtype=np.uint8)
    reasons[measured] = Reason.LOW_SNR
    passing = measured & np.isfinite(snr) & (snr >= config.snr_threshold)
    reasons[passing] = Reason.VALID
    outlier = np.zeros(az.shape, dtype=bool)
    for values in (az, rg):
        median, mad, count = local_median_mad(np.where(passing, values, np.nan), config.outlier_window)
        limit = config.outlier_mad_k * np.maximum(np.nan_to_num(mad, nan=0.0), MAD_FLOOR_PX)
        deviation = np.abs(values - np.nan_to_num(median, nan=0.0))
        outlier |= passing & ((count < MIN_WINDOW_VALUES) | (deviation > limit))
    reasons[outlier] = Reason.OUTLIER
    return reasons


def window_overlap(attrs: dict[str, Any]) -> tuple[float, float] | None:
    """Share of a correlation window that the next point's window covers, along the lattice's rows (azimuth
    lines) and columns (range samples), from a radar-lattice result's ``window`` and ``skip`` (range, azimuth
    pixels, ``processing_parameters``); None when the result does not say (then errors interpolate with ρ = 1)."""
    if attrs.get("grid") != "radar":
        return None
    try:
        params = json.loads(str(attrs.get("processing_parameters", "{}")))
        (win_rg, win_az), (skip_rg, skip_az) = params["window"], params["skip"]
        along = (max(0.0, 1.0 - float(skip_az) / float(win_az)), max(0.0, 1.0 - float(skip_rg) / float(win_rg)))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return along


def resample_to_grid(
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    fields: dict[str, np.ndarray[Any, Any]],
    reasons: np.ndarray[Any, np.dtype[np.uint8]],
    grid: CubeGrid,
    *,
    errors: tuple[str, ...] = (),
    overlap: tuple[float, float] | None = None,
) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, np.dtype[np.uint8]]]:
    """Linear interpolation from the result's lattice (2-D ``x``, ``y`` in map metres) onto ``grid``.

    The fields named in ``errors`` are one-sigma errors of the points: a cell gets the error of its interpolated
    value, sqrt(Σⱼₖ wⱼwₖρⱼₖσⱼσₖ), where ρ between two points of the lattice is the product over rows and columns
    of max(0, 1 − steps × (1 − ``overlap``)) (the overlap of their windows); with ``overlap`` None, ρ = 1 (the
    errors interpolate linearly, as the values).

    The lattice is triangulated along its own rows and columns (two triangles per quad of neighbouring points),
    which is what a Delaunay triangulation of a regular lattice gives, but never spans a gap: quads with a missing
    corner, or stretched beyond 3x the median quad size, are left out, so nothing is extrapolated. Each cell is
    located through the quad whose centre is nearest (and that quad's neighbours). A cell's value is NaN when any
    vertex of its triangle is NaN; its reason is the largest vertex code; cells in no triangle get NaN and
    ``NO_MEASUREMENT``.
    """
    rows, cols = x.shape
    gx, gy = np.meshgrid(grid.x, grid.y)
    cells = np.column_stack([gx.ravel(), gy.ravel()])
    values = np.column_stack([np.asarray(f, dtype=np.float64).ravel() for f in fields.values()])
    out = np.full((cells.shape[0], values.shape[1]), np.nan)
    cell_reasons = np.full(cells.shape[0], Reason.NO_MEASUREMENT, dtype=np.uint8)
    found = _locate(x.astype(np.float64), y.astype(np.float64), cells) if rows > 1 and cols > 1 else None
    if found is not None:
        inside, vertices, weights = found
        out[inside] = np.einsum("nk,nkv->nv", weights, values[vertices])
        cell_reasons[inside] = reasons.ravel()[vertices].max(axis=1)
        columns = np.array([i for i, name in enumerate(fields) if name in errors], dtype=np.intp)
        if columns.size and overlap is not None:
            rho = _vertex_correlation(vertices, cols, overlap)
            sigma = values[vertices][:, :, columns]
            variance = np.einsum("nj,nk,njk,njm,nkm->nm", weights, weights, rho, sigma, sigma)
            out[np.ix_(np.flatnonzero(inside), columns)] = np.sqrt(np.maximum(variance, 0.0))
    shape = grid.shape
    gridded = {name: out[:, i].reshape(shape) for i, name in enumerate(fields)}
    return gridded, cell_reasons.reshape(shape)


def _vertex_correlation(
    vertices: np.ndarray[Any, Any], cols: int, overlap: tuple[float, float]
) -> np.ndarray[Any, Any]:
    """(cells, 3, 3) correlations of the errors of each cell's triangle vertices (lattice indices, ``cols``
    per row): the overlap of their windows, max(0, 1 − |Δrow| (1 − o_row)) · max(0, 1 − |Δcol| (1 − o_col))."""
    row, col = np.divmod(vertices, cols)
    d_row = np.abs(row[:, :, None] - row[:, None, :])
    d_col = np.abs(col[:, :, None] - col[:, None, :])
    along_rows = np.maximum(0.0, 1.0 - d_row * (1.0 - overlap[0]))
    along_cols = np.maximum(0.0, 1.0 - d_col * (1.0 - overlap[1]))
    return np.asarray(along_rows * along_cols)


def _locate(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], cells: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """For each cell: whether a lattice triangle holds it, the triangle's 3 point indices and barycentric weights."""
    rows, cols = x.shape
    index = np.arange(rows * cols).reshape(rows, cols)
    corners = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1).reshape(-1, 4)
    px, py = x.ravel(), y.ravel()
    qx, qy = px[corners], py[corners]
    usable = np.isfinite(qx).all(axis=1) & np.isfinite(qy).all(axis=1)
    diagonal = np.maximum(
        np.hypot(qx[:, 2] - qx[:, 0], qy[:, 2] - qy[:, 0]), np.hypot(qx[:, 3] - qx[:, 1], qy[:, 3] - qy[:, 1])
    )
    if not usable.any():
        return None
    usable &= diagonal <= 3.0 * np.median(diagonal[usable])
    candidates = np.flatnonzero(usable)
    centres = np.column_stack([qx[candidates].mean(axis=1), qy[candidates].mean(axis=1)])
    nearest = candidates[cKDTree(centres).query(cells)[1]]
    quad_row, quad_col = np.divmod(nearest, cols - 1)
    n = cells.shape[0]
    inside = np.zeros(n, dtype=bool)
    vertices = np.zeros((n, 3), dtype=np.intp)
    weights = np.zeros((n, 3))
    for dr in (0, -1, 1):
        for dc in (0, -1, 1):
            r, c = quad_row + dr, quad_col + dc
            ok = ~inside & (r >= 0) & (r < rows - 1) & (c >= 0) & (c < cols - 1)
            quad = np.where(ok, r * (cols - 1) + c, 0)
            ok &= usable[quad]
            for tri in ((0, 1, 2), (0, 2, 3)):
                verts = corners[quad][:, tri]
                w = _barycentric(px[verts], py[verts], cells)
                hit = ok & ~inside & (w >= -1e-9).all(axis=1)
                inside |= hit
                vertices[hit], weights[hit] = verts[hit], w[hit]
    return inside, vertices[inside], weights[inside]


def _barycentric(tx: np.ndarray[Any, Any], ty: np.ndarray[Any, Any], p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Barycentric weights of points ``p`` (n, 2) in triangles with corners ``tx``, ``ty`` (n, 3); -1 if degenerate."""
    v0x, v0y = tx[:, 1] - tx[:, 0], ty[:, 1] - ty[:, 0]
    v1x, v1y = tx[:, 2] - tx[:, 0], ty[:, 2] - ty[:, 0]
    v2x, v2y = p[:, 0] - tx[:, 0], p[:, 1] - ty[:, 0]
    den = v0x * v1y - v1x * v0y
    safe = np.where(den != 0, den, 1.0)
    l1 = np.where(den != 0, (v2x * v1y - v1x * v2y) / safe, -1.0)
    l2 = np.where(den != 0, (v0x * v2y - v2x * v0y) / safe, -1.0)
    return np.column_stack([1.0 - l1 - l2, l1, l2])


def _crop_to_grid(result: xr.Dataset, grid: CubeGrid, window: int, where: str) -> xr.Dataset:
    """The result's rows/columns near the grid (loaded)."""
    lon = result["longitude"].values
    lat = result["latitude"].values
    spacing_m = source_spacing_m(lon, lat)
    margin = 2.0 * max(spacing_m, grid.spacing_m)
    near = _near_grid(lon, lat, grid, margin)
    if not near.any():
        raise CubeError(
            f"{where}: no result point lies within {margin:.0f} m of the cube grid ({grid.describe()}); "
            "does the pair cover the area?"
        )
    rows = np.flatnonzero(near.any(axis=1))
    cols = np.flatnonzero(near.any(axis=0))
    pad = window // 2 + 1
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, lon.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, lon.shape[1])
    return result.isel(line=slice(r0, r1), sample=slice(c0, c1)).load()


def _near_grid(
    lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any], grid: CubeGrid, margin_m: float
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Points inside the grid's rectangle grown by ``margin_m``: a lon/lat pre-filter, then an exact map test."""
    x0, y0, x1, y1 = grid.bounds
    x0, y0, x1, y1 = x0 - margin_m, y0 - margin_m, x1 + margin_m, y1 + margin_m
    edge = np.linspace(0.0, 1.0, 64)
    ring_x = np.concatenate([x0 + (x1 - x0) * edge, np.full(64, x1), x1 - (x1 - x0) * edge, np.full(64, x0)])
    ring_y = np.concatenate([np.full(64, y0), y0 + (y1 - y0) * edge, np.full(64, y1), y1 - (y1 - y0) * edge])
    ring_lon, ring_lat = (np.asarray(a) for a in to_lonlat(grid).transform(ring_x, ring_y))
    lat_lo, lat_hi = ring_lat.min(), ring_lat.max()
    centre = np.degrees(np.angle(np.exp(1j * np.radians(ring_lon)).mean()))
    rel = _wrap180(ring_lon - centre)
    lon_lo, lon_hi = rel.min(), rel.max()
    forward = from_lonlat(grid)
    for pole in (90.0, -90.0):
        px, py = forward.transform(0.0, pole)
        if x0 <= px <= x1 and y0 <= py <= y1:  # the pole is inside: every longitude, latitude up to the pole
            lat_lo, lat_hi = min(lat_lo, pole), max(lat_hi, pole)
            lon_lo, lon_hi = -180.0, 180.0
    tol = 0.01  # degrees; the ring is sampled, not exact
    candidate = np.isfinite(lon) & np.isfinite(lat) & (lat >= lat_lo - tol) & (lat <= lat_hi + tol)
    candidate &= (_wrap180(np.where(candidate, lon, centre) - centre) >= lon_lo - tol) & (
        _wrap180(np.where(candidate, lon, centre) - centre) <= lon_hi + tol
    )
    near = np.zeros(lon.shape, dtype=bool)
    if candidate.any():
        px, py = (np.asarray(a) for a in forward.transform(lon[candidate], lat[candidate]))
        near[candidate] = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
    return near


def source_spacing_m(lon: np.ndarray[Any, Any], lat: np.ndarray[Any, Any]) -> float:
    """The larger of the median point spacings along the result's two axes, metres (local spherical approx)."""
    radius = 6_371_000.0
    spacings = []
    for axis in (0, 1):
        if lon.shape[axis] < 2:
            continue
        dlat = np.radians(np.diff(lat, axis=axis))
        mean_lat = np.radians(lat[:-1] if axis == 0 else lat[:, :-1]) + dlat / 2
        dlon = np.radians(_wrap180(np.diff(lon, axis=axis)))
        dist = radius * np.hypot(dlat, dlon * np.cos(mean_lat))
        dist = dist[np.isfinite(dist) & (dist > 0)]
        if dist.size:
            spacings.append(float(np.median(dist)))
    if not spacings:
        raise CubeError("the pair result has fewer than two points along both axes; cannot resample it")
    return max(spacings)


def _wrap180(deg: Any) -> np.ndarray[Any, Any]:
    return np.asarray((np.asarray(deg) + 180.0) % 360.0 - 180.0)


def _product_dataset(
    record: PairRecord,
    result_grid: str,
    gridded: dict[str, np.ndarray[Any, Any]],
    reasons: np.ndarray[Any, np.dtype[np.uint8]],
    grid: CubeGrid,
    config: ProductConfig,
) -> xr.Dataset:
    dims = ("y", "x")
    data: dict[str, Any] = {name: (dims, values.astype(np.float32)) for name, values in gridded.items()}
    data["v"] = (dims, np.hypot(gridded["vx"], gridded["vy"]).astype(np.float32))
    data["valid"] = (dims, (reasons == Reason.VALID).astype(np.uint8))
    data["invalid_reason"] = (dims, reasons.astype(np.uint8))
    ds = xr.Dataset(data, coords={"y": grid.y, "x": grid.x})
    for name, attrs in VARIABLES.items():
        ds[name].attrs.update(attrs)
    ds["valid"].attrs.update(
        {
            "long_name": "velocity passed every mask",
            "flag_values": np.array([0, 1], np.uint8),
            "flag_meanings": "no yes",
        }
    )
    ds["invalid_reason"].attrs.update(
        {
            "long_name": "why the cell has no velocity",
            "flag_values": np.array([r.value for r in Reason], np.uint8),
            "flag_meanings": REASON_MEANINGS,
        }
    )
    add_xy_attrs(ds)
    ds = write_mapping(ds, grid)
    ds.attrs = _product_attrs(record, result_grid, reasons, grid, config)
    return ds


def write_mapping(ds: xr.Dataset, grid: CubeGrid) -> xr.Dataset:
    """Add the CF ``mapping`` grid-mapping variable (rioxarray) with ITS_LIVE's ``spatial_epsg``/``GeoTransform``."""
    # A coordinate (not a data variable as in ITS_LIVE) so that plain open_zarr(...).rio.crs finds it.
    ds = ds.rio.write_crs(grid.crs, grid_mapping_name="mapping")
    ds["mapping"].attrs.update({"spatial_epsg": grid.epsg or 0, "GeoTransform": grid.geotransform})
    for name in ds.data_vars:
        # rioxarray puts grid_mapping in .encoding, which the Zarr writer drops: make it a plain attribute, and
        # only on the map variables.
        ds[name].encoding.pop("grid_mapping", None)
        if "y" in ds[name].dims:
            ds[name].attrs["grid_mapping"] = "mapping"
    return ds


def add_xy_attrs(ds: xr.Dataset) -> None:
    """CF attributes of the projected coordinates."""
    ds["x"].attrs.update(X_ATTRS)
    ds["y"].attrs.update(Y_ATTRS)


def _product_attrs(
    record: PairRecord,
    result_grid: str,
    reasons: np.ndarray[Any, np.dtype[np.uint8]],
    grid: CubeGrid,
    config: ProductConfig,
) -> dict[str, Any]:
    ref, sec = parse_utc(record.reference_time), parse_utc(record.secondary_time)
    masking = {
        "snr_threshold": config.snr_threshold,
        "outlier_mad_k": config.outlier_mad_k,
        "outlier_window": config.outlier_window,
        "mad_floor_px": MAD_FLOOR_PX,
        "interpolation": "linear on the point lattice's triangles; all vertices valid; no extrapolation",
    }
    record = dataclasses.replace(
        record,
        processing_parameters={**record.processing_parameters, "product": masking},
        valid_percentage=round(float((reasons == Reason.VALID).mean() * 100.0), 3),
    )
    return {
        **record.to_attrs(),
        "grid": result_grid,
        "Conventions": "CF-1.8",
        "title": f"offset-cube pair product {record.pair_id}",
        "mid_time": iso_utc(ref + (sec - ref) // 2),
        "velocity_metres": "true ground metres resolved along the grid axes (not map-scaled)",
        "software_version": offset_cube.__version__,
        "date_created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **grid.to_attrs(),
    }


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    encoding: dict[str, dict[str, Any]] = {name: {"_FillValue": np.float32(np.nan)} for name in VARIABLES}
    encoding.update({name: {"_FillValue": None} for name in ("valid", "invalid_reason")})
    return encoding
