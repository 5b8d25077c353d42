"""The cube's fixed map grid: CRS chosen from the area, spacing from the job, bounds snapped outward.

The grid is fixed when the cube is created and stored in it (coordinates, ``mapping`` and ``grid_*`` attributes).
Cell *edges* lie on multiples of the spacing (centres at ``(k + ½)·spacing``), so cubes of neighbouring areas with
the same CRS and spacing line up cell for cell. (ITS_LIVE shifts its edges by Landsat's 7.5 m half pixel; we do
not.) ``y`` runs north to south, as in GeoTIFF and ITS_LIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from offset_cube.area import parse_area
from offset_cube.config import GridConfig
from offset_cube.errors import CubeError

#: Polar stereographic north/south of this latitude (DESIGN.md "Conventions"; ITS_LIVE uses the same CRSs).
POLAR_LATITUDE_DEG = 60.0
#: Largest grid accepted (cells per layer): 7000 x 7000 = 840 x 840 km at 120 m; beyond that a job is a mistake.
MAX_CELLS = 49_000_000
#: Densify the area's edges to this many degrees before projecting, so curved edges bound the area correctly.
DENSIFY_DEG = 0.01
_SNAP_EPS = 1e-9


@dataclass(frozen=True)
class CubeGrid:
    """A north-up regular grid: ``nx`` x ``ny`` cells of ``spacing_m`` from the top-left edge (x_min, y_max)."""

    crs: str
    spacing_m: float
    x_min: float
    y_max: float
    nx: int
    ny: int

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x coordinates (ascending), metres."""
        return self.x_min + (np.arange(self.nx) + 0.5) * self.spacing_m

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y coordinates (descending), metres."""
        return self.y_max - (np.arange(self.ny) + 0.5) * self.spacing_m

    @property
    def x_max(self) -> float:
        return self.x_min + self.nx * self.spacing_m

    @property
    def y_min(self) -> float:
        return self.y_max - self.ny * self.spacing_m

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Outer edges (x_min, y_min, x_max, y_max), metres."""
        return (self.x_min, self.y_min, self.x_max, self.y_max)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    def pyproj_crs(self) -> CRS:
        return CRS.from_user_input(self.crs)

    @property
    def epsg(self) -> int | None:
        return self.pyproj_crs().to_epsg()

    @property
    def geotransform(self) -> str:
        """GDAL GeoTransform text (edge-based), as ITS_LIVE's ``mapping.GeoTransform``."""
        s = self.spacing_m
        return f"{self.x_min!r} {s!r} 0.0 {self.y_max!r} 0.0 {-s!r}"

    def describe(self) -> str:
        x0, y0, x1, y1 = self.bounds
        return (
            f"{self.crs}, {self.spacing_m:g} m, {self.nx} x {self.ny} cells, x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}"
        )

    def to_attrs(self) -> dict[str, Any]:
        """The grid as Zarr attributes (``grid_*``), stored in products and the cube."""
        return {
            "grid_crs": self.crs,
            "grid_spacing_m": float(self.spacing_m),
            "grid_x_min": float(self.x_min),
            "grid_y_max": float(self.y_max),
            "grid_nx": int(self.nx),
            "grid_ny": int(self.ny),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], where: str = "dataset") -> CubeGrid:
        try:
            return cls(
                crs=str(attrs["grid_crs"]),
                spacing_m=float(attrs["grid_spacing_m"]),
                x_min=float(attrs["grid_x_min"]),
                y_max=float(attrs["grid_y_max"]),
                nx=int(attrs["grid_nx"]),
                ny=int(attrs["grid_ny"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CubeError(f"{where} has no valid grid_* attributes ({err}); is it an offset-cube product?") from err

    def problems_against(self, other: CubeGrid) -> list[str]:
        """Why ``other`` is not this grid (empty when they are the same)."""
        problems: list[str] = []
        if not self.pyproj_crs().equals(other.pyproj_crs(), ignore_axis_order=True):
            problems.append(f"CRS {other.crs} differs from {self.crs}")
        if not math.isclose(self.spacing_m, other.spacing_m, rel_tol=0, abs_tol=1e-6):
            problems.append(f"spacing {other.spacing_m:g} m differs from {self.spacing_m:g} m")
        if (self.nx, self.ny) != (other.nx, other.ny) or not np.allclose(
            (self.x_min, self.y_max), (other.x_min, other.y_max), rtol=0, atol=1e-6
        ):
            problems.append(f"bounds {_fmt_bounds(other.bounds)} differ from {_fmt_bounds(self.bounds)}")
        return problems


def auto_crs(area: BaseGeometry) -> str:
    """EPSG:3031 at or south of 60°S, EPSG:3413 at or north of 60°N, else the UTM zone of the centroid."""
    centroid = area.centroid
    lon, lat = float(centroid.x), float(centroid.y)
    if lat <= -POLAR_LATITUDE_DEG:
        return "EPSG:3031"
    if lat >= POLAR_LATITUDE_DEG:
        return "EPSG:3413"
    zone = math.floor((lon + 180.0) / 6.0) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def grid_for_area(area: str | BaseGeometry, crs: str = "auto", spacing_m: float = 120.0) -> CubeGrid:
    """The grid covering ``area`` (WKT or geometry, lon/lat) in ``crs``, edges snapped outward to the spacing."""
    geom = parse_area(area) if isinstance(area, str) else area
    if not spacing_m > 0:
        raise CubeError(f"grid spacing must be positive, got {spacing_m!r} m")
    crs_text = auto_crs(geom) if crs.strip().lower() == "auto" else crs
    target = CRS.from_user_input(crs_text)
    if not target.is_projected:
        raise CubeError(f"grid CRS {crs_text!r} is not projected; the cube needs metres (e.g. EPSG:3031)")
    x0, y0, x1, y1 = _projected_bounds(geom, target)
    x_min = math.floor(x0 / spacing_m + _SNAP_EPS) * spacing_m
    x_max = math.ceil(x1 / spacing_m - _SNAP_EPS) * spacing_m
    y_min = math.floor(y0 / spacing_m + _SNAP_EPS) * spacing_m
    y_max = math.ceil(y1 / spacing_m - _SNAP_EPS) * spacing_m
    nx = max(round((x_max - x_min) / spacing_m), 1)
    ny = max(round((y_max - y_min) / spacing_m), 1)
    if nx * ny > MAX_CELLS:
        raise CubeError(
            f"the area spans {nx} x {ny} cells of {spacing_m:g} m in {crs_text} (more than {MAX_CELLS:,}); "
            "use a smaller area or a coarser grid.spacing_m"
        )
    return CubeGrid(crs=crs_text, spacing_m=float(spacing_m), x_min=x_min, y_max=y_max, nx=nx, ny=ny)


def grid_for_job(area_wkt: str, config: GridConfig) -> CubeGrid:
    """The grid a job asks for (before any existing cube is consulted)."""
    return grid_for_area(area_wkt, config.crs, config.spacing_m)


def to_lonlat(grid: CubeGrid) -> Transformer:
    """Transformer from the grid's CRS to lon/lat (WGS84), x/y order."""
    return Transformer.from_crs(grid.pyproj_crs(), "EPSG:4326", always_xy=True)


def from_lonlat(grid: CubeGrid) -> Transformer:
    """Transformer from lon/lat (WGS84) to the grid's CRS, x/y order."""
    return Transformer.from_crs("EPSG:4326", grid.pyproj_crs(), always_xy=True)


def _projected_bounds(geom: BaseGeometry, target: CRS) -> tuple[float, float, float, float]:
    dense = shapely.segmentize(geom, max_segment_length=DENSIFY_DEG)
    coords = shapely.get_coordinates(dense)
    transformer = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    x, y = transformer.transform(coords[:, 0], coords[:, 1])
    x, y = np.asarray(x), np.asarray(y)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise CubeError(f"the area cannot be projected to {target.to_string()}; choose another grid.crs")
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _fmt_bounds(bounds: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{b:.0f}" for b in bounds) + ")"
