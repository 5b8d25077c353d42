"""``offset-cube config --example``: the commented job template, generated from the job model."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import app, fail


@app.command()
def config(
    example: Annotated[
        bool, typer.Option("--example", help="Print the commented job template (every field, its default).")
    ] = False,
) -> None:
    """Job configuration helpers: ``--example`` prints the template that examples/job.yaml holds."""
    from offset_cube.config_example import example_yaml

    if not example:
        raise fail("nothing to do: use --example to print the job template")
    typer.echo(example_yaml(), nl=False)
