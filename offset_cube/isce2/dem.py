"""The DEM topsApp gets: an ISCE raster used as is, or a GeoTIFF converted once into an ISCE raster.

topsApp needs an ISCE raster with its ``.xml`` beside it, on a geographic lat/lon grid, heights above the WGS84
ellipsoid (or EGM96, which it converts), whose ``file_name`` is absolute because ISCE opens the data through
the path stored in the header (as ASFHyP3/hyp3-isce2 stages its DEM: ISCE format, ``reference`` WGS84).
A GeoTIFF in a projected CRS (REMA's polar stereographic) is warped to EPSG:4326; its heights are taken as
given, so a user's Copernicus GLO-30 tile (EGM2008) must be converted to ellipsoid heights first, which
``dem: auto`` does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lxml import etree

from offset_cube.atomic import read_json, write_text_atomic
from offset_cube.errors import ConfigError
from offset_cube.geometry.ellipsoid import wrap_longitude
from offset_cube.isce2.xml import Box
from offset_cube.isce_raster import IsceRasterError, read_band, read_isce_header, write_isce_raster

log = logging.getLogger(__name__)

#: Value written where a GeoTIFF DEM has no data; geozero treats heights below -1500 m as bad (ISCE2 ``geozero.f90``).
DEM_FILL = -32768.0
BAD_HEIGHT_M = -1500.0
#: tan 60°: steeper height differences between neighbouring DEM samples are edges or no-data, not terrain.
MAX_SLOPE = 1.732
ELLIPSOID_NOTE = (
    "topsApp expects heights above the WGS84 ellipsoid; the GeoTIFF's heights were taken as given "
    "(convert geoid heights such as Copernicus GLO-30's EGM2008 first, or use `dem: auto`)"
)
#: SRTM, which topsApp downloads when no DEM is given, covers 56°S to 60°N only (ISCE2 ``TopsProc/runVerifyDEM.py``).
SRTM_SOUTH, SRTM_NORTH = -56.0, 60.0


@dataclass(frozen=True)
class DemExtent:
    """Latitude/longitude span of a DEM's samples (sample centres), in degrees."""

    south: float
    north: float
    west: float
    east: float

    def covers(self, box: Box, tolerance: float = 0.0) -> bool:
        south, north, west, east = box
        return (
            self.south - tolerance <= south
            and self.north + tolerance >= north
            and self.west - tolerance <= west
            and self.east + tolerance >= east
        )

    def describe(self) -> str:
        return f"S {self.south:.4f} N {self.north:.4f} W {self.west:.4f} E {self.east:.4f}"


def prepare_dem(path: Path, cache_dir: Path, ellipsoidal: bool = False) -> Path:
    """The ISCE raster to give topsApp for ``path``: itself when it has an ISCE ``.xml``, else a converted copy.

    A converted copy lives in ``cache_dir`` and is reused while the source's size and modification time are
    unchanged. ``ellipsoidal``: the heights are known to be ellipsoidal (the automatic DEM), so no warning.
    Raises :class:`ConfigError` naming the file and what would be valid.
    """
    path = path.expanduser().absolute()
    if path.suffix == ".xml":
        path = path.with_suffix("")
    if path.with_name(path.name + ".xml").is_file():
        dem_extent(path)  # validates the header
        return path
    if not path.exists():
        raise ConfigError(f"DEM {path} does not exist (give an ISCE DEM with its .xml, or a GeoTIFF)")
    return _converted_geotiff(path, cache_dir, ellipsoidal)


def dem_extent(path: Path) -> DemExtent:
    """Span of an ISCE DEM's samples from its header (coordinate1 = longitude, coordinate2 = latitude)."""
    try:
        header = read_isce_header(path)
    except IsceRasterError as err:
        raise ConfigError(f"DEM {path}: {err}") from err
    if header.bands != 1:
        raise ConfigError(f"DEM {path} has {header.bands} bands; a DEM has one")
    x_end = header.x_start + header.x_delta * (header.width - 1)
    y_end = header.y_start + header.y_delta * (header.length - 1)
    extent = DemExtent(
        south=min(header.y_start, y_end),
        north=max(header.y_start, y_end),
        west=min(header.x_start, x_end),
        east=max(header.x_start, x_end),
    )
    if not (-90 <= extent.south < extent.north <= 90 and -180 <= extent.west < extent.east <= 360):
        raise ConfigError(
            f"DEM {path} spans {extent.describe()}, which is not a latitude/longitude grid; topsApp needs a "
            "geographic (EPSG:4326) DEM"
        )
    return extent


