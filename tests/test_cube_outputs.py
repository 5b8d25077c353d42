"""Outputs for people: quicklook PNGs and ``offset-cube inspect`` (table, JSON, NetCDF and GeoTIFF export)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.cube.product import read_product
from offset_cube.cube.quicklook import cube_summary, fastest_points, pair_quicklook
from offset_cube.cube.store import insert_products
from tests.cube_synth import SOUTH_AREA, make_products, south_grid


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("outputs")
    products = make_products(folder / "products", ["A", "B", "E"])
    path = folder / "cube.zarr"
    insert_products(path, list(products.values()), grid=south_grid(), area_wkt=SOUTH_AREA)
    return path, products


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_pair_quicklook_and_cube_summary_are_pngs(tmp_path: Path, cube: tuple[Path, dict[str, Path]]) -> None:
    path, products = cube
    width, height = png_size(pair_quicklook(products["A"], tmp_path / "a.png"))
    assert width > 600 and height > 500
    width, height = png_size(cube_summary(path, tmp_path / "summary.png"))
    assert width > 1000 and height > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "summary.png"]  # no temporaries left


def test_fastest_points_are_spread_out() -> None:
    median = np.zeros((50, 50))
    median[10, 10], median[11, 11], median[40, 40] = 30.0, 20.0, 10.0
    median[0, 0] = np.nan
    points = fastest_points(median, n_points=2, min_separation=5)
    assert points == [(10, 10), (40, 40)]


def test_inspect_prints_layers_dates_and_coverage(cube: tuple[Path, dict[str, Path]]) -> None:
    path, products = cube
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    pair_a = str(read_product(products["A"]).attrs["pair_id"])
    assert pair_a in result.output and "EPSG:3031" in result.output and "3 layer(s)" in result.output
    assert "100.0" in result.output  # coverage %
    listed = json.loads(CliRunner().invoke(app, ["inspect", str(path), "--json"]).output)
    assert listed["layers"][0]["pair_id"] == pair_a
    assert listed["layers"][1]["track"] == 40 and listed["layers"][0]["dt_days"] == 12.0


def test_inspect_exports_one_layer_or_the_whole_cube(tmp_path: Path, cube: tuple[Path, dict[str, Path]]) -> None:
    path, products = cube
    runner = CliRunner()
    one = tmp_path / "one.nc"
    assert runner.invoke(app, ["inspect", str(path), "--to", "netcdf", "--layer", "-1", "-o", str(one)]).exit_code == 0
    with xr.open_dataset(one) as ds:
        assert ds.sizes["mid_date"] == 1 and ds.rio.crs.to_epsg() == 3031
        assert ds["vx"].attrs["units"] == "meter/year"
        assert np.array_equal(ds["vx"].values[0], read_product(products["B"])["vx"].values, equal_nan=True)
    whole = tmp_path / "all.nc"
    assert runner.invoke(app, ["inspect", str(path), "--to", "netcdf", "-o", str(whole)]).exit_code == 0
    with xr.open_dataset(whole) as ds:
        assert ds.sizes["mid_date"] == 3 and str(ds["pair_id"].values[1]).endswith("_t040")

    pair_a = str(read_product(products["A"]).attrs["pair_id"])
    tif = tmp_path / "a.tif"
    assert (
        runner.invoke(app, ["inspect", str(path), "--to", "geotiff", "--layer", pair_a, "-o", str(tif)]).exit_code == 0
    )
    with rasterio.open(tif) as src:
        assert src.count == 9 and src.crs.to_epsg() == 3031 and src.descriptions[0] == "vx (meter/year)"  # + 3 errors
        assert src.tags()["pair_id"] == pair_a and src.transform.a == 120.0
        assert np.array_equal(src.read(1), read_product(products["A"])["vx"].values, equal_nan=True)
    folder = tmp_path / "tifs"
    assert runner.invoke(app, ["inspect", str(path), "--to", "geotiff", "-o", str(folder)]).exit_code == 0
    assert len(list(folder.glob("*.tif"))) == 3


def test_inspect_reports_bad_input_in_one_line(tmp_path: Path, cube: tuple[Path, dict[str, Path]]) -> None:
    path, _ = cube
    result = CliRunner().invoke(app, ["inspect", str(path), "--layer", "7"])
    assert result.exit_code == 2 and "layer index 7 is out of range; the cube has 3 layer(s)" in result.output
    missing = CliRunner().invoke(app, ["inspect", str(tmp_path / "none.zarr")])
    assert missing.exit_code == 2 and "there is no cube at" in missing.output


def test_quicklook_of_an_isce2_product_with_zero_speeds_warns_nothing(tmp_path: Path) -> None:
    """ISCE2's ampcor reports offsets in steps of 1/oversampling px, so still ice often measures exactly 0 px and
    its speed is exactly 0: the arrows must not divide by it (pytest turns any RuntimeWarning into an error)."""
    from offset_cube.config import ProductConfig
    from offset_cube.cube.product import make_pair_product
    from tests.cube_synth import acquisition, synthetic_result

    def isce2_half_still(ds: xr.Dataset) -> None:
        ds.attrs["engine"] = "isce2"
        for name in ("azimuth_offset", "range_offset"):
            ds[name].values[:, :45] = 0.0

    result = synthetic_result(tmp_path / "results", acquisition(0), acquisition(12), edit=isce2_half_still)
    product = make_pair_product(result, south_grid(), ProductConfig(), tmp_path / "product.zarr")
    speed = read_product(product)["v"].values
    assert (speed == 0).any() and (speed > 0).any()  # the case that divided 0 by 0
    width, _ = png_size(pair_quicklook(product, tmp_path / "still.png"))
    assert width > 600
