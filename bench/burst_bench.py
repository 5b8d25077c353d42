"""Bytes per date, bursts vs whole scenes, for the demo area and the Shirase example area (nothing downloaded).

Run: ``.venv/bin/python bench/burst_bench.py``. Both areas go through the project's own burst selection
(:func:`offset_cube.bursts.covering_burst_ids` with the job's engine margin, :func:`~offset_cube.bursts.margin_m`):

- **demo**: the burst footprints of the demo's template (a real IW SLC over the Pamir, its IW2 annotation's
  geolocation grid), the demo's 8 km area centred on the seam of the middle bursts, and the demo's tracking.
- **Shirase** (``examples/shirase.yaml``): no burst records of Shirase are stored, so its bursts are laid out
  from real burst geometry: the footprint of the recorded ASF burst 174_372326_IW3 (``tests/data``), turned to
  a descending track's heading at the area's latitude (inclination 98.18°), repeated along track every ESA burst
  cycle (2.758273 s of its 3.12 s burst) and across the three swaths. Where the area falls on the burst grid
  depends on the track, so the count is given over 64 placements (min / median / max).

Bytes per burst are the recorded real one (``bytes``, 144.7 MB); a whole IW SLC holds 3 swaths × 9 bursts per
polarisation. The ratio is whole-scene bytes / burst bytes per date.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import shape

from offset_cube.area import parse_area
from offset_cube.bursts import BURSTS_PER_IW_SLC, covering_burst_ids, margin_m
from offset_cube.config import load_job
from offset_cube.safe.product import SafeProduct
from offset_cube.simulate.demo import DEMO_TRACKING

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = next((ROOT / "offset_cube" / "simulate" / "templates").glob("*.zip"))
RECORDS = ROOT / "tests" / "data" / "asf" / "geojson" / "SLC_BURST_stack.geojson"
SHIRASE = ROOT / "examples" / "shirase.yaml"
#: ESA burst cycle and the recorded burst's sensing duration (1518 lines × 2.0555 ms).
T_BEAM_S = 2.758273
BURST_S = 1518 * 0.0020555
INCLINATION_DEG = 98.18
M_PER_DEG_LAT = 110_574.0


def local(geom: shapely.Geometry, lon0: float, lat0: float) -> shapely.Geometry:
    scaled = affinity.translate(geom, -lon0, -lat0)
    return affinity.scale(scaled, 111_320.0 * math.cos(math.radians(lat0)), M_PER_DEG_LAT, origin=(0, 0))


def geographic(geom: shapely.Geometry, lon0: float, lat0: float) -> shapely.Geometry:
    back = affinity.scale(geom, 1 / (111_320.0 * math.cos(math.radians(lat0))), 1 / M_PER_DEG_LAT, origin=(0, 0))
    return affinity.translate(back, lon0, lat0)


def demo_footprints() -> tuple[dict[str, str], str]:
    """Burst footprints of the template swath, and the demo's 8 km area on the seam of its middle bursts."""
    with SafeProduct(TEMPLATE) as product:
        pol = "VV" if "VV" in product.polarisations else product.polarisations[0]
        swath = max(product.swaths(pol), key=lambda s: len(product.annotation(s, pol).bursts))
        ann = product.annotation(swath, pol)
    grid = ann.geolocation
    footprints = {}
    for burst in ann.bursts:
        lines = (burst.index * ann.lines_per_burst, (burst.index + 1) * ann.lines_per_burst)
        inside = (grid.line >= lines[0]) & (grid.line <= lines[1])
        outline = shapely.MultiPoint(np.column_stack([grid.longitude[inside], grid.latitude[inside]])).convex_hull
        footprints[f"{swath}-{burst.index}"] = shapely.to_wkt(outline)
    middle = len(ann.bursts) // 2
    seam = shapely.from_wkt(footprints[f"{swath}-{middle - 1}"]).intersection(
        shapely.from_wkt(footprints[f"{swath}-{middle}"])
    )
    centre = seam.centroid
    square = local(shapely.Point(centre.x, centre.y), centre.x, centre.y).buffer(4000.0, cap_style="square")
    return footprints, shapely.to_wkt(geographic(square, centre.x, centre.y))


