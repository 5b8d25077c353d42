"""Run ``topsApp.py`` as a supervised subprocess, resumably, and judge the run by what it wrote.

* It runs as an argument list with ``cwd`` = the pair folder, in its **own process group** (``setsid``) so that
  the whole group (DenseAmpcor forks worker processes, runDenseOffsets shells out to gdal_translate) can be
  killed at once, with ``PR_SET_PDEATHSIG`` so it dies with the thread that started it, a reaper process
  (:mod:`offset_cube.reaper`) that kills the rest of the group if the supervisor is killed, its pid in
  ``topsApp.pid`` so that a Prefect cancellation/crash hook in another process can kill the group: Prefect's own
  timeout and cancel do not stop child processes (../shared/reference/prefect3.md §4).
* A deadline kills the whole group (TERM, then KILL after a grace period).
* Output streams line by line to ``topsApp.log`` and to callbacks (step changes come from ISCE's own
  ``Running step <name>`` lines, ``iscesys/Component/Application.py``).
* topsApp's exit status is not trusted (reference §4): success needs the expected ``merged/`` files and none of
  the known silent-failure messages in the log.
* Step mode saves ``PICKLE/<step>`` after every step, so a retry with unchanged inputs restarts after the last
  completed step; changed inputs start from a clean folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from offset_cube.atomic import write_text_atomic
from offset_cube.errors import EngineError
from offset_cube.isce2.discovery import IsceInstallation
from offset_cube.isce2.xml import REFERENCE_XML, SECONDARY_XML, TOPSAPP_XML
from offset_cube.reaper import parent_death_signal, start_reaper, stop_reaper

log = logging.getLogger(__name__)

#: topsApp's steps in order (``applications/topsApp.py::_steps``, reference §1).
TOPSAPP_STEPS = (
    "startup",
    "preprocess",
    "computeBaselines",
    "verifyDEM",
    "topo",
    "subsetoverlaps",
    "coarseoffsets",
    "coarseresamp",
    "overlapifg",
    "prepesd",
    "esd",
    "rangecoreg",
    "fineoffsets",
    "fineresamp",
    "ion",
    "burstifg",
    "mergebursts",
    "filter",
    "unwrap",
    "unwrap2stage",
    "geocode",
    "denseoffsets",
    "filteroffsets",
    "geocodeoffsets",
)
FINAL_STEP = "geocodeoffsets"
PID_FILE = "topsApp.pid"
LOG_FILE = "topsApp.log"
STATE_FILE = "topsApp.state.json"
PICKLE_DIR = "PICKLE"
MERGED_DIR = "merged"
#: What topsApp creates in its working folder (reference §1 table, §4 logs); removed for a clean start.
WORK_ENTRIES = (
    "PICKLE",
    "merged",
    "reference",
    "secondary",
    "geom_reference",
    "coarse_offsets",
    "coarse_coreg",
    "coarse_interferogram",
    "fine_offsets",
    "fine_coreg",
    "fine_interferogram",
    "ESD",
    "ion",
    "isce.log",
    "topsinsar.log",
    "denseampcor.log",
    "topsProc.xml",
)
_STEP_RE = re.compile(r"^Running step (\w+)")
_SWATH_RE = re.compile(r"Could not extract swath (\d)")
#: Messages of failures topsApp prints and then carries on from, or exits 0 after (reference §4, §5).
SILENT_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (_SWATH_RE, "a swath could not be extracted (wrong polarisation, missing orbit, bad SAFE path or ROI)"),
    (re.compile(r"No suitable orbit file found"), "no orbit file matched the acquisition"),
    (re.compile(r"Something went wrong in determining bboxes"), "no burst geometry (usually a swath not extracted)"),
    (re.compile(r"There is no imagery to extract"), "no burst overlaps the region of interest"),
    (re.compile(r"is not one of the named steps"), "an unknown step name was passed"),
    (re.compile(r"^Cannot open .*PICKLE"), "a saved step (PICKLE) could not be loaded"),
    (re.compile(r"The attribute corresponding to the key .* is not present"), "an unknown property in the XML"),
)
_NOTABLE_RE = re.compile(r"error|warning|exception|traceback|could not|cannot|failed", re.IGNORECASE)
_POLL_S = 0.2
_TAIL_LINES = 40
_MAX_NOTABLE = 200

LineCallback = Callable[[str], None]
StepCallback = Callable[[int, str], None]


class TopsAppError(EngineError):
    """topsApp.py did not produce usable dense offsets."""


class TopsAppTimeout(TopsAppError, TimeoutError):
    """topsApp.py ran past its deadline; its process group was killed."""


class TopsAppStopped(TopsAppError):
    """topsApp.py was stopped on request (the run is being cancelled); its process group was killed."""


@dataclass
class RunRecord:
    """What one topsApp invocation did."""

    returncode: int
    start_step: str
    log_path: Path
    steps: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    notable: list[str] = field(default_factory=list)


def is_notable(line: str) -> bool:
    """Lines worth showing at INFO level: step changes, warnings, errors, known failure messages."""
    return bool(_STEP_RE.match(line) or _NOTABLE_RE.search(line) or any(p.search(line) for p, _ in SILENT_FAILURES))


def step_of(line: str) -> str | None:
    """The step a ``Running step <name>`` line announces."""
    match = _STEP_RE.match(line)
    return match.group(1) if match and match.group(1) in TOPSAPP_STEPS else None


# --------------------------------------------------------------------------------------------- running


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
        log_file.write(f"==== {_now()} offset-cube runs: {shlex.join(command)}  (cwd {pair_dir})\n")
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
        ending = "error"
        reaper = start_reaper(proc.pid, group=True, grace_s=grace_s)
        try:
            write_pid_file(pair_dir, proc.pid, command)
            ending = _supervise(proc, record, log_file, deadline_s, grace_s, on_line, on_step, should_stop)
        finally:
            # Whatever happened (deadline, stop, callback error, KeyboardInterrupt), nothing of this run survives.
            terminate_group(proc.pid, 0.0 if ending == "exited" else grace_s, leader=proc)
            stop_reaper(reaper)
            (pair_dir / PID_FILE).unlink(missing_ok=True)
            log_file.write(f"==== {_now()} topsApp.py {ending}, exit status {proc.returncode}\n")
    record.returncode = proc.returncode if proc.returncode is not None else -1
    if ending == "deadline":
        raise TopsAppTimeout(
            failure_message(
                f"topsApp.py ran past its deadline of {deadline_s / 3600:.3g} h and its process group was killed",
                record,
                record.tail[-8:],
            )
        )
    if ending == "stopped":
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
) -> str:
    """Stream lines until the leader exits ('exited'), the deadline passes ('deadline') or ``should_stop()``
    ('stopped'). Callbacks run in this thread."""
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
        if is_notable(line) and len(record.notable) < _MAX_NOTABLE:
            record.notable.append(line)
        if on_line is not None:
            on_line(line)

    deadline = time.monotonic() + deadline_s
    ending, eof = "exited", False
    while not _leader_exited(proc.pid):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (should_stop is not None and should_stop()):
            ending = "deadline" if remaining <= 0 else "stopped"
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
    if ending == "exited":
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
        "started": _now(),
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


# ------------------------------------------------------------------------------------- resume and state


@dataclass(frozen=True)
class ResumePlan:
    """Where the next attempt starts: a step name, or None when every step already completed."""

    start_step: str | None
    reason: str


def inputs_fingerprint(pair_dir: Path, install: IsceInstallation) -> str:
    """Hash of what decides topsApp's results: the three XML files, the topsApp script and ISCE's version."""
    digest = hashlib.sha256()
    for name in (TOPSAPP_XML, REFERENCE_XML, SECONDARY_XML):
        path = pair_dir / name
        try:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError as err:
            raise TopsAppError(f"{path} cannot be read ({err.strerror or err}); render the pair first") from err
    digest.update(f"{install.topsapp}\0{install.version}".encode())
    return digest.hexdigest()[:32]


def plan_resume(pair_dir: Path, fingerprint: str) -> ResumePlan:
    """Resume after the last completed step when the inputs are unchanged; otherwise clean the folder."""
    state = read_state(pair_dir)
    if state.get("fingerprint") == fingerprint:
        last = last_completed_step(pair_dir)
        if last == FINAL_STEP:
            return ResumePlan(None, "every step completed in an earlier attempt with the same inputs")
        if last is not None:
            following = TOPSAPP_STEPS[TOPSAPP_STEPS.index(last) + 1]
            return ResumePlan(following, f"inputs unchanged; resuming after step {last} (saved in {PICKLE_DIR}/)")
    reason = "inputs changed since the last attempt" if state.get("fingerprint") else "first attempt"
    clean_workdir(pair_dir)
    write_state(pair_dir, {"fingerprint": fingerprint, "notable": []})
    return ResumePlan(TOPSAPP_STEPS[0], f"{reason}; starting from a clean folder")


def last_completed_step(pair_dir: Path) -> str | None:
    """The last step of the contiguous chain whose ``PICKLE/<step>`` and ``PICKLE/<step>.xml`` are non-empty."""
    pickle = pair_dir / PICKLE_DIR
    done = None
    for step in TOPSAPP_STEPS:
        files = (pickle / step, pickle / f"{step}.xml")
        if not all(f.is_file() and f.stat().st_size > 0 for f in files):
            break
        done = step
    return done


def clean_workdir(pair_dir: Path, keep_result: bool = False) -> None:
    """Remove topsApp's working files (and our state and result) but keep the XML inputs and the log."""
    names = [*WORK_ENTRIES, STATE_FILE] + ([] if keep_result else ["offsets.zarr"])
    for name in names:
        path = pair_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def read_state(pair_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((pair_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(pair_dir: Path, state: dict[str, Any]) -> None:
    write_text_atomic(pair_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def remember_notable(pair_dir: Path, record: RunRecord) -> list[str]:
    """Add this attempt's notable lines to the state (a resumed attempt does not repeat earlier steps' messages)."""
    state = read_state(pair_dir)
    notable = [*state.get("notable", []), *record.notable][-_MAX_NOTABLE:]
    state["notable"] = notable
    write_state(pair_dir, state)
    return notable


def forget_progress(pair_dir: Path) -> None:
    """Make the next attempt start from a clean folder (after a failure a resume would only repeat)."""
    (pair_dir / STATE_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- judging


def judge_run(
    pair_dir: Path,
    record: RunRecord | None,
    notable: Sequence[str],
    *,
    expected_swaths: Iterable[int],
    listed_swaths: Iterable[int],
    required: Sequence[Sequence[str]],
) -> None:
    """Raise :class:`TopsAppError` unless the outputs exist and no silent-failure message was printed.

    ``required`` lists alternatives per output, e.g. ``[("merged/dense_offsets.bil", "merged/dense_offsets.bip")]``;
    each needs one alternative present and non-empty together with its ``.xml``. A "Could not extract swath N"
    is fatal when swath N was expected to cover the area; when the swaths were not known in advance (all three
    listed), only when every listed swath failed.
    """
    problems: list[str] = []
    quoted: list[str] = []
    failed_swaths = {s for line in notable if (s := _swath_of(line)) is not None}
    expected, listed = set(expected_swaths), set(listed_swaths)
    fatal_swaths = (failed_swaths & expected) if expected else (failed_swaths if failed_swaths >= listed else set())
    for pattern, meaning in SILENT_FAILURES:
        hits = [line for line in notable if pattern.search(line)]
        if pattern is _SWATH_RE:
            hits = [line for line in hits if _swath_of(line) in fatal_swaths]
        if hits:
            problems.append(meaning)
            quoted += hits[:3] + _following(notable, hits[0], "Generated error")
    missing = [" or ".join(options) for options in required if not any(_output_ok(pair_dir / o) for o in options)]
    if missing:
        problems.append(f"expected output missing or empty: {', '.join(missing)}")
    if record is not None and record.returncode != 0:
        problems.insert(0, f"topsApp.py exited with status {record.returncode}")
        quoted += record.tail[-8:]
    if problems:
        if not quoted and record is not None:
            quoted = record.tail[-8:]
        raise TopsAppError(failure_message("; ".join(problems), record, quoted, pair_dir / LOG_FILE))


def _swath_of(line: str) -> int | None:
    match = _SWATH_RE.search(line)
    return int(match.group(1)) if match else None


def _output_ok(path: Path) -> bool:
    header = path.with_name(path.name + ".xml")
    return path.is_file() and path.stat().st_size > 0 and header.is_file() and header.stat().st_size > 0


def _following(lines: Sequence[str], anchor: str, prefix: str) -> list[str]:
    index = list(lines).index(anchor)
    return [line for line in lines[index + 1 : index + 3] if line.startswith(prefix)]


def failure_message(reason: str, record: RunRecord | None, quoted: Sequence[str], log_path: Path | None = None) -> str:
    """One message: what went wrong, where the full log is, and the log lines that show it."""
    where = log_path or (record.log_path if record is not None else None)
    unique = list(dict.fromkeys(line for line in quoted if line.strip()))
    lines = "".join(f"\n    | {line[:300]}" for line in unique[:15])
    return f"{reason}. Log: {where}" + (f"; relevant lines:{lines}" if lines else "")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
