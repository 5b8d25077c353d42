"""Per-layer errors: stable-surface shift and spread, the per-cell error map, and how a product carries them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from scipy.spatial import cKDTree

from offset_cube.config import ProductConfig
from offset_cube.cube.grid import from_lonlat
from offset_cube.cube.product import make_pair_product, read_product
from offset_cube.cube.uncertainty import (
    MIN_STABLE_CELLS,
    SEED_QUANTILE,
    StableSurface,
    cell_errors,
    local_scatter,
    speed_error,
    stable_surface,
)
from offset_cube.errors import ConfigError
from tests.cube_synth import acquisition, south_grid, synthetic_result
from tests.test_cube_product import expected_velocity

SIGMA = (12.0, 30.0)  # m/yr; anisotropic like S1 (range and azimuth precision differ)
SHIFT = (3.0, -5.0)


def glacier_layer(stable_fraction: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 100x100 layer: the first rows flow at 50-800 m/yr, the rest is rock; noise SIGMA, a residual SHIFT."""
    rng = np.random.default_rng(seed)
    shape = (100, 100)
    moving = np.zeros(shape, dtype=bool)
    moving[: int(100 * (1 - stable_fraction))] = True
    vx = np.where(moving, rng.uniform(50, 800, shape), 0.0) + rng.normal(SHIFT[0], SIGMA[0], shape)
    vy = np.where(moving, rng.uniform(-300, 300, shape), 0.0) + rng.normal(SHIFT[1], SIGMA[1], shape)
    return vx, vy, ~moving


@pytest.mark.parametrize("stable_fraction", [0.3, 0.5, 0.8])
def test_shift_and_errors_come_out_of_the_layer_itself(stable_fraction: float) -> None:
    vx, vy, rock = glacier_layer(stable_fraction)
    stable = stable_surface(vx, vy)
    assert stable.vx_error == pytest.approx(SIGMA[0], rel=0.06)
    assert stable.vy_error == pytest.approx(SIGMA[1], rel=0.06)
    assert stable.vx_shift == pytest.approx(SHIFT[0], abs=1.5) and stable.vy_shift == pytest.approx(SHIFT[1], abs=2)
    assert stable.flag == 2 and stable.usable
    # nearly all rock is found (±3σ keeps 99.5 % of it), and only the slowest ice joins it
    assert stable.cells[rock].mean() > 0.98
    assert stable.count < rock.sum() + 0.05 * (~rock).sum()


def test_the_slowest_quartile_alone_would_underestimate_the_error() -> None:
    """Why the clipping iteration exists: the slowest cells are those where the noise happened to be small."""
    vx, vy, _ = glacier_layer(0.5)
    speed = np.hypot(vx, vy)
    slowest = speed <= np.quantile(speed, SEED_QUANTILE)
    naive = math.sqrt(float(np.mean((vy[slowest] - np.median(vy[slowest])) ** 2)))
    assert naive < 0.7 * SIGMA[1]
    assert stable_surface(vx, vy).vy_error == pytest.approx(SIGMA[1], rel=0.06)


def test_a_stable_ground_mask_chooses_the_cells() -> None:
    vx, vy, rock = glacier_layer(0.5)
    stable = stable_surface(vx, vy, mask=rock)
    assert stable.flag == 1
    assert not stable.cells[~rock].any()
    assert stable.vx_error == pytest.approx(SIGMA[0], rel=0.06)


def test_too_few_stable_cells_give_no_error_and_no_shift() -> None:
    vx = np.full((3, 3), 5.0)
    vx[0, 0] = np.nan
    stable = stable_surface(vx, vx)
    assert stable.count == 8 < MIN_STABLE_CELLS and not stable.usable
    assert math.isnan(stable.vx_error) and stable.vx_shift == 0.0
    assert math.isnan(stable.attrs()["vy_error"])


