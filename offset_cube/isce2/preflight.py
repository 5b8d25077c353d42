"""Checks made before anything is downloaded: the DEM (given, converted, covering) and the ISCE2 installation."""

from __future__ import annotations

from pathlib import Path

from offset_cube.area import parse_area
from offset_cube.config import Engine, JobConfig
from offset_cube.errors import ConfigError
from offset_cube.isce2.dem import check_dem_covers, prepare_dem
from offset_cube.isce2.discovery import IsceInstallation, discover_isce
from offset_cube.isce2.render import job_dems, padded_box


def apply_dem(job: JobConfig, dem: Path) -> JobConfig:
    """The job with ``dem`` as its DEM: for isce2 converted if needed and checked to cover the region of interest."""
    dem = dem.expanduser().absolute()
    if job.engine is not Engine.ISCE2:
        if not dem.is_file():
            raise ConfigError(f"DEM {dem} does not exist")
        return job.model_copy(update={"builtin": job.builtin.model_copy(update={"dem": dem})})
    prepared = prepare_dem(dem, job.storage.out / "dem")
    roi = padded_box(parse_area(job.area), job.isce2.roi_margin_deg or 0.0)
    check_dem_covers(prepared, roi, "region of interest (area + isce2.roi_margin_deg)")
    return job.model_copy(update={"isce2": job.isce2.model_copy(update={"dem": prepared})})


def isce2_preflight(job: JobConfig, need_installation: bool) -> IsceInstallation | None:
    """Raise now, not after hours of downloads, if the DEM or (when it will run) ISCE2 is not usable."""
    if job.engine is not Engine.ISCE2:
        return None
    job_dems(job)
    return discover_isce(job.isce2) if need_installation else None
