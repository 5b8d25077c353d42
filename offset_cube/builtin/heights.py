"""Terrain heights for the built-in engine's geometry: a constant, or a DEM of ellipsoidal heights (a GeoTIFF in
any CRS, the automatic GLO-30 mosaic, or an ISCE raster with its ``.xml``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offset_cube.errors import EngineError
from offset_cube.geometry.ellipsoid import wrap_longitude
from offset_cube.quiet import open_raster

#: Terrain slopes are central differences over ±this distance (m): about one GLO-30 posting.
SLOPE_STEP_M = 30.0
EARTH_RADIUS_M = 6_371_000.0
#: Heights below this are no-data in ISCE DEMs (geozero's rule).
BAD_HEIGHT_M = -1500.0


class HeightModel:
    """Ellipsoidal height (m) at latitude/longitude: ``constant_m`` or bilinear samples of ``dem``."""

    def __init__(self, constant_m: float = 0.0, dem: Path | None = None) -> None:
        self.constant_m = float(constant_m)
        self.dem = dem
        self._grid: tuple[np.ndarray, object, object] | None = None

    @property
    def is_constant(self) -> bool:
        return self.dem is None

    @property
    def typical_m(self) -> float:
        """A representative height (the DEM's median), where geometry on the DEM starts iterating."""
        if self.dem is None:
            return self.constant_m
        if self._grid is None:
            self._grid = self._load(self.dem)
        data = self._grid[0]
        finite = data[np.isfinite(data)]
        return float(np.median(finite)) if finite.size else 0.0

    def slopes(self, lat: np.ndarray, lon: np.ndarray, step_m: float = SLOPE_STEP_M) -> tuple[np.ndarray, np.ndarray]:
        """The terrain gradient (∂h/∂E, ∂h/∂N, m/m) at points, by central differences ``step_m`` apart."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if self.dem is None:
            return np.zeros(lat.shape), np.zeros(lat.shape)
        d_lat = np.degrees(step_m / EARTH_RADIUS_M)
        d_lon = d_lat / np.cos(np.radians(lat))
        east = (self(lat, lon + d_lon) - self(lat, lon - d_lon)) / (2 * step_m)
        north = (self(lat + d_lat, lon) - self(lat - d_lat, lon)) / (2 * step_m)
        return east, north

    def describe(self) -> str:
        return f"DEM {self.dem}" if self.dem else f"constant {self.constant_m:g} m"

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        lat = np.asarray(lat, dtype=np.float64)
        if self.dem is None:
            return np.full(lat.shape, self.constant_m)
        return self._sample(self.dem, lat, np.asarray(lon, dtype=np.float64))

    @staticmethod
    def _load(dem: Path) -> tuple[np.ndarray, object, object]:
        from rasterio.errors import RasterioIOError

        if dem.with_name(dem.name + ".xml").is_file():
            return _load_isce(dem)
        try:
            with open_raster(dem) as ds:
                data = ds.read(1, masked=True).astype(np.float64).filled(np.nan)
                transform, crs = ds.transform, ds.crs
        except RasterioIOError as err:
            raise EngineError(f"DEM {dem} cannot be read ({err})") from err
        if crs is None:
            raise EngineError(f"DEM {dem} has no CRS; give a georeferenced GeoTIFF of ellipsoidal heights")
        if crs.is_geographic and round(360.0 / transform.a) == data.shape[1]:
            data = np.hstack([data, data[:, :1]])  # all the way round: the first column again after the last
        return data, transform, crs

    def _sample(self, dem: Path, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        from pyproj import Transformer
        from scipy.ndimage import map_coordinates

        if self._grid is None:
            self._grid = self._load(dem)
        data, transform, crs = self._grid
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        inverse = ~transform  # type: ignore[operator]
        x, y = np.asarray(x), np.asarray(y)
        if crs.is_geographic:  # type: ignore[attr-defined]
            x = wrap_longitude(x, transform.c)  # type: ignore[attr-defined]
        col = inverse.a * x + inverse.b * y + inverse.c
        row = inverse.d * x + inverse.e * y + inverse.f
        # Pixel-is-area: the value of pixel (r, c) sits at its centre (r + 0.5, c + 0.5).
        values = map_coordinates(data, [np.asarray(row) - 0.5, np.asarray(col) - 0.5], order=1, mode="nearest")
        outside = (row < 0) | (col < 0) | (row > data.shape[0]) | (col > data.shape[1]) | ~np.isfinite(values)
        if np.any(outside):
            raise EngineError(
                f"DEM {dem} does not cover {int(np.sum(outside))} point(s) of the area "
                f"(e.g. lat {float(lat[outside].flat[0]):.4f}, lon {float(lon[outside].flat[0]):.4f})"
            )
        return np.asarray(values).reshape(lat.shape)


def _load_isce(dem: Path) -> tuple[np.ndarray, object, object]:
    """An ISCE DEM raster (geographic, sample centres in its header) as heights, an affine transform and a CRS."""
    from affine import Affine
    from rasterio.crs import CRS

    from offset_cube.isce_raster import IsceRasterError, read_band, read_isce_header

    try:
        header = read_isce_header(dem)
        data = np.array(read_band(dem, 1), dtype=np.float64)
    except IsceRasterError as err:
        raise EngineError(f"DEM {dem} cannot be read ({err})") from err
    data[data < BAD_HEIGHT_M] = np.nan
    transform = Affine(
        header.x_delta,
        0.0,
        header.x_start - header.x_delta / 2,
        0.0,
        header.y_delta,
        header.y_start - header.y_delta / 2,
    )
    return data, transform, CRS.from_epsg(4326)
