"""Disk space a folder takes, for run summaries (pair folders can hold gigabytes of topsApp working files)."""

from __future__ import annotations

import os
from pathlib import Path


def tree_bytes(path: Path) -> int:
    """Bytes allocated on disk to ``path`` and everything under it (sparse files count what they use; links
    are not followed); 0 when it does not exist."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    total = info.st_blocks * 512
    if path.is_dir() and not path.is_symlink():
        with os.scandir(path) as entries:
            for entry in entries:
                total += tree_bytes(Path(entry.path))
    return total


def human_bytes(count: float) -> str:
    """``1.2 GB`` style (powers of 1000, as `du --si`)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")
