"""Helpers shared by the task modules: cache keys, retry conditions, loggers, pictures in artifacts."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import State, Task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

import offset_cube
from offset_cube.atomic import write_text_atomic

#: Bump a stage's version when its output format or meaning changes, so cached results are not reused.
STAGE_VERSIONS = {
    "search": "1",
    "plan": "1",
    "download": "1",
    "orbit": "1",
    "render": "1",
    "engine": "1",
    "product": "2",  # 2: stable-surface errors and per-cell error maps
    "cube": "1",
}


def run_logger(fallback: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run, else the module logger (``.fn`` calls in tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)


def stable_hash(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts (pydantic models are dumped first)."""

    def encode(value: Any) -> Any:
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        return str(value) if not isinstance(value, str | int | float | bool | type(None) | list | dict) else value

    text = json.dumps([encode(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def stage_cache_key(
    stage: str, relevant: Callable[[dict[str, Any]], list[Any]]
) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """A ``cache_key_fn`` from the stage name, its version, the package version and the relevant inputs.

    Only what changes the stage's output goes into the key (``relevant`` picks it from the task inputs), so
    e.g. a new concurrency limit does not invalidate finished pairs. Stages are also idempotent on disk: a
    cache hit is a shortcut, never the only guard against redoing work.
    """

    def key(_ctx: TaskRunContext, inputs: dict[str, Any]) -> str:
        return stage_key(stage, *relevant(inputs))

    return key


def retry_if_transient(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only errors that carry ``transient=True`` or are network-level (OSError, TimeoutError)."""
    try:
        state.result()
    except Exception as err:  # the task's own exception, re-raised by state.result()
        if getattr(err, "transient", False):
            return True
        from offset_cube.errors import OffsetCubeError

        if isinstance(err, OffsetCubeError):
            return False
        return isinstance(err, OSError | TimeoutError)
    return False


def path_fingerprint(path: Path) -> list[int]:
    """Identity of a file or of a folder written by an atomic rename: inode, size, modification time."""
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


@dataclass(frozen=True)
class OutputRecord:
    """A stage output on disk plus a marker file holding the key of the inputs that produced it.

    The marker makes a stage idempotent without Prefect: a rerun whose inputs have the same key reuses the
    output instead of recomputing it. It also keeps Prefect's cache honest: :meth:`cache_key` is the stable key
    only while that output is present and current, and a one-off key otherwise, so a cache hit can never hand
    back the path of an output that was deleted or made from other inputs.
    """

    output: Path
    marker: Path
    key: str

    def is_current(self) -> bool:
        try:
            return self.output.exists() and self.marker.read_text(encoding="utf-8").strip() == self.key
        except OSError:
            return False

    def cache_key(self) -> str:
        return self.key if self.is_current() else f"{self.key}-{uuid.uuid4().hex}"

    def produce(self, make: Callable[[], Path], what: str) -> Path:
        """The current output, or ``make()``'s after recording its key."""
        if self.is_current():
            run_logger(__name__).info("%s: reusing %s (same inputs)", what, self.output)
            return self.output
        self.marker.unlink(missing_ok=True)
        path = make()
        write_text_atomic(self.marker, self.key + "\n")
        return path


def stage_key(stage: str, *relevant: Any) -> str:
    """``<stage>-<hash>`` of the stage's version, the package version and what changes the stage's output."""
    return f"{stage}-{stable_hash(STAGE_VERSIONS[stage], offset_cube.__version__, *relevant)}"


#: Largest PNG embedded in an artifact, bytes; a larger one is named by its path only.
MAX_EMBEDDED_PNG_BYTES = 3_000_000


def png_markdown(png: Path, alt: str) -> str:
    """Markdown that shows ``png`` inside an artifact itself (a base64 ``data:`` image), so the Prefect UI displays
    the picture wherever the UI runs, not a path on the worker's disk.

    An HTML ``<img>`` element, because the UI's markdown renderer drops ``![alt](data:...)`` images but shows
    ``<img src="data:...">`` (checked in headless Chromium by ``tests/test_pictures.py``)."""
    data = png.read_bytes()
    if len(data) > MAX_EMBEDDED_PNG_BYTES:
        return f"{alt}: `{png}` ({len(data) / 1e6:.1f} MB, too large to embed)"
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{alt}">'
