"""Find the Sentinel-1 IW SLC scenes of a job, from ASF, a saved search export, or a folder of SAFE zips.

All three sources return the same thing: a list of :class:`~offset_cube.scenes.Scene`, de-duplicated, filtered
to the job's dates/tracks/direction/area, sorted oldest first (ASF returns newest first).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from offset_cube.area import parse_area
from offset_cube.config import FlightDirection, JobConfig
from offset_cube.errors import OffsetCubeError, SafeError, SceneNameError, SearchError
from offset_cube.safe.archive import SafeArchive
from offset_cube.safe.manifest import read_manifest
from offset_cube.scenes import ProductName, Scene, parse_utc

log = logging.getLogger(__name__)


def search_scenes(job: JobConfig) -> list[Scene]:
    """Scenes for ``job`` from its configured source, oldest first."""
    source = job.search
    if source.path is None:
        scenes = search_asf(job)
    elif source.kind == "file":
        scenes = read_search_export(source.path)
    else:
        scenes = read_local_catalog(source.path)
    return filter_scenes(scenes, job)


def filter_scenes(scenes: Iterable[Scene], job: JobConfig) -> list[Scene]:
    """Keep scenes inside the job's dates, tracks, direction and area; de-duplicate; sort oldest first."""
    area = parse_area(job.area)
    end = job.end_date
    kept: dict[str, Scene] = {}
    for scene in scenes:
        if not job.start <= scene.date <= end:
            continue
        if job.track and scene.relative_orbit not in job.track:
            continue
        if job.direction and scene.flight_direction is not job.direction:
            continue
        if scene.footprint_wkt and not _intersects(scene.footprint_wkt, area):
            continue
        kept.setdefault(scene.product_id, scene)
    return sorted(kept.values(), key=lambda s: (s.start, s.product_id))


def _intersects(footprint_wkt: str, area: BaseGeometry) -> bool:
    try:
        return bool(shapely.from_wkt(footprint_wkt).intersects(area))
    except shapely.errors.GEOSException:
        return True  # an unparsable footprint is not a reason to drop a scene


# --------------------------------------------------------------------------------------------------- ASF


def search_asf(job: JobConfig) -> list[Scene]:
    """Query ASF (CMR) with asf_search for IW SLCs over the job's area and dates."""
    import asf_search as asf
    import requests

    # asf_search would otherwise POST our search options to ASF's error-report service on every error.
    asf.REPORT_ERRORS = False
    options: dict[str, Any] = {
        "intersectsWith": job.area,
        "platform": asf.PLATFORM.SENTINEL1,
        "processingLevel": asf.PRODUCT_TYPE.SLC,
        "beamMode": asf.BEAMMODE.IW,
        "start": dt.datetime.combine(job.start, dt.time.min, tzinfo=dt.UTC),
        "end": dt.datetime.combine(job.end_date, dt.time.max, tzinfo=dt.UTC),
    }
    if job.track:
        options["relativeOrbit"] = job.track[0] if len(job.track) == 1 else list(job.track)
    if job.direction:
        options["flightDirection"] = job.direction.value
    try:
        results = asf.search(**options)
        results.raise_if_incomplete()
    except requests.RequestException as err:
        raise SearchError(
            f"ASF search could not reach the server ({type(err).__name__}: {err}); check the network or use "
            "search: file:<export.geojson> / local:<folder>",
            transient=True,
        ) from err
    except asf.ASFSearch5xxError as err:
        raise SearchError(f"ASF search failed on the server side: {err}", transient=True) from err
    except asf.ASFError as err:
        raise SearchError(f"ASF search was refused: {err}") from err
    scenes = []
    for product in results:
        scene = _scene_or_none(product.properties, product.geometry, getattr(product, "umm", None))
        if scene is not None:
            scenes.append(scene)
    log.info("ASF returned %d products, %d usable IW SLC scenes", len(results), len(scenes))
    return scenes


def _scene_or_none(
    props: Mapping[str, Any], geometry: Mapping[str, Any] | None, umm: Mapping[str, Any] | None
) -> Scene | None:
    try:
        return scene_from_asf(props, geometry, umm)
    except SceneNameError as err:
        log.warning("skipping ASF result: %s", err)
        return None


