"""Per-pair product: synthetic engine results (offsets.zarr schema) → velocity on the cube grid with masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from offset_cube.config import ProductConfig
from offset_cube.cube.grid import to_lonlat
from offset_cube.cube.product import Reason, make_pair_product, product_path, read_product
from offset_cube.cube.velocity import offsets_to_velocity
from offset_cube.errors import CubeError
from tests.cube_synth import acquisition, south_grid, synthetic_result


def expected_velocity(
    grid_x: np.ndarray, grid_y: np.ndarray, crs: str, heading: float = -25.8
) -> tuple[np.ndarray, ...]:
    lon, lat = to_lonlat(south_grid()).transform(grid_x, grid_y)
    v = offsets_to_velocity(
        1.0,
        0.5,
        azimuth_spacing_m=13.93,
        range_spacing_m=2.329562,
        incidence_deg=39.0,
        heading_deg=heading,
        longitude=lon,
        latitude=lat,
        dt_days=12.0,
        crs=crs,
    )
    return v.vx, v.vy


def test_uniform_offsets_give_the_converted_velocity_everywhere(tmp_path: Path) -> None:
    grid = south_grid()
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12))
    out = make_pair_product(result, grid, ProductConfig(), product_path(tmp_path, result.parent.name))
    assert out == tmp_path / "20200101_20200113_t012" / "product.zarr"
    assert not any(p.name.startswith(".tmp-") for p in out.parent.iterdir())
    ds = read_product(out).load()
    assert ds.rio.crs.to_epsg() == 3031
    assert ds["vx"].dims == ("y", "x") and ds["vx"].shape == grid.shape
    assert ds["vx"].attrs["units"] == "meter/year" and ds["vx"].dtype == np.float32
    assert int(ds["valid"].sum()) == grid.nx * grid.ny and ds.attrs["valid_percentage"] == 100.0
    gx, gy = np.meshgrid(grid.x, grid.y)
    vx, vy = expected_velocity(gx, gy, grid.crs)
    # linear interpolation of a field that varies only through the slowly turning grid convergence
    assert ds["vx"].values == pytest.approx(vx, rel=1e-4)
    assert ds["vy"].values == pytest.approx(vy, rel=1e-4)
    assert ds["v"].values == pytest.approx(np.hypot(vx, vy), rel=1e-4)
    assert ds["azimuth_offset"].values == pytest.approx(1.0) and ds["snr"].values == pytest.approx(12.0)
    # convergence at ~100°E makes vx, vy differ strongly from east, north (east ≈ -vx·cos(100°)...)
    assert abs(float(ds["vx"].mean())) > 3 * abs(float(ds["vy"].mean()))
    assert ds.attrs["mid_time"] == "2020-01-07T03:12:00.000000Z"


def _damaged(ds: xr.Dataset) -> None:
    rows, cols = ds.sizes["line"], ds.sizes["sample"]
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    ds["snr"][:] = np.where(r < 30, 2.0, 12.0).astype(np.float32)  # a low-SNR band
    ds["azimuth_offset"][:] = np.where((r >= 60) & (c < 30), np.nan, 1.0).astype(np.float32)  # a gap
    ds["range_offset"][45, 60] = 1.5  # one blunder, 1 px off its neighbours


def test_masks_record_why_cells_have_no_velocity(tmp_path: Path) -> None:
    grid = south_grid()
    clean = make_pair_product(
        synthetic_result(tmp_path / "a", acquisition(0), acquisition(12)),
        grid,
        ProductConfig(),
        tmp_path / "clean.zarr",
    )
    result = synthetic_result(tmp_path / "b", acquisition(0), acquisition(12), edit=_damaged)
    ds = read_product(make_pair_product(result, grid, ProductConfig(), tmp_path / "p.zarr")).load()
    reasons = ds["invalid_reason"].values
    counts = {r: int((reasons == r).sum()) for r in Reason}
    assert counts[Reason.LOW_SNR] > 100 and counts[Reason.NO_MEASUREMENT] > 100 and 0 < counts[Reason.OUTLIER] < 20
    valid = ds["valid"].values == 1
    assert np.array_equal(valid, reasons == Reason.VALID)
    assert np.array_equal(np.isfinite(ds["vx"].values), valid)  # masked cells hold NaN, never a filled value
    assert ds["vx"].values[valid] == pytest.approx(read_product(clean)["vx"].values[valid], rel=1e-6)
    # what was measured stays visible where the velocity is masked
    low_snr = reasons == Reason.LOW_SNR
    assert np.all(np.isfinite(ds["azimuth_offset"].values[low_snr]))
    assert np.median(ds["snr"].values[low_snr]) == pytest.approx(2.0)  # edge cells interpolate towards 12
    assert ds.attrs["valid_percentage"] == pytest.approx(100.0 * valid.mean(), abs=1e-3)
    assert '"snr_threshold": 4.0' in ds.attrs["processing_parameters"]


def test_outlier_threshold_is_configurable(tmp_path: Path) -> None:
    grid = south_grid()
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), edit=_damaged)
    strict = read_product(make_pair_product(result, grid, ProductConfig(), tmp_path / "strict.zarr"))
    lax = read_product(make_pair_product(result, grid, ProductConfig(outlier_mad_k=90.0), tmp_path / "lax.zarr"))
    outliers = lambda ds: int((ds["invalid_reason"].values == Reason.OUTLIER).sum())  # noqa: E731
    assert outliers(strict) > 0 and outliers(lax) == 0


def test_cells_beyond_the_swath_are_empty_not_extrapolated(tmp_path: Path) -> None:
    grid = south_grid()
    # a lattice covering only the western part of the area (centre shifted 3 km west, 4 km wide)
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), centre=(99.92, -70.0), size=(90, 40))
    ds = read_product(make_pair_product(result, grid, ProductConfig(), tmp_path / "p.zarr"))
    valid = ds["valid"].values == 1
    assert 0.1 < valid.mean() < 0.7
    assert np.all(ds["invalid_reason"].values[~valid] == Reason.NO_MEASUREMENT)
    assert np.all(np.isnan(ds["azimuth_offset"].values[~valid]))


def test_a_result_away_from_the_area_is_refused(tmp_path: Path) -> None:
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), centre=(110.0, -72.0))
    with pytest.raises(CubeError, match="no result point lies within"):
        make_pair_product(result, south_grid(), ProductConfig(), tmp_path / "p.zarr")
    assert not (tmp_path / "p.zarr").exists()
