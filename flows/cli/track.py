"""``offset-cube track``: the built-in tracker on any co-registered image pair, without Prefect."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app, fail, user_errors
from offset_cube.errors import TrackingError
from offset_cube.size import Size
from offset_cube.track_files import close_image, open_image, write_isce_offsets, write_offsets_zarr
from offset_cube.tracking import DEFAULT_OUTLIER_MAD_K, track_offsets
from offset_cube.tracking.tracker import ArrayLike2D

ImageArg = Annotated[Path, typer.Argument(help="ISCE raster (.slc/.bil or its .xml/.vrt), GeoTIFF or .npy.")]


def parse_size(text: str, option: str) -> Size:
    """``"64x16"`` → (64, 16) = (width, height); a bad value ends the command with one ``error:`` line."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        raise fail(f"{option} {text!r} is not WIDTHxHEIGHT in whole pixels (e.g. 64x16)") from None
    return Size(width, height)


def parse_gross(text: str) -> tuple[float, float]:
    """``"AZ,RG"`` → (azimuth, range) pixels."""
    try:
        azimuth, range_ = (float(part) for part in text.split(","))
    except ValueError:
        raise fail(f"--gross-offset {text!r} is not AZ,RG in pixels (e.g. -2,5.5)") from None
    return azimuth, range_


def _check_same_shape(images: list[ArrayLike2D], reference: Path, secondary: Path) -> None:
    """Co-registered images share one grid: different shapes mean the inputs are not co-registered."""
    ref_shape, sec_shape = tuple(images[0].shape), tuple(images[1].shape)
    if ref_shape != sec_shape:
        raise TrackingError(
            f"{reference} is {_size(ref_shape)} but {secondary} is {_size(sec_shape)}; co-registered images have "
            "the same shape (resample the secondary onto the reference grid first)"
        )


def _size(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape) + " (lines x samples)"


@app.command()
def track(
    reference: ImageArg,
    secondary: ImageArg,
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (written atomically).")],
    window: Annotated[str, typer.Option(help="Correlation window WIDTHxHEIGHT (range x azimuth), even, e.g. 64x16.")],
    search: Annotated[str, typer.Option(help="Half search range WIDTHxHEIGHT in pixels, e.g. 20x8.")],
    skip: Annotated[str, typer.Option(help="Grid spacing WIDTHxHEIGHT in pixels, e.g. 32x16.")],
    mode: Annotated[str, typer.Option(help="'amplitude' or 'complex' (coherent; complex images).")] = "amplitude",
    gross_offset: Annotated[str, typer.Option("--gross-offset", help="Constant offset AZ,RG in pixels.")] = "0,0",
    backend: Annotated[str, typer.Option(help="'numpy' (CPU) or 'cupy' (NVIDIA GPU).")] = "numpy",
    workers: Annotated[int, typer.Option(help="CPU threads.", min=1, max=256)] = 2,
    path: Annotated[
        str,
        typer.Option(
            "--path",
            help="Amplitude mode: 'dense' (overlapping windows share their work), 'window' (chip by chip) or "
            "'auto' (the cheaper for the job; offsets agree within 0.005 px RMS).",
        ),
    ] = "auto",
    outlier_mad_k: Annotated[
        float,
        typer.Option(
            "--outlier-mad-k",
            help="Invalid where an offset is > K x max(local MAD, 0.1 px) from its 5x5 neighbours' median; 0: off.",
            min=0.0,
        ),
    ] = DEFAULT_OUTLIER_MAD_K,
    isce_format: Annotated[
        Path | None,
        typer.Option("--isce-format", help="Also write ISCE2's dense_offsets*.bil (+.xml/.vrt) into this folder."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line with counts and speed.")] = False,
) -> None:
    """Dense offsets (secondary - reference, pixels) between two co-registered images (built-in tracker)."""
    sizes = {name: parse_size(value, f"--{name}") for name, value in (("window", window), ("search", search))}
    step = parse_size(skip, "--skip")
    gross = parse_gross(gross_offset)
    with user_errors():
        if out.suffix.lower() != ".zarr":
            raise TrackingError(f"--out {out} must name a Zarr store ending in .zarr")
        images = [open_image(reference), open_image(secondary)]
        try:
            _check_same_shape(images, reference, secondary)
            started = time.perf_counter()
            ds = track_offsets(
                images[0],
                images[1],
                window=sizes["window"],
                search=sizes["search"],
                skip=step,
                gross_offset=gross,
                mode=mode,
                backend=backend,
                workers=workers,
                outlier_mad_k=outlier_mad_k or None,
                oversampling_path=path,
            )
            seconds = time.perf_counter() - started
        finally:
            for image in images:
                close_image(image)
        write_offsets_zarr(ds, out)
        if isce_format is not None:
            write_isce_offsets(ds, isce_format)
    windows, valid = int(ds.attrs["windows"]), int(ds.attrs["valid_windows"])
    if as_json:
        summary = {
            "windows": windows,
            "valid": valid,
            "seconds": round(seconds, 3),
            "windows_per_second": round(windows / seconds, 1) if seconds > 0 else None,
        }
        typer.echo(json.dumps(summary))
    else:
        typer.echo(f"{valid} of {windows} windows valid in {seconds:.1f} s ({windows / seconds:.0f} windows/s); {out}")
