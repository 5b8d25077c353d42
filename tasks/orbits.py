"""Orbit stage: one task run per scene."""

from __future__ import annotations

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.errors import OrbitError
from offset_cube.scenes import Scene
from offset_cube.stages import OrbitFile
from tasks._common import retry_if_transient, stage_cache_key


@task(
    name="orbit",
    task_run_name="orbit {scene.product_id}",
    retries=3,
    retry_delay_seconds=[30, 120, 600],
    retry_condition_fn=retry_if_transient,
    cache_key_fn=stage_cache_key("orbit", lambda i: [i["scene"].product_id, i["job"].storage.orbit_dir]),
)
def fetch_orbit(scene: Scene, job: JobConfig) -> OrbitFile:
    """The orbit file to use for ``scene`` (precise first)."""
    if job.orbits.allow_annotation:
        return OrbitFile(product_id=scene.product_id, orbit_type="annotation", note="annotation state vectors")
    raise OrbitError(f"{scene.product_id}: orbit retrieval is not available in this build yet")