def test_speed_error_is_the_component_errors_along_the_flow() -> None:
    ex, ey = np.array(12.0), np.array(30.0)
    assert float(speed_error(100.0, 0.0, ex, ey)) == pytest.approx(12.0)
    assert float(speed_error(0.0, -100.0, ex, ey)) == pytest.approx(30.0)
    assert float(speed_error(100.0, 100.0, ex, ey)) == pytest.approx(math.hypot(12, 30) / math.sqrt(2))
    assert float(speed_error(0.0, 0.0, ex, ey)) == pytest.approx(math.sqrt((144 + 900) / 2))


def test_cell_errors_take_the_larger_of_the_tracker_and_the_local_scatter() -> None:
    """Per cell: the larger of the covariance σ and the local scatter where either is known; the layer's scalar
    errors where neither is (the stable ground does not rescale the map)."""
    cells = np.zeros((20, 20), dtype=bool)
    cells[10:] = True
    stable = StableSurface(0.0, 0.0, 10.0, 20.0, int(cells.sum()), 2, cells)
    sigma = np.full((20, 20), 3.0)
    scatter = np.full((20, 20), 2.0)
    scatter[:, :5] = 7.0  # e.g. a shear margin: the neighbours disagree more than the covariance says
    sigma[0, 0] = np.nan
    scatter[1, 1] = np.nan
    sigma[2, 2] = scatter[2, 2] = np.nan
    ex, ey = cell_errors(stable, sigma, 2 * sigma, scatter, scatter)
    assert ex[5, 10] == 3.0 and ey[5, 10] == 6.0
    assert ex[5, 2] == 7.0 and ey[5, 2] == 7.0
    assert ex[0, 0] == 7.0 and ex[1, 1] == 3.0  # one estimate missing: the other
    assert ex[2, 2] == 10.0 and ey[2, 2] == 20.0  # neither: the layer's errors
    plain_x, plain_y = cell_errors(stable)
    assert np.all(plain_x == 10.0) and np.all(plain_y == 20.0)


def test_local_scatter_sees_noise_and_blunders_but_not_gradients() -> None:
    """On a steep linear ramp plus white noise σ the scatter gives σ back (a point minus the mean of its four
    independent neighbours has σ·√(1 + 1/4)), whatever the ramp; a cluster of false peaks raises it around the
    cluster; too few valid neighbours give NaN."""
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:60, 0:60]
    ramp = 40.0 * rows + 25.0 * cols  # 40 m/yr per point: far above the noise
    field = ramp + rng.normal(0.0, 4.0, ramp.shape)
    valid = np.ones(ramp.shape, dtype=bool)
    scatter = local_scatter(field, valid)
    inner = scatter[5:-5, 5:-5]
    assert float(np.median(inner)) == pytest.approx(4.0, rel=0.1)
    blunders = field.copy()
    blunders[30:33, 30:33] += rng.uniform(-300, 300, (3, 3))
    assert float(local_scatter(blunders, valid)[31, 31]) > 20 * 4.0
    sparse = np.zeros(ramp.shape, dtype=bool)
    sparse[::7, ::7] = True
    assert np.isnan(local_scatter(field, sparse)).all()


def noisy(sigma_px: float, seed: int, scale: float = 1.0) -> object:
    """Edit for :func:`synthetic_result`: offsets ``scale`` × (1, 0.5) px plus noise, and their covariance."""

    def edit(ds: xr.Dataset) -> None:
        rng = np.random.default_rng(seed)
        shape = ds["azimuth_offset"].shape
        ds["azimuth_offset"][:] = (1.0 * scale + rng.normal(0, sigma_px, shape)).astype(np.float32)
        ds["range_offset"][:] = (0.5 * scale + rng.normal(0, sigma_px, shape)).astype(np.float32)
        ds["cov_az"] = (("line", "sample"), np.full(shape, 0.01, np.float32))
        ds["cov_rg"] = (("line", "sample"), np.full(shape, 0.01, np.float32))
        ds["cov_azrg"] = (("line", "sample"), np.zeros(shape, np.float32))

    return edit


