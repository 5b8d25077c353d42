"""The typer application and the error handling shared by every command."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from offset_cube.errors import OffsetCubeError

#: Exit status for bad input (as argparse/click use for usage errors).
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one ``error:`` line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# typer's click (vendored as typer._click since typer 0.22, the click package before): its usage errors.
_click_errors = sys.modules[typer.BadParameter.__module__]
UsageError: type[Exception] = _click_errors.UsageError
_NoSuchOption: type[Exception] = _click_errors.NoSuchOption
_NoArgsIsHelp: tuple[type[Exception], ...] = tuple(
    e for e in [getattr(_click_errors, "NoArgsIsHelpError", None)] if e is not None
)


def usage_error_line(err: Any) -> str:
    """One line for a command-line mistake: what was wrong, the close matches, where the options are listed."""
    close = sorted(getattr(err, "possibilities", None) or [])
    if isinstance(err, _NoSuchOption):
        message = f"no such option: {getattr(err, 'option_name', '')}"
        if close:
            message += "; did you mean " + " or ".join(close) + "?"
    else:
        message = " ".join(err.format_message().split())  # click may wrap a suggestion onto a second line
        message = (message[:1].lower() + message[1:]).replace(". Did you mean", "; did you mean")
    where = err.ctx.command_path if err.ctx is not None else "offset-cube"
    return f"{message.rstrip('.')} (see '{where} --help')"


def _plain(params: list[Any]) -> list[Any]:
    """Help shows arguments as CUBE, REFERENCE (not {cube}) and flags without a <bool> placeholder."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _PlainUsage:
    """Plain help (see :func:`_plain`); usage mistakes end in one ``error:`` line and exit status 2, like every
    other bad input (mixed into typer's command and group classes)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))  # type: ignore[misc]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except _NoArgsIsHelp:
            raise
        except UsageError as err:
            raise fail(usage_error_line(err)) from None


class Command(_PlainUsage, TyperCommand):
    """A command of the ``offset-cube`` CLI."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar or ""]
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                pieces.append(name if param.required else f"[{name}]")
        return [p for p in pieces if p]


class Group(_PlainUsage, TyperGroup):
    """A command group: also an unknown command is one ``error:`` line naming the close matches."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as err:
            raise fail(usage_error_line(err)) from None


class Typer(typer.Typer):
    """typer.Typer whose groups and commands use :class:`Group` and :class:`Command`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", Command)
        return super().command(name, **kwargs)


app = Typer(
    name="offset-cube",
    help="Glacier velocity cubes from Sentinel-1 dense offsets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"offset-cube {importlib.metadata.version('offset-cube')}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Glacier velocity cubes from Sentinel-1 dense offsets."""


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
