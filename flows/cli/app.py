"""The typer application and the error handling shared by every command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import typer

from offset_cube.errors import OffsetCubeError

app = typer.Typer(
    name="offset-cube",
    help="Glacier velocity cubes from Sentinel-1 dense offsets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit status for bad input (as argparse/click use for usage errors).
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one ``error:`` line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's own errors into one ``error:`` line and exit status 2."""
    try:
        yield
    except OffsetCubeError as err:
        raise fail(str(err)) from None


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


def is_terminal() -> bool:
    return sys.stderr.isatty()
