"""Write a GLO-30 tile source laid out like the public bucket, and an EGM2008-like geoid grid.

Used by the demo (it serves the simulator's DEM to the run through ``dem: auto``) and by the tests of the fetch
path. A tile is ``<folder>/<id>/<id>.tif``: a cloud-optimised GeoTIFF of heights above the geoid, 1° square,
sample centres on multiples of the posting from the tile's north-west corner (pixel-is-point, as GLO-30).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from offset_cube.dem.glo30 import LAT_STEP_DEG, Box, Tile, lon_step_deg, write_heights

_TILE_ID = re.compile(r"_(?P<ns>[NS])(?P<lat>\d{2})_00_(?P<ew>[EW])(?P<lon>\d{3})_00_")
#: Heights above the geoid at (latitude, longitude) sample centres (2-D arrays, degrees) → metres.
HeightField = Callable[[np.ndarray, np.ndarray], np.ndarray]


def tile_south_west(tile: Tile) -> tuple[int, int]:
    """The integer latitude and longitude of the tile's south-west corner, from its id."""
    match = _TILE_ID.search(tile.tile_id)
    if match is None:
        raise ValueError(f"{tile.tile_id!r} is not a GLO-30 tile id")
    lat = int(match["lat"]) * (1 if match["ns"] == "N" else -1)
    lon = int(match["lon"]) * (1 if match["ew"] == "E" else -1)
    return lat, lon


def tile_centres(tile: Tile, coarsen: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centre latitudes (north to south) and longitudes (west to east) of the tile's grid.

    ``coarsen`` > 1 takes every n-th posting (smaller tiles for fast tests; the layout and format are unchanged).
    """
    lat0, lon0 = tile_south_west(tile)
    dy = LAT_STEP_DEG * coarsen
    dx = lon_step_deg(lat0 + 0.5) * coarsen
    rows, cols = round(1.0 / dy), round(1.0 / dx)
    return lat0 + 1.0 - dy * np.arange(rows), lon0 + dx * np.arange(cols)


def write_tile(folder: Path, tile: Tile, heights: HeightField, coarsen: int = 1) -> Path:
    """Write ``tile`` under ``folder`` as the public bucket holds it; heights come from ``heights(lat, lon)``."""
    lats, lons = tile_centres(tile, coarsen)
    data = np.empty((lats.size, lons.size), dtype=np.float32)
    for start in range(0, lats.size, 400):  # bounded memory for full 3600 x 3600 tiles
        lat, lon = np.meshgrid(lats[start : start + 400], lons, indexing="ij")
        data[start : start + lat.shape[0]] = heights(lat, lon)
    dx, dy = float(lons[1] - lons[0]), float(lats[0] - lats[1])
    return write_cog(folder / tile.relative_path, data, float(lons[0]) - dx / 2, float(lats[0]) + dy / 2, dx, dy)


def write_geoid(path: Path, box: Box, undulation: HeightField, step_deg: float = 1.0 / 60.0) -> Path:
    """A geoid grid (metres above the ellipsoid) over ``box`` on a ``step_deg`` lattice (EGM2008's grid is 1′)."""
    lats = np.arange(np.ceil(box.north / step_deg) + 1, np.floor(box.south / step_deg) - 2, -1) * step_deg
    lons = np.arange(np.floor(box.west / step_deg) - 1, np.ceil(box.east / step_deg) + 2) * step_deg
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    data = np.asarray(undulation(lat, lon), dtype=np.float32)
    return write_cog(path, data, float(lons[0]) - step_deg / 2, float(lats[0]) + step_deg / 2, step_deg, step_deg)


def write_cog(path: Path, data: np.ndarray, west: float, north: float, dx: float, dy: float) -> Path:
    """A float32 EPSG:4326 cloud-optimised GeoTIFF whose outer corner is (west, north)."""
    from affine import Affine

    return write_heights(path, data, Affine(dx, 0.0, west, 0.0, -dy, north), cog=True)
