"""The simulated ground's relief: a valley whose walls rise ≥ 1 500 m above a glacier flowing down its floor.

Heights are above the WGS84 ellipsoid, defined in map coordinates of the cube's CRS and sampled at geographic
points through :class:`Terrain`. The walls are smooth (a smoothstep across ``wall_width_m``) and no steeper than
~31°, so from Sentinel-1's 30-46° incidence no slope lays over or hides in shadow. The simulator writes the
terrain it used as a GeoTIFF (``dem.tif``), which the demo serves to the run as GLO-30 tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import Transformer

from offset_cube.dem.glo30 import Box, write_heights
from offset_cube.simulate.flow import ValleyGlacier


@dataclass(frozen=True)
class ValleyRelief:
    """Valley relief around a :class:`ValleyGlacier`'s centreline, in map coordinates (m).

    The floor (the ice surface) sits at ``floor_m`` at the glacier's origin and drops ``floor_slope`` metres per
    metre downstream; from ``wall_start_m`` off the centreline the walls rise by ``wall_height_m`` over
    ``wall_width_m``, then level off.
    """

    glacier: ValleyGlacier
    floor_m: float
    floor_slope: float = 0.02
    wall_start_m: float = 1700.0
    wall_width_m: float = 5000.0
    wall_height_m: float = 2000.0

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, d, _, _ = self.glacier.frame(x, y)
        t = np.clip((np.abs(d) - self.wall_start_m) / self.wall_width_m, 0.0, 1.0)
        walls = self.wall_height_m * t * t * (3.0 - 2.0 * t)
        return np.asarray(self.floor_m - self.floor_slope * u + walls)


@dataclass(frozen=True)
class FlatRelief:
    """A constant ellipsoidal height."""

    floor_m: float

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.full(np.broadcast_shapes(np.shape(x), np.shape(y)), self.floor_m)


class Terrain:
    """Ellipsoidal height at geographic points: a relief defined on the map grid of ``crs``."""

    def __init__(self, relief: ValleyRelief | FlatRelief, crs: str) -> None:
        self.relief = relief
        self.crs = crs
        self._to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)

    @property
    def is_flat(self) -> bool:
        return isinstance(self.relief, FlatRelief)

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        if self.is_flat:
            return np.full(lat.shape, self.relief.floor_m)
        x, y = self._to_map.transform(np.asarray(lon, dtype=np.float64), lat)
        return self.relief.height(np.asarray(x), np.asarray(y))

    def write_geotiff(self, path: Path, box: Box, step_deg: float) -> Path:
        """The terrain as a float32 GeoTIFF of ellipsoidal heights on an EPSG:4326 grid covering ``box``, sample
        centres on multiples of ``step_deg``."""
        from affine import Affine

        west, south, east, north = box.west, box.south, box.east, box.north
        lons = np.arange(np.floor(west / step_deg), np.ceil(east / step_deg) + 1) * step_deg
        lats = np.arange(np.ceil(north / step_deg), np.floor(south / step_deg) - 1, -1) * step_deg
        data = np.empty((lats.size, lons.size), dtype=np.float32)
        for start in range(0, lats.size, 256):  # bounded memory
            block = lats[start : start + 256]
            lat, lon = np.meshgrid(block, lons, indexing="ij")
            data[start : start + block.size] = self(lat, lon)
        transform = Affine(step_deg, 0.0, lons[0] - step_deg / 2, 0.0, -step_deg, lats[0] + step_deg / 2)
        return write_heights(path, data, transform)
