"""topsApp.py as offset-cube sees it: its steps, the files it writes in a pair folder, the messages that matter
and the record of one run. A run is supervised by :mod:`.supervise`, judged by :mod:`.judge`, and its folder
resumed or cleaned by :mod:`.workdir`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from offset_cube.errors import EngineError

#: topsApp's steps in order (``applications/topsApp.py::_steps``).
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
#: What topsApp creates in its working folder (the folders of the ``TopsProc/run*.py`` steps, ISCE's logs);
#: removed for a clean start.
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
SWATH_RE = re.compile(r"Could not extract swath (\d)")
#: Messages of failures topsApp prints and then carries on from, or exits 0 after (``TopsProc/runPreprocessor.py``,
#: ``Sensor/TOPS/Sentinel1.py``, ``iscesys/Component/Application.py``; ISCE2 issue #268).
SILENT_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (SWATH_RE, "a swath could not be extracted (wrong polarisation, missing orbit, bad SAFE path or ROI)"),
    (re.compile(r"No suitable orbit file found"), "no orbit file matched the acquisition"),
    (re.compile(r"Something went wrong in determining bboxes"), "no burst geometry (usually a swath not extracted)"),
    (re.compile(r"There is no imagery to extract"), "no burst overlaps the region of interest"),
    (re.compile(r"is not one of the named steps"), "an unknown step name was passed"),
    (re.compile(r"^Cannot open .*PICKLE"), "a saved step (PICKLE) could not be loaded"),
    (re.compile(r"The attribute corresponding to the key .* is not present"), "an unknown property in the XML"),
)
_NOTABLE_RE = re.compile(r"error|warning|exception|traceback|could not|cannot|failed", re.IGNORECASE)
#: Most notable lines kept per run and in the pair's state.
MAX_NOTABLE = 200

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


class RunEnding(StrEnum):
    """How a supervised topsApp run ended."""

    EXITED = "exited"  # the process exited by itself; its outputs decide whether it succeeded
    DEADLINE = "deadline"  # it ran past its deadline and its process group was killed
    STOPPED = "stopped"  # it was stopped on request (the run is being cancelled) and its group was killed
    ERROR = "error"  # supervising it failed (a callback raised, an interrupt); its group was killed


def is_notable(line: str) -> bool:
    """Lines worth showing at INFO level: step changes, warnings, errors, known failure messages."""
    return bool(_STEP_RE.match(line) or _NOTABLE_RE.search(line) or any(p.search(line) for p, _ in SILENT_FAILURES))


def step_of(line: str) -> str | None:
    """The step a ``Running step <name>`` line announces."""
    match = _STEP_RE.match(line)
    return match.group(1) if match and match.group(1) in TOPSAPP_STEPS else None


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
