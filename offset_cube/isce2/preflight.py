"""Checks made before anything is downloaded: the DEM (fetched, converted, covering) and the ISCE2 installation."""

from __future__ import annotations

from offset_cube.config import Engine, JobConfig
from offset_cube.isce2.discovery import IsceInstallation, discover_isce
from offset_cube.isce2.render import job_dems


def isce2_preflight(job: JobConfig, need_installation: bool) -> IsceInstallation | None:
    """Raise now, not after hours of downloads, if the DEM or (when it will run) ISCE2 is not usable."""
    if job.engine is not Engine.ISCE2:
        return None
    job_dems(job)
    return discover_isce(job.isce2) if need_installation else None
