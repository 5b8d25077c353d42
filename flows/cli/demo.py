"""``offset-cube demo``: the whole flow on a simulated stack, with its accuracy against the known truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from flows.cli.app import EXIT_FAILED, app, fail, user_errors


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Demo folder (simulated stack, job, cube, truth, quicklooks).")] = Path(
        "demo-output"
    ),
    dates: Annotated[int, typer.Option(help="Acquisitions to simulate when the folder holds none.")] = 4,
    coherence: Annotated[float, typer.Option(help="Speckle coherence γ of the simulated stack.")] = 0.7,
    area_km: Annotated[float, typer.Option(help="Side of the simulated square area (km).")] = 8.0,
) -> None:
    """Simulate a glacier stack (unless DIR holds one), run the real flow on it with the built-in engine, and
    compare the cube with the truth. Needs no network and no credentials."""
    from flows.cli.jobs import nothing_to_run, run_flow
    from offset_cube.config import job_from_dict
    from offset_cube.simulate import DEMO_TEMPLATE
    from offset_cube.simulate.demo import accuracy, demo_job, describe, stack_description
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack

    out = out.absolute()
    started = time.monotonic()
    with user_errors():
        doc = stack_description(out)
        if doc is None:
            typer.echo(f"simulating {dates} acquisitions into {out} ...")
            config = SimulationConfig(
                template=DEMO_TEMPLATE, dates=dates, coherence=coherence, area_m=(1000 * area_km, 1000 * area_km)
            )
            stack = simulate_stack(config, out)
            doc = describe(stack)
        else:
            typer.echo(f"using the simulated stack in {out}")
        raw = demo_job(doc, out)
        (out / "job.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        job = job_from_dict(raw, origin=str(out / "job.yaml"))
    nothing_new = nothing_to_run(job)
    if nothing_new is not None:
        typer.echo(nothing_new)
    else:
        state = run_flow(job)
        if state.is_failed() or state.is_crashed():
            raise fail(state.message or "the demo run failed", code=EXIT_FAILED)
    cube = job.storage.cube_path
    typer.echo(f"cube:       {cube}")
    typer.echo(f"truth:      {doc['truth']}")
    for png in sorted(out.rglob("*.png")):
        typer.echo(f"quicklook:  {png}")
    with user_errors():
        for layer in accuracy(cube, Path(doc["truth"])):
            typer.echo(f"accuracy:   {layer.line()}")
    typer.echo(f"done in {time.monotonic() - started:.0f} s")
