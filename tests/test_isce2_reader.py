"""Reading topsApp's dense offsets: ISCE2's own rasters (tests/data/isce/), geocoded grids, GPU layout,
and the look geometry at geocoded points from a real reference SAFE, the same as the built-in engine's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offset_cube.area import parse_area
from offset_cube.builtin.engine import area_bounds, select_grid
from offset_cube.builtin.heights import HeightModel
from offset_cube.errors import EngineError
from offset_cube.geometry.acquisition import LookGeometry, open_date
from offset_cube.geometry.ellipsoid import ecef_to_geodetic
from offset_cube.geometry.rangedoppler import look_geometry, rdr2geo
from offset_cube.isce2.engine import reference_geometry
from offset_cube.isce2.reader import geocoded_dataset, geographic_grid, offset_files, read_offset_bands
from offset_cube.isce2.render import RenderedPair
from offset_cube.isce_raster import read_band, read_isce_header, write_isce_raster
from offset_cube.stages import PairInputs
from tests.conftest import data_path
from tests.isce2_support import BC_AREA, bc_inputs, isce2_job

ISCE = data_path("isce")


@pytest.mark.parametrize(
    ("run", "rmse_down", "rmse_across", "bias_down", "bias_across"),
    # tests/data/isce/README.md, "Measured accuracy of the ISCE runs vs truth"
    [("complex", 0.0250, 0.0311, -0.0025, 0.0019), ("mag", 0.1178, 0.1211, 0.0143, 0.0033)],
)
def test_isce_fixture_offsets_match_the_readme_accuracy(
    run: str, rmse_down: float, rmse_across: float, bias_down: float, bias_across: float
) -> None:
    truth = np.load(ISCE / "truth.npz")
    bands = read_offset_bands(offset_files(ISCE / run, geocoded=False))
    valid = bands.valid
    assert valid.sum() == 360  # one no-data window out of 361 (row 18, column 18)
    assert not valid[18, 18]
    err_down = bands.azimuth[valid] - truth["down"][valid]
    err_across = bands.range[valid] - truth["across"][valid]
    assert np.sqrt(np.mean(err_down**2)) == pytest.approx(rmse_down, abs=5e-5)
    assert np.sqrt(np.mean(err_across**2)) == pytest.approx(rmse_across, abs=5e-5)
    assert err_down.mean() == pytest.approx(bias_down, abs=5e-5)
    assert err_across.mean() == pytest.approx(bias_across, abs=5e-5)


def test_fixture_no_data_and_covariance_band_order() -> None:
    files = offset_files(ISCE / "complex", geocoded=False)
    bands = read_offset_bands(files)
    assert np.isnan(bands.snr[18, 18]) and np.isnan(bands.cov_az[18, 18])  # type: ignore[index]
    assert files.covariance is not None and not files.gpu
    # CPU covariance is across-first (ampcor r_cov): band 1 = range variance, band 2 = azimuth variance
    assert bands.cov_rg[0, 0] == read_band(files.covariance, 1)[0, 0]  # type: ignore[index]
    assert bands.cov_az[0, 0] == read_band(files.covariance, 2)[0, 0]  # type: ignore[index]
    assert bands.cov_azrg[0, 0] == read_band(files.covariance, 3)[0, 0]  # type: ignore[index]


def geo_rasters(merged: Path, gpu: bool = False) -> None:
    """Small geocoded rasters: 0.0 fill in column 0, a failed window at (1, 2)."""
    merged.mkdir(parents=True)
    geo = {"x_start": -128.0, "x_delta": 0.01, "y_start": 52.0, "y_delta": -0.005, "geographic": True}
    azimuth = np.full((3, 4), 0.5, np.float32)
    rng = np.full((3, 4), -0.25, np.float32)
    snr = np.full((3, 4), 9.0, np.float32)
    cov = [np.full((3, 4), v, np.float32) for v in (0.02, 0.01, 0.003)]  # GPU order: azimuth first
    for band in (azimuth, rng, snr, *cov):
        band[:, 0] = 0.0
    azimuth[1, 2] = rng[1, 2] = -10000.0
    snr[1, 2] = 0.0
    name = "dense_offsets.bip.geo" if gpu else "dense_offsets.bil.geo"
    write_isce_raster(merged / name, [azimuth, rng], scheme="BIP" if gpu else "BIL", **geo)  # type: ignore[arg-type]
    write_isce_raster(merged / "dense_offsets_snr.bil.geo", [snr], **geo)  # type: ignore[arg-type]
    order = cov if gpu else [cov[1], cov[0], cov[2]]
    write_isce_raster(merged / "dense_offsets_cov.bil.geo", order, scheme="BIP" if gpu else "BIL", **geo)  # type: ignore[arg-type]


@pytest.mark.parametrize("gpu", [False, True])
def test_geocoded_rasters_mask_fill_and_keep_band_order(tmp_path: Path, gpu: bool) -> None:
    geo_rasters(tmp_path / "merged", gpu)
    files = offset_files(tmp_path / "merged")
    assert files.gpu is gpu
    bands = read_offset_bands(files)
    assert np.isnan(bands.azimuth[:, 0]).all() and np.isnan(bands.snr[:, 0]).all()  # 0.0 fill outside the swath
    assert np.isnan(bands.range[1, 2]) and np.isnan(bands.cov_rg[1, 2])  # type: ignore[index]
    assert bands.azimuth[0, 1] == 0.5 and bands.range[0, 1] == -0.25
    assert bands.cov_az[0, 1] == pytest.approx(0.02) and bands.cov_rg[0, 1] == pytest.approx(0.01)  # type: ignore[index]
    assert bands.valid.sum() == 3 * 3 - 1


def test_geocoded_grid_reads_starting_values_as_sample_centres(tmp_path: Path) -> None:
    geo_rasters(tmp_path / "merged")
    lat, lon = geographic_grid(read_isce_header(tmp_path / "merged" / "dense_offsets.bil.geo"))
    assert lat == pytest.approx([52.0, 51.995, 51.99])
    assert lon == pytest.approx([-128.0, -127.99, -127.98, -127.97])


def test_missing_or_mismatched_rasters_are_errors(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="lacks dense_offsets.bil or dense_offsets.bip.geo"):
        offset_files(tmp_path)
    geo_rasters(tmp_path / "merged")
    write_isce_raster(tmp_path / "merged" / "dense_offsets_snr.bil.geo", [np.ones((2, 2), np.float32)])
    with pytest.raises(EngineError, match="is not on the grid of"):
        read_offset_bands(offset_files(tmp_path / "merged"))


def bc_rendered(inputs: PairInputs, polarization: str = "vv") -> RenderedPair:
    """What the render stage records for the BC pair (IW2 covers the area)."""
    return RenderedPair(inputs.pair.pair_id, (2,), "annotation", polarization, use_gpu=False, filtered=False)


def bc_reference_geometry(tmp_path: Path) -> LookGeometry:
    inputs = bc_inputs(isce2_job(tmp_path))
    return reference_geometry(inputs, bc_rendered(inputs))


def test_look_geometry_at_geocoded_points_from_a_real_annotation(tmp_path: Path) -> None:
    looks = bc_reference_geometry(tmp_path)
    lat, lon = np.array([[51.9, 51.95]]), np.array([[-128.0, -127.8]])
    geometry = looks.at(lat, lon)
    incidence = geometry["incidence_angle"]
    assert incidence.shape == (1, 2)
    assert 35.9 < incidence[0, 0] < incidence[0, 1] < 41.9  # IW2, incidence grows with range (east, ascending)
    assert geometry["heading"] == pytest.approx(-10.1, abs=0.2)  # S1 ascending at 52°N: ~ -10° from north
    assert geometry["azimuth_spacing"] == pytest.approx(13.9, abs=0.05)
    assert geometry["range_spacing"] == pytest.approx(2.329562)
    # West of IW2 (the geocoded grid's 0.0 fill, or IW1) the geometry is still defined: no NaN in the result.
    west = looks.at(np.array([51.8]), np.array([-128.22]), 100.0)
    assert np.isfinite(west["incidence_angle"]).all() and west["incidence_angle"][0] < incidence[0, 0]


def test_look_geometry_without_the_processed_swath_is_a_clear_error(tmp_path: Path) -> None:
    inputs = bc_inputs(isce2_job(tmp_path))
    with pytest.raises(EngineError, match="incidence and heading cannot be derived: .* has no HH data"):
        reference_geometry(inputs, bc_rendered(inputs, polarization="hh"))


@pytest.mark.parametrize("height_m", [0.0, 1250.0])
def test_isce2_look_geometry_equals_the_builtin_engines(tmp_path: Path, height_m: float) -> None:
    """At the ground points the built-in engine sees at its window centres (rdr2geo on its radar grid of the
    real BC reference SAFE), the ISCE2 engine's geometry (geo2rdr from latitude/longitude/height) is the same."""
    area = parse_area(BC_AREA)
    heights = HeightModel(height_m)
    with open_date(bc_inputs(isce2_job(tmp_path)).reference_safes, (), "VV") as ref:
        grid = select_grid(ref, "VV", area, heights, ["IW2"])
        (l0, l1), (s0, s1) = area_bounds(grid, area, heights)
    lines, samples = np.meshgrid(np.linspace(l0, l1, 4), np.linspace(s0, s1, 5), indexing="ij")
    t = grid.line_time(lines)
    points = rdr2geo(grid.orbit, t, grid.slant_range(samples), height_m)
    builtin = look_geometry(grid.orbit, t, points, grid.line_interval)
    lat, lon, h = ecef_to_geodetic(points)
    isce2 = bc_reference_geometry(tmp_path).at(lat, lon, h)
    for name in ("incidence_angle", "heading"):
        assert np.abs(isce2[name] - builtin[name]).max() < 1e-4, name  # degrees
    assert np.abs(isce2["azimuth_spacing"] - builtin["azimuth_spacing"]).max() < 1e-4  # metres
    assert np.abs(isce2["range_spacing"] - grid.range_spacing).max() < 1e-6


