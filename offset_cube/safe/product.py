"""An IW SLC product on disk (zip or ``.SAFE`` folder): manifest, per-swath annotations, measurement windows.

Only the lines and samples asked for are read from a measurement TIFF (GDAL through ``/vsizip/`` for zips), so a
1 GB swath file costs what the area needs. Each measurement TIFF is opened once per product and stays open until
the product is closed: GDAL decompresses a zipped member as a stream, and a fresh open starts that stream again
(a 1 500 x 10 456 burst window cost 0.95-1.61 s per open from a zip against 0.06 s unpacked), while an open handle
continues from where it stopped and seeks back from the snapshots it keeps (GDAL ``cpl_vsil_gzip.cpp``). Every
error names the product file.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from offset_cube.errors import SafeError
from offset_cube.quiet import open_raster
from offset_cube.safe.annotation import SwathAnnotation, parse_annotation
from offset_cube.safe.archive import SafeArchive
from offset_cube.safe.manifest import ManifestInfo, read_manifest

#: Annotation/measurement member names: ``s1a-iw2-slc-vv-<start>-<stop>-<orbit>-<datatake>-<image>``.
SWATH_FILE_RE = re.compile(
    r"^(?P<mission>s1[a-d])-(?P<swath>(?:iw|ew|s)[1-6])-(?P<type>slc|grd)-(?P<pol>hh|hv|vh|vv)-.*-(?P<image>\d{3})$"
)


#: GDAL's block cache while measurement TIFFs are read: enough for the tiles that consecutive azimuth blocks of
#: two dates share (~10 MB per tile row of a 20 000-sample window), not the whole area.
GDAL_BLOCK_CACHE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class SwathFile:
    """The annotation and measurement members of one swath × polarisation."""

    swath: str
    polarisation: str
    annotation: str
    measurement: str


class SafeProduct:
    """An IW SLC product; use as a context manager. Raises :class:`SafeError` naming the file for anything else."""

    def __init__(self, path: Path | str, unpack_dir: Path | None = None) -> None:
        """``unpack_dir``: where a zip's measurement TIFFs are unpacked on first read (:meth:`SafeArchive.unpacked`);
        None reads them from the zip."""
        self.path = Path(path)
        self.unpack_dir = unpack_dir
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
        self._measurements: dict[str, Any] = {}  # member -> open rasterio dataset
        self._read_lock = threading.Lock()  # a GDAL dataset is not to be read by two threads at once

    def __enter__(self) -> SafeProduct:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._read_lock:
            for dataset in self._measurements.values():
                dataset.close()
            self._measurements.clear()
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
        where = f"{self.path}:{member}"
        with self._read_lock:
            if member not in self._measurements:
                location = (
                    self.archive.location(member)
                    if self.unpack_dir is None
                    else self.archive.unpacked(member, self.unpack_dir)
                )
                self._measurements[member] = open_tiff(location, where)
            return read_tiff_window(self._measurements[member], rows, cols, where=where)

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


def open_tiff(location: str, where: str) -> Any:
    """An open rasterio dataset of a measurement TIFF (the caller closes it)."""
    from rasterio.errors import RasterioIOError

    cap_gdal_block_cache()
    try:
        return open_raster(location)
    except RasterioIOError as err:
        raise SafeError(f"{where}: measurement TIFF cannot be read ({err})") from err


def cap_gdal_block_cache() -> None:
    """Lower GDAL's process-wide block cache to :data:`GDAL_BLOCK_CACHE_BYTES` when it is larger.

    GDAL keeps every block it reads in a cache of 5 % of the machine's memory by default. The engine reads each
    measurement window once (it keeps its own blocks, :mod:`offset_cube.builtin.streaming`), so that cache only
    made memory grow with the area: a 64 km pair peaked at 1.75 GB with it, 0.88 GB without, and 5 % of a large
    machine's memory. A smaller cap set by the user (``GDAL_CACHEMAX``) is kept.
    """
    from rasterio.env import get_gdal_config, set_gdal_config

    if int(get_gdal_config("GDAL_CACHEMAX")) > GDAL_BLOCK_CACHE_BYTES:
        set_gdal_config("GDAL_CACHEMAX", GDAL_BLOCK_CACHE_BYTES)


def read_tiff_window(dataset: Any, rows: tuple[int, int], cols: tuple[int, int], where: str) -> np.ndarray:
    """A window of an open complex int16 TIFF as complex64; only the blocks it touches are read."""
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    (r0, r1), (c0, c1) = rows, cols
    if not (0 <= r0 < r1 <= dataset.height and 0 <= c0 < c1 <= dataset.width):
        raise SafeError(
            f"{where}: window rows {r0}:{r1}, columns {c0}:{c1} is outside the {dataset.height}x{dataset.width} image"
        )
    try:
        data = dataset.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    except RasterioIOError as err:
        raise SafeError(f"{where}: measurement TIFF cannot be read ({err})") from err
    if not np.iscomplexobj(data):
        raise SafeError(f"{where}: measurement TIFF is {data.dtype}, expected complex int16")
    return np.asarray(data, dtype=np.complex64)
