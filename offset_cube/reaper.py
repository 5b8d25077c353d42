"""``python -m offset_cube.reaper group|pid TARGET START_TICKS PARENT GRACE_S``: end a process group or a process
when the process that started it dies, even by SIGKILL.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, man 2 prctl) reaches only the child it was set on:
topsApp's own children (DenseAmpcor's forked workers, gdal_translate) would outlive a killed supervisor, and
Prefect starts its temporary API server without one. This small process is started beside the target with the
parent-death signal SIGTERM *blocked* (the mask survives ``exec``, so a signal sent before Python is ready stays
pending, not lost) and waits for it with ``sigtimedwait``. When it arrives, or when its parent is found gone, it
terminates the target (SIGTERM, then SIGKILL after the grace period): a process only while its start time (in
``/proc``) is the recorded one, never another process that reused the pid. It exits by itself once the target
is gone; its starter ends it when the target ends normally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_CHECK_S = 1.0


def start_reaper(target: int, *, group: bool, grace_s: float) -> subprocess.Popen[bytes] | None:
    """Start a reaper for process group ``target`` (``group``) or process ``target``; None where it cannot run."""
    parent_death = parent_death_signal()
    if parent_death is None:
        return None

    def arm() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        parent_death()

    ticks = start_ticks(target)
    args = ["group" if group else "pid", str(target), str(ticks or 0), str(os.getpid()), str(grace_s)]
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "offset_cube.reaper", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # outside the target's group, and not hit by the terminal's Ctrl-C
            preexec_fn=arm,
        )
    except OSError as err:
        log.warning("no reaper for process %d (%s): if this process is killed, it may keep running", target, err)
        return None


def stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    if reaper is not None:
        reaper.kill()
        reaper.wait()


def parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec function asking Linux to SIGTERM the child when the thread that started it dies."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return set_pdeathsig


def start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (``/proc/<pid>/stat`` field 22); None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    state = fields[0] if fields else "X"
    return None if state in ("Z", "X") or len(fields) < 20 else int(fields[19])


def reap(group: bool, target: int, ticks: int, parent: int, grace_s: float) -> int:
    """Wait for the parent's death, then end the target; 0 when the target ended by itself."""
    from offset_cube.isce2.supervise import group_members, terminate_group

    def gone() -> bool:
        return not group_members(target) if group else start_ticks(target) != ticks

    while True:
        woken = signal.sigtimedwait({signal.SIGTERM}, _CHECK_S)
        if woken is None and os.getppid() == parent:
            if gone():
                return 0
            continue
        if group:
            terminate_group(target, grace_s)
        else:
            _terminate(target, ticks, grace_s)
        return 1


def _terminate(pid: int, ticks: int, grace_s: float) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if start_ticks(pid) != ticks:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        end = time.monotonic() + grace_s
        while time.monotonic() < end and start_ticks(pid) == ticks:
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] not in ("group", "pid"):
        print("usage: python -m offset_cube.reaper group|pid TARGET START_TICKS PARENT_PID GRACE_S", file=sys.stderr)
        return 2
    return reap(argv[0] == "group", int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
