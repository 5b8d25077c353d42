"""WGS84 ellipsoid: geodetic ↔ Earth-fixed Cartesian (ECEF), local East/North/Up directions."""

from __future__ import annotations

import numpy as np

#: WGS84 semi-major axis (m) and flattening (NIMA TR8350.2, *World Geodetic System 1984*;
#: annotation ``ellipsoidName`` = WGS84).
WGS84_A = 6_378_137.0
WGS84_F = 1.0 / 298.257223563
WGS84_B = WGS84_A * (1.0 - WGS84_F)
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


def geodetic_to_ecef(lat_deg: np.ndarray, lon_deg: np.ndarray, height_m: np.ndarray | float) -> np.ndarray:
    """ECEF positions (..., 3) in metres of geodetic latitude/longitude (degrees) and ellipsoidal height."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    h = np.asarray(height_m, dtype=np.float64)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
    x = (n + h) * np.cos(lat) * np.cos(lon)
    y = (n + h) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - WGS84_E2) + h) * np.sin(lat)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_geodetic(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitude, longitude (degrees) and ellipsoidal height (m) of ECEF positions (..., 3).

    Fixed-point iteration on latitude (Bowring's form); five iterations reach sub-millimetre accuracy for
    points from the surface to orbit height.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    lat = np.arctan2(z, p * (1.0 - WGS84_E2))
    for _ in range(5):
        sin_lat = np.sin(lat)
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_lat**2)
        h = p * np.cos(lat) + z * sin_lat - n * (1.0 - WGS84_E2 * sin_lat**2)
        lat = np.arctan2(z, p * (1.0 - WGS84_E2 * n / (n + h)))
    sin_lat = np.sin(lat)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * sin_lat**2)
    h = p * np.cos(lat) + z * sin_lat - n * (1.0 - WGS84_E2 * sin_lat**2)
    return np.degrees(lat), np.degrees(lon), h


def enu_basis(lat_deg: np.ndarray, lon_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit East, North and Up (ellipsoid normal) vectors (..., 3) at geodetic positions."""
    lat = np.radians(np.asarray(lat_deg, dtype=np.float64))
    lon = np.radians(np.asarray(lon_deg, dtype=np.float64))
    east = np.stack([-np.sin(lon), np.cos(lon), np.zeros_like(lon)], axis=-1)
    north = np.stack([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)], axis=-1)
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
    return east, north, up
