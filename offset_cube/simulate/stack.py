"""Simulate a stack of Sentinel-1 IW SLC acquisitions of one track over a moving glacier, with known truth.

Physics (TOPS ramps per ESA COPE-GSEG-EOPG-TN-14-0025, :mod:`offset_cube.geometry.tops`; speckle and decorrelation as
in :mod:`offset_cube.tracking.synthetic`):

* One complex ground reflectivity lives in *material* coordinates — the first date's radar lattice, sampled
  ×2 — as band-limited complex speckle (Hamming-weighted azimuth and range processing bands from the
  annotation) under a persistent amplitude texture (rock roughness, crevasse bands on the ice).
* Each date n sees it through its own true geometry: its pixel (ℓ, p) → ground point (its orbit, zero Doppler,
  ellipsoid + constant height) → where that material was on the first date (back along the known flow) →
  first-date radar coordinates (geo2rdr) → cubic-spline sample of the ×2 field. Geometric offsets between dates
  (baseline, along-track timing) and motion are therefore imposed by construction, not by a formula.
* Speckle decorrelates from date to date: reflectivity_n = γ · reflectivity_{n−1} + √(1 − γ²) · fresh speckle,
  so every consecutive pair (12 or 24 days) has coherence γ and dates k apart γᵏ (:func:`speckle_series`).
  Optionally (``coherence_floor`` γ∞ > 0, off by default) part of the speckle persists — scatterers that survive
  between dates, the long-term coherence of Rocca 2007, "Modeling interferogram stacks", IEEE TGRS 45(10),
  3289–3299 — and the coherence of dates k apart is γ∞ + (1 − γ∞) ρᵏ, with ρ set so that consecutive dates
  keep γ.
* Each burst gets the TOPS azimuth ramp its annotation implies (:func:`offset_cube.geometry.tops.reramp`), is
  scaled to ~60 DN per component, rounded to complex int16, and zero outside its valid lines and samples.

Only the area plus a margin carries data; the rest of each TIFF is sparse. The products are SAFE zips that the
engine reads exactly like real ones, with ``.EOF`` orbit files and the true velocity on the cube grid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.fft
from pyproj import Proj, Transformer
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import map_coordinates
from shapely.geometry import Point

from offset_cube.area import area_to_wkt, parse_area
from offset_cube.atomic import atomic_path, write_text_atomic
from offset_cube.builtin.radargrid import Lattice
from offset_cube.burst_safe import write_measurement_tiff
from offset_cube.cube.grid import auto_crs
from offset_cube.dem import dem_box
from offset_cube.errors import ConfigError
from offset_cube.geometry.ellipsoid import ecef_to_geodetic, geodetic_to_ecef
from offset_cube.geometry.orbit import Orbit
from offset_cube.geometry.outline import outline_lon_lat
from offset_cube.geometry.rangedoppler import geo2rdr, rdr2geo
from offset_cube.geometry.tops import burst_ramp, reramp
from offset_cube.safe.annotation import SwathAnnotation, parse_annotation
from offset_cube.safe.manifest import read_manifest
from offset_cube.safe.product import SafeProduct
from offset_cube.scenes import ProductName
from offset_cube.simulate.flow import FlowField, GroundTexture, NorthwardFlow, ValleyGlacier, advect
from offset_cube.simulate.orbits import propagate_orbit, sample_orbit, write_eof
from offset_cube.simulate.safe_writer import (
    ORBITS_PER_CYCLE,
    Retiming,
    retime_annotation,
    retime_manifest,
    swath_member_stem,
    write_safe_zip,
)
from offset_cube.simulate.terrain import FlatRelief, Terrain, ValleyRelief
from offset_cube.simulate.truth import write_truth

log = logging.getLogger(__name__)

#: Per-component standard deviation of the simulated SLC in DN (real IW SLCs: 48–86, annotation
#: ``imageStatistics/outputDataStdDev``).
TARGET_STD_DN = 60.0
#: Spacing of the exact-geometry nodes that the per-pixel mapping is interpolated from (lines, samples).
NODE_STEP = (4, 16)
#: Orbit arc propagated around the acquisition, seconds each side (EOF files hold ±10 min).
ORBIT_SPAN_S = 720.0
EOF_MARGIN_S = 600.0
#: Largest side of a simulated area: the demo template's four IW2 bursts span ~75 km along track (and the swath
#: ~90 km across), so a 70 km square with its margins stays inside them. Memory grows with the area: ~12 bytes
#: per pixel of the x2 material grid (4 x the area's radar pixels), ~6 GB at 64 km.
MAX_SIDE_M = 70_000.0
#: Lattice pixels rendered at once (lines x samples): bounds the sampling and re-ramping temporaries (~100 bytes
#: a pixel), whatever the area.
RENDER_PIXELS = 2**21
#: Coefficients either side of a sample that the cubic spline reads (it reads floor(x) - 1 .. floor(x) + 2).
SPLINE_REACH = 3


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Sizes in metres, the area in WGS84 WKT (default: a square centred on a burst seam)."""

    template: Path
    dates: int = 4
    coherence: float = 0.7
    #: Long-term coherence γ∞ (0: pure Markov decorrelation, coherence γᵏ between dates k apart).
    coherence_floor: float = 0.0
    seed: int = 0
    flow: Literal["glacier", "north"] = "glacier"
    #: 'valley': walls ≥ 1500 m around the glacier (:mod:`offset_cube.simulate.terrain`); None: 'valley' for the
    #: glacier flow, 'flat' for the northward band.
    relief: Literal["valley", "flat"] | None = None
    area_m: tuple[float, float] = (8000.0, 8000.0)
    area_wkt: str | None = None
    height_m: float | None = None
    margin_m: float = 1200.0
    swath: str | None = None
    polarisation: str | None = None
    max_delay_s: float = 0.015
    max_cross_track_m: float = 120.0
    max_radial_m: float = 30.0
    grid_spacing_m: float = 120.0
    #: The written DEM (``dem.tif``) covers the area plus this margin, at ``dem_step_deg`` (1″, GLO-30's posting).
    dem_margin_m: float = 8000.0
    dem_step_deg: float = 1.0 / 3600.0

    def __post_init__(self) -> None:
        if not 2 <= self.dates <= 30:
            raise ConfigError(f"dates must be 2..30, got {self.dates}")
        if not 0.0 < self.coherence <= 1.0:
            raise ConfigError(f"coherence must be in (0, 1], got {self.coherence}")
        if not 0.0 <= self.coherence_floor <= self.coherence or self.coherence_floor >= 1.0:
            raise ConfigError(
                f"coherence_floor must be in [0, coherence] and below 1, got {self.coherence_floor} "
                f"(coherence {self.coherence})"
            )
        if self.flow not in ("glacier", "north"):
            raise ConfigError(f"flow must be 'glacier' or 'north', got {self.flow!r}")
        if self.relief not in ("valley", "flat", None):
            raise ConfigError(f"relief must be 'valley' or 'flat', got {self.relief!r}")
        if self.relief == "valley" and self.flow != "glacier":
            raise ConfigError("relief 'valley' follows the valley glacier (flow 'glacier'); use relief 'flat'")
        if not all(1000.0 <= side <= MAX_SIDE_M for side in self.area_m):
            raise ConfigError(
                f"the area's sides must be 1..{MAX_SIDE_M / 1000:g} km, got {self.area_m[0]:g} x {self.area_m[1]:g} m"
            )


