"""One acquisition date as one debursted radar grid: bursts of one or more swaths (and slices) on one lattice.

Line ℓ of the grid is zero-Doppler time ``t0 + ℓ·Δt`` and sample p is two-way slant-range time ``τ0 + p/f_s``.
Bursts, swaths and consecutive slices of a data-take sit on this lattice at integer offsets (residuals
< 3·10⁻⁴ line on real products; ISCE2's ``TopsProc/VRTManager.py`` places bursts by rounding too), so debursting
needs no interpolation. Each burst owns a rectangle of the grid: its valid lines and samples, cut where it overlaps
a neighbour at the midpoint of the *valid* overlap (a fixed crop, like xarray-sentinel's ``mosaic_slc_iw(crop=90)``,
leaves gaps). Bursts are deramped (TOPS, :mod:`offset_cube.geometry.tops`) as they are read, so the grid is at
baseband everywhere, as the tracker's complex oversampling requires.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from offset_cube.builtin.whitening import BandWeighting, Whitening
from offset_cube.errors import SafeError
from offset_cube.geometry.orbit import Orbit
from offset_cube.geometry.tops import burst_ramp, deramp
from offset_cube.safe.annotation import SPEED_OF_LIGHT, Burst, SwathAnnotation
from offset_cube.safe.product import SafeProduct

#: Largest tolerated departure of a burst or swath from the integer lattice (lines or samples).
LATTICE_TOLERANCE = 0.05


@dataclass(frozen=True)
class SwathSource:
    """One swath × polarisation of one product."""

    product: SafeProduct
    swath: str
    polarisation: str
    annotation: SwathAnnotation


@dataclass(frozen=True)
class BurstTile:
    """The part of the grid one burst provides: lines ``[l0, l1)`` and samples ``[s0, s1)`` of the grid."""

    source: SwathSource
    burst: Burst
    line0: int  # grid line of the burst's first line
    sample0: int  # grid sample of the swath file's first sample
    lines: tuple[int, int]
    samples: tuple[int, int]

    def intersect(self, lines: tuple[int, int], samples: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """The tile's part of a window (may be empty: stop <= start)."""
        return (
            (max(lines[0], self.lines[0]), min(lines[1], self.lines[1])),
            (max(samples[0], self.samples[0]), min(samples[1], self.samples[1])),
        )


