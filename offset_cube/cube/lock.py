"""One cube writer at a time: an exclusive ``flock`` on ``<cube>.lock`` that the kernel releases when its holder dies.

Why ``flock`` rather than "create a lock file with our PID; take over when that PID is dead": deciding that a PID
is dead and taking over is racy (two waiters can both judge the lock stale), wrong across hosts and after PID
reuse. An ``flock`` is released by the kernel when the holding process exits for any reason, SIGKILL included, so
a crashed writer never leaves a stale lock and there is nothing to take over. The holder still writes its PID,
host and start time into the file so a waiting writer can say who holds the cube. The file is never deleted:
deleting a locked file would let a second writer lock a new file of the same name.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from offset_cube.errors import CubeError

#: How often a waiting writer retries, seconds.
POLL_S = 0.1


class CubeLockedError(CubeError):
    """Another writer held the cube for longer than the wait allowed; retrying later may succeed."""

    transient = True


class CubeLock:
    """Context manager holding the exclusive writer lock of one cube (waits up to ``timeout_s``)."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._file: IO[str] | None = None

    def __enter__(self) -> CubeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    owner = read_owner(self.path)
                    handle.close()
                    raise CubeLockedError(
                        f"cube lock {self.path} is held by {describe_owner(owner)}; waited {self.timeout_s:g} s "
                        "(storage.cube_lock_timeout_s)"
                    ) from None
                time.sleep(POLL_S)
        self._file = handle
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": dt.datetime.now(dt.UTC).isoformat()}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(owner))
        handle.flush()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.flush()
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def read_owner(path: Path) -> dict[str, Any] | None:
    """Who holds (or last held, if it crashed) the lock at ``path``; None when unknown."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another writer"
    return f"PID {owner.get('pid')} on {owner.get('host')} since {owner.get('since')}"
