"""Composites: periods, the weighted mean and its error, and month composites of a small cube with known truth."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.config import ProductConfig
from offset_cube.cube.composite import (
    composite_cube,
    period_bounds,
    period_label,
    shared_image_correlation,
    weighted_mean,
)
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
    # half overlap halves a layer's weight; layers that agree better than their errors say share the part of
    # their error that does not show: it stays (f = χ²/(n−1) of the variance averages down, the rest does not)
    agree, err2, _ = weighted_mean(np.array([[10.0], [10.5]]), np.array([[1.0], [1.0]]), np.array([1.0, 0.5]))
    centre = (10 + 0.5 * 10.5) / 1.5
    assert float(agree[0]) == pytest.approx(centre)
    f = (10 - centre) ** 2 + (10.5 - centre) ** 2
    assert float(err2[0]) == pytest.approx(math.sqrt(f * (1 + 0.25) / 1.5**2 + (1 - f) * 1.0))
    # exactly as much scatter as the errors say: the independent-errors formula
    v = 1 / math.sqrt(2)
    _, err3, _ = weighted_mean(np.array([[10.0 - v], [10.0 + v]]), np.ones((2, 1)), np.ones(2))
    assert float(err3[0]) == pytest.approx(math.sqrt(0.5))
    # NaN values or errors do not count; no layer → NaN and count 0
    none, no_err, zero = weighted_mean(np.array([[np.nan], [1.0]]), np.array([[1.0], [np.nan]]), np.ones(2))
    assert np.isnan(none[0]) and np.isnan(no_err[0]) and int(zero[0]) == 0


def test_errors_shared_by_the_layers_do_not_average_out() -> None:
    """Six layers of 2000 cells whose error (σ = 10) is mostly common to all of them (a time-invariant error of 9,
    as where the tracker smooths a shear margin the same way in every pair) plus 4.4 of independent noise: the
    composite's 95 % interval holds the truth for >= 90 % of the cells; the independent-errors formula
    (σ/√6 = 4.1) would hold it for about half."""
    rng = np.random.default_rng(3)
    common = rng.normal(0.0, 9.0, 2000)
    values = common[None, :] + rng.normal(0.0, math.sqrt(100 - 81), (6, 2000))
    mean, error, count = weighted_mean(values, np.full((6, 2000), 10.0), np.ones(6))
    covered = np.mean(np.abs(mean) <= 1.96 * error)
    assert covered >= 0.9 and np.all(count == 6)
    assert np.mean(np.abs(mean) <= 1.96 * 10 / math.sqrt(6)) < 0.7


#: A network of 8 dates 12 days apart (days): each date paired with the next two.
NETWORK = [(d, d + step) for d in range(0, 84, 12) for step in (12, 24) if d + step <= 84]


def _days(pairs: list[tuple[int, int]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    start = np.datetime64("2020-01-01T00:00", "us")
    day = np.timedelta64(1, "D")
    return np.array([start + a * day for a, _ in pairs]), np.array([start + b * day for _, b in pairs])


def _network_layers(cells: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Velocity of NETWORK's layers on ``cells`` cells: a slow flow common to all (0-30 m/yr, as the slow ice a
    stable set without a mask takes in) plus an error e_b − e_a + n: each image's own part e (σ 1) enters with
    opposite signs as first and as second image, n (σ 1) is the pair's. Layers that share an image in the same role
    correlate +1/3, in opposite roles −1/3, the others 0. Returns the values and the true covariance (layers²)."""
    rng = np.random.default_rng(seed)
    flow = np.linspace(0.0, 30.0, cells)
    image = {d: rng.normal(0.0, 1.0, cells) for d in range(0, 85, 12)}
    values = np.stack([flow + image[b] - image[a] + rng.normal(0.0, 1.0, cells) for a, b in NETWORK])
    index = {pair: k for k, pair in enumerate(NETWORK)}
    cov = np.eye(len(NETWORK)) * 3.0
    for (a, b), i in index.items():
        for (c, d), j in index.items():
            if i != j:
                cov[i, j] = (a == c) + (b == d) - (a == d) - (b == c)
    return values, cov