def test_product_errors_match_the_true_error_of_the_layer(tmp_path: Path) -> None:
    """Offsets with 0.1 px noise everywhere (a whole area moving at one speed): the reported vx/vy_error equal the
    true RMS errors of the product's cells within 15 %, the RMS of v_error is within x1.5 of it (not below); no
    shift is applied without a
    mask (the motion is real), and the error variables are on the product."""
    grid = south_grid()
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), edit=noisy(0.1, 7))
    ds = read_product(make_pair_product(result, grid, ProductConfig(), tmp_path / "p.zarr")).load()
    gx, gy = np.meshgrid(grid.x, grid.y)
    true_vx, true_vy = expected_velocity(gx, gy, grid.crs)
    ok = ds["valid"].values.astype(bool)
    assert ok.mean() > 0.8
    rms_x = math.sqrt(float(np.mean((ds["vx"].values - true_vx)[ok] ** 2)))
    rms_y = math.sqrt(float(np.mean((ds["vy"].values - true_vy)[ok] ** 2)))
    rms_v = math.sqrt(float(np.mean((ds["v"].values - np.hypot(true_vx, true_vy))[ok] ** 2)))
    assert ds.attrs["vx_error"] == pytest.approx(rms_x, rel=0.15)
    assert ds.attrs["vy_error"] == pytest.approx(rms_y, rel=0.15)
    # the per-cell map is interpolated like the velocity, not reduced for the averaging that interpolation does
    # between independent points (real windows overlap, and their errors correlate): cautious, within x1.5
    assert 1.0 <= math.sqrt(float(np.mean(ds["v_error"].values[ok] ** 2))) / rms_v <= 1.5
    assert ds.attrs["stable_shift_flag"] == 0 and ds.attrs["stable_count"] > 0.8 * ok.sum()
    for name in ("v_error", "vx_error_cell", "vy_error_cell"):
        assert ds[name].attrs["units"] == "meter/year"
        assert np.isnan(ds[name].values[~np.isfinite(ds["vx"].values)]).all()


def overlapping(seed: int, skip: list[int], *, record: bool = True) -> object:
    """Edit for :func:`synthetic_result`: 0.1 px of noise whose neighbours correlate as 64 x 16 windows every
    ``skip`` pixels overlap (every 32 x 8: each point's noise is half the sum of a 2 x 2 block of white noise, so
    row and column neighbours correlate 0.5, diagonal ones 0.25; every 64 x 16: white), its covariance, and the
    engine's window and (with ``record``) skip."""

    def edit(ds: xr.Dataset) -> None:
        rng = np.random.default_rng(seed)
        shape = ds["azimuth_offset"].shape
        for name, value in (("azimuth_offset", 1.0), ("range_offset", 0.5)):
            if skip == [32, 8]:
                white = rng.normal(0, 0.1, (shape[0] + 1, shape[1] + 1))
                noise = (white[:-1, :-1] + white[1:, :-1] + white[:-1, 1:] + white[1:, 1:]) / 2
            else:
                noise = rng.normal(0, 0.1, shape)
            ds[name][:] = (value + noise).astype(np.float32)
        for name, var in (("cov_az", 0.01), ("cov_rg", 0.01), ("cov_azrg", 0.0)):
            ds[name] = (("line", "sample"), np.full(shape, var, np.float32))
        params = {"window": [64, 16], **({"skip": skip} if record else {})}
        ds.attrs["processing_parameters"] = json.dumps(params)

    return edit


