"""DEM preparation for topsApp: ISCE rasters as is, GeoTIFFs converted once, coverage checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lxml import etree

from offset_cube.errors import ConfigError
from offset_cube.isce2.dem import DEM_FILL, check_dem_covers, check_srtm_reach, dem_extent, dem_heights, prepare_dem
from offset_cube.isce_raster import read_band, read_isce_header, write_isce_raster
from tests.isce2_support import write_isce_dem


def write_geotiff(path: Path, crs: str = "EPSG:4326", nodata: float | None = -9999.0) -> Path:
    import rasterio
    from affine import Affine

    heights = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    heights[0, 0] = -9999.0
    transform = Affine(0.05, 0.0, -128.6, 0.0, -0.05, 52.4)  # outer corner, 0.05° pixels
    with rasterio.open(
        path, "w", driver="GTiff", width=30, height=20, count=1, dtype="float32", crs=crs, transform=transform,
        nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(heights, 1)
    return path


def test_geotiff_is_converted_to_an_isce_dem_with_centre_origin(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "dem.tif")
    dem = prepare_dem(source, tmp_path / "cache")
    assert dem == tmp_path / "cache" / "dem.dem"
    header = read_isce_header(dem)
    # first sample centre = corner + half a pixel; latitude decreases down the rows
    assert header.x_start == pytest.approx(-128.575) and header.y_start == pytest.approx(52.375)
    assert (header.x_delta, header.y_delta) == pytest.approx((0.05, -0.05))
    heights = np.array(read_band(dem, 1))
    assert heights[0, 0] == -32768.0 and heights[0, 1] == 1.0  # no-data → below geozero's -1500 m "bad" limit
    props = {p.get("name"): p.findtext("value") for p in etree.parse(f"{dem}.xml").getroot().findall("property")}
    assert props["file_name"] == str(dem)  # ISCE opens the DEM through this path: absolute
    assert props["reference"] == "WGS84"
    assert props["image_type"] == "dem"


def test_conversion_is_reused_until_the_source_changes(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "dem.tif")
    first = prepare_dem(source, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert prepare_dem(source, tmp_path / "cache").stat().st_mtime_ns == stamp
    write_geotiff(source, nodata=None)
    prepare_dem(source, tmp_path / "cache")
    assert np.array(read_band(first, 1))[0, 0] == -9999.0  # re-converted: the new file has no no-data value


def test_isce_dem_is_used_as_is(tmp_path: Path) -> None:
    dem = write_isce_dem(tmp_path / "bc.dem")
    assert prepare_dem(dem, tmp_path / "cache") == dem
    assert prepare_dem(Path(f"{dem}.xml"), tmp_path / "cache") == dem
    assert not (tmp_path / "cache").exists()
    extent = dem_extent(dem)
    assert (extent.south, extent.north, extent.west, extent.east) == pytest.approx((51.5, 52.4, -128.6, -127.3))


def test_coverage_and_input_errors(tmp_path: Path) -> None:
    dem = write_isce_dem(tmp_path / "bc.dem")
    check_dem_covers(dem, (51.8, 52.1, -128.2, -127.7), "region of interest")
    with pytest.raises(ConfigError, match=r"spans S 51\.5000 .* but the region of interest needs S 51\.0000"):
        check_dem_covers(dem, (51.0, 52.1, -128.2, -127.7), "region of interest")
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_dem(tmp_path / "missing.tif", tmp_path / "cache")
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(ConfigError, match="neither an ISCE raster"):
        prepare_dem(tmp_path / "junk.tif", tmp_path / "cache")


def test_projected_geotiff_is_warped_to_latitude_longitude(tmp_path: Path) -> None:
    """A REMA-like polar stereographic DEM (EPSG:3031, 200 m posting near Shirase) becomes a geographic ISCE DEM
    whose heights at a point equal the source's there."""
    import rasterio
    from affine import Affine
    from pyproj import Transformer

    x0, y0 = 900_000.0, 1_900_000.0
    rows, cols = np.mgrid[0:50, 0:60]
    heights = (100.0 + 2.0 * rows + 1.0 * cols).astype(np.float32)  # a smooth tilted plane
    source = tmp_path / "rema.tif"
    with rasterio.open(
        source, "w", driver="GTiff", width=60, height=50, count=1, dtype="float32", crs="EPSG:3031",
        transform=Affine(200.0, 0.0, x0, 0.0, -200.0, y0), nodata=-9999.0,
    ) as dst:  # fmt: skip
        dst.write(heights, 1)
    dem = prepare_dem(source, tmp_path / "cache")
    header = read_isce_header(dem)
    assert -90 < header.y_start < -60 and header.y_delta < 0 < header.x_delta
    x, y = x0 + 200.0 * 30.5, y0 - 200.0 * 25.5  # centre of source pixel (25, 30)
    lon, lat = Transformer.from_crs("EPSG:3031", "EPSG:4326", always_xy=True).transform(x, y)
    value = dem_heights(dem, np.array([lat]), np.array([lon]))[0]
    assert value == pytest.approx(100.0 + 2.0 * 25 + 30, abs=1.0)


