"""``offset-cube serve``: the monitor and backfill deployments in one long-running process (no work pool)."""

from __future__ import annotations

from typing import Annotated, Any, cast

import typer

from flows.cli.app import app
from flows.cli.jobs import ConfigOpt, OutOpt, build_job


@app.command()
def serve(
    config: ConfigOpt = None,
    out: OutOpt = None,
    cron: Annotated[str | None, typer.Option(help="Monitor schedule (cron, UTC); default monitor.cron.")] = None,
) -> None:
    """Serve the job's monitor (scheduled) and backfill deployments until interrupted."""
    job = build_job(config, out=out, extra={"monitor.cron": cron} if cron else None)
    from flows.runtime import private_prefect_home

    private_prefect_home()
    from prefect import serve as prefect_serve

    from flows.deployments import backfill, monitor

    parameters = {"job": job.model_dump(mode="json")}
    tags = ["offset-cube", f"job-{job.name}", f"engine-{job.engine.value}"]
    typer.echo(f"serving {job.name}-monitor (cron '{job.monitor.cron}' UTC) and {job.name}-backfill; Ctrl-C stops")
    deployments = [
        monitor.to_deployment(name=f"{job.name}-monitor", cron=job.monitor.cron, parameters=parameters, tags=tags),
        backfill.to_deployment(name=f"{job.name}-backfill", parameters=parameters, tags=tags),
    ]
    prefect_serve(*cast(list[Any], deployments))
