"""Which bursts topsApp keeps for a ``region of interest``, and the region that keeps only those holding the area.

topsApp crops each swath of each date to the bursts whose bounding box overlaps its ``region of interest``
(``Sentinel1.crop``: strict overlap in latitude and longitude, ISCE2 2.6.5
``components/isceobj/Sensor/TOPS/Sentinel1.py``). A burst's box is the latitude/longitude extent of its first and
last line × near and far range at heights −500 and 9000 m, at zero Doppler (``BurstSLC.getBbox``): the first
line is the annotation's burst ``azimuthTime``, the last ``linesPerBurst − 1`` lines later, near range
``slantRangeTime·c/2`` and far range ``samplesPerBurst − 1`` samples of ``c/(2·rangeSamplingRate)`` further.
Padded for the height range and tilted by the heading, consecutive boxes overlap by more than half, so the
area's bounding box plus any margin usually keeps one or two bursts that hold none of the area, and each burst
costs topo, resampling and disk (a real run: 4 bursts instead of 2, topo 33.5 min).

The bursts that *hold* the area are the shortest run of consecutive bursts whose valid lines (the annotation's
``firstValidSample`` ≥ 0) cover the area's span of zero-Doppler times, found with ``geo2rdr`` at the area's
outline for heights −500 and 9000 m. :func:`region_for_bursts` then looks for a box that, by ISCE's own rule,
keeps exactly those bursts on both dates (the secondary's boxes are its own), with margin to every box edge.
The box need not contain the area: topsApp uses the region of interest for nothing else (``runPreprocessor.py``
is its only reader; the geocoded grid has its own ``geocode bounding box``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from offset_cube.geometry.acquisition import DateScene
from offset_cube.geometry.ellipsoid import ecef_to_geodetic, geodetic_to_ecef
from offset_cube.geometry.outline import outline_lon_lat
from offset_cube.geometry.rangedoppler import geo2rdr, rdr2geo
from offset_cube.isce2.xml import Box
from offset_cube.safe.annotation import SPEED_OF_LIGHT

#: Heights (m) ISCE pads each burst box for (``BurstSLC.getBbox`` default ``hgtrange``).
ISCE_HEIGHT_RANGE = (-500.0, 9000.0)
#: How far (degrees) a swath's footprint is widened before it is met with the area: 9000 m of terrain moves a
#: point ~13 km across track at IW incidence angles (h / tan θ).
FOOTPRINT_MARGIN_DEG = 0.15


@dataclass(frozen=True)
class BurstBox:
    """One burst of one date and swath: ISCE's bounding box and its valid zero-Doppler time span."""

    swath: str
    number: int  # 1-based within its slice, as ISCE numbers bursts before cropping
    product: str
    box: Box  # south, north, west, east (degrees)
    valid_start: float  # s since the date orbit's epoch: first valid line
    valid_stop: float  # last valid line


@dataclass(frozen=True)
class BurstChoice:
    """The region of interest chosen for a pair and what topsApp keeps with it."""

    region: Box
    kept: dict[str, list[int]]  # "<swath>" -> burst numbers of the reference date (1-based, per slice)
    holding: dict[str, list[int]]  # the bursts that hold the area (reference date)
    total: dict[str, int]  # bursts of the reference date per swath, before cropping
    exact: bool  # kept == holding on both dates
    #: ISCE's boxes of every burst topsApp keeps, on every date, merged (south, north, west, east): what its
    #: ``topo`` step runs over, so what the DEM must cover.
    extent: Box

    def describe(self) -> str:
        parts = [f"{s}: {_numbers(self.kept[s])} of {self.total[s]}" for s in sorted(self.kept)]
        extra = "" if self.exact else " (no region keeps only the bursts holding the area; the fewest it can)"
        return f"topsApp keeps bursts {'; '.join(parts)}{extra}"


def burst_boxes(date: DateScene, polarisation: str, swaths: Iterable[str]) -> list[BurstBox]:
    """ISCE's box and the valid time span of every burst of ``swaths`` in the date's slices."""
    boxes = []
    orbit = date.orbit
    for product in date.products:
        for swath in swaths:
            if swath not in product.swaths(polarisation):
                continue
            a = product.annotation(swath, polarisation)
            near = a.slant_range_time_s * SPEED_OF_LIGHT / 2
            far = near + (a.samples_per_burst - 1) * SPEED_OF_LIGHT / (2 * a.range_sampling_rate_hz)
            for burst in a.bursts:
                first = orbit.seconds(burst.azimuth_time)
                last = first + (a.lines_per_burst - 1) * a.azimuth_time_interval_s
                t, r, h = np.meshgrid([first, last], [near, far], ISCE_HEIGHT_RANGE, indexing="ij")
                lat, lon, _ = ecef_to_geodetic(rdr2geo(orbit, t.ravel(), r.ravel(), h.ravel()))
                line0, line1 = burst.valid_lines
                boxes.append(
                    BurstBox(
                        swath=swath,
                        number=burst.index + 1,
                        product=product.product_id,
                        box=(float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max())),
                        valid_start=first + line0 * a.azimuth_time_interval_s,
                        valid_stop=first + line1 * a.azimuth_time_interval_s,
                    )
                )
    return boxes


