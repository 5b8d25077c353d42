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
from tests.fake_dem import (
    GEOID_NAME,
    dem_server,
    geoid_heights,
    terrain_above_geoid,
    write_global_geoid,
    write_source,
)

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


def test_polar_area_fetches_its_tiles_and_a_second_run_fetches_nothing(tmp_path: Path) -> None:
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
                    # The area is 63 x 59 km: its radar footprint margin (a quarter of 63 km, 15.9 km = 0.42° of
                    # longitude at 70°S) outgrows the job's 5 km, so the box spans E037-E040 on both rows.
                    "margin_m": 5_000,
                },
            }
        )
        first = job_dem(job)
        fetched = sorted(p.split("/")[0] for p in state.tile_requests())
        assert fetched == [
            f"Copernicus_DSM_COG_10_{lat}_00_E0{lon}_00_DEM" for lat in ("S70", "S71") for lon in range(37, 41)
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


def test_an_area_at_the_antimeridian_gets_the_tiles_on_both_sides(tmp_path: Path) -> None:
    """Chukotka at 180°: the area's DEM box runs past 180°, so the tiles east of it (W180) join those west of it
    (E179) in one continuous mosaic; the geoid is read round the global grid; the engine's height model finds
    points given at -179.9° in it."""
    from offset_cube.builtin.heights import HeightModel

    area = "POLYGON((179.80 65.70, 179.97 65.70, 179.97 65.90, 179.80 65.90, 179.80 65.70))"
    box = dem_box(parse_area(area), 10_000)
    assert box.crosses_antimeridian and box.west < 180 < box.east < 181
    mirrored = dem_box(parse_area(area.replace("179.", "-179.")), 10_000)  # west of 180°: the same one frame
    assert mirrored.crosses_antimeridian and 179 < mirrored.west < 180 < mirrored.east
    ids = write_source(tmp_path / "bucket", box, geoid=False)
    assert ids == [
        "Copernicus_DSM_COG_10_N65_00_E179_00_DEM",
        "Copernicus_DSM_COG_10_N65_00_W180_00_DEM",
    ]
    write_global_geoid(tmp_path / "bucket" / GEOID_NAME, 65.0, 67.0)
    with dem_server(tmp_path / "bucket") as (url, state):
        job = JobConfig.model_validate(
            {
                "area": area,
                "start": "2020-01-01",
                "end": "2020-02-01",
                "dem": {"tiles_url": url, "geoid_url": f"{url}/{GEOID_NAME}", "cache": str(tmp_path / "cache")},
            }
        )
        path = job_dem(job)
    assert path is not None and sorted(p.split("/")[0] for p in state.tile_requests()) == ids
    with rasterio.open(path) as dataset:
        west, _, east, _ = dataset.bounds
    assert west < 179.8 and east > 180.1
    for lat, lon in [(65.8, 179.9), (65.8, -179.9), (65.75, -179.85)]:
        assert sample(path, lat, lon % 360) == pytest.approx(ellipsoidal(lat, lon), abs=0.5)
    model = HeightModel(dem=path)
    lat, lon = np.array([65.8, 65.8]), np.array([179.9, -179.9])
    assert model(lat, lon) == pytest.approx([ellipsoidal(*p) for p in zip(lat, lon, strict=True)], abs=0.5)


@pytest.mark.slow  # the 360 tiles round the pole
def test_a_box_reaching_a_pole_takes_every_longitude(tmp_path: Path) -> None:
    """20 km from the South Pole the DEM box reaches it: it takes every longitude (the 360 S90 tiles), the mosaic
    goes all the way round with no seam at 180°, and the geoid's polar row serves beyond -90°."""
    from offset_cube.builtin.heights import HeightModel

    area = parse_area("POLYGON((10 -89.85, 30 -89.85, 30 -89.80, 10 -89.80, 10 -89.85))")
    box = dem_box(area, 20_000)
    assert box.all_longitudes and (box.west, box.south, box.east) == (-180.0, -90.0, 180.0)
    ids = write_source(tmp_path / "bucket", box, geoid=False)
    assert len(ids) == 360 and all("_S90_00_" in i for i in ids)
    write_global_geoid(tmp_path / "bucket" / GEOID_NAME, -90.0, -89.0)
    with dem_server(tmp_path / "bucket") as (url, state):
        path = mosaic(box, source(url), tmp_path / "cache")
    assert sorted(p.split("/")[0] for p in state.tile_requests()) == ids
    with rasterio.open(path) as dataset:
        west, south, east, north = dataset.bounds
    assert west < -179.99 and east > 179.9 and south < -89.999 and north > box.north
    model = HeightModel(dem=path)
    lat = np.array([-89.9, -89.9, -89.9, -89.75])
    lon = np.array([20.0, 179.95, -179.99, -100.0])  # the test terrain jumps at 180°: no sample across it
    assert model(lat, lon) == pytest.approx([ellipsoidal(*p) for p in zip(lat, lon, strict=True)], abs=1.0)


def test_an_area_across_the_antimeridian_or_round_a_pole_is_one_clear_error() -> None:
    from offset_cube.area import AreaError

    for wkt in (
        "POLYGON((179.8 -70, -179.8 -70, -179.8 -69.5, 179.8 -69.5, 179.8 -70))",
        "POLYGON((0 -88, 90 -88, 180 -88, -90 -88, 0 -88))",
    ):
        with pytest.raises(AreaError, match=r"crosses the antimeridian \(±180°\) or contains a pole is not supported"):
            parse_area(wkt)


def test_a_large_area_gets_a_margin_that_covers_its_radar_footprint() -> None:
    """A 64 km area's radar crop reaches ~11 km beyond it (up to 0.21 of the side at 45° to the track): the box
    grows by a quarter of the longest side (16 km), not the job's 10 km; a small area keeps the job's margin."""
    from offset_cube.dem import M_PER_DEG_LAT

    def grown_km(area: str, margin_m: float) -> float:
        shape = parse_area(area)
        return (shape.bounds[1] - dem_box(shape, margin_m).south) * M_PER_DEG_LAT / 1000

    large = "POLYGON((20 -70.3, 21.68 -70.3, 21.68 -69.72, 20 -69.72, 20 -70.3))"  # ~64 x 64 km
    assert 15.9 < grown_km(large, 10_000) < 16.3
    assert grown_km(large, 30_000) == pytest.approx(30.0)
    small = "POLYGON((20 -70.05, 20.26 -70.05, 20.26 -69.96, 20 -69.96, 20 -70.05))"  # ~10 x 10 km
    assert grown_km(small, 10_000) == pytest.approx(10.0)
