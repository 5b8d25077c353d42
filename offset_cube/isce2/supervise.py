"""Run ``topsApp.py`` as a supervised subprocess, resumably, and judge the run by what it wrote.

* It runs as an argument list with ``cwd`` = the pair folder, in its **own process group** (``setsid``) so that
  the whole group (DenseAmpcor forks worker processes, runDenseOffsets shells out to gdal_translate) can be
  killed at once, with ``PR_SET_PDEATHSIG`` so it dies with the thread that started it, a reaper process
  (:mod:`offset_cube.reaper`) that kills the rest of the group if the supervisor is killed, its pid in
  ``topsApp.pid`` so that a Prefect cancellation/crash hook in another process can kill the group: Prefect's own
  timeout and cancel do not stop child processes (checked with Prefect 3.9).
* A deadline kills the whole group (TERM, then KILL after a grace period).
* Output streams line by line to ``topsApp.log`` and to callbacks (step changes come from ISCE's own
  ``Running step <name>`` lines, ``iscesys/Component/Application.py``).
* topsApp's exit status is not trusted (``applications/topsApp.py`` ignores ``run()``'s result and
  ``TopsProc/runPreprocessor.py`` only prints extraction errors): success needs the expected ``merged/`` files
  and none of the known silent-failure messages in the log.
* Step mode saves ``PICKLE/<step>`` after every step, so a retry with unchanged inputs restarts after the last
  completed step; changed inputs start from a clean folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from offset_cube.atomic import write_text_atomic
from offset_cube.isce2.discovery import IsceInstallation
from offset_cube.isce2.judge import failure_message
from offset_cube.isce2.topsapp import (
    FINAL_STEP,
    LOG_FILE,
    MAX_NOTABLE,
    PID_FILE,
    TOPSAPP_STEPS,
    LineCallback,
    RunEnding,
    RunRecord,
    StepCallback,
    TopsAppError,
    TopsAppStopped,
    TopsAppTimeout,
    is_notable,
    now_utc,
    step_of,
)
from offset_cube.isce2.xml import TOPSAPP_XML
from offset_cube.reaper import parent_death_signal, start_reaper, stop_reaper

log = logging.getLogger(__name__)

_POLL_S = 0.2
_TAIL_LINES = 40


def run_topsapp(
    install: IsceInstallation,
    pair_dir: Path,
    *,
    deadline_s: float,
    omp_num_threads: int,
    start_step: str = TOPSAPP_STEPS[0],
    end_step: str = FINAL_STEP,
    on_line: LineCallback | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    grace_s: float = 10.0,
) -> RunRecord:
    """Run topsApp from ``start_step`` to ``end_step`` in ``pair_dir``.

    Raises :class:`TopsAppTimeout` at the deadline and :class:`TopsAppStopped` as soon as ``should_stop()``
    (polled a few times a second) returns True; either way the whole process group is killed first. Otherwise
    returns the record whatever the exit status; :func:`judge_run` decides whether the run succeeded.
    """
    for step in (start_step, end_step):
        if step not in TOPSAPP_STEPS:
            raise TopsAppError(f"{step!r} is not a topsApp step; valid: {', '.join(TOPSAPP_STEPS)}")
    if kill_recorded_run(pair_dir, grace_s):
        log.warning("killed a topsApp.py left running in %s by an earlier attempt", pair_dir)
    command = install.command(str(pair_dir / TOPSAPP_XML), start_step, end_step)
    record = RunRecord(returncode=-1, start_step=start_step, log_path=pair_dir / LOG_FILE)
    with record.log_path.open("a", encoding="utf-8") as log_file:
        log_file.write(f"==== {now_utc()} offset-cube runs: {shlex.join(command)}  (cwd {pair_dir})\n")
        log_file.flush()
        proc = subprocess.Popen(
            command,
            cwd=pair_dir,
            env=install.environment(omp_num_threads),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: pgid == pid
            preexec_fn=parent_death_signal(),  # prctl only, resolved before the fork: takes no lock
        )
        ending = RunEnding.ERROR
        reaper = start_reaper(proc.pid, group=True, grace_s=grace_s)
        try:
            write_pid_file(pair_dir, proc.pid, command)
            ending = _supervise(proc, record, log_file, deadline_s, grace_s, on_line, on_step, should_stop)
        finally:
            # Whatever happened (deadline, stop, callback error, KeyboardInterrupt), nothing of this run survives.
            terminate_group(proc.pid, 0.0 if ending is RunEnding.EXITED else grace_s, leader=proc)
            stop_reaper(reaper)
            (pair_dir / PID_FILE).unlink(missing_ok=True)
            log_file.write(f"==== {now_utc()} topsApp.py {ending}, exit status {proc.returncode}\n")
    record.returncode = proc.returncode if proc.returncode is not None else -1
    if ending is RunEnding.DEADLINE:
        raise TopsAppTimeout(
            failure_message(
                f"topsApp.py ran past its deadline of {deadline_s / 3600:.3g} h and its process group was killed",
                record,
                record.tail[-8:],
            )
        )
    if ending is RunEnding.STOPPED:
        raise TopsAppStopped(failure_message("topsApp.py was stopped because the run is being cancelled", record, []))
    return record


def _supervise(
    proc: subprocess.Popen[bytes],
    record: RunRecord,
    log_file: IO[str],
    deadline_s: float,
    grace_s: float,
    on_line: LineCallback | None,
    on_step: StepCallback | None,
    should_stop: Callable[[], bool] | None,
) -> RunEnding:
    """Stream lines until the leader exits, the deadline passes or ``should_stop()``; say which. Callbacks run
    in this thread."""
    lines: queue.Queue[bytes | None] = queue.Queue()
    stdout = proc.stdout
    if stdout is None:
        raise TopsAppError("topsApp.py was started without an output pipe")
    reader = threading.Thread(target=_pump, args=(stdout, lines), name=f"topsapp-{proc.pid}-reader", daemon=True)
    reader.start()
    tail: deque[str] = deque(maxlen=_TAIL_LINES)

    def handle(raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        log_file.write(line + "\n")
        log_file.flush()
        tail.append(line)
        step = step_of(line)
        if step is not None:
            record.steps.append(step)
            if on_step is not None:
                on_step(TOPSAPP_STEPS.index(step), step)
        if is_notable(line) and len(record.notable) < MAX_NOTABLE:
            record.notable.append(line)
        if on_line is not None:
            on_line(line)

    deadline = time.monotonic() + deadline_s
    ending, eof = RunEnding.EXITED, False
    while not _leader_exited(proc.pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (should_stop is not None and should_stop()):
            ending = RunEnding.DEADLINE if remaining <= 0 else RunEnding.STOPPED
            break
        if eof:
            time.sleep(min(_POLL_S, remaining))
            continue
        try:
            item = lines.get(timeout=min(_POLL_S, remaining))
        except queue.Empty:
            continue
        if item is None:
            eof = True
        else:
            handle(item)
    if ending is RunEnding.EXITED:
        # The leader is a zombie, so its group id is still reserved: kill stragglers, then reap.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        terminate_group(proc.pid, grace_s, leader=proc)
    reader.join(timeout=5.0)
    while True:
        try:
            item = lines.get_nowait()
        except queue.Empty:
            break
        if item is not None:
            handle(item)
    record.tail = list(tail)
    return ending


def _pump(stream: IO[bytes], lines: queue.Queue[bytes | None]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw)
    finally:
        lines.put(None)
        stream.close()


def _leader_exited(pid: int) -> bool:
    """True once the child has exited; it is left unreaped (a zombie), which keeps its pgid reserved."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


