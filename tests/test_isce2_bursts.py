"""topsApp's burst cropping, computed with ISCE's own burst boxes from real annotations: the default region of
interest keeps exactly the smallest set of consecutive bursts whose ground footprints cover the area.

The minimal covering set is found here by another route than the engine's (which compares zero-Doppler time
spans): each burst's valid footprint as a polygon on the ground, and shapely's ``covers`` on runs of bursts.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from offset_cube.area import parse_area
from offset_cube.geometry.acquisition import DateScene, open_date
from offset_cube.geometry.ellipsoid import ecef_to_geodetic
from offset_cube.geometry.rangedoppler import rdr2geo
from offset_cube.isce2.bursts import burst_boxes, choose_region, kept_by_isce
from offset_cube.isce2.render import padded_box
from offset_cube.safe.annotation import SPEED_OF_LIGHT
from offset_cube.simulate import DEMO_TEMPLATE
from tests.conftest import DATA
from tests.isce2_support import BC_AREA, BC_REFERENCE, BC_SECONDARY

#: The demo's 8 km square over the seam of bursts 2 and 3 of the Pamir template's IW2 (what
#: ``simulate.stack.default_area`` makes of the template), where a real topsApp run kept all 4 bursts with the old
#: 0.05° margin.
DEMO_AREA = "POLYGON((75.01434 38.30062, 75.10583 38.30058, 75.10594 38.37268, 75.01435 38.37272, 75.01434 38.30062))"
MULTI = DATA / "safe" / "hyp3-isce2" / "multi_burst"
IRAN = (  # track 64 descending, IW2 (5 bursts) and IW3 (4 bursts), 12 days apart
    MULTI / "S1A_IW_SLC__1SSV_20200604T022307_20200604T022318_032861_03CE65_C158.SAFE",
    MULTI / "S1A_IW_SLC__1SSV_20200616T022308_20200616T022319_033036_03D3A3_7466.SAFE",
)


@contextlib.contextmanager
def dates(reference: Path, secondary: Path) -> Iterator[list[DateScene]]:
    with open_date([reference], [], "vv") as ref, open_date([secondary], [], "vv") as sec:
        yield [ref, sec]


def footprints(date: DateScene, swath: str) -> list[tuple[int, BaseGeometry]]:
    """Each burst's valid lines × valid samples on the ground, at the annotation's terrain height."""
    product = date.products[0]
    a = product.annotation(swath, "vv")
    near = a.slant_range_time_s * SPEED_OF_LIGHT / 2
    spacing = SPEED_OF_LIGHT / (2 * a.range_sampling_rate_hz)
    out = []
    for burst in a.bursts:
        line0, line1 = burst.valid_lines
        first, last = burst.valid_samples
        t0 = date.orbit.seconds(burst.azimuth_time)
        lines = np.linspace(line0, line1, 20)
        samples = np.linspace(first, last, 40)
        edge_t = np.concatenate([np.full(40, line0), lines, np.full(40, line1), lines[::-1]])
        edge_s = np.concatenate([samples, np.full(20, last), samples[::-1], np.full(20, first)])
        points = rdr2geo(
            date.orbit, t0 + edge_t * a.azimuth_time_interval_s, near + edge_s * spacing, a.terrain_height_m or 0.0
        )
        lat, lon, _ = ecef_to_geodetic(points)
        out.append((burst.index + 1, Polygon(np.column_stack([lon, lat]))))
    return out


def minimal_cover(date: DateScene, swath: str, area: BaseGeometry) -> list[int]:
    """The shortest run of consecutive bursts whose footprints (with the swath's) cover the area's part in the
    swath; an area beyond the swath's far edge is not the bursts' business."""
    prints = footprints(date, swath)
    part = area.intersection(unary_union([p for _, p in prints]))
    if part.is_empty:
        return []
    for length in range(1, len(prints) + 1):
        for i in range(len(prints) - length + 1):
            run = prints[i : i + length]
            if unary_union([p for _, p in run]).buffer(1e-9).covers(part):
                return [n for n, _ in run]
    raise AssertionError("no run of bursts covers the area")


def kept(date: DateScene, swath: str, region: tuple[float, float, float, float]) -> list[int]:
    return [b.number for b in kept_by_isce(burst_boxes(date, "vv", [swath]), region)]


def test_isce_burst_boxes_hold_each_burst_at_every_height() -> None:
    """ISCE pads each box for −500…9000 m: the footprint at the terrain height lies inside its box, and
    consecutive boxes overlap by more than half their latitude extent (why any bbox margin keeps extra bursts)."""
    with dates(DEMO_TEMPLATE, DEMO_TEMPLATE) as (ref, _):
        boxes = burst_boxes(ref, "vv", ["IW2"])
        prints = footprints(ref, "IW2")
        assert [b.number for b in boxes] == [n for n, _ in prints] == [1, 2, 3, 4]
        for box, (_, footprint) in zip(boxes, prints, strict=True):
            west, south, east, north = footprint.bounds
            assert box.box[0] < south and north < box.box[1] and box.box[2] < west and east < box.box[3]
        for a, b in itertools.pairwise(boxes):
            assert (a.box[1] - b.box[0]) > 0.5 * (a.box[1] - a.box[0])
            assert a.valid_stop > b.valid_start  # consecutive bursts' valid lines overlap in time too


@pytest.mark.parametrize(
    ("pair", "area", "swaths", "expected"),
    [
        # the real run: margin 0.05 kept all 4 bursts, 2 hold the area
        ((DEMO_TEMPLATE, DEMO_TEMPLATE), DEMO_AREA, ["IW2"], {"IW2": [2, 3]}),
        # a real repeat pair (track 108 ascending): the test area, and a small one inside one burst
        ((BC_REFERENCE, BC_SECONDARY), BC_AREA, ["IW2"], {"IW2": [3, 4, 5]}),
        (
            (BC_REFERENCE, BC_SECONDARY),
            "POLYGON((-128.0 51.9, -127.95 51.9, -127.95 51.93, -128.0 51.93, -128.0 51.9))",
            ["IW2"],
            {"IW2": [4]},
        ),
        # descending, across two swaths; and one swath's middle
        (IRAN, "POLYGON((53.15 27.6, 53.3 27.6, 53.3 27.7, 53.15 27.7, 53.15 27.6))", ["IW2", "IW3"], None),
        (IRAN, "POLYGON((52.6 27.7, 52.9 27.7, 52.9 27.95, 52.6 27.95, 52.6 27.7))", ["IW3"], {"IW3": [2, 3]}),
    ],
)
def test_default_region_keeps_exactly_the_minimal_covering_bursts(
    pair: tuple[Path, Path], area: str, swaths: list[str], expected: dict[str, list[int]] | None
) -> None:
    shape = parse_area(area)
    bbox = padded_box(shape, 0.0)
    with dates(*pair) as opened:
        choice = choose_region(opened, shape, "vv", swaths, bbox)
        assert choice.exact
        for date in opened:
            for swath in swaths:
                assert kept(date, swath, choice.region) == minimal_cover(date, swath, shape), (date.paths, swath)
                # a bbox margin keeps at least as many, and never fewer than the area needs
                assert set(kept(date, swath, choice.region)) <= set(kept(date, swath, padded_box(shape, 0.05)))
    if expected is not None:
        assert choice.kept == choice.holding == expected


def test_the_measured_run_kept_twice_the_bursts_it_needed() -> None:
    """The figure in the README: the old default (0.05°) kept 4 bursts of the demo's IW2, the region chosen now 2."""
    shape = parse_area(DEMO_AREA)
    with dates(DEMO_TEMPLATE, DEMO_TEMPLATE) as (ref, _):
        assert kept(ref, "IW2", padded_box(shape, 0.05)) == [1, 2, 3, 4]
        assert kept(ref, "IW2", padded_box(shape, 0.0)) == [2, 3]
        choice = choose_region([ref], shape, "vv", ["IW2"], padded_box(shape, 0.0))
        assert choice.describe() == "topsApp keeps bursts IW2: 2, 3 of 4"
