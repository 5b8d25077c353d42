"""Write files and folders so that readers only ever see them whole.

Everything is written under a temporary name in the destination's own folder (same file system) and renamed
into place when complete. An interrupted write leaves only a ``.tmp-*`` entry, which later writes ignore and
:func:`remove_stale_temporaries` deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: Path | str, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path`` (file or folder).

    With ``replace=False`` an existing ``path`` is an error (:class:`FileExistsError`). On any exception the
    temporary is deleted and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {target}")
        _fsync_tree(tmp)
        if target.exists():
            if not replace:
                raise FileExistsError(f"{target} already exists")
            old = _temporary_sibling(target)
            target.rename(old)
            tmp.rename(target)
            _remove(old)
        else:
            tmp.rename(target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            _remove(tmp)


def read_json(path: Path | str) -> object:
    """The JSON a stamp or sidecar holds, or None when it is missing or unreadable (so a cached file without a
    valid stamp counts as missing and is made again)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: Path | str, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def fsync_file(path: Path | str) -> None:
    """Flush a file (or every file under a folder) to disk, as :func:`atomic_path` does before its rename."""
    _fsync_tree(Path(path))


@contextlib.contextmanager
def file_lock(path: Path | str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) across threads and processes, held while the block
    runs; ``flock(2)``, so the OS releases it when the holder dies, however it dies. ``on_wait`` is called
    once before waiting when another holds it."""
    lock = Path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def private_folder(path: Path | str) -> Path:
    """``path``, created if missing, readable by its owner only (0700): for Prefect's state and results,
    which hold task parameters and exceptions that no other user of the machine should read."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def folder_problem(folder: Path | str) -> str | None:
    """Why ``folder`` cannot hold outputs (a file in its place, or not writable), or None; writes nothing.

    The nearest existing ancestor decides for a folder still to be created. ``os.access`` reports read-only
    mounts as well as permissions (it answers for the real user id: root passes any permission bits).
    """
    path = Path(folder)
    while not path.exists():
        if path.is_symlink():
            return f"{path} is a broken symbolic link"
        if path.parent == path:
            return "no part of it exists"
        path = path.parent
    if not path.is_dir():
        return f"{path} is a file, not a folder" if path != Path(folder) else "it is a file, not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        where = "it" if path == Path(folder) else f"{path}, where it would be created,"
        return f"{where} is not writable (read-only file system or no permission)"
    return None


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Delete leftovers of interrupted atomic writes in ``folder`` (not recursive); return what was removed."""
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            _remove(entry)
            removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