# ------------------------------------------------------------------------------ process groups, PID files


@dataclass(frozen=True)
class PidRecord:
    """The topsApp process group recorded in a pair folder."""

    pid: int
    start_ticks: int | None  # /proc/<pid>/stat starttime, guards against pid reuse
    host: str
    command: str


def write_pid_file(pair_dir: Path, pid: int, command: Sequence[str]) -> Path:
    """Record the group leader (pid == pgid) so another process can kill the group."""
    stat = _proc_stat(pid)
    data = {
        "pid": pid,
        "pgid": pid,
        "start_ticks": stat[1] if stat else None,
        "host": socket.gethostname(),
        "started": now_utc(),
        "command": shlex.join(command),
    }
    return write_text_atomic(pair_dir / PID_FILE, json.dumps(data, indent=2) + "\n")


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(
            pid=int(data["pid"]),
            start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
            host=str(data.get("host", "")),
            command=str(data.get("command", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def kill_recorded_run(pair_dir: Path, grace_s: float = 5.0) -> bool:
    """Kill the process group recorded in ``pair_dir/topsApp.pid`` if it is still ours; remove the file.

    Safe against pid reuse: a leader still present must have the recorded start time; with the leader gone,
    remaining members of the group are ours because Linux does not hand out a pid still used as a group id.
    """
    path = pair_dir / PID_FILE
    record = read_pid_file(path)
    if record is None:
        path.unlink(missing_ok=True)
        return False
    if record.host and record.host != socket.gethostname():
        log.warning("%s records a topsApp run on host %s; it cannot be killed from here", path, record.host)
        return False
    stat = _proc_stat(record.pid)
    reused = stat is not None and record.start_ticks is not None and stat[1] != record.start_ticks
    ours = not reused and bool(group_members(record.pid))
    if ours:
        terminate_group(record.pid, grace_s)
    path.unlink(missing_ok=True)
    return ours


def kill_recorded_runs(pairs_dir: Path, grace_s: float = 5.0) -> list[Path]:
    """Kill every topsApp process group recorded under ``pairs_dir/*/topsApp.pid``; the folders where one ran."""
    killed = []
    for pid_file in sorted(pairs_dir.glob(f"*/{PID_FILE}")):
        if kill_recorded_run(pid_file.parent, grace_s):
            killed.append(pid_file.parent)
    return killed


def terminate_group(pgid: int, grace_s: float, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to go, then SIGKILL what is left."""
    if grace_s > 0 and _signal_group(pgid, signal.SIGTERM):
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            if leader is not None:
                leader.poll()
            if not group_members(pgid):
                break
            time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=30)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid`` (Linux /proc; elsewhere a signal-0 probe)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            return [pgid]
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[3] == pgid and stat[2] != "Z":
                members.append(int(entry.name))
    return members


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _proc_stat(pid: int) -> tuple[int, int, str, int] | None:
    """(pid, start time in clock ticks, state, process group) from ``/proc/<pid>/stat``; None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ... starttime(22nd field)"; comm may hold spaces and parentheses.
    rest = text[text.rfind(")") + 2 :].split()
    try:
        return pid, int(rest[19]), rest[0], int(rest[2])
    except (IndexError, ValueError):
        return None
