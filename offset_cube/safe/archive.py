"""Uniform access to the members of a SAFE product, zipped or unpacked.

Real zips vary: most hold ``<id>.SAFE/...``, some add a folder level (``safe/<id>.SAFE/...``), some carry
``__MACOSX/`` junk. Members are addressed by their path *inside* the ``.SAFE`` folder, e.g.
``manifest.safe`` or ``annotation/s1a-iw1-slc-vv-....xml``.
"""

from __future__ import annotations

import fnmatch
import zipfile
from pathlib import Path
from types import TracebackType

from offset_cube.errors import SafeError


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