def test_geocoded_dataset_follows_the_result_schema(tmp_path: Path) -> None:
    from offset_cube.result import validate_pair_result

    geo_rasters(tmp_path / "merged")
    looks = bc_reference_geometry(tmp_path)
    attrs: dict[str, object] = {
        "pair_id": "p", "track": 108, "direction": "ASCENDING", "engine": "isce2", "reference_time": "a",
        "secondary_time": "b", "dt_days": 12.0, "reference_granules": "r", "secondary_granules": "s",
        "orbit_type": "POEORB", "polarization": "VV", "processing_parameters": "{}",
    }  # fmt: skip
    ds = validate_pair_result(geocoded_dataset(offset_files(tmp_path / "merged"), looks.at, attrs))
    assert ds.attrs["grid"] == "geographic"
    assert ds["latitude"].dims == ("line", "sample") and ds["latitude"][2, 0] == pytest.approx(51.99)
    assert ds["longitude"][0, 3] == pytest.approx(-127.97)
    assert int(ds["azimuth_offset"].notnull().sum()) == 8
    expected = looks.at(ds["latitude"].values, ds["longitude"].values)
    assert ds["heading"].dtype == np.float32
    assert np.allclose(ds["heading"].values, expected["heading"], atol=1e-4)
    assert np.allclose(ds["incidence_angle"].values, expected["incidence_angle"], atol=1e-4)
