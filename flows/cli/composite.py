"""``offset-cube composite CUBE --period month|season|year``: error-weighted velocity composites as Zarr."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app, user_errors


class PeriodChoice(StrEnum):
    MONTH = "month"
    SEASON = "season"
    YEAR = "year"


@app.command()
def composite(
    cube: Annotated[Path, typer.Argument(help="The cube, e.g. offset-cube-output/cube.zarr.")],
    period: Annotated[PeriodChoice, typer.Option("--period", help="'month', 'season' (DJF, MAM, ...) or 'year'.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Zarr store to write (default: <cube folder>/composites-<period>.zarr)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Recompute every period, not only those whose layers changed.")
    ] = False,
) -> None:
    """Per cell and period: error- and overlap-weighted mean vx, vy, v with one-sigma errors, layer count and
    days covered (see README "Errors and composites")."""
    from offset_cube.cube.composite import composite_cube, default_composite_path

    with user_errors():
        target = out or default_composite_path(cube, period.value)
        report = composite_cube(cube, period.value, target, only_new=not full)
    typer.echo(report.summary())
