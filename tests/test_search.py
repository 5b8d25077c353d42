"""The three search sources: ASF (recorded CMR responses fed to the real asf_search), exports, local SAFEs."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_mock

from offset_cube.config import JobConfig, load_job
from offset_cube.errors import SearchError
from offset_cube.search import read_local_catalog, read_search_export, search_scenes
from tests.conftest import data_path

STACK_NAME = "S1A_IW_SLC__1SSV_20160528T141908_20160528T141938_011460_011746_335C_stack"
STACK_GEOJSON = data_path(f"asf/geojson/{STACK_NAME}.geojson")
STACK_CMR = data_path(f"asf/cmr/{STACK_NAME}.cmr_umm.json")
STACK_AREA = "POLYGON((-121 54.5,-120.5 54.5,-120.5 54.9,-121 54.9,-121 54.5))"
SAFE_ZIPS = data_path("safe/s1-reader")


def stack_job(**fields: Any) -> JobConfig:
    return load_job(None, {"area": STACK_AREA, "start": "2015-01-01", "end": "2022-01-01", **fields})


def test_geojson_export_gives_every_scene_oldest_first() -> None:
    scenes = search_scenes(stack_job(search=f"file:{STACK_GEOJSON}"))
    assert len(scenes) == 176
    assert [s.start for s in scenes] == sorted(s.start for s in scenes)
    assert scenes[0].product_id == "S1A_IW_SLC__1SSV_20150603T141906_20150603T141935_006210_0081A6_AF4C"
    assert scenes[0].md5 == "b812b50ffa3be70566b375a00da0e413"
    assert scenes[0].size_bytes == 2830964932
    assert scenes[0].url and scenes[0].url.endswith("_AF4C.zip")
    assert {s.relative_orbit for s in scenes} == {13}


def test_cmr_export_gives_the_same_scenes_with_precise_times() -> None:
    from_geojson = read_search_export(STACK_GEOJSON)
    from_cmr = read_search_export(STACK_CMR)
    assert sorted(s.product_id for s in from_cmr) == sorted(s.product_id for s in from_geojson)
    assert any(s.start.microsecond for s in from_cmr)  # UMM keeps microseconds; ASF properties truncate them
    by_id = {s.product_id: s for s in from_geojson}
    for scene in from_cmr:
        assert abs((scene.start - by_id[scene.product_id].start).total_seconds()) < 1


def test_filters_on_dates_track_direction_and_area() -> None:
    assert len(search_scenes(stack_job(search=f"file:{STACK_GEOJSON}", start="2016-01-01", end="2016-12-31"))) == 18
    assert search_scenes(stack_job(search=f"file:{STACK_GEOJSON}", track=14)) == []
    assert search_scenes(stack_job(search=f"file:{STACK_GEOJSON}", direction="ASCENDING")) == []
    far_away = "POLYGON((10 10, 11 10, 11 11, 10 11, 10 10))"
    assert search_scenes(stack_job(search=f"file:{STACK_GEOJSON}", area=far_away)) == []


def test_export_with_burst_products_is_a_clear_error() -> None:
    with pytest.raises(SearchError, match="SLC_BURST.geojson.*not a Sentinel-1 product id"):
        read_search_export(data_path("asf/geojson/SLC_BURST.geojson"))


# ------------------------------------------------------------------------------------------------ ASF


def cmr_mock_url() -> str:
    """The CMR granule-search endpoint asf_search posts to; requests_mock intercepts it, nothing leaves the host."""
    from asf_search.constants import INTERNAL

    return f"https://{INTERNAL.CMR_HOST}{INTERNAL.CMR_GRANULE_PATH}"  # only ever given to requests_mock


def _cmr_page() -> dict[str, Any]:
    umm_items = json.loads(STACK_CMR.read_text())
    items = [
        {"meta": {"concept-id": f"G{i}-ASF", "native-id": u["GranuleUR"]}, "umm": u} for i, u in enumerate(umm_items)
    ]
    return {"items": items, "hits": len(items)}


def test_asf_search_runs_the_real_client_on_a_recorded_response() -> None:
    """A recorded CMR response (the asf_search project's own) stands in for CMR; asf_search itself is real."""
    with requests_mock.Mocker() as mock:
        mock.post(cmr_mock_url(), json=_cmr_page())
        scenes = search_scenes(stack_job(search="asf", track=13, direction="DESCENDING"))
        sent = mock.request_history[0].text or ""
    assert len(scenes) == 176
    assert [s.start for s in scenes] == sorted(s.start for s in scenes)  # ASF answers newest first
    for expected in ("BEAM_MODE%2CIW", "PATH_NUMBER%2C13", "ASCENDING_DESCENDING%2CDESCENDING", "SLC"):
        assert expected in sent


def test_asf_unreachable_is_one_transient_error() -> None:
    with requests_mock.Mocker() as mock:
        mock.post(
            cmr_mock_url(),
            exc=requests.exceptions.ConnectionError("Name or service not known"),
        )
        with pytest.raises(SearchError, match="could not reach the server") as info:
            search_scenes(stack_job(search="asf"))
    assert info.value.transient is True


def test_asf_rejecting_the_query_is_not_retried() -> None:
    with requests_mock.Mocker() as mock:
        mock.post(
            cmr_mock_url(),
            status_code=400,
            json={"errors": ["bad polygon"]},
        )
        with pytest.raises(SearchError, match="refused") as info:
            search_scenes(stack_job(search="asf"))
    assert info.value.transient is False


# ------------------------------------------------------------------------------------------------ local


def test_local_catalog_reads_real_manifests(tmp_path: Path) -> None:
    for name in (
        "S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip",
        "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.zip",
    ):
        (tmp_path / name).symlink_to(SAFE_ZIPS / name)
    scenes = read_local_catalog(tmp_path)
    assert [s.relative_orbit for s in scenes] == [71, 71]
    assert [s.flight_direction.value for s in scenes] == ["DESCENDING", "DESCENDING"]
    assert scenes[0].start.isoformat() == "2020-05-11T13:51:17.603718+00:00"
    assert scenes[0].footprint_wkt and scenes[0].footprint_wkt.startswith("POLYGON((-115.650406 37.133995")
    assert scenes[1].ipf_version == "003.52"  # the zip with __MACOSX entries
    assert all(s.local_path for s in scenes)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("S1A_EW_SLC__1SDH_20200511T135117_20200511T135144_032518_03C421_7768.zip", "is a EW product"),
        ("S1A_IW_GRDH_1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip", "is a GRD product"),
    ],
)
def test_local_catalog_rejects_ew_and_grd_naming_the_file(tmp_path: Path, name: str, expected: str) -> None:
    shutil.copy(SAFE_ZIPS / "S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip", tmp_path / name)
    with pytest.raises(SearchError, match=expected) as info:
        read_local_catalog(tmp_path)
    assert name in str(info.value)


def test_local_catalog_rejects_a_zip_without_manifest(tmp_path: Path) -> None:
    name = "S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip"
    with zipfile.ZipFile(tmp_path / name, "w") as archive:
        archive.writestr("readme.txt", "not a SAFE")
    with pytest.raises(SearchError, match="holds no manifest.safe"):
        read_local_catalog(tmp_path)


def test_empty_local_catalog_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="holds no SAFE zips"):
        read_local_catalog(tmp_path)