def kept_by_isce(boxes: Iterable[BurstBox], region: Box) -> list[BurstBox]:
    """The bursts ``Sentinel1.crop`` keeps for ``region``: boxes overlapping it strictly in both directions."""
    south, north, west, east = region
    return [b for b in boxes if b.box[2] < east and b.box[3] > west and b.box[0] < north and b.box[1] > south]


def area_time_span(date: DateScene, area: BaseGeometry, boxes: Sequence[BurstBox]) -> tuple[float, float]:
    """The area's span of zero-Doppler times on the date's orbit (its outline at ISCE's two padding heights)."""
    lon, lat = outline_lon_lat(area)
    guess = float(np.mean([(b.valid_start + b.valid_stop) / 2 for b in boxes]))
    times = [geo2rdr(date.orbit, geodetic_to_ecef(lat, lon, h), guess)[0] for h in ISCE_HEIGHT_RANGE]
    return float(min(t.min() for t in times)), float(max(t.max() for t in times))


def holding_bursts(boxes: Sequence[BurstBox], span: tuple[float, float]) -> list[BurstBox]:
    """The shortest run of consecutive bursts (in time) whose valid lines cover ``span``; when none covers it
    (the area runs off the swath's bursts), every burst whose valid lines meet it."""
    ordered = _unique_in_time(boxes)
    start, stop = span
    best: list[BurstBox] | None = None
    for i, j in itertools.combinations_with_replacement(range(len(ordered)), 2):
        run = ordered[i : j + 1]
        covers = run[0].valid_start <= start and run[-1].valid_stop >= stop
        gapless = all(b.valid_start <= a.valid_stop for a, b in itertools.pairwise(run))
        if covers and gapless and (best is None or len(run) < len(best)):
            best = run
    if best is not None:
        return best
    return [b for b in ordered if b.valid_start < stop and b.valid_stop > start]


def region_for_bursts(wanted: Sequence[BurstBox], others: Sequence[BurstBox], fallback: Box) -> tuple[Box, bool]:
    """A box ISCE's rule turns into every burst of ``wanted`` and none of ``others``, its edges as far from the
    box edges as can be; else, of the boxes keeping all of ``wanted``, one keeping the fewest ``others``
    (``fallback`` when it does as well). Returns the box and whether it keeps exactly ``wanted``."""
    if not wanted:
        return fallback, False
    # A region meets every wanted box, so its south edge lies below the lowest wanted north edge and its north
    # edge above the highest wanted south edge (likewise in longitude); moving an edge outward beyond the
    # wanted boxes only adds bursts. Only boxes near the wanted ones can therefore be hit.
    w = np.array([b.box for b in wanted])
    hull = (w[:, 0].min() - 0.02, w[:, 1].max() + 0.02, w[:, 2].min() - 0.02, w[:, 3].max() + 0.02)
    near = [*wanted, *kept_by_isce(others, hull)]
    boxes = np.array([b.box for b in near])
    is_wanted = np.arange(len(near)) < len(wanted)
    lat = _edge_pairs(boxes[:, :2], low_below=w[:, 1].min(), high_above=w[:, 0].max())
    lon = _edge_pairs(boxes[:, 2:], low_below=w[:, 3].min(), high_above=w[:, 2].max())
    lat_hits = (boxes[None, :, 0] < lat[:, 1:2]) & (boxes[None, :, 1] > lat[:, 0:1])  # (n_lat, n_boxes)
    best: tuple[int, float, Box] | None = None
    for lo, hi in lon:
        hits = lat_hits & ((boxes[:, 2] < hi) & (boxes[:, 3] > lo))[None, :]
        complete = hits[:, is_wanted].all(axis=1)
        if not complete.any():
            continue
        extra = hits[:, ~is_wanted].sum(axis=1)
        fewest = extra[complete].min()
        if best is not None and fewest > best[0]:
            continue
        for k in np.flatnonzero(complete & (extra == fewest)):
            region = (float(lat[k, 0]), float(lat[k, 1]), float(lo), float(hi))
            candidate = (int(fewest), -_clearance(region, boxes), region)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
    fallback_extra = len(kept_by_isce(others, fallback))
    fallback_complete = len(kept_by_isce(wanted, fallback)) == len(wanted)
    if best is None or (best[0] > 0 and fallback_complete and fallback_extra <= best[0]):
        return fallback, fallback_complete and fallback_extra == 0
    return best[2], best[0] == 0


