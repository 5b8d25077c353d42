"""The project's one conversion from radar offsets to map velocity (both engines and the product use it).

Steps (zero-Doppler geometry of a right-looking SAR; offsets secondary − reference as ISCE2's ampcor reports them;
checked on hand-computed cases and real-product examples in tests/test_velocity.py):

1. azimuth offset (lines) × ground azimuth spacing → ``d_az``, + along the flight direction;
   range offset (samples) × slant-range spacing → ``d_los``, + away from the sensor;
   ``d_gr = d_los / sin θ`` (ground range, assuming horizontal motion; θ = local incidence from the ellipsoid normal).
   Where the result carries the terrain's slope (``slope_east``, ``slope_north`` = ∂h/∂E, ∂h/∂N from the DEM), the
   motion is taken as **surface-parallel** instead, as autoRIFT/ITS_LIVE do: a feature moving along a slope also
   moves vertically by ``d_z = s_a d_az + s_r d_gr`` (``s_a``, ``s_r`` the slope along the flight direction and
   along ground range), the line of sight sees ``d_los = d_gr sin θ − d_z cos θ``, so
   ``d_gr = (d_los + s_a d_az cos θ) / (sin θ − s_r cos θ)``. Slopes facing the radar so steeply that the
   denominator falls below a quarter of ``sin θ`` (near layover) give no velocity (NaN).
2. With the local along-track heading ``h`` (clockwise from north) and Sentinel-1 looking right, the ground-range
   unit vector is ``(cos h, −sin h)`` in (east, north):
   ``E = d_az sin h + d_gr cos h``, ``N = d_az cos h − d_gr sin h``.
3. Rotate (E, N) onto the map axes with the meridian convergence γ (pyproj ``get_factors``; γ = −λ in EPSG:3031,
   λ + 45° in EPSG:3413, a few degrees in UTM): ``vx = E cos γ − N sin γ``, ``vy = E sin γ + N cos γ``.
4. Divide by Δt and scale to metres per year of 365.25 days.

**True metres, not grid metres.** ``vx``/``vy`` are the physical ground velocity resolved along the grid's x and y
axes, so ``v`` is the true speed. Displacing a point on the *map* needs them multiplied by the point scale factor
``k`` (``meridional_scale``: 0.9885 at 75.5°S in EPSG:3031, 1.0026 at 69°N in EPSG:3413; 0.9996–1.001 in UTM).
We store true metres because glaciologists compare speeds across regions and with field data; a k-scaled speed
would be 1–4 % off in polar stereographic away from the true-scale latitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from pyproj import CRS, Proj

from offset_cube.errors import CubeError
from offset_cube.planning import DAYS_PER_YEAR

#: Surface-parallel conversion is refused (NaN) where sin θ − s_r cos θ < this × sin θ (slopes near layover).
SURFACE_PARALLEL_MIN = 0.25
#: Incidence angles outside this range (degrees) are not Sentinel-1 IW geometry (IW spans ~29-46°).
INCIDENCE_RANGE_DEG = (5.0, 85.0)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Velocity:
    """Velocity components in metres per year (true metres; see the module docstring)."""

    vx: FloatArray
    vy: FloatArray
    east: FloatArray
    north: FloatArray

    @property
    def v(self) -> FloatArray:
        """Speed (m/yr)."""
        return np.asarray(np.hypot(self.vx, self.vy))


def ground_displacement(
    azimuth_px: Any,
    range_px: Any,
    *,
    azimuth_spacing_m: Any,
    range_spacing_m: Any,
    incidence_deg: Any,
    heading_deg: Any,
    slope_east: Any = None,
    slope_north: Any = None,
) -> tuple[FloatArray, FloatArray]:
    """East and north ground displacement (m) of offsets (secondary − reference, pixels) for right-looking S1:
    horizontal motion, or surface-parallel motion where the terrain slope (∂h/∂E, ∂h/∂N) is given."""
    incidence = np.asarray(incidence_deg, dtype=np.float64)
    _check_incidence(incidence)
    d_az = np.asarray(azimuth_px, dtype=np.float64) * np.asarray(azimuth_spacing_m, dtype=np.float64)
    d_los = np.asarray(range_px, dtype=np.float64) * np.asarray(range_spacing_m, dtype=np.float64)
    h = np.radians(np.asarray(heading_deg, dtype=np.float64))
    sin_i, cos_i = np.sin(np.radians(incidence)), np.cos(np.radians(incidence))
    if slope_east is None or slope_north is None:
        d_gr = d_los / sin_i
    else:
        s_e, s_n = np.asarray(slope_east, dtype=np.float64), np.asarray(slope_north, dtype=np.float64)
        s_az = s_e * np.sin(h) + s_n * np.cos(h)  # slope along the flight direction
        s_gr = s_e * np.cos(h) - s_n * np.sin(h)  # slope along ground range (away from the sensor)
        denominator = sin_i - s_gr * cos_i
        steep = ~(denominator >= SURFACE_PARALLEL_MIN * sin_i)
        d_gr = (d_los + s_az * d_az * cos_i) / np.where(steep, np.nan, denominator)
    east = d_az * np.sin(h) + d_gr * np.cos(h)
    north = d_az * np.cos(h) - d_gr * np.sin(h)
    return east, north


def meridian_convergence_deg(crs: str | CRS, longitude: Any, latitude: Any) -> FloatArray:
    """Angle γ (degrees) from true north to grid north at each point, as pyproj's ``get_factors`` defines it.

    Grid north points along (−sin γ, cos γ) in (E, N); γ = −λ in EPSG:3031, λ + 45° in EPSG:3413.
    """
    lon = np.asarray(longitude, dtype=np.float64)
    lat = np.asarray(latitude, dtype=np.float64)
    factors = Proj(CRS.from_user_input(crs)).get_factors(lon, lat)
    return np.asarray(factors.meridian_convergence, dtype=np.float64).reshape(lon.shape)


def rotate_to_grid(east: Any, north: Any, convergence_deg: Any) -> tuple[FloatArray, FloatArray]:
    """(E, N) components → components along the grid's x and y axes (same units)."""
    e = np.asarray(east, dtype=np.float64)
    n = np.asarray(north, dtype=np.float64)
    g = np.radians(np.asarray(convergence_deg, dtype=np.float64))
    return e * np.cos(g) - n * np.sin(g), e * np.sin(g) + n * np.cos(g)


