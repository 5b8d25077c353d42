"""Progress thinning and the terminal bars."""

from __future__ import annotations

import io

from rich.console import Console

from offset_cube.progress import UNKNOWN_TOTAL_STEP_BYTES, StepReporter, TerminalBars, fan_out


def test_step_reporter_reports_once_per_tenth_whatever_the_chunk_size() -> None:
    seen: list[float | None] = []
    report = StepReporter(lambda done, total, percent: seen.append(percent))
    for done in [0, 1, 2, 50, 99, 100, 250, 999, 1000]:
        report(done, 1000)
    assert seen == [0.0, 10.0, 25.0, 99.9, 100.0]


def test_step_reporter_without_a_total_reports_every_256_mib() -> None:
    seen: list[int] = []
    report = StepReporter(lambda done, total, percent: seen.append(done))
    for done in range(0, 3 * UNKNOWN_TOTAL_STEP_BYTES, UNKNOWN_TOTAL_STEP_BYTES // 4):
        report(done, None)
    assert seen == [0, UNKNOWN_TOTAL_STEP_BYTES, 2 * UNKNOWN_TOTAL_STEP_BYTES]


def test_fan_out_skips_missing_targets() -> None:
    calls: list[tuple[int, int | None]] = []
    fan_out(None, lambda d, t: calls.append((d, t)))(3, 4)
    assert calls == [(3, 4)]


def test_terminal_bars_draw_one_bar_per_transfer() -> None:
    screen = io.StringIO()
    bars = TerminalBars(Console(file=screen, force_terminal=True, width=100))
    with bars.shown():
        first, second = bars.bar("scene-a"), bars.bar("scene-b")
        first(5_000_000, 10_000_000)
        second(10_000_000, 10_000_000)
    last_frame = screen.getvalue().rsplit("scene-a", 1)[1]
    assert "5.0/10.0 MB" in last_frame and "scene-b" in last_frame and "10.0/10.0 MB" in last_frame
