"""Burst-based acquisition: ASF burst records, the smallest set of burst IDs over the area, one scene per date.

ASF serves every IW SLC burst on its own (asf_search ``processingLevel=BURST``): a record per burst and
polarisation with ``burst.fullBurstID`` (``<track>_<relative burst id>_<swath>``, ESA's burst ID map, fixed on
the ground), the burst's footprint, a TIFF URL (``…/<SLC id>/<swath>/<pol>/<burst index>.tiff``) and, in
``additionalUrls``, the annotation XML of the parent SLC (``….xml``; ASF burst extractor,
https://sentinel1-burst.asf.alaska.edu; the format burst2safe reads, ``burst2safe/utils.py``).

Here the bursts of one date and parent SLC become one :class:`~offset_cube.scenes.Scene` carrying them, so the
planning, orbits and engines see a date as before; the download stage fetches only those bursts and assembles a
SAFE from them (:mod:`offset_cube.burst_safe`).
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import shapely
from shapely import affinity
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from offset_cube.area import parse_area
from offset_cube.config import Engine, FlightDirection, JobConfig, Polarization, Swath
from offset_cube.errors import SceneNameError, SearchError
from offset_cube.planning import (
    AZIMUTH_SPACING_M,
    SLANT_RANGE_SPACING_M,
    choose_co_polarization,
    search_window,
)
from offset_cube.scenes import Burst, ProductName, Scene, parse_utc

log = logging.getLogger(__name__)

#: A burst's TIFF URL on ASF's burst extractor: ``…/<SLC product id>/<swath>/<polarisation>/<burst index>.tiff``.
BURST_URL_RE = re.compile(
    r"/(?P<product>S1[A-D]_[A-Z0-9]{2}_[A-Z]{3}[A-Z_]_[^/]+)/(?P<swath>[A-Z]{2}\d)/(?P<pol>[HV]{2})/(?P<index>\d+)\.tiff?$"
)
#: A full burst ID: ``<relative orbit>_<relative burst id>_<swath>`` (ESA burst ID map).
FULL_BURST_ID_RE = re.compile(r"^(?P<track>\d{1,3})_(?P<burst>\d{1,7})_(?P<swath>IW[1-3])$")
#: Smallest ground-range pixel of IW (IW3 far edge, 46°) and the ground a covering set must reach beyond the
#: area besides the tracking windows: burst footprints are polygons of a few vertices, and the secondary date
#: sees the ground up to ~100 m off (orbit tube) and ± 15 ms (~100 m) along track.
GROUND_RANGE_SPACING_M = SLANT_RANGE_SPACING_M / math.sin(math.radians(46.0))
FOOTPRINT_PAD_M = 500.0
#: Fraction of the area (plus margin) left uncovered below which a burst set counts as covering it.
COVER_TOLERANCE = 1e-3
#: Days of the longest pair the margin is sized for when the job sets no ``max_gap_days``.
MARGIN_GAP_DAYS = 48.0
#: Bursts per swath of a full IW SLC (about 9 for a 25 s slice) and swaths: the scale of a full-scene download.
BURSTS_PER_IW_SLC = 27


def is_burst_record(props: Mapping[str, Any]) -> bool:
    """True for an ASF burst product record (``processingLevel: BURST`` or a ``burst`` block)."""
    return str(props.get("processingLevel", "")).upper() == "BURST" or isinstance(props.get("burst"), dict)


def burst_from_asf(props: Mapping[str, Any], geometry: Mapping[str, Any] | None = None) -> Burst:
    """A burst from ASF product properties (ASF GeoJSON exports, ``S1BurstProduct.properties``)."""
    name = str(props.get("sceneName") or props.get("fileID") or "")
    info = props.get("burst")
    if not name or not isinstance(info, dict):
        raise SceneNameError(f"ASF record {name or sorted(props)} is not a burst product (no 'burst' block)")
    mode = str(props.get("beamModeType") or "")
    url = str(props.get("url") or "")
    match = BURST_URL_RE.search(url)
    if match is None:
        raise SceneNameError(
            f"burst {name}: URL {url!r} is not an ASF burst extractor URL …/<SLC>/<swath>/<pol>/<n>.tiff"
        )
    if mode and mode != "IW":
        raise SceneNameError(f"burst {name} is a {mode} burst; offset-cube processes IW SLC bursts only")
    ProductName.parse(match["product"]).require_iw_slc(where=f"parent of burst {name}")
    metadata = [u for u in props.get("additionalUrls") or [] if str(u).endswith(".xml")]
    if not metadata:
        raise SceneNameError(f"burst {name} lists no annotation XML in additionalUrls")
    full_id = str(info.get("fullBurstID") or "")
    if not FULL_BURST_ID_RE.match(full_id):
        raise SceneNameError(f"burst {name}: fullBurstID {full_id!r} is not <track>_<burst>_IW<n>")
    start = parse_utc(str(props.get("startTime")))
    stop = parse_utc(str(props.get("stopTime") or props.get("startTime")))
    return Burst(
        name=name,
        full_burst_id=full_id,
        swath=Swath(str(info.get("subswath") or match["swath"]).upper()),
        index=int(match["index"] if info.get("burstIndex") is None else info["burstIndex"]),
        polarization=Polarization(str(props.get("polarization") or match["pol"]).upper()),
        product_id=match["product"],
        start=start,
        stop=stop,
        relative_orbit=int(props.get("pathNumber") or full_id.split("_")[0]),
        flight_direction=FlightDirection(str(props.get("flightDirection")).upper()),
        footprint_wkt=_wkt(geometry),
        url=url,
        metadata_url=str(metadata[0]),
        size_bytes=None if props.get("bytes") in (None, "None") else int(props["bytes"]),
    )


def _wkt(geometry: Mapping[str, Any] | None) -> str | None:
    if not geometry:
        return None
    try:
        return str(shapely.to_wkt(shape(geometry), rounding_precision=6, trim=True))
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
        return None


def bursts_from_records(records: Iterable[tuple[Mapping[str, Any], Any]], where: str) -> list[Burst]:
    """Bursts from (properties, geometry) records; a record that is not an IW SLC burst is an error naming it."""
    bursts = []
    for props, geometry in records:
        if not is_burst_record(props):
            name = props.get("sceneName") or props.get("fileID")
            raise SearchError(f"{where}: {name} is not a burst product; a search export must hold bursts or scenes")
        try:
            bursts.append(burst_from_asf(props, geometry))
        except (SceneNameError, ValueError, KeyError) as err:
            raise SearchError(f"{where}: {err}") from err
    return bursts


# --------------------------------------------------------------------------------------------------- selection


def margin_m(job: JobConfig) -> float:
    """Ground around the area that the engines read: one skip, half a window and the search of the longest
    expected pair on each side (in range at the smallest IW ground pixel, in azimuth at the IW line spacing),
    plus :data:`FOOTPRINT_PAD_M`."""
    gap = float(job.max_gap_days) if job.max_gap_days is not None else MARGIN_GAP_DAYS
    search, _ = search_window(job, gap)
    window, skip = job.tracking.window, job.tracking.skip
    range_m = (window.samples / 2 + skip.samples + search.samples) * GROUND_RANGE_SPACING_M
    azimuth_m = (window.lines / 2 + skip.lines + search.lines) * AZIMUTH_SPACING_M
    return max(range_m, azimuth_m) + FOOTPRINT_PAD_M


def _local_metres(geom: BaseGeometry, lon0: float, lat0: float) -> BaseGeometry:
    """An equirectangular view in metres around (lon0, lat0): enough to compare burst and area extents."""
    shifted = affinity.translate(geom, -lon0, -lat0)
    return affinity.scale(shifted, 111_320.0 * math.cos(math.radians(lat0)), 110_574.0, origin=(0, 0))


def grow_area_m(area: BaseGeometry, margin: float) -> BaseGeometry:
    """``area`` grown by about ``margin`` metres (in degrees, scaled by latitude), for the ASF query."""
    lat = area.centroid.y
    grown = affinity.scale(area, math.cos(math.radians(lat)), 1.0, origin="centroid").buffer(
        margin / 110_574.0, quad_segs=2
    )
    return affinity.scale(grown, 1 / math.cos(math.radians(lat)), 1.0, origin=area.centroid)


def covering_burst_ids(footprints: Mapping[str, str], area: BaseGeometry, margin: float) -> list[str]:
    """The fewest burst IDs whose footprints cover ``area`` grown by ``margin`` metres (greedy, then pruned).

    Where the bursts do not reach all of the grown area (the area runs off the swaths), the set covers what they
    can. Returns IDs sorted.
    """
    centre = area.centroid
    target = _local_metres(area, centre.x, centre.y).buffer(margin)
    shapes = {i: _local_metres(shapely.from_wkt(w), centre.x, centre.y) for i, w in footprints.items()}
    shapes = {i: s for i, s in shapes.items() if s.intersects(target)}
    reachable = target.intersection(unary_union(list(shapes.values()))) if shapes else target
    chosen: list[str] = []
    left = reachable
    while shapes and left.area > COVER_TOLERANCE * reachable.area:
        best = max(sorted(shapes), key=lambda i: shapes[i].intersection(left).area)
        if shapes[best].intersection(left).area <= 0:
            break
        chosen.append(best)
        left = left.difference(shapes.pop(best))
    for burst_id in sorted(chosen, key=lambda i: target.intersection(_shape(i, footprints, centre)).area):
        rest = [_shape(i, footprints, centre) for i in chosen if i != burst_id]
        if rest and reachable.difference(unary_union(rest)).area <= COVER_TOLERANCE * reachable.area:
            chosen.remove(burst_id)
    return sorted(chosen)


def _shape(burst_id: str, footprints: Mapping[str, str], centre: Any) -> BaseGeometry:
    return _local_metres(shapely.from_wkt(footprints[burst_id]), centre.x, centre.y)


def burst_scenes(bursts: Iterable[Burst], job: JobConfig) -> list[Scene]:
    """Filter bursts to the job (dates, tracks, direction, swaths, polarisation), choose per track the fewest
    burst IDs covering the area plus :func:`margin_m`, and return one scene per date and parent SLC with those
    bursts; each scene also names the IDs its track requires, so a date lacking one is reported when planning.
    """
    area = burst_target(job)
    kept = [b for b in bursts if _wanted(b, job)]
    polarization = choose_co_polarization(job, [(b.polarization,) for b in kept])
    kept = [b for b in kept if b.polarization is polarization]
    by_track: dict[tuple[int, FlightDirection], list[Burst]] = defaultdict(list)
    for burst in kept:
        by_track[(burst.relative_orbit, burst.flight_direction)].append(burst)
    margin = margin_m(job)
    scenes: list[Scene] = []
    for (track, direction), track_bursts in sorted(by_track.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        footprints: dict[str, str] = {}
        for burst in track_bursts:
            if burst.footprint_wkt:
                footprints.setdefault(burst.full_burst_id, burst.footprint_wkt)
        required = tuple(covering_burst_ids(footprints, area, margin))
        if not required:
            log.info("track %d %s: no burst footprint meets the area", track, direction.value)
            continue
        log.info(
            "track %d %s: bursts %s cover the area plus %.0f m", track, direction.value, ", ".join(required), margin
        )
        scenes += _date_scenes([b for b in track_bursts if b.full_burst_id in required], required)
    return sorted(scenes, key=lambda s: (s.start, s.product_id))


def burst_target(job: JobConfig) -> BaseGeometry:
    """What the bursts must cover: the area; for ISCE2 the box topsApp processes (the area's bounding box plus
    ``isce2.roi_margin_deg``, its region of interest), since topsApp reads every burst that box meets."""
    area = parse_area(job.area)
    if job.engine is not Engine.ISCE2:
        return area
    west, south, east, north = area.bounds
    pad = job.isce2.roi_margin_deg
    return shapely.box(west - pad, max(south - pad, -90.0), east + pad, min(north + pad, 90.0))


def _wanted(burst: Burst, job: JobConfig) -> bool:
    if not job.start <= burst.date <= job.end_date:
        return False
    if job.track and burst.relative_orbit not in job.track:
        return False
    if job.direction and burst.flight_direction is not job.direction:
        return False
    return not (job.swaths and burst.swath not in job.swaths)


def _date_scenes(bursts: Sequence[Burst], required: tuple[str, ...]) -> list[Scene]:
    by_product: dict[str, dict[str, Burst]] = defaultdict(dict)
    for burst in sorted(bursts, key=lambda b: (b.start, b.name)):
        by_product[burst.product_id].setdefault(burst.full_burst_id, burst)  # ASF lists reprocessed ones twice
    scenes = []
    for product_id, chosen in by_product.items():
        members = tuple(sorted(chosen.values(), key=lambda b: (b.swath.value, b.start)))
        outline = unary_union([shapely.from_wkt(b.footprint_wkt) for b in members if b.footprint_wkt])
        sizes = [b.size_bytes for b in members]
        scenes.append(
            Scene.from_fields(
                product_id,
                start=min(b.start for b in members),
                stop=max(b.stop for b in members),
                relative_orbit=members[0].relative_orbit,
                flight_direction=members[0].flight_direction,
                footprint_wkt=None if outline.is_empty else shapely.to_wkt(outline, rounding_precision=6, trim=True),
                size_bytes=None if None in sizes else sum(s for s in sizes if s is not None),
                bursts=members,
                required_bursts=required,
            )
        )
    return scenes


def full_scene_bytes_estimate(scene: Scene) -> int | None:
    """What the whole SLC of a burst scene would cost: 3 swaths × 9 bursts per polarisation it holds, at the
    mean size of its bursts (burst TIFFs are uncompressed; ASF's SLC zips compress them by ~25 %)."""
    sizes = [b.size_bytes for b in scene.bursts if b.size_bytes is not None]
    if not sizes:
        return None
    return round(BURSTS_PER_IW_SLC * len(scene.name.polarisations) * sum(sizes) / len(sizes))


def download_comparison(scenes: Sequence[Scene]) -> str | None:
    """``"bursts: 1.2 GB for 8 dates (0.15 GB per date); full scenes ≈ 31 GB, 27× more"`` for burst scenes."""
    burst_scenes = [s for s in scenes if s.bursts]
    if not burst_scenes:
        return None
    dates = len({(s.relative_orbit, s.date) for s in burst_scenes})
    got = sum(s.size_bytes or 0 for s in burst_scenes)
    full = [full_scene_bytes_estimate(s) for s in burst_scenes]
    line = f"bursts: {got / 1e9:.2f} GB for {dates} date(s) ({got / 1e9 / max(dates, 1):.2f} GB per date)"
    if None not in full and got:
        whole = sum(f for f in full if f is not None)
        line += f"; full scenes ≈ {whole / 1e9:.1f} GB, {whole / got:.0f}× more"
    return line