def test_srtm_reach() -> None:
    check_srtm_reach((51.8, 52.1, -128.2, -127.7))
    with pytest.raises(ConfigError, match=r"reaches latitude -70\.50.*Use `dem: auto`"):
        check_srtm_reach((-70.5, -69.7, 38.0, 39.7))


def test_dem_heights_are_bilinear_between_sample_centres(tmp_path: Path) -> None:
    """Heights 10·row + column on a grid whose starting values are first sample centres; fill and outside → 0."""
    heights = (10.0 * np.arange(4)[:, None] + np.arange(5)[None, :]).astype(np.int16)
    heights[3, 4] = int(DEM_FILL)
    dem = write_isce_raster(
        tmp_path / "ramp.dem", [heights], data_type="short", scheme="BIP",
        x_start=10.0, x_delta=0.1, y_start=50.0, y_delta=-0.1, geographic=True,
    )  # fmt: skip
    lat = np.array([50.0, 49.9, 49.85, 49.75, 49.7, 51.0])
    lon = np.array([10.0, 10.2, 10.25, 10.05, 10.4, 10.0])
    # (row, col) = (0, 0), (1, 2), (1.5, 2.5), (2.5, 0.5), (3, 4) the fill, and a point far north of the DEM
    assert dem_heights(dem, lat, lon) == pytest.approx([0.0, 12.0, 17.5, 25.5, 0.0, 0.0])
    assert dem_heights(dem, lat.reshape(2, 3), lon.reshape(2, 3)).shape == (2, 3)


def test_the_builtin_engine_reads_an_isce_dem_as_the_isce2_engine_does(tmp_path: Path) -> None:
    """`dem: PATH` with an ISCE raster: the built-in engine's heights and slopes equal the ramp's; a point the DEM
    does not cover is an error naming it."""
    from offset_cube.builtin.heights import HeightModel
    from offset_cube.errors import EngineError

    heights = (10.0 * np.arange(40)[:, None] + np.arange(50)[None, :]).astype(np.float32)
    dem = write_isce_raster(
        tmp_path / "ramp.dem", [heights], scheme="BIP",
        x_start=10.0, x_delta=0.01, y_start=50.0, y_delta=-0.01, geographic=True,
    )  # fmt: skip
    lat, lon = np.array([49.9, 49.85, 49.75]), np.array([10.2, 10.25, 10.05])
    model = HeightModel(dem=dem)
    assert model(lat, lon) == pytest.approx(dem_heights(dem, lat, lon), abs=1e-6)
    east, north = model.slopes(lat, lon)
    metres_per_degree = 6_371_000.0 * np.pi / 180
    assert east == pytest.approx(1.0 / (0.01 * metres_per_degree * np.cos(np.radians(lat))), rel=1e-3)
    assert north == pytest.approx(-10.0 / (0.01 * metres_per_degree), rel=1e-3)
    with pytest.raises(EngineError, match=r"ramp\.dem does not cover 1 point"):
        model(np.array([51.0]), np.array([10.0]))
