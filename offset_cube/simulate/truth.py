"""The simulated stack's true velocity on the cube grid: ``truth.zarr`` with ``vx``, ``vy``, ``v`` (m/yr)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from pyproj import CRS, Transformer

from offset_cube.area import parse_area
from offset_cube.atomic import atomic_path
from offset_cube.geometry.outline import outline_lon_lat
from offset_cube.simulate.flow import FlowField


def cube_crs(area_wkt: str) -> str:
    """The cube's automatic CRS for an area: polar stereographic beyond ±60°, else the centroid's UTM zone."""
    centroid = shapely.from_wkt(area_wkt).centroid
    lon, lat = float(centroid.x), float(centroid.y)
    if lat <= -60:
        return "EPSG:3031"
    if lat >= 60:
        return "EPSG:3413"
    zone = min(int((lon + 180) // 6) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone).to_string()


def cube_axes(area_wkt: str, crs: str, spacing_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre x (ascending) and y (descending) of the area's bounding box in ``crs``, snapped outward to
    multiples of the spacing."""
    lon, lat = outline_lon_lat(parse_area(area_wkt), step_deg=0.001)
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    x0, x1 = math.floor(min(x) / spacing_m) * spacing_m, math.ceil(max(x) / spacing_m) * spacing_m
    y0, y1 = math.floor(min(y) / spacing_m) * spacing_m, math.ceil(max(y) / spacing_m) * spacing_m
    xs = np.arange(x0 + spacing_m / 2, x1, spacing_m)
    ys = np.arange(y1 - spacing_m / 2, y0, -spacing_m)
    return xs, ys


def truth_dataset(area_wkt: str, crs: str, spacing_m: float, flow: FlowField) -> xr.Dataset:
    """vx, vy, v (float32, m/yr in map coordinates) at the cube grid's cell centres."""
    xs, ys = cube_axes(area_wkt, crs, spacing_m)
    xx, yy = np.meshgrid(xs, ys)
    vx, vy = flow.velocity(xx, yy)
    ds = xr.Dataset(
        {
            "vx": (("y", "x"), vx.astype(np.float32), {"units": "m/yr", "long_name": "true velocity, x component"}),
            "vy": (("y", "x"), vy.astype(np.float32), {"units": "m/yr", "long_name": "true velocity, y component"}),
            "v": (("y", "x"), np.hypot(vx, vy).astype(np.float32), {"units": "m/yr", "long_name": "true speed"}),
        },
        coords={"x": ("x", xs, {"units": "m"}), "y": ("y", ys, {"units": "m"})},
        attrs={"crs": crs, "area": area_wkt, "spacing_m": spacing_m, "description": "simulated stack truth"},
    )
    with_crs: xr.Dataset = ds.rio.write_crs(crs, grid_mapping_name="mapping")
    return with_crs


def write_truth(path: Path, area_wkt: str, crs: str, spacing_m: float, flow: FlowField) -> Path:
    """Write the truth atomically as Zarr v3; return its path."""
    ds = truth_dataset(area_wkt, crs, spacing_m, flow)
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return path