def test_correlation_of_layers_sharing_an_image_is_estimated_from_their_stable_cells() -> None:
    values, cov = _network_layers(4000, seed=5)
    t1, t2 = _days(NETWORK)
    rho = shared_image_correlation(values, np.ones(values.shape, dtype=bool), t1, t2)
    truth = cov / 3.0
    off = ~np.eye(len(NETWORK), dtype=bool)
    same = (truth > 0.2) & off
    cross = truth < -0.2
    assert same.sum() > 0 and cross.sum() > 0  # both classes occur
    assert np.all(np.abs(rho[same] - 1 / 3) < 0.08) and np.all(np.abs(rho[cross] + 1 / 3) < 0.08)
    unrelated = (np.abs(truth) < 0.1) & off
    assert np.all(rho[unrelated] == 0.0)
    # too few common stable cells: no estimate, the layers count as independent
    few = np.zeros(values.shape, dtype=bool)
    few[:, :20] = True
    assert np.array_equal(shared_image_correlation(values, few, t1, t2), np.eye(len(NETWORK)))
    # consecutive pairs: no two layers without a common image to compare against, so none either
    chain = [(0, 12), (12, 24), (24, 36)]
    c1, c2 = _days(chain)
    assert np.array_equal(shared_image_correlation(values[[0, 2, 4]], np.ones((3, 4000), bool), c1, c2), np.eye(3))


def test_correlated_layers_give_the_variance_of_their_weighted_mean() -> None:
    """Draws (cells) of NETWORK's errors with unequal σ. An image's part enters its two kinds of pairs with opposite
    signs, so much of it cancels in the weighted mean: the mean's spread is below what independent errors would
    give. The error with the layers' correlation (true or estimated from the layers) follows that, its 95 %
    interval still holds the truth for 94-99.5 % of the draws (the formula keeps a cautious share, see
    weighted_mean); taken as independent the error is larger."""
    values, cov = _network_layers(20000, seed=7)
    errors = values - np.linspace(0.0, 30.0, values.shape[1])
    scale = np.linspace(1.0, 2.0, len(NETWORK))[:, None]
    errors *= scale
    sigma = np.broadcast_to(np.sqrt(3.0) * scale, errors.shape)
    t1, t2 = _days(NETWORK)
    rho = cov / 3.0
    w = 1 / sigma[:, 0] ** 2 / np.sum(1 / sigma[:, 0] ** 2)
    spread = math.sqrt(float(w @ (rho * np.outer(sigma[:, 0], sigma[:, 0])) @ w))
    independent_spread = math.sqrt(float(np.sum(w**2 * sigma[:, 0] ** 2)))
    _, independent, _ = weighted_mean(errors, sigma, np.ones(len(NETWORK)))
    estimated = shared_image_correlation(errors, np.ones(errors.shape, dtype=bool), t1, t2)
    for matrix in (rho, estimated):
        mean, error, _ = weighted_mean(errors, sigma, np.ones(len(NETWORK)), matrix)
        assert float(np.std(mean)) == pytest.approx(spread, rel=0.03) and spread < 0.8 * independent_spread
        assert 0.94 <= float(np.mean(np.abs(mean) <= 1.96 * error)) <= 0.995
        assert float(np.median(error)) < 0.95 * float(np.median(independent))


def test_scatter_as_large_as_correlated_errors_give_keeps_the_propagated_error() -> None:
    """Two layers (σ 1, equal weights) whose errors correlate ρ: their mean's variance is (1 + ρ)/2 and their
    expected χ² about it (1 − ρ); a scatter of exactly that (values ±d, 2d² = 1 − ρ) gives that variance."""
    for rho in (0.5, -0.3):
        d = math.sqrt((1 - rho) / 2)
        matrix = np.array([[1.0, rho], [rho, 1.0]])
        _, error, _ = weighted_mean(np.array([[-d], [d]]), np.ones((2, 1)), np.ones(2), matrix)
        assert float(error[0]) ** 2 == pytest.approx((1 + rho) / 2)


def test_layers_without_a_common_image_keep_the_independent_result() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(0.0, 2.0, (4, 500))
    sigma = rng.uniform(1.0, 3.0, (4, 500))
    values[1, :50] = np.nan
    overlap = np.array([1.0, 0.5, 1.0, 0.25])
    plain = weighted_mean(values, sigma, overlap)
    pairs = [(0, 12), (24, 36), (48, 60), (72, 84)]
    t1, t2 = _days(pairs)
    rho = shared_image_correlation(values, np.ones(values.shape, dtype=bool), t1, t2)
    assert np.array_equal(rho, np.eye(4))
    for old, new in zip(plain, weighted_mean(values, sigma, overlap, rho), strict=True):
        np.testing.assert_allclose(new, old, rtol=1e-12, equal_nan=True)


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
