"""Process-wide set-up for entry points (CLI, served deployments, tests): Prefect offline, logging.

Call :func:`configure_prefect_env` before the first ``import prefect``: Prefect reads these settings when it
starts its (ephemeral) API server.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from offset_cube.atomic import private_folder

#: Prefect's ephemeral server can need 20 s on a loaded 2-core machine; its default timeout is 20 s.
EPHEMERAL_STARTUP_TIMEOUT_S = 90


def configure_prefect_env(prefect_home: Path | None = None) -> Path:
    """Turn off Prefect telemetry, keep its state in a project-local folder, allow a slow server start.

    ``PREFECT_HOME`` is ``prefect_home`` if given, else an existing ``PREFECT_HOME`` variable, else
    ``./.prefect``. Returns the folder used; :func:`private_prefect_home` creates it before Prefect runs.
    """
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    home = prefect_home or Path(os.environ.get("PREFECT_HOME") or Path.cwd() / ".prefect")
    home = home.expanduser().absolute()
    os.environ["PREFECT_HOME"] = str(home)
    current = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "")
    if not current.isdigit() or int(current) < EPHEMERAL_STARTUP_TIMEOUT_S:
        os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = str(EPHEMERAL_STARTUP_TIMEOUT_S)
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "offset_cube")
    return home


def private_prefect_home() -> Path:
    """Create ``PREFECT_HOME`` readable by its owner only (0700): Prefect's database in it holds run
    parameters, states and logs, and Prefect itself would create it readable by everyone."""
    return private_folder(Path(os.environ.get("PREFECT_HOME") or Path.cwd() / ".prefect"))


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once, at the entry point."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