def recorded_burst() -> tuple[shapely.Geometry, int]:
    feature = json.loads(RECORDS.read_text())["features"][0]
    return shape(feature["geometry"]), int(feature["properties"]["bytes"])


def heading_deg(lat: float) -> float:
    """Ground-track heading (from north) of a descending pass at ``lat``, Earth's rotation neglected."""
    return 180.0 + math.degrees(math.asin(math.cos(math.radians(INCLINATION_DEG)) / math.cos(math.radians(lat))))


def shirase_counts(area_wkt: str, margin: float, placements: int = 8) -> list[int]:
    """Bursts chosen for the area over placements x placements offsets of the burst grid."""
    burst, _ = recorded_burst()
    area = parse_area(area_wkt)
    c0 = burst.centroid
    # The recorded footprint in metres, turned so that its along-track (short) side runs along y.
    foot = local(burst, c0.x, c0.y)
    rect = foot.minimum_rotated_rectangle
    corners = list(rect.exterior.coords)[:4]
    sides = [(corners[i], corners[(i + 1) % 4]) for i in range(2)]
    (ax, ay), (bx, by) = min(sides, key=lambda s: math.dist(*s))
    along_angle = math.degrees(math.atan2(by - ay, bx - ax))
    foot = affinity.rotate(foot, 90.0 - along_angle, origin=(0, 0))
    minx, miny, maxx, maxy = foot.bounds
    length, width = maxy - miny, maxx - minx
    step_along = length * T_BEAM_S / BURST_S
    step_across = width * 0.97  # neighbouring swaths overlap by a few km
    centre = area.centroid
    target = affinity.rotate(local(area, centre.x, centre.y), heading_deg(centre.y) - 180.0, origin=(0, 0))
    tx0, ty0, tx1, ty1 = target.bounds
    counts = []
    for i in range(placements):
        for j in range(placements):
            # three swaths side by side holding the area, and bursts every cycle along track
            x_start = tx0 - (3 * step_across - (tx1 - tx0)) * (i + 0.5) / placements
            y_phase = step_along * (j + 0.5) / placements
            tiles = {}
            for swath in range(3):
                for k in range(-2, math.ceil((ty1 - ty0) / step_along) + 3):
                    tile = affinity.translate(
                        foot, x_start + swath * step_across - minx, ty0 - y_phase + k * step_along - miny
                    )
                    turned = affinity.rotate(tile, 180.0 - heading_deg(centre.y), origin=(0, 0))
                    tiles[f"IW{swath + 1}-{k}"] = shapely.to_wkt(geographic(turned, centre.x, centre.y))
            counts.append(len(covering_burst_ids(tiles, area, margin)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    _, burst_bytes = recorded_burst()
    scene_bytes = BURSTS_PER_IW_SLC * burst_bytes
    footprints, demo_area = demo_footprints()
    demo_job = load_job(
        None, {"area": demo_area, "start": "2022-01-01", "end": "2022-12-31", "tracking": DEMO_TRACKING}
    )
    demo = covering_burst_ids(footprints, parse_area(demo_area), margin_m(demo_job))
    print(f"scene: 3 swaths x 9 bursts x 1 polarisation x {burst_bytes / 1e6:.1f} MB = {scene_bytes / 1e9:.2f} GB")
    print(
        f"demo area (8 km, Pamir, {len(footprints)} bursts in the template swath): {len(demo)} burst(s) "
        f"{', '.join(demo)} = {len(demo) * burst_bytes / 1e9:.2f} GB per date; scenes / bursts = "
        f"{scene_bytes / (len(demo) * burst_bytes):.1f}x"
    )
    shirase = load_job(SHIRASE, {"end": "2020-01-01"})
    counts = shirase_counts(shirase.area, margin_m(shirase))
    low, mid, high = min(counts), statistics.median(counts), max(counts)
    print(
        f"Shirase area (~63 x 84 km, margin {margin_m(shirase):.0f} m): {low}/{mid:g}/{high} burst(s) min/median/max "
        f"over {len(counts)} placements = {mid * burst_bytes / 1e9:.2f} GB per date (median); scenes / bursts = "
        f"{scene_bytes / (high * burst_bytes):.1f}x..{scene_bytes / (low * burst_bytes):.1f}x "
        f"(median {scene_bytes / (mid * burst_bytes):.1f}x)"
    )


if __name__ == "__main__":
    main()
