"""ISCE2 raster files: raw binary + ``.xml`` header (+ ``.vrt`` for GDAL), read lazily and written exactly.

Header properties are matched case-insensitively with spaces and underscores ignored, as ISCE itself does
(``DictUtils.renormalizeKey``). Layouts: BIL (band rows interleaved per line), BIP (bands interleaved per pixel),
BSQ (band after band). Geocoded rasters carry their grid in ``coordinate1`` (longitude: first sample centre,
delta) and ``coordinate2`` (latitude: first line centre, negative delta). See
ISCE2 ``components/isceobj/Image/`` and the ISCE rasters in the test data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from lxml import etree

from offset_cube.atomic import write_bytes_atomic, write_text_atomic
from offset_cube.errors import OffsetCubeError

Scheme = Literal["BIL", "BIP", "BSQ"]

#: ISCE data type name → (numpy dtype code without byte order, GDAL VRT type name).
DATA_TYPES: dict[str, tuple[str, str]] = {
    "byte": ("u1", "Byte"),
    "short": ("i2", "Int16"),
    "int": ("i4", "Int32"),
    "float": ("f4", "Float32"),
    "double": ("f8", "Float64"),
    "cfloat": ("c8", "CFloat32"),
    "cdouble": ("c16", "CFloat64"),
}
#: Values of failed dense-offset windows written by ISCE's DenseAmpcor (offsets, SNR, covariance).
OFFSET_NODATA = -10000.0
SNR_NODATA = 0.0
COV_NODATA = 999.0


class IsceRasterError(OffsetCubeError, ValueError):
    """An ISCE raster or its header is missing or malformed."""


@dataclass(frozen=True)
class IsceHeader:
    """The parts of an ISCE image header that locate and describe the pixels."""

    path: Path  # the raw data file
    width: int
    length: int
    bands: int
    data_type: str  # ISCE name, lower case
    scheme: Scheme
    byte_order: Literal["l", "b"]
    x_start: float = 0.0  # coordinate1 starting value (first sample; longitude for .geo)
    x_delta: float = 1.0
    y_start: float = 0.0  # coordinate2 starting value (first line; latitude for .geo)
    y_delta: float = 1.0

    @property
    def dtype(self) -> np.dtype[np.generic]:
        code = DATA_TYPES[self.data_type][0]
        return np.dtype(("<" if self.byte_order == "l" else ">") + code) if code != "u1" else np.dtype("u1")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the on-disk array, before band reordering."""
        if self.scheme == "BIL":
            return (self.length, self.bands, self.width)
        if self.scheme == "BIP":
            return (self.length, self.width, self.bands)
        return (self.bands, self.length, self.width)


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace(" ", "")


def read_isce_header(path: Path | str) -> IsceHeader:
    """Read ``<path>.xml`` (``path`` may also name the ``.xml`` itself)."""
    data_path = Path(path)
    if data_path.suffix == ".xml":
        data_path = data_path.with_suffix("")
    xml_path = data_path.with_name(data_path.name + ".xml")
    if not xml_path.is_file():
        raise IsceRasterError(f"ISCE header {xml_path} not found (an ISCE raster needs its .xml beside it)")
    try:
        root = etree.parse(str(xml_path)).getroot()
    except etree.XMLSyntaxError as err:
        raise IsceRasterError(f"ISCE header {xml_path} is not valid XML ({err})") from err
    props = {_key(p.get("name", "")): (p.findtext("value") or "").strip() for p in root.findall("property")}
    coords = {}
    for comp in root.findall("component"):
        values = {_key(p.get("name", "")): (p.findtext("value") or "").strip() for p in comp.findall("property")}
        coords[_key(comp.get("name", ""))] = values
    try:
        width, length = int(props["width"]), int(props["length"])
        bands = int(props.get("numberbands", "1"))
        data_type = props["datatype"].lower()
        scheme = props.get("scheme", "BIP").upper()
    except (KeyError, ValueError) as err:
        raise IsceRasterError(f"ISCE header {xml_path} lacks or misstates width/length/data_type ({err})") from err
    if data_type not in DATA_TYPES:
        raise IsceRasterError(f"ISCE header {xml_path}: data_type {data_type!r} not one of {sorted(DATA_TYPES)}")
    if scheme not in ("BIL", "BIP", "BSQ"):
        raise IsceRasterError(f"ISCE header {xml_path}: scheme {scheme!r} is not BIL, BIP or BSQ")
    c1, c2 = coords.get("coordinate1", {}), coords.get("coordinate2", {})
    return IsceHeader(
        path=data_path,
        width=width,
        length=length,
        bands=bands,
        data_type=data_type,
        scheme=scheme,  # type: ignore[arg-type]
        byte_order="b" if props.get("byteorder", "l").lower().startswith("b") else "l",
        x_start=float(c1.get("startingvalue", 0) or 0),
        x_delta=float(c1.get("delta", 1) or 1),
        y_start=float(c2.get("startingvalue", 0) or 0),
        y_delta=float(c2.get("delta", 1) or 1),
    )


