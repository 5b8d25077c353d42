"""ASF burst products ⇄ SAFE: assemble downloaded bursts into a SAFE that both engines read, and cut a SAFE into
burst products laid out as ASF's burst extractor serves them (for the simulator and tests).

ASF's burst extractor serves, per burst, ``<SLC id>/<swath>/<pol>/<n>.tiff`` (one burst, lines × samples of the
swath, complex int16) and ``<SLC id>/<swath>/<pol>/<n>.xml``: the parent SLC's metadata for that polarisation,
``<metadata>`` holding one ``<product>`` (annotation), ``<calibration>``, ``<noise>`` per swath (each
``<swath>``, ``<polarisation>``, ``<content>``) and ``<manifest>`` holding the SAFE's ``XFDU`` (the layout
burst2safe reads: ``burst2safe/utils.py:get_subxml_from_metadata``).

We assemble rather than call burst2safe because burst2safe needs GDAL's Python bindings (``osgeo``), which PyPI
ships only as a source package that compiles against a system libgdal; this project installs with pip alone.
The assembly differs from burst2safe's on purpose: the annotation is ESA's own, unchanged (all bursts of the
swath listed), and the measurement TIFF keeps the swath's full size with the downloaded bursts at their own
lines and nothing stored elsewhere (a sparse tiled TIFF: absent tiles cost no disk and read as zeros). No burst
list, geolocation grid or line numbering is rewritten, so nothing can be rewritten wrongly; a reader that
selects bursts over the area (the built-in engine, topsApp with a region of interest) finds the downloaded
ones, and any other burst reads as no data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from lxml import etree

from offset_cube.atomic import atomic_path, write_text_atomic
from offset_cube.errors import SafeError
from offset_cube.quiet import open_raster
from offset_cube.safe.annotation import parse_annotation
from offset_cube.safe.product import SafeProduct
from offset_cube.scenes import Burst

XFDU_NS = "urn:ccsds:schema:xfdu:1"
#: Metadata parts of the burst XML and where a SAFE keeps them (Sentinel-1 Product Specification §4).
PARTS = {"product": "annotation", "calibration": "annotation/calibration", "noise": "annotation/calibration"}
#: ESA burst ID map (Sentinel-1 burst ID note, ESA 2022; s1-reader ``get_burst_id``): seconds per burst cycle,
#: the offset of the first cycle, and the orbit period.
T_BEAM_S = 2.758273
T_PRE_S = 2.299849
T_ORBIT_S = 12 * 86400 / 175
TILE = 128
#: Lines read and written at a time when copying bursts.
STRIP_LINES = 256


@dataclass(frozen=True)
class BurstMetadata:
    """The parts of one burst XML: manifest and, per (part, swath, polarisation), the annotation content."""

    manifest: etree._Element
    parts: dict[tuple[str, str, str], etree._Element]

    def annotation(self, swath: str, polarisation: str) -> etree._Element:
        key = ("product", swath.upper(), polarisation.upper())
        if key not in self.parts:
            held = ", ".join(f"{s}/{p}" for (kind, s, p) in self.parts if kind == "product") or "none"
            raise SafeError(f"burst metadata holds no {swath} {polarisation} annotation (it holds {held})")
        return self.parts[key]


def read_burst_metadata(xml: bytes, source: str) -> BurstMetadata:
    """Parse an ASF burst XML; :class:`SafeError` naming ``source`` if it is not one."""
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as err:
        raise SafeError(f"{source} is not XML ({err})") from err
    manifest = root.find(f"manifest/{{{XFDU_NS}}}XFDU")
    meta = root.find("metadata")
    if manifest is None or meta is None:
        raise SafeError(f"{source} is not an ASF burst metadata file (it needs <metadata> and <manifest><XFDU>)")
    parts = {}
    for node in meta:
        swath, pol, content = node.findtext("swath"), node.findtext("polarisation"), node.find("content")
        if node.tag in PARTS and swath and pol and content is not None:
            parts[(node.tag, swath.strip().upper(), pol.strip().upper())] = content
    return BurstMetadata(manifest, parts)


def member_stem(content: etree._Element, source: str) -> str:
    """ESA's member name ``s1a-iw2-slc-vv-<start>-<stop>-<orbit>-<datatake>-<image>`` from an adsHeader."""
    header = content.find("adsHeader")
    if header is None:
        raise SafeError(f"{source}: annotation content lacks adsHeader")

    def field(name: str) -> str:
        value = header.findtext(name)
        if not value:
            raise SafeError(f"{source}: adsHeader lacks {name}")
        return value.strip()

    fmt = "%Y%m%dt%H%M%S"
    start = dt.datetime.fromisoformat(field("startTime")).strftime(fmt)
    stop = dt.datetime.fromisoformat(field("stopTime")).strftime(fmt)
    return (
        f"{field('missionId').lower()}-{field('swath').lower()}-{field('productType').lower()}-"
        f"{field('polarisation').lower()}-{start}-{stop}-{int(field('absoluteOrbitNumber')):06d}-"
        f"{int(field('missionDataTakeId')):06x}-{field('imageNumber')}"
    )


