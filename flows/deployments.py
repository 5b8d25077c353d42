"""Entry-point flows of the deployments in ``deployments/prefect.yaml``: a scheduled monitor and a backfill.

Both run the pipeline flow as a subflow with the task runner the job asks for (threads or Dask), so the
choice of runner stays in the job, not in the deployment.
"""

# No "from __future__ import annotations" here: Prefect builds the parameter model of an entry-point flow from
# its annotations in the process that runs a deployment, and string annotations cannot be resolved there.

import datetime as dt
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.pipeline import RunSummary, flow_for
from offset_cube.config import JobConfig, job_from_dict
from offset_cube.cube.lookup import latest_acquisition


def _run_name(kind: str) -> Any:
    def name() -> str:
        job = flow_run.parameters.get("job")
        label = job.name if isinstance(job, JobConfig) else (job or {}).get("name", "offset-cube")
        return f"{label} {kind}"

    return name


def monitor_window(job: JobConfig) -> tuple[JobConfig, dt.datetime | None]:
    """The job narrowed to [latest acquisition in the cube − lookback, today], and that latest time.

    With network pairing the window reaches back ``max_gap_days`` too, so a new date finds every earlier partner.
    """
    latest = latest_acquisition(job.storage.cube_path)
    start = job.start
    if latest is not None:
        lookback = job.monitor.lookback_days
        if job.pairing == "network" and job.max_gap_days is not None:
            lookback = max(lookback, job.max_gap_days)
        start = max(job.start, latest.date() - dt.timedelta(days=lookback))
    scoped = job_from_dict({**job.model_dump(mode="json"), "start": start.isoformat(), "end": None}, "monitor")
    return scoped, latest


@flow(name="offset-cube-monitor", flow_run_name=_run_name("monitor"), validate_parameters=True)
def monitor(job: JobConfig) -> RunSummary | State[Any]:
    """Process only pairs that new acquisitions make possible since the cube's latest acquisition."""
    logger = get_run_logger()
    scoped, latest = monitor_window(job)
    since = latest.strftime("%Y-%m-%d %H:%M UTC") if latest else "the job's start"
    logger.info("monitor: searching %s..today (latest acquisition in the cube: %s)", scoped.start, since)
    state: State[Any] = flow_for(scoped)(scoped, return_state=True)
    if state.is_completed():
        summary = state.result()
        if isinstance(summary, RunSummary) and summary.pairs_planned == 0:
            message = f"no new acquisitions since {since}: {summary.message}"
            logger.info(message)
            return Completed(message=message, data=summary)
    return state


@flow(name="offset-cube-backfill", flow_run_name=_run_name("backfill"), validate_parameters=True)
def backfill(job: JobConfig, start: dt.date | None = None, end: dt.date | None = None) -> State[Any]:
    """Process the pairs of ``start``..``end`` (default: the job's own dates) into the job's cube."""
    fields = job.model_dump(mode="json")
    if start is not None:
        fields["start"] = start.isoformat()
    if end is not None:
        fields["end"] = end.isoformat()
    scoped = job_from_dict(fields, "backfill")
    state: State[Any] = flow_for(scoped)(scoped, return_state=True)
    return state
