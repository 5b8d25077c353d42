"""Shared fixtures. Prefect is configured offline here, before anything imports it."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class OutsideNetworkError(RuntimeError):
    """A test tried to reach a host other than this machine (tests are offline: 127.0.0.1 servers only)."""


def _loopback(host: object) -> bool:
    if host in (None, "", "localhost") or (isinstance(host, str | bytes) and str(host).endswith(".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host.decode() if isinstance(host, bytes) else str(host))
        return address.is_loopback or address.is_unspecified  # 0.0.0.0 / ::, as Dask binds its servers
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: object) -> None:
    inet = self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
    if inet and not _loopback(address[0]):  # type: ignore[index]
        raise OutsideNetworkError(f"a test tried to connect to {address!r}; tests may only use 127.0.0.1")
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if not _loopback(host):
        raise OutsideNetworkError(f"a test tried to resolve {host!r}; tests may only use 127.0.0.1")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


# Every test runs offline: in this process, any connection or name lookup beyond this machine fails loudly (not
# as a connection error a retry loop would swallow). Subprocesses (Prefect's server, topsApp's stand-in, Chromium)
# are started by the tests against 127.0.0.1 only.
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


#: Prefect test harness start-up limit: 20 s on a loaded 2-core machine, and more than 90 s seen at load 30 (a
#: start-up limit only: a generous one costs nothing when the server comes up).
HARNESS_STARTUP_TIMEOUT_S = 240


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API server for every flow-level test of the session."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    from offset_cube.reaper import start_reaper, stop_reaper

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_TIMEOUT_S):
        # The harness registers its server as the process's default one. Prefect stops it at exit, which a killed
        # pytest never reaches: the product's reaper ends it then too, so no uvicorn outlives the test run.
        process = SubprocessASGIServer().server_process
        reaper = start_reaper(process.pid, group=False, grace_s=5.0) if process is not None else None
        try:
            yield
        finally:
            stop_reaper(reaper)


def data_path(relative: str) -> Path:
    """``tests/data/<relative>``; a missing file or folder fails the test (or its module) with one line naming it."""
    path = DATA / relative
    if not path.exists():
        pytest.fail(f"test data missing: tests/data/{relative} (tests/data/README.md lists every file)", pytrace=False)
    return path


@pytest.fixture
def unpacked_copies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of every member copy ``SafeArchive.unpacked`` makes (counted in its inflating copy loop)."""
    from offset_cube.safe import archive

    made: list[str] = []
    real = archive.shutil.copyfileobj

    def counting(source: Any, sink: Any, length: int = 0) -> None:
        made.append(str(sink.name))
        real(source, sink, length)

    monkeypatch.setattr(archive.shutil, "copyfileobj", counting)
    return made