def dem_heights(path: Path, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """Heights of an ISCE DEM at latitude/longitude (bilinear between sample centres), 0 m where it has none.

    Heights are taken as the DEM gives them: an EGM96 DEM (which topsApp converts) gives geoid heights, tens of
    metres off, which moves the look geometry by thousandths of a degree. Points the DEM does not reach, or
    where it holds no data (below -1500 m, as geozero judges), carry no offsets; they get the ellipsoid.
    """
    from scipy.ndimage import map_coordinates

    header = read_isce_header(path)
    lat = np.asarray(latitude, dtype=np.float64)
    row = (lat - header.y_start) / header.y_delta
    west = header.x_start - abs(header.x_delta) / 2  # a DEM across the antimeridian runs past 180°
    col = (wrap_longitude(np.asarray(longitude, dtype=np.float64), west) - header.x_start) / header.x_delta
    inside = (row >= -0.5) & (row <= header.length - 0.5) & (col >= -0.5) & (col <= header.width - 0.5)
    heights = np.zeros(lat.shape)
    if not inside.any():
        return heights
    r0, c0 = max(int(np.floor(row[inside].min())), 0), max(int(np.floor(col[inside].min())), 0)
    r1 = min(int(np.ceil(row[inside].max())) + 1, header.length)
    c1 = min(int(np.ceil(col[inside].max())) + 1, header.width)
    window = np.array(read_band(path, 1)[r0:r1, c0:c1], dtype=np.float64)
    window[~(window >= BAD_HEIGHT_M)] = np.nan
    values = map_coordinates(window, [row[inside] - r0, col[inside] - c0], order=1, mode="nearest")
    heights[inside] = np.where(np.isfinite(values), values, 0.0)
    return heights


def dem_slopes(path: Path, latitude: np.ndarray, longitude: np.ndarray, step_m: float = 30.0) -> tuple[np.ndarray, ...]:
    """The terrain gradient (∂h/∂E, ∂h/∂N, m/m) of an ISCE DEM by central differences ``step_m`` apart; 0 where a
    difference reaches beyond the DEM or its no-data (a jump steeper than 60° is taken for that)."""
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    d_lat = np.degrees(step_m / 6_371_000.0)
    d_lon = d_lat / np.cos(np.radians(lat))
    east = (dem_heights(path, lat, lon + d_lon) - dem_heights(path, lat, lon - d_lon)) / (2 * step_m)
    north = (dem_heights(path, lat + d_lat, lon) - dem_heights(path, lat - d_lat, lon)) / (2 * step_m)
    broken = (np.abs(east) > MAX_SLOPE) | (np.abs(north) > MAX_SLOPE)
    return np.where(broken, 0.0, east), np.where(broken, 0.0, north)


def check_dem_covers(path: Path, box: Box, what: str) -> None:
    """Raise unless the DEM spans ``box`` (S, N, W, E) to within half a sample."""
    header = read_isce_header(path)
    extent = dem_extent(path)
    tolerance = max(abs(header.x_delta), abs(header.y_delta)) / 2
    if not extent.covers(box, tolerance):
        south, north, west, east = box
        raise ConfigError(
            f"DEM {path} spans {extent.describe()} but the {what} needs S {south:.4f} N {north:.4f} "
            f"W {west:.4f} E {east:.4f}; give a DEM covering it (topsApp needs every processed burst covered)"
        )


def check_srtm_reach(box: Box) -> None:
    """Without a DEM topsApp downloads SRTM; refuse areas SRTM does not cover."""
    south, north, _west, _east = box
    if south < SRTM_SOUTH or north > SRTM_NORTH:
        reach = south if south < SRTM_SOUTH else north
        raise ConfigError(
            f"dem: none and the area reaches latitude {reach:.2f}; topsApp's own SRTM download covers "
            f"{SRTM_SOUTH:g}° to {SRTM_NORTH:g}° only. Use `dem: auto` (Copernicus GLO-30) or give a DEM file."
        )


def _converted_geotiff(source: Path, cache_dir: Path, ellipsoidal: bool) -> Path:
    """Convert a geographic GeoTIFF (or any GDAL raster) into ``cache_dir/<stem>.dem`` (+ .xml, .vrt)."""
    target = cache_dir.expanduser().absolute() / f"{source.stem}.dem"
    stamp = target.with_name(target.name + ".source.json")
    stat = source.stat()
    identity = {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if target.is_file() and stamp.is_file() and read_json(stamp) == identity:
        return target
    heights, x_start, x_delta, y_start, y_delta = _read_geographic(source)
    write_isce_raster(
        target,
        [heights],
        data_type="float",
        scheme="BIP",
        x_start=x_start,
        x_delta=x_delta,
        y_start=y_start,
        y_delta=y_delta,
        geographic=True,
        image_type="dem",
    )
    _finish_dem_header(target)
    write_text_atomic(stamp, json.dumps(identity, indent=2) + "\n")
    if ellipsoidal:
        log.info("DEM %s converted to ISCE raster %s", source, target)
    else:
        log.warning("DEM %s converted to ISCE raster %s; %s", source, target, ELLIPSOID_NOTE)
    return target


def _read_geographic(source: Path) -> tuple[np.ndarray, float, float, float, float]:
    """Heights and the first sample centre/spacing of the raster on a north-up geographic grid (a raster in a
    projected CRS, e.g. REMA's polar stereographic, is warped to EPSG:4326 at its own resolution first)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(source) as dataset:
            crs, nodata = dataset.crs, dataset.nodata
            if crs is None:
                raise ConfigError(f"DEM {source} has no CRS; give a georeferenced GeoTIFF")
            if crs.is_geographic and dataset.transform.b == 0 and dataset.transform.d == 0:
                heights = dataset.read(1, masked=True).astype(np.float32)
                transform = dataset.transform
            else:
                heights, transform = _warped_to_geographic(dataset)
                nodata = None
            if transform.e >= 0:
                raise ConfigError(f"DEM {source} is not north-up ({transform}); warp it to EPSG:4326")
    except RasterioIOError as err:
        raise ConfigError(f"DEM {source} is neither an ISCE raster (no .xml beside it) nor readable by GDAL") from err
    data = heights.filled(DEM_FILL) if np.ma.isMaskedArray(heights) else np.asarray(heights)
    data = np.where(np.isfinite(data), data, DEM_FILL).astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        data[data == np.float32(nodata)] = DEM_FILL
    # GDAL's transform gives the outer corner; ISCE's starting value is the first sample's centre.
    return data, transform.c + transform.a / 2, transform.a, transform.f + transform.e / 2, transform.e


def _warped_to_geographic(dataset: Any) -> tuple[np.ndarray, Any]:
    """The dataset's first band warped (bilinear) onto an EPSG:4326 grid; no-data becomes NaN."""
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    geographic = CRS.from_epsg(4326)
    transform, width, height = calculate_default_transform(
        dataset.crs, geographic, dataset.width, dataset.height, *dataset.bounds
    )
    out = np.full((height, width), np.nan, dtype=np.float32)
    reproject(
        dataset.read(1).astype(np.float32),
        out,
        src_transform=dataset.transform,
        src_crs=dataset.crs,
        src_nodata=dataset.nodata,
        dst_transform=transform,
        dst_crs=geographic,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out, transform


def _finish_dem_header(target: Path) -> None:
    """Make ``file_name`` absolute and declare the WGS84 height reference, as topsApp's DEM loader needs."""
    xml_path = target.with_name(target.name + ".xml")
    root = etree.parse(str(xml_path)).getroot()
    for prop in root.findall("property"):
        if prop.get("name") == "file_name":
            value = prop.find("value")
            if value is not None:
                value.text = str(target)
    node = etree.SubElement(root, "property", name="reference")
    etree.SubElement(node, "value").text = "WGS84"
    etree.SubElement(node, "doc").text = "Geodetic datum"
    etree.indent(root, space="    ")
    write_text_atomic(xml_path, etree.tostring(root, encoding="unicode") + "\n")
