#!/usr/bin/env python3
"""Stand-in for ISCE2's ``topsApp.py``, used only by offset-cube's tests (never shipped or run in production).

It behaves like topsApp where offset-cube depends on it (ISCE2 2.6: applications/topsApp.py,
components/isceobj/TopsProc/):
* parses ``topsApp.xml`` and its catalogs the way ISCE does (property names lower-cased without spaces, values
  ``eval()``ed, else strings); an unknown property prints ISCE's message and exits 1; values ISCE would
  silently misread (``false`` → True) are refused;
* step mode: ``--start/--end`` over the 24 steps, ``Running step <name>`` lines, ``PICKLE/<step>`` and
  ``PICKLE/<step>.xml`` after each step, loading ``PICKLE/<previous step>`` when starting later ("Cannot open
  ..." if it is missing, and carrying on, as ISCE does);
* preprocess checks each listed swath's annotation in each SAFE for the catalog polarisation and prints
  "Could not extract swath N from ..." (and carries on) when it is missing;
* writes ``merged/`` outputs in ISCE's formats (float32 BIL/BIP + ``.xml`` + ``.vrt``; ``.geo`` rasters with
  coordinate1/2 = longitude/latitude of the first sample and ISCE's unshifted ``.geo.vrt`` GeoTransform):
  band 1 azimuth, band 2 range; -10000/0/999 for failed windows; 0.0 fill outside the swath.

Behaviour switches (environment ``FAKE_TOPSAPP_MODE``): ``ok`` (default), ``hang`` (at denseoffsets: fork a
worker process like DenseAmpcor, record both pids in ``fake_topsapp_pids.json``, sleep), ``no-outputs`` (every
step, no merged files, exit 0), ``could-not-extract`` (print the message for the first swath, then carry on),
``die-at:<step>`` (raise at that step: traceback, exit 1). ``FAKE_TOPSAPP_GPU=1`` writes the GPU outputs
(``dense_offsets.bip``). Every call is appended to ``fake_topsapp_calls.jsonl`` in the working folder, with the
PYTHONPATH it got and the version ``import isce`` gave it (None when isce is not importable).
"""

from __future__ import annotations

import fnmatch
import json
import os
import pickle
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np

STEPS = [
    "startup", "preprocess", "computeBaselines", "verifyDEM", "topo", "subsetoverlaps", "coarseoffsets",
    "coarseresamp", "overlapifg", "prepesd", "esd", "rangecoreg", "fineoffsets", "fineresamp", "ion", "burstifg",
    "mergebursts", "filter", "unwrap", "unwrap2stage", "geocode", "denseoffsets", "filteroffsets", "geocodeoffsets",
]  # fmt: skip

TOPSINSAR = {
    "sensorname": "str", "dodenseoffsets": "bool", "dointerferogram": "bool", "doesd": "bool", "dounwrap": "bool",
    "dounwrap2stage": "bool", "doionospherecorrection": "bool", "swaths": "list[int]",
    "regionofinterest": "list[float]", "geocodeboundingbox": "list[float]", "demfilename": "str",
    "geocodedemfilename": "str", "usehighresolutiondemonly": "int", "rangelooks": "int", "azimuthlooks": "int",
    "usevirtualfiles": "bool", "usegpu": "bool", "ampcorwindowwidth": "int", "ampcorwindowheight": "int",
    "ampcorsearchwindowwidth": "int", "ampcorsearchwindowheight": "int", "ampcorskipwidth": "int",
    "ampcorskipheight": "int", "ampcormargin": "int", "ampcoroversamplingfactor": "int", "rangeshift": "int",
    "azimuthshift": "int", "snrthresholdfactor": "float", "filternullfactor": "float", "filterwindowsize": "int",
    "offsetgeocodelist": "list[str]", "geocodelist": "list[str]", "offsetsnrthreshold": "float",
    "esdcoherencethreshold": "float", "pickledumpdirectory": "str", "pickleloaddirectory": "str", "renderer": "str",
}  # fmt: skip
CATALOG = {
    "safe": "list[str]", "orbitdirectory": "str", "orbitfile": "str", "auxiliarydatadirectory": "str",
    "auxiliaryfile": "str", "outputdirectory": "str", "polarization": "str", "swathnumber": "int",
    "regionofinterest": "list[float]", "xml": "list[str]", "tiff": "list[str]", "manifest": "list[str]",
}  # fmt: skip
NODATA, SNR_NODATA, COV_NODATA = -10000.0, 0.0, 999.0


def norm(name: str) -> str:
    return "".join(name.lower().split())


def parse_value(text: str) -> object:
    """ISCE's Parser: a value that evaluates as Python is that object, anything else stays a string."""
    try:
        return eval(text)  # exactly what ISCE's Parser.parseProperty does
    except Exception:
        return text


