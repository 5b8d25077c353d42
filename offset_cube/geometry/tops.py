"""TOPS azimuth deramping of Sentinel-1 IW bursts — the one function both the engine and the simulator use.

Formulas (s1-tops-geometry.md §3.1, reconstructed from ESA COPE-GSEG-EOPG-TN-14-0025 via ISCE2
``Sentinel1.py`` ``computeAzimuthCarrier``, SNAP ``Sentinel1Utils``, s1-reader, Doris and SARProcessing.jl):

* k_s = 2 V_s k_ψ / λ (steering rate k_ψ converted from deg/s to rad/s), V_s at the burst mid-time;
* k_a(τ) azimuth FM rate (negative), k_t(τ) = k_a k_s / (k_a − k_s) (positive, < k_s);
* f_ηc(τ) Doppler centroid (``dataDcPolynomial``), η_c = −f_ηc/k_a, η_ref(τ) = η_c(τ) − η_c(τ₀) with τ₀ the
  swath's first sample (ISCE2/s1-reader convention);
* η = (j − ⌊N_l/2⌋)Δt for line j of the burst;
* φ(η, τ) = −π k_t (η − η_ref)² − 2π f_ηc (η − η_ref): **deramp** multiplies by exp(jφ), which removes the
  quadratic ramp and demodulates the Doppler centroid, so every line's azimuth spectrum sits at 0 Hz;
  **reramp** multiplies by exp(−jφ). The phase reaches ~10⁴ rad: it is always float64 (isce3 PR #194).

FM-rate and Doppler entries are chosen nearest in time to the burst mid-time, not by list index (§3.3).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from offset_cube.errors import SafeError
from offset_cube.geometry.orbit import Orbit
from offset_cube.safe.annotation import Burst, SwathAnnotation


@dataclass(frozen=True)
class BurstRamp:
    """The ramp of one burst over a set of its range samples (1-D arrays along range)."""

    k_t: np.ndarray  # Hz/s
    f_dc: np.ndarray  # Hz
    eta_ref: np.ndarray  # s
    lines_per_burst: int
    line_interval: float  # s

    def phase(self, lines: np.ndarray) -> np.ndarray:
        """Deramp phase φ (float64, radians) on the grid (burst lines × the ramp's samples)."""
        eta = (np.asarray(lines, dtype=np.float64) - self.lines_per_burst // 2) * self.line_interval
        rel = eta[:, None] - self.eta_ref[None, :]
        return np.asarray(-np.pi * self.k_t[None, :] * rel**2 - 2 * np.pi * self.f_dc[None, :] * rel)


def burst_ramp(annotation: SwathAnnotation, burst: Burst, orbit: Orbit, samples: np.ndarray) -> BurstRamp:
    """Ramp parameters of ``burst`` for its range ``samples`` (0-based sample indices of the swath file)."""
    n_lines = annotation.lines_per_burst
    dt_line = annotation.azimuth_time_interval_s
    mid = burst.azimuth_time + dt.timedelta(seconds=n_lines / 2 * dt_line)
    _, velocity = orbit.interpolate(orbit.seconds(mid))
    v_s = float(np.linalg.norm(velocity))
    k_psi = np.radians(annotation.azimuth_steering_rate_deg_s)
    k_s = 2.0 * v_s * k_psi / annotation.wavelength_m
    fm = annotation.nearest(annotation.fm_rates, mid)
    dc = annotation.nearest(annotation.dc_estimates, mid)
    tau0 = annotation.slant_range_time_s
    tau = tau0 + np.asarray(samples, dtype=np.float64) / annotation.range_sampling_rate_hz
    k_a = fm(tau)
    if np.any(k_a >= 0) or k_s <= 0:
        raise SafeError(
            f"{annotation.source}: burst {burst.index} has azimuth FM rate {float(k_a.max()):.1f} Hz/s and steering "
            f"Doppler rate {k_s:.1f} Hz/s; expected k_a < 0 < k_s (s1-tops-geometry.md §6)"
        )
    k_t = k_a * k_s / (k_a - k_s)
    f_dc = dc(tau)
    eta_c = -f_dc / k_a
    eta_c0 = float(-dc(tau0) / fm(tau0))
    return BurstRamp(k_t=k_t, f_dc=f_dc, eta_ref=eta_c - eta_c0, lines_per_burst=n_lines, line_interval=dt_line)


def deramp(data: np.ndarray, ramp: BurstRamp, lines: np.ndarray) -> np.ndarray:
    """``data`` (burst lines × ramp samples) moved to baseband: × exp(jφ), complex64."""
    return _times_phasor(data, ramp.phase(lines))


def reramp(data: np.ndarray, ramp: BurstRamp, lines: np.ndarray) -> np.ndarray:
    """The inverse of :func:`deramp`: × exp(−jφ) (how the simulator gives baseband bursts their TOPS ramp)."""
    return _times_phasor(data, -ramp.phase(lines))


def _times_phasor(data: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """``data × exp(j·phase)`` in complex64. The phase (thousands of radians at a burst's ends) is wrapped to
    [−π, π) in float64 first, so cos/sin in float32 keep ~1e-7 rad; a complex128 exp costs several times more."""
    wrapped = (np.remainder(phase + np.pi, 2 * np.pi) - np.pi).astype(np.float32)
    phasor = np.empty(wrapped.shape, dtype=np.complex64)
    phasor.real = np.cos(wrapped)
    phasor.imag = np.sin(wrapped)
    phasor *= data
    return phasor