def offsets_to_velocity(
    azimuth_px: Any,
    range_px: Any,
    *,
    azimuth_spacing_m: Any,
    range_spacing_m: Any,
    incidence_deg: Any,
    heading_deg: Any,
    longitude: Any,
    latitude: Any,
    dt_days: float,
    crs: str | CRS,
    slope_east: Any = None,
    slope_north: Any = None,
) -> Velocity:
    """Offsets (pixels) and geometry at each point → velocity (m/yr) on the axes of ``crs`` (surface-parallel
    where the terrain slope is given, else horizontal)."""
    if not (np.isfinite(dt_days) and dt_days > 0):
        raise CubeError(f"time separation must be a positive number of days, got {dt_days!r}")
    east, north = ground_displacement(
        azimuth_px,
        range_px,
        azimuth_spacing_m=azimuth_spacing_m,
        range_spacing_m=range_spacing_m,
        incidence_deg=incidence_deg,
        heading_deg=heading_deg,
        slope_east=slope_east,
        slope_north=slope_north,
    )
    per_year = DAYS_PER_YEAR / float(dt_days)
    gamma = meridian_convergence_deg(crs, longitude, latitude)
    x, y = rotate_to_grid(east, north, gamma)
    return Velocity(vx=x * per_year, vy=y * per_year, east=east * per_year, north=north * per_year)


def velocity_from_result(result: xr.Dataset, crs: str | CRS) -> Velocity:
    """:func:`offsets_to_velocity` applied to a per-pair result (:mod:`offset_cube.result` schema)."""
    return offsets_to_velocity(
        result["azimuth_offset"].values,
        result["range_offset"].values,
        azimuth_spacing_m=result["azimuth_spacing"].values,
        range_spacing_m=result["range_spacing"].values,
        incidence_deg=result["incidence_angle"].values,
        heading_deg=result["heading"].values,
        longitude=result["longitude"].values,
        latitude=result["latitude"].values,
        dt_days=float(result.attrs["dt_days"]),
        crs=crs,
        slope_east=result["slope_east"].values if "slope_east" in result else None,
        slope_north=result["slope_north"].values if "slope_north" in result else None,
    )


def _check_incidence(incidence: FloatArray) -> None:
    finite = incidence[np.isfinite(incidence)]
    low, high = INCIDENCE_RANGE_DEG
    if finite.size and (finite.min() < low or finite.max() > high):
        raise CubeError(
            f"incidence angles {finite.min():.2f}..{finite.max():.2f}° are outside {low:g}..{high:g}°; "
            "expected degrees from the ellipsoid normal (Sentinel-1 IW: ~29-46°)"
        )
