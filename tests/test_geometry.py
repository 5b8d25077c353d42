"""Orbit interpolation, zero-Doppler geometry, TOPS deramping and debursting, checked on real annotations."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyproj import Transformer

from offset_cube.builtin.radargrid import SwathSource, build_radar_grid
from offset_cube.eof import read_eof
from offset_cube.geometry.ellipsoid import ecef_to_geodetic, geodetic_to_ecef
from offset_cube.geometry.orbit import Orbit
from offset_cube.geometry.rangedoppler import geo2rdr, look_geometry, rdr2geo
from offset_cube.geometry.tops import burst_ramp, deramp, reramp
from offset_cube.safe.annotation import SPEED_OF_LIGHT, SwathAnnotation
from offset_cube.safe.product import SafeProduct
from tests.conftest import data_path
from tests.test_safe_reader import PAMIR, PRODUCTS

GRID_PRODUCTS = [p for p in PRODUCTS if "single_burst" not in str(p)]


def _swaths(path: object) -> list[SwathAnnotation]:
    with SafeProduct(str(path)) as product:
        pol = product.polarisations[-1]
        return [product.annotation(s, pol) for s in product.swaths(pol)]


def _ipf(path: object) -> float:
    with SafeProduct(str(path)) as product:
        return float(product.manifest.ipf_version or 0)


@pytest.mark.parametrize("path", GRID_PRODUCTS, ids=lambda p: p.name[17:32])
def test_geometry_reproduces_the_annotation_grid(path: object) -> None:
    """rdr2geo/geo2rdr driven only by the annotation orbit reproduce the IPF geolocation grid.

    IPF 3 products agree to ~1 cm and 2 µs. The 2014 products (IPF 2.x; one carries 1-s downlink vectors over
    29 s only) agree to ~1 m, 0.2 ms and 3 cm in range, still < 0.1 pixel."""
    modern = _ipf(path) >= 3
    tolerance_m, tolerance_s, tolerance_r = (0.05, 5e-6, 1e-3) if modern else (1.5, 2.5e-4, 0.05)
    for ann in _swaths(path):
        orbit = Orbit.from_annotation(ann.orbit)
        grid = ann.geolocation
        t = grid.azimuth_time.seconds + (grid.azimuth_time.epoch - orbit.epoch).total_seconds()
        inside = (t >= orbit.times[0] + 1) & (t <= orbit.times[-1] - 1)
        t = t[inside]
        slant = grid.slant_range_time[inside] * SPEED_OF_LIGHT / 2
        points = geodetic_to_ecef(grid.latitude[inside], grid.longitude[inside], grid.height[inside])
        ground = rdr2geo(orbit, t, slant, grid.height[inside])
        assert np.max(np.linalg.norm(ground - points, axis=-1)) < tolerance_m, ann.source
        t_back, r_back = geo2rdr(orbit, points, np.full(t.shape, t.mean()))
        assert np.max(np.abs(t_back - t)) < tolerance_s, ann.source
        assert np.max(np.abs(r_back - slant)) < tolerance_r, ann.source


def test_ecef_geodetic_round_trip_matches_pyproj() -> None:
    lat = np.array([-89.5, -75.5, 0.0, 38.3, 69.2, 89.9])
    lon = np.array([-179.0, -106.5, 12.0, 75.0, -49.8, 10.0])
    h = np.array([0.0, 1500.0, -50.0, 4500.0, 2000.0, 700_000.0])
    xyz = geodetic_to_ecef(lat, lon, h)
    expected = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    np.testing.assert_allclose(xyz, np.stack(expected, axis=-1), atol=1e-6)
    back = ecef_to_geodetic(xyz)
    np.testing.assert_allclose(back[0], lat, atol=1e-9)
    np.testing.assert_allclose(back[2], h, atol=1e-3)


def test_lagrange_orbit_leave_one_out() -> None:
    """Interpolating across a 20-s gap of 10-s annotation vectors stays within a centimetre."""
    ann = _swaths(PAMIR)[0]
    orbit = Orbit.from_annotation(ann.orbit)
    for k in range(5, 11):
        keep = np.arange(len(orbit.times)) != k
        partial = Orbit(orbit.epoch, orbit.times[keep], orbit.positions[keep], orbit.velocities[keep])
        pos, vel = partial.interpolate(orbit.times[k])
        assert np.linalg.norm(pos - orbit.positions[k]) < 0.01
        assert np.linalg.norm(vel - orbit.velocities[k]) < 2e-3


def test_eof_orbit_velocity_is_the_derivative_of_position() -> None:
    eof = data_path("orbits/S1A_OPER_AUX_POEORB_OPOD_20210307T053325_V20180419T225942_20180421T005942.EOF")
    full = Orbit.from_eof(read_eof(eof))
    start = full.seconds(dt.datetime(2018, 4, 20, 12, tzinfo=dt.UTC))
    orbit = full.cropped(start, start + 60.0)
    assert len(orbit.times) < 40 and orbit.source == "POEORB"
    t = np.linspace(start, start + 60.0, 7)
    p1, _ = orbit.interpolate(t + 0.5)
    p0, _ = orbit.interpolate(t - 0.5)
    _, vel = orbit.interpolate(t)
    np.testing.assert_allclose(p1 - p0, vel, atol=5e-3)


def test_local_heading_incidence_and_azimuth_spacing() -> None:
    """Ascending Pamir IW2: local heading ~3° east of platformHeading at mid-swath, spacing ~annotated."""
    ann = _swaths(PAMIR)[0]
    orbit = Orbit.from_annotation(ann.orbit)
    grid = ann.geolocation
    mid = len(grid.latitude) // 2
    t = grid.azimuth_time.seconds[mid] + (grid.azimuth_time.epoch - orbit.epoch).total_seconds()
    point = geodetic_to_ecef(grid.latitude[mid], grid.longitude[mid], grid.height[mid])
    geometry = look_geometry(orbit, np.array([t]), point[None, :], ann.azimuth_time_interval_s)
    assert 2.0 < float(geometry["heading"][0]) - ann.platform_heading_deg < 4.0
    assert float(geometry["azimuth_spacing"][0]) == pytest.approx(ann.azimuth_pixel_spacing_m, rel=2e-3)
    # Grid incidence is from the geocentric radius, ours from the ellipsoid normal: they differ by ~0.03°.
    assert float(geometry["incidence_angle"][0]) == pytest.approx(grid.incidence_angle[mid], abs=0.06)


def _local_centroid(data: np.ndarray, prf: float, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Doppler centroid per block of lines: PRF/2π · arg Σ s[n+1] s*[n]."""
    starts = np.arange(0, data.shape[0] - block, block)
    centroids = []
    for start in starts:
        chunk = data[start : start + block]
        centroids.append(prf / (2 * np.pi) * np.angle(np.sum(chunk[1:] * np.conj(chunk[:-1]))))
    return starts + block / 2, np.array(centroids)


