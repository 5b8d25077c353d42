"""``offset-cube plan`` and ``offset-cube run``: a job from YAML and/or flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.app import EXIT_FAILED, app, fail, is_terminal, user_errors, warn
from flows.cli.doctor import check_before_download, dry_run_folders
from offset_cube.config import JobConfig, load_job
from offset_cube.planning import Plan, plan_pairs
from offset_cube.search import search_scenes

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Job YAML (see examples/job.yaml).", dir_okay=False)
]
AreaOpt = Annotated[str | None, typer.Option(help="Area: WKT polygon (lon lat) or GeoJSON file path.")]
StartOpt = Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD.")]
EndOpt = Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD (default today).")]
SearchOpt = Annotated[str | None, typer.Option(help="'asf', 'file:PATH' or 'local:FOLDER'.")]
EngineOpt = Annotated[str | None, typer.Option(help="'builtin' or 'isce2'.")]
OutOpt = Annotated[Path | None, typer.Option(help="Output folder (cube, pairs, caches).")]
DemOpt = Annotated[
    str | None,
    typer.Option(
        help="DEM instead of the job's `dem`: 'auto', 'none', a GeoTIFF of ellipsoidal heights or an ISCE raster.",
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Engine isce2: plan and write each pair's topsApp XML files; run nothing.")
]


def build_job(
    config: Path | None,
    area: str | None = None,
    start: str | None = None,
    end: str | None = None,
    search: str | None = None,
    engine: str | None = None,
    out: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> JobConfig:
    """The job from ``config`` with the command-line flags applied on top (flags win)."""
    overrides: dict[str, Any] = {
        "area": str(Path(area).expanduser().absolute()) if area and Path(area).expanduser().is_file() else area,
        "start": start,
        "end": end,
        "search": _from_here(search),
        "engine": engine,
        "storage.out": str(out.expanduser().absolute()) if out else None,
        **(extra or {}),
    }
    if config is None and area is None:
        raise fail("give a job file (--config job.yaml) or at least --area and --start")
    with user_errors():
        return load_job(config, overrides)


def _from_here(search: str | None) -> str | None:
    """A ``file:``/``local:`` flag's path made absolute against the current folder (a job file's paths are
    relative to the file's folder)."""
    kind, _, arg = (search or "").partition(":")
    if kind in ("file", "local") and arg:
        return f"{kind}:{Path(arg).expanduser().absolute()}"
    return search


def make_plan(job: JobConfig) -> Plan:
    """Search and plan without Prefect (for ``plan``); the cube is consulted to skip finished pairs."""
    from offset_cube.cube.lookup import existing_pair_ids

    with user_errors():
        scenes = search_scenes(job)
        # with product.replace every pair is redone, as the flow's existing-pairs task decides
        existing = set() if job.product.replace else existing_pair_ids(job.storage.cube_path)
        plan = plan_pairs(job, scenes, existing=existing)
    return plan


@app.command()
def plan(
    config: ConfigOpt = None,
    area: AreaOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    search: SearchOpt = None,
    engine: EngineOpt = None,
    out: OutOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show the pairs a run would process (nothing is downloaded or written)."""
    job = build_job(config, area, start, end, search, engine, out)
    the_plan = make_plan(job)
    for message in the_plan.notices():
        warn(message)
    if as_json:
        typer.echo(json.dumps([p.summary() for p in the_plan.pairs], indent=2))
    else:
        _print_plan_table(the_plan)
    if not the_plan.pairs:
        typer.echo(the_plan.no_pairs_reason(), err=True)


def _print_plan_table(the_plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(the_plan.pairs)} pair(s), polarisation {the_plan.polarization or '-'}")
    for column in ("track", "dir", "reference", "secondary", "Δt (d)", "search (px)", "scenes"):
        table.add_column(column)
    for p in the_plan.pairs:
        table.add_row(
            str(p.track),
            p.direction.value[:3],
            p.reference.date.isoformat(),
            p.secondary.date.isoformat(),
            f"{p.dt_days:.1f}",
            str(p.search_px),
            f"{len(p.reference.scenes)}+{len(p.secondary.scenes)}",
        )
    Console().print(table)


@app.command()
def run(
    config: ConfigOpt = None,
    area: AreaOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    search: SearchOpt = None,
    engine: EngineOpt = None,
    out: OutOpt = None,
    dem: DemOpt = None,
    dry_run: DryRunOpt = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Reprocess pairs already in the cube and replace their layers.")
    ] = False,
) -> None:
    """Run the job: every new pair into the cube, through the Prefect flow."""
    extra = {"product.replace": True if replace else None, "dem.source": dem}
    job = build_job(config, area, start, end, search, engine, out, extra=extra)
    with user_errors():
        job.storage.check_writable()  # before anything is written or run: a bad --out is one error line
    job = check_before_download(job, dry_run)
    if dry_run:
        folders = dry_run_folders(job, make_plan(job))
        for folder in folders:
            typer.echo(folder)
        typer.echo(f"dry run: topsApp inputs of {len(folders)} pair(s) written; nothing downloaded or run", err=True)
        return
    nothing_new = nothing_to_run(job)
    if nothing_new is not None:
        typer.echo(nothing_new)
        return
    state = run_flow(job)
    if state.is_failed() or state.is_crashed():
        raise fail(state.message or "the run failed", code=EXIT_FAILED)
    typer.echo(state.message or "done")


def nothing_to_run(job: JobConfig) -> str | None:
    """Why a run would have nothing to do, decided from the search and the cube without Prefect (whose temporary
    server takes 8-18 s to start), or None when there are pairs to process. The flow searches again when it runs,
    so a scene published in between is not missed."""
    the_plan = make_plan(job)
    if the_plan.pairs:
        return None
    for message in the_plan.notices():
        warn(message)
    return the_plan.no_pairs_reason() + "; nothing to run"


def run_flow(job: JobConfig) -> Any:
    """Run the flow in this process with the job's task runner; return the final Prefect state."""
    from flows.pipeline import flow_for
    from flows.runtime import start_local_server
    from offset_cube.progress import terminal_progress

    start_local_server()  # under a lock, with a reaper: a SIGKILLed run leaves no server behind

    with terminal_progress(enabled=is_terminal()):  # a progress bar per download in a terminal
        return flow_for(job)(job, return_state=True)
