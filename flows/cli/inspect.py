"""``offset-cube inspect CUBE``: layers, dates, Δt and coverage; ``--to netcdf|geotiff`` exports."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.app import EXIT_FAILED, app, fail, user_errors, warn

if TYPE_CHECKING:  # the cube modules import xarray and rasterio: only when the command runs
    from offset_cube.cube.export import CubeInfo, LayerInfo


#: Right-aligned columns of the layer table.
NUMERIC_COLUMNS = ("#", "Δt (d)", "track", "coverage %")


class ExportFormat(StrEnum):
    NETCDF = "netcdf"
    GEOTIFF = "geotiff"


@app.command()
def inspect(
    cube: Annotated[Path, typer.Argument(help="The cube, e.g. offset-cube-output/cube.zarr.")],
    to: Annotated[
        ExportFormat | None, typer.Option("--to", help="Export to 'netcdf' or 'geotiff' (one file per layer).")
    ] = None,
    layer: Annotated[
        str | None, typer.Option("--layer", help="Only this layer: a pair id or an index (-1 = newest).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Export path (default: <cube name>[_<pair>].nc/.tif here)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
    point: Annotated[
        str | None, typer.Option("--point", help="LON,LAT: the speed time series at the cell holding this point.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="With --point: draw the series with error bars to this PNG.")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Re-hash every file and recount every layer against the integrity record."),
    ] = False,
) -> None:
    """Describe a cube (layers, dates, Δt, coverage); export a layer or the whole cube; a point's time series."""
    from offset_cube.cube.export import describe_cube, export_geotiff, export_netcdf, select_layer

    if plot is not None and point is None:
        raise fail("--plot needs --point LON,LAT")
    if point is not None:
        _point(cube, point, plot, as_json)
        return
    with user_errors():
        info = describe_cube(cube)
        _check_integrity(cube, [la.pair_id for la in info.layers], full=verify)
        if verify:
            return
        layers = info.layers
        if layer is not None:
            layers = [info.layers[select_layer([la.pair_id for la in info.layers], layer)]]
        if to is None:
            if as_json:
                typer.echo(json.dumps({**info.as_dict(), "layers": [la.as_dict() for la in layers]}, indent=2))
            else:
                _print(info, layers)
            return
        stem = cube.name.removesuffix(".zarr")
        suffix = f"_{layers[0].pair_id}" if layer is not None else ""
        if to is ExportFormat.NETCDF:
            target = output or Path(f"{stem}{suffix}.nc")
            export_netcdf(cube, target, layer)
            typer.echo(f"wrote {target}")
        else:
            target = output or Path(f"{stem}{suffix}.tif" if layer is not None else f"{stem}_geotiff")
            written = export_geotiff(cube, target, layer)
            typer.echo(f"wrote {len(written)} GeoTIFF file(s) to {target}")


def _check_integrity(cube: Path, pair_ids: list[str], full: bool) -> None:
    """``--verify``: the full check, its verdict, exit 1 when damaged. Otherwise the cheap check (missing or
    resized files), so a damaged cube never looks healthy: a warning before the description or export."""
    from offset_cube.cube.integrity import damage, verify
    from offset_cube.cube.schema import cube_chunks
    from offset_cube.cube.versions import current_version, open_cube

    version = current_version(cube)
    if version is None:
        return
    found = verify(version, pair_ids) if full else damage(version)
    with open_cube(cube) as ds:
        time_chunk = cube_chunks(ds)[0]
    if not found.ok:
        message = f"{cube} ({version.name}) is damaged: {found.describe(pair_ids, time_chunk)}"
        if full:
            raise fail(message, code=EXIT_FAILED)
        warn(message + "; `offset-cube inspect --verify` checks every file and layer")
    elif full and not found.has_record:
        warn(f"{cube} ({version.name}) has no integrity record (written before offset-cube kept one); not verified")
    elif full:
        typer.echo(f"{cube} ({version.name}): {len(pair_ids)} layer(s) and every file match the integrity record")


def _print(info: CubeInfo, layers: list[LayerInfo]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"[bold]{info.path}[/bold] (version {info.version}, offset-cube {info.software_version})")
    console.print(f"grid: {info.grid.describe()}")
    console.print(f"created {info.created}, updated {info.updated}; {len(info.layers)} layer(s)")
    header, rows = info.table(layers)
    table = Table()
    for column in header:
        table.add_column(column, no_wrap=True, justify="right" if column in NUMERIC_COLUMNS else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _point(cube: Path, point: str, plot: Path | None, as_json: bool) -> None:
    from offset_cube.cube.quicklook import point_plot, point_series

    try:
        lon, lat = (float(v) for v in point.split(","))
    except ValueError:
        raise fail(f"--point {point!r} is not LON,LAT in degrees (e.g. --point 75.12,38.31)") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise fail(f"--point {point!r} is out of range: longitude -180..180, latitude -90..90")
    with user_errors():
        series = point_series(cube, lon, lat)
        if plot is not None:
            point_plot(series, plot)
    if as_json:
        typer.echo(json.dumps({"lon": lon, "lat": lat, "x": series.x, "y": series.y, "layers": series.rows()}))
    else:
        for row in series.rows():
            typer.echo(f"{row['pair_id']}  {row['mid_date']}  v {row['v']}  ± {row['v_error']} m/yr")
    if plot is not None:
        typer.echo(f"wrote {plot}")
