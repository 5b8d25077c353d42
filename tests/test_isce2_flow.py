"""Flow-level tests of the ISCE2 engine: the real render and engine tasks with the stand-in topsApp.py
(tests/fake_isce/); search, download, orbits, product and cube are test doubles (tests/isce2_flow_doubles.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

from offset_cube.disk import human_bytes, tree_bytes
from offset_cube.isce2.render import render_pair_inputs
from offset_cube.isce2.topsapp import PID_FILE
from tasks.engine import kill_engine_processes
from tests.conftest import ROOT
from tests.isce2_flow_doubles import DOUBLES, FLOW_RUN_FILE
from tests.isce2_support import alive, bc_inputs, isce2_job, kill_stand_in

PAIR_ID = "20250406_20250418_t108"


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.1)


@pytest.mark.flow
def test_flow_runs_topsapp_with_progress_artifact(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    import flows.pipeline as pipeline

    for name, double in DOUBLES.items():
        monkeypatch.setattr(pipeline, name, double)
    job = isce2_job(tmp_path)
    state = pipeline.flow_for(job)(job, return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert [o.status for o in summary.outcomes] == ["completed"]
    assert summary.outcomes[0].product == job.storage.pairs_dir / PAIR_ID / "offsets.zarr"
    # the disk each pair folder still holds, after the default cleanup
    left = summary.pair_disk_bytes[PAIR_ID]
    assert left == tree_bytes(job.storage.pairs_dir / PAIR_ID) > 0
    assert f"this run's pair folders hold {human_bytes(left)}" in summary.message
    assert "cleanup.pair_files: minimal" in summary.message
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=50)
    progress = [a for a in artifact if a.key == f"topsapp-{PAIR_ID.replace('_', '-')}"]
    assert progress and progress[0].data == 100.0
    table = next(a for a in artifact if a.key == "run-summary").data
    assert "| pair | status | disk left | detail |" in table and f"| completed | {human_bytes(left)} |" in table


@pytest.mark.flow
def test_cancelling_the_flow_run_kills_topsapp(prefect_harness: None, tmp_path: Path) -> None:
    """Cancel the way Prefect's runner does (state Cancelling through the API, then SIGTERM to the flow-run
    process): the flow's crash hook kills topsApp's whole process group from its PID file, including the
    forked worker that no parent-death signal reaches."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings
    from prefect.states import Cancelling

    job = isce2_job(tmp_path)
    job_json = tmp_path / "job.json"
    job_json.write_text(job.model_dump_json())
    run_id_file = tmp_path / "flow_run_id"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "FAKE_TOPSAPP_MODE": "hang",
        FLOW_RUN_FILE: str(run_id_file),
    }
    child = subprocess.Popen([sys.executable, "-m", "tests.isce2_flow_doubles", str(job_json)], cwd=ROOT, env=env)
    pair_dir = job.storage.pairs_dir / PAIR_ID
    pids_file = pair_dir / "fake_topsapp_pids.json"
    try:
        wait_for(lambda: pids_file.is_file() or child.poll() is not None, 120)
        assert child.poll() is None, "the flow ended before topsApp started"
        pids = json.loads(pids_file.read_text())
        assert (pair_dir / PID_FILE).is_file()
        run_id = UUID(run_id_file.read_text())
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelling(), force=True)
        child.send_signal(signal.SIGTERM)
        for pid in [pids["topsapp"], *pids["workers"]]:
            wait_for(lambda pid=pid: not alive(pid), 60)
        child.wait(timeout=60)
        assert not (pair_dir / PID_FILE).exists()
        with get_client(sync_client=True) as client:
            final = client.read_flow_run(run_id).state
        assert final is not None and final.is_final() and not final.is_completed()
    finally:
        child.kill()
        child.wait(timeout=30)
        kill_stand_in(pair_dir)


