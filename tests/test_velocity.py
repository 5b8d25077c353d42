"""Velocity conversion on hand-computed cases.

Pure azimuth and pure range offsets are checked against the plain statement of the geometry: azimuth motion points
along the heading h, ground-range motion points along h + 90° (Sentinel-1 looks right), and a direction α
clockwise from north has (E, N) = (sin α, cos α). Mixed offsets are checked against worked examples at targets of
two real IW2 products (isce-framework/s1-reader's test data), each also computed as a 3-D vector.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod, Proj

from offset_cube.cube.velocity import (
    Velocity,
    ground_displacement,
    meridian_convergence_deg,
    offsets_to_velocity,
    rotate_to_grid,
)
from offset_cube.errors import CubeError

AZ_SPACING = 13.93
RG_SPACING = 2.329562
INCIDENCE = 39.0
ASCENDING_H = -10.149
DESCENDING_H = -169.932


def velocity_at(
    az_px: float, rg_px: float, heading: float, lon: float, lat: float, dt_days: float, crs: str
) -> Velocity:
    """The conversion with this module's nominal spacings and incidence."""
    return offsets_to_velocity(
        az_px,
        rg_px,
        azimuth_spacing_m=AZ_SPACING,
        range_spacing_m=RG_SPACING,
        incidence_deg=INCIDENCE,
        heading_deg=heading,
        longitude=lon,
        latitude=lat,
        dt_days=dt_days,
        crs=crs,
    )


def along(direction_deg: float, metres: float) -> tuple[float, float]:
    """(E, N) of a displacement of ``metres`` towards ``direction_deg`` clockwise from north."""
    return metres * math.sin(math.radians(direction_deg)), metres * math.cos(math.radians(direction_deg))


@pytest.mark.parametrize("heading", [ASCENDING_H, DESCENDING_H], ids=["ascending", "descending"])
def test_pure_azimuth_offset_moves_along_the_heading(heading: float) -> None:
    east, north = ground_displacement(
        2.0, 0.0, azimuth_spacing_m=AZ_SPACING, range_spacing_m=RG_SPACING, incidence_deg=INCIDENCE, heading_deg=heading
    )
    assert (float(east), float(north)) == pytest.approx(along(heading, 2.0 * AZ_SPACING), abs=1e-9)


@pytest.mark.parametrize("heading", [ASCENDING_H, DESCENDING_H], ids=["ascending", "descending"])
def test_pure_range_offset_moves_away_from_the_sensor_on_the_right(heading: float) -> None:
    ground = 1.0 * RG_SPACING / math.sin(math.radians(INCIDENCE))  # 3.7017 m on the ground for 1 slant sample
    east, north = ground_displacement(
        0.0, 1.0, azimuth_spacing_m=AZ_SPACING, range_spacing_m=RG_SPACING, incidence_deg=INCIDENCE, heading_deg=heading
    )
    assert (float(east), float(north)) == pytest.approx(along(heading + 90.0, ground), abs=1e-9)
    # ascending (heading ~N) looks east; descending (heading ~S) looks west
    assert (float(east) > 0) == (heading == ASCENDING_H)


@pytest.mark.parametrize(
    ("heading", "incidence", "az_spacing", "expected"),
    [
        (-10.149, 39.327, 13.94281, (-5.843, 15.951)),  # S1A 2022-10-16 IW2, 34.7098°N 117.5494°W
        (-169.932, 39.175, 13.93392, (-0.018, -16.979)),  # S1A 2020-05-11 IW2, 38.2095°N 116.8955°W
    ],
    ids=["ascending", "descending"],
)
def test_worked_examples_of_section_5_4(
    heading: float, incidence: float, az_spacing: float, expected: tuple[float, float]
) -> None:
    east, north = ground_displacement(
        1.20,
        -0.80,
        azimuth_spacing_m=az_spacing,
        range_spacing_m=RG_SPACING,
        incidence_deg=incidence,
        heading_deg=heading,
    )
    assert (float(east), float(north)) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize(
    ("crs", "lon", "lat", "heading", "expected_vx_vy"),
    [
        ("EPSG:3413", -49.8, 69.17, -24.86, (-185.0, 835.2)),
        ("EPSG:3413", -49.8, 69.17, -155.14, (-517.5, -681.1)),
        ("EPSG:3031", -106.5, -75.5, -35.43, (-611.6, -598.1)),
        ("EPSG:3031", -106.5, -75.5, -144.57, (765.6, -381.7)),
    ],
    ids=["greenland-asc", "greenland-desc", "antarctica-asc", "antarctica-desc"],
)
def test_polar_worked_examples_in_metres_per_year(
    crs: str, lon: float, lat: float, heading: float, expected_vx_vy: tuple[float, float]
) -> None:
    velocity = velocity_at(2.0, 1.0, heading, lon, lat, 12.0, crs)
    assert (float(velocity.vx), float(velocity.vy)) == pytest.approx(expected_vx_vy, abs=0.15)
    # the rotation keeps the speed: true metres, not map-scaled
    assert float(velocity.v) == pytest.approx(math.hypot(float(velocity.east), float(velocity.north)), rel=1e-12)


