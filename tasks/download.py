"""Download stage: one task run per scene (a scene shared by two pairs is fetched once)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.download import verify_local_scene
from offset_cube.scenes import Scene
from tasks._common import retry_if_transient, run_logger, stage_cache_key


@task(
    name="download",
    task_run_name="download {scene.product_id}",
    retries=4,
    retry_delay_seconds=[30, 60, 120, 240],
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_if_transient,
    cache_key_fn=stage_cache_key(
        "download", lambda i: [i["scene"].product_id, i["scene"].local_path, i["job"].storage.scene_dir]
    ),
)
def download_scene(scene: Scene, job: JobConfig) -> Path:
    """Local path of the verified SAFE zip for ``scene``."""
    if scene.local_path is not None:
        path = verify_local_scene(scene)
        run_logger(__name__).info("using local %s", path)
        return path
    from offset_cube.errors import DownloadError

    raise DownloadError(f"{scene.product_id}: ASF downloads are not available in this build yet")
