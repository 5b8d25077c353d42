"""Judge a topsApp run by what it wrote, not by its exit status: the expected outputs must exist and none of the
known silent-failure messages may appear in its log (topsApp carries on from, or exits 0 after, several)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from offset_cube.isce2.topsapp import LOG_FILE, SILENT_FAILURES, SWATH_RE, RunRecord, TopsAppError


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
        if pattern is SWATH_RE:
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
    match = SWATH_RE.search(line)
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
