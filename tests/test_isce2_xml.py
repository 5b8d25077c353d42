"""topsApp.xml / reference.xml / secondary.xml rendering: golden files for the Shirase example, and every
property parsed back with lxml and evaluated the way ISCE's parser does."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from lxml import etree

from offset_cube.area import parse_area
from offset_cube.config import FlightDirection, load_job
from offset_cube.errors import EngineError
from offset_cube.isce2.render import swaths_covering, write_pair_files
from offset_cube.isce2.xml import CatalogSettings, reference_xml, secondary_xml
from offset_cube.planning import Pair, plan_pairs
from offset_cube.scenes import Scene
from tests.conftest import ROOT
from tests.isce2_support import BC_AREA, BC_REFERENCE

GOLDEN = Path(__file__).parent / "golden" / "isce2_shirase"
PLACEHOLDER = "@PAIR_DIR@"
SCENES = Path("/data/shirase/scenes")
ORBITS = Path("/data/shirase/orbits")
DEM = Path("/data/shirase/dem/rema_wgs84.dem")
#: Two slices (frames) on the reference date, one on the secondary date, HH, S1B track 58 descending.
PRODUCTS = (
    "S1B_IW_SLC__1SSH_20190110T032115_20190110T032142_014434_01AE2B_1A2B",
    "S1B_IW_SLC__1SSH_20190110T032140_20190110T032207_014434_01AE2B_3C4D",
    "S1B_IW_SLC__1SSH_20190122T032115_20190122T032142_014609_01B3C1_5E6F",
)


def shirase_pair() -> tuple[Pair, object]:
    job = load_job(ROOT / "examples" / "shirase.yaml", {"swaths": ["IW2"], "storage.out": "/data/shirase/out"})
    scenes = [Scene.from_fields(p, flight_direction=FlightDirection.DESCENDING) for p in PRODUCTS]
    plan = plan_pairs(job, scenes)
    assert [p.pair_id for p in plan.pairs] == ["20190110_20190122_t058"]
    return plan.pairs[0], job


def render_shirase(pair_dir: Path) -> Path:
    pair, job = shirase_pair()
    ref = [SCENES / s.file_name for s in pair.reference.scenes]
    sec = [SCENES / s.file_name for s in pair.secondary.scenes]
    return write_pair_files(pair, pair_dir, ref, sec, ORBITS, ORBITS, job, DEM, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["topsApp.xml", "reference.xml", "secondary.xml"])
def test_shirase_render_matches_golden_file(tmp_path: Path, name: str) -> None:
    pair_dir = render_shirase(tmp_path / "pair")
    rendered = (pair_dir / name).read_text().replace(str(pair_dir), PLACEHOLDER)
    assert rendered == (GOLDEN / name).read_text()


def properties(node: etree._Element) -> dict[str, str]:
    return {p.get("name", ""): (p.text or "") for p in node.findall("property")}


def isce_value(text: str) -> object:
    """ISCE's Parser.parseProperty: eval() the text, else keep it as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_shirase_topsapp_properties_parse_back(tmp_path: Path) -> None:
    pair_dir = render_shirase(tmp_path / "pair")
    root = etree.parse(str(pair_dir / "topsApp.xml")).getroot()
    assert root.tag == "topsApp"
    comp = root.find("component")
    assert comp is not None and comp.get("name") == "topsinsar"
    values = {k: isce_value(v) for k, v in properties(comp).items()}
    assert values == {
        "Sensor name": "SENTINEL1",
        "swaths": [2],
        # area bbox 38.0336..39.6985 E, -70.4952..-69.7358 N as ROI (no SAFE to compute burst boxes from yet),
        # plus 0.02° (geocode)
        "region of interest": [-70.4952, -69.7358, 38.0336, 39.6985],
        "geocode bounding box": [-70.5152, -69.7158, 38.0136, 39.7185],
        "demFilename": str(DEM),
        "do interferogram": False,
        "do ESD": False,
        "do unwrap": False,
        "do unwrap 2 stage": False,
        "do ionosphere correction": False,
        "do dense offsets": True,
        "Ampcor window width": 256,
        "Ampcor window height": 64,
        "Ampcor search window width": 30,  # 30x10 per 12 days, pair 12 days apart
        "Ampcor search window height": 10,
        "Ampcor skip width": 44,
        "Ampcor skip height": 8,
        "Ampcor oversampling factor": 32,
        "use GPU": False,
        "offset geocode list": [
            f"{pair_dir}/merged/dense_offsets.bil",
            f"{pair_dir}/merged/dense_offsets_snr.bil",
            f"{pair_dir}/merged/dense_offsets_cov.bil",
            f"{pair_dir}/merged/filt_dense_offsets.bil",
        ],
    }
    # booleans are capitalised Python literals (bool("false") would be True in ISCE)
    assert properties(comp)["do ESD"] == "False" and properties(comp)["do dense offsets"] == "True"
    catalogs = {c.get("name"): c.findtext("catalog") for c in comp.findall("component")}
    assert catalogs == {"reference": f"{pair_dir}/reference.xml", "secondary": f"{pair_dir}/secondary.xml"}