def test_at_70_south_northward_flow_points_along_the_local_meridian_of_the_grid() -> None:
    """At 100°E, 70°S the grid (EPSG:3031) is rotated 100° from true north: γ = −λ."""
    lon, lat = 100.0, -70.0
    gamma = float(meridian_convergence_deg("EPSG:3031", lon, lat))
    assert gamma == pytest.approx(-100.0, abs=1e-6)
    vx, vy = rotate_to_grid(0.0, 100.0, gamma)  # 100 m/yr due north
    # north in EPSG:3031 at longitude λ points away from the pole: (sin λ, cos λ)
    assert (float(vx), float(vy)) == pytest.approx(
        (100 * math.sin(math.radians(100)), 100 * math.cos(math.radians(100)))
    )
    # and the same direction follows from pyproj projecting a small geodesic step north
    proj = Proj("EPSG:3031")
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(lon, lat, 0.0, 10.0)
    x0, y0 = proj(lon, lat)
    x1, y1 = proj(lon2, lat2)
    step = np.array([x1 - x0, y1 - y0])
    assert step / np.linalg.norm(step) == pytest.approx(np.array([float(vx), float(vy)]) / 100.0, abs=1e-6)


def test_70_south_pixel_from_offsets_matches_geodesic_displacement() -> None:
    """Offsets → vx, vy at 70°S equal the projected displacement of the point moved on the ellipsoid, divided by k."""
    lon, lat, heading, dt_days = 100.0, -70.0, -25.8, 12.0
    velocity = velocity_at(1.5, -0.7, heading, lon, lat, dt_days, "EPSG:3031")
    east_m, north_m = float(velocity.east) * dt_days / 365.25, float(velocity.north) * dt_days / 365.25
    azimuth = math.degrees(math.atan2(east_m, north_m))
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(lon, lat, azimuth, math.hypot(east_m, north_m))
    proj = Proj("EPSG:3031")
    x0, y0 = proj(lon, lat)
    x1, y1 = proj(lon2, lat2)
    k = proj.get_factors(lon, lat).meridional_scale
    expected = np.array([x1 - x0, y1 - y0]) / k * 365.25 / dt_days
    assert np.array([float(velocity.vx), float(velocity.vy)]) == pytest.approx(expected, rel=1e-4)


def test_velocity_scales_with_time_separation() -> None:
    common = dict(
        azimuth_spacing_m=AZ_SPACING,
        range_spacing_m=RG_SPACING,
        incidence_deg=INCIDENCE,
        heading_deg=ASCENDING_H,
        longitude=10.0,
        latitude=46.0,
        crs="EPSG:32632",
    )
    six = offsets_to_velocity(np.array([1.0]), np.array([0.0]), dt_days=6.0, **common)  # type: ignore[arg-type]
    twelve = offsets_to_velocity(np.array([1.0]), np.array([0.0]), dt_days=12.0, **common)  # type: ignore[arg-type]
    assert float(six.v[0]) == pytest.approx(AZ_SPACING * 365.25 / 6.0)
    assert float(six.v[0]) == pytest.approx(2 * float(twelve.v[0]))


def test_bad_inputs_are_refused_with_the_value() -> None:
    with pytest.raises(CubeError, match=r"incidence angles 0\.68"):
        ground_displacement(1, 0, azimuth_spacing_m=14, range_spacing_m=2.3, incidence_deg=0.68, heading_deg=0)
    with pytest.raises(CubeError, match="positive number of days, got 0"):
        offsets_to_velocity(
            1,
            0,
            azimuth_spacing_m=14,
            range_spacing_m=2.3,
            incidence_deg=39,
            heading_deg=0,
            longitude=0,
            latitude=0,
            dt_days=0,
            crs="EPSG:32631",
        )


@pytest.mark.parametrize("heading", [ASCENDING_H, DESCENDING_H])
def test_surface_parallel_motion_on_a_slope_is_recovered_with_the_slope_and_biased_without(heading: float) -> None:
    """Ice moving 10 m east and 4 m south on ground rising 20 % eastward and falling 5 % northward also sinks or
    rises (d_z = s · d); the radar sees d_los = d_gr sin θ − d_z cos θ. With the slope the conversion returns the
    horizontal motion; taken as horizontal it does not."""
    east, north, s_e, s_n = 10.0, -4.0, 0.20, -0.05
    d_z = s_e * east + s_n * north
    h, inc = math.radians(heading), math.radians(INCIDENCE)
    d_az = east * math.sin(h) + north * math.cos(h)  # along the flight direction
    d_gr = east * math.cos(h) - north * math.sin(h)  # along ground range, away from the sensor
    d_los = d_gr * math.sin(inc) - d_z * math.cos(inc)
    kwargs = {"azimuth_spacing_m": AZ_SPACING, "range_spacing_m": RG_SPACING, "incidence_deg": INCIDENCE}
    got = ground_displacement(d_az / AZ_SPACING, d_los / RG_SPACING, heading_deg=heading, **kwargs)
    assert not np.allclose(got, (east, north), atol=0.5)
    got = ground_displacement(
        d_az / AZ_SPACING, d_los / RG_SPACING, heading_deg=heading, slope_east=s_e, slope_north=s_n, **kwargs
    )
    assert np.allclose(got, (east, north), atol=1e-9)
    # Ground rising away from the sensor almost as steeply as the incidence (near layover) gives no velocity.
    rise = math.tan(math.radians(INCIDENCE - 3))
    slope = {"slope_east": rise * math.cos(h), "slope_north": -rise * math.sin(h)}
    assert np.all(np.isnan(ground_displacement(1.0, 1.0, heading_deg=heading, **slope, **kwargs)))
