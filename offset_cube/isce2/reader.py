"""Read topsApp's dense offsets (``merged/*.bil[.geo]``) and build the common per-pair result.

Formats (ISCE2 ``runDenseOffsets.py``, verified on ISCE's own rasters in the test data): float32 little-endian;
``dense_offsets.bil`` is 2-band BIL with **band 1 = azimuth (down), band 2 = range (across)**, in pixels,
secondary − reference; the GPU path writes ``dense_offsets.bip`` (BIP, same band order). SNR is one band;
covariance is 3 bands, CPU order (range variance, azimuth variance, cross) and GPU order (azimuth variance,
range variance, cross). No-data: -10000 offsets / 0 SNR / 999 covariance for failed windows, and 0.0 in every
band outside the swath or DEM in geocoded files, where only SNR > 0 tells data from fill.

Half-pixel choice for the geocoded grid (ISCE2 ``zerodop/geozero/Geozero.py``, ``Image.py::renderVRT``):
``coordinate1/2.startingValue`` is read as the position of the **first sample's centre**, which is what geozero
computes: output sample (i, j) is the radar position of the point at ``(lat0 + i·dlat, lon0 + j·dlon)`` on the
geocode DEM's nodes. GDAL instead reads that value as the outer corner (the ``.geo.vrt`` carries it unchanged), half
a DEM sample off. Whether the DEM's own header meant centre or corner only changes which height was used at a node
(≤ ½ sample), not where the sample is, so the centre reading is the exact one for the offsets. DEMs converted by
offset-cube carry centres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from offset_cube.errors import EngineError
from offset_cube.isce_raster import COV_NODATA, OFFSET_NODATA, IsceHeader, read_band, read_isce_header

OFFSETS = "dense_offsets.bil"
OFFSETS_GPU = "dense_offsets.bip"
SNR = "dense_offsets_snr.bil"
COVARIANCE = "dense_offsets_cov.bil"
FILTERED = "filt_dense_offsets.bil"
GEO = ".geo"
GEOMETRY_VARIABLES = ("incidence_angle", "heading", "azimuth_spacing", "range_spacing")
#: The look geometry at latitude/longitude arrays: the arrays named in GEOMETRY_VARIABLES, shaped alike.
GeometryAt = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class OffsetFiles:
    """The rasters one result is read from (data file paths; each has its ``.xml`` beside it)."""

    offsets: Path
    snr: Path
    covariance: Path | None
    gpu: bool  # PyCuAmpcor output: covariance band order differs
    filtered: bool  # filt_dense_offsets (SNR-masked, median-filtered by topsApp's filteroffsets)


@dataclass(frozen=True)
class OffsetBands:
    """Offsets, SNR and covariance as float32 arrays with NaN where ISCE marked no data."""

    azimuth: np.ndarray
    range: np.ndarray
    snr: np.ndarray
    cov_az: np.ndarray | None
    cov_rg: np.ndarray | None
    cov_azrg: np.ndarray | None

    @property
    def valid(self) -> np.ndarray:
        valid: np.ndarray = np.isfinite(self.azimuth) & np.isfinite(self.range)
        return valid


def offset_files(merged: Path, *, filtered: bool = False, geocoded: bool = True) -> OffsetFiles:
    """Locate the offset, SNR and covariance rasters in a ``merged/`` folder (CPU ``.bil`` first, then GPU ``.bip``)."""
    suffix = GEO if geocoded else ""

    def present(name: str) -> Path | None:
        path = merged / (name + suffix)
        return path if path.is_file() and path.with_name(path.name + ".xml").is_file() else None

    raw = present(OFFSETS)
    gpu = raw is None and present(OFFSETS_GPU) is not None
    offsets = present(FILTERED) if filtered else (raw or present(OFFSETS_GPU))
    snr = present(SNR)
    if offsets is None or snr is None:
        wanted = FILTERED if filtered else f"{OFFSETS} or {OFFSETS_GPU}"
        raise EngineError(
            f"{merged} lacks {wanted}{suffix} or {SNR}{suffix} (with their .xml); "
            "topsApp's geocodeoffsets step did not write them"
        )
    return OffsetFiles(offsets=offsets, snr=snr, covariance=present(COVARIANCE), gpu=gpu, filtered=filtered)


def read_offset_bands(files: OffsetFiles) -> OffsetBands:
    """Read and mask: -10000 offsets, SNR ≤ 0 (failed windows and the geocoded 0 fill), covariance 999."""
    headers = [read_isce_header(files.offsets), read_isce_header(files.snr)]
    if files.covariance is not None:
        headers.append(read_isce_header(files.covariance))
    _same_grid(headers)
    azimuth = np.array(read_band(files.offsets, 1), dtype=np.float32)
    rng = np.array(read_band(files.offsets, 2), dtype=np.float32)
    snr = np.array(read_band(files.snr, 1), dtype=np.float32)
    invalid = (azimuth == OFFSET_NODATA) | (rng == OFFSET_NODATA) | ~(snr > 0)
    invalid |= ~np.isfinite(azimuth) | ~np.isfinite(rng)
    for band in (azimuth, rng, snr):
        band[invalid] = np.nan
    cov: list[np.ndarray | None] = [None, None, None]
    if files.covariance is not None:
        # CPU (ampcor r_cov): range variance, azimuth variance, cross; GPU (PyCuAmpcor): azimuth first.
        order = (1, 2, 3) if files.gpu else (2, 1, 3)
        for slot, band_index in enumerate(order):
            values = np.array(read_band(files.covariance, band_index), dtype=np.float32)
            values[invalid | (values == COV_NODATA)] = np.nan
            cov[slot] = values
    return OffsetBands(azimuth=azimuth, range=rng, snr=snr, cov_az=cov[0], cov_rg=cov[1], cov_azrg=cov[2])


def geographic_grid(header: IsceHeader) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes of the rows and longitudes of the columns of a ``.geo`` raster (sample centres, see above)."""
    if header.y_delta >= 0 or header.x_delta <= 0:
        raise EngineError(
            f"{header.path}: coordinate deltas ({header.x_delta}, {header.y_delta}) are not a north-up "
            "geographic grid (longitude delta > 0, latitude delta < 0)"
        )
    lat = header.y_start + header.y_delta * np.arange(header.length)
    lon = header.x_start + header.x_delta * np.arange(header.width)
    if lat.min() < -90 or lat.max() > 90:
        raise EngineError(f"{header.path}: latitudes {lat.min():.3f}..{lat.max():.3f} are not on the Earth")
    return lat, lon


