"""The few Sentinel-1 annotation facts the ISCE2 engine needs: swath footprints and target geometry.

Kept small and isolated on purpose (one reader, one result type) so that it can be swapped for the project's
full SAFE annotation reader later. Source: each swath's ``annotation/s1?-iw<n>-slc-<pol>-*.xml``
(S1-RS-MDA-52-7441 §6.2): ``geolocationGrid`` points (time, latitude, longitude, incidence angle from the
ellipsoid normal) and ``imageAnnotation/imageInformation`` (slant-range pixel spacing, azimuth time interval).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lxml import etree
from shapely.geometry import MultiPoint, Polygon
from shapely.geometry.base import BaseGeometry

from offset_cube.errors import SafeError
from offset_cube.safe.archive import SafeArchive

IW_SWATHS = (1, 2, 3)


@dataclass(frozen=True)
class SwathAnnotation:
    """Geolocation grid of one IW swath of one SAFE, with the along-track geometry at each grid point."""

    safe: Path
    swath: int
    latitude: np.ndarray  # degrees, one value per grid point
    longitude: np.ndarray
    incidence_deg: np.ndarray  # from the ellipsoid normal
    heading_deg: np.ndarray  # along-track ground direction, clockwise from north, (-180, 180]
    azimuth_spacing_m: np.ndarray  # ground distance per azimuth line (azimuth time interval)
    range_pixel_spacing_m: float  # slant range
    azimuth_time_interval_s: float

    @property
    def footprint(self) -> Polygon:
        """Convex hull of the grid points (the swath's ground coverage at ellipsoid height)."""
        hull = MultiPoint(np.column_stack([self.longitude, self.latitude])).convex_hull
        if not isinstance(hull, Polygon):
            raise SafeError(f"{self.safe}: IW{self.swath} geolocation grid does not span an area")
        return hull


def read_swath_annotation(safe: Path, swath: int, polarization: str) -> SwathAnnotation | None:
    """The annotation of ``swath`` in ``safe`` for ``polarization`` (e.g. 'hh'); None when the SAFE lacks it."""
    with SafeArchive(safe) as archive:
        members = archive.glob(f"annotation/s1?-iw{swath}-slc-{polarization.lower()}-*.xml")
        if not members:
            return None
        data = archive.read(members[0])
    try:
        root = etree.fromstring(data)
    except etree.XMLSyntaxError as err:
        raise SafeError(f"{safe}: {members[0]} is not valid XML ({err})") from err
    return _parse(root, safe, swath, members[0])


def swaths_covering(
    safes: Sequence[Path], area: BaseGeometry, polarization: str
) -> tuple[tuple[int, ...], list[SwathAnnotation]]:
    """IW swaths (1-3) of the given slices whose footprint intersects ``area``, and their annotations."""
    found: list[SwathAnnotation] = []
    for safe in safes:
        for swath in IW_SWATHS:
            annotation = read_swath_annotation(safe, swath, polarization)
            if annotation is not None and annotation.footprint.intersects(area):
                found.append(annotation)
    return tuple(sorted({a.swath for a in found})), found


def _parse(root: etree._Element, safe: Path, swath: int, member: str) -> SwathAnnotation:
    def number(path: str) -> float:
        text = root.findtext(path)
        if text is None:
            raise SafeError(f"{safe}: {member} lacks {path}")
        return float(text)

    points = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if len(points) < 4:
        raise SafeError(f"{safe}: {member} has {len(points)} geolocation grid points; at least 4 are needed")
    try:
        time = np.array([_seconds(p.findtext("azimuthTime") or "") for p in points])
        pixel = np.array([int(p.findtext("pixel") or "") for p in points])
        lat = np.array([float(p.findtext("latitude") or "") for p in points])
        lon = np.array([float(p.findtext("longitude") or "") for p in points])
        inc = np.array([float(p.findtext("incidenceAngle") or "") for p in points])
        height = np.array([float(p.findtext("height") or "0") for p in points])
    except ValueError as err:
        raise SafeError(f"{safe}: {member} has a malformed geolocation grid point ({err})") from err
    interval = number("imageAnnotation/imageInformation/azimuthTimeInterval")
    heading, spacing = _along_track(time, pixel, lat, lon, height, inc, interval)
    return SwathAnnotation(
        safe=safe,
        swath=swath,
        latitude=lat,
        longitude=lon,
        incidence_deg=inc,
        heading_deg=heading,
        azimuth_spacing_m=spacing,
        range_pixel_spacing_m=number("imageAnnotation/imageInformation/rangePixelSpacing"),
        azimuth_time_interval_s=interval,
    )


def _along_track(
    time: np.ndarray,
    pixel: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    height: np.ndarray,
    incidence: np.ndarray,
    interval: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Heading and ground azimuth spacing at each grid point, from the along-track track of its column.

    Grid points sit on terrain (``height`` up to kilometres): at one slant range a point at height h lies
    ``h / tan(incidence)`` farther from the sensor than its ellipsoid twin, so neighbouring points give headings
    off by degrees. Each point is first moved back to the ellipsoid, towards the sensor; then each column (one
    range pixel, ~10 burst starts) gets a quadratic fit of position against time, whose derivative gives the
    along-track direction and the ground speed; speed × azimuth time interval is the ground length of one line.
    """

    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    heading = np.full(time.shape, np.nan)
    spacing = np.full(time.shape, np.nan)
    for column in np.unique(pixel):
        idx = np.flatnonzero(pixel == column)
        idx = idx[np.argsort(time[idx])]
        if idx.size < 3:
            continue
        rough, _back, _dist = geod.inv(lon[idx[0]], lat[idx[0]], lon[idx[-1]], lat[idx[-1]])
        shift = height[idx] / np.tan(np.radians(incidence[idx]))
        # At one slant range a point at height h lies h/tan(θ) farther out than its ellipsoid twin: move it
        # back towards the sensor (right-looking: the sensor is on the heading − 90° side).
        lon0, lat0, _az = geod.fwd(lon[idx], lat[idx], np.full(idx.size, rough - 90.0), shift)
        t = time[idx] - time[idx[0]]
        degree = min(2, idx.size - 1)
        fit_lat, fit_lon = np.polyfit(t, lat0, degree), np.polyfit(t, lon0, degree)
        step = 1.0  # seconds
        azimuth, _back, distance = geod.inv(
            np.polyval(fit_lon, t), np.polyval(fit_lat, t), np.polyval(fit_lon, t + step), np.polyval(fit_lat, t + step)
        )
        heading[idx] = azimuth
        spacing[idx] = np.asarray(distance) / step * interval
    if np.isnan(heading).all():
        raise SafeError("the geolocation grid has fewer than 3 points along track; heading cannot be derived")
    fill = ~np.isfinite(heading)
    heading[fill] = np.nanmedian(heading)
    spacing[fill] = np.nanmedian(spacing)
    return heading, spacing


def _seconds(text: str) -> float:
    """Seconds since the epoch of an annotation time such as '2025-04-06T02:20:10.390702' (UTC)."""
    return dt.datetime.fromisoformat(text.strip()).replace(tzinfo=dt.UTC).timestamp()
