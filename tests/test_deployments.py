"""Deployments: prefect.yaml is valid and runnable; the monitor narrows its window and ends quietly when
nothing is new."""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml
from prefect import Flow

from offset_cube.config import load_job
from tests.conftest import ROOT

PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"


def load_entrypoint(entrypoint: str) -> Flow[..., Any]:
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert isinstance(flow, Flow), f"{entrypoint} is not a Prefect flow"
    return flow


def test_prefect_yaml_entrypoints_import_and_parameters_validate() -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names == {"monitor", "backfill"}
    for deployment in spec["deployments"]:
        flow = load_entrypoint(deployment["entrypoint"])
        assert (ROOT / deployment["entrypoint"].partition(":")[0]).is_file()
        validated = flow.validate_parameters(deployment["parameters"])
        assert validated["job"].name == "shirase"
        assert deployment["work_pool"]["name"] == "offset-cube"
    monitor = next(d for d in spec["deployments"] if d["name"] == "monitor")
    assert monitor["schedules"][0]["cron"] == monitor["parameters"]["job"]["monitor"]["cron"]


def write_cube_stub(path: Path, pair_ids: list[str], secondary_times: list[dt.datetime]) -> None:
    """The two 1-D variables the planner and the monitor read, in the cube's layout (dims mid_date)."""
    times = np.array([t.replace(tzinfo=None) for t in secondary_times], dtype="datetime64[ns]")
    xr.Dataset(
        {"pair_id": ("mid_date", np.array(pair_ids, dtype=object)), "acquisition_date_img2": ("mid_date", times)},
        coords={"mid_date": times - np.timedelta64(6, "D")},
    ).to_zarr(path, zarr_format=3, consolidated=False)


def test_monitor_window_starts_at_the_latest_acquisition_minus_lookback(tmp_path: Path) -> None:
    from flows.deployments import monitor_window

    job = load_job(
        None,
        {
            "area": "POLYGON((0 0,1 0,1 1,0 1,0 0))",
            "start": "2020-01-01",
            "end": "2020-06-01",
            "storage": {"out": str(tmp_path)},
        },
    )
    scoped, latest = monitor_window(job)
    assert latest is None and scoped.start == dt.date(2020, 1, 1) and scoped.end is None
    write_cube_stub(job.storage.cube_path, ["20210101_20210113_t001"], [dt.datetime(2021, 1, 13, 5, 0, 0)])
    scoped, latest = monitor_window(job)
    assert latest == dt.datetime(2021, 1, 13, 5, 0, 0, tzinfo=dt.UTC)
    assert scoped.start == dt.date(2020, 12, 14)  # 30 days of look-back
    network = job.model_copy(update={"pairing": "network", "max_gap_days": 48})
    scoped, _ = monitor_window(network)
    assert scoped.start == dt.date(2020, 11, 26)  # a new date pairs with dates up to 48 days before it


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_monitor_with_nothing_new_completes_without_downloads(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.deployments import monitor
    from tests.test_flow import AREA, write_scene

    catalog = tmp_path / "catalog"
    catalog.mkdir()
    first = dt.datetime(2020, 1, 1, 13, 51, 17)
    for days in (0, 12):
        write_scene(catalog, first + dt.timedelta(days=days), 30600 + 175 * days // 12)
    job = load_job(
        None,
        {
            "name": "quiet",
            "area": AREA,
            "start": "2019-12-01",
            "search": f"local:{catalog}",
            "storage": {"out": str(tmp_path / "out")},
        },
    )
    write_cube_stub(job.storage.cube_path, ["20200101_20200113_t071"], [first + dt.timedelta(days=12)])

    state = monitor(job, return_state=True)

    assert state.is_completed()
    assert state.message and state.message.startswith("no new acquisitions since 2020-01-13 13:51 UTC")
    with get_client(sync_client=True) as client:
        parent = FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
        names = {r.name.rsplit("-", 1)[0] for r in runs}
    assert {"search", "plan"} <= names  # the pipeline subflow did run
    assert not any(n.startswith("download") for n in names)


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_deploy_registers_both_deployments_with_their_schedule(tmp_path: Path) -> None:
    """The README's commands, against the test server: create the process pool, deploy everything."""
    import os
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    prefect = str(Path(sys.executable).with_name("prefect"))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "OFFSET_CUBE_HOME": str(ROOT)}
    for command in (
        [prefect, "work-pool", "create", "offset-cube", "--type", "process", "--overwrite"],
        [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
    ):
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    with get_client(sync_client=True) as client:
        monitor = client.read_deployment_by_name("offset-cube-monitor/monitor")
        backfill = client.read_deployment_by_name("offset-cube-backfill/backfill")
    assert monitor.work_pool_name == backfill.work_pool_name == "offset-cube"
    assert [s.schedule.cron for s in monitor.schedules] == ["0 6 * * *"]  # type: ignore[union-attr]
    assert monitor.parameters["job"]["name"] == "shirase"
    assert backfill.parameters["start"] is None


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_serve_registers_the_deployment_names_the_readme_runs(tmp_path: Path) -> None:
    """``offset-cube serve``'s deployments, registered on the test server, have prefect.yaml's names, the ones
    README's ``prefect deployment run offset-cube-backfill/backfill`` uses; the monitor runs on monitor.cron."""
    from prefect.client.orchestration import get_client

    from flows.cli.serve import served_deployments

    job = load_job(
        None,
        {
            "name": "served",
            "area": "POLYGON((0 0,1 0,1 1,0 1,0 0))",
            "start": "2020-01-01",
            "storage.out": str(tmp_path),
        },
    )
    job = job.model_copy(update={"monitor": job.monitor.model_copy(update={"cron": "15 */6 * * *"})})
    deployments = served_deployments(job)
    for deployment in deployments:
        deployment.apply()
    readme = (ROOT / "README.md").read_text()
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    with get_client(sync_client=True) as client:
        for deployment, in_yaml in zip(deployments, spec["deployments"], strict=True):
            registered = client.read_deployment_by_name(deployment.full_name)
            assert deployment.full_name.endswith(f"/{in_yaml['name']}")
            assert registered.parameters["job"]["name"] == "served"
        monitor = client.read_deployment_by_name("offset-cube-monitor/monitor")
        client.read_deployment_by_name("offset-cube-backfill/backfill")
    assert [s.schedule.cron for s in monitor.schedules] == ["15 */6 * * *"]  # type: ignore[union-attr]
    assert "prefect deployment run offset-cube-backfill/backfill" in readme
