"""Composites: periods, the weighted mean and its error, and month composites of a small cube with known truth."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.config import ProductConfig
from offset_cube.cube.composite import composite_cube, period_bounds, period_label, weighted_mean
from offset_cube.cube.product import make_pair_product
from offset_cube.cube.store import insert_products
from tests.cube_synth import SOUTH_AREA, acquisition, south_grid, synthetic_result
from tests.test_cube_product import expected_velocity
from tests.test_uncertainty import noisy

runner = CliRunner()
#: (reference day, secondary day) of 2020: a 12-day chain through January and February plus 24-day network pairs.
LAYERS = [(0, 12), (12, 24), (24, 36), (36, 48), (0, 24), (12, 36), (24, 48)]


def test_periods_and_their_labels() -> None:
    first, last = np.datetime64("2019-12-20T03:00"), np.datetime64("2020-03-02T03:00")
    months = period_bounds("month", first, last)
    assert [period_label("month", lo) for lo, _ in months] == ["2019-12", "2020-01", "2020-02", "2020-03"]
    assert months[2] == (dt.datetime(2020, 2, 1), dt.datetime(2020, 3, 1))
    seasons = period_bounds("season", first, last)
    assert [period_label("season", lo) for lo, _ in seasons] == ["2019-DJF", "2020-MAM"]
    assert seasons[0] == (dt.datetime(2019, 12, 1), dt.datetime(2020, 3, 1))
    assert period_bounds("season", np.datetime64("2020-02-10"), np.datetime64("2020-02-11"))[0][0].month == 12
    years = period_bounds("year", first, last)
    assert [period_label("year", lo) for lo, _ in years] == ["2019", "2020"]


def test_weighted_mean_weights_by_overlap_over_variance_and_widens_on_scatter() -> None:
    values = np.array([[10.0], [20.0]])
    sigma = np.array([[1.0], [2.0]])
    mean, error, count = weighted_mean(values, sigma, np.array([1.0, 1.0]))
    # weights 1 and 1/4: mean 12; propagated error 1/sqrt(1.25) = 0.894; chi2 = 4 + 16/4·... → widened
    assert float(mean[0]) == pytest.approx(12.0)
    propagated = 1 / math.sqrt(1.25)
    chi2 = (10 - 12) ** 2 / 1 + (20 - 12) ** 2 / 4
    assert float(error[0]) == pytest.approx(propagated * math.sqrt(chi2 / 1))
    assert int(count[0]) == 2
    # layers that agree within their errors keep the propagated error; half overlap halves a layer's weight
    agree, err2, _ = weighted_mean(np.array([[10.0], [10.5]]), np.array([[1.0], [1.0]]), np.array([1.0, 0.5]))
    assert float(agree[0]) == pytest.approx((10 + 0.5 * 10.5) / 1.5)
    assert float(err2[0]) == pytest.approx(math.sqrt(1 + 0.25) / 1.5)
    # NaN values or errors do not count; no layer → NaN and count 0
    none, no_err, zero = weighted_mean(np.array([[np.nan], [1.0]]), np.array([[1.0], [np.nan]]), np.ones(2))
    assert np.isnan(none[0]) and np.isnan(no_err[0]) and int(zero[0]) == 0


@pytest.fixture(scope="module")
def noisy_cube(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A cube of LAYERS (the last one left out): one uniform flow, 0.1 px of independent noise per layer."""
    folder = tmp_path_factory.mktemp("composite")
    grid = south_grid()
    products = []
    for k, (a, b) in enumerate(LAYERS):
        edit = noisy(0.1, 100 + k, scale=(b - a) / 12)  # one velocity: offsets grow with the time separation
        result = synthetic_result(folder / "results", acquisition(a), acquisition(b), edit=edit)
        products.append(make_pair_product(result, grid, ProductConfig(), folder / f"p{k}" / "product.zarr"))
    cube = folder / "cube.zarr"
    insert_products(cube, products[:-1], grid=grid, area_wkt=SOUTH_AREA)
    return cube, products


def test_month_composites_cover_the_truth_and_update_incrementally(noisy_cube: tuple[Path, list[Path]]) -> None:
    cube, products = noisy_cube
    out = cube.parent / "months.zarr"
    report = composite_cube(cube, "month", out)
    assert report.recomputed == ("2020-01", "2020-02") and report.kept == 0
    ds = xr.open_zarr(out)
    assert ds.rio.crs.to_epsg() == 3031 and ds.attrs["Conventions"] == "CF-1.8"
    assert ds["vx"].dims == ("time", "y", "x") and ds["time"].attrs["bounds"] == "time_bnds"
    assert ds["vx"].attrs["units"] == "meter/year" and "cell_methods" in ds["vx"].attrs
    grid = south_grid()
    gx, gy = np.meshgrid(grid.x, grid.y)
    true_vx, true_vy = expected_velocity(gx, gy, grid.crs)
    january = ds.isel(time=0).load()
    ok = np.isfinite(january["vx"].values)
    assert ok.mean() > 0.8
    # every layer but (36, 48) touches January; (24, 36) counts by its 7 of 12 days
    assert int(np.nanmax(january["count"].values)) == 5
    assert float(np.nanmax(january["days_covered"].values)) == 31
    for name, truth in (("vx", true_vx), ("vy", true_vy)):
        z = np.abs(january[name].values - truth)[ok] / january[f"{name}_error"].values[ok]
        assert np.mean(z <= 1.96) >= 0.9, f"{name}: {np.mean(z <= 1.96):.3f} of cells within 1.96 sigma"
    # averaging several layers beats one layer: the composite error is below a single layer's
    single = xr.open_zarr(products[0])
    assert float(np.nanmedian(january["vx_error"])) < 0.7 * float(np.nanmedian(single["vx_error_cell"]))

    again = composite_cube(cube, "month", out)
    assert again.recomputed == () and again.kept == 2
    xr.testing.assert_identical(xr.open_zarr(out)["vx"].load(), ds["vx"].load())

    insert_products(cube, products[-1:], grid=grid, area_wkt=SOUTH_AREA)  # (24, 48): January and February
    assert composite_cube(cube, "month", out).recomputed == ("2020-01", "2020-02")


def test_composite_command(noisy_cube: tuple[Path, list[Path]], tmp_path: Path) -> None:
    cube, _ = noisy_cube
    target = tmp_path / "years.zarr"
    result = runner.invoke(app, ["composite", str(cube), "--period", "year", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "1 year composite(s)" in result.output
    assert [str(v) for v in xr.open_zarr(target)["period_label"].values] == ["2020"]
    bad = runner.invoke(app, ["composite", str(cube), "--period", "week"])
    assert bad.exit_code == 2 and "week" in bad.output
    missing = runner.invoke(app, ["composite", str(tmp_path / "none.zarr"), "--period", "year"])
    assert missing.exit_code == 2 and "error: there is no cube at" in missing.output
    assert not (tmp_path / "composites-year.zarr").exists()