def _document(tag: str, content: etree._Element) -> bytes:
    root = etree.Element(tag)
    for child in content:
        root.append(_copy(child))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _copy(node: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(node))


# --------------------------------------------------------------------------------------------------- assemble


def assemble_safe(
    product_id: str, bursts: Sequence[Burst], tiffs: Mapping[str, Path], metadata: Mapping[str, Path], out: Path
) -> Path:
    """Write ``out`` (``<product_id>.SAFE``) from the bursts' TIFFs (by burst name) and metadata XMLs (by
    polarisation), atomically; return it."""
    with atomic_path(out) as tmp:
        (tmp / "annotation" / "calibration").mkdir(parents=True)
        (tmp / "measurement").mkdir()
        manifest_written = False
        for pol in sorted({b.polarization.value for b in bursts}):
            meta = read_burst_metadata(metadata[pol].read_bytes(), str(metadata[pol]))
            if not manifest_written:
                xml = etree.tostring(meta.manifest, xml_declaration=True, encoding="UTF-8")
                (tmp / "manifest.safe").write_bytes(xml)
                manifest_written = True
            for swath in sorted({b.swath.value for b in bursts if b.polarization.value == pol}):
                members = [b for b in bursts if b.polarization.value == pol and b.swath.value == swath]
                _write_swath(tmp, meta, swath, pol, members, tiffs, str(metadata[pol]))
    return out


def _write_swath(
    safe: Path,
    meta: BurstMetadata,
    swath: str,
    pol: str,
    members: Sequence[Burst],
    tiffs: Mapping[str, Path],
    source: str,
) -> None:
    content = meta.annotation(swath, pol)
    stem = member_stem(content, source)
    annotation = _document("product", content)
    (safe / "annotation" / f"{stem}.xml").write_bytes(annotation)
    for kind in ("calibration", "noise"):
        part = meta.parts.get((kind, swath, pol))
        if part is not None:
            (safe / PARTS[kind] / f"{kind}-{stem}.xml").write_bytes(_document(kind, part))
    parsed = parse_annotation(annotation, source=f"{source}:{swath}/{pol}")
    shape = (parsed.lines_per_burst * len(parsed.bursts), parsed.samples_per_burst)
    for burst in members:
        if burst.index >= len(parsed.bursts):
            raise SafeError(f"{burst.name}: burst index {burst.index} but the annotation lists {len(parsed.bursts)}")
    blocks = (
        (burst.index * parsed.lines_per_burst + row, 0, data)
        for burst in members
        for row, data in burst_tiff_strips(tiffs[burst.name], (parsed.lines_per_burst, parsed.samples_per_burst))
    )
    write_measurement_tiff(safe / "measurement" / f"{stem}.tiff", shape, blocks)


