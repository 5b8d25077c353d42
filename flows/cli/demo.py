"""``offset-cube demo``: the whole flow on a simulated stack, with its accuracy against the known truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from flows.cli.app import EXIT_FAILED, app, fail, user_errors
from offset_cube.config import AcquisitionMode, JobConfig, load_job

ACQUISITIONS = tuple(m.value for m in AcquisitionMode)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Demo folder (simulated stack, job, cube, truth, quicklooks).")] = Path(
        "demo-output"
    ),
    dates: Annotated[int, typer.Option(help="Acquisitions to simulate when the folder holds none.")] = 4,
    coherence: Annotated[float, typer.Option(help="Speckle coherence γ of the simulated stack.")] = 0.7,
    area_km: Annotated[float, typer.Option(help="Side of the simulated square area (km).")] = 8.0,
    acquisition: Annotated[
        str,
        typer.Option(
            help="'scenes': the flow reads the stack's SAFE zips (DIR/scenes). 'bursts': the stack is also cut "
            "into ASF burst products (DIR/bursts), served on 127.0.0.1 like ASF's burst service, searched from "
            "its export and downloaded, into DIR/from-bursts."
        ),
    ] = "scenes",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare/--no-compare",
            help="Also run the stack with `dem: none` (into DIR/dem-none) and print its figures beside dem: auto's; "
            "with --acquisition bursts, run it as whole scenes too (DIR/cube.zarr) and compare the two cubes.",
        ),
    ] = True,
) -> None:
    """Simulate a glacier stack in a valley (unless DIR holds one), run the real flow on it with the built-in
    engine and `dem: auto` (the simulator's terrain served as local GLO-30 tiles), and compare the cube and the
    window positions with the truth. A stack already in DIR is reused. Needs no network and no credentials."""
    from offset_cube.simulate import DEMO_TEMPLATE
    from offset_cube.simulate.demo import demo_job, describe, stack_description
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack

    if acquisition not in ACQUISITIONS:
        raise fail(f"--acquisition {acquisition!r} is not one of {', '.join(map(repr, ACQUISITIONS))}")
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
    if acquisition == AcquisitionMode.BURSTS.value:
        _bursts(doc, out, compare)
        typer.echo(f"done in {time.monotonic() - started:.0f} s")
        return
    with user_errors():
        job = _write_job(demo_job(doc), out)
    _run(job)
    _outputs(doc, job, "")
    if compare and doc.get("relief", "flat") != "flat":
        with user_errors():
            raw = demo_job(doc, dem="none", stack="..")
            raw["name"] = "demo-dem-none"
            flat = _write_job(raw, out / "dem-none")
        typer.echo(f"the same stack with `dem: none` (constant {doc['height_m']:g} m), into {flat.storage.out} ...")
        _run(flat)
        _figures(doc, flat, "dem none ")
    typer.echo(f"done in {time.monotonic() - started:.0f} s")


def _bursts(doc: dict[str, Any], out: Path, compare: bool) -> None:
    """The stack as burst products through the local burst server (into ``DIR/from-bursts``); with ``compare``,
    also as whole scenes (``DIR/cube.zarr``), and the two cubes compared."""
    from offset_cube.burst_safe import publish_bursts
    from offset_cube.search import search_scenes
    from offset_cube.simulate.burst_server import PLACEHOLDER_URL, PUBLISHED_EXPORT, serve_bursts
    from offset_cube.simulate.demo import FROM_BURSTS, bytes_per_date, compare_cubes, demo_burst_job, demo_job

    folder = out / "bursts"
    with user_errors():
        if not (folder / PUBLISHED_EXPORT).is_file():
            typer.echo(f"cutting the stack into ASF burst products in {folder} ...")
            publish_bursts([Path(d["scene"]) for d in doc["dates"]], folder, PLACEHOLDER_URL)
    with serve_bursts(folder) as export:
        typer.echo(f"serving {folder} on 127.0.0.1; burst search export {export}")
        with user_errors():
            job = _write_job(demo_burst_job(doc, export.name), out / FROM_BURSTS)
            line = bytes_per_date(search_scenes(job), [Path(d["scene"]) for d in doc["dates"]])
        _run(job)
    _outputs(doc, job, "bursts ")
    typer.echo(line)
    if compare:
        with user_errors():
            scenes = _write_job(demo_job(doc), out)
        typer.echo(f"the same stack as whole scenes (search: local), into {scenes.storage.out} ...")
        _run(scenes)
        _figures(doc, scenes, "scenes ")
        with user_errors():
            difference = compare_cubes(scenes.storage.cube_path, job.storage.cube_path)
        typer.echo(f"bursts vs scenes: {difference.line()}")


def _write_job(raw: dict[str, Any], folder: Path) -> JobConfig:
    """Save the job as ``folder/job.yaml`` (to rerun or edit; its paths are relative to ``folder``) and load it."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "# The demo's job; paths are relative to this file's folder: offset-cube run --config <this file>\n"
    (folder / "job.yaml").write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_job(folder / "job.yaml")


def _run(job: JobConfig) -> None:
    from flows.cli.jobs import run_flow

    state = run_flow(job)
    if state.is_failed() or state.is_crashed():
        raise fail(state.message or "the demo run failed", code=EXIT_FAILED)
    typer.echo(f"run:        {state.message or 'done'}")


def _outputs(doc: dict[str, Any], job: JobConfig, prefix: str) -> None:
    """Where the cube, truth and quicklooks are, then the figures."""
    typer.echo(f"cube:       {job.storage.cube_path}")
    typer.echo(f"truth:      {doc['truth']}")
    for png in sorted(job.storage.out.glob("*.png")) + sorted(job.storage.pairs_dir.rglob("*.png")):
        typer.echo(f"quicklook:  {png}")
    _figures(doc, job, prefix)


def _figures(doc: dict[str, Any], job: JobConfig, prefix: str) -> None:
    """The cube against the truth (velocity errors, coverage) and the window centres against the true ground."""
    from offset_cube.simulate.demo import accuracy, geolocation_errors, target_line

    with user_errors():
        layers = accuracy(job.storage.cube_path, Path(doc["truth"]))
        for layer in layers:
            typer.echo(f"{prefix}accuracy:   {layer.line()}")
        typer.echo(f"{prefix}target:     {target_line(layers)}")
        for pair in geolocation_errors(doc, job.storage.pairs_dir):
            typer.echo(f"{prefix}geolocation: {pair.line()}")
