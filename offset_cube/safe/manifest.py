"""The few manifest.safe facts that a catalog search needs (mode, type, track, pass, times, footprint)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from lxml import etree

from offset_cube.errors import SafeError
from offset_cube.safe.archive import SafeArchive

NS = {
    "safe": "http://www.esa.int/safe/sentinel-1.0",
    "s1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1",
    "s1sarl1": "http://www.esa.int/safe/sentinel-1.0/sentinel-1/sar/level-1",
    "gml": "http://www.opengis.net/gml",
}


@dataclass(frozen=True)
class ManifestInfo:
    mode: str
    product_type: str
    relative_orbit: int
    absolute_orbit: int
    flight_direction: str
    start: dt.datetime
    stop: dt.datetime
    polarisations: tuple[str, ...]
    footprint_wkt: str | None
    ipf_version: str | None


def read_manifest(archive: SafeArchive) -> ManifestInfo:
    """Parse ``manifest.safe`` of an open SAFE product."""
    try:
        root = etree.fromstring(archive.read("manifest.safe"))
    except etree.XMLSyntaxError as err:
        raise SafeError(f"{archive.path}: manifest.safe is not valid XML ({err})") from err

    def text(xpath: str) -> str:
        found = xpath_strings(root, xpath)
        if not found:
            raise SafeError(f"{archive.path}: manifest.safe lacks {xpath}")
        return found[0].strip()

    footprint = xpath_strings(root, "//safe:footPrint/gml:coordinates/text()")
    software = xpath_strings(root, "//safe:processing/safe:facility/safe:software/@version")
    return ManifestInfo(
        mode=text("//s1sarl1:mode/text()"),
        product_type=text("//s1sarl1:productType/text()"),
        relative_orbit=int(text("//safe:relativeOrbitNumber[@type='start']/text()")),
        absolute_orbit=int(text("//safe:orbitNumber[@type='start']/text()")),
        flight_direction=text("//s1:pass/text()").upper(),
        start=_time(text("//safe:acquisitionPeriod/safe:startTime/text()")),
        stop=_time(text("//safe:acquisitionPeriod/safe:stopTime/text()")),
        polarisations=tuple(
            p.strip().upper() for p in xpath_strings(root, "//s1sarl1:transmitterReceiverPolarisation/text()")
        ),
        footprint_wkt=_footprint_wkt(footprint[0]) if footprint else None,
        ipf_version=software[0] if software else None,
    )


def xpath_strings(node: etree._Element, xpath: str, namespaces: dict[str, str] | None = None) -> list[str]:
    """Text results of an XPath query (text() or @attribute) as plain strings."""
    found = node.xpath(xpath, namespaces=namespaces or NS)
    return [str(item) for item in found] if isinstance(found, list) else []


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "")).replace(tzinfo=dt.UTC)


def _footprint_wkt(coordinates: str) -> str:
    """gml:coordinates are 'lat,lon lat,lon ...'; return a closed lon/lat WKT polygon."""
    points = []
    for pair in coordinates.split():
        lat, lon = (float(v) for v in pair.split(","))
        points.append(f"{lon} {lat}")
    if points and points[0] != points[-1]:
        points.append(points[0])
    return f"POLYGON(({', '.join(points)}))"
