"""Simulated orbits: a J2 propagation seeded by a real annotation state vector, and ``.EOF`` files.

Each simulated date flies the template's orbit shifted by a whole number of 12-day repeat cycles (which, in the
Earth-fixed frame, repeats exactly) plus a small cross-track and radial offset: the perpendicular baseline. The
orbit is propagated (two-body + J2, in a frame that is inertial and aligned with ITRF at the template's
mid-time) for ±``span`` around the acquisition and sampled every second; the ``.EOF`` file and the
annotation carry 10-s samples of it, as real products do, so the engine's interpolation is exercised.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

from offset_cube.atomic import write_text_atomic
from offset_cube.geometry.orbit import Orbit

#: Earth's rotation rate (rad/s), gravitational parameter (m³/s²) and J2 (WGS84 / EGM96 values).
EARTH_ROTATION = 7.292115e-5
EARTH_GM = 3.986004418e14
EARTH_J2 = 1.08262668e-3
EARTH_RADIUS = 6_378_137.0
#: TAI − UTC since 2017-01-01 (IERS Bulletin C), written in the EOF's TAI field.
TAI_MINUS_UTC_S = 37


def propagate_orbit(
    template: Orbit,
    epoch: dt.datetime,
    span_s: float,
    cross_track_m: float = 0.0,
    radial_m: float = 0.0,
    step_s: float = 1.0,
) -> Orbit:
    """The template orbit's arc around its middle vector, offset across track and radially, on ``epoch``'s clock.

    Returned times are seconds since ``epoch`` and equal the template's seconds since its own epoch: the new
    date's orbit is the template's, ``epoch − template.epoch`` later.
    """
    mid = len(template.times) // 2
    t_mid = float(template.times[mid])
    r0 = template.positions[mid].astype(np.float64)
    omega = np.array([0.0, 0.0, EARTH_ROTATION])
    v0 = template.velocities[mid] + np.cross(omega, r0)  # inertial velocity in the co-aligned frame
    radial = r0 / np.linalg.norm(r0)
    normal = np.cross(r0, v0)
    normal /= np.linalg.norm(normal)
    r0 = r0 + cross_track_m * normal + radial_m * radial

    def rhs(_t: float, state: np.ndarray) -> np.ndarray:
        r, v = state[:3], state[3:]
        return np.concatenate([v, _gravity(r)])

    times = np.arange(t_mid - span_s, t_mid + span_s + step_s / 2, step_s)
    forward = times >= t_mid
    state0 = np.concatenate([r0, v0])
    positions = np.empty((len(times), 3))
    velocities = np.empty((len(times), 3))
    for mask in (forward, ~forward):
        if not np.any(mask):
            continue
        ts = times[mask]
        end = float(ts[np.argmax(np.abs(ts - t_mid))])
        sol = solve_ivp(rhs, (t_mid, end), state0, method="DOP853", rtol=1e-12, atol=1e-6, dense_output=True)
        states = sol.sol(ts).T
        angle = EARTH_ROTATION * (ts - t_mid)
        r_i, v_i = states[:, :3], states[:, 3:]
        r_e = _rotate_z(r_i, -angle)
        v_e = _rotate_z(v_i - np.cross(omega, r_i), -angle)
        positions[mask], velocities[mask] = r_e, v_e
    return Orbit(epoch, times, positions, velocities, source="simulated")


def _gravity(r: np.ndarray) -> np.ndarray:
    """Two-body + J2 acceleration (m/s²) at inertial position ``r``."""
    x, y, z = r
    r2 = float(r @ r)
    rn = np.sqrt(r2)
    factor = 1.5 * EARTH_J2 * EARTH_GM * EARTH_RADIUS**2 / rn**5
    zz = 5.0 * z * z / r2
    return np.array(
        [
            -EARTH_GM * x / rn**3 + factor * x * (zz - 1.0),
            -EARTH_GM * y / rn**3 + factor * y * (zz - 1.0),
            -EARTH_GM * z / rn**3 + factor * z * (zz - 3.0),
        ]
    )


def _rotate_z(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    x, y = vectors[:, 0], vectors[:, 1]
    return np.stack([c * x - s * y, s * x + c * y, vectors[:, 2]], axis=1)


def sample_orbit(orbit: Orbit, start: dt.datetime, stop: dt.datetime, step_s: float = 10.0) -> Orbit:
    """State vectors every ``step_s`` seconds on whole-second UTC times from ``start`` to ``stop``."""
    first = start.replace(microsecond=0)
    count = int((stop - first).total_seconds() // step_s) + 1
    times = np.array([orbit.seconds(first) + k * step_s for k in range(count)])
    positions, velocities = orbit.interpolate(times)
    return Orbit(orbit.epoch, times, positions, velocities, orbit.source)


def eof_name(mission: str, orbit: Orbit, created: dt.datetime, orbit_type: str = "POEORB") -> str:
    """``S1A_OPER_AUX_POEORB_OPOD_<created>_V<first vector>_<last vector>.EOF``."""
    first = orbit.epoch + dt.timedelta(seconds=float(orbit.times[0]))
    last = orbit.epoch + dt.timedelta(seconds=float(orbit.times[-1]))
    fmt = "%Y%m%dT%H%M%S"
    return f"{mission}_OPER_AUX_{orbit_type}_OPOD_{created:{fmt}}_V{first:{fmt}}_{last:{fmt}}.EOF"


def write_eof(
    folder: Path, mission: str, orbit: Orbit, created: dt.datetime, absolute_orbit: int, orbit_type: str = "POEORB"
) -> Path:
    """Write ``orbit``'s vectors as an Earth Explorer orbit file (the real POEORB layout) into ``folder``."""
    name = eof_name(mission, orbit, created, orbit_type)
    first = orbit.epoch + dt.timedelta(seconds=float(orbit.times[0]))
    last = orbit.epoch + dt.timedelta(seconds=float(orbit.times[-1]))
    platform = {"S1A": "Sentinel-1A", "S1B": "Sentinel-1B", "S1C": "Sentinel-1C", "S1D": "Sentinel-1D"}[mission]
    lines = [
        '<?xml version="1.0" ?>',
        "<Earth_Explorer_File>",
        "  <Earth_Explorer_Header>",
        "    <Fixed_Header>",
        f"      <File_Name>{name.removesuffix('.EOF')}</File_Name>",
        "      <File_Description>Precise Orbit Ephemerides (POE) Orbit File</File_Description>",
        "      <Notes>Simulated by offset-cube</Notes>",
        f"      <Mission>{platform}</Mission>",
        "      <File_Class>OPER</File_Class>",
        f"      <File_Type>AUX_{orbit_type}</File_Type>",
        "      <Validity_Period>",
        f"        <Validity_Start>UTC={first:%Y-%m-%dT%H:%M:%S}</Validity_Start>",
        f"        <Validity_Stop>UTC={last:%Y-%m-%dT%H:%M:%S}</Validity_Stop>",
        "      </Validity_Period>",
        "      <File_Version>0001</File_Version>",
        "      <Source>",
        "        <System>OPOD</System>",
        "        <Creator>OPOD</Creator>",
        "        <Creator_Version>1.10.1</Creator_Version>",
        f"        <Creation_Date>UTC={created:%Y-%m-%dT%H:%M:%S}</Creation_Date>",
        "      </Source>",
        "    </Fixed_Header>",
        "    <Variable_Header>",
        "      <Ref_Frame>EARTH_FIXED</Ref_Frame>",
        "      <Time_Reference>UTC</Time_Reference>",
        "    </Variable_Header>",
        "  </Earth_Explorer_Header>",
        '<Data_Block type="xml">',
        f'  <List_of_OSVs count="{len(orbit.times)}">',
    ]
    for t, p, v in zip(orbit.times, orbit.positions, orbit.velocities, strict=True):
        utc = orbit.epoch + dt.timedelta(seconds=float(t))
        tai = utc + dt.timedelta(seconds=TAI_MINUS_UTC_S)
        lines += [
            "    <OSV>",
            f"      <TAI>TAI={tai:%Y-%m-%dT%H:%M:%S.%f}</TAI>",
            f"      <UTC>UTC={utc:%Y-%m-%dT%H:%M:%S.%f}</UTC>",
            f"      <UT1>UT1={utc:%Y-%m-%dT%H:%M:%S.%f}</UT1>",
            f"      <Absolute_Orbit>+{absolute_orbit}</Absolute_Orbit>",
            f'      <X unit="m">{p[0]:.6f}</X>',
            f'      <Y unit="m">{p[1]:.6f}</Y>',
            f'      <Z unit="m">{p[2]:.6f}</Z>',
            f'      <VX unit="m/s">{v[0]:.6f}</VX>',
            f'      <VY unit="m/s">{v[1]:.6f}</VY>',
            f'      <VZ unit="m/s">{v[2]:.6f}</VZ>',
            "      <Quality>NOMINAL</Quality>",
            "    </OSV>",
        ]
    lines += ["  </List_of_OSVs>", "</Data_Block>", "</Earth_Explorer_File>", ""]
    return write_text_atomic(folder / name, "\n".join(lines))
