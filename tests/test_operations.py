"""Operations on the simulated demo stack: a deployment served by its own process and triggered through the
API completes; a Dask local cluster (2 workers) builds the same cube as the thread runner; a scene whose precise
orbit is not yet published defers its pairs instead of failing the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from offset_cube.config import JobConfig, job_from_dict
from tests.conftest import ROOT

pytestmark = [pytest.mark.flow, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 3-date demo stack (12- and 24-day pairs) over 4 km, simulated once for the module."""
    from offset_cube.simulate import DEMO_TEMPLATE
    from offset_cube.simulate.demo import describe
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack

    out = tmp_path_factory.mktemp("stack")
    config = SimulationConfig(template=DEMO_TEMPLATE, dates=3, area_m=(4000.0, 4000.0), seed=11)
    return {"doc": describe(simulate_stack(config, out)), "dir": out}


def demo_job(stack: dict[str, Any], out: Path, **fields: Any) -> JobConfig:
    from offset_cube.simulate.demo import demo_job as make

    raw = make(stack["doc"])  # paths relative to the stack's folder
    raw["storage"] = {"out": str(out), "orbit_cache": "orbits"}
    for key, value in fields.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return job_from_dict(raw, base=stack["dir"])


def cube_arrays(path: Path) -> dict[str, np.ndarray]:
    with xr.open_zarr(path) as cube:
        return {name: cube[name].values for name in ("pair_id", "vx", "vy", "snr")}


def test_dask_local_cluster_builds_the_same_cube_as_threads(stack: dict[str, Any], tmp_path: Path) -> None:
    from flows.pipeline import flow_for

    threads = demo_job(stack, tmp_path / "threads")
    dask = demo_job(stack, tmp_path / "dask", runner={"task_runner": "dask", "dask_workers": 2})
    for job in (threads, dask):
        state = flow_for(job)(job, return_state=True)
        assert state.is_completed(), state.message
    a, b = cube_arrays(threads.storage.cube_path), cube_arrays(dask.storage.cube_path)
    assert list(a["pair_id"]) == list(b["pair_id"]) and len(a["pair_id"]) == 2
    for name in ("vx", "vy", "snr"):
        np.testing.assert_array_equal(a[name], b[name])


def test_served_deployment_run_completes(stack: dict[str, Any], tmp_path: Path) -> None:
    """``backfill.serve`` runs in its own process (as ``offset-cube serve`` does) against the test server; the
    test triggers a run through the API and waits for it."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    job = demo_job(stack, tmp_path / "served")
    code = (
        "import json, sys\n"
        "from flows.deployments import backfill\n"
        "backfill.serve(name='ops-test', parameters={'job': json.loads(sys.argv[1])})\n"
    )
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", code, job.model_dump_json()],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        run = _trigger_when_registered(run_deployment, "offset-cube-backfill/ops-test")
        assert run.state is not None and run.state.is_completed(), run.state
        assert cube_arrays(job.storage.cube_path)["pair_id"].size == 2
    finally:
        server.terminate()
        server.wait(timeout=60)


def _trigger_when_registered(run_deployment: Any, name: str) -> Any:
    """Trigger ``name`` as soon as the serving process has registered it, and wait for the run to end."""
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + 120
    while True:
        try:
            return run_deployment(name, timeout=300)
        except ObjectNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_missing_precise_orbit_defers_the_pair(stack: dict[str, Any], tmp_path: Path) -> None:
    """The orbit cache lacks the last date's POEORB and the (local stand-in of ASF's) orbit bucket lists none
    for 2022: with RESORB not allowed, that date's pair is deferred and the run still completes."""
    from flows.pipeline import flow_for
    from tests.fake_orbits import serve_orbits

    orbits = tmp_path / "orbits"
    shutil.copytree(stack["dir"] / "orbits", orbits)
    last = sorted(orbits.glob("*.EOF"), key=lambda p: p.name.split("_V")[1])[-1]
    last.unlink()
    with serve_orbits() as bucket:
        job = demo_job(stack, tmp_path / "out", orbits={"allow_resorb": False, "asf_bucket_url": bucket.url})
        job = job_from_dict(
            {**job.model_dump(mode="json"), "storage": {"out": str(tmp_path / "out"), "orbit_cache": str(orbits)}}
        )
        state = flow_for(job)(job, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    statuses = {o.status for o in summary.outcomes}
    assert statuses == {"completed", "deferred"}
    deferred = next(o for o in summary.outcomes if o.status == "deferred")
    assert "deferred" in deferred.message
    assert "1 deferred" in summary.message
    assert cube_arrays(job.storage.cube_path)["pair_id"].size == 1