@dataclass
class SimulatedDate:
    """One simulated acquisition: its true orbit and lattice, and what was written."""

    index: int
    retiming: Retiming
    absolute_orbit: int
    cross_track_m: float
    radial_m: float
    orbit: Orbit
    lattice: Lattice
    annotation: SwathAnnotation
    annotation_xml: bytes = field(repr=False)
    product: Path | None = None
    orbit_file: Path | None = None

    @property
    def days(self) -> float:
        """Days after the first date (whole repeat cycles; the ms timing shift is negligible for motion)."""
        return 12.0 * self.retiming.cycles


@dataclass
class SimulatedStack:
    """The written stack and the truths a test needs (true orbits and lattices stay in memory)."""

    folder: Path
    area_wkt: str
    height_m: float  # the valley floor at the area's centre (everywhere, for a flat relief)
    crs: str
    polarisation: str
    swath: str
    terrain: Terrain
    dates: list[SimulatedDate] = field(default_factory=list)
    truth: Path | None = None
    flow: FlowField | None = None
    dem: Path | None = None

    def true_velocity(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The true (vx, vy) in m/yr, map axes of :attr:`crs`, at geographic positions."""
        if self.flow is None:
            raise ConfigError("this stack has no flow field")
        x, y = Transformer.from_crs("EPSG:4326", self.crs, always_xy=True).transform(lon, lat)
        return self.flow.velocity(np.asarray(x), np.asarray(y))

    @property
    def scenes(self) -> list[Path]:
        return [d.product for d in self.dates if d.product is not None]

    @property
    def scene_dir(self) -> Path:
        return self.folder / "scenes"

    @property
    def orbit_dir(self) -> Path:
        return self.folder / "orbits"

    def true_offsets(self, i: int, j: int, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Geometric offset of date j relative to date i (lines, samples) that the simulation imposed at date-i
        lattice positions, before motion: the same ground point through both dates' true orbits."""
        a, b = self.dates[i], self.dates[j]
        points = rdr2geo(a.orbit, a.lattice.line_time(lines), a.lattice.slant_range(samples), self.terrain)
        t, slant = geo2rdr(b.orbit, points, b.lattice.line_time(lines))
        lj, sj = b.lattice.radar_coords(t, slant)
        return lj - lines, sj - samples


def cycles_for(dates: int) -> list[int]:
    """12-day cycles of each date: consecutive, with one 24-day gap before the last date when there are ≥ 3."""
    if dates < 3:
        return list(range(dates))
    return [*range(dates - 1), dates]


def simulate_stack(config: SimulationConfig, out: Path) -> SimulatedStack:
    """Simulate and write the stack into ``out`` (scenes/, orbits/, truth.zarr, simulation.json)."""
    out = out.absolute()
    rng = np.random.default_rng(config.seed)
    with SafeProduct(config.template) as template:
        pol = config.polarisation or ("VV" if "VV" in template.polarisations else template.polarisations[0])
        swath = config.swath or max(template.swaths(pol), key=lambda s: len(template.annotation(s, pol).bursts))
        base = template.annotation(swath, pol)
        annotation_xml = template.archive.read(template.swath_file(swath, pol).annotation)
        manifest_xml = template.archive.read("manifest.safe")
        manifest = read_manifest(template.archive)
        name = ProductName.parse(template.product_id)
    if len(base.bursts) < 1:
        raise ConfigError(f"{config.template}: swath {swath} {pol} holds no bursts to simulate")
    height = config.height_m if config.height_m is not None else round(base.terrain_height_m or 0.0, -1)
    base_orbit = Orbit.from_annotation(base.orbit)
    dates = _make_dates(
        config, base, base_orbit, annotation_xml, height, manifest.absolute_orbit, int(name.datatake, 16), rng
    )
    area_wkt = config.area_wkt or default_area(dates[0], base, height, config.area_m)
    area = parse_area(area_wkt)
    crs = auto_crs(area)
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    xc, yc = to_map.transform(area.centroid.x, area.centroid.y)
    flow = _flow(config, float(xc), float(yc))
    relief = ValleyRelief(flow, floor_m=height) if isinstance(flow, ValleyGlacier) else FlatRelief(height)
    terrain = Terrain(relief if config.relief != "flat" else FlatRelief(height), crs)
    stack = SimulatedStack(out, area_wkt, height, crs, pol, swath, terrain, dates, flow=flow)
    scene = _Scene(config, stack, base, flow, rng)
    scene.render(name, manifest_xml)
    stack.truth = write_truth(out / "truth.zarr", area_wkt, config.grid_spacing_m, flow)
    stack.dem = terrain.write_geotiff(out / "dem.tif", dem_box(area, config.dem_margin_m), config.dem_step_deg)
    scene.write_geolocation()
    _write_description(stack, config)
    return stack


def _make_dates(
    config: SimulationConfig,
    base: SwathAnnotation,
    base_orbit: Orbit,
    annotation_xml: bytes,
    height: float,
    absolute_orbit: int,
    datatake: int,
    rng: np.random.Generator,
) -> list[SimulatedDate]:
    """Each date's retiming, true orbit (with baseline), re-timed annotation and lattice."""
    dates = []
    for index, cycles in enumerate(cycles_for(config.dates)):
        first = index == 0
        delay = 0.0 if first else round(float(rng.uniform(-1, 1)) * config.max_delay_s, 6)
        cross = 0.0 if first else float(rng.uniform(-1, 1)) * config.max_cross_track_m
        radial = 0.0 if first else float(rng.uniform(-1, 1)) * config.max_radial_m
        retiming = Retiming(cycles=cycles, delay_s=delay, datatake=(datatake + 0x101 * index) % 0xFFFFFF)
        epoch = base_orbit.epoch + retiming.orbit_shift
        orbit = propagate_orbit(base_orbit, epoch, ORBIT_SPAN_S, cross_track_m=cross, radial_m=radial)
        orbit_number = absolute_orbit + ORBITS_PER_CYCLE * cycles
        xml = retime_annotation(annotation_xml, retiming, orbit, height, orbit_number)
        annotation = parse_annotation(xml, source=f"simulated date {index}")
        lattice = Lattice(
            orbit=orbit,
            t0=orbit.seconds(annotation.bursts[0].azimuth_time),
            line_interval=annotation.azimuth_time_interval_s,
            tau0=annotation.slant_range_time_s,
            range_sampling_rate=annotation.range_sampling_rate_hz,
        )
        dates.append(SimulatedDate(index, retiming, orbit_number, cross, radial, orbit, lattice, annotation, xml))
    return dates


def default_area(first: SimulatedDate, base: SwathAnnotation, height: float, size_m: tuple[float, float]) -> str:
    """A map-square area centred on the seam between the middle bursts (or mid-burst for one), at mid-swath."""
    middle = len(base.bursts) // 2
    # Consecutive bursts overlap over their first ~25..140 lines: the seam sits near line 82 of the later one.
    line = _burst_line0(first, middle) + 82 if middle else base.lines_per_burst // 2
    s_first, s_last = base.bursts[middle].valid_samples
    sample = (s_first + s_last) / 2
    point = rdr2geo(first.orbit, first.lattice.line_time(line), first.lattice.slant_range(sample), height)
    lat, lon, _ = ecef_to_geodetic(point)
    crs = auto_crs(Point(float(lon), float(lat)))
    to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_geo = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xc, yc = to_map.transform(float(lon), float(lat))
    hx, hy = (extent / 2 for extent in size_m)
    ring = [(xc - hx, yc - hy), (xc + hx, yc - hy), (xc + hx, yc + hy), (xc - hx, yc + hy), (xc - hx, yc - hy)]
    lons, lats = to_geo.transform([p[0] for p in ring], [p[1] for p in ring])
    coords = ", ".join(f"{x:.6f} {y:.6f}" for x, y in zip(lons, lats, strict=True))
    return area_to_wkt(parse_area(f"POLYGON(({coords}))"))


def _burst_line0(date: SimulatedDate, k: int) -> int:
    burst = date.annotation.bursts[k]
    return round((date.orbit.seconds(burst.azimuth_time) - date.lattice.t0) / date.lattice.line_interval)


def _flow(config: SimulationConfig, xc: float, yc: float) -> FlowField:
    """The flow field centred on the area (its size does not depend on the area's)."""
    if config.flow == "north":
        return NorthwardFlow(x0=xc)
    return ValleyGlacier(x0=xc, y0=yc)


class _Scene:
    """The material reflectivity and how each date samples it."""

    def __init__(
        self,
        config: SimulationConfig,
        stack: SimulatedStack,
        base: SwathAnnotation,
        flow: FlowField,
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.stack = stack
        self.base = base
        self.flow = flow
        self.rng = rng
        self.to_map = Transformer.from_crs("EPSG:4326", stack.crs, always_xy=True)
        self.to_geo = Transformer.from_crs(stack.crs, "EPSG:4326", always_xy=True)
        centre = parse_area(stack.area_wkt).centroid
        # True metres → map metres (the flow is true m/yr on the map axes, as the cube stores velocity).
        factors = Proj(stack.crs).get_factors(float(centre.x), float(centre.y))
        self.map_scale = float(factors.meridional_scale)
        self.windows = [self._data_window(d) for d in stack.dates]
        #: Per date: node lines, node samples and the true latitude/longitude seen there (for the demo's check).
        self.geolocation: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.mappings = [self._mapping(d, w) for d, w in zip(stack.dates, self.windows, strict=True)]
        self.origin, self.shape = self._material_extent()

    # ------------------------------------------------------------------ geometry

    def _data_window(self, date: SimulatedDate) -> tuple[tuple[int, int], tuple[int, int]]:
        """Lattice lines and samples that carry data: the area plus the margin, within the bursts."""
        lon, lat = outline_lon_lat(parse_area(self.stack.area_wkt))
        points = geodetic_to_ecef(lat, lon, self.stack.terrain(lat, lon))
        t, slant = geo2rdr(date.orbit, points, date.lattice.line_time(self.base.lines_per_burst))
        lines, samples = date.lattice.radar_coords(t, slant)
        inc = math.radians(self.base.incidence_angle_mid_deg or 35.0)
        margin_l = math.ceil(self.config.margin_m / self.base.azimuth_pixel_spacing_m)
        margin_s = math.ceil(self.config.margin_m * math.sin(inc) / date.lattice.range_spacing)
        n_lines = _burst_line0(date, len(self.base.bursts) - 1) + self.base.lines_per_burst
        return (
            (max(math.floor(lines.min()) - margin_l, 0), min(math.ceil(lines.max()) + margin_l, n_lines)),
            (
                max(math.floor(samples.min()) - margin_s, 0),
                min(math.ceil(samples.max()) + margin_s, self.base.samples_per_burst),
            ),
        )

    def _ground_map(self, date: SimulatedDate, lines: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, ...]:
        """Map coordinates (x, y) of lattice positions of ``date`` on the simulated ground surface."""
        points = rdr2geo(
            date.orbit, date.lattice.line_time(lines), date.lattice.slant_range(samples), self.stack.terrain
        )
        lat, lon, _ = ecef_to_geodetic(points)
        x, y = self.to_map.transform(lon, lat)
        return np.asarray(x), np.asarray(y)

    def _mapping(
        self, date: SimulatedDate, window: tuple[tuple[int, int], tuple[int, int]]
    ) -> tuple[RectBivariateSpline, RectBivariateSpline]:
        """Splines from ``date``'s lattice (line, sample) to material coordinates on the first date's lattice."""
        (l0, l1), (s0, s1) = window
        node_l = np.arange(l0 - NODE_STEP[0], l1 + 2 * NODE_STEP[0], NODE_STEP[0], dtype=np.float64)
        node_s = np.arange(s0 - NODE_STEP[1], s1 + 2 * NODE_STEP[1], NODE_STEP[1], dtype=np.float64)
        mesh_l, mesh_s = np.meshgrid(node_l, node_s, indexing="ij")
        x, y = self._ground_map(date, mesh_l, mesh_s)
        lon, lat = self.to_geo.transform(x, y)
        self.geolocation.append((node_l, node_s, np.asarray(lat), np.asarray(lon)))
        # Material moves along the (steady) surface: back along the flow in the map, at the terrain's height there.
        x0, y0 = advect(self.flow, x, y, -date.days, self.map_scale) if date.days else (x, y)
        lon0, lat0 = self.to_geo.transform(x0, y0)
        first = self.stack.dates[0]
        lat0, lon0 = np.asarray(lat0), np.asarray(lon0)
        points = geodetic_to_ecef(lat0, lon0, self.stack.terrain(lat0, lon0))
        t, slant = geo2rdr(first.orbit, points, first.lattice.line_time(mesh_l))
        m_lines, m_samples = first.lattice.radar_coords(t, slant)
        return RectBivariateSpline(node_l, node_s, m_lines), RectBivariateSpline(node_l, node_s, m_samples)

    def _material_extent(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Origin (line, sample) and size of the material grid (first-date lattice) every date needs."""
        lows, highs = [], []
        for (lines, samples), (spl_l, spl_s) in zip(self.windows, self.mappings, strict=True):
            ll = np.linspace(lines[0], lines[1], 9)
            ss = np.linspace(samples[0], samples[1], 9)
            m_l, m_s = spl_l(ll, ss), spl_s(ll, ss)
            lows.append((m_l.min(), m_s.min()))
            highs.append((m_l.max(), m_s.max()))
        pad = 12
        origin = (math.floor(min(v[0] for v in lows)) - pad, math.floor(min(v[1] for v in lows)) - pad)
        end = (math.ceil(max(v[0] for v in highs)) + pad, math.ceil(max(v[1] for v in highs)) + pad)
        return origin, (end[0] - origin[0], end[1] - origin[1])

    def write_geolocation(self) -> None:
        """``geolocation/date<i>.npz``: where each date's lattice nodes truly look (lat, lon on the terrain)."""
        folder = self.stack.folder / "geolocation"
        folder.mkdir(parents=True, exist_ok=True)
        for date, (lines, samples, lat, lon) in zip(self.stack.dates, self.geolocation, strict=True):
            with atomic_path(folder / f"date{date.index}.npz") as tmp, tmp.open("wb") as handle:
                np.savez(handle, lines=lines, samples=samples, latitude=lat, longitude=lon)

    # ------------------------------------------------------------------ reflectivity

    def _amplitude(self) -> np.ndarray:
        """Ground amplitude on the ×2 material grid (float32), padded by its edge values to an FFT-friendly shape:
        evaluated at native spacing, block by block, then interpolated (it varies over tens of metres, several
        native pixels)."""
        first = self.stack.dates[0]
        n_l, n_s = self.shape
        coarse_l = np.arange(self.origin[0] - 8, self.origin[0] + self.shape[0] + 16, 8, dtype=np.float64)
        coarse_s = np.arange(self.origin[1] - 32, self.origin[1] + self.shape[1] + 64, 32, dtype=np.float64)
        mesh_l, mesh_s = np.meshgrid(coarse_l, coarse_s, indexing="ij")
        x, y = self._ground_map(first, mesh_l, mesh_s)
        spl_x, spl_y = RectBivariateSpline(coarse_l, coarse_s, x), RectBivariateSpline(coarse_l, coarse_s, y)
        bounds = (float(x.min()) - 500, float(y.min()) - 500, float(x.max()) + 500, float(y.max()) + 500)
        texture = GroundTexture.random(self.flow, bounds, self.rng)
        lines = self.origin[0] + np.arange(n_l + 1, dtype=np.float64)
        samples = self.origin[1] + np.arange(n_s + 1, dtype=np.float64)
        native = np.empty((n_l + 1, n_s + 1), dtype=np.float32)
        for r0, r1 in _row_blocks(native.shape, 2**20):
            block = lines[r0:r1]
            native[r0:r1] = texture.amplitude(spl_x(block, samples), spl_y(block, samples))
        amplitude = np.empty((scipy.fft.next_fast_len(2 * n_l), scipy.fft.next_fast_len(2 * n_s)), dtype=np.float32)
        _double_into(native, amplitude)
        amplitude[2 * n_l :, : 2 * n_s] = amplitude[2 * n_l - 1, : 2 * n_s]  # as np.pad(mode="edge"): rows first
        amplitude[:, 2 * n_s :] = amplitude[:, 2 * n_s - 1 : 2 * n_s]
        return amplitude

    def _bands(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Separable Hamming-weighted processing bands (annotation ``swathProcParams``) on the ×2 grid's FFT
        frequencies (azimuth, range), divided by the cubic B-spline's sampled response so that the field comes out
        as spline coefficients: evaluating them with ``map_coordinates(order=3, prefilter=False)`` interpolates the
        band-limited field exactly as a spline prefilter would, without one."""
        base = self.base
        az = _band(shape[0], base.azimuth_bandwidth_hz * base.azimuth_time_interval_s, base.azimuth_window_coefficient)
        rg = _band(shape[1], base.range_bandwidth_hz / base.range_sampling_rate_hz, base.range_window_coefficient)
        return az, rg

    def _speckle(self, amplitude: np.ndarray, bands: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Spline coefficients of a fresh band-limited complex speckle field under the texture ``amplitude``.

        Built in place in one complex64 array (the FFTs overwrite it); the noise, the amplitude product and the
        band filter go by row blocks, so the only full-size temporary is the field itself (8 bytes a pixel).
        """
        n_rows, n_cols = amplitude.shape
        noise = np.empty((n_rows, n_cols), dtype=np.complex64)
        for part in ("real", "imag"):  # the same draws, in the same order, as one call per part
            for r0, r1 in _row_blocks(noise.shape):
                getattr(noise[r0:r1], part)[...] = self.rng.standard_normal((r1 - r0, n_cols), np.float32)
        az, rg = bands
        for r0, r1 in _row_blocks(noise.shape):
            noise[r0:r1] *= amplitude[r0:r1]
        spec = scipy.fft.fft2(noise, workers=-1, overwrite_x=True)
        for r0, r1 in _row_blocks(spec.shape):
            spec[r0:r1] *= np.asarray(az[r0:r1, None] * rg[None, :], dtype=np.float32)
        return np.asarray(scipy.fft.ifft2(spec, workers=-1, overwrite_x=True), dtype=np.complex64)

    # ------------------------------------------------------------------ output

    def render(self, name: ProductName, manifest_xml: bytes) -> None:
        """Generate every date's pixels and write its SAFE zip and orbit file."""
        scene_dir, orbit_dir = self.stack.scene_dir, self.stack.orbit_dir
        scene_dir.mkdir(parents=True, exist_ok=True)
        orbit_dir.mkdir(parents=True, exist_ok=True)
        amplitude = self._amplitude()
        bands = self._bands(amplitude.shape)
        with tempfile.TemporaryDirectory(dir=self.stack.folder) as tmp:
            series = speckle_series(
                lambda: self._speckle(amplitude, bands),
                len(self.stack.dates),
                self.config.coherence,
                self.config.coherence_floor,
                scale_of=lambda field: TARGET_STD_DN / _field_std(field, self.rng),
                spill=Path(tmp) / "previous.c64",
            )
            for (reflectivity, scale), date, window, mapping in zip(
                series, self.stack.dates, self.windows, self.mappings, strict=True
            ):
                self._write(date, name, manifest_xml, self._bursts(date, window, mapping, reflectivity, scale))
                log.info("simulated %s", date.product)

    def _bursts(
        self,
        date: SimulatedDate,
        window: tuple[tuple[int, int], tuple[int, int]],
        mapping: tuple[RectBivariateSpline, RectBivariateSpline],
        reflectivity: np.ndarray,
        scale: float,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(TIFF row, column, complex int16-valued data) of every burst part inside the data window, a few
        lines at a time (:data:`RENDER_PIXELS`), so the temporaries do not grow with the area."""
        (wl0, wl1), (ws0, ws1) = window
        for k, burst in enumerate(date.annotation.bursts):
            line0 = _burst_line0(date, k)
            first, last = burst.valid_lines
            s_first, s_last = burst.valid_samples
            l0, l1 = max(wl0, line0 + first), min(wl1, line0 + last + 1)
            s0, s1 = max(ws0, s_first), min(ws1, s_last + 1)
            if l1 <= l0 or s1 <= s0:
                continue
            samples = np.arange(s0, s1, dtype=np.float64)
            ramp = burst_ramp(date.annotation, burst, date.orbit, np.arange(s0, s1))
            step = max(RENDER_PIXELS // (s1 - s0), 1)
            for c0 in range(l0, l1, step):
                c1 = min(c0 + step, l1)
                values = self._sample(reflectivity, mapping, np.arange(c0, c1, dtype=np.float64), samples)
                data = reramp(values.astype(np.complex64), ramp, np.arange(c0 - line0, c1 - line0)) * scale
                data = np.clip(np.round(data.real), -32767, 32767) + 1j * np.clip(np.round(data.imag), -32767, 32767)
                yield k * self.base.lines_per_burst + (c0 - line0), s0, data.astype(np.complex64)

    def _sample(
        self,
        reflectivity: np.ndarray,
        mapping: tuple[RectBivariateSpline, RectBivariateSpline],
        lines: np.ndarray,
        samples: np.ndarray,
    ) -> np.ndarray:
        """The field (spline coefficients ``reflectivity``) at a date's lattice ``lines`` × ``samples``.

        Only the part of the field the cubic spline reaches is copied into the real and imaginary arrays that
        ``map_coordinates`` needs; coordinates shift by whole pixels, exactly, so the values are those of the
        whole field."""
        rows = 2.0 * (mapping[0](lines, samples) - self.origin[0])
        cols = 2.0 * (mapping[1](lines, samples) - self.origin[1])
        r0, c0 = max(math.floor(rows.min()) - SPLINE_REACH, 0), max(math.floor(cols.min()) - SPLINE_REACH, 0)
        r1 = min(math.floor(rows.max()) + SPLINE_REACH + 1, reflectivity.shape[0])
        c1 = min(math.floor(cols.max()) + SPLINE_REACH + 1, reflectivity.shape[1])
        part = reflectivity[r0:r1, c0:c1]
        coords = [rows - r0, cols - c0]
        re = map_coordinates(part.real.copy(), coords, order=3, prefilter=False)
        return np.asarray(re + 1j * map_coordinates(part.imag.copy(), coords, order=3, prefilter=False))

    def _write(
        self, date: SimulatedDate, name: ProductName, manifest_xml: bytes, blocks: Iterator[tuple[int, int, np.ndarray]]
    ) -> None:
        """The date's SAFE zip (manifest, annotation, measurement) and its .EOF orbit file."""
        retiming, ann = date.retiming, date.annotation
        manifest = retime_manifest(manifest_xml, retiming, date.absolute_orbit, self.stack.polarisation)
        start, stop = name.start + retiming.time_shift, name.stop + retiming.time_shift
        product_id = _product_id(name, self.stack.polarisation, start, stop, date.absolute_orbit, retiming.datatake)
        stem = swath_member_stem(
            name.mission,
            self.stack.swath,
            self.stack.polarisation,
            ann.start,
            ann.stop,
            date.absolute_orbit,
            retiming.datatake,
            ann.image_number,
        )
        with tempfile.TemporaryDirectory(dir=self.stack.scene_dir) as tmp:
            tiff = Path(tmp) / f"{stem}.tiff"
            write_measurement_tiff(tiff, (ann.number_of_lines, ann.samples_per_burst), blocks)
            date.product = write_safe_zip(
                self.stack.scene_dir / f"{product_id}.zip",
                product_id,
                {
                    "manifest.safe": manifest,
                    f"annotation/{stem}.xml": date.annotation_xml,
                    f"measurement/{stem}.tiff": tiff,
                },
            )
        first_burst = date.orbit.epoch + dt.timedelta(seconds=date.lattice.t0)
        margin = dt.timedelta(seconds=EOF_MARGIN_S)
        vectors = sample_orbit(date.orbit, first_burst - margin, first_burst + margin)
        created = (first_burst + dt.timedelta(days=20)).replace(microsecond=0)
        date.orbit_file = write_eof(self.stack.orbit_dir, name.mission, vectors, created, date.absolute_orbit)


def speckle_series(
    draw: Callable[[], np.ndarray],
    dates: int,
    coherence: float,
    floor: float = 0.0,
    scale_of: Callable[[np.ndarray], float] | None = None,
    spill: Path | None = None,
) -> Iterator[tuple[np.ndarray, float]]:
    """Each date's reflectivity (and the DN scale ``scale_of`` gives for the first date's; 1 without it) from
    unit-variance fields ``draw()`` returns.

    Without a floor, a Markov chain: x_n = γ x_{n−1} + √(1 − γ²) fresh_n, so dates k apart have coherence γᵏ. With
    a floor γ∞ > 0, x_n = √γ∞ P + √(1 − γ∞) m_n with a persistent field P and a Markov chain m_n of memory
    ρ = (γ − γ∞)/(1 − γ∞): coherence γ∞ + (1 − γ∞) ρᵏ (Rocca 2007, IEEE TGRS 45(10), 3289–3299, exponential decay to a
    long-term coherence). The first date draws first, then its scale, then the persistent field, then one fresh
    field per later date: without a floor the draws are those of the plain chain.

    With ``spill`` (a file path) the previous date's field waits there while the fresh one is drawn, and is read
    back by row blocks, so only one varying field is in memory at a time (a 64 km area's is ~3.7 GB).
    """
    memory = (coherence - floor) / (1.0 - floor)
    varying = draw()
    scale = scale_of(varying) if scale_of is not None else 1.0
    persistent = draw() if floor > 0 else None
    for index in range(dates):
        if index and spill is None:
            fresh = draw()
            varying *= memory
            varying += math.sqrt(1.0 - memory**2) * fresh
            del fresh
        elif index and spill is not None:
            varying.tofile(spill)
            del varying
            varying = draw()
            varying *= math.sqrt(1.0 - memory**2)
            n_cols = varying.shape[1]
            with spill.open("rb") as previous:  # read back by blocks, not mapped: RSS stays one field
                for r0, r1 in _row_blocks(varying.shape):
                    block = np.fromfile(previous, varying.dtype, (r1 - r0) * n_cols).reshape(r1 - r0, n_cols)
                    block *= memory
                    varying[r0:r1] += block
        if persistent is None:
            yield varying, scale
        else:
            yield math.sqrt(1.0 - floor) * varying + math.sqrt(floor) * persistent, scale


def _double_into(native: np.ndarray, out: np.ndarray) -> None:
    """Bilinear ×2 upsampling of an (n + 1, m + 1) grid onto the (2n, 2m) grid of half-pixel steps, written into
    the top-left corner of ``out`` by row blocks."""
    n, m = native.shape[0] - 1, native.shape[1] - 1
    for r0, r1 in _row_blocks((n, m)):
        rows = np.empty((2 * (r1 - r0), m + 1), dtype=native.dtype)
        rows[0::2] = native[r0:r1]
        rows[1::2] = 0.5 * (native[r0:r1] + native[r0 + 1 : r1 + 1])
        out[2 * r0 : 2 * r1, 0 : 2 * m : 2] = rows[:, :-1]
        out[2 * r0 : 2 * r1, 1 : 2 * m : 2] = 0.5 * (rows[:, :-1] + rows[:, 1:])


def _row_blocks(shape: tuple[int, ...], pixels: int = 2**22) -> Iterator[tuple[int, int]]:
    """``[r0, r1)`` row ranges of about ``pixels`` pixels each covering an array of ``shape``."""
    step = max(pixels // max(shape[1], 1), 1)
    for r0 in range(0, shape[0], step):
        yield r0, min(r0 + step, shape[0])


def _band(n: int, fraction: float, alpha: float) -> np.ndarray:
    """Hamming window ``α + (1 − α) cos(2π f / B)`` over |f| < B/2 (f in cycles per native pixel) on a ×2 grid,
    over the cubic B-spline's sampled response (2 + cos 2πf')/3 (f' in cycles per ×2 sample)."""
    f_os = scipy.fft.fftfreq(n)
    f = 2.0 * f_os
    window = alpha + (1.0 - alpha) * np.cos(2 * np.pi * f / fraction)
    spline = (2.0 + np.cos(2 * np.pi * f_os)) / 3.0
    return np.asarray(np.where(np.abs(f) < fraction / 2, window / spline, 0.0))


def _field_std(coefficients: np.ndarray, rng: np.random.Generator, count: int = 20000) -> float:
    """Per-component standard deviation of the field that spline ``coefficients`` describe (sampled)."""
    rows = rng.uniform(8, coefficients.shape[0] - 8, count)
    cols = rng.uniform(8, coefficients.shape[1] - 8, count)
    re = map_coordinates(coefficients.real, [rows, cols], order=3, prefilter=False)
    im = map_coordinates(coefficients.imag, [rows, cols], order=3, prefilter=False)
    return float(np.sqrt((np.mean(re**2) + np.mean(im**2)) / 2))


def _product_id(name: ProductName, pol: str, start: dt.datetime, stop: dt.datetime, orbit: int, take: int) -> str:
    fmt = "%Y%m%dT%H%M%S"
    stem = f"{name.mission}_IW_SLC__1SS{pol[0]}_{start:{fmt}}_{stop:{fmt}}_{orbit:06d}_{take:06X}"
    crc = hashlib.sha1(stem.encode()).hexdigest()[:4].upper()
    return f"{stem}_{crc}"


def _relative(path: Path | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` when inside it (the stack's folder can then be moved), else absolute."""
    if path is None:
        return None
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def _write_description(stack: SimulatedStack, config: SimulationConfig) -> None:
    """simulation.json: what was simulated, for people and for the demo (paths relative to the stack's folder)."""
    doc = {
        "template": str(config.template),
        "area": stack.area_wkt,
        "height_m": stack.height_m,
        "relief": "flat" if stack.terrain.is_flat else "valley",
        "dem": _relative(stack.dem, stack.folder),
        "crs": stack.crs,
        "polarisation": stack.polarisation,
        "swath": stack.swath,
        "coherence": config.coherence,
        "coherence_floor": config.coherence_floor,
        "seed": config.seed,
        "flow": config.flow,
        "grid_spacing_m": config.grid_spacing_m,
        "truth": _relative(stack.truth, stack.folder),
        "dates": [
            {
                "scene": _relative(d.product, stack.folder),
                "orbit_file": _relative(d.orbit_file, stack.folder),
                "geolocation": _relative(stack.folder / "geolocation" / f"date{d.index}.npz", stack.folder),
                "days_after_first": d.days,
                "along_track_delay_s": d.retiming.delay_s,
                "cross_track_baseline_m": round(d.cross_track_m, 3),
                "radial_baseline_m": round(d.radial_m, 3),
            }
            for d in stack.dates
        ],
    }
    write_text_atomic(stack.folder / "simulation.json", json.dumps(doc, indent=2))
