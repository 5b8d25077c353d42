"""The Prefect flow end to end, against one session-scoped test server.

The catalog is a folder of small SAFE-structured zips (manifest, one annotation and one measurement member
each) read by the real local search and the real download-stage verification. The orbit, product and cube stages
are test doubles, and so is the engine inside the real engine task: the engine double writes a valid per-pair
result (offset_cube.result schema) and counts its calls; the cube double records what it is given.
"""

from __future__ import annotations

import datetime as dt
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from prefect import task

import flows.pipeline as pipeline
import tasks.engine as engine_tasks
from offset_cube.config import JobConfig, load_job
from offset_cube.errors import EngineError
from offset_cube.result import pair_record, result_attrs, write_pair_result
from offset_cube.safe.manifest import NS as MANIFEST_NS
from offset_cube.stages import OrbitFile, PairInputs

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

AREA = "POLYGON((-117.5 37.6,-117 37.6,-117 37.9,-117.5 37.9,-117.5 37.6))"
FOOTPRINT = "37.1,-115.6 37.5,-118.5 39.2,-118.1 38.8,-115.3"
# The namespaces (identifiers, not addresses) are the ones the manifest reader itself uses.
_XMLNS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in MANIFEST_NS.items())
MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" {xmlns}>
 <metadataSection>
  <safe:processing><safe:facility>
   <safe:software name="Sentinel-1 IPF" version="003.52"/>
  </safe:facility></safe:processing>
  <s1sarl1:mode>IW</s1sarl1:mode><s1sarl1:productType>SLC</s1sarl1:productType>
  <safe:orbitNumber type="start">{orbit}</safe:orbitNumber>
  <safe:relativeOrbitNumber type="start">71</safe:relativeOrbitNumber>
  <s1:pass>DESCENDING</s1:pass>
  <s1sarl1:transmitterReceiverPolarisation>VV</s1sarl1:transmitterReceiverPolarisation>
  <safe:acquisitionPeriod><safe:startTime>{start}</safe:startTime><safe:stopTime>{stop}</safe:stopTime></safe:acquisitionPeriod>
  <safe:footPrint><gml:coordinates>{footprint}</gml:coordinates></safe:footPrint>
 </metadataSection>
</xfdu:XFDU>
"""

ENGINE_CALLS: Counter[str] = Counter()
FAILING_PAIRS: set[str] = set()
CUBE_INSERTS: list[list[str]] = []


def write_scene(folder: Path, when: dt.datetime, orbit: int) -> str:
    stop = when + dt.timedelta(seconds=27)
    stamp, stamp_stop = when.strftime("%Y%m%dT%H%M%S"), stop.strftime("%Y%m%dT%H%M%S")
    datatake = f"{orbit * 7 % 0xFFFFFF:06X}"  # one data-take id per acquisition, as in real products
    product = f"S1A_IW_SLC__1SSV_{stamp}_{stamp_stop}_{orbit:06d}_{datatake}_{orbit % 65536:04X}"
    swath = f"s1a-iw1-slc-vv-{stamp.lower()}-{stamp_stop.lower()}-{orbit:06d}-{datatake.lower()}-004"
    with zipfile.ZipFile(folder / f"{product}.zip", "w") as archive:
        manifest = MANIFEST.format(
            xmlns=_XMLNS, orbit=orbit, start=when.isoformat(), stop=stop.isoformat(), footprint=FOOTPRINT
        )
        archive.writestr(f"{product}.SAFE/manifest.safe", manifest)
        archive.writestr(f"{product}.SAFE/annotation/{swath}.xml", "<product/>")
        archive.writestr(f"{product}.SAFE/measurement/{swath}.tiff", b"")
    return product


@pytest.fixture()
def catalog_job(tmp_path: Path) -> JobConfig:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    first = dt.datetime(2020, 1, 1, 13, 51, 17, 603718)
    for days in (0, 12, 24, 48):  # four dates: 12-, 12- and 24-day pairs
        write_scene(catalog, first + dt.timedelta(days=days), 30600 + 175 * days // 12)
    return load_job(
        None,
        {
            "name": "flow-test",
            "area": AREA,
            "start": "2019-12-01",
            "end": "2020-03-01",
            "search": f"local:{catalog}",
            "storage": {"out": str(tmp_path / "out")},
            "dem": "none",  # the engine is a double; no terrain to fetch
        },
    )


@task(name="orbit", task_run_name="orbit {scene.product_id}")
def orbit_double(scene: Any, job: JobConfig) -> OrbitFile:
    return OrbitFile(product_id=scene.product_id, orbit_type="POEORB", path=None, note="test double")


def _engine_double(inputs: PairInputs, job: JobConfig) -> Path:
    pair = inputs.pair
    ENGINE_CALLS[pair.pair_id] += 1
    if pair.pair_id in FAILING_PAIRS:
        raise EngineError(f"{pair.label}: simulated engine failure")
    shape = (3, 4)
    data = {
        name: (("line", "sample"), np.full(shape, value, np.float32))
        for name, value in (
            ("azimuth_offset", 0.5),
            ("range_offset", -0.2),
            ("snr", 12.0),
            ("incidence_angle", 39.0),
            ("heading", -167.0),
            ("azimuth_spacing", 13.9),
            ("range_spacing", 2.33),
        )
    }
    lat, lon = np.meshgrid(np.linspace(37.6, 37.9, 3), np.linspace(-117.5, -117.0, 4), indexing="ij")
    ds = xr.Dataset({**data, "latitude": (("line", "sample"), lat), "longitude": (("line", "sample"), lon)})
    record = pair_record(
        pair,
        engine="test-double",
        orbit_type="POEORB",
        polarization="VV",
        processing_parameters={"window": list(job.tracking.window)},
    )
    ds.attrs = result_attrs(record, grid="radar")
    return write_pair_result(ds, inputs.pair_dir)


def use_engine_double(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace only the engine itself: the real engine task (its name, cache key, on-disk reuse and
    concurrency slot) still runs around the double."""
    monkeypatch.setattr(engine_tasks, "_run_builtin", _engine_double)


