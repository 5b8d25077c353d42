"""Progress of long transfers: a callback type, a step filter, and a rich progress bar for terminals.

Domain code reports ``(bytes_done, bytes_total)`` to a :data:`ProgressCallback`; the caller decides where it goes
(log lines, a Prefect progress artifact, a terminal bar). :class:`StepReporter` thins the stream to one call per
``step_percent`` so that logs and API calls stay few.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: ``callback(bytes_done, bytes_total_or_None)``; called often (every network chunk).
ProgressCallback = Callable[[int, int | None], None]

#: Without a known total, report every this many bytes.
UNKNOWN_TOTAL_STEP_BYTES = 256 * 1024 * 1024


class StepReporter:
    """Pass progress on to ``report(done, total, percent)`` once per ``step_percent`` crossed (0 at first call)."""

    def __init__(self, report: Callable[[int, int | None, float | None], None], step_percent: float = 10.0) -> None:
        self._report = report
        self._step = step_percent
        self._next: float = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            percent = min(100.0, 100.0 * done / total)
            if percent >= self._next:
                # the next report is at the next whole step above this one, so a big chunk never repeats a step
                self._next = (percent // self._step + 1) * self._step
                self._report(done, total, percent)
        elif done >= self._next:
            self._next = (done // UNKNOWN_TOTAL_STEP_BYTES + 1) * UNKNOWN_TOTAL_STEP_BYTES
            self._report(done, None, None)


def fan_out(*callbacks: ProgressCallback | None) -> ProgressCallback:
    """One callback calling each of ``callbacks`` (Nones are skipped)."""
    targets = [c for c in callbacks if c is not None]

    def call(done: int, total: int | None) -> None:
        for target in targets:
            target(done, total)

    return call


class TerminalBars:
    """Rich progress bars, one per transfer, shared by threads of one process (the CLI in a terminal).

    ``console``: a ``rich.console.Console`` to draw on (default: rich's, on stdout).
    """

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._lock = threading.Lock()

    @contextmanager
    def shown(self) -> Iterator[TerminalBars]:
        """Display the bars while the block runs."""
        with self._progress:
            yield self

    def bar(self, label: str) -> ProgressCallback:
        """A callback that drives a new bar named ``label``."""
        task_id: Any = None

        def update(done: int, total: int | None) -> None:
            nonlocal task_id
            with self._lock:
                if task_id is None:
                    task_id = self._progress.add_task(label, total=total)
                self._progress.update(task_id, completed=done, total=total)

        return update


_TERMINAL_BARS: ContextVar[TerminalBars | None] = ContextVar("offset_cube_terminal_bars", default=None)


@contextmanager
def terminal_progress(enabled: bool = True) -> Iterator[None]:
    """Show a rich progress bar per download for flows run inside this block (the CLI in a terminal)."""
    if not enabled:
        yield
        return
    bars = TerminalBars()
    token = _TERMINAL_BARS.set(bars)
    try:
        with bars.shown():
            yield
    finally:
        _TERMINAL_BARS.reset(token)


def terminal_bars() -> TerminalBars | None:
    """The bars of the enclosing :func:`terminal_progress` block (None outside one)."""
    return _TERMINAL_BARS.get()
