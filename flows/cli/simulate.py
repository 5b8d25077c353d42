"""``offset-cube simulate``: write a simulated Sentinel-1 stack over a moving glacier, with its true velocity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app, user_errors
from offset_cube.simulate import DEMO_TEMPLATE


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder: scenes/, orbits/, truth.zarr, simulation.json.")],
    template: Annotated[
        Path | None,
        typer.Option(help="Real IW SLC SAFE (zip or folder) whose annotation gives the geometry. Default: bundled."),
    ] = None,
    dates: Annotated[int, typer.Option(help="Acquisitions: 12 days apart, one 24-day gap before the last.")] = 4,
    coherence: Annotated[float, typer.Option(help="Speckle coherence γ between consecutive dates.")] = 0.7,
    seed: Annotated[int, typer.Option(help="Random seed (texture, speckle, baselines, timing).")] = 0,
    flow: Annotated[str, typer.Option(help="'glacier' (valley glacier, 200-800 m/yr) or 'north' (due north).")] = (
        "glacier"
    ),
    area_km: Annotated[float, typer.Option(help="Side of the square area (km), centred on a burst seam.")] = 8.0,
    relief: Annotated[
        str | None,
        typer.Option(help="'valley' (walls >= 1500 m around the glacier; default with --flow glacier) or 'flat'."),
    ] = None,
) -> None:
    """Simulate SAFE zips of one track (with .EOF orbits) and write the true velocity on the cube grid."""
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack

    with user_errors():
        config = SimulationConfig(
            template=(template or DEMO_TEMPLATE).absolute(),
            dates=dates,
            coherence=coherence,
            seed=seed,
            flow=flow,  # type: ignore[arg-type]  # checked by SimulationConfig
            area_m=(area_km * 1000.0, area_km * 1000.0),
            relief=relief,  # type: ignore[arg-type]  # checked by SimulationConfig
        )
        stack = simulate_stack(config, out)
    for date in stack.dates:
        typer.echo(f"{date.product}")
    typer.echo(f"orbits in {stack.orbit_dir}, truth in {stack.truth}")
    typer.echo(f"area: {stack.area_wkt}")
    typer.echo(f"terrain (WGS84 ellipsoidal heights): {stack.dem}")
