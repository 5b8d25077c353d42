"""An IW SLC product on disk (zip or ``.SAFE`` folder): manifest, per-swath annotations, measurement windows.

Only the lines and samples asked for are read from a measurement TIFF (GDAL through ``/vsizip/`` for zips), so a
1 GB swath file costs what the area needs. Every error names the product file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from offset_cube.errors import SafeError
from offset_cube.safe.annotation import SwathAnnotation, parse_annotation
from offset_cube.safe.archive import SafeArchive
from offset_cube.safe.manifest import ManifestInfo, read_manifest

#: Annotation/measurement member names: ``s1a-iw2-slc-vv-<start>-<stop>-<orbit>-<datatake>-<image>``.
SWATH_FILE_RE = re.compile(
    r"^(?P<mission>s1[a-d])-(?P<swath>(?:iw|ew|s)[1-6])-(?P<type>slc|grd)-(?P<pol>hh|hv|vh|vv)-.*-(?P<image>\d{3})$"
)


@dataclass(frozen=True)
class SwathFile:
    """The annotation and measurement members of one swath × polarisation."""

    swath: str
    polarisation: str
    annotation: str
    measurement: str


class SafeProduct:
    """An IW SLC product; use as a context manager. Raises :class:`SafeError` naming the file for anything else."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.archive = SafeArchive(self.path)
        try:
            self.manifest: ManifestInfo = read_manifest(self.archive)
            if self.manifest.mode != "IW" or self.manifest.product_type != "SLC":
                raise SafeError(
                    f"{self.path} is a {self.manifest.mode} {self.manifest.product_type} product; the built-in "
                    "engine reads Sentinel-1 IW SLC products only"
                )
            self.files = self._swath_files()
        except BaseException:
            self.archive.close()
            raise
        self._annotations: dict[tuple[str, str], SwathAnnotation] = {}

    def __enter__(self) -> SafeProduct:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.archive.close()

    @property
    def product_id(self) -> str:
        return self.path.name.removesuffix(".zip").removesuffix(".SAFE")

    @property
    def polarisations(self) -> list[str]:
        return sorted({f.polarisation for f in self.files})

    def swaths(self, polarisation: str) -> list[str]:
        """IW swaths with an annotation for ``polarisation`` (e.g. ``["IW1", "IW2"]``)."""
        return sorted(f.swath for f in self.files if f.polarisation == polarisation.upper())

    def swath_file(self, swath: str, polarisation: str) -> SwathFile:
        for f in self.files:
            if f.swath == swath.upper() and f.polarisation == polarisation.upper():
                return f
        held = ", ".join(f"{f.swath}/{f.polarisation}" for f in self.files) or "none"
        raise SafeError(f"{self.path} holds no {swath.upper()} {polarisation.upper()} annotation (it holds: {held})")

    def require_polarisation(self, polarisation: str) -> None:
        if polarisation.upper() not in self.polarisations:
            raise SafeError(
                f"{self.path} has no {polarisation.upper()} data; it holds {', '.join(self.polarisations) or 'none'}"
            )

    def annotation(self, swath: str, polarisation: str) -> SwathAnnotation:
        key = (swath.upper(), polarisation.upper())
        if key not in self._annotations:
            member = self.swath_file(*key).annotation
            self._annotations[key] = parse_annotation(self.archive.read(member), source=f"{self.path}:{member}")
        return self._annotations[key]

    def read_window(self, swath: str, polarisation: str, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of the swath's measurement TIFF as complex64."""
        member = self.swath_file(swath, polarisation).measurement
        if member not in self.archive.members:
            raise SafeError(f"{self.path} lacks the measurement file {member}")
        if self.archive.member_size(member) == 0:
            raise SafeError(f"{self.path}: measurement file {member} is empty (0 bytes); the product is incomplete")
        return read_tiff_window(self.archive.location(member), rows, cols, where=f"{self.path}:{member}")

    def _swath_files(self) -> list[SwathFile]:
        files = []
        for member in self.archive.glob("annotation/*.xml"):
            stem = member.rsplit("/", 1)[-1].removesuffix(".xml")
            match = SWATH_FILE_RE.match(stem)
            if match is None:
                continue
            files.append(
                SwathFile(
                    swath=match["swath"].upper(),
                    polarisation=match["pol"].upper(),
                    annotation=member,
                    measurement=f"measurement/{stem}.tiff",
                )
            )
        if not files:
            raise SafeError(f"{self.path} holds no swath annotation files (annotation/s1?-iw?-slc-*.xml)")
        return files


def read_tiff_window(location: str, rows: tuple[int, int], cols: tuple[int, int], where: str) -> np.ndarray:
    """A window of a complex int16 TIFF as complex64; only the blocks it touches are read."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.windows import Window

    (r0, r1), (c0, c1) = rows, cols
    try:
        with warnings.catch_warnings():
            # S1 measurement TIFFs carry GCPs or nothing, never a geotransform: that is expected here.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(location) as ds:
                if not (0 <= r0 < r1 <= ds.height and 0 <= c0 < c1 <= ds.width):
                    raise SafeError(
                        f"{where}: window rows {r0}:{r1}, columns {c0}:{c1} is outside the {ds.height}x{ds.width} image"
                    )
                data = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    except RasterioIOError as err:
        raise SafeError(f"{where}: measurement TIFF cannot be read ({err})") from err
    if not np.iscomplexobj(data):
        raise SafeError(f"{where}: measurement TIFF is {data.dtype}, expected complex int16")
    return np.asarray(data, dtype=np.complex64)