@pytest.mark.parametrize("skip", [[32, 8], [64, 16]])
def test_cell_errors_are_the_errors_of_the_interpolated_values(tmp_path: Path, skip: list[int]) -> None:
    """A cell's value is a weighted sum of three points: its error is that sum's, with the points' errors
    correlated as their windows overlap (50 % overlapped or disjoint windows). The per-cell errors then equal the
    true RMS errors of the cells within 12 %; a result that does not say its skip keeps the cautious linear
    interpolation of the errors (as if fully correlated), which overstates them here by more than 10 %."""
    grid = south_grid()
    gx, gy = np.meshgrid(grid.x, grid.y)
    true_vx, true_vy = expected_velocity(gx, gy, grid.crs)
    ratios = {}
    for known in (True, False):  # the same offsets, with and without the skip in the record
        folder = tmp_path / str(known)
        result = synthetic_result(folder, acquisition(0), acquisition(12), edit=overlapping(3, skip, record=known))
        ds = read_product(make_pair_product(result, grid, ProductConfig(), folder / "p.zarr")).load()
        ok = ds["valid"].values.astype(bool)
        assert ok.mean() > 0.8
        ratios[str(known)] = [
            math.sqrt(float(np.mean(ds[f"{c}_error_cell"].values[ok] ** 2)))
            / math.sqrt(float(np.mean((ds[c].values - truth)[ok] ** 2)))
            for c, truth in (("vx", true_vx), ("vy", true_vy))
        ]
    assert all(abs(r - 1) < 0.12 for r in ratios["True"]), ratios
    assert all(r > 1.1 for r in ratios["False"]), ratios


def strained(seed: int) -> object:
    """Edit for :func:`synthetic_result`: 0.05 px of noise, 0.4 px in a band of rows (a shear margin, where strain
    decorrelates the speckle), and a covariance that knows only the 0.05 px."""

    def edit(ds: xr.Dataset) -> None:
        rng = np.random.default_rng(seed)
        shape = ds["azimuth_offset"].shape
        noise = np.full(shape, 0.05)
        noise[30:50] = 0.4
        ds["azimuth_offset"][:] = (1.0 + rng.normal(0, 1, shape) * noise).astype(np.float32)
        ds["range_offset"][:] = (0.5 + rng.normal(0, 1, shape) * noise).astype(np.float32)
        ds["cov_az"] = (("line", "sample"), np.full(shape, 0.05**2, np.float32))
        ds["cov_rg"] = (("line", "sample"), np.full(shape, 0.05**2, np.float32))
        ds["cov_azrg"] = (("line", "sample"), np.zeros(shape, np.float32))

    return edit


def test_errors_grow_where_the_tracker_is_worse_than_its_covariance(tmp_path: Path) -> None:
    """Regression test of the error model (bench/errors_bench.py checks it on a simulated glacier): in a band
    whose offsets are 8x noisier than the covariance says, and outside it, the RMS of the reported v_error is
    within a factor 1.5 of the true RMS error of v; a covariance-only or stable-ground-scaled map would be ~8x
    too small in the band or too large outside it."""
    grid = south_grid()
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), edit=strained(11))
    ds = read_product(make_pair_product(result, grid, ProductConfig(), tmp_path / "p.zarr")).load()
    gx, gy = np.meshgrid(grid.x, grid.y)
    true_vx, true_vy = expected_velocity(gx, gy, grid.crs)
    lattice = xr.open_zarr(result, consolidated=False)
    px, py = from_lonlat(grid).transform(lattice["longitude"].values, lattice["latitude"].values)
    nearest = cKDTree(np.column_stack([np.ravel(px), np.ravel(py)])).query(np.column_stack([gx.ravel(), gy.ravel()]))
    row = (nearest[1] // lattice.sizes["sample"]).reshape(gx.shape)  # the lattice row each cell lies on
    inside = (row >= 33) & (row < 47)  # away from the band's edges
    outside = (row < 24) | (row >= 56)
    ok = ds["valid"].values.astype(bool)
    error_v = ds["v"].values - np.hypot(true_vx, true_vy)
    for where in (inside, outside):
        cells = ok & where
        assert cells.sum() > 100
        ratio = math.sqrt(float(np.mean(ds["v_error"].values[cells] ** 2))) / math.sqrt(
            float(np.mean(error_v[cells] ** 2))
        )
        assert 1 / 1.5 <= ratio <= 1.5, ratio


def test_a_stable_mask_applies_the_shift(tmp_path: Path) -> None:
    """A GeoTIFF marking the whole area as stable ground: the shift is measured there and removed (flag 1)."""
    grid = south_grid()
    tif = tmp_path / "stable.tif"
    s = grid.spacing_m
    transform = Affine(s, 0.0, grid.x_min - 10 * s, 0.0, -s, grid.y_max + 10 * s)  # a larger raster of ones
    profile = {"driver": "GTiff", "width": grid.nx + 20, "height": grid.ny + 20, "count": 1, "dtype": "uint8"}
    with rasterio.open(tif, "w", crs=grid.crs, transform=transform, **profile) as dst:
        dst.write(np.ones((1, grid.ny + 20, grid.nx + 20), np.uint8))
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), edit=noisy(0.1, 8))
    config = ProductConfig(stable_mask=tif)
    ds = read_product(make_pair_product(result, grid, config, tmp_path / "p.zarr")).load()
    assert ds.attrs["stable_shift_flag"] == 1
    assert abs(ds.attrs["vx_stable_shift"]) > 100  # the area's motion, measured as a shift
    assert abs(float(np.nanmedian(ds["vx"].values))) < 1.0
    with pytest.raises(ValueError, match="stable_mask .* is not a file"):
        ProductConfig(stable_mask=tmp_path / "missing.tif")


