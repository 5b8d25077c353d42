"""Burst products of a simulated stack: cut as ASF's burst extractor serves them, downloaded through the real
download code from tests/fake_asf.py (a stand-in for ASF and Earthdata Login: redirect, basic auth, cookie),
assembled into a SAFE that the project's SAFE reader and the ISCE2 stand-in read, and run through the real flow:
the cube from bursts equals the cube from whole scenes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offset_cube.area import parse_area
from offset_cube.burst_safe import assemble_safe, publish_bursts
from offset_cube.bursts import burst_scenes, bursts_from_records
from offset_cube.config import JobConfig, load_job
from offset_cube.credentials import Credentials
from offset_cube.download import (
    burst_safe_path,
    check_login,
    check_safe_members,
    download_burst_scene,
    needs_download,
    open_session,
    remove_scene_file,
)
from offset_cube.errors import AuthenticationError, TransientDownloadError
from offset_cube.isce2.render import swaths_covering
from offset_cube.safe.product import SafeProduct
from offset_cube.scenes import Burst, Scene
from offset_cube.simulate.demo import demo_job, describe
from offset_cube.simulate.stack import SimulatedStack, SimulationConfig, simulate_stack
from tests.fake_asf import FakeAsf, serve_fake_asf
from tests.fake_isce.isce.applications.topsApp import annotation_found
from tests.test_builtin_engine import DEMO_TEMPLATE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SimulatedStack:
    config = SimulationConfig(template=DEMO_TEMPLATE, dates=2, area_m=(3000.0, 3000.0), margin_m=600.0, seed=3)
    return simulate_stack(config, tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def served(stack: SimulatedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeAsf, Path]]:
    """The stack's bursts served by the fake ASF under /data/<SLC>/<swath>/<pol>/<n>.tiff|xml, and the export."""
    out = tmp_path_factory.mktemp("bursts")
    with serve_fake_asf() as fake:
        export = publish_bursts(stack.scenes, out, fake.data_url)
        for path in out.rglob("*"):
            if path.suffix in (".tiff", ".xml"):
                fake.add(str(path.relative_to(out)), path.read_bytes())
        yield fake, export


def export_bursts(export: Path) -> list[Burst]:
    features = json.loads(export.read_text())["features"]
    return bursts_from_records(((f["properties"], f["geometry"]) for f in features), str(export))


def burst_scene(bursts: list[Burst], product_id: str, indices: tuple[int, ...]) -> Scene:
    chosen = tuple(b for b in bursts if b.product_id == product_id and b.index in indices)
    return Scene.from_fields(
        product_id,
        relative_orbit=chosen[0].relative_orbit,
        flight_direction=chosen[0].flight_direction,
        size_bytes=sum(b.size_bytes or 0 for b in chosen),
        bursts=chosen,
        required_bursts=tuple(b.full_burst_id for b in chosen),
    )


def credentials(fake: FakeAsf) -> Credentials:
    from pydantic import SecretStr

    return Credentials(username=fake.username, password=SecretStr(fake.password), source="test")


def test_cut_bursts_look_like_asf_records(stack: SimulatedStack, served: tuple[FakeAsf, Path]) -> None:
    _, export = served
    bursts = export_bursts(export)
    with SafeProduct(stack.scenes[0]) as product:
        n = len(product.annotation("IW2", "VV").bursts)
    assert len(bursts) == 2 * n  # every burst of both dates
    ids = sorted({b.full_burst_id for b in bursts})
    assert len(ids) == n and all(i.startswith("027_") and i.endswith("_IW2") for i in ids)  # same IDs both dates
    first = bursts[-1]  # ASF answers newest first
    assert first.url.endswith(f"/{first.product_id}/IW2/VV/{first.index}.tiff")
    assert first.size_bytes and first.footprint_wkt


def stack_job(stack: SimulatedStack, out: Path, **fields: Any) -> JobConfig:
    """The demo's job for this stack (whole scenes from the local catalog), with ``fields`` on top."""
    storage = {"out": str(out), "orbit_cache": str(stack.orbit_dir)}
    values = {
        **demo_job(describe(stack), stack=str(stack.folder)),
        "storage": storage,
        "orbits": {"allow_annotation": False},
    }
    return load_job(None, {**values, **fields})