@task(name="product", task_run_name="product {pair.label}")
def product_double(pair: Any, result: Path, job: JobConfig) -> Path:
    return result


@task(name="cube-insert")
def cube_double(products: list[Path], job: JobConfig) -> Path:
    CUBE_INSERTS.append(sorted(p.parent.name for p in products))
    return job.storage.cube_path


@task(name="cube-report")
def report_double(cube: Path, job: JobConfig) -> Path:
    return cube


@pytest.fixture(autouse=True)
def doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    ENGINE_CALLS.clear()
    FAILING_PAIRS.clear()
    CUBE_INSERTS.clear()
    monkeypatch.setattr(pipeline, "fetch_orbit", orbit_double)
    use_engine_double(monkeypatch)
    monkeypatch.setattr(pipeline, "make_product", product_double)
    monkeypatch.setattr(pipeline, "insert_into_cube", cube_double)
    monkeypatch.setattr(pipeline, "report_cube", report_double)


def task_run_names(flow_run_id: Any, expected: int) -> list[str]:
    """Names of the flow run's task runs. Prefect records task runs through events, a moment after they
    finish, so poll (with a deadline) until ``expected`` of them are visible."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected or time.monotonic() > deadline:
                return sorted(r.name for r in runs)
            time.sleep(0.2)


def test_failed_pair_is_isolated_and_a_rerun_redoes_only_it(catalog_job: JobConfig) -> None:
    FAILING_PAIRS.add("20200113_20200125_t071")
    state = pipeline.flow_for(catalog_job)(catalog_job, return_state=True)

    assert state.is_failed()
    assert "1 of 3 pair(s) failed" in (state.message or "")
    assert "track-71 20200113→20200125: simulated engine failure" in (state.message or "")
    assert CUBE_INSERTS == [["20200101_20200113_t071", "20200125_20200218_t071"]]
    # search, existing-pairs, plan, 4 downloads, 4 orbits, 3 × (inputs, engine, product), cube insert
    names = task_run_names(state.state_details.flow_run_id, expected=21)
    assert "engine track-71 20200101→20200113" in names
    assert "engine track-71 20200125→20200218" in names
    assert sum(n.startswith("download S1A_IW_SLC__1SSV_") for n in names) == 4  # each scene once for 3 pairs
    assert dict(ENGINE_CALLS) == {"20200101_20200113_t071": 1, "20200113_20200125_t071": 1, "20200125_20200218_t071": 1}

    FAILING_PAIRS.clear()
    again = pipeline.flow_for(catalog_job)(catalog_job, return_state=True)
    assert again.is_completed(), again.message
    # the two finished pairs came from Prefect's cache; only the failed pair ran again
    assert dict(ENGINE_CALLS) == {"20200101_20200113_t071": 1, "20200113_20200125_t071": 2, "20200125_20200218_t071": 1}
    assert CUBE_INSERTS[-1] == ["20200101_20200113_t071", "20200113_20200125_t071", "20200125_20200218_t071"]
    assert "3 pair(s) completed" in (again.message or "")


def test_no_pairs_completes_with_a_clear_message(catalog_job: JobConfig) -> None:
    single = catalog_job.model_copy(update={"end": dt.date(2020, 1, 5)})
    state = pipeline.flow_for(single)(single, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert "only one acquisition found" in summary.message
    assert Counter() == ENGINE_CALLS