def scene_from_asf(
    props: Mapping[str, Any], geometry: Mapping[str, Any] | None = None, umm: Mapping[str, Any] | None = None
) -> Scene:
    """Build a scene from ASF product properties (as in ASF GeoJSON exports and ``ASFProduct.properties``)."""
    name = props.get("sceneName") or str(props.get("fileID", "")).removesuffix("-SLC")
    if not name:
        raise SceneNameError(f"ASF record without sceneName/fileID: {sorted(props)}")
    start, stop = props.get("startTime"), props.get("stopTime")
    precise = (umm or {}).get("TemporalExtent", {}).get("RangeDateTime", {})
    start = precise.get("BeginningDateTime") or start
    stop = precise.get("EndingDateTime") or stop
    direction = props.get("flightDirection")
    footprint = None
    if geometry:
        try:
            footprint = shapely.to_wkt(shape(geometry), rounding_precision=6, trim=True)
        except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException):
            footprint = None
    return Scene.from_fields(
        str(name),
        start=parse_utc(str(start)) if start else None,
        stop=parse_utc(str(stop)) if stop else None,
        relative_orbit=_int_or_none(props.get("pathNumber")),
        flight_direction=FlightDirection(str(direction).upper()) if direction else _direction_required(name),
        footprint_wkt=footprint,
        url=props.get("url"),
        size_bytes=_int_or_none(props.get("bytes")),
        md5=props.get("md5sum"),
        frame=_int_or_none(props.get("frameNumber")),
        ipf_version=props.get("pgeVersion"),
    )


def _direction_required(name: str) -> FlightDirection:
    raise SceneNameError(f"ASF record {name} has no flightDirection")


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "None":
        return None
    return int(value)


# --------------------------------------------------------------------------------------------------- exports


def read_search_export(path: Path) -> list[Scene]:
    """Scenes from a saved search: an ASF GeoJSON FeatureCollection or a CMR UMM-G JSON list."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SearchError(f"search file {path} is not readable JSON ({err})") from err
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        records = [(f.get("properties") or {}, f.get("geometry"), None) for f in doc.get("features", [])]
    elif isinstance(doc, list | dict):
        records = _cmr_records(doc, path)
    else:
        raise SearchError(f"search file {path} is neither an ASF GeoJSON export nor a CMR UMM-G JSON list")
    scenes = []
    for props, geometry, umm in records:
        try:
            scenes.append(scene_from_asf(props, geometry, umm))
        except SceneNameError as err:
            raise SearchError(f"search file {path}: {err}") from err
    return scenes


def _cmr_records(doc: Any, path: Path) -> list[tuple[dict[str, Any], Any, Any]]:
    import asf_search as asf
    from asf_search.search.search_generator import as_ASFProduct

    items = doc.get("items", []) if isinstance(doc, dict) else doc
    session = asf.ASFSession()
    records = []
    for item in items:
        if not isinstance(item, dict):
            raise SearchError(f"search file {path}: CMR items must be JSON objects")
        wrapped = item if "umm" in item else {"meta": {}, "umm": item}
        wrapped.setdefault("meta", {})
        try:
            product = as_ASFProduct(wrapped, session)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise SearchError(f"search file {path}: not a CMR UMM-G granule ({type(err).__name__}: {err})") from err
        records.append((product.properties, product.geometry, product.umm))
    return records


# --------------------------------------------------------------------------------------------------- local


def read_local_catalog(folder: Path) -> list[Scene]:
    """Scenes from SAFE zips (or .SAFE folders) in ``folder``: names checked, manifest read for the rest."""
    candidates = sorted([*folder.glob("*.zip"), *folder.glob("*.SAFE")])
    if not candidates:
        raise SearchError(f"local catalog {folder} holds no SAFE zips (*.zip) or .SAFE folders")
    return [local_scene(path) for path in candidates]


def local_scene(path: Path) -> Scene:
    """One local SAFE product as a scene; EW/GRD/unreadable products are errors naming the file."""
    try:
        name = ProductName.parse(path.name).require_iw_slc(where=str(path))
    except SceneNameError as err:
        raise SearchError(f"local catalog: {err}") from err
    try:
        with SafeArchive(path) as archive:
            info = read_manifest(archive)
    except (SafeError, OSError) as err:
        raise SearchError(f"local catalog: {path}: {err}") from err
    if info.mode != "IW" or info.product_type != "SLC":
        raise SearchError(
            f"local catalog: {path} manifest says {info.mode} {info.product_type}; only IW SLC can be processed"
        )
    return Scene.from_fields(
        name.product_id,
        start=info.start,
        stop=info.stop,
        relative_orbit=info.relative_orbit,
        flight_direction=FlightDirection(info.flight_direction),
        footprint_wkt=info.footprint_wkt,
        size_bytes=path.stat().st_size if path.is_file() else None,
        local_path=path.absolute(),
        ipf_version=info.ipf_version,
    )


__all__ = [
    "OffsetCubeError",
    "filter_scenes",
    "local_scene",
    "read_local_catalog",
    "read_search_export",
    "scene_from_asf",
    "search_asf",
    "search_scenes",
]