def test_assembled_safe_reads_like_the_original(
    stack: SimulatedStack, served: tuple[FakeAsf, Path], tmp_path: Path
) -> None:
    """The bursts chosen for the area, assembled: same manifest and annotation, same pixels in those bursts,
    zeros elsewhere; the SAFE passes the download check, the SAFE reader and the ISCE2 stand-in's lookup."""
    fake, export = served
    scene = burst_scenes(export_bursts(export), stack_job(stack, tmp_path, search=f"file:{export}"))[0]
    chosen = {b.index for b in scene.bursts}
    files = {b.name: tmp_path / b.file_name for b in scene.bursts}
    for burst in scene.bursts:
        files[burst.name].write_bytes(fake.files[burst.url.split("/data/")[1]])
    xml = tmp_path / scene.bursts[0].metadata_file_name
    xml.write_bytes(fake.files[scene.bursts[0].metadata_url.split("/data/")[1]])
    safe = assemble_safe(scene.product_id, scene.bursts, files, {"VV": xml}, tmp_path / f"{scene.product_id}.SAFE")
    check_safe_members(safe, "assembled")
    assert annotation_found(str(safe), 2, "vv")  # the ISCE2 stand-in's preprocess lookup
    assert swaths_covering([safe], parse_area(stack.area_wkt), "VV") == (2,)  # what the ISCE2 render reads
    original = next(p for p in stack.scenes if p.name.startswith(scene.product_id))
    with SafeProduct(safe) as assembled, SafeProduct(original) as whole:
        assert assembled.manifest == whole.manifest
        ann = whole.annotation("IW2", "VV")
        assert assembled.annotation("IW2", "VV").bursts[-1].azimuth_time == ann.bursts[-1].azimuth_time
        assert 0 < len(chosen) < len(ann.bursts)  # the area needs fewer bursts than the swath has
        lpb, width = ann.lines_per_burst, ann.samples_per_burst
        for k in range(len(ann.bursts)):
            strips = range(k * lpb, (k + 1) * lpb, 256) if k in chosen else [k * lpb + lpb // 2]
            for row in strips:
                rows = (row, min(row + 256, (k + 1) * lpb))
                got = assembled.read_window("IW2", "VV", rows, (0, width))
                if k in chosen:
                    np.testing.assert_array_equal(got, whole.read_window("IW2", "VV", rows, (0, width)))
                else:
                    assert not got.any()


def test_download_through_earthdata_login_assembles_the_safe(served: tuple[FakeAsf, Path], tmp_path: Path) -> None:
    fake, export = served
    bursts = export_bursts(export)
    scene = burst_scene(bursts, bursts[0].product_id, (1, 2))
    session = open_session(credentials(fake), edl_host="localhost")
    seen: list[tuple[int, int | None]] = []
    safe = download_burst_scene(scene, tmp_path, session, lambda done, total: seen.append((done, total)))
    assert safe == burst_safe_path(scene, tmp_path) and safe.is_dir()
    assert fake.logins and not fake.authorization_seen_by_data_host  # the login went to EDL only
    assert seen[-1] == (scene.size_bytes, scene.size_bytes)
    assert not list(safe.parent.glob("*.tiff"))  # the burst TIFFs live on in the SAFE only
    assert not needs_download(scene, tmp_path)
    started = sum(fake.downloads_started.values())
    assert download_burst_scene(scene, tmp_path, session) == safe  # cached: nothing fetched again
    assert sum(fake.downloads_started.values()) == started
    assert remove_scene_file(scene, tmp_path) == [safe.parent] and needs_download(scene, tmp_path)


def test_a_cut_transfer_is_retried_and_resumes_from_the_verified_bursts(
    served: tuple[FakeAsf, Path], tmp_path: Path
) -> None:
    fake, export = served
    bursts = export_bursts(export)
    scene = burst_scene(bursts, bursts[0].product_id, (0, 1))
    second = scene.bursts[1].url.split("/data/")[1]
    first = scene.bursts[0].url.split("/data/")[1]
    fake.failures[second].append("cut")
    session = open_session(credentials(fake), edl_host="localhost")
    before = fake.downloads_started[first]
    with pytest.raises(TransientDownloadError, match="broke off|truncated"):
        download_burst_scene(scene, tmp_path, session)
    assert not list(tmp_path.rglob("*.part"))
    download_burst_scene(scene, tmp_path, session)
    assert fake.downloads_started[first] == before + 1  # the verified first burst was not fetched again


def test_a_size_mismatch_is_transient_and_leaves_nothing(served: tuple[FakeAsf, Path], tmp_path: Path) -> None:
    fake, export = served
    bursts = export_bursts(export)
    scene = burst_scene(bursts, bursts[0].product_id, (3,))
    wrong = scene.bursts[0].model_copy(update={"size_bytes": (scene.bursts[0].size_bytes or 0) + 1})
    scene = scene.model_copy(update={"bursts": (wrong,)})
    with pytest.raises(TransientDownloadError, match=r"ASF lists \d+ \(truncated or corrupt transfer\)"):
        download_burst_scene(scene, tmp_path, open_session(credentials(fake), edl_host="localhost"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != ".locks"]


def test_wrong_password_is_refused_without_leaking_it(served: tuple[FakeAsf, Path], tmp_path: Path) -> None:
    from pydantic import SecretStr

    fake, export = served
    bursts = export_bursts(export)
    scene = burst_scene(bursts, bursts[0].product_id, (2,))
    bad = Credentials(username=fake.username, password=SecretStr("not-the-password-123"), source="test")
    with pytest.raises(AuthenticationError, match="HTTP 401") as info:
        download_burst_scene(scene, tmp_path, open_session(bad, edl_host="localhost"))
    assert "not-the-password-123" not in str(info.value)
    # The run's login check, before any download, asks with the first burst's URL (a burst scene has no URL).
    assert scene.url is None
    assert check_login(scene, open_session(credentials(fake), edl_host="localhost")) is True
    with pytest.raises(AuthenticationError, match="HTTP 401") as refused:
        check_login(scene, open_session(bad, edl_host="localhost"))
    assert "not-the-password-123" not in str(refused.value)


def test_a_login_page_instead_of_a_burst_is_an_authentication_error(
    served: tuple[FakeAsf, Path], tmp_path: Path
) -> None:
    fake, export = served
    bursts = export_bursts(export)
    scene = burst_scene(bursts, bursts[0].product_id, (2,))
    fake.failures[scene.bursts[0].url.split("/data/")[1]].append("html")
    with pytest.raises(AuthenticationError, match="web page instead of the file"):
        download_burst_scene(scene, tmp_path, open_session(credentials(fake), edl_host="localhost"))


@pytest.mark.flow
def test_cube_from_bursts_equals_cube_from_scenes(
    stack: SimulatedStack,
    served: tuple[FakeAsf, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: None,
) -> None:
    """The same simulated pair through the real flow and the built-in engine: whole SAFE zips from the local
    catalog, and bursts found in an ASF burst export, downloaded from the fake ASF and assembled."""
    import xarray as xr

    from flows.pipeline import flow_for

    fake, export = served
    monkeypatch.setenv("EARTHDATA_USERNAME", fake.username)
    monkeypatch.setenv("EARTHDATA_PASSWORD", fake.password)
    scenes_job = stack_job(stack, tmp_path / "scenes")
    bursts_job = stack_job(
        stack,
        tmp_path / "bursts",
        search=f"file:{export}",
        download={"edl_host": "localhost", "retries": 0},
    )
    for job in (scenes_job, bursts_job):
        state = flow_for(job)(job, return_state=True)
        assert state.is_completed(), state.message
    summary = state.result()
    assert "bursts: " in summary.message and "full scenes ≈" in summary.message
    plan = newest_artifact("plan")  # the Prefect plan table: burst IDs and megabytes per date
    assert plan.description is not None and "full scenes ≈" in plan.description
    (row,) = json.loads(str(plan.data))
    assert row["reference_bursts"].split() and row["reference_bursts"] == row["secondary_bursts"]
    assert row["download_mb"] != "? + ?"
    assert list((tmp_path / "bursts" / "scenes" / "bursts").glob("*/*.SAFE"))
    from_scenes = xr.open_zarr(scenes_job.storage.cube_path)
    from_bursts = xr.open_zarr(bursts_job.storage.cube_path)
    assert from_scenes.sizes == from_bursts.sizes and from_scenes.sizes["mid_date"] == 1
    assert list(from_scenes.pair_id.values) == list(from_bursts.pair_id.values)
    # The record of each layer names the bursts it was made from (none for whole scenes).
    bursts = {f["properties"]["burst"]["fullBurstID"] for f in json.loads(export.read_text())["features"]}
    for name in ("burst_ids_img1", "burst_ids_img2"):
        assert [str(v) for v in from_scenes[name].values] == [""]
        (ids,) = [str(v).split() for v in from_bursts[name].values]
        assert ids and set(ids) <= bursts, ids
    for name in ("vx", "vy"):
        a, b = from_scenes[name].values, from_bursts[name].values
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.isfinite(a).mean() > 0.5
        assert float(np.nanmax(np.abs(a - b))) <= 0.1


def newest_artifact(key: str) -> Any:
    """The newest Prefect artifact with ``key`` in the test harness's server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no {key} artifact"
    return max(found, key=lambda a: a.created or 0)
