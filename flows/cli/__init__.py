"""The ``offset-cube`` command line (typer). Each command lives in its own module of this package.

Commands import Prefect lazily, after :func:`flows.runtime.configure_prefect_env` has run, so that every
Prefect process of ours is offline and uses a project-local ``PREFECT_HOME``.
"""

from __future__ import annotations

from flows.cli import composite as _composite  # noqa: F401  (registers composite)
from flows.cli import config as _config  # noqa: F401  (registers config)
from flows.cli import credentials as _credentials  # noqa: F401  (registers credentials check/save-secret)
from flows.cli import demo as _demo  # noqa: F401  (registers demo)
from flows.cli import doctor as _doctor  # noqa: F401  (registers doctor)
from flows.cli import inspect as _inspect  # noqa: F401  (registers inspect)
from flows.cli import jobs as _jobs  # noqa: F401  (registers plan, run)
from flows.cli import serve as _serve  # noqa: F401
from flows.cli import simulate as _simulate  # noqa: F401  (registers simulate)
from flows.cli import track as _track  # noqa: F401  (registers track)
from flows.cli.app import app
from flows.runtime import configure_prefect_env


def main() -> None:
    """Console-script entry point."""
    configure_prefect_env()
    app()


__all__ = ["app", "main"]
