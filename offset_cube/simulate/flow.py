"""Known surface flow fields and the persistent ground texture of the simulated stack.

Velocities are in map metres per year in the cube's projected CRS (x east-ish, y north-ish), as the cube
stores them. Material moves along the (steady) flow: :func:`advect` integrates positions through time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

DAYS_PER_YEAR = 365.25


class FlowField(Protocol):
    """A steady velocity field in map coordinates."""

    def velocity(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vx, vy) in m/yr at map positions (m)."""
        ...

    def glacier_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0 on stable ground, 1 on the ice (used for the crevasse texture)."""
        ...


@dataclass(frozen=True)
class ValleyGlacier:
    """A meandering valley glacier crossing the area, ``v_min`` → ``v_max`` m/yr downstream, stable rock around.

    ``direction_deg`` is the mean flow direction clockwise from map north; the speed grows smoothly along it
    over ``length_m``; the cross profile is flat-topped with smooth (tanh) shear margins ``margin_m`` wide.
    """

    x0: float
    y0: float
    direction_deg: float = 225.0
    length_m: float = 8000.0
    width_m: float = 2500.0
    v_min: float = 200.0
    v_max: float = 800.0
    margin_m: float = 300.0
    meander_m: float = 300.0
    meander_wavelength_m: float = 14000.0

    def frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Along-flow u, across-flow distance to the centreline d, and the centreline's slope."""
        a = np.radians(self.direction_deg)
        dx, dy = np.asarray(x) - self.x0, np.asarray(y) - self.y0
        u = dx * np.sin(a) + dy * np.cos(a)
        w = dx * np.cos(a) - dy * np.sin(a)
        k = 2 * np.pi / self.meander_wavelength_m
        centre = self.meander_m * np.sin(k * u)
        slope = self.meander_m * k * np.cos(k * u)
        return u, w - centre, slope, np.full(np.shape(u), a)

    def glacier_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        _, d, _, _ = self.frame(x, y)
        return np.asarray(0.5 * (1.0 - np.tanh((np.abs(d) - self.width_m / 2) / self.margin_m)))

    def velocity(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u, d, slope, a = self.frame(x, y)
        ramp = np.tanh(2.5 * u / self.length_m) / np.tanh(1.25)
        along = 0.5 * (self.v_min + self.v_max) + 0.5 * (self.v_max - self.v_min) * np.clip(ramp, -1, 1)
        profile = 1.0 - 0.3 * np.clip(d / (self.width_m / 2), -1, 1) ** 2
        speed = along * profile * self.glacier_weight(x, y)
        norm = np.sqrt(1.0 + slope**2)
        tu, tw = 1.0 / norm, slope / norm  # unit tangent of the centreline in (u, w)
        vx = speed * (tu * np.sin(a) + tw * np.cos(a))
        vy = speed * (tu * np.cos(a) - tw * np.sin(a))
        return vx, vy


@dataclass(frozen=True)
class NorthwardFlow:
    """A straight band of ice flowing due north (map +y) at ``speed`` m/yr, stable ground on both sides."""

    x0: float
    width_m: float = 1500.0
    speed: float = 500.0
    margin_m: float = 300.0

    def glacier_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.abs(np.asarray(x, dtype=np.float64) - self.x0)
        weight = 0.5 * (1.0 - np.tanh((d - self.width_m / 2) / self.margin_m))
        return np.asarray(np.broadcast_to(weight, np.broadcast_shapes(np.shape(x), np.shape(y))))

    def velocity(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weight = self.glacier_weight(x, y)
        return np.zeros_like(weight), self.speed * weight


def advect(
    flow: FlowField, x: np.ndarray, y: np.ndarray, days: float, map_scale: float = 1.0, steps: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Where material at map position (x, y) is ``days`` later (negative: where it was), by RK4 along the steady
    flow; ``map_scale`` turns the flow's true metres into map metres (the projection's point scale factor)."""
    h = map_scale * days / DAYS_PER_YEAR / steps
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    for _ in range(steps):
        k1 = flow.velocity(x, y)
        k2 = flow.velocity(x + 0.5 * h * k1[0], y + 0.5 * h * k1[1])
        k3 = flow.velocity(x + 0.5 * h * k2[0], y + 0.5 * h * k2[1])
        k4 = flow.velocity(x + h * k3[0], y + h * k3[1])
        x = x + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        y = y + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return x, y


@dataclass(frozen=True)
class GroundTexture:
    """Backscatter amplitude of the ground in material (first-date map) coordinates: rough rock everywhere,
    transverse crevasse bands on the ice. Smooth at the ~100 m scale, so it rides on the speckle."""

    flow: FlowField
    x_min: float
    y_min: float
    cell_m: float
    roughness: np.ndarray  # unit-variance smooth random field on a map grid
    crevasse_spacing_m: float = 160.0

    @classmethod
    def random(
        cls, flow: FlowField, bounds: tuple[float, float, float, float], rng: np.random.Generator, cell_m: float = 20.0
    ) -> GroundTexture:
        x_min, y_min, x_max, y_max = bounds
        shape = (int((y_max - y_min) / cell_m) + 2, int((x_max - x_min) / cell_m) + 2)
        field = gaussian_filter(rng.standard_normal(shape), sigma=4.0, mode="wrap")
        field /= field.std()
        return cls(flow, x_min, y_min, cell_m, field)

    def amplitude(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rows = (np.asarray(y) - self.y_min) / self.cell_m
        cols = (np.asarray(x) - self.x_min) / self.cell_m
        rough = map_coordinates(self.roughness, [rows, cols], order=1, mode="nearest")
        amplitude = np.exp(0.35 * rough)
        vx, vy = self.flow.velocity(x, y)
        speed = np.hypot(vx, vy)
        # Crevasses open across the flow: bands perpendicular to the local flow direction, bent by roughness.
        ux = np.where(speed > 0, vx / np.maximum(speed, 1e-9), 0.0)
        uy = np.where(speed > 0, vy / np.maximum(speed, 1e-9), 1.0)
        phase = 2 * np.pi * (np.asarray(x) * ux + np.asarray(y) * uy) / self.crevasse_spacing_m + 1.5 * rough
        bands = np.maximum(np.cos(phase), 0.0) ** 6
        return np.asarray(amplitude * (1.0 + 1.5 * bands * self.flow.glacier_weight(x, y)))
