"""``offset-cube doctor``: is ISCE2 ready for ``engine: isce2``? Also the checks ``run`` makes before downloading."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import EXIT_FAILED, app, fail, user_errors, warn
from offset_cube.config import Engine, Isce2Config, JobConfig, load_job
from offset_cube.errors import OffsetCubeError
from offset_cube.isce2.discovery import IsceInstallation, discover_isce, probe_version
from offset_cube.isce2.preflight import isce2_preflight
from offset_cube.isce2.render import job_dems, render_dry_run
from offset_cube.planning import Plan


@app.command()
def doctor(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Job YAML whose isce2 part to check.")] = None,
    python: Annotated[Path | None, typer.Option(help="Python of the ISCE2 environment.")] = None,
    conda_prefix: Annotated[Path | None, typer.Option(help="Conda environment holding ISCE2.")] = None,
    isce_home: Annotated[Path | None, typer.Option(help="ISCE_HOME (the installed isce package).")] = None,
) -> None:
    """Report the ISCE2 installation found (config, then ISCE_HOME/CONDA_PREFIX), its version, and problems."""
    job = _job(config)
    settings = (job.isce2 if job else Isce2Config()).model_copy(
        update={k: v.expanduser().absolute() for k, v in _flags(python, conda_prefix, isce_home).items()}
    )
    with user_errors():
        install = discover_isce(settings)
    problems = _report(install, settings)
    if job is not None and job.engine is Engine.ISCE2:
        problems += _dem_report(job)
    if problems:
        raise fail("; ".join(problems), code=EXIT_FAILED)
    typer.echo("ok: ISCE2 is ready for `engine: isce2`")


def _job(config: Path | None) -> JobConfig | None:
    if config is None:
        return None
    with user_errors():
        return load_job(config)


def _flags(python: Path | None, conda_prefix: Path | None, isce_home: Path | None) -> dict[str, Path]:
    flags = {"python": python, "conda_prefix": conda_prefix, "isce_home": isce_home}
    return {k: v for k, v in flags.items() if v is not None}


def _report(install: IsceInstallation, settings: Isce2Config) -> list[str]:
    problems: list[str] = []
    try:
        imported = probe_version(install)
    except OffsetCubeError as err:
        imported = f"FAILED ({err})"
        problems.append(f"{install.python} cannot import isce")
    env = install.environment(settings.omp_num_threads)
    gdal = shutil.which("gdal_translate", path=env["PATH"])
    if gdal is None:
        problems.append("gdal_translate is not on the ISCE2 environment's PATH (topsApp's denseoffsets step runs it)")
    rows = [
        ("found by", install.found_by),
        *[("layout tried", line) for line in install.tried],
        ("layout", install.layout),
        ("python", str(install.python)),
        ("ISCE_HOME", str(install.isce_home)),
        ("PYTHONPATH", env.get("PYTHONPATH") or "(unset)"),
        ("topsApp.py", str(install.topsapp)),
        ("version", f"{install.version or 'unknown'} (release_history.py); import isce: {imported}"),
        ("gdal_translate", gdal or "MISSING"),
        ("OMP_NUM_THREADS", env["OMP_NUM_THREADS"]),
    ]
    typer.echo("ISCE2")
    for name, value in rows:
        typer.echo(f"  {name:<16}{value}")
    return problems


def _dem_report(job: JobConfig) -> list[str]:
    try:
        dem, geocode_dem = job_dems(job)
    except OffsetCubeError as err:
        typer.echo(f"  {'DEM':<16}FAILED ({err})")
        return ["the job's DEM is not usable"]
    typer.echo(f"  {'DEM':<16}{dem or 'none: topsApp downloads SRTM (needs ~/.netrc)'}")
    if geocode_dem is not None:
        typer.echo(f"  {'geocode DEM':<16}{geocode_dem}")
    return []


def check_before_download(job: JobConfig, dry_run: bool) -> JobConfig:
    """``run``'s checks before any download: the DEM (fetched for ``dem: auto``, converted and checked to cover
    the area for isce2), and ISCE2 unless it is a dry run."""
    if dry_run and job.engine is not Engine.ISCE2:
        raise fail("--dry-run shows the inputs topsApp would get; it needs --engine isce2 (see also `plan`)")
    with user_errors():
        isce2_preflight(job, need_installation=not dry_run)
        if job.engine is Engine.ISCE2 and job.dem.path is not None:
            dem, _ = job_dems(job)  # converted by the pre-flight: this finds it
            if dem != job.dem.path:
                warn(f"DEM converted to {dem}: topsApp expects WGS84 ellipsoid heights, taken as given")
    return job


def dry_run_folders(job: JobConfig, plan: Plan) -> list[Path]:
    """Render every planned pair's topsApp inputs into its folder; nothing is downloaded or run."""
    for message in plan.warnings:
        warn(message)
    for skipped in plan.skipped:
        warn(f"skipping {skipped.pair.label}: {skipped.reason}")
    with user_errors():
        return render_dry_run(job, plan)