def open_isce_raster(path: Path | str) -> tuple[IsceHeader, np.memmap[tuple[int, ...], np.dtype[np.generic]]]:
    """Header and a read-only memory map of the raw data (shape :attr:`IsceHeader.shape`)."""
    header = read_isce_header(path)
    expected = int(np.prod(header.shape)) * header.dtype.itemsize
    try:
        actual = header.path.stat().st_size
    except OSError as err:
        raise IsceRasterError(f"ISCE raster {header.path} cannot be read: {err.strerror or err}") from err
    if actual != expected:
        raise IsceRasterError(
            f"ISCE raster {header.path} has {actual} bytes; its header ({header.length} lines x {header.width} "
            f"samples x {header.bands} band(s) of {header.data_type}) implies {expected}"
        )
    return header, np.memmap(header.path, dtype=header.dtype, mode="r", shape=header.shape)


def read_band(path: Path | str, band: int = 1) -> np.ndarray:
    """One band (1-based) as a ``(lines, samples)`` view of the memory map (lazy until indexed)."""
    header, data = open_isce_raster(path)
    if not 1 <= band <= header.bands:
        raise IsceRasterError(f"{header.path} has {header.bands} band(s); band {band} does not exist")
    i = band - 1
    view: np.ndarray
    if header.scheme == "BIL":
        view = data[:, i, :]
    elif header.scheme == "BIP":
        view = data[:, :, i]
    else:
        view = data[i]
    return view


def write_isce_raster(
    path: Path | str,
    bands: list[np.ndarray],
    *,
    data_type: str = "float",
    scheme: Scheme = "BIL",
    x_start: float = 0.0,
    x_delta: float = 1.0,
    y_start: float = 0.0,
    y_delta: float = 1.0,
    geographic: bool = False,
    image_type: str | None = None,
) -> Path:
    """Write ``bands`` (each ``(lines, samples)``) as an ISCE raster with ``.xml`` and ``.vrt``; return the path."""
    data_type = data_type.lower()
    if data_type not in DATA_TYPES:
        raise IsceRasterError(f"data_type {data_type!r} not one of {sorted(DATA_TYPES)}")
    if not bands or any(b.shape != bands[0].shape or b.ndim != 2 for b in bands):
        raise IsceRasterError("bands must be a non-empty list of 2-D arrays of one shape")
    path = Path(path)
    length, width = bands[0].shape
    dtype = np.dtype("<" + DATA_TYPES[data_type][0]) if data_type != "byte" else np.dtype("u1")
    stack = np.stack([np.asarray(b, dtype=dtype) for b in bands])  # (bands, lines, samples)
    ordered = {"BIL": stack.transpose(1, 0, 2), "BIP": stack.transpose(1, 2, 0), "BSQ": stack}[scheme]
    header = IsceHeader(
        path=path,
        width=width,
        length=length,
        bands=len(bands),
        data_type=data_type,
        scheme=scheme,
        byte_order="l",
        x_start=x_start,
        x_delta=x_delta,
        y_start=y_start,
        y_delta=y_delta,
    )
    write_bytes_atomic(path, np.ascontiguousarray(ordered).tobytes())
    write_text_atomic(path.with_name(path.name + ".xml"), render_isce_xml(header, image_type=image_type))
    write_text_atomic(path.with_name(path.name + ".vrt"), render_vrt(header, geographic=geographic))
    return path