def test_a_job_names_a_missing_stable_mask_in_one_line(tmp_path: Path) -> None:
    from offset_cube.config import load_job

    with pytest.raises(ConfigError, match=r"product.stable_mask: stable_mask '.*nowhere.tif' is not a file"):
        load_job(
            None,
            {"area": "POLYGON((0 0,1 0,1 1,0 1,0 0))", "start": "2020-01-01", "product.stable_mask": "nowhere.tif"},
        )


def test_a_cube_from_before_the_error_maps_takes_new_layers(tmp_path: Path) -> None:
    """A cube written before the per-cell errors existed (no v_error/vx_error_cell/vy_error_cell arrays) gets
    them on its next insert: NaN for the old layers, the new layer's values for the new one."""
    import shutil

    from offset_cube.cube.integrity import record_path
    from offset_cube.cube.store import insert_products
    from offset_cube.cube.versions import current_version
    from offset_cube.cube.zarrio import consolidate
    from tests.cube_synth import SOUTH_AREA

    grid = south_grid()
    first = make_pair_product(
        synthetic_result(tmp_path / "r", acquisition(0), acquisition(12), edit=noisy(0.1, 1)),
        grid,
        ProductConfig(),
        tmp_path / "a" / "product.zarr",
    )
    cube = tmp_path / "cube.zarr"
    insert_products(cube, [first], grid=grid, area_wkt=SOUTH_AREA)
    version = current_version(cube)
    assert version is not None
    for name in ("v_error", "vx_error_cell", "vy_error_cell"):
        shutil.rmtree(version / name)
    consolidate(version)
    record_path(version).unlink()  # such a cube predates the integrity records too (same release)
    assert "v_error" not in xr.open_zarr(cube)
    second = make_pair_product(
        synthetic_result(tmp_path / "r", acquisition(12), acquisition(24), edit=noisy(0.1, 2)),
        grid,
        ProductConfig(),
        tmp_path / "b" / "product.zarr",
    )
    insert_products(cube, [second], grid=grid, area_wkt=SOUTH_AREA)
    ds = xr.open_zarr(cube).load()
    assert ds.sizes["mid_date"] == 2
    assert np.isnan(ds["v_error"].values[0]).all()
    assert np.isfinite(ds["v_error"].values[1]).mean() > 0.8
    assert np.array_equal(ds["vx"].values[0], read_product(first)["vx"].values, equal_nan=True)
