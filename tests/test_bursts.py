"""Burst acquisition on the real recorded ASF burst records (166 records of burst 174_372326_IW3, path 174
descending, 2014-10 to 2021-12, SE Alaska): search, the covering set of burst IDs, per-date scenes, pairing,
bytes planned, and the refusals. Neighbouring bursts are made from the real records by moving their footprint one
burst along track (and renaming them), because the recording holds one burst ID only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests_mock
import shapely
from shapely import affinity

from offset_cube.bursts import covering_burst_ids, margin_m
from offset_cube.config import JobConfig, load_job
from offset_cube.errors import ConfigError, SearchError
from offset_cube.planning import plan_pairs
from offset_cube.search import search_scenes, uses_bursts
from tests.conftest import data_path
from tests.test_search import cmr_mock_url

BURSTS = data_path("asf/geojson/SLC_BURST_stack.geojson")
BURSTS_CMR = data_path("asf/cmr/SLC_BURST_stack.cmr_umm.json")
BURST_ID = "174_372326_IW3"
BURST_BYTES = 144671472
#: 2 x 2 km inside burst 372326, > 5 km from its along-track neighbours.
INSIDE = "POLYGON((-135.95 57.03,-135.91 57.03,-135.91 57.05,-135.95 57.05,-135.95 57.03))"
#: Across the overlap of 372326 and the next burst south (372327, made below).
ACROSS = "POLYGON((-135.95 56.90,-135.91 56.90,-135.91 57.00,-135.95 57.00,-135.95 56.90))"
#: One burst further along a descending track: south (and a little west), as the real footprint's edges run.
NEXT_BURST_SHIFT = (-0.031, -0.1735)


def burst_job(area: str = INSIDE, search: Path = BURSTS, **fields: Any) -> JobConfig:
    return load_job(
        None, {"area": area, "start": "2015-01-01", "end": "2015-12-31", "search": f"file:{search}", **fields}
    )


def records() -> dict[str, Any]:
    return json.loads(BURSTS.read_text())


def with_next_burst(doc: dict[str, Any], skip_dates: tuple[str, ...] = ()) -> dict[str, Any]:
    """The records plus, for every date but ``skip_dates``, burst 372327 south of 372326 (index 4)."""
    added = []
    for feature in doc["features"]:
        props = feature["properties"]
        if props["startTime"][:10] in skip_dates:
            continue
        new = copy.deepcopy(feature)
        shape = affinity.translate(shapely.geometry.shape(feature["geometry"]), *NEXT_BURST_SHIFT)
        new["geometry"] = shapely.geometry.mapping(shape)
        p = new["properties"]
        p["sceneName"] = p["fileID"] = p["sceneName"].replace("372326", "372327")
        p["burst"] = {**p["burst"], "fullBurstID": "174_372327_IW3", "relativeBurstID": 372327, "burstIndex": 4}
        p["url"] = p["url"].replace("/3.tiff", "/4.tiff")
        p["additionalUrls"] = [u.replace("/3.xml", "/4.xml") for u in p["additionalUrls"]]
        added.append(new)
    return {**doc, "features": doc["features"] + added}


def write(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(doc))
    return path


# ------------------------------------------------------------------------------------------------ records


def test_burst_records_become_one_scene_per_date_holding_the_burst() -> None:
    job = burst_job()
    assert uses_bursts(job)  # a burst export: bursts by default
    scenes = search_scenes(job)
    assert len(scenes) == 15  # the dates of 2015 in the recording
    assert all(s.burst_ids == (BURST_ID,) for s in scenes)
    first = scenes[0]
    assert first.product_id == "S1A_IW_SLC__1SSV_20150121T151605_20150121T151628_004271_00531C_C7F3"
    burst = first.bursts[0]
    assert burst.index == 3 and burst.swath == "IW3" and burst.polarization == "VV"
    assert burst.url.endswith("/S1A_IW_SLC__1SSV_20150121T151605_20150121T151628_004271_00531C_C7F3/IW3/VV/3.tiff")
    assert burst.metadata_url.endswith("/IW3/VV/3.xml")
    assert first.size_bytes == burst.size_bytes and 144_000_000 < burst.size_bytes < 145_000_000  # type: ignore[operator]
    assert first.url is None and first.md5 is None  # bursts carry no md5: sizes are what is checked
    assert first.polarisations == ("VV",)


def test_pairs_and_bytes_planned_from_bursts() -> None:
    job = burst_job()
    plan = plan_pairs(job, search_scenes(job))
    assert len(plan.pairs) == 14 and not plan.incomplete
    summary = plan.pairs[0].summary()
    assert summary["reference_date"] == "2015-01-21" and summary["secondary_date"] == "2015-02-14"
    assert summary["reference_bursts"] == summary["secondary_bursts"] == [BURST_ID]
    assert summary["secondary_bytes"] == BURST_BYTES
    assert plan.pairs[0].reference.download_summary() == {"bursts": [BURST_ID], "bytes": 144659328}


def test_cmr_export_gives_the_same_bursts() -> None:
    from_cmr = search_scenes(burst_job(search=BURSTS_CMR))
    from_geojson = search_scenes(burst_job())
    assert [s.product_id for s in from_cmr] == [s.product_id for s in from_geojson]
    assert [s.size_bytes for s in from_cmr] == [s.size_bytes for s in from_geojson]


def test_asf_burst_search_runs_the_real_client_on_a_recorded_response() -> None:
    """The recorded CMR burst response (the asf_search project's own) stands in for CMR; asf_search is real."""
    umm = json.loads(BURSTS_CMR.read_text())
    page = {"items": [{"meta": {"concept-id": f"G{i}-ASF"}, "umm": u} for i, u in enumerate(umm)], "hits": len(umm)}
    job = load_job(
        None, {"area": INSIDE, "start": "2015-01-01", "end": "2015-12-31", "track": 174, "polarization": "VV"}
    )
    assert uses_bursts(job)  # ASF offers bursts: the default
    with requests_mock.Mocker() as mock:
        mock.post(cmr_mock_url(), json=page)
        scenes = search_scenes(job)
        sent = mock.request_history[0].text or ""
    assert len(scenes) == 15 and all(s.burst_ids == (BURST_ID,) for s in scenes)
    for expected in ("BURST", "PATH_NUMBER%2C174", "POLARIZATION%2CVV", "BEAM_MODE%2CIW"):
        assert expected in sent


# ------------------------------------------------------------------------------------------------ selection


def test_an_area_inside_one_burst_downloads_only_that_burst(tmp_path: Path) -> None:
    search = write(with_next_burst(records()), tmp_path / "bursts.geojson")
    scenes = search_scenes(burst_job(search=search))
    assert {s.burst_ids for s in scenes} == {(BURST_ID,)}


def test_an_area_across_two_bursts_downloads_both(tmp_path: Path) -> None:
    search = write(with_next_burst(records()), tmp_path / "bursts.geojson")
    job = burst_job(area=ACROSS, search=search)
    plan = plan_pairs(job, search_scenes(job))
    assert {tuple(a.burst_ids) for a in plan.acquisitions} == {(BURST_ID, "174_372327_IW3")}
    assert plan.pairs[0].summary()["reference_bytes"] == 144659328 * 2


def test_a_date_missing_a_burst_is_reported_and_not_paired(tmp_path: Path) -> None:
    search = write(with_next_burst(records(), skip_dates=("2015-06-14",)), tmp_path / "bursts.geojson")
    job = burst_job(area=ACROSS, search=search)
    plan = plan_pairs(job, search_scenes(job))
    assert [a.date.isoformat() for a in plan.incomplete] == ["2015-06-14"]
    assert plan.incomplete[0].missing_bursts == ["174_372327_IW3"]
    assert any("20150614" in w and "174_372327_IW3" in w for w in plan.warnings)
    dates = [(p.reference.date.isoformat(), p.secondary.date.isoformat()) for p in plan.pairs]
    assert ("2015-05-21", "2015-07-08") in dates  # the neighbours pair across the incomplete date
    assert all("2015-06-14" not in d for d in dates)
    assert len(plan.pairs) == 13


def test_covering_set_drops_bursts_that_others_cover() -> None:
    square = "POLYGON((0 0,0.1 0,0.1 0.1,0 0.1,0 0))"
    footprints = {
        "001_000001_IW1": "POLYGON((-0.5 -0.5,0.6 -0.5,0.6 0.6,-0.5 0.6,-0.5 -0.5))",  # covers everything
        "001_000002_IW1": "POLYGON((-0.5 -0.5,0.6 -0.5,0.6 0.05,-0.5 0.05,-0.5 -0.5))",
        "001_000003_IW1": "POLYGON((-0.5 0.04,0.6 0.04,0.6 0.6,-0.5 0.6,-0.5 0.04))",
        "001_000004_IW1": "POLYGON((5 5,6 5,6 6,5 6,5 5))",  # elsewhere
    }
    assert covering_burst_ids(footprints, shapely.from_wkt(square), 500.0) == ["001_000001_IW1"]
    del footprints["001_000001_IW1"]
    assert covering_burst_ids(footprints, shapely.from_wkt(square), 500.0) == ["001_000002_IW1", "001_000003_IW1"]


def test_margin_grows_with_window_search_and_gap() -> None:
    small = margin_m(burst_job(tracking={"window": [64, 16], "skip": [32, 8]}))
    large = margin_m(burst_job(tracking={"window": [256, 64], "skip": [44, 8], "search": [30, 10]}))
    assert 500 < small < large < 3000
    assert margin_m(burst_job(max_gap_days=12)) < margin_m(burst_job(max_gap_days=96))


def test_pairs_never_join_two_tracks(tmp_path: Path) -> None:
    doc = records()
    other = copy.deepcopy(doc["features"])
    for feature in other:  # the same ground as if seen from track 175, from other SLCs
        p = feature["properties"]
        p["pathNumber"] = 175
        p["burst"] = {**p["burst"], "fullBurstID": "175_372326_IW3"}
        product = p["url"].split("/")[3]
        fields = product.split("_")
        fields[-2] = f"{int(fields[-2], 16) ^ 0x800000:06X}"  # another data-take of another SLC
        p["url"] = p["url"].replace(product, "_".join(fields))
    doc["features"] += other
    job = burst_job(search=write(doc, tmp_path / "two.geojson"))
    plan = plan_pairs(job, search_scenes(job))
    assert plan.tracks == [174, 175]
    assert all(p.reference.track == p.secondary.track for p in plan.pairs)


# ------------------------------------------------------------------------------------------------ refusals


def test_ew_bursts_are_refused_naming_the_record(tmp_path: Path) -> None:
    doc = records()
    doc["features"][5]["properties"]["beamModeType"] = "EW"
    with pytest.raises(SearchError, match="EW burst; offset-cube processes IW SLC bursts only"):
        search_scenes(burst_job(search=write(doc, tmp_path / "ew.geojson")))


def test_a_grd_parent_is_refused(tmp_path: Path) -> None:
    doc = records()
    props = doc["features"][0]["properties"]
    props["url"] = props["url"].replace("_IW_SLC__1SSV_", "_IW_GRDH_1SSV_")
    with pytest.raises(SearchError, match="is a GRD product"):
        search_scenes(burst_job(search=write(doc, tmp_path / "grd.geojson")))


def test_bursts_mixed_with_scenes_are_refused(tmp_path: Path) -> None:
    doc = records()
    scene = copy.deepcopy(doc["features"][0])
    scene["properties"].pop("burst")
    scene["properties"]["processingLevel"] = "SLC"
    doc["features"].append(scene)
    with pytest.raises(SearchError, match="is not a burst product"):
        search_scenes(burst_job(search=write(doc, tmp_path / "mixed.geojson")))


def test_acquisition_must_match_what_the_search_offers(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="acquisition 'scenes' but .* lists burst products"):
        uses_bursts(burst_job(acquisition="scenes"))
    (tmp_path / "catalog").mkdir()
    with pytest.raises(ConfigError, match="local: catalog holds whole SAFE products"):
        load_job(
            None,
            {"area": INSIDE, "start": "2015-01-01", "search": f"local:{tmp_path / 'catalog'}", "acquisition": "bursts"},
        )
    scene_export = tmp_path / "scenes.geojson"
    doc = records()
    for feature in doc["features"]:
        feature["properties"].pop("burst")
        feature["properties"]["processingLevel"] = "SLC"
    write(doc, scene_export)
    with pytest.raises(SearchError, match="acquisition 'bursts' but .* lists whole SLC scenes"):
        uses_bursts(burst_job(search=scene_export, acquisition="bursts"))


def test_plan_command_shows_bursts_and_bytes_per_date() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    args = ["plan", "--area", INSIDE, "--start", "2015-01-01", "--end", "2015-03-31", "--search", f"file:{BURSTS}"]
    table = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert BURST_ID in table.stdout
    assert "bursts: 0.43 GB for 3 date(s) (0.14 GB per date); full scenes ≈ 11.7 GB, 27× more" in table.stdout
    listed = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert [p["secondary_bursts"] for p in listed] == [[BURST_ID]] * 2
    assert all(p["secondary_bytes"] > 144_000_000 for p in listed)


def test_isce2_bursts_cover_the_region_of_interest_topsapp_reads(tmp_path: Path) -> None:
    """topsApp processes every burst its region of interest (area bbox + isce2.roi_margin_deg) meets."""
    search = write(with_next_burst(records()), tmp_path / "bursts.geojson")
    builtin = search_scenes(burst_job(search=search))
    isce2 = search_scenes(burst_job(search=search, engine="isce2", isce2={"roi_margin_deg": 0.1}))
    assert {s.burst_ids for s in builtin} == {(BURST_ID,)}
    assert {s.burst_ids for s in isce2} == {(BURST_ID, "174_372327_IW3")}