def test_deramp_centres_a_simulated_burst_spectrum() -> None:
    """A burst built at baseband and given its TOPS ramp sweeps the whole ±PRF/2 band; deramped, its azimuth
    spectrum is centred at 0 Hz with no trend. The sweep is checked against k_t computed here from the
    annotation by the ESA formulas, independently of the code under test."""
    ann = _swaths(PAMIR)[0]
    orbit = Orbit.from_annotation(ann.orbit)
    burst = ann.bursts[1]
    samples = np.arange(5000, 5016)
    rng = np.random.default_rng(3)
    n_lines = ann.lines_per_burst
    prf = 1 / ann.azimuth_time_interval_s
    f = np.fft.fftfreq(n_lines, d=ann.azimuth_time_interval_s)
    band = ann.azimuth_bandwidth_hz
    window = np.where(np.abs(f) < band / 2, 0.75 + 0.25 * np.cos(2 * np.pi * f / band), 0.0)
    noise = rng.standard_normal((n_lines, len(samples))) + 1j * rng.standard_normal((n_lines, len(samples)))
    baseband = np.fft.ifft(np.fft.fft(noise, axis=0) * window[:, None], axis=0).astype(np.complex64)
    lines = np.arange(n_lines)
    ramp = burst_ramp(ann, burst, orbit, samples)
    ramped = reramp(baseband, ramp, lines)

    # Independent k_t: k_s = 2 V k_ψ / λ, k_a from the nearest FM-rate entry, k_t = k_a k_s / (k_a − k_s).
    velocity = np.linalg.norm(
        orbit.interpolate(orbit.seconds(burst.azimuth_time) + n_lines / 2 * ann.azimuth_time_interval_s)[1]
    )
    k_s = 2 * velocity * np.radians(ann.azimuth_steering_rate_deg_s) / ann.wavelength_m
    tau = ann.slant_range_time_s + samples / ann.range_sampling_rate_hz
    fm = min(ann.fm_rates, key=lambda r: abs((r.azimuth_time - burst.azimuth_time).total_seconds() - 1.55))
    k_a = fm(tau)
    k_t = float(np.mean(k_a * k_s / (k_a - k_s)))
    assert 1000 < k_t < k_s

    centres, before = _local_centroid(ramped, prf)
    eta = (centres - n_lines // 2) * ann.azimuth_time_interval_s
    expected = np.angle(np.exp(2j * np.pi * (k_t * eta) / prf)) * prf / (2 * np.pi)
    wrapped_error = np.angle(np.exp(2j * np.pi * (before - expected) / prf)) * prf / (2 * np.pi)
    assert np.median(np.abs(wrapped_error)) < 40.0  # follows f_dc + k_t (η − η_ref), f_dc and η_ref small
    assert np.ptp(before) > 400.0  # sweeps (wraps through) the whole band

    _, after = _local_centroid(deramp(ramped, ramp, lines), prf)
    assert abs(float(np.mean(after))) < 15.0
    slope = np.polyfit(eta, after, 1)[0]
    assert abs(slope) < 20.0  # Hz/s: no trend left of the ~1500 Hz/s sweep
    np.testing.assert_allclose(deramp(ramped, ramp, lines), baseband, atol=1e-4)


def test_complex64_deramp_matches_the_double_precision_phasor() -> None:
    """Deramping in complex64 (phase wrapped in float64, cos/sin in float32) equals × exp(jφ) in complex128 to
    single precision over a whole burst, where φ reaches thousands of radians; the result is complex64."""
    ann = _swaths(PAMIR)[0]
    ramp = burst_ramp(ann, ann.bursts[1], Orbit.from_annotation(ann.orbit), np.arange(0, 20000, 997))
    lines = np.arange(ann.lines_per_burst)
    phase = ramp.phase(lines)
    assert np.abs(phase).max() > 1000
    rng = np.random.default_rng(5)
    data = (rng.standard_normal(phase.shape) + 1j * rng.standard_normal(phase.shape)).astype(np.complex64)
    out = deramp(data, ramp, lines)
    assert out.dtype == np.complex64
    np.testing.assert_allclose(out, data.astype(np.complex128) * np.exp(1j * phase), rtol=0, atol=1e-5)
    np.testing.assert_allclose(reramp(out, ramp, lines), data, rtol=0, atol=1e-5)


def test_debursting_cuts_at_the_valid_overlap_midpoint() -> None:
    """2020-05-11 (from its annotations' burst times and valid lines): IW2 seams at merged lines 1425.5 and
    2767.0; IW1 sits 883 lines later and 19942 samples nearer than IW2; tiles neither overlap nor leave gaps inside
    the valid bursts."""
    with SafeProduct(
        data_path("safe/s1-reader/S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip")
    ) as product:
        sources = [SwathSource(product, s, "VV", product.annotation(s, "VV")) for s in ("IW1", "IW2")]
        orbit = Orbit.from_annotation(sources[0].annotation.orbit)
        iw2 = build_radar_grid(sources[1:], orbit)
        both = build_radar_grid(sources, orbit)
    cuts = [t.lines[0] for t in iw2.tiles][1:3]
    assert cuts == [1426, 2768]
    for a, b in zip(iw2.tiles, iw2.tiles[1:], strict=False):
        assert a.lines[1] == b.lines[0]  # contiguous: no gap, no overlap
    iw1_tiles = [t for t in both.tiles if t.source.swath == "IW1"]
    iw2_tiles = [t for t in both.tiles if t.source.swath == "IW2"]
    assert iw1_tiles[0].line0 - iw2_tiles[0].line0 == 883
    assert iw2_tiles[0].sample0 - iw1_tiles[0].sample0 == 19942
    seam = iw1_tiles[0].samples[1]
    assert seam == iw2_tiles[0].samples[0]
    iw1_far = min(t.sample0 + t.burst.valid_samples[1] for t in iw1_tiles)
    iw2_near = max(t.sample0 + t.burst.valid_samples[0] for t in iw2_tiles)
    assert abs(seam - (iw1_far + iw2_near) / 2) <= 1
    count = np.zeros(both.shape, dtype=np.int8)
    for tile in both.tiles:
        count[tile.lines[0] : tile.lines[1], tile.samples[0] : tile.samples[1]] += 1
    assert count.max() == 1