def test_a_pair_that_gets_the_engine_slot_while_the_run_is_cancelling_starts_no_topsapp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot comes free because the pair holding it was stopped: the waiting pair must not start a fresh
    topsApp. The task runner's cancel event (what ``_cancel_requested`` reads) is set, as on SIGTERM."""
    import contextlib
    import threading

    import tasks.engine as engine_tasks
    from offset_cube.isce2.topsapp import TopsAppStopped

    job = isce2_job(tmp_path)
    inputs = bc_inputs(job)
    render_pair_inputs(inputs, job)
    cancel = threading.Event()
    monkeypatch.setattr(engine_tasks, "_cancel_requested", lambda: cancel.is_set)
    monkeypatch.setattr(engine_tasks, "engine_slot", lambda _job: contextlib.nullcontext())
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "hang")
    cancel.set()
    with pytest.raises(TopsAppStopped, match="not started: the run is being cancelled"):
        engine_tasks._limited_run(inputs, job)
    assert not (inputs.pair_dir / "fake_topsapp_pids.json").exists()  # the stand-in never ran
    assert not (inputs.pair_dir / "topsApp.log").exists()


def test_two_runs_on_one_pair_compute_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two engine task runs of the same pair at once (two runs on one cube): the second waits on the pair's
    claim and reuses the first one's result. Without the claim both compute: the engine double holds the
    first call open for up to 2 s to let a second call in."""
    import contextlib
    import threading

    import tasks.engine as engine_tasks
    from tests.test_flow import _engine_double

    job = isce2_job(tmp_path)
    inputs = bc_inputs(job)
    calls: list[str] = []
    second_call = threading.Event()

    def engine(inputs_: Any, job_: Any) -> Path:
        calls.append(inputs_.pair.pair_id)
        if len(calls) == 1:
            second_call.wait(timeout=2.0)
        else:
            second_call.set()
        return _engine_double(inputs_, job_)

    monkeypatch.setattr(engine_tasks, "_run_isce2", engine)
    monkeypatch.setattr(engine_tasks, "engine_slot", lambda _job: contextlib.nullcontext())
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(engine_tasks.run_engine.fn(inputs, job))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert calls == [PAIR_ID] and len(results) == 2 and results[0] == results[1]
    assert (results[0] / "zarr.json").is_file()


def test_cancellation_hook_kills_recorded_groups_from_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's runner calls ``on_cancellation`` hooks in its own process with the flow run's JSON
    parameters: the hook finds topsApp through the PID file alone."""
    job = isce2_job(tmp_path)
    inputs = bc_inputs(job)
    render_pair_inputs(inputs, job)
    env = {**os.environ, "FAKE_TOPSAPP_MODE": "hang"}
    script = (
        "import sys; from pathlib import Path; from offset_cube.config import Isce2Config;"
        "from offset_cube.isce2.discovery import discover_isce; from offset_cube.isce2.supervise import run_topsapp;"
        "i = discover_isce(Isce2Config(python=sys.argv[1], isce_home=sys.argv[2]));"
        "run_topsapp(i, Path(sys.argv[3]), deadline_s=300, omp_num_threads=1)"
    )
    args = [sys.executable, "-c", script, str(job.isce2.python), str(job.isce2.isce_home), str(inputs.pair_dir)]
    supervisor = subprocess.Popen(args, env=env)
    try:
        pids_file = inputs.pair_dir / "fake_topsapp_pids.json"
        wait_for(pids_file.is_file, 60)
        pids = json.loads(pids_file.read_text())
        flow_run = SimpleNamespace(id="run", parameters={"job": json.loads(job.model_dump_json())})
        kill_engine_processes(None, flow_run, SimpleNamespace(name="Cancelling"))
        for pid in [pids["topsapp"], *pids["workers"]]:
            wait_for(lambda pid=pid: not alive(pid), 30)
            assert not alive(pid)
        supervisor.wait(timeout=30)
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
        kill_stand_in(inputs.pair_dir)
