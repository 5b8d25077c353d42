"""Zero-Doppler range–Doppler geometry on the WGS84 ellipsoid, as ISCE2's
``components/zerodop/geo2rdr/src/geo2rdr.f90`` and sarsen's ``geocoding.py`` solve it.

``rdr2geo``: (azimuth time, slant range, ellipsoidal height) → ground point, right-looking.
``geo2rdr``: ground point → (zero-Doppler azimuth time, slant range), Newton on (P − S(η))·V(η) = 0.
All functions are vectorised over any number of points; times are seconds since the orbit's epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from offset_cube.errors import EngineError
from offset_cube.geometry.ellipsoid import WGS84_A, WGS84_B, ecef_to_geodetic, enu_basis
from offset_cube.geometry.orbit import Orbit

#: A height model: ellipsoidal height (m) at latitude/longitude (degrees).
HeightFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

_MAX_ITERATIONS = 30
_MAX_DEM_ITERATIONS = 60
#: rdr2geo on a DEM stops when no point's height changes by more than this (m) between iterations.
DEM_HEIGHT_TOLERANCE_M = 0.01


def rdr2geo(
    orbit: Orbit,
    t: np.ndarray,
    slant_range: np.ndarray,
    height: np.ndarray | float | HeightFunction,
    initial_height: float = 0.0,
) -> np.ndarray:
    """ECEF ground points (..., 3) seen at zero Doppler at time ``t`` and range ``slant_range`` (right-looking).

    ``height`` is a constant, an array, or a function of (lat, lon) (a DEM): then the solution is iterated from
    ``initial_height`` (a typical height of the DEM keeps the first guesses on it) until the point sits on the
    DEM surface.
    """
    t, slant_range = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(slant_range, np.float64))
    if callable(height):
        # Fixed point h = DEM(rdr2geo(h)): each step shrinks the height error by about tan(slope towards the
        # radar) / tan(incidence), < 1 without layover, so steep valley walls take tens of steps, flat ground two.
        heights = np.full(t.shape, float(initial_height))
        for _ in range(_MAX_DEM_ITERATIONS):
            points = _rdr2geo_fixed(orbit, t, slant_range, heights)
            lat, lon, _ = ecef_to_geodetic(points)
            updated = np.asarray(height(lat, lon), dtype=np.float64)
            converged = bool(np.all(np.abs(updated - heights) < DEM_HEIGHT_TOLERANCE_M))
            heights = updated
            if converged:
                break
        return _rdr2geo_fixed(orbit, t, slant_range, heights)
    return _rdr2geo_fixed(orbit, t, slant_range, np.broadcast_to(np.asarray(height, np.float64), t.shape))


def _rdr2geo_fixed(orbit: Orbit, t: np.ndarray, slant_range: np.ndarray, height: np.ndarray) -> np.ndarray:
    """rdr2geo at known ellipsoidal heights: Newton on the look angle θ in the zero-Doppler plane."""
    sat, vel = orbit.interpolate(t)
    along = vel / np.linalg.norm(vel, axis=-1, keepdims=True)
    down = -sat / np.linalg.norm(sat, axis=-1, keepdims=True)
    down = down - np.sum(down * along, axis=-1, keepdims=True) * along
    down /= np.linalg.norm(down, axis=-1, keepdims=True)
    right = np.cross(down, along)  # "down × forward": the right-looking side
    # Spherical first guess with the ellipsoid's radius at the sub-satellite latitude.
    r_sat = np.linalg.norm(sat, axis=-1)
    sin_lat = sat[..., 2] / r_sat
    r_earth = WGS84_A * WGS84_B / np.sqrt((WGS84_B * np.sqrt(1 - sin_lat**2)) ** 2 + (WGS84_A * sin_lat) ** 2)
    cos_theta = (r_sat**2 + slant_range**2 - (r_earth + height) ** 2) / (2 * r_sat * slant_range)
    theta = np.arccos(np.clip(cos_theta, -1.0, 1.0))
    r = slant_range[..., None]
    for _ in range(_MAX_ITERATIONS):
        look = np.cos(theta)[..., None] * down + np.sin(theta)[..., None] * right
        points = sat + r * look
        lat, lon, h = ecef_to_geodetic(points)
        _, _, up = enu_basis(lat, lon)
        d_point = r * (-np.sin(theta)[..., None] * down + np.cos(theta)[..., None] * right)
        slope = np.sum(d_point * up, axis=-1)
        step = (h - height) / slope
        theta = theta - step
        if np.all(np.abs(step * slant_range) < 1e-4):
            break
    look = np.cos(theta)[..., None] * down + np.sin(theta)[..., None] * right
    return np.asarray(sat + r * look)


def geo2rdr(orbit: Orbit, points: np.ndarray, t_guess: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-Doppler time (s since the orbit epoch) and slant range (m) of ECEF ``points`` (..., 3)."""
    points = np.asarray(points, dtype=np.float64)
    t = np.broadcast_to(np.asarray(t_guess, dtype=np.float64), points.shape[:-1]).copy()
    acc = orbit.acceleration(t)  # changes by < 1e-4 relative over the Newton steps: evaluated once
    for _ in range(_MAX_ITERATIONS):
        sat, vel = orbit.interpolate(t)
        rel = points - sat
        f = np.sum(rel * vel, axis=-1)
        df = np.sum(rel * acc, axis=-1) - np.sum(vel * vel, axis=-1)
        step = -f / df
        t = t + step
        if np.all(np.abs(step) < 1e-9):
            break
    else:
        if not np.all(np.abs(step) < 1e-6):
            raise EngineError("geo2rdr did not converge: a ground point is outside the orbit arc")
    sat, _ = orbit.interpolate(t)
    return t, np.linalg.norm(points - sat, axis=-1)


def look_geometry(orbit: Orbit, t: np.ndarray, points: np.ndarray, dt_line: float) -> dict[str, np.ndarray]:
    """Local incidence (from the ellipsoid normal), along-track ground heading (clockwise from N, degrees) and
    the ground distance of one azimuth line at each point (checked against the annotation's ``platformHeading`` and
    ``azimuthPixelSpacing`` in tests/test_geometry.py)."""
    lat, lon, h = ecef_to_geodetic(points)
    east, north, up = enu_basis(lat, lon)
    sat, _ = orbit.interpolate(t)
    to_sat = sat - points
    cos_inc = np.sum(to_sat * up, axis=-1) / np.linalg.norm(to_sat, axis=-1)
    slant = np.linalg.norm(to_sat, axis=-1)
    nxt = rdr2geo(orbit, np.asarray(t) + dt_line, slant, h)
    step = nxt - points
    heading = np.degrees(np.arctan2(np.sum(step * east, axis=-1), np.sum(step * north, axis=-1)))
    return {
        "latitude": lat,
        "longitude": lon,
        "height": h,
        "incidence_angle": np.degrees(np.arccos(np.clip(cos_inc, -1, 1))),
        "heading": heading,
        "azimuth_spacing": np.linalg.norm(step, axis=-1),
    }
