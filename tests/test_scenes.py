"""Product-id parsing, IW/SLC checks, relative orbits."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from offset_cube.errors import SceneNameError
from offset_cube.scenes import ProductName, Scene, relative_orbit
from tests.conftest import data_path

STACK = data_path("asf/geojson/S1A_IW_SLC__1SSV_20160528T141908_20160528T141938_011460_011746_335C_stack.geojson")


def test_every_field_of_a_product_id() -> None:
    name = ProductName.parse("S1A_IW_SLC__1SSH_20180807T175609_20180807T175636_023143_028391_AE45")
    assert (name.mission, name.beam_mode, name.product_type, name.resolution) == ("S1A", "IW", "SLC", "_")
    assert (name.level, name.product_class, name.polarisation) == (1, "S", "SH")
    assert name.start == dt.datetime(2018, 8, 7, 17, 56, 9, tzinfo=dt.UTC)
    assert name.stop == dt.datetime(2018, 8, 7, 17, 56, 36, tzinfo=dt.UTC)
    assert (name.absolute_orbit, name.datatake, name.crc) == (23143, "028391", "AE45")
    assert [p.value for p in name.polarisations] == ["HH"]


@pytest.mark.parametrize(
    "text",
    [
        "S1B_IW_SLC__1SDV_20210102T032031_20210102T032058_024970_02F8C3_C081.zip",
        "S1B_IW_SLC__1SDV_20210102T032031_20210102T032058_024970_02F8C3_C081.SAFE",
        "S1B_IW_SLC__1SDV_20210102T032031_20210102T032058_024970_02F8C3_C081-SLC",
        "/data/scenes/S1B_IW_SLC__1SDV_20210102T032031_20210102T032058_024970_02F8C3_C081.zip",
    ],
)
def test_names_with_extensions_and_paths(text: str) -> None:
    name = ProductName.parse(text)
    assert name.product_id == "S1B_IW_SLC__1SDV_20210102T032031_20210102T032058_024970_02F8C3_C081"
    assert [p.value for p in name.polarisations] == ["VV", "VH"]


@pytest.mark.parametrize(
    ("product_id", "expected"),
    [
        ("S1A_EW_SLC__1SDH_20180807T175609_20180807T175636_023143_028391_AE45", "is a EW product"),
        ("S1A_IW_GRDH_1SDV_20180807T175609_20180807T175636_023143_028391_AE45", "is a GRD product"),
    ],
)
def test_non_iw_or_non_slc_is_rejected_with_reason(product_id: str, expected: str) -> None:
    with pytest.raises(SceneNameError, match=expected):
        Scene.from_fields(product_id, flight_direction="ASCENDING")


def test_garbage_names_say_what_is_expected() -> None:
    with pytest.raises(SceneNameError, match="expected e.g. S1A_IW_SLC__1SSH"):
        ProductName.parse("S1_372326_IW3_20180815T151558_VV_6BD3-BURST")


def test_relative_orbit_matches_asf_path_number_on_176_real_records() -> None:
    features = json.loads(STACK.read_text())["features"]
    assert len(features) == 176
    for feature in features:
        props = feature["properties"]
        name = ProductName.parse(props["sceneName"])
        assert relative_orbit(name.mission, name.absolute_orbit) == props["pathNumber"], props["sceneName"]


def test_relative_orbit_examples_per_mission() -> None:
    assert relative_orbit("S1A", 23143) == 146  # test_every_field_of_a_product_id's scene; S1A: (abs - 73) % 175 + 1
    assert relative_orbit("S1B", 24970) == 94  # the Fairbanks record
    assert relative_orbit("S1A", 44748) == 51  # manifest of the Hawaii product in tests/data/safe
    with pytest.raises(SceneNameError, match="unknown Sentinel-1 mission"):
        relative_orbit("S2A", 1)


def test_scene_fills_times_and_track_from_the_id() -> None:
    scene = Scene.from_fields(
        "S1A_IW_SLC__1SSH_20180807T175609_20180807T175636_023143_028391_AE45", flight_direction="ASCENDING"
    )
    assert scene.relative_orbit == 146
    assert scene.date == dt.date(2018, 8, 7)
    assert scene.file_name.endswith("_AE45.zip")
