"""Durability of a cube version: flushed to disk before it is published, chunks shared by hard links, and fault
injection for the crash tests.

**Fault injection.** With ``OFFSET_CUBE_CRASH_AT`` set to one of :data:`CRASH_POINTS`, the writer SIGKILLs itself
at that point; the crash-safety tests use it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
from pathlib import Path

CRASH_ENV = "OFFSET_CUBE_CRASH_AT"
CRASH_POINTS = ("after-lock", "before-data", "during-data", "before-metadata", "before-swap", "after-swap")


def checkpoint(name: str) -> None:
    """Fault injection for the crash tests: SIGKILL this process when ``OFFSET_CUBE_CRASH_AT`` names ``name``."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def make_durable(root: Path) -> None:
    """Flush the new version to disk before it is published, so a power cut cannot publish a partial one.

    One ``syncfs(2)`` of the file system where the kernel offers it (Linux); otherwise an fsync of every file
    written here and of every folder (which makes the hard links durable). fsyncing each linked chunk file
    instead would cost a journal commit per chunk (its link count changed): O(cube) per insert.
    """
    if syncfs(root):
        return
    for path in root.rglob("*"):
        if path.is_dir() or path.stat().st_nlink == 1:
            fsync(path)
    fsync(root)


def syncfs(path: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``path``; False where it is not available."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return bool(call(fd) == 0)
    finally:
        os.close(fd)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_tree(source: Path, target: Path) -> None:
    """Hard-link every file under ``source`` into ``target`` (copy where the file system has no hard links)."""
    for path in source.rglob("*"):
        if not path.is_file():
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
