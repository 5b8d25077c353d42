"""Search stage: find the job's scenes (ASF, a saved export, or a local folder)."""

from __future__ import annotations

from prefect import task
from prefect.tasks import exponential_backoff

from offset_cube.config import JobConfig
from offset_cube.scenes import Scene
from offset_cube.search import search_scenes
from tasks._common import retry_if_transient, run_logger


@task(
    name="search",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_if_transient,
)
def search_task(job: JobConfig) -> list[Scene]:
    """Scenes for the job, oldest first. Network failures are retried with backoff."""
    scenes = search_scenes(job)
    run_logger(__name__).info("search %s found %d IW SLC scene(s)", job.search.kind, len(scenes))
    return scenes