def render_isce_xml(header: IsceHeader, image_type: str | None = None) -> str:
    """The ``.xml`` header in the layout ISCE's ``renderHdr`` writes (property names, coordinate components)."""
    root = etree.Element("imageFile")

    def prop(parent: etree._Element, name: str, value: object, doc: str) -> None:
        node = etree.SubElement(parent, "property", name=name)
        etree.SubElement(node, "value").text = str(value)
        etree.SubElement(node, "doc").text = doc

    prop(root, "access_mode", "read", "Image access mode.")
    prop(root, "byte_order", header.byte_order, "Endianness of the image.")
    for index, (start, delta, size, what) in enumerate(
        (
            (header.x_start, header.x_delta, header.width, "width"),
            (header.y_start, header.y_delta, header.length, "length"),
        ),
        start=1,
    ):
        comp = etree.SubElement(root, "component", name=f"coordinate{index}")
        etree.SubElement(comp, "factorymodule").text = "isceobj.Image"
        etree.SubElement(comp, "factoryname").text = "createCoordinate"
        etree.SubElement(comp, "doc").text = f"{'First' if index == 1 else 'Second'} coordinate of a 2D image ({what})."
        prop(comp, "delta", _num(delta), "Coordinate quantization.")
        prop(comp, "endingvalue", _num(start + delta * size), "Ending value of the coordinate.")
        prop(comp, "family", "imagecoordinate", "Instance family name")
        prop(comp, "name", "imagecoordinate_name", "Instance name")
        prop(comp, "size", size, "Coordinate size.")
        prop(comp, "startingvalue", _num(start), "Starting value of the coordinate.")
    prop(root, "data_type", header.data_type.upper(), "Image data type.")
    prop(root, "family", "image", "Instance family name")
    prop(root, "file_name", header.path.name, "Name of the image file.")
    if image_type:
        prop(root, "image_type", image_type, "Image type used for displaying.")
    prop(root, "length", header.length, "Image length")
    prop(root, "name", "image_name", "Instance name")
    prop(root, "number_bands", header.bands, "Number of image bands.")
    prop(root, "scheme", header.scheme, "Interleaving scheme of the image.")
    prop(root, "width", header.width, "Image width")
    prop(root, "xmax", header.width, "Maximum range value")
    prop(root, "xmin", 0, "Minimum range value")
    etree.indent(root, space="    ")
    return etree.tostring(root, encoding="unicode") + "\n"


def render_vrt(header: IsceHeader, geographic: bool = False) -> str:
    """A GDAL VRT (VRTRawRasterBand per band, relativeToVRT) as ISCE writes beside its rasters."""
    itemsize = header.dtype.itemsize
    if header.scheme == "BIL":
        pixel, line, band_offset = itemsize, itemsize * header.width * header.bands, itemsize * header.width
    elif header.scheme == "BIP":
        pixel, line, band_offset = itemsize * header.bands, itemsize * header.width * header.bands, itemsize
    else:
        pixel, line, band_offset = itemsize, itemsize * header.width, itemsize * header.width * header.length
    root = etree.Element("VRTDataset", rasterXSize=str(header.width), rasterYSize=str(header.length))
    if geographic:
        etree.SubElement(root, "SRS").text = "EPSG:4326"
        # GDAL wants the outer corner; ISCE's starting value is the first pixel centre.
        x0 = header.x_start - header.x_delta / 2
        y0 = header.y_start - header.y_delta / 2
        etree.SubElement(
            root, "GeoTransform"
        ).text = f"{_num(x0)}, {_num(header.x_delta)}, 0.0, {_num(y0)}, 0.0, {_num(header.y_delta)}"
    for band in range(header.bands):
        node = etree.SubElement(
            root,
            "VRTRasterBand",
            dataType=DATA_TYPES[header.data_type][1],
            band=str(band + 1),
            subClass="VRTRawRasterBand",
        )
        etree.SubElement(node, "SourceFilename", relativeToVRT="1").text = header.path.name
        etree.SubElement(node, "ByteOrder").text = "LSB" if header.byte_order == "l" else "MSB"
        etree.SubElement(node, "ImageOffset").text = str(band * band_offset)
        etree.SubElement(node, "PixelOffset").text = str(pixel)
        etree.SubElement(node, "LineOffset").text = str(line)
    etree.indent(root, space="    ")
    return etree.tostring(root, encoding="unicode") + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
