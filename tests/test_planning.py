"""Planning on the 176-scene real ASF stack (track 13 descending, 2015-06 to 2021-12), checked against
expectations derived by hand from the export: 170 acquisition dates (6 dates with two slices), so 169
consecutive pairs, with gaps of 12 days (139 pairs), 24 (22), 6 (4, where S1A and S1B interleave), 18, 36, 48
and 72 days (one each; the 72-day gap is 2017-03-06 → 2017-05-17)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from offset_cube.config import JobConfig, load_job
from offset_cube.download import releasable_scenes
from offset_cube.errors import ConfigError
from offset_cube.planning import make_acquisitions, plan_pairs, required_search_px, search_window
from offset_cube.scenes import Scene
from offset_cube.search import read_search_export, search_scenes
from tests.conftest import data_path

STACK = data_path("asf/geojson/S1A_IW_SLC__1SSV_20160528T141908_20160528T141938_011460_011746_335C_stack.geojson")
FAIRBANKS = data_path("asf/geojson/Fairbanks_S1_stack.geojson")
STACK_AREA = "POLYGON((-121 54.5,-120.5 54.5,-120.5 54.9,-121 54.9,-121 54.5))"
DUAL_SLICE_DATES = ["2016-10-07", "2016-10-31", "2016-11-24", "2016-12-18", "2017-01-11", "2017-02-04"]


def stack_job(**fields: Any) -> JobConfig:
    return load_job(
        None, {"area": STACK_AREA, "start": "2015-01-01", "end": "2022-01-01", "search": f"file:{STACK}", **fields}
    )


@pytest.fixture(scope="module")
def stack_scenes() -> list[Scene]:
    return search_scenes(stack_job())


def test_consecutive_pairs_of_the_real_stack(stack_scenes: list[Scene]) -> None:
    plan = plan_pairs(stack_job(), stack_scenes)
    assert len(plan.acquisitions) == 170
    assert len(plan.pairs) == 169
    assert plan.tracks == [13]
    assert plan.polarization == "VV"
    gaps = Counter(round(p.dt_days) for p in plan.pairs)
    assert gaps == {12: 139, 24: 22, 6: 4, 18: 1, 36: 1, 48: 1, 72: 1}
    # each pair starts where the previous one ended: consecutive dates, no date skipped or repeated
    for earlier, later in itertools.pairwise(plan.pairs):
        assert earlier.secondary == later.reference
    first = plan.pairs[0].summary()
    assert first["reference_date"] == "2015-06-03" and first["secondary_date"] == "2015-06-27"
    assert first["reference_scenes"] == ["S1A_IW_SLC__1SSV_20150603T141906_20150603T141935_006210_0081A6_AF4C"]


def test_slices_of_one_pass_form_one_acquisition(stack_scenes: list[Scene]) -> None:
    acquisitions = make_acquisitions(stack_scenes)
    dual = [a.date.isoformat() for a in acquisitions if len(a.scenes) == 2]
    assert dual == DUAL_SLICE_DATES
    assert all(len(a.scenes) <= 2 for a in acquisitions)


def test_missing_dates_pair_across_the_gap_with_a_wider_search_and_a_warning(stack_scenes: list[Scene]) -> None:
    plan = plan_pairs(stack_job(), stack_scenes)
    gap = next(p for p in plan.pairs if round(p.dt_days) == 72)
    assert (gap.reference.date, gap.secondary.date) == (dt.date(2017, 3, 6), dt.date(2017, 5, 17))
    # 1000 m/yr × 72 d = 197.1 m: 197.1 / (2.329562 / sin 46°) = 60.9 → 61 + 2 px margin; 197.1 / 13.88 = 14.2 → 15 + 2
    assert gap.search_px == (63, 17)
    assert any("72-day gap" in w and "20170306→20170517" in w for w in plan.warnings)
    twelve = next(p for p in plan.pairs if round(p.dt_days) == 12)
    # 32.85 m: 10.1 → 11 + 2; 2.37 → 3 + 2
    assert twelve.search_px == (13, 5)


def test_seed_search_rule_30x10_per_12_days() -> None:
    seed = stack_job(max_speed_m_per_yr=2500, tracking={"search": [30, 10], "search_reference_days": 12})
    assert search_window(seed, 12.0) == ((30, 10), False)
    assert search_window(seed, 24.0) == ((60, 20), False)
    assert search_window(seed, 6.0) == ((15, 5), False)


def test_search_smaller_than_max_speed_needs_is_widened_with_a_warning(stack_scenes: list[Scene]) -> None:
    fast = stack_job(max_speed_m_per_yr=5000, tracking={"search": [30, 10]})
    # 5000 m/yr × 12 d = 164.3 m: 50.7 → 51 + 2 = 53 px across; 11.8 → 12 + 2 = 14 lines
    assert required_search_px(fast, 12.0) == (53, 14)
    assert search_window(fast, 12.0) == ((53, 14), True)
    plan = plan_pairs(fast, stack_scenes[:3])  # two 24-day pairs: 328.5 m → 101.4 → 104 px; 23.7 → 26 lines
    assert [p.search_px for p in plan.pairs] == [(104, 26), (104, 26)]
    assert sum("search widened to 104x26" in w for w in plan.warnings) == 2


def test_pairs_never_cross_tracks(tmp_path: Path) -> None:
    stack = json.loads(STACK.read_text())
    fairbanks = json.loads(FAIRBANKS.read_text())
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps({"type": "FeatureCollection", "features": stack["features"] + fairbanks["features"]}))
    job = stack_job(search=f"file:{mixed}", area="POLYGON((-150 54,-119 54,-119 66,-150 66,-150 54))")
    plan = plan_pairs(job, search_scenes(job))
    assert plan.tracks == [13, 94]
    by_track = Counter(p.track for p in plan.pairs)
    assert by_track == {13: 169, 94: 2}
    for pair in plan.pairs:
        assert pair.reference.track == pair.secondary.track
        assert pair.reference.direction == pair.secondary.direction
    t94 = [p.summary() for p in plan.pairs if p.track == 94]
    assert [(p["reference_date"], p["secondary_date"]) for p in t94] == [
        ("2021-01-02", "2021-01-14"),
        ("2021-01-14", "2021-01-26"),
    ]


def test_one_acquisition_means_no_pairs() -> None:
    job = stack_job(
        search=f"file:{data_path('asf/geojson/Fairbanks_SLC.geojson')}",
        area="POLYGON((-150 63,-144 63,-144 66,-150 66,-150 63))",
    )
    plan = plan_pairs(job, search_scenes(job))
    assert len(plan.acquisitions) == 1
    assert plan.pairs == ()


def test_pairs_already_in_the_cube_are_skipped(stack_scenes: list[Scene]) -> None:
    job = stack_job()
    full = plan_pairs(job, stack_scenes)
    done = {full.pairs[0].pair_id, full.pairs[5].pair_id}
    plan = plan_pairs(job, stack_scenes, existing=done)
    assert len(plan.pairs) == 167
    assert set(plan.already_done) == done
    assert full.pairs[0].pair_id == "20150603_20150627_t013"


def test_max_gap_days_drops_long_pairs(stack_scenes: list[Scene]) -> None:
    plan = plan_pairs(stack_job(max_gap_days=24), stack_scenes)
    assert len(plan.pairs) == 169 - 3  # the 36-, 48- and 72-day pairs
    assert sorted(round(s.pair.dt_days) for s in plan.skipped) == [36, 48, 72]


def test_isce2_skips_pairs_whose_scaled_search_it_cannot_run(stack_scenes: list[Scene]) -> None:
    job = stack_job(engine="isce2", tracking={"window": [64, 16], "search": [20, 8]})
    plan = plan_pairs(job, stack_scenes)
    skipped = {round(s.pair.dt_days): s.reason for s in plan.skipped}
    # the height search 8 × Δt/12 reaches 2 × 16 = 32 lines at Δt = 48 days: the 48- and 72-day pairs
    assert set(skipped) == {48, 72}
    assert all("< 2 x window height" in reason for reason in skipped.values())


def test_polarisation_is_chosen_from_the_data() -> None:
    scenes = read_search_export(STACK)  # 155 VV+VH and 21 VV-only scenes
    vv = plan_pairs(stack_job(), scenes)
    assert vv.polarization == "VV" and len(vv.pairs) == 169
    hh = plan_pairs(stack_job(polarization="HH"), scenes)
    assert hh.pairs == () and any("lack HH" in w for w in hh.warnings)
    polar = stack_job(area="POLYGON((38 -70.4,39.6 -70.4,39.6 -69.7,38 -69.7,38 -70.4))")
    hh_scene = Scene.from_fields(
        "S1A_IW_SLC__1SSH_20180807T175609_20180807T175636_023143_028391_AE45", flight_direction="DESCENDING"
    )
    assert plan_pairs(polar, [hh_scene, *scenes[:1]]).polarization == "HH"  # tie in a polar area → HH


def test_slices_of_one_datatake_stay_together_across_midnight() -> None:
    def scene(pid: str) -> Scene:
        return Scene.from_fields(pid, flight_direction="ASCENDING")

    before = scene("S1A_IW_SLC__1SDV_20200101T235950_20200102T000017_030600_038187_AAAA")
    after = scene("S1A_IW_SLC__1SDV_20200102T000015_20200102T000042_030600_038187_BBBB")
    later = scene("S1A_IW_SLC__1SDV_20200113T235950_20200114T000017_030775_03879F_CCCC")
    acquisitions = make_acquisitions([before, after, later])
    assert [len(a.scenes) for a in acquisitions] == [2, 1]
    assert acquisitions[0].date == dt.date(2020, 1, 1)


def test_network_pairs_each_date_with_up_to_three_later_dates_within_the_gap(stack_scenes: list[Scene]) -> None:
    """Counts per gap from the export's 170 dates: each date with its next 3 dates, kept when ≤ 36 days apart.

    12-day pairs: 139 consecutive + 3 across two 6-day S1A/S1B steps; 36-day pairs: the third neighbour where
    the cycle was regular. The 48- and 72-day steps have no partner within the gap and are skipped as before.
    """
    plan = plan_pairs(stack_job(pairing="network", max_gap_days=36, max_neighbours=3), stack_scenes)
    gaps = Counter(round(p.dt_days) for p in plan.pairs)
    assert gaps == {6: 4, 12: 142, 18: 5, 24: 160, 30: 3, 36: 135}
    assert len(plan.pairs) == 449
    assert sorted(round(s.pair.dt_days) for s in plan.skipped) == [48, 72]
    order = {a.date: i for i, a in enumerate(plan.acquisitions)}
    partners = Counter(p.reference.date for p in plan.pairs)
    assert max(partners.values()) == 3
    for pair in plan.pairs:
        assert pair.reference.track == pair.secondary.track == 13
        assert pair.reference.direction == pair.secondary.direction
        assert 1 <= order[pair.secondary.date] - order[pair.reference.date] <= 3
        assert pair.dt_days <= 36.5
    assert len({p.pair_id for p in plan.pairs}) == len(plan.pairs)
    # every consecutive pair is in the network, so consecutive-only cubes can be extended to a network
    consecutive = {p.pair_id for p in plan_pairs(stack_job(max_gap_days=36), stack_scenes).pairs}
    assert consecutive <= {p.pair_id for p in plan.pairs}
    # each scene is downloaded once however many pairs use it
    scenes = plan.scenes()
    assert len(scenes) == 176 == len({s.product_id for s in scenes})


def test_network_pairs_are_idempotent_against_the_cube(stack_scenes: list[Scene]) -> None:
    job = stack_job(pairing="network", max_gap_days=36, max_neighbours=3)
    full = plan_pairs(job, stack_scenes)
    done = {p.pair_id for p in full.pairs[:100]}
    again = plan_pairs(job, stack_scenes, existing=done)
    assert set(again.already_done) == done
    assert {p.pair_id for p in again.pairs} == {p.pair_id for p in full.pairs} - done


def test_network_never_crosses_tracks(tmp_path: Path) -> None:
    stack = json.loads(STACK.read_text())
    fairbanks = json.loads(FAIRBANKS.read_text())
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps({"type": "FeatureCollection", "features": stack["features"] + fairbanks["features"]}))
    job = stack_job(
        search=f"file:{mixed}",
        area="POLYGON((-150 54,-119 54,-119 66,-150 66,-150 54))",
        pairing="network",
        max_gap_days=36,
    )
    plan = plan_pairs(job, search_scenes(job))
    t94 = [(p.reference.date.isoformat(), p.secondary.date.isoformat()) for p in plan.pairs if p.track == 94]
    assert t94 == [("2021-01-02", "2021-01-14"), ("2021-01-02", "2021-01-26"), ("2021-01-14", "2021-01-26")]
    assert Counter(p.track for p in plan.pairs) == {13: 449, 94: 3}
    assert all(p.reference.track == p.secondary.track for p in plan.pairs)


def test_network_pairing_needs_a_gap_limit() -> None:
    with pytest.raises(ConfigError, match="pairing 'network' needs max_gap_days"):
        stack_job(pairing="network")
    with pytest.raises(ConfigError, match="pairing"):
        stack_job(pairing="all")
    assert stack_job(pairing="network", max_gap_days=24).neighbours == 3
    assert stack_job(max_neighbours=5).neighbours == 1  # consecutive pairing ignores it


def test_scene_release_keeps_the_dates_the_next_run_pairs_with(stack_scenes: list[Scene]) -> None:
    """A network pairs a new date with the newest max_neighbours dates: their zips must survive the run."""
    scenes = [s.model_copy(update={"local_path": None}) for s in stack_scenes[:12]]
    job = stack_job(pairing="network", max_gap_days=36, max_neighbours=3)
    plan = plan_pairs(job, scenes)
    newest_three = {s.product_id for a in plan.acquisitions[-3:] for s in a.scenes}
    released = {scene.product_id: pair_ids for scene, pair_ids in releasable_scenes(plan, keep_newest=3)}
    assert not newest_three & set(released)
    assert len(released) == len({s.product_id for s in plan.scenes()}) - len(newest_three)
    first = plan.acquisitions[0].scenes[0].product_id
    assert sorted(released[first]) == sorted(p.pair_id for p in plan.pairs if p.reference == plan.acquisitions[0])
    consecutive = {scene.product_id for scene, _ in releasable_scenes(plan_pairs(stack_job(), scenes))}
    assert consecutive == {s.product_id for s in plan.scenes()} - {s.product_id for s in plan.acquisitions[-1].scenes}
