"""The three topsApp input files, rendered with lxml from typed settings: one function per file.

ISCE's parser (``iscesys/Parsers/Parser.py``) ``eval()``s every property value and keeps the text as a string
when that fails, then applies the property's builtin type (``iscesys/Traits``). Values are therefore written as
Python literals: ``True``/``False`` (``bool("false")`` is True), lists in Python syntax (``[2]``,
``['/abs/a.zip']``), and absolute paths as bare text (a path starting with ``/`` never evaluates). Property
names are matched case- and space-insensitively by ISCE; we write the documented public names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lxml import etree

from offset_cube.errors import EngineError
from offset_cube.size import Size

TOPSAPP_XML = "topsApp.xml"
REFERENCE_XML = "reference.xml"
SECONDARY_XML = "secondary.xml"
#: topsApp's catalog output folders (``IW<n>`` is appended, ``TopsProc/runPreprocessor.py``).
CATALOG_OUTPUT = {"reference": "reference", "secondary": "secondary"}

Box = tuple[float, float, float, float]  # south, north, west, east (ISCE's SNWE order)


@dataclass(frozen=True)
class CatalogSettings:
    """One date's ``reference.xml`` / ``secondary.xml``: its SAFE slices, orbits and output folder."""

    role: Literal["reference", "secondary"]
    safes: tuple[Path, ...]
    orbit_directory: Path | None  # None: topsApp uses the annotation's state vectors
    output_directory: Path
    polarization: str  # lower case, e.g. "hh" (``Sentinel1.py``'s default 'vv' misses Antarctic HH data)


@dataclass(frozen=True)
class TopsAppSettings:
    """Everything ``topsApp.xml`` says, in the units and order topsApp expects."""

    reference: CatalogSettings
    secondary: CatalogSettings
    reference_catalog: Path
    secondary_catalog: Path
    swaths: tuple[int, ...]
    region_of_interest: Box
    geocode_bounding_box: Box
    dem: Path | None
    geocode_dem: Path | None
    window: Size
    search: Size  # half search range
    skip: Size
    oversampling: int
    snr_threshold_factor: float | None
    use_gpu: bool
    offset_geocode_list: tuple[Path, ...]


def topsapp_xml(settings: TopsAppSettings, comment: str | None = None) -> str:
    """``topsApp.xml``: offsets only (InSAR, ESD, unwrapping, ionosphere off; dense offsets on)."""
    root = etree.Element("topsApp")
    comp = etree.SubElement(root, "component", name="topsinsar")
    _prop(comp, "Sensor name", "SENTINEL1")
    for role, catalog in (("reference", settings.reference_catalog), ("secondary", settings.secondary_catalog)):
        node = etree.SubElement(comp, "component", name=role)
        etree.SubElement(node, "catalog").text = _abs(catalog, f"{role} catalog")
    _prop(comp, "swaths", _py_list(settings.swaths))
    _prop(comp, "region of interest", _py_list(_rounded(settings.region_of_interest)))
    _prop(comp, "geocode bounding box", _py_list(_rounded(settings.geocode_bounding_box)))
    if settings.dem is not None:
        _prop(comp, "demFilename", _abs(settings.dem, "DEM"))
    if settings.geocode_dem is not None:
        _prop(comp, "geocode demfilename", _abs(settings.geocode_dem, "geocode DEM"))
    # ESD defaults to True and is not disabled by `do interferogram` (applications/topsApp.py, TopsProc/runESD.py);
    # ice motion in the burst overlaps biases its one constant shift.
    for name in ("do interferogram", "do ESD", "do unwrap", "do unwrap 2 stage", "do ionosphere correction"):
        _prop(comp, name, _py_bool(False))
    _prop(comp, "do dense offsets", _py_bool(True))
    _prop(comp, "Ampcor window width", str(settings.window.width))
    _prop(comp, "Ampcor window height", str(settings.window.height))
    _prop(comp, "Ampcor search window width", str(settings.search.width))
    _prop(comp, "Ampcor search window height", str(settings.search.height))
    _prop(comp, "Ampcor skip width", str(settings.skip.width))
    _prop(comp, "Ampcor skip height", str(settings.skip.height))
    _prop(comp, "Ampcor oversampling factor", str(settings.oversampling))
    if settings.snr_threshold_factor is not None:
        _prop(comp, "SNR Threshold factor", repr(float(settings.snr_threshold_factor)))
    _prop(comp, "use GPU", _py_bool(settings.use_gpu))
    _prop(comp, "offset geocode list", _py_list(_abs(p, "offset geocode file") for p in settings.offset_geocode_list))
    return _serialise(root, comment)


def reference_xml(catalog: CatalogSettings, comment: str | None = None) -> str:
    """``reference.xml``: the earlier date's catalog."""
    if catalog.role != "reference":
        raise EngineError(f"reference_xml got the {catalog.role} catalog")
    return _catalog_xml(catalog, comment)


def secondary_xml(catalog: CatalogSettings, comment: str | None = None) -> str:
    """``secondary.xml``: the later date's catalog."""
    if catalog.role != "secondary":
        raise EngineError(f"secondary_xml got the {catalog.role} catalog")
    return _catalog_xml(catalog, comment)


def _catalog_xml(catalog: CatalogSettings, comment: str | None) -> str:
    if not catalog.safes:
        raise EngineError(f"the {catalog.role} catalog needs at least one SAFE product")
    root = etree.Element("component", name=catalog.role)
    _prop(root, "safe", _py_list(_abs(p, f"{catalog.role} SAFE") for p in catalog.safes))
    if catalog.orbit_directory is not None:
        _prop(root, "orbit directory", _abs(catalog.orbit_directory, f"{catalog.role} orbit directory"))
    _prop(root, "output directory", _abs(catalog.output_directory, f"{catalog.role} output directory"))
    _prop(root, "polarization", catalog.polarization.lower())
    return _serialise(root, comment)


def _prop(parent: etree._Element, name: str, value: str) -> None:
    etree.SubElement(parent, "property", name=name).text = value


def _py_bool(value: bool) -> str:
    return "True" if value else "False"


def _py_list(values: Iterable[object]) -> str:
    """Python list syntax (``repr``), which ISCE ``eval()``s into a list."""
    return repr(list(values))


def _rounded(box: Box) -> list[float]:
    # Six decimals (~0.1 m) keep the text short and stable across platforms.
    return [round(float(v), 6) for v in box]


def _abs(path: Path, what: str) -> str:
    """ISCE resolves relative paths against the process's working directory (``iscesys/Parsers/Parser.py``):
    refuse them."""
    if not path.is_absolute():
        raise EngineError(f"{what} path {path} is not absolute; topsApp inputs must use absolute paths")
    return str(path)


def _serialise(root: etree._Element, comment: str | None) -> str:
    etree.indent(root, space="    ")
    body = etree.tostring(root, encoding="unicode")
    # ISCE parses with xml.etree, which drops comments; they are for people reading the files.
    head = f"<!-- {comment.replace('--', '- -')} -->\n" if comment else ""
    return head + body + "\n"
