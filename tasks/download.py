"""Download stage: one task run per scene (a scene shared by two pairs is fetched once).

Credentials are resolved inside the tasks (never passed as parameters, which the Prefect UI shows). Downloads of
a job share one limit of ``concurrency.downloads`` slots named ``offset-cube-downloads-<job name>``
(:mod:`tasks._common.limits`): a process-local semaphore with the thread task runner; with Dask a Prefect global
concurrency limit, upserted at flow start and enforced by the server across processes and workers, whose slot
held by a killed run comes back when its lease expires.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import TaskRunContext
from prefect.exceptions import PrefectException

from offset_cube.config import DownloadConfig, JobConfig
from offset_cube.credentials import Credentials, resolve_earthdata_credentials
from offset_cube.download import (
    TransferLimits,
    cached_scene,
    check_login,
    download_scene_file,
    needs_download,
    open_session,
    remove_scene_file,
    scene_path,
    verify_local_scene,
)
from offset_cube.progress import ProgressCallback, StepReporter, fan_out, terminal_bars
from offset_cube.scenes import Scene
from tasks._common import retry_if_transient, run_logger, stage_cache_key
from tasks._common.limits import prepare_limits, slot
from tasks._common.secrets import secret_value


def download_limit_name(job: JobConfig) -> str:
    """The Prefect global concurrency limit shared by the job's downloads."""
    return f"offset-cube-downloads-{job.name}"


def load_earthdata_credentials(job: JobConfig) -> Credentials:
    """Earthdata credentials: the job's Prefect Secret block, else environment, else ``.netrc``."""
    name = job.download.earthdata_secret
    value = secret_value(name) if name else None
    note = ""
    if name and value is None:
        note = f"the Prefect Secret block {name!r} (download.earthdata_secret) was not found"
        run_logger(__name__).warning("%s; trying EARTHDATA_* variables and .netrc", note)
    return resolve_earthdata_credentials(value, f"Prefect Secret block {name!r}", missing_note=note)


@task(name="download-check")
def check_downloads(scenes: list[Scene], job: JobConfig) -> int:
    """Before any download starts: fail clearly if scenes must be fetched and no credentials exist.

    A username/password is tried once at the Earthdata login host (no data moves), so a refused login stops the
    run with one message instead of once per scene. Also sets the job's download concurrency limit. Returns how
    many scenes need downloading.
    """
    pending = [s for s in scenes if needs_download(s, job.storage.scene_dir)]
    logger = run_logger(__name__)
    if not pending:
        logger.info("all %d scene(s) are local or already in the scene cache", len(scenes))
        return 0
    credentials = load_earthdata_credentials(job)
    logger.info("%d scene(s) to download; Earthdata credentials from %s", len(pending), credentials.source)
    with open_session(credentials, timeout_s=job.download.timeout_s, edl_host=job.download.edl_host) as session:
        if check_login(pending[0], session):  # a refused login ends the run here, once, before any download
            logger.info("Earthdata Login accepted the login of %s", credentials.username)
    prepare_limits(job, {download_limit_name(job): job.concurrency.downloads})
    return len(pending)


def _download_cache_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
    """Reuse a result only while the file it names is unchanged; a missing file (never fetched, or deleted by
    cleanup) gets a key of its own, so a stale path is never returned from Prefect's cache."""
    scene: Scene = inputs["scene"]
    job: JobConfig = inputs["job"]
    path = scene.local_path or scene_path(scene, job.storage.scene_dir)
    try:
        stat = path.stat()
        fingerprint: list[int | str] = [stat.st_size, stat.st_mtime_ns]
    except OSError:
        fingerprint = [uuid.uuid4().hex]
    return stage_cache_key("download", lambda _: [scene.product_id, str(path), *fingerprint])(ctx, inputs)


def retry_options(download: DownloadConfig) -> dict[str, Any]:
    """Task retry arguments from the job's ``download`` settings: its retry count and doubling delays."""
    delays = [download.retry_delay_s * 2**i for i in range(download.retries)]
    return {"retries": download.retries, "retry_delay_seconds": delays or 0}


@task(
    name="download",
    task_run_name="download {scene.product_id}",
    **retry_options(DownloadConfig()),  # the defaults; each flow run applies its job's (flows/pipeline.py)
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_if_transient,
    cache_key_fn=_download_cache_key,
)
def download_scene(scene: Scene, job: JobConfig) -> Path:
    """Local path of the verified SAFE zip for ``scene``."""
    logger = run_logger(__name__)
    if scene.local_path is not None:
        path = verify_local_scene(scene)
        logger.info("using local %s", path)
        return path
    cached = cached_scene(scene, job.storage.scene_dir)
    if cached is not None:
        logger.info("%s: verified copy in the scene cache", scene.product_id)
        return cached
    d = job.download
    session = open_session(
        load_earthdata_credentials(job),
        timeout_s=d.timeout_s,
        edl_host=d.edl_host,
        limits=TransferLimits(d.deadline_s, d.min_rate_bytes_per_s, d.rate_window_s),
    )
    try:
        with slot(job, download_limit_name(job), job.concurrency.downloads):
            path = download_scene_file(scene, job.storage.scene_dir, session, _progress(scene))
    finally:
        session.close()
    logger.info("%s: downloaded and verified (%d bytes, md5 %s)", scene.product_id, path.stat().st_size, scene.md5)
    return path


def _progress(scene: Scene) -> ProgressCallback:
    """Log lines and a Prefect progress artifact every 10 %, plus a terminal bar when the CLI shows them."""
    logger = run_logger(__name__)
    key = "download-" + re.sub(r"[^a-z0-9]+", "-", scene.product_id.lower()).strip("-")
    artifact: list[Any] = []

    def report(done: int, total: int | None, percent: float | None) -> None:
        if percent is None:
            logger.info("%s: %.0f MB received", scene.product_id, done / 1e6)
            return
        logger.info("%s: %3.0f%% (%.1f of %.1f MB)", scene.product_id, percent, done / 1e6, (total or 0) / 1e6)
        if artifact and artifact[0] is None:
            return  # the API refused it once; the log lines above carry on
        try:
            if not artifact:
                description = f"Download of {scene.product_id}"
                artifact.append(create_progress_artifact(percent, key=key, description=description))
            else:
                update_progress_artifact(artifact[0], percent)
        except (httpx.HTTPError, PrefectException) as err:  # a progress display must never break a download
            logger.warning("%s: progress artifact not updated (%s); continuing", scene.product_id, err)
            artifact[:] = [None]

    bars = terminal_bars()
    label = f"{scene.mission} {scene.name.start:%Y%m%dT%H%M%S} {scene.name.crc}"  # fits an 80-column terminal
    return fan_out(StepReporter(report), bars.bar(label) if bars is not None else None)


@task(name="release-scene", task_run_name="release {scene.product_id}")
def release_scene(scene: Scene, job: JobConfig) -> list[Path]:
    """Delete a downloaded zip once every pair that needs it completed (cleanup.delete_scenes)."""
    removed = remove_scene_file(scene, job.storage.scene_dir)
    if removed:
        run_logger(__name__).info("%s: deleted from the scene cache (its pairs are done)", scene.product_id)
    return removed