def choose_region(
    dates: Sequence[DateScene], area: BaseGeometry, polarisation: str, swaths: Sequence[str], fallback: Box
) -> BurstChoice:
    """The region of interest that keeps, on every date and swath, only the bursts holding the area."""
    wanted: list[BurstBox] = []
    others: list[BurstBox] = []
    per_date = []
    for date in dates:
        boxes = burst_boxes(date, polarisation, swaths)
        holding: list[BurstBox] = []
        for swath in swaths:
            mine = [b for b in boxes if b.swath == swath]
            part = _part_in_swath(date, area, polarisation, swath)
            if mine and not part.is_empty:
                run = holding_bursts(mine, area_time_span(date, part, mine))
                # the same burst in two overlapping slices: both copies are wanted (ISCE stitches one)
                holding += [b for b in mine if any(abs(b.valid_start - r.valid_start) < 0.5 for r in run)]
        wanted += holding
        others += [b for b in boxes if b not in holding]
        per_date.append((boxes, holding))
    region, exact = region_for_bursts(wanted, others, fallback)
    reference, reference_holding = per_date[0]
    kept = [box.box for boxes, _ in per_date for box in kept_by_isce(boxes, region)] or [fallback]
    return BurstChoice(
        region=region,
        kept=_by_swath(kept_by_isce(reference, region), swaths),
        holding=_by_swath(reference_holding, swaths),
        total={s: sum(b.swath == s for b in reference) for s in swaths},
        exact=exact,
        extent=(
            min(b[0] for b in kept),
            max(b[1] for b in kept),
            min(b[2] for b in kept),
            max(b[3] for b in kept),
        ),
    )


def _part_in_swath(date: DateScene, area: BaseGeometry, polarisation: str, swath: str) -> BaseGeometry:
    """The part of the area a swath sees: its annotation footprints (at the annotation's terrain heights) widened
    by :data:`FOOTPRINT_MARGIN_DEG` for terrain between −500 and 9000 m, met with the area."""
    footprints = [p.annotation(swath, polarisation).footprint for p in date.products if swath in p.swaths(polarisation)]
    part = area.intersection(unary_union(footprints).buffer(FOOTPRINT_MARGIN_DEG))
    if isinstance(part, Polygon | MultiPolygon):
        return part
    polygons = [g for g in getattr(part, "geoms", []) if isinstance(g, Polygon)]  # a collection with lines
    return MultiPolygon(polygons) if polygons else Polygon()


def _unique_in_time(boxes: Sequence[BurstBox]) -> list[BurstBox]:
    """Bursts in time order, a burst repeated by two overlapping slices once (ISCE stitches it once)."""
    ordered: list[BurstBox] = []
    for box in sorted(boxes, key=lambda b: b.valid_start):
        if not ordered or box.valid_start - ordered[-1].valid_start > 0.5:
            ordered.append(box)
    return ordered


def _edge_pairs(edges: np.ndarray, low_below: float, high_above: float) -> np.ndarray:
    """Candidate (low, high) region edges in one direction: midway between consecutive distinct box edges (or
    just outside them all), with low < ``low_below`` and high > ``high_above`` (the region meets every wanted
    box). The kept set only changes when an edge crosses a box edge, so these are all the cases there are."""
    values = np.unique(np.round(edges.ravel(), 9))
    cuts = np.concatenate([[values[0] - 0.01], (values[:-1] + values[1:]) / 2, [values[-1] + 0.01]])
    lows, highs = cuts[cuts < low_below], cuts[cuts > high_above]
    pairs = np.array([(lo, hi) for lo in lows for hi in highs if lo < hi], dtype=np.float64)
    return pairs.reshape(-1, 2)


def _clearance(region: Box, boxes: np.ndarray) -> float:
    """Least distance from the region's edges to the box edges of the same direction."""
    lat_edges, lon_edges = boxes[:, :2].ravel(), boxes[:, 2:].ravel()
    lat_gap = min(float(np.abs(lat_edges - v).min()) for v in region[:2])
    lon_gap = min(float(np.abs(lon_edges - v).min()) for v in region[2:])
    return min(lat_gap, lon_gap)


def _by_swath(boxes: Iterable[BurstBox], swaths: Sequence[str]) -> dict[str, list[int]]:
    return {s: sorted({b.number for b in boxes if b.swath == s}) for s in swaths}


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) if numbers else "none"