@dataclass(frozen=True)
class Lattice:
    """A date's radar lattice: line ℓ at ``t0 + ℓ·Δt`` and sample p at ``τ0 + p/f_s`` (seconds since the
    orbit's epoch; τ two-way)."""

    orbit: Orbit
    t0: float
    line_interval: float
    tau0: float
    range_sampling_rate: float

    @property
    def range_spacing(self) -> float:
        """Slant-range pixel spacing c / (2 f_s), metres."""
        return SPEED_OF_LIGHT / (2.0 * self.range_sampling_rate)

    def line_time(self, lines: np.ndarray | float) -> np.ndarray:
        return np.asarray(self.t0 + np.asarray(lines, dtype=np.float64) * self.line_interval)

    def slant_range(self, samples: np.ndarray | float) -> np.ndarray:
        tau = self.tau0 + np.asarray(samples, dtype=np.float64) / self.range_sampling_rate
        return np.asarray(tau * SPEED_OF_LIGHT / 2.0)

    def radar_coords(self, t: np.ndarray, slant_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (line, sample) of zero-Doppler time ``t`` and slant range (m)."""
        lines = (np.asarray(t) - self.t0) / self.line_interval
        samples = (2.0 * np.asarray(slant_range) / SPEED_OF_LIGHT - self.tau0) * self.range_sampling_rate
        return lines, samples

    def time_of(self, lines: float) -> dt.datetime:
        return self.orbit.epoch + dt.timedelta(seconds=float(self.line_time(lines)))


@dataclass(frozen=True)
class RadarGrid(Lattice):
    """The debursted lattice of one date: its bursts' tiles and the pixels they provide."""

    wavelength: float
    shape: tuple[int, int]
    tiles: tuple[BurstTile, ...]
    polarisation: str
    #: Applied to every burst as it is read (complex tracking; :mod:`offset_cube.builtin.whitening`), or None.
    whitening: Whitening | None = None

    @property
    def swaths(self) -> list[str]:
        return sorted({t.source.swath for t in self.tiles})

    @property
    def products(self) -> list[SafeProduct]:
        seen: dict[str, SafeProduct] = {}
        for tile in self.tiles:
            seen.setdefault(str(tile.source.product.path), tile.source.product)
        return list(seen.values())

    def covered(self, lines: tuple[int, int], samples: tuple[int, int]) -> int:
        """How many pixels of a window some burst provides."""
        total = 0
        for tile in self.tiles:
            (l0, l1), (s0, s1) = tile.intersect(lines, samples)
            total += max(l1 - l0, 0) * max(s1 - s0, 0)
        return total

    def read(self, lines: tuple[int, int], samples: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Deramped (and, with :attr:`whitening`, whitened) complex64 pixels of grid lines ``[l0, l1)`` × samples
        ``[s0, s1)`` and a validity mask.

        Parts of the window outside every burst (or outside the grid) are zero and invalid.
        """
        out = np.zeros((lines[1] - lines[0], samples[1] - samples[0]), dtype=np.complex64)
        valid = np.zeros(out.shape, dtype=bool)
        for tile in self.tiles:
            (l0, l1), (s0, s1) = tile.intersect(lines, samples)
            if l1 <= l0 or s1 <= s0:
                continue
            out[l0 - lines[0] : l1 - lines[0], s0 - samples[0] : s1 - samples[0]] = self._tile_pixels(
                tile, (l0, l1), (s0, s1)
            )
            valid[l0 - lines[0] : l1 - lines[0], s0 - samples[0] : s1 - samples[0]] = True
        return out, valid

    def _tile_pixels(self, tile: BurstTile, lines: tuple[int, int], samples: tuple[int, int]) -> np.ndarray:
        """A tile's deramped pixels (grid lines and samples inside the tile), whitened from the burst's own valid
        pixels around them (a margin beyond the tile's cut) when :attr:`whitening` is set."""
        annotation = tile.source.annotation
        (l0, l1), (s0, s1) = lines, samples
        if self.whitening is not None:
            margin_l, margin_s = self.whitening.margin
            first, last = tile.burst.valid_lines
            s_first, s_last = tile.burst.valid_samples
            l0 = max(l0 - margin_l, tile.line0 + first)
            l1 = min(l1 + margin_l, tile.line0 + last + 1)
            s0 = max(s0 - margin_s, tile.sample0 + s_first)
            s1 = min(s1 + margin_s, tile.sample0 + s_last + 1)
        burst_lines = np.arange(l0 - tile.line0, l1 - tile.line0)
        file_samples = np.arange(s0 - tile.sample0, s1 - tile.sample0)
        first_row = tile.burst.index * annotation.lines_per_burst
        data = tile.source.product.read_window(
            tile.source.swath,
            tile.source.polarisation,
            (first_row + int(burst_lines[0]), first_row + int(burst_lines[-1]) + 1),
            (int(file_samples[0]), int(file_samples[-1]) + 1),
        )
        ramp = burst_ramp(annotation, tile.burst, self.orbit, file_samples)
        pixels = deramp(data, ramp, burst_lines)
        if self.whitening is None:
            return pixels
        pixels = self.whitening.apply(pixels, BandWeighting.of(annotation))
        return pixels[lines[0] - l0 : lines[1] - l0, samples[0] - s0 : samples[1] - s0]


def build_radar_grid(sources: list[SwathSource], orbit: Orbit) -> RadarGrid:
    """Place every burst of ``sources`` (one date, one polarisation) on one lattice and cut the overlaps."""
    if not sources:
        raise SafeError("no swaths to build a radar grid from")
    first = sources[0].annotation
    for source in sources[1:]:
        _require_same_sampling(first, source.annotation)
    dt_line = first.azimuth_time_interval_s
    fs = first.range_sampling_rate_hz
    bursts = [(s, b) for s in sources for b in s.annotation.bursts]
    if not bursts:
        raise SafeError(f"{sources[0].product.path}: the selected swaths hold no bursts")
    t0 = min(orbit.seconds(b.azimuth_time) for _, b in bursts)
    tau0 = min(s.annotation.slant_range_time_s for s in sources)

    placed: dict[str, dict[int, tuple[SwathSource, Burst, int]]] = defaultdict(dict)
    sample_origin: dict[str, int] = {}
    for source, burst in bursts:
        where = f"{source.annotation.source} burst {burst.index}"
        line0 = _on_lattice((orbit.seconds(burst.azimuth_time) - t0) / dt_line, where, "lines")
        sample0 = _on_lattice((source.annotation.slant_range_time_s - tau0) * fs, where, "samples")
        if placed[source.swath].get(line0) is None:  # a burst repeated by two slices is used once
            placed[source.swath][line0] = (source, burst, line0)
        sample_origin.setdefault(source.swath, sample0)
        if sample_origin[source.swath] != sample0:
            raise SafeError(f"{where}: range origin differs from other slices of {source.swath}")

    range_cuts = _range_cuts(placed, sample_origin)
    tiles: list[BurstTile] = []
    for swath, by_line in placed.items():
        ordered = [by_line[k] for k in sorted(by_line)]
        valid = [(line0 + b.valid_lines[0], line0 + b.valid_lines[1]) for _, b, line0 in ordered]
        cuts = [_midpoint_cut(valid[i][1], valid[i + 1][0]) for i in range(len(ordered) - 1)]
        for i, (source, burst, line0) in enumerate(ordered):
            l_start = valid[i][0] if i == 0 else max(valid[i][0], cuts[i - 1])
            l_stop = valid[i][1] + 1 if i == len(ordered) - 1 else min(valid[i][1] + 1, cuts[i])
            s_first, s_last = burst.valid_samples
            lo, hi = range_cuts[swath]
            s_start = max(sample_origin[swath] + s_first, lo)
            s_stop = min(sample_origin[swath] + s_last + 1, hi)
            if l_stop > l_start and s_stop > s_start:
                tiles.append(
                    BurstTile(source, burst, line0, sample_origin[swath], (l_start, l_stop), (s_start, s_stop))
                )
    shape = (max(t.lines[1] for t in tiles), max(t.samples[1] for t in tiles))
    return RadarGrid(
        orbit=orbit,
        t0=t0,
        line_interval=dt_line,
        tau0=tau0,
        range_sampling_rate=fs,
        wavelength=first.wavelength_m,
        shape=shape,
        tiles=tuple(tiles),
        polarisation=first.polarisation,
    )


def _midpoint_cut(last_valid_before: int, first_valid_after: int) -> int:
    """First line (or sample) owned by the later burst: the midpoint of the valid overlap, or the gap's end."""
    if first_valid_after > last_valid_before:
        return first_valid_after
    return (first_valid_after + last_valid_before) // 2 + 1


def _range_cuts(
    placed: dict[str, dict[int, tuple[SwathSource, Burst, int]]], sample_origin: dict[str, int]
) -> dict[str, tuple[int, int]]:
    """Sample bounds ``[lo, hi)`` owned by each swath: neighbours split at the midpoint of their valid overlap."""
    order = sorted(placed, key=lambda s: sample_origin[s])
    bounds = {s: [0, math.inf] for s in order}
    for near, far in itertools.pairwise(order):
        far_edge = min(sample_origin[near] + b.valid_samples[1] for _, b, _ in placed[near].values())
        near_edge = max(sample_origin[far] + b.valid_samples[0] for _, b, _ in placed[far].values())
        cut = _midpoint_cut(far_edge, near_edge)
        bounds[near][1] = cut
        bounds[far][0] = cut
    return {s: (int(lo), int(hi) if hi != math.inf else 2**31 - 1) for s, (lo, hi) in bounds.items()}


def _on_lattice(value: float, where: str, unit: str) -> int:
    nearest = round(value)
    if abs(value - nearest) > LATTICE_TOLERANCE:
        raise SafeError(
            f"{where} lies {value:.3f} {unit} from the grid origin, not on the integer lattice "
            f"(tolerance {LATTICE_TOLERANCE}); bursts of one date must share one timing and range lattice"
        )
    return int(nearest)


def _require_same_sampling(a: SwathAnnotation, b: SwathAnnotation) -> None:
    for name in ("azimuth_time_interval_s", "range_sampling_rate_hz", "radar_frequency_hz"):
        x, y = getattr(a, name), getattr(b, name)
        if abs(x - y) > 1e-9 * abs(x):
            raise SafeError(f"{b.source}: {name} {y} differs from {x} in {a.source}; cannot merge them")
