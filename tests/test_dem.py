"""``dem: auto``: GLO-30 tiles fetched from a local server laid out like the public bucket, mosaicked, converted
to ellipsoid heights with the geoid grid, cached per area; failures retried and then named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from offset_cube.area import parse_area
from offset_cube.config import JobConfig
from offset_cube.cube.grid import auto_crs
from offset_cube.dem import dem_box, job_dem
from offset_cube.dem.glo30 import Box, Source, mosaic
from offset_cube.errors import DemError
from tests.fake_dem import GEOID_NAME, dem_server, geoid_heights, terrain_above_geoid, write_source

SHIRASE = "POLYGON((38.30 -70.45, 39.84 -70.45, 39.84 -69.88, 38.30 -69.88, 38.30 -70.45))"


def sample(path: Path, lat: float, lon: float) -> float:
    with rasterio.open(path) as dataset:
        row, col = dataset.index(lon, lat)
        return float(dataset.read(1)[row, col])


def source(url: str, **kwargs: float) -> Source:
    return Source(tiles_url=url, geoid_url=f"{url}/{GEOID_NAME}", retry_delay_s=0.0, **kwargs)  # type: ignore[arg-type]


def ellipsoidal(lat: float, lon: float) -> float:
    return float(terrain_above_geoid(np.array(lat), np.array(lon)) + geoid_heights(np.array(lat), np.array(lon)))


def test_four_tiles_across_a_corner_are_mosaicked_to_ellipsoid_heights(tmp_path: Path) -> None:
    box = Box(71.7, 38.6, 72.3, 39.4)  # around the corner 39°N 72°E
    ids = write_source(tmp_path / "bucket", box)
    assert ids == [
        "Copernicus_DSM_COG_10_N38_00_E071_00_DEM",
        "Copernicus_DSM_COG_10_N38_00_E072_00_DEM",
        "Copernicus_DSM_COG_10_N39_00_E071_00_DEM",
        "Copernicus_DSM_COG_10_N39_00_E072_00_DEM",
    ]
    with dem_server(tmp_path / "bucket") as (url, state):
        path = mosaic(box, source(url), tmp_path / "cache")
    assert sorted(p.split("/")[0] for p in state.tile_requests()) == ids
    with rasterio.open(path) as dataset:
        assert dataset.crs.to_epsg() == 4326
        west, south, east, north = dataset.bounds
    assert west <= box.west and south <= box.south and east >= box.east and north >= box.north
    # One point well inside each tile (on a sample of the coarse test tiles): tile height + geoid.
    for lat, lon in [(38.75, 71.8), (38.75, 72.2), (39.25, 71.8), (39.25, 72.2)]:
        assert sample(path, lat, lon) == pytest.approx(ellipsoidal(lat, lon), abs=0.05)


def test_a_missing_ocean_tile_is_filled_with_the_geoid(tmp_path: Path) -> None:
    box = Box(14.5, 35.5, 15.5, 36.5)  # south of Sicily: the index has no N35 E015 tile (sea)
    ids = write_source(tmp_path / "bucket", box)
    assert "Copernicus_DSM_COG_10_N35_00_E015_00_DEM" not in ids and len(ids) == 3
    with dem_server(tmp_path / "bucket") as (url, state):
        path = mosaic(box, source(url), tmp_path / "cache")
    assert not any("N35_00_E015" in p for p in state.requests)
    lat, lon = 35.7, 15.3
    assert sample(path, lat, lon) == pytest.approx(float(geoid_heights(np.array(lat), np.array(lon))), abs=0.05)
    assert sample(path, 36.3, 15.3) == pytest.approx(ellipsoidal(36.3, 15.3), abs=0.05)


def test_polar_area_fetches_its_four_tiles_and_a_second_run_fetches_nothing(tmp_path: Path) -> None:
    job_area = parse_area(SHIRASE)
    assert auto_crs(job_area) == "EPSG:3031"
    box = dem_box(job_area, 5_000)
    write_source(tmp_path / "bucket", box)
    with dem_server(tmp_path / "bucket") as (url, state):
        job = JobConfig.model_validate(
            {
                "area": SHIRASE,
                "start": "2020-01-01",
                "end": "2020-02-01",
                "dem": {
                    "tiles_url": url,
                    "geoid_url": f"{url}/{GEOID_NAME}",
                    "cache": str(tmp_path / "cache"),
                    "margin_m": 5_000,  # 5 km at 70°S: 0.13° of longitude, so still the four tiles below
                },
            }
        )
        first = job_dem(job)
        fetched = sorted(p.split("/")[0] for p in state.tile_requests())
        assert fetched == [
            "Copernicus_DSM_COG_10_S70_00_E038_00_DEM",
            "Copernicus_DSM_COG_10_S70_00_E039_00_DEM",
            "Copernicus_DSM_COG_10_S71_00_E038_00_DEM",
            "Copernicus_DSM_COG_10_S71_00_E039_00_DEM",
        ]
        state.requests.clear()
        second = job_dem(job)
        assert state.requests == []  # the cache answers: no tile, no geoid request
    assert first == second and first is not None
    # Tiles of two latitude bands (2″ and 3″ longitude posting) meet at 70°S.
    for lat, lon in [(-70.3, 38.6), (-69.95, 39.5)]:
        assert sample(first, lat, lon) == pytest.approx(ellipsoidal(lat, lon), abs=0.5)


def test_server_errors_are_retried_then_one_error_names_the_tile(tmp_path: Path) -> None:
    box = Box(72.2, 38.2, 72.4, 38.4)
    (tile,) = write_source(tmp_path / "bucket", box)
    with dem_server(tmp_path / "bucket") as (url, state):
        state.fail[f"{tile}/{tile}.tif"] = 503
        with pytest.raises(DemError, match=f"DEM tile {tile}.*after 3 attempt") as caught:
            mosaic(box, source(url, retries=2), tmp_path / "cache")
        assert state.tile_requests() == [f"{tile}/{tile}.tif"] * 3
        assert "HTTP 503" in str(caught.value)
        del state.fail[f"{tile}/{tile}.tif"]
        path = mosaic(box, source(url, retries=2), tmp_path / "cache")  # the next run succeeds
    assert sample(path, 38.3, 72.3) == pytest.approx(ellipsoidal(38.3, 72.3), abs=0.05)
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # nothing half-written was left
