"""``offset-cube serve``: the monitor and backfill deployments in one long-running process (no work pool)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from flows.cli.app import app
from flows.cli.jobs import ConfigOpt, OutOpt, build_job
from offset_cube.config import JobConfig

#: The deployment names, the same as deployments/prefect.yaml's, so the README's commands work for both set-ups:
#: ``prefect deployment run offset-cube-backfill/backfill -p start=... -p end=...``.
MONITOR, BACKFILL = "monitor", "backfill"


def served_deployments(job: JobConfig) -> list[Any]:
    """The job's monitor (on ``monitor.cron``, UTC) and backfill deployments, ready for ``prefect.serve``."""
    from flows.deployments import backfill, monitor

    parameters = {"job": job.model_dump(mode="json")}
    tags = ["offset-cube", f"job-{job.name}", f"engine-{job.engine.value}"]
    return [
        monitor.to_deployment(name=MONITOR, cron=job.monitor.cron, parameters=parameters, tags=tags),
        backfill.to_deployment(name=BACKFILL, parameters=parameters, tags=tags),
    ]


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

    deployments = served_deployments(job)
    monitor, backfill = (d.full_name for d in deployments)
    typer.echo(f"serving job {job.name}: {monitor} (cron '{job.monitor.cron}' UTC) and {backfill}; Ctrl-C stops")
    typer.echo(f"  run a backfill: prefect deployment run {backfill} -p start=YYYY-MM-DD -p end=YYYY-MM-DD")
    prefect_serve(*deployments)
