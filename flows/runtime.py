"""Process-wide set-up for entry points (CLI, served deployments, tests): Prefect offline, logging.

Call :func:`configure_prefect_env` before the first ``import prefect``: Prefect reads these settings when it
starts its (ephemeral) API server.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from offset_cube.atomic import file_lock, private_folder
from offset_cube.reaper import start_reaper

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


def start_local_server() -> Any:
    """Start Prefect's temporary API server now, when no ``PREFECT_API_URL`` names a server; None otherwise.

    Prefect would start it on first use; started here it gets (1) a reaper (:mod:`offset_cube.reaper`) that
    ends it when this process dies, even by SIGKILL, which Prefect's ``atexit`` stop cannot survive, and (2) a
    lock in ``PREFECT_HOME`` held while it sets up its database, so two runs started together on a fresh
    ``PREFECT_HOME`` do not both create the tables. The flow then uses this very server (Prefect keeps one per
    process).
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return None
    home = private_prefect_home()
    server = SubprocessASGIServer()
    with file_lock(home / ".server-start.lock"):
        server.start()
    process = server.server_process
    if process is not None and process.poll() is None:
        start_reaper(process.pid, group=False, grace_s=5.0)
    return server


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once, at the entry point."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
