"""Earth-fixed orbit: state vectors and their interpolation.

Positions and velocities are interpolated separately with 8-point Lagrange polynomials (SNAP
``OrbitStateVectors.java``; within 1 cm across a 20-s gap of 10-s vectors, tests/test_geometry.py). Times are
float64 seconds since the orbit's ``epoch``, an instant inside the acquisition, so that µs stay exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from offset_cube.eof import OrbitStateVectors
from offset_cube.errors import OrbitError
from offset_cube.safe.annotation import StateVectors

LAGRANGE_POINTS = 8


@dataclass(frozen=True)
class Orbit:
    """State vectors (ITRF positions in m, velocities in m/s) at ``times`` seconds since ``epoch`` (UTC)."""

    epoch: dt.datetime
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    source: str = "annotation"

    def __post_init__(self) -> None:
        if len(self.times) < LAGRANGE_POINTS:
            raise OrbitError(
                f"{self.source} orbit has {len(self.times)} state vectors; interpolation needs {LAGRANGE_POINTS}"
            )
        if np.any(np.diff(self.times) <= 0):
            raise OrbitError(f"{self.source} orbit: state vector times are not strictly increasing")

    @classmethod
    def from_annotation(cls, vectors: StateVectors, source: str = "annotation") -> Orbit:
        return cls(vectors.times.epoch, vectors.times.seconds, vectors.positions, vectors.velocities, source)

    @classmethod
    def from_eof(cls, vectors: OrbitStateVectors) -> Orbit:
        return cls(vectors.epoch, vectors.times, vectors.positions, vectors.velocities, vectors.orbit_type)

    @classmethod
    def merged(cls, orbits: list[Orbit]) -> Orbit:
        """One orbit from several arcs of state vectors (e.g. the annotations of consecutive slices)."""
        epoch = orbits[0].epoch
        times = np.concatenate([o.seconds_from(epoch) for o in orbits])
        positions = np.concatenate([o.positions for o in orbits])
        velocities = np.concatenate([o.velocities for o in orbits])
        order = np.argsort(times, kind="stable")
        times, positions, velocities = times[order], positions[order], velocities[order]
        keep = np.concatenate([[True], np.diff(times) > 1e-3])  # the same vector written by two slices
        return cls(epoch, times[keep], positions[keep], velocities[keep], orbits[0].source)

    def seconds(self, when: dt.datetime) -> float:
        """``when`` as seconds since this orbit's epoch."""
        return (when - self.epoch).total_seconds()

    def seconds_from(self, epoch: dt.datetime) -> np.ndarray:
        """The state vector times as seconds since another epoch."""
        return np.asarray(self.times + (self.epoch - epoch).total_seconds())

    def rebased(self, epoch: dt.datetime) -> Orbit:
        """The same orbit with times counted from ``epoch``."""
        return Orbit(epoch, self.seconds_from(epoch), self.positions, self.velocities, self.source)

    def cropped(self, start: float, stop: float, margin_s: float = 120.0) -> Orbit:
        """Only the vectors from ``start - margin`` to ``stop + margin`` (seconds), keeping enough to interpolate."""
        first = max(int(np.searchsorted(self.times, start - margin_s)) - 1, 0)
        last = min(int(np.searchsorted(self.times, stop + margin_s)) + 1, len(self.times))
        if last - first < LAGRANGE_POINTS:
            first = max(min(first, len(self.times) - LAGRANGE_POINTS), 0)
            last = min(first + LAGRANGE_POINTS, len(self.times))
        sl = slice(first, last)
        return Orbit(self.epoch, self.times[sl], self.positions[sl], self.velocities[sl], self.source)

    def require_span(self, start: float, stop: float, where: str) -> None:
        """Raise :class:`OrbitError` unless the vectors bracket ``[start, stop]`` (seconds since epoch)."""
        if start < self.times[0] or stop > self.times[-1]:
            first = self.epoch + dt.timedelta(seconds=float(self.times[0]))
            last = self.epoch + dt.timedelta(seconds=float(self.times[-1]))
            want0 = self.epoch + dt.timedelta(seconds=start)
            want1 = self.epoch + dt.timedelta(seconds=stop)
            raise OrbitError(
                f"{where}: the {self.source} orbit covers {first:%Y-%m-%dT%H:%M:%S} to {last:%H:%M:%S} but "
                f"{want0:%Y-%m-%dT%H:%M:%S.%f} to {want1:%H:%M:%S.%f} is needed"
            )

    def interpolate(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities (..., 3) at times ``t`` (seconds since epoch)."""
        t = np.asarray(t, dtype=np.float64)
        flat = t.reshape(-1)
        n = LAGRANGE_POINTS
        start = np.clip(np.searchsorted(self.times, flat) - n // 2, 0, len(self.times) - n)
        index = start[:, None] + np.arange(n)
        nodes = self.times[index]
        weights = _lagrange_weights(nodes, flat)
        pos = np.einsum("mk,mkc->mc", weights, self.positions[index])
        vel = np.einsum("mk,mkc->mc", weights, self.velocities[index])
        return pos.reshape((*t.shape, 3)), vel.reshape((*t.shape, 3))

    def acceleration(self, t: np.ndarray | float, step_s: float = 0.05) -> np.ndarray:
        """Acceleration (..., 3) by central difference of the interpolated velocity."""
        t = np.asarray(t, dtype=np.float64)
        _, v1 = self.interpolate(t + step_s)
        _, v0 = self.interpolate(t - step_s)
        return np.asarray((v1 - v0) / (2 * step_s))


def _lagrange_weights(nodes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Lagrange basis weights (M, n) for nodes (M, n) at points t (M,)."""
    n = nodes.shape[1]
    weights = np.ones_like(nodes)
    for j in range(n):
        for k in range(n):
            if k != j:
                weights[:, j] *= (t - nodes[:, k]) / (nodes[:, j] - nodes[:, k])
    return weights
