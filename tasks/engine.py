"""Engine stage: the pair's dense offsets in the common per-pair result format (offsets.zarr).

:func:`run_engine` dispatches on ``job.engine``: ``isce2`` → :func:`_run_isce2` (topsApp.py, with a progress
artifact and the flow hooks below), ``builtin`` → :func:`_run_builtin`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext

from offset_cube.atomic import file_lock
from offset_cube.config import Engine, JobConfig, StorageConfig
from offset_cube.isce2.engine import run_isce2
from offset_cube.isce2.supervise import kill_recorded_runs
from offset_cube.isce2.topsapp import TOPSAPP_STEPS, TopsAppStopped, is_notable, step_of
from offset_cube.planning import Pair
from offset_cube.result import RESULT_NAME
from offset_cube.stages import PairInputs
from tasks._common import OutputRecord, run_logger, stage_key
from tasks._common.limits import engine_slot

#: The pair's claim: one engine run per pair at a time across runs and processes.
CLAIM_FILE = ".claim"


def engine_record(inputs: PairInputs, job: JobConfig) -> OutputRecord:
    """The pair's engine result and the key of what changes it: the pair's inputs and the engine's own
    settings (not, e.g., concurrency limits)."""
    engine_settings = job.builtin if job.engine is Engine.BUILTIN else job.isce2
    key = stage_key("engine", inputs, job.engine, job.tracking, engine_settings, job.area, job.polarization, job.swaths)
    return OutputRecord(output=inputs.pair_dir / RESULT_NAME, marker=inputs.pair_dir / ".engine-key", key=key)


@task(
    name="engine",
    task_run_name="engine {inputs.pair.label}",
    cache_key_fn=lambda _ctx, i: engine_record(i["inputs"], i["job"]).cache_key(),
    tags=["offset-cube-engine"],
)
def run_engine(inputs: PairInputs, job: JobConfig) -> Path:
    """Run the configured engine for one pair, holding a slot of the engines' global concurrency limit;
    return the path of its ``offsets.zarr`` (reused when a previous run with the same inputs finished).

    The pair is claimed first (a lock file in its folder, released by the OS when the holder exits or dies):
    a second run on the same cube waits for the pair another live run is computing, then reuses its result.
    """
    with pair_claim(inputs.pair_dir, inputs.pair.label):
        return engine_record(inputs, job).produce(lambda: _limited_run(inputs, job), inputs.pair.label)


def pair_claim(pair_dir: Path, label: str) -> contextlib.AbstractContextManager[None]:
    """Hold the pair's claim (``<pair>/.claim``), saying so in the log when another run holds it now."""

    def waiting() -> None:
        run_logger(__name__).info("%s: another run is computing this pair; waiting to reuse its result", label)

    return file_lock(pair_dir / CLAIM_FILE, on_wait=waiting)


def _limited_run(inputs: PairInputs, job: JobConfig) -> Path:
    with engine_slot(job):
        stop = _cancel_requested()
        if stop is not None and stop():  # the slot came free because the run is being cancelled
            raise TopsAppStopped(f"{inputs.pair.label}: not started: the run is being cancelled")
        if job.engine is Engine.ISCE2:
            return _run_isce2(inputs, job)
        return _run_builtin(inputs, job)


# ----------------------------------------------------------------------------------------- builtin engine
# Owned by the built-in engine's issue: it replaces this function only.


def _run_builtin(inputs: PairInputs, job: JobConfig) -> Path:
    """The built-in engine (SAFE zips → offsets, no ISCE2) for one pair."""
    from offset_cube.builtin.engine import run_builtin

    logger = run_logger(__name__)
    result = run_builtin(inputs, job)
    logger.info("%s: built-in engine wrote %s", inputs.pair.label, result)
    return result


# ------------------------------------------------------------------------------------------- ISCE2 engine


def _run_isce2(inputs: PairInputs, job: JobConfig) -> Path:
    """topsApp.py for the pair, its output in the run log (step changes and warnings at INFO, the rest DEBUG)
    and its progress as a Prefect progress artifact keyed by the pair."""
    progress = TopsAppProgress(inputs.pair)
    result = run_isce2(inputs, job, on_line=progress.line, on_step=progress.step, should_stop=_cancel_requested())
    progress.done()
    return result


def _cancel_requested() -> Callable[[], bool] | None:
    """Whether the thread-pool task runner asked this task run to stop (flow cancelled or crashing).

    On SIGTERM Prefect sets each task's cancel event and then waits for the worker threads, so topsApp must
    stop when the event is set, or the flow process (and its hooks) would wait for topsApp. The event lives in
    the runner's private ``_cancel_events`` (prefect 3.9); other task runners rely on the PID-file hooks.
    """
    flow_context, task_context = FlowRunContext.get(), TaskRunContext.get()
    if flow_context is None or task_context is None:
        return None
    events = getattr(flow_context.task_runner, "_cancel_events", None)
    event = events.get(task_context.task_run.id) if isinstance(events, dict) else None
    return event.is_set if isinstance(event, threading.Event) else None


class TopsAppProgress:
    """Maps topsApp output to the run logger and a progress artifact (``topsapp-<pair id>``)."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.logger = run_logger(__name__)
        self.key = "topsapp-" + re.sub(r"[^a-z0-9-]+", "-", pair.pair_id.lower())
        self.artifact_id: Any = None
        if TaskRunContext.get() is not None:  # artifacts belong to a run; plain calls (tests, scripts) skip them
            self.artifact_id = create_progress_artifact(
                progress=0.0, key=self.key, description=f"topsApp.py steps for {pair.label}"
            )

    def line(self, line: str) -> None:
        if step_of(line) is not None:
            return  # reported by step()
        self.logger.log(logging.INFO if is_notable(line) else logging.DEBUG, "topsApp: %s", line)

    def step(self, index: int, name: str) -> None:
        self.logger.info("%s: topsApp step %d/%d %s", self.pair.label, index + 1, len(TOPSAPP_STEPS), name)
        self._update(100.0 * index / len(TOPSAPP_STEPS))

    def done(self) -> None:
        self._update(100.0)

    def _update(self, percent: float) -> None:
        if self.artifact_id is not None:
            update_progress_artifact(artifact_id=self.artifact_id, progress=percent)


def kill_engine_processes(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow ``on_cancellation`` / ``on_crashed`` hook: kill every topsApp process group this job recorded.

    Prefect's cancellation and timeouts do not stop child processes, and the hook may run in another process
    (the runner), so the groups come from the ``topsApp.pid`` files under the job's pairs folder
    (checked with Prefect 3.9: a cancelled or timed-out task leaves the processes it started running).
    """
    log = logging.getLogger(__name__)
    pairs_dir = _pairs_dir(getattr(flow_run, "parameters", {}) or {})
    if pairs_dir is None:
        log.warning("flow run %s has no job parameter; no topsApp process to stop", getattr(flow_run, "id", "?"))
        return
    for folder in kill_recorded_runs(pairs_dir):
        log.warning("stopped topsApp.py in %s (flow run %s)", folder, getattr(state, "name", "ended"))


def _pairs_dir(parameters: dict[str, Any]) -> Path | None:
    job = parameters.get("job")
    if isinstance(job, JobConfig):
        return job.storage.pairs_dir
    if isinstance(job, dict):
        return StorageConfig.model_validate(job.get("storage") or {}).pairs_dir
    return None