def burst_tiff_strips(path: Path, shape: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """(first line, complex64 lines) of a burst TIFF, :data:`STRIP_LINES` at a time (a burst is ~300 MB as
    complex64), after checking it holds the annotation's lines × samples per burst; all-zero strips are left out."""
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    try:
        with open_raster(path) as ds:
            if (ds.height, ds.width) != shape or ds.count != 1 or not ds.dtypes[0].startswith("complex"):
                raise SafeError(
                    f"{path} is {ds.count} band(s) of {ds.height}x{ds.width} {ds.dtypes[0]}; the annotation says "
                    f"one band of {shape[0]}x{shape[1]} complex int16"
                )
            for row in range(0, shape[0], STRIP_LINES):
                data = ds.read(1, window=Window(0, row, shape[1], min(STRIP_LINES, shape[0] - row)))
                if data.any():
                    yield row, np.asarray(data, dtype=np.complex64)
    except RasterioIOError as err:
        raise SafeError(f"{path} is not a readable burst TIFF ({err})") from err


def write_measurement_tiff(
    path: Path, shape: tuple[int, int], blocks: Iterable[tuple[int, int, np.ndarray]], tile: int = TILE
) -> None:
    """A tiled, sparse complex int16 GeoTIFF of ``shape``; ``blocks`` are (row, col, complex data) to store.

    Tiles that are all zero are not stored (GDAL ``SPARSE_OK``), so a swath-sized file holding a few bursts costs
    only those bursts on disk.
    """
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
    with open_raster(path, "w", **profile) as ds:
        for row, col, data in blocks:
            ds.write(data.astype(np.complex64), 1, window=Window(col, row, data.shape[1], data.shape[0]))


# --------------------------------------------------------------------------------------------------- cut


def relative_burst_id(track: int, anx_time_s: float) -> int:
    """ESA's relative burst ID from the seconds since the ascending node at the burst's centre."""
    return 1 + math.floor(((track - 1) * T_ORBIT_S + anx_time_s - T_PRE_S) / T_BEAM_S)


def cut_into_bursts(safe_path: Path, out: Path, base_url: str) -> list[dict[str, Any]]:
    """Write every burst of a SAFE as ASF serves it (``out/<SLC>/<swath>/<pol>/<n>.tiff`` and ``.xml``) and
    return the ASF GeoJSON features of those bursts, their URLs under ``base_url``."""
    features = []
    with SafeProduct(safe_path) as product:
        info = product.manifest
        manifest = etree.fromstring(product.archive.read("manifest.safe"))
        for pol in product.polarisations:
            metadata = _burst_metadata_xml(product, manifest, pol)
            for swath in product.swaths(pol):
                ann = product.annotation(swath, pol)
                folder = out / product.product_id / swath / pol
                folder.mkdir(parents=True, exist_ok=True)
                shape = (ann.lines_per_burst, ann.samples_per_burst)
                for burst in ann.bursts:
                    line0 = burst.index * ann.lines_per_burst
                    strips = (
                        (row, 0, product.read_window(swath, pol, (line0 + row, line0 + row + n), (0, shape[1])))
                        for row in range(0, shape[0], STRIP_LINES)
                        for n in [min(STRIP_LINES, shape[0] - row)]
                    )
                    tiff = folder / f"{burst.index}.tiff"
                    write_measurement_tiff(tiff, shape, ((r, c, d) for r, c, d in strips if d.any()))
                    (folder / f"{burst.index}.xml").write_bytes(metadata)
                    features.append(
                        _burst_feature(product.product_id, info.relative_orbit, info.flight_direction, ann, burst)
                        | {
                            "url_path": f"{product.product_id}/{swath}/{pol}/{burst.index}",
                            "bytes": tiff.stat().st_size,
                        }
                    )
    return [_finish_feature(f, base_url.rstrip("/")) for f in features]


def _burst_metadata_xml(product: SafeProduct, manifest: etree._Element, pol: str) -> bytes:
    root = etree.Element("burst")
    meta = etree.SubElement(root, "metadata")
    for swath in product.swaths(pol):
        member = product.swath_file(swath, pol).annotation
        node = etree.SubElement(meta, "product")
        etree.SubElement(node, "swath").text = swath
        etree.SubElement(node, "polarisation").text = pol
        content = etree.SubElement(node, "content")
        for child in etree.fromstring(product.archive.read(member)):
            content.append(child)
    etree.SubElement(root, "manifest").append(manifest)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _burst_feature(product_id: str, track: int, direction: str, ann: Any, burst: Any) -> dict[str, Any]:
    grid = ann.geolocation
    lines = (burst.index * ann.lines_per_burst, (burst.index + 1) * ann.lines_per_burst)
    inside = (grid.line >= lines[0]) & (grid.line <= lines[1])
    outline = shapely.MultiPoint(np.column_stack([grid.longitude[inside], grid.latitude[inside]])).convex_hull
    start = burst.azimuth_time
    stop = start + dt.timedelta(seconds=(ann.lines_per_burst - 1) * ann.azimuth_time_interval_s)
    anx = burst.azimuth_anx_time + (stop - start).total_seconds() / 2 if burst.azimuth_anx_time is not None else 0.0
    relative = burst.burst_id or relative_burst_id(track, anx)
    stamp = start.strftime("%Y%m%dT%H%M%S")
    name = f"S1_{relative:06d}_{ann.swath}_{stamp}_{ann.polarisation}_{product_id[-4:]}-BURST"
    return {
        "geometry": shapely.geometry.mapping(outline),
        "properties": {
            "beamModeType": "IW",
            "fileID": name,
            "sceneName": name,
            "flightDirection": direction,
            "pathNumber": track,
            "platform": f"SENTINEL-1{product_id[2]}",
            "polarization": ann.polarisation,
            "processingLevel": "BURST",
            "startTime": start.isoformat().replace("+00:00", "") + "Z",
            "stopTime": stop.isoformat().replace("+00:00", "") + "Z",
            "md5sum": None,
            "burst": {
                "fullBurstID": f"{track:03d}_{relative:06d}_{ann.swath}",
                "relativeBurstID": relative,
                "burstIndex": burst.index,
                "subswath": ann.swath,
                "samplesPerBurst": ann.samples_per_burst,
                "azimuthAnxTime": str(anx),
            },
        },
    }


def _finish_feature(feature: dict[str, Any], base_url: str) -> dict[str, Any]:
    path = feature.pop("url_path")
    props = {**feature["properties"], "bytes": feature.pop("bytes")}
    props["url"] = f"{base_url}/{path}.tiff"
    props["additionalUrls"] = [f"{base_url}/{path}.xml"]
    props["fileName"] = f"{props['fileID']}.tiff"
    return {"type": "Feature", "geometry": feature["geometry"], "properties": props}


def publish_bursts(safes: Iterable[Path], out: Path, base_url: str) -> Path:
    """Cut every SAFE into burst products under ``out`` (ASF's layout) and write ``out/bursts.geojson``, the
    ASF burst search export listing them with URLs under ``base_url``; return the export."""
    features: list[dict[str, Any]] = []
    for safe in safes:
        features += cut_into_bursts(safe, out, base_url)
    return write_text_atomic(out / "bursts.geojson", burst_export(features))


def burst_export(features: Sequence[dict[str, Any]]) -> str:
    """An ASF-style GeoJSON FeatureCollection of burst records, newest first as ASF answers."""
    ordered = sorted(features, key=lambda f: f["properties"]["startTime"], reverse=True)
    return json.dumps({"type": "FeatureCollection", "features": ordered}, indent=1)
