"""The simulated stack's true velocity on the cube grid: ``truth.zarr`` with ``vx``, ``vy``, ``v`` (m/yr).

Velocities are true metres per year resolved along the grid's x and y axes, as the cube stores them
(:mod:`offset_cube.cube.velocity`); the grid is the cube's own (:func:`offset_cube.cube.grid.grid_for_area`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from offset_cube.atomic import atomic_path
from offset_cube.cube.grid import CubeGrid, grid_for_area
from offset_cube.simulate.flow import FlowField


def truth_dataset(grid: CubeGrid, area_wkt: str, flow: FlowField) -> xr.Dataset:
    """vx, vy, v (float32, m/yr) at the cube grid's cell centres."""
    xx, yy = np.meshgrid(grid.x, grid.y)
    vx, vy = flow.velocity(xx, yy)
    ds = xr.Dataset(
        {
            "vx": (("y", "x"), vx.astype(np.float32), {"units": "m/yr", "long_name": "true velocity, x component"}),
            "vy": (("y", "x"), vy.astype(np.float32), {"units": "m/yr", "long_name": "true velocity, y component"}),
            "v": (("y", "x"), np.hypot(vx, vy).astype(np.float32), {"units": "m/yr", "long_name": "true speed"}),
        },
        coords={"x": ("x", grid.x, {"units": "m"}), "y": ("y", grid.y, {"units": "m"})},
        attrs={"area": area_wkt, "description": "true velocity of the simulated stack", **grid.to_attrs()},
    )
    with_crs: xr.Dataset = ds.rio.write_crs(grid.crs, grid_mapping_name="mapping")
    return with_crs


def write_truth(path: Path, area_wkt: str, spacing_m: float, flow: FlowField) -> Path:
    """Write the truth on the area's cube grid (automatic CRS) atomically as Zarr v3; return its path."""
    ds = truth_dataset(grid_for_area(area_wkt, "auto", spacing_m), area_wkt, flow)
    with atomic_path(path) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return path