@pytest.mark.parametrize(
    ("name", "role", "products"),
    [("reference.xml", "reference", PRODUCTS[:2]), ("secondary.xml", "secondary", PRODUCTS[2:])],
)
def test_shirase_catalog_properties_parse_back(tmp_path: Path, name: str, role: str, products: tuple[str]) -> None:
    pair_dir = render_shirase(tmp_path / "pair")
    root = etree.parse(str(pair_dir / name)).getroot()
    assert (root.tag, root.get("name")) == ("component", role)
    values = {k: isce_value(v) for k, v in properties(root).items()}
    assert values == {
        "safe": [f"{SCENES}/{p}.zip" for p in products],
        "orbit directory": str(ORBITS),
        "output directory": f"{pair_dir}/{role}",
        "polarization": "hh",
    }


def test_optional_properties_and_gpu_list(tmp_path: Path) -> None:
    pair, job = shirase_pair()
    job = job.model_copy(update={"isce2": job.isce2.model_copy(update={"use_gpu": True, "snr_threshold_factor": 4.0})})  # type: ignore[attr-defined]
    pair_dir = write_pair_files(
        pair, tmp_path, [SCENES / "a.zip"], [SCENES / "b.zip"], None, None, job, DEM, Path("/data/coarse.dem")
    )
    comp = etree.parse(str(pair_dir / "topsApp.xml")).getroot().find("component")
    assert comp is not None
    values = properties(comp)
    assert values["SNR Threshold factor"] == "4.0"
    assert values["use GPU"] == "True"
    assert values["geocode demfilename"] == "/data/coarse.dem"
    assert isce_value(values["offset geocode list"])[-1] == f"{tmp_path}/merged/dense_offsets.bip"  # type: ignore[index]
    catalog = properties(etree.parse(str(pair_dir / "reference.xml")).getroot())
    assert "orbit directory" not in catalog  # annotation orbits: no directory for topsApp to search


def test_relative_paths_are_refused() -> None:
    catalog = CatalogSettings("reference", (Path("scenes/a.zip"),), None, Path("/abs/reference"), "vv")
    with pytest.raises(EngineError, match="not absolute"):
        reference_xml(catalog)
    with pytest.raises(EngineError, match="got the reference catalog"):
        secondary_xml(catalog)


def test_swaths_are_chosen_by_the_reference_annotation_footprints() -> None:
    """The real BC reference: the area lies in IW2 only; a box across the scene meets all three; the sea west of
    the scene meets none; an HH request finds no swath in this VV/VH product."""
    assert swaths_covering([BC_REFERENCE], parse_area(BC_AREA), "vv") == (2,)
    across = "POLYGON((-129.5 52, -126.5 52, -126.5 52.1, -129.5 52.1, -129.5 52))"
    assert swaths_covering([BC_REFERENCE], parse_area(across), "VV") == (1, 2, 3)
    sea = "POLYGON((-132 52, -131 52, -131 52.1, -132 52.1, -132 52))"
    assert swaths_covering([BC_REFERENCE], parse_area(sea), "vv") == ()
    assert swaths_covering([BC_REFERENCE], parse_area(BC_AREA), "hh") == ()
