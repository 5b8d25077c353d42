"""Orbit selection on the real .EOF files in tests/data/orbits and on a recorded bucket listing served locally.

Sources outside (ASF's bucket, Copernicus Data Space) are replaced by tests/fake_orbits.py; the listing is a
subset of a real recording and the bodies are the real files (an S1B body is the real S1A file with its
mission rewritten, since no S1B orbit file is among the test data).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from offset_cube.credentials import Credentials
from offset_cube.eof import EofName, read_eof
from offset_cube.errors import OrbitError, TransientOrbitError
from offset_cube.orbits import (
    AsfOrbitBucket,
    CdseOrbitCatalogue,
    cached_candidates,
    choose_orbit,
    find_orbit,
    rank_candidates,
    validate_orbit_file,
)
from offset_cube.scenes import Scene
from tests.conftest import data_path
from tests.fake_orbits import FakeOrbitServer, serve_orbits

ORBITS = data_path("orbits")
FULL_POEORB = "S1A_OPER_AUX_POEORB_OPOD_20210307T053325_V20180419T225942_20180421T005942.EOF"
RESORB_1024 = "S1A_OPER_AUX_RESORB_OPOD_20221024T205436_V20221024T170308_20221024T202038.EOF"


def scene(product_id: str) -> Scene:
    return Scene.from_fields(product_id, flight_direction="ASCENDING")


def synthetic(mission: str, start: str, seconds: int = 27) -> Scene:
    """A scene id at ``start`` (YYYYmmddTHHMMSS) of ``mission``; the other fields are placeholders."""
    begin = dt.datetime.strptime(start, "%Y%m%dT%H%M%S")
    stop = (begin + dt.timedelta(seconds=seconds)).strftime("%Y%m%dT%H%M%S")
    return scene(f"{mission}_IW_SLC__1SDV_{start}_{stop}_021600_025400_ABCD")


@pytest.fixture()
def orbit_server() -> Iterator[FakeOrbitServer]:
    with serve_orbits() as server:
        yield server


@pytest.mark.parametrize(
    ("product_id", "expected"),
    [
        (
            "S1A_IW_SLC__1SDV_20141004T031312_20141004T031339_002674_002FB6_07B5",
            "S1A_OPER_AUX_POEORB_OPOD_20210304T033926_V20141003T225944_20141005T005944.EOF",
        ),
        (
            "S1A_IW_SLC__1SDV_20141227T062619_20141227T062642_003901_004AF0_13F8",
            "S1A_OPER_AUX_POEORB_OPOD_20210305T064823_V20141226T225944_20141228T005944.EOF",
        ),
        (
            "S1A_IW_SLC__1SDV_20220828T042306_20220828T042335_044748_0557C6_F396",
            "S1A_OPER_AUX_POEORB_OPOD_20220917T081749_V20220827T225942_20220829T005942.EOF",
        ),
        (
            "S1A_IW_SLC__1SDV_20221011T162212_20221011T162240_045397_056D9F_6E2D",
            "S1A_OPER_AUX_POEORB_OPOD_20221031T083817_V20221010T225942_20221012T005942.EOF",
        ),
    ],
)
def test_real_scenes_get_their_trimmed_real_poeorb_from_the_cache(
    product_id: str, expected: str, tmp_path: Path
) -> None:
    """The files are trimmed to ~100-190 state vectors around the scene (three still claim 9361): they qualify."""
    found = find_orbit(scene(product_id), "POEORB", [tmp_path, ORBITS], sources=[])
    assert found == ORBITS / expected
    assert len(read_eof(found).times) < 200


def test_trimmed_file_claiming_more_vectors_than_it_holds_is_read_by_what_it_holds() -> None:
    path = ORBITS / "S1A_OPER_AUX_POEORB_OPOD_20210304T033926_V20141003T225944_20141005T005944.EOF"
    assert 'List_of_OSVs count="9361"' in path.read_text()
    assert len(read_eof(path).times) == 143


def test_a_scene_outside_a_trimmed_file_is_not_given_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Noon of 2014-10-04 is inside the file's validity (by name and header) but not among its state vectors."""
    with caplog.at_level(logging.WARNING):
        assert find_orbit(synthetic("S1A", "20141004T120000"), "POEORB", [tmp_path, ORBITS], sources=[]) is None
    assert "state vectors run 2014-10-04T03:00:54..2014-10-04T03:24:34" in caplog.text