def checked(name: str, value: object, kind: str, cls: str) -> object:
    ok = {
        "str": lambda v: True,
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "list[int]": lambda v: isinstance(v, list) and all(isinstance(x, int) for x in v),
        "list[float]": lambda v: isinstance(v, list) and all(isinstance(x, int | float) for x in v),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }[kind](value)
    if not ok:
        print(f"fake topsApp: property {name!r} of {cls} = {value!r} is not a {kind} as ISCE would need it")
        sys.exit(2)
    return str(value) if kind == "str" else value


def properties(node: ET.Element, known: dict[str, str], cls: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for prop in node.findall("property"):
        name = prop.get("name") or ""
        key = norm(name)
        if key not in known:
            # iscesys/Component/Configurable.py::initProperties, then sys.exit(1)
            print(
                f'Error. The attribute corresponding to the key "{key}" is not present in the object "{cls}".\n'
                f"Possible causes are the definition in the xml file of such attribute that is no longer defined \n"
                f'in the object "{cls}" or a spelling error'
            )
            sys.exit(1)
        values[key] = checked(name, parse_value((prop.text or "").strip()), known[key], cls)
    return values


def load_config(xml_path: Path) -> dict[str, object]:
    root = ET.parse(xml_path).getroot()
    comp = root.find("component")
    if comp is None or norm(comp.get("name", "")) != "topsinsar":
        print(f"fake topsApp: {xml_path} has no <component name='topsinsar'>")
        sys.exit(2)
    config = properties(comp, TOPSINSAR, "<class 'topsApp.TopsInSAR'>")
    for child in comp.findall("component"):
        role = norm(child.get("name", ""))
        if role not in ("reference", "secondary"):
            print(f"fake topsApp: unknown component {role!r}")
            sys.exit(1)
        catalog = (child.findtext("catalog") or "").strip()
        catalog_root = ET.parse(catalog).getroot()  # relative paths resolve against the CWD, as in ISCE
        config[role] = properties(catalog_root, CATALOG, "<class 'Sentinel1.Sentinel1'>")
    return config


def annotation_found(safe: str, swath: int, pol: str) -> bool:
    pattern = f"*annotation/s1?-iw{swath}-slc-{pol}-*.xml"
    path = Path(safe)
    if path.is_dir():
        return any(fnmatch.fnmatch(str(p), pattern) for p in path.glob("annotation/*.xml"))
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        return any(fnmatch.fnmatch(n, "*SAFE/annotation/*") and fnmatch.fnmatch(n, pattern) for n in names)
    return False


def preprocess(config: dict[str, object], mode: str) -> list[int]:
    swaths = list(config.get("swaths") or [1, 2, 3])  # type: ignore[call-overload]
    extracted = []
    for number, swath in enumerate(swaths):
        ok = True
        for role in ("reference", "secondary"):
            catalog = config[role]
            assert isinstance(catalog, dict)
            safes, pol = catalog.get("safe", []), str(catalog.get("polarization", "vv"))
            missing = [s for s in safes if not annotation_found(s, swath, pol)]
            if missing or (mode == "could-not-extract" and number == 0):
                print(f"Could not extract swath {swath} from {safes}")
                print("Generated error: ", f"No annotation xml file found in zip file: {missing[:1] or safes[:1]}")
                ok = False
        if ok:
            extracted.append(swath)
    return extracted


def write_raster(path: Path, bands: list[np.ndarray], scheme: str = "BIL", geo: tuple[float, ...] | None = None):
    """ISCE's renderHdr layout (with its leading ISCE_VERSION property) and Image.renderVRT."""
    from lxml import etree

    from offset_cube.isce_raster import write_isce_raster

    if geo is None:
        write_isce_raster(path, bands, scheme=scheme)  # type: ignore[arg-type]
    else:
        lon0, dlon, lat0, dlat = geo
        write_isce_raster(path, bands, scheme=scheme, x_start=lon0, x_delta=dlon, y_start=lat0, y_delta=dlat)  # type: ignore[arg-type]
    xml_path = path.with_name(path.name + ".xml")
    header = etree.parse(str(xml_path)).getroot()
    version = etree.Element("property", name="ISCE_VERSION")
    etree.SubElement(version, "value").text = "Release: 2.6.5, svn-, 20250601. Current: svn-."
    header.insert(0, version)
    etree.indent(header, space="    ")
    xml_path.write_text(etree.tostring(header, encoding="unicode"))
    if geo is None:
        return
    # Image.renderVRT: SRS and the GeoTransform straight from coordinate1/2 (no half-pixel shift).
    vrt_path = path.with_name(path.name + ".vrt")
    root = etree.parse(str(vrt_path)).getroot()
    srs = etree.Element("SRS")
    srs.text = "EPSG:4326"
    transform = etree.Element("GeoTransform")
    transform.text = f"{lon0}, {dlon}, 0.0, {lat0}, 0.0, {dlat}"
    root.insert(0, transform)
    root.insert(0, srs)
    etree.indent(root, space="    ")
    vrt_path.write_text(etree.tostring(root, encoding="unicode") + "\n")


def truth(lat: np.ndarray, lon: np.ndarray, box: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The stand-in's offsets (pixels) at each position of the geocode box [S, N, W, E]."""
    south, north, west, east = box
    azimuth = 0.2 + 2.0 * (lat - south) / (north - south)
    rng = -0.5 + 1.5 * (lon - west) / (east - west)
    return azimuth.astype(np.float32), rng.astype(np.float32)


def geo_grid(config: dict[str, object]) -> tuple[float, float, float, float, int, int]:
    """The DEM-node grid over the geocode bounding box (geozero: the geocode DEM's posting, truncated)."""
    box = [float(v) for v in config["geocodeboundingbox"]]  # type: ignore[attr-defined]
    south, north, west, east = box
    dem = config.get("geocodedemfilename") or config.get("demfilename")
    x0, dx, y0, dy = west, 0.01, north, -0.005
    if dem:
        header = ET.parse(f"{dem}.xml").getroot()
        coords = {
            c.get("name"): {p.get("name"): p.findtext("value") for p in c.findall("property")}
            for c in header.findall("component")
        }
        x0, dx = float(coords["coordinate1"]["startingvalue"]), float(coords["coordinate1"]["delta"])
        y0, dy = float(coords["coordinate2"]["startingvalue"]), float(coords["coordinate2"]["delta"])
    i0, i1 = int((y0 - north) / -dy), int((y0 - south) / -dy)
    j0, j1 = int((west - x0) / dx), int((east - x0) / dx)
    return x0 + j0 * dx, dx, y0 + i0 * dy, dy, i1 - i0 + 1, j1 - j0 + 1


def dense_offsets(merged: Path, config: dict[str, object], gpu: bool) -> None:
    lines, samples = 16, 12
    down = np.linspace(-1, 1, lines * samples, dtype=np.float32).reshape(lines, samples)
    across = down[::-1].copy()
    snr = np.full((lines, samples), 12.0, np.float32)
    cov = [np.full((lines, samples), v, np.float32) for v in (0.01, 0.02, 0.001)]
    down[3, 4] = across[3, 4] = NODATA
    snr[3, 4] = SNR_NODATA
    for band in cov:
        band[3, 4] = COV_NODATA
    if gpu:
        write_raster(merged / "dense_offsets.bip", [down, across], "BIP")
        write_raster(merged / "dense_offsets_cov.bil", [cov[1], cov[0], cov[2]], "BIP")
    else:
        write_raster(merged / "dense_offsets.bil", [down, across])
        write_raster(merged / "dense_offsets_cov.bil", cov)
    write_raster(merged / "dense_offsets_snr.bil", [snr])


def geocode(merged: Path, config: dict[str, object]) -> None:
    lon0, dlon, lat0, dlat, length, width = geo_grid(config)
    lat = (lat0 + dlat * np.arange(length))[:, None] * np.ones((1, width))
    lon = np.ones((length, 1)) * (lon0 + dlon * np.arange(width))[None, :]
    box = [float(v) for v in config["geocodeboundingbox"]]  # type: ignore[attr-defined]
    azimuth, rng = truth(lat, lon, box)
    snr = np.full(lat.shape, 15.0, np.float32)
    covs = [np.full(lat.shape, v, np.float32) for v in (0.01, 0.02, 0.001)]
    failed = np.zeros(lat.shape, bool)
    failed[min(2, length - 1), ::5] = True
    outside = lon < box[2] + 0.15 * (box[3] - box[2])  # geozero's 0.0 fill outside the swath
    for band, bad in ((azimuth, NODATA), (rng, NODATA), (snr, SNR_NODATA), *((c, COV_NODATA) for c in covs)):
        band[failed] = bad
        band[outside] = 0.0
    geo = (lon0, dlon, lat0, dlat)
    for name in config.get("offsetgeocodelist") or []:  # type: ignore[attr-defined]
        source = Path(name)
        if not source.is_file():
            continue  # runGeocode keeps only existing files
        target = Path(f"{name}.geo")
        if source.name.startswith("dense_offsets_snr"):
            write_raster(target, [snr], geo=geo)
        elif source.name.startswith("dense_offsets_cov"):
            gpu = source.with_name("dense_offsets.bip").is_file()
            write_raster(target, [covs[1], covs[0], covs[2]] if gpu else covs, "BIP" if gpu else "BIL", geo=geo)
        else:
            write_raster(target, [azimuth, rng], "BIP" if source.suffix == ".bip" else "BIL", geo=geo)


def hang() -> None:
    worker = os.fork()
    if worker == 0:  # like DenseAmpcor's multiprocessing workers: same process group, no PDEATHSIG
        time.sleep(3600)
        os._exit(0)
    # written whole, then renamed: the tests poll for the file and read it at once
    Path("fake_topsapp_pids.json.tmp").write_text(json.dumps({"topsapp": os.getpid(), "workers": [worker]}))
    os.replace("fake_topsapp_pids.json.tmp", "fake_topsapp_pids.json")
    print("DenseAmpcor: working", flush=True)
    while True:
        time.sleep(1)


def run_step(step: str, config: dict[str, object], state: dict[str, object], mode: str) -> None:
    merged = Path("merged")
    if mode == f"die-at:{step}":
        raise RuntimeError(f"fake topsApp failure in step {step}")
    if step == "preprocess":
        state["swaths"] = preprocess(config, mode)
        for role in ("reference", "secondary"):
            out = Path(str(config[role]["outputdirectory"]))  # type: ignore[index]
            for swath in state["swaths"]:  # type: ignore[attr-defined]
                out.mkdir(parents=True, exist_ok=True)
                (out / f"IW{swath}.xml").write_text("<productmanager_name/>\n")
    elif step == "verifyDEM" and config.get("demfilename"):
        if not Path(f"{config['demfilename']}.xml").is_file():
            raise OSError(f"DEM header {config['demfilename']}.xml not found")
    elif step == "topo" and not state.get("swaths"):
        raise IndexError("list index out of range")  # what topo does with an empty burst list
    elif step == "mergebursts":
        merged.mkdir(exist_ok=True)
    elif step == "denseoffsets" and config.get("dodenseoffsets"):
        if mode == "hang":
            hang()
        if mode != "no-outputs":
            dense_offsets(merged, config, gpu=bool(config.get("usegpu")) and os.environ.get("FAKE_TOPSAPP_GPU") == "1")
    elif step == "filteroffsets" and config.get("dodenseoffsets") and (merged / "dense_offsets_snr.bil").is_file():
        source = merged / ("dense_offsets.bil" if (merged / "dense_offsets.bil").is_file() else "dense_offsets.bip")
        from offset_cube.isce_raster import read_band

        bands = [np.array(read_band(source, 1)), np.array(read_band(source, 2))]
        write_raster(merged / "filt_dense_offsets.bil", bands)
    elif step == "geocodeoffsets" and config.get("dodenseoffsets") and mode != "no-outputs":
        geocode(merged, config)


def isce_version() -> str | None:
    """What ``import isce`` (topsApp's first import) gives in this environment; None when it cannot import."""
    try:
        import isce  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(isce.__version__)


def main(argv: list[str]) -> int:
    mode = os.environ.get("FAKE_TOPSAPP_MODE", "ok")
    with open("fake_topsapp_calls.jsonl", "a") as calls:
        record = {"argv": argv, "pid": os.getpid(), "mode": mode, "pythonpath": os.environ.get("PYTHONPATH")}
        calls.write(json.dumps({**record, "isce": isce_version()}) + "\n")
    xml = next((a for a in argv if a.endswith(".xml")), "topsApp.xml")
    options = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    config = load_config(Path(xml))
    start, end = options.get("start", STEPS[0]), options.get("end", STEPS[-1])
    for name in (start, end):
        if name not in STEPS:
            print(f"ERROR: start={name} is not one of the named steps")
            return 0  # topsApp ignores run()'s return value
    print("Step processing")
    first, last = STEPS.index(start), STEPS.index(end)
    state: dict[str, object] = {}
    if first > 0:
        previous = Path("PICKLE") / STEPS[first - 1]
        if previous.is_file():
            state = pickle.loads(previous.read_bytes())
        else:
            print(f"Cannot open {previous}")
    for step in STEPS[first : last + 1]:
        print(f"Running step {step}", flush=True)
        run_step(step, config, state, mode)
        Path("PICKLE").mkdir(exist_ok=True)
        (Path("PICKLE") / f"{step}.xml").write_text(f"<insarProc><step>{step}</step></insarProc>\n")
        (Path("PICKLE") / step).write_bytes(pickle.dumps(state))
        print(f"Dumping the application's pickle object _insar to file  PICKLE/{step}")
        remaining = STEPS[STEPS.index(step) + 1 :]
        print(f"The remaining steps are (in order):  {remaining}" if remaining else "The is the final step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
