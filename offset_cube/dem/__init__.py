"""The job's terrain: ``dem: auto`` (Copernicus GLO-30, fetched and cached), a user's DEM file, or ``none``.

Both engines ask :func:`job_dem` for the DEM file; with ``auto`` the first call fetches and builds the mosaic over
the area plus ``dem.margin_m`` and every later call (other pairs, later runs) finds it in the cache.
"""

from __future__ import annotations

import math
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from offset_cube.area import parse_area
from offset_cube.config import JobConfig
from offset_cube.dem.glo30 import Box, Source, mosaic

__all__ = ["Box", "auto_dem", "dem_box", "describe_dem", "job_dem"]

#: Metres per degree of latitude (mean; the margin only needs to be generous, not exact).
M_PER_DEG_LAT = 111_320.0
#: The radar footprint of an area reaches beyond it by more than a fixed margin on a large area: the built-in
#: engine tracks the area's bounding rectangle in radar coordinates, which for an area at angle θ to the track
#: reaches (|cos θ| + |sin θ| − 1)/2 of its side beyond it, at most (√2 − 1)/2 ≈ 0.21 (θ = 45°, as on polar
#: stereographic grids), plus the search range. The DEM margin is at least this fraction of the longest side.
FOOTPRINT_FRACTION = 0.25


def dem_box(area: BaseGeometry, margin_m: float) -> Box:
    """The area's bounding box grown by ``margin_m`` (at least :data:`FOOTPRINT_FRACTION` of the area's longest
    side) on every side, in degrees: past the antimeridian it runs on
    east of 180° (179.9..180.1), and when it reaches a pole it takes every longitude (:meth:`Box.normalised`)."""
    west, south, east, north = area.bounds
    nearest_equator = 0.0 if south < 0.0 < north else min(abs(south), abs(north))
    longest_m = max(north - south, (east - west) * math.cos(math.radians(nearest_equator))) * M_PER_DEG_LAT
    margin_m = max(margin_m, FOOTPRINT_FRACTION * longest_m)
    dlat = margin_m / M_PER_DEG_LAT
    widest = min(max(abs(south - dlat), abs(north + dlat)), 89.0)
    dlon = min(margin_m / (M_PER_DEG_LAT * math.cos(math.radians(widest))), 180.0)
    return Box(west - dlon, south - dlat, east + dlon, north + dlat).normalised()


def job_dem(job: JobConfig) -> Path | None:
    """The DEM file both engines use (ellipsoidal heights), or None for ``dem: none``."""
    if job.dem.source == "none":
        return None
    if job.dem.path is not None:
        return job.dem.path
    return auto_dem(job, dem_box(parse_area(job.area), job.dem.margin_m))


def auto_dem(job: JobConfig, box: Box) -> Path:
    """The ``dem: auto`` mosaic over ``box`` from the job's GLO-30 source, through the job's DEM cache."""
    source = Source(
        tiles_url=job.dem.tiles_url,
        geoid_url=job.dem.geoid_url,
        retries=job.dem.retries,
        retry_delay_s=job.dem.retry_delay_s,
        timeout_s=job.dem.timeout_s,
    )
    return mosaic(box, source, job.dem_cache_dir)


def describe_dem(job: JobConfig) -> str:
    """How the job's heights are chosen, for processing parameters and logs."""
    if job.dem.source == "none":
        return f"none (constant {job.dem.height_m:g} m above the WGS84 ellipsoid)"
    if job.dem.source == "auto":
        return f"auto (Copernicus GLO-30 from {job.dem.tiles_url}, EGM2008 to WGS84 ellipsoid)"
    return f"file {job.dem.source}"