def test_only_same_mission_files_are_candidates() -> None:
    names = [EofName.parse(n.name) for n, _ in cached_candidates([ORBITS])]
    s1b = EofName.parse("S1B_OPER_AUX_POEORB_OPOD_20210312T220150_V20180419T225942_20180421T005942.EOF")
    start = dt.datetime(2018, 4, 20, 12, tzinfo=dt.UTC)
    stop = start + dt.timedelta(seconds=27)
    assert [n.name for n in rank_candidates([*names, s1b], "S1B", "POEORB", start, stop)] == [s1b.name]
    assert [n.name for n in rank_candidates([*names, s1b], "S1A", "POEORB", start, stop)] == [FULL_POEORB]


@pytest.mark.parametrize(
    ("start", "created"),
    [
        ("20230823T150000", "20230823T174849"),  # two cover it: the newest wins
        ("20230823T154840", "20230823T174849"),  # the first ends 15:49:09, less than 60 s after the stop
        ("20230823T140950", "20230823T162050"),  # the newer one starts 14:10:24, less than 60 s before the start
    ],
)
def test_resorb_choice_honours_the_margin_and_prefers_the_newest(start: str, created: str, tmp_path: Path) -> None:
    found = find_orbit(synthetic("S1A", start), "RESORB", [tmp_path, ORBITS], sources=[])
    assert found is not None and EofName.parse(found.name).created.strftime("%Y%m%dT%H%M%S") == created


def test_resorb_is_used_only_when_allowed_and_is_recorded(tmp_path: Path) -> None:
    resorb_only = scene("S1A_IW_SLC__1SDV_20221024T184148_20221024T184218_045587_05735F_D6E2")
    deferred = choose_orbit(resorb_only, [tmp_path, ORBITS], [], allow_resorb=False, allow_annotation=False)
    assert deferred.deferred and deferred.path is None
    assert "no precise orbit (POEORB) of S1A covers 2022-10-24T18:41:48" in deferred.note
    assert "allow_resorb" in deferred.note

    used = choose_orbit(resorb_only, [tmp_path, ORBITS], [], allow_resorb=True, allow_annotation=False)
    assert (used.orbit_type, used.path, used.deferred) == ("RESORB", ORBITS / RESORB_1024, False)
    assert used.note.startswith("restituted orbit (RESORB) used")

    annotation = choose_orbit(resorb_only, [tmp_path], [], allow_resorb=False, allow_annotation=True)
    assert (annotation.orbit_type, annotation.path) == ("annotation", None)


