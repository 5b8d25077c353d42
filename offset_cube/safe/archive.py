"""Uniform access to the members of a SAFE product, zipped or unpacked.

Real zips vary: most hold ``<id>.SAFE/...``, some add a folder level (``safe/<id>.SAFE/...``), some carry
``__MACOSX/`` junk. Members are addressed by their path *inside* the ``.SAFE`` folder, e.g.
``manifest.safe`` or ``annotation/s1a-iw1-slc-vv-....xml``.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import zipfile
import zlib
from pathlib import Path
from types import TracebackType

from offset_cube.atomic import file_lock, read_json, write_text_atomic
from offset_cube.errors import SafeError

#: Bytes copied at a time when a member is unpacked.
UNPACK_CHUNK_BYTES = 16 * 2**20
#: The folder of the scene cache that holds unpacked members, one subfolder per product (:func:`unpack_folder`).
UNPACKED_DIR_NAME = "unpacked"


def unpack_folder(unpack_root: Path, product: Path) -> Path:
    """Where the members of the zipped ``product`` are unpacked: ``unpack_root/<product name without .zip>``."""
    return unpack_root / Path(product).name.removesuffix(".zip")


class SafeArchive:
    """A SAFE product on disk: a ``.zip`` or a ``.SAFE`` folder. Use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.path.is_dir():
            root = self.path
            self._members = {p.relative_to(root).as_posix(): str(p) for p in sorted(root.rglob("*")) if p.is_file()}
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise SafeError(f"{self.path} is not a readable zip file ({err})") from err
            self._members = _index_zip(self._zip)
        else:
            raise SafeError(f"SAFE product {self.path} does not exist")
        if "manifest.safe" not in self._members:
            raise SafeError(f"{self.path} holds no manifest.safe; it is not a SAFE product")

    def __enter__(self) -> SafeArchive:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    @property
    def members(self) -> list[str]:
        """Member paths relative to the .SAFE folder."""
        return sorted(self._members)

    def glob(self, pattern: str) -> list[str]:
        return [m for m in self.members if fnmatch.fnmatch(m, pattern)]

    def read(self, member: str) -> bytes:
        try:
            location = self._members[member]
        except KeyError:
            raise SafeError(f"{self.path} has no member {member!r}") from None
        if self._zip is not None:
            return self._zip.read(location)
        return Path(location).read_bytes()

    def member_size(self, member: str) -> int:
        location = self._members[member]
        if self._zip is not None:
            return self._zip.getinfo(location).file_size
        return Path(location).stat().st_size

    def location(self, member: str) -> str:
        """A path GDAL can open: ``/vsizip/<zip>/<name>`` for zips, the plain path for folders."""
        location = self._members[member]
        if self._zip is not None:
            return f"/vsizip/{self.path.absolute()}/{location}"
        return location

    def unpacked(self, member: str, folder: Path) -> str:
        """``member`` as a plain file GDAL can open: for a folder product the file itself; for a zip, the member
        unpacked to ``folder/<member>`` on first use and the same copy on every later use, by any process.

        A zipped member is one deflate stream: every reader inflates it again from its start, so a scene in k pairs
        was inflated k times. The copy is written to ``.part`` and renamed under a lock (two pairs opening the scene
        at once unpack it once); zipfile checks the member's CRC-32 when it reads its end; a stamp beside the copy
        (the zip's size and modification time, the member's CRC-32 and size) makes a copy from an older or
        replaced zip count as missing.
        """
        location = self._members[member]
        if self._zip is None:
            return location
        info = self._zip.getinfo(location)
        target = folder / member
        stamp_path = target.with_name(target.name + ".stamp.json")
        zip_stat = self.path.stat()
        stamp = {
            "zip_bytes": zip_stat.st_size,
            "zip_mtime_ns": zip_stat.st_mtime_ns,
            "crc32": info.CRC,
            "bytes": info.file_size,
        }
        with file_lock(target.with_name(target.name + ".lock")):
            if target.is_file() and target.stat().st_size == info.file_size and read_json(stamp_path) == stamp:
                return str(target)
            part = target.with_name(target.name + ".part")
            try:
                with self._zip.open(location) as source, part.open("wb") as sink:
                    shutil.copyfileobj(source, sink, UNPACK_CHUNK_BYTES)
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
                part.unlink(missing_ok=True)
                raise SafeError(f"{self.path}: {member} cannot be unpacked to {folder} ({err})") from err
            part.replace(target)
            write_text_atomic(stamp_path, json.dumps(stamp))
        return str(target)


def _index_zip(archive: zipfile.ZipFile) -> dict[str, str]:
    members: dict[str, str] = {}
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or name.startswith("__MACOSX/") or "/._" in name:
            continue
        parts = name.split("/")
        # Strip everything up to and including the "<id>.SAFE" folder, wherever it is.
        safe_level = next((i for i, part in enumerate(parts) if part.endswith(".SAFE")), None)
        if safe_level is None:
            continue
        members["/".join(parts[safe_level + 1 :])] = name
    return members
