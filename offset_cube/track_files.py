"""Files of the stand-alone tracker (``offset-cube track``): lazy input images and the two output formats.

Inputs are opened without reading their pixels: ISCE rasters (the raw file, its ``.xml`` or its ``.vrt``) and
``.npy`` files as memory maps, GeoTIFF (or anything else GDAL reads) through rasterio window reads. Outputs are
the tracker's Dataset as Zarr and, optionally, ISCE2's three dense-offset rasters in DenseAmpcor's layout, so
that the result can stand in for topsApp's dense-offset step (ISCE2 ``components/isceobj/TopsProc/
runDenseOffsets.py``, ``contrib/PyCuAmpcor``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from offset_cube.atomic import atomic_path
from offset_cube.errors import TrackingError
from offset_cube.isce_raster import COV_NODATA, OFFSET_NODATA, SNR_NODATA, read_band, write_isce_raster
from offset_cube.quiet import open_raster
from offset_cube.tracking.tracker import ArrayLike2D

#: DenseAmpcor's output names (topsApp's ``dense_offsets`` prefix) under the ``--isce-format`` folder.
ISCE_OFFSETS = "dense_offsets.bil"
ISCE_SNR = "dense_offsets_snr.bil"
ISCE_COV = "dense_offsets_cov.bil"


class RasterioImage:
    """Band 1 of a GDAL raster as a lazy 2-D array: ``image[r0:r1, c0:c1]`` reads only that window."""

    def __init__(self, path: Path) -> None:
        from rasterio.errors import RasterioIOError

        try:
            self._dataset = open_raster(path)
        except RasterioIOError as err:
            raise TrackingError(f"cannot open {path} as a raster image: {err}") from err
        self.path = path
        self._lock = threading.Lock()  # a GDAL dataset handle must not be read from two threads at once
        self.shape = (self._dataset.height, self._dataset.width)
        declared = self._dataset.dtypes[0]
        # GDAL's CInt16 (Sentinel-1 SLC measurement TIFFs) has no numpy equivalent: read it as complex64.
        self.dtype = np.dtype(np.complex64) if declared == "complex_int16" else np.dtype(declared)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        from rasterio.windows import Window

        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        window = Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))
        with self._lock:
            return np.asarray(self._dataset.read(1, window=window, out_dtype=self.dtype))

    def close(self) -> None:
        self._dataset.close()


def open_image(path: Path | str) -> ArrayLike2D:
    """A lazily read 2-D image: ISCE raster (raw file, ``.xml`` or ISCE ``.vrt``), ``.npy`` or GeoTIFF."""
    path = Path(path)
    isce_data = _isce_data_file(path)
    if isce_data is not None:
        return read_band(isce_data)
    if not path.exists():
        raise TrackingError(f"input image {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise TrackingError(f"{path} is not a readable .npy array: {err}") from err
        if array.ndim != 2:
            raise TrackingError(f"{path} holds a {array.ndim}-D array; the tracker needs a 2-D image")
        return array
    return RasterioImage(path)


def _isce_data_file(path: Path) -> Path | None:
    """The raw data file if ``path`` names an ISCE raster (it, its ``.xml`` or its ``.vrt`` beside an ``.xml``)."""
    if path.suffix in (".xml", ".vrt"):
        data = path.with_suffix("")
        return data if data.with_name(data.name + ".xml").is_file() else None
    return path if path.with_name(path.name + ".xml").is_file() else None


def write_offsets_zarr(ds: xr.Dataset, path: Path | str) -> Path:
    """Write the tracker's Dataset as a Zarr v3 store, atomically (readers never see a partial store)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return target


def write_isce_offsets(ds: xr.Dataset, folder: Path | str) -> list[Path]:
    """Write ``dense_offsets.bil`` (down, across), ``_snr.bil`` and ``_cov.bil`` (across var, down var, cross).

    Invalid windows get DenseAmpcor's no-data values in all three files: offsets -10000, SNR 0, covariance 999;
    so does a covariance ampcor could not compute.
    """
    out = Path(folder)
    valid = np.isfinite(ds.azimuth_offset.values) & np.isfinite(ds.range_offset.values)

    def band(name: str, nodata: float) -> np.ndarray:
        values = ds[name].values.astype(np.float32)
        return np.where(valid & np.isfinite(values), values, np.float32(nodata)).astype(np.float32)

    offsets = [band("azimuth_offset", OFFSET_NODATA), band("range_offset", OFFSET_NODATA)]
    covariance = [band(name, COV_NODATA) for name in ("cov_rg", "cov_az", "cov_azrg")]
    return [
        write_isce_raster(out / ISCE_OFFSETS, offsets, data_type="float", scheme="BIL"),
        write_isce_raster(out / ISCE_SNR, [band("snr", SNR_NODATA)], data_type="float", scheme="BIP"),
        write_isce_raster(out / ISCE_COV, covariance, data_type="float", scheme="BIL"),
    ]


def close_image(image: Any) -> None:
    """Release an image from :func:`open_image` (a no-op for memory maps)."""
    close = getattr(image, "close", None)
    if callable(close):
        close()
