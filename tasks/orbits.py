"""Orbit stage: one task run per scene."""

from __future__ import annotations

import functools
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from offset_cube.config import JobConfig
from offset_cube.credentials import resolve_cdse_credentials
from offset_cube.errors import OrbitError
from offset_cube.orbits import AsfOrbitBucket, CdseOrbitCatalogue, OrbitSource, choose_orbit
from offset_cube.scenes import Scene
from offset_cube.stages import OrbitFile
from tasks._common import retry_if_transient, run_logger
from tasks._common.secrets import secret_value


@task(
    name="orbit",
    task_run_name="orbit {scene.product_id}",
    retries=3,
    retry_delay_seconds=[30, 120, 600],
    retry_condition_fn=retry_if_transient,
    # No Prefect result cache: the orbit folder is the cache, and a cached "deferred" answer would hide a
    # POEORB published since.
    cache_policy=NO_CACHE,
)
def fetch_orbit(scene: Scene, job: JobConfig) -> OrbitFile:
    """The orbit file to use for ``scene`` (precise first); deferred when none is acceptable yet."""
    choice = choose_orbit(
        scene,
        orbit_folders(job),
        orbit_sources(job),
        allow_resorb=job.orbits.allow_resorb,
        allow_annotation=job.orbits.allow_annotation,
    )
    logger = run_logger(__name__)
    if choice.deferred or choice.orbit_type != "POEORB":
        logger.warning("%s: %s", scene.product_id, choice.note)
    else:
        logger.info("%s: %s", scene.product_id, choice.path.name if choice.path else choice.orbit_type)
    return choice


def orbit_folders(job: JobConfig) -> list[Path]:
    """The orbit cache (written to), then a local catalog's folder (read only: orbit files may sit beside zips)."""
    folders = [job.storage.orbit_dir]
    if job.search.kind == "local" and job.search.path is not None:
        folders.append(job.search.path)
    return folders


def orbit_sources(job: JobConfig) -> list[OrbitSource]:
    """ASF's public bucket, then Copernicus Data Space when credentials for it are configured."""
    sources: list[OrbitSource] = [_asf_bucket(job.orbits.asf_bucket_url, job.download.timeout_s)]
    value = None
    if job.orbits.cdse_secret:
        value = secret_value(job.orbits.cdse_secret)
        if value is None:
            raise OrbitError(f"Prefect Secret block {job.orbits.cdse_secret!r} (orbits.cdse_secret) was not found")
    cdse = resolve_cdse_credentials(value)
    if cdse is not None:
        sources.append(CdseOrbitCatalogue(cdse, timeout_s=job.download.timeout_s))
    return sources


@functools.lru_cache(maxsize=4)
def _asf_bucket(url: str, timeout_s: float) -> AsfOrbitBucket:
    """One bucket client per process, so the orbit tasks of a run share one listing per mission and type."""
    return AsfOrbitBucket(url, timeout_s=timeout_s)