def geocoded_dataset(files: OffsetFiles, geometry: GeometryAt, attrs: dict[str, object]) -> xr.Dataset:
    """The per-pair result (``grid="geographic"``) from geocoded rasters and the reference look geometry."""
    bands = read_offset_bands(files)
    lat1d, lon1d = geographic_grid(read_isce_header(files.offsets))
    lon2d, lat2d = np.meshgrid(lon1d, lat1d)
    dims = ("line", "sample")
    variables: dict[str, tuple[tuple[str, str], np.ndarray]] = {
        "azimuth_offset": (dims, bands.azimuth),
        "range_offset": (dims, bands.range),
        "snr": (dims, bands.snr),
        "latitude": (dims, lat2d),
        "longitude": (dims, lon2d),
    }
    looks = geometry(lat2d, lon2d)
    for name in GEOMETRY_VARIABLES:
        variables[name] = (dims, np.asarray(looks[name], dtype=np.float32))
    for name in ("slope_east", "slope_north"):  # the terrain's slope, when the job has a DEM
        if name in looks:
            variables[name] = (dims, np.asarray(looks[name], dtype=np.float32))
    for name, cov in (("cov_az", bands.cov_az), ("cov_rg", bands.cov_rg), ("cov_azrg", bands.cov_azrg)):
        if cov is not None:
            variables[name] = (dims, cov)
    coords = {"line": np.arange(lat1d.size), "sample": np.arange(lon1d.size)}
    return xr.Dataset(variables, coords=coords, attrs={**attrs, "grid": "geographic"})


def _same_grid(headers: Sequence[IsceHeader]) -> None:
    first = headers[0]
    for other in headers[1:]:
        same = (other.width, other.length) == (first.width, first.length) and np.allclose(
            (other.x_start, other.x_delta, other.y_start, other.y_delta),
            (first.x_start, first.x_delta, first.y_start, first.y_delta),
        )
        if not same:
            raise EngineError(
                f"{other.path} ({other.length}x{other.width}) is not on the grid of {first.path} "
                f"({first.length}x{first.width}); both come from one topsApp run and must match"
            )