def test_zero_byte_wrong_mission_and_too_short_files_are_rejected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Newer-looking bad files sit beside the good one in the cache; each is skipped with its reason."""
    target = synthetic("S1A", "20180420T120000")
    window = "V20180419T225942_20180421T005942"
    (tmp_path / f"S1A_OPER_AUX_POEORB_OPOD_20990101T000000_{window}.EOF").write_bytes(b"")
    (tmp_path / f"S1A_OPER_AUX_POEORB_OPOD_20980101T000000_{window}.EOF").write_bytes(
        (ORBITS / "S1_orbit_example.EOF").read_bytes()
    )
    shutil.copy(ORBITS / FULL_POEORB, tmp_path / f"S1B_OPER_AUX_POEORB_OPOD_20970101T000000_{window}.EOF")
    shutil.copy(ORBITS / FULL_POEORB, tmp_path / FULL_POEORB)
    with caplog.at_level(logging.WARNING):
        assert find_orbit(target, "POEORB", [tmp_path], sources=[]) == tmp_path / FULL_POEORB
        s1b_found = find_orbit(synthetic("S1B", "20180420T120000"), "POEORB", [tmp_path], sources=[])
    assert s1b_found is None
    assert "is empty (0 bytes)" in caplog.text
    assert "holds 8 state vectors (at least 10 are needed)" in caplog.text
    assert "it holds S1A data but its name says S1B" in caplog.text


def test_validation_names_every_problem(tmp_path: Path) -> None:
    wrong = tmp_path / "S1B_OPER_AUX_RESORB_OPOD_20990101T000000_V20180419T225942_20180421T005942.EOF"
    shutil.copy(ORBITS / FULL_POEORB, wrong)
    start = dt.datetime(2018, 4, 20, 12, tzinfo=dt.UTC)
    with pytest.raises(OrbitError, match="holds S1A data but its name says S1B; it is a POEORB but its name"):
        validate_orbit_file(wrong, EofName.parse(wrong.name), start, start)


def s1b_version(text: str, name: str) -> bytes:
    """The real S1A POEORB with its mission and file name rewritten to S1B (no S1B file is in the test data)."""
    old = FULL_POEORB.removesuffix(".EOF")
    return text.replace("Sentinel-1A", "Sentinel-1B").replace(old, name.removesuffix(".EOF")).encode()


def test_asf_bucket_listing_is_paged_and_the_best_file_is_fetched_validated_and_cached(
    orbit_server: FakeOrbitServer, tmp_path: Path
) -> None:
    key = f"AUX_POEORB/{FULL_POEORB}"
    orbit_server.put(key, (ORBITS / FULL_POEORB).read_bytes())
    bucket = AsfOrbitBucket(orbit_server.url, timeout_s=10)
    target = synthetic("S1A", "20180420T120000")

    choice = choose_orbit(target, [tmp_path], [bucket], allow_resorb=False, allow_annotation=False)

    assert (choice.orbit_type, choice.path) == ("POEORB", tmp_path / FULL_POEORB)
    assert (tmp_path / FULL_POEORB).read_bytes() == (ORBITS / FULL_POEORB).read_bytes()
    assert orbit_server.requests["/"] >= 3  # 18 S1A POEORB keys in pages of 7
    assert list(tmp_path.iterdir()) == [tmp_path / FULL_POEORB]  # no temporaries left

    before = sum(orbit_server.requests.values())
    fresh_bucket = AsfOrbitBucket(orbit_server.url, timeout_s=10)
    again = choose_orbit(target, [tmp_path], [fresh_bucket], allow_resorb=False, allow_annotation=False)
    assert again.path == tmp_path / FULL_POEORB
    assert sum(orbit_server.requests.values()) == before  # the cache satisfied it: no network at all


def test_asf_bucket_picks_the_s1b_file_for_an_s1b_scene(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    s1b = "S1B_OPER_AUX_POEORB_OPOD_20210312T220150_V20180419T225942_20180421T005942.EOF"
    orbit_server.put(f"AUX_POEORB/{s1b}", s1b_version((ORBITS / FULL_POEORB).read_text(), s1b))
    found = find_orbit(synthetic("S1B", "20180420T120000"), "POEORB", [tmp_path], [AsfOrbitBucket(orbit_server.url)])
    assert found == tmp_path / s1b
    assert read_eof(found).mission == "S1B"
    assert orbit_server.count("/AUX_POEORB/S1A") == 0


def test_bad_bucket_objects_are_rejected_and_the_next_candidate_is_used(
    orbit_server: FakeOrbitServer, tmp_path: Path
) -> None:
    """A zero-byte body listed with a size, and a newer listed file with the wrong mission, are not cached."""
    newest = "S1A_OPER_AUX_POEORB_OPOD_20250101T000000_V20180419T225942_20180421T005942.EOF"
    newer = "S1A_OPER_AUX_POEORB_OPOD_20240101T000000_V20180419T225942_20180421T005942.EOF"
    orbit_server.put(f"AUX_POEORB/{newest}", b"")
    orbit_server.objects[f"AUX_POEORB/{newest}"].size = 4409493  # listed as whole, served empty
    orbit_server.put(f"AUX_POEORB/{newer}", s1b_version((ORBITS / FULL_POEORB).read_text(), newer))
    orbit_server.put(f"AUX_POEORB/{FULL_POEORB}", (ORBITS / FULL_POEORB).read_bytes())

    found = find_orbit(synthetic("S1A", "20180420T120000"), "POEORB", [tmp_path], [AsfOrbitBucket(orbit_server.url)])

    assert found == tmp_path / FULL_POEORB
    assert sorted(p.name for p in tmp_path.iterdir()) == [FULL_POEORB]
    assert orbit_server.requests[f"/AUX_POEORB/{newest}"] == 1 and orbit_server.requests[f"/AUX_POEORB/{newer}"] == 1


def test_empty_objects_in_the_listing_are_skipped(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    empty = "S1A_OPER_AUX_POEORB_OPOD_20250101T000000_V20180419T225942_20180421T005942.EOF"
    orbit_server.put(f"AUX_POEORB/{empty}", b"")
    orbit_server.put(f"AUX_POEORB/{FULL_POEORB}", (ORBITS / FULL_POEORB).read_bytes())
    assert find_orbit(synthetic("S1A", "20180420T120000"), "POEORB", [tmp_path], [AsfOrbitBucket(orbit_server.url)])
    assert orbit_server.requests[f"/AUX_POEORB/{empty}"] == 0


def test_bucket_failure_is_transient_not_a_deferral(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    orbit_server.listing_failures.append(503)
    target = synthetic("S1A", "20180420T120000")
    with pytest.raises(TransientOrbitError, match="HTTP 503") as caught:
        choose_orbit(target, [tmp_path], [AsfOrbitBucket(orbit_server.url)], allow_resorb=False, allow_annotation=False)
    assert caught.value.transient


def test_unreachable_sources_fall_back_to_annotation_only_when_allowed(
    orbit_server: FakeOrbitServer, tmp_path: Path
) -> None:
    target = synthetic("S1A", "20180420T120000")
    orbit_server.listing_failures.extend([500, 500])
    bucket = AsfOrbitBucket(orbit_server.url)
    with pytest.raises(TransientOrbitError):
        choose_orbit(target, [tmp_path], [bucket], allow_resorb=True, allow_annotation=False)
    fallback = choose_orbit(target, [tmp_path], [bucket], allow_resorb=True, allow_annotation=True)
    assert fallback.orbit_type == "annotation" and "could not be asked" in fallback.note


def test_no_poeorb_in_the_bucket_defers(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    recent = synthetic("S1A", "20240929T120000")  # the recorded listing holds RESORBs only for that day
    orbit_server.put(
        "AUX_RESORB/S1A_OPER_AUX_RESORB_OPOD_20240929T143421_V20240929T104438_20240929T140208.EOF", b"<x/>"
    )
    choice = choose_orbit(
        recent, [tmp_path], [AsfOrbitBucket(orbit_server.url)], allow_resorb=False, allow_annotation=False
    )
    assert choice.deferred and "published about 21 days after acquisition" in choice.note
    assert orbit_server.count("/AUX_RESORB") == 0  # RESORBs are not even looked at when they are not allowed


def cdse(orbit_server: FakeOrbitServer, password: str | None = None) -> CdseOrbitCatalogue:
    user, real = orbit_server.cdse_user
    credentials = Credentials(source="test", username=user, password=SecretStr(password or real))
    return CdseOrbitCatalogue(
        credentials,
        catalogue_url=f"{orbit_server.url}/odata/v1/Products",
        token_url=f"{orbit_server.url}/token",
        download_url=f"{orbit_server.url}/zipper/Products",
        timeout_s=10,
    )


def test_cdse_is_asked_after_asf_and_only_with_credentials(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    orbit_server.add_cdse(FULL_POEORB, (ORBITS / FULL_POEORB).read_bytes())
    unreachable = AsfOrbitBucket("http://127.0.0.1:9", timeout_s=2)  # discard port: connection refused
    target = synthetic("S1A", "20180420T120000")

    found = find_orbit(target, "POEORB", [tmp_path], [unreachable, cdse(orbit_server)])

    assert found == tmp_path / FULL_POEORB
    assert orbit_server.requests["/token"] == 1


def test_cdse_refused_login_is_a_clear_error(orbit_server: FakeOrbitServer, tmp_path: Path) -> None:
    orbit_server.add_cdse(FULL_POEORB, (ORBITS / FULL_POEORB).read_bytes())
    with pytest.raises(OrbitError, match="refused the login from test") as caught:
        find_orbit(synthetic("S1A", "20180420T120000"), "POEORB", [tmp_path], [cdse(orbit_server, "wrong")])
    assert "wrong" not in str(caught.value)
    assert not isinstance(caught.value, TransientOrbitError)
