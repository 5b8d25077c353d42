"""DEM stage: the job's terrain, fetched and cached once per run before any pair needs it."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.tasks import exponential_backoff

from offset_cube.config import JobConfig
from offset_cube.dem import describe_dem, job_dem
from tasks._common import retry_if_transient, run_logger


@task(
    name="dem",
    retries=1,
    retry_delay_seconds=exponential_backoff(backoff_factor=30),
    retry_condition_fn=retry_if_transient,
)
def dem_task(job: JobConfig) -> Path | None:
    """The DEM file both engines will use (``dem: auto``: fetched and mosaicked now, or found in the cache);
    a DEM that cannot be had fails the run here, once, instead of every pair."""
    path = job_dem(job)
    run_logger(__name__).info("DEM: %s%s", describe_dem(job), f" -> {path}" if path else "")
    return path
