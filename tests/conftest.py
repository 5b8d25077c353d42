"""Shared fixtures. Prefect is configured offline here, before anything imports it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The project's own real test data (tests/data/README.md says where each file comes from).
DATA = ROOT / "tests" / "data"

os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
PREFECT_HOME = ROOT / ".prefect" / "pytest"
PREFECT_HOME.mkdir(parents=True, exist_ok=True)  # Prefect creates only the last level itself
os.environ["PREFECT_HOME"] = str(PREFECT_HOME)
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

#: Prefect test harness start-up limit: 20 s on a loaded 2-core machine, and more than 90 s seen at load 30 (a
#: start-up limit only: a generous one costs nothing when the server comes up).
HARNESS_STARTUP_TIMEOUT_S = 240


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API server for every flow-level test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_TIMEOUT_S):
        yield


def data_path(relative: str) -> Path:
    """``tests/data/<relative>``; a missing file or folder fails the test (or its module) with one line naming it."""
    path = DATA / relative
    if not path.exists():
        pytest.fail(f"test data missing: tests/data/{relative} (tests/data/README.md lists every file)", pytrace=False)
    return path
