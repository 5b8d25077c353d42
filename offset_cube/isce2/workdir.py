"""A pair folder between topsApp attempts: resume after the last completed step when the inputs are unchanged,
otherwise start clean; the state file remembers the inputs' fingerprint and earlier attempts' notable lines."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offset_cube.atomic import write_text_atomic
from offset_cube.isce2.discovery import IsceInstallation
from offset_cube.isce2.topsapp import (
    FINAL_STEP,
    MAX_NOTABLE,
    PICKLE_DIR,
    STATE_FILE,
    TOPSAPP_STEPS,
    WORK_ENTRIES,
    RunRecord,
    TopsAppError,
)
from offset_cube.isce2.xml import REFERENCE_XML, SECONDARY_XML, TOPSAPP_XML
from offset_cube.result import RESULT_NAME


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


def clean_workdir(pair_dir: Path, keep_result: bool = False, keep: Iterable[str] = ()) -> None:
    """Remove topsApp's working files (and our state and result) but keep the XML inputs, the log and ``keep``."""
    kept = set(keep)
    names = [*WORK_ENTRIES, STATE_FILE] + ([] if keep_result else [RESULT_NAME])
    for name in names:
        if name not in kept:
            remove_path(pair_dir / name)


def remove_path(path: Path) -> None:
    """Delete a file, link or folder tree if it exists."""
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
    notable = [*state.get("notable", []), *record.notable][-MAX_NOTABLE:]
    state["notable"] = notable
    write_state(pair_dir, state)
    return notable


def forget_progress(pair_dir: Path) -> None:
    """Make the next attempt start from a clean folder (after a failure a resume would only repeat)."""
    (pair_dir / STATE_FILE).unlink(missing_ok=True)
