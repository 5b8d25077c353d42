"""Write simulated acquisitions as SAFE zips: a template's manifest and annotation re-timed, a new orbit and
geolocation grid, and a sparse complex int16 measurement TIFF.

A template annotation is reused for another date by shifting **all** its times by the same amount (every time
field of the annotation of the Sentinel-1 Product Specification, S1-RS-MDA-52-7441: header, image, orbit, FM-rate,
Doppler, burst and grid times); the ascending-node time follows the orbit only, so the along-track timing shift
shows up in ``azimuthAnxTime`` as on real data. The geolocation grid is recomputed with the new orbit (zero-Doppler
rdr2geo, :mod:`offset_cube.geometry.rangedoppler`). Burst ``byteOffset`` values keep the template's contiguous
layout; the TIFF itself is tiled and sparse (tiles outside the simulated area are not stored), like the sparse test
TIFFs of real products.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lxml import etree

from offset_cube.atomic import atomic_path
from offset_cube.geometry.ellipsoid import ecef_to_geodetic
from offset_cube.geometry.orbit import Orbit
from offset_cube.geometry.rangedoppler import rdr2geo
from offset_cube.safe.annotation import SPEED_OF_LIGHT, format_time, parse_time
from offset_cube.safe.manifest import NS

_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")
#: Absolute orbits per 12-day repeat cycle.
ORBITS_PER_CYCLE = 175


@dataclass(frozen=True)
class Retiming:
    """How one simulated date differs from the template in time and orbit numbering."""

    cycles: int  # whole 12-day repeat cycles after the template
    delay_s: float  # along-track timing shift of the acquisition relative to the orbit
    datatake: int

    @property
    def orbit_shift(self) -> dt.timedelta:
        return dt.timedelta(days=12 * self.cycles)

    @property
    def time_shift(self) -> dt.timedelta:
        return self.orbit_shift + dt.timedelta(microseconds=round(self.delay_s * 1e6))


def shift_times(root: etree._Element, shift: dt.timedelta) -> None:
    """Shift every element whose whole text is an ISO time (annotation/manifest) by ``shift``."""
    for node in root.iter():
        text = node.text
        if text and _TIME_RE.match(text.strip()):
            node.text = format_time(parse_time(text) + shift)


def retime_annotation(
    xml: bytes,
    retiming: Retiming,
    orbit: Orbit,
    height_m: float,
    absolute_orbit: int,
) -> bytes:
    """The template annotation moved to a new date with a new orbit (state vectors and geolocation grid)."""
    root = etree.fromstring(xml)
    shift_times(root, retiming.time_shift)
    _set(root, "adsHeader/absoluteOrbitNumber", str(absolute_orbit))
    _set(root, "adsHeader/missionDataTakeId", str(retiming.datatake))
    anx = root.find("imageAnnotation/imageInformation/ascendingNodeTime")
    if anx is not None and anx.text:
        anx.text = format_time(parse_time(anx.text) - dt.timedelta(seconds=retiming.delay_s))
    for node in root.iter("azimuthAnxTime"):
        node.text = f"{float(node.text or 0) + retiming.delay_s:.12e}"
    for node in root.findall("generalAnnotation/terrainHeightList/terrainHeight/value"):
        node.text = f"{height_m:.15e}"
    first = parse_time(root.findtext("imageAnnotation/imageInformation/productFirstLineUtcTime") or "")
    last = parse_time(root.findtext("imageAnnotation/imageInformation/productLastLineUtcTime") or "")
    _replace_orbit_list(root, orbit, first - dt.timedelta(seconds=65), last + dt.timedelta(seconds=75))
    _regrid_geolocation(root, orbit, height_m)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def retime_manifest(xml: bytes, retiming: Retiming, absolute_orbit: int, polarisation: str) -> bytes:
    """The template manifest moved to a new date: times, orbit and cycle numbers, data-take, one polarisation."""
    root = etree.fromstring(xml)
    shift_times(root, retiming.time_shift)
    for node in root.iterfind(".//safe:orbitNumber", NS):
        node.text = str(absolute_orbit)
    for node in root.iterfind(".//safe:cycleNumber", NS):
        node.text = str(int(node.text or 0) + retiming.cycles)
    for node in root.iterfind(".//s1:ascendingNodeTime", NS):
        node.text = format_time(parse_time(node.text or "") - dt.timedelta(seconds=retiming.delay_s))
    for node in root.iterfind(".//s1sarl1:missionDataTakeID", NS):
        node.text = str(retiming.datatake)
    for node in list(root.iterfind(".//s1sarl1:transmitterReceiverPolarisation", NS)):
        if (node.text or "").strip().upper() != polarisation:
            parent = node.getparent()
            if parent is not None:
                parent.remove(node)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _set(root: etree._Element, path: str, value: str) -> None:
    node = root.find(path)
    if node is not None:
        node.text = value


def _replace_orbit_list(root: etree._Element, orbit: Orbit, start: dt.datetime, stop: dt.datetime) -> None:
    """State vectors every 10 s on whole seconds from ``start`` to ``stop`` (like real annotations)."""
    orbit_list = root.find("generalAnnotation/orbitList")
    if orbit_list is None:
        return
    for child in list(orbit_list):
        orbit_list.remove(child)
    first = start.replace(microsecond=0)
    times = [first + dt.timedelta(seconds=10 * k) for k in range(int((stop - first).total_seconds() // 10) + 1)]
    positions, velocities = orbit.interpolate(np.array([orbit.seconds(t) for t in times]))
    for when, p, v in zip(times, positions, velocities, strict=True):
        node = etree.SubElement(orbit_list, "orbit")
        etree.SubElement(node, "time").text = format_time(when)
        etree.SubElement(node, "frame").text = "Earth Fixed"
        for name, vector in (("position", p), ("velocity", v)):
            part = etree.SubElement(node, name)
            for axis, value in zip("xyz", vector, strict=True):
                etree.SubElement(part, axis).text = f"{value:.15e}"
    orbit_list.set("count", str(len(times)))


def _regrid_geolocation(root: etree._Element, orbit: Orbit, height_m: float) -> None:
    """Recompute every geolocation grid point for the new orbit at the simulated ground height."""
    points = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if not points:
        return
    t = np.array([orbit.seconds(parse_time(p.findtext("azimuthTime") or "")) for p in points])
    slant = np.array([float(p.findtext("slantRangeTime") or 0) for p in points]) * SPEED_OF_LIGHT / 2
    ground = rdr2geo(orbit, t, slant, height_m)
    lat, lon, h = ecef_to_geodetic(ground)
    sat, _ = orbit.interpolate(t)
    look = ground - sat
    radial = ground / np.linalg.norm(ground, axis=-1, keepdims=True)
    # Grid angles are measured from the geocentric radius, as in the IPF's grids (real annotations agree with it
    # to < 1e-4°, not with the ellipsoid normal).
    incidence = np.degrees(np.arccos(np.sum(-look * radial, axis=-1) / np.linalg.norm(look, axis=-1)))
    nadir = -sat / np.linalg.norm(sat, axis=-1, keepdims=True)
    elevation = np.degrees(np.arccos(np.sum(look * nadir, axis=-1) / np.linalg.norm(look, axis=-1)))
    values = {"latitude": lat, "longitude": lon, "height": h, "incidenceAngle": incidence, "elevationAngle": elevation}
    for i, point in enumerate(points):
        for name, column in values.items():
            _set(point, name, f"{column[i]:.15e}")


def swath_member_stem(
    mission: str,
    swath: str,
    polarisation: str,
    start: dt.datetime,
    stop: dt.datetime,
    orbit: int,
    take: int,
    image: str,
) -> str:
    """``s1a-iw2-slc-vv-20220814t125820-20220814t125832-044549-055128-001`` (annotation/measurement stem)."""
    fmt = "%Y%m%dt%H%M%S"
    return (
        f"{mission.lower()}-{swath.lower()}-slc-{polarisation.lower()}-{start:{fmt}}-{stop:{fmt}}-"
        f"{orbit:06d}-{take:06x}-{image}"
    )


def write_measurement_tiff(
    path: Path, shape: tuple[int, int], blocks: list[tuple[int, int, np.ndarray]], tile: int = 128
) -> None:
    """A tiled, sparse complex int16 GeoTIFF of ``shape``; ``blocks`` are (row, col, complex data) to store."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    profile = {
        "driver": "GTiff",
        "dtype": "complex_int16",
        "width": shape[1],
        "height": shape[0],
        "count": 1,
        "tiled": True,
        "blockxsize": tile,
        "blockysize": tile,
        "sparse_ok": True,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as ds:
            for row, col, data in blocks:
                ds.write(data.astype(np.complex64), 1, window=Window(col, row, data.shape[1], data.shape[0]))


def write_safe_zip(path: Path, product_id: str, members: dict[str, bytes | Path]) -> Path:
    """Zip ``members`` (path inside the .SAFE → bytes or a file) as ``<product_id>.SAFE/...``, atomically."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, content in members.items():
            arcname = f"{product_id}.SAFE/{name}"
            if isinstance(content, Path):
                zf.write(content, arcname)
            else:
                zf.writestr(arcname, content)
    return path
