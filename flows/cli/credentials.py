"""``offset-cube credentials``: where a run's Earthdata credentials come from; store them in a Prefect Secret block.

Neither command ever prints a password or token.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from flows.cli.app import Typer, app, fail, user_errors

credentials_app = Typer(help="Earthdata credentials for scene downloads (never printed).", no_args_is_help=True)
app.add_typer(credentials_app, name="credentials")

SecretOpt = Annotated[
    str | None, typer.Option("--secret", help="Prefect Secret block name, as in download.earthdata_secret.")
]


@credentials_app.command("check")
def check(secret: SecretOpt = None) -> None:
    """Say which Earthdata credentials a run would use (Secret block, environment or .netrc), without showing them."""
    from offset_cube.credentials import resolve_earthdata_credentials
    from tasks._common.secrets import secret_value

    value = secret_value(secret) if secret else None
    note = f"the Prefect Secret block {secret!r} was not found" if secret and value is None else ""
    with user_errors():
        found = resolve_earthdata_credentials(value, f"Prefect Secret block {secret!r}", missing_note=note)
    kind = f"login of user {found.username}" if found.username else "token"
    typer.echo(f"Earthdata {kind} from {found.source}")


@credentials_app.command("save-secret")
def save_secret(
    name: Annotated[str, typer.Argument(help="Name of the Prefect Secret block to create or replace.")],
    token: Annotated[bool, typer.Option("--token", help="Store an Earthdata token instead of a login.")] = False,
) -> None:
    """Store Earthdata credentials in a Prefect Secret block (for scheduled deployments).

    The values are read from EARTHDATA_USERNAME/EARTHDATA_PASSWORD (or EARTHDATA_TOKEN with --token) when set,
    otherwise asked for with hidden input; they never appear on the command line or in shell history.
    """
    from prefect.blocks.system import Secret

    value: dict[str, Any]
    if token:
        value = {"token": os.environ.get("EARTHDATA_TOKEN") or typer.prompt("Earthdata token", hide_input=True)}
    else:
        username = os.environ.get("EARTHDATA_USERNAME") or typer.prompt("Earthdata username")
        password = os.environ.get("EARTHDATA_PASSWORD") or typer.prompt("Earthdata password", hide_input=True)
        value = {"username": username, "password": password}
    if not all(str(v).strip() for v in value.values()):
        raise fail("empty credentials were not stored")
    Secret(value=value).save(name, overwrite=True)
    typer.echo(f"stored in Prefect Secret block {name!r}; set download.earthdata_secret: {name} in the job")
