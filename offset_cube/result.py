"""The per-pair result that both engines produce and the product/cube stage consumes.

It is an :class:`xarray.Dataset` on the engine's offset grid with dims ``(line, sample)``, stored as Zarr at
``<pair folder>/offsets.zarr``. For the built-in engine the grid is the reference radar geometry (coords are
window-centre positions in reference pixels); for ISCE2 it is topsApp's geocoded lat/lon grid (coords are row
and column indices and ``attrs["grid"] == "geographic"``). Everything downstream uses the 2-D ``latitude`` and
``longitude`` variables, so both look alike.

Variables (float32 unless noted, NaN where invalid):

===================== ====== ==============================================================================
name                  units  meaning
===================== ====== ==============================================================================
azimuth_offset        pixel  **motion** offset along track, secondary − reference, + = flight direction;
                             the predicted geometric offset is already removed
range_offset          pixel  motion offset in slant range, + = away from the sensor
snr                   1      correlation peak signal-to-noise ratio (ampcor definition)
latitude, longitude   degree WGS84 position of the window centre (float64)
incidence_angle       degree local incidence from the ellipsoid normal at the target
heading               degree local along-track ground heading, clockwise from north, in (-180, 180]
azimuth_spacing       m      ground distance of one azimuth line at the target
range_spacing         m      slant-range pixel spacing
cov_az, cov_rg,       pixel² offset (co)variances (optional)
cov_azrg
slope_east,           1      terrain gradient ∂h/∂E, ∂h/∂N from the DEM (optional); when present the velocity
slope_north                  conversion takes the motion as surface-parallel (:mod:`offset_cube.cube.velocity`)
===================== ====== ==============================================================================

Attributes: the fields of :class:`offset_cube.conventions.PairRecord` (``pair_id``, ``track``, ``direction``,
``engine``, ``reference_time``/``secondary_time`` (ISO UTC), ``dt_days``, ``reference_granules``/
``secondary_granules`` (space-separated SAFE ids), ``orbit_type`` (POEORB, RESORB, or annotation; the worse of the
two dates), ``polarization``, ``processing_parameters`` (JSON text)) and ``grid`` ("radar" or "geographic").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from offset_cube.atomic import atomic_path
from offset_cube.conventions import OPTIONAL_RESULT_VARIABLES, RESULT_VARIABLES, PairRecord, required_attrs
from offset_cube.errors import EngineError

if TYPE_CHECKING:
    from offset_cube.planning import Pair

RESULT_NAME = "offsets.zarr"
DIMS = ("line", "sample")
REQUIRED_VARIABLES = RESULT_VARIABLES
OPTIONAL_VARIABLES = OPTIONAL_RESULT_VARIABLES
#: Attributes every pair result carries: the pair record's required fields and the layout of its grid.
REQUIRED_ATTRS = (*required_attrs(), "grid")
ORBIT_TYPES = ("POEORB", "RESORB", "annotation")


def validate_pair_result(ds: xr.Dataset, where: str = "pair result") -> xr.Dataset:
    """Check ``ds`` follows the schema above; return it with units filled in. Raises :class:`EngineError`."""
    missing = [v for v in REQUIRED_VARIABLES if v not in ds.data_vars]
    if missing:
        raise EngineError(f"{where} lacks variables {missing}; required: {sorted(REQUIRED_VARIABLES)}")
    for name in [*REQUIRED_VARIABLES, *(v for v in OPTIONAL_VARIABLES if v in ds)]:
        if ds[name].dims != DIMS:
            raise EngineError(f"{where}: variable {name} has dims {ds[name].dims}; expected {DIMS}")
    absent = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if absent:
        raise EngineError(f"{where} lacks attributes {absent}")
    if ds.attrs["orbit_type"] not in ORBIT_TYPES:
        raise EngineError(f"{where}: orbit_type {ds.attrs['orbit_type']!r} is not one of {ORBIT_TYPES}")
    if ds.attrs["grid"] not in ("radar", "geographic"):
        raise EngineError(f"{where}: grid {ds.attrs['grid']!r} is not 'radar' or 'geographic'")
    if not float(ds.attrs["dt_days"]) > 0:
        raise EngineError(f"{where}: dt_days must be positive, got {ds.attrs['dt_days']!r}")
    for name, units in {**REQUIRED_VARIABLES, **OPTIONAL_VARIABLES}.items():
        if name in ds:
            ds[name].attrs.setdefault("units", units)
    return ds


def pair_record(
    pair: Pair, *, engine: str, orbit_type: str, polarization: str, processing_parameters: Mapping[str, Any]
) -> PairRecord:
    """The record of ``pair`` processed by ``engine``: identity, times and granules from the plan's pair."""
    return PairRecord(
        pair_id=pair.pair_id,
        track=pair.track,
        direction=pair.direction.value,
        engine=engine,
        reference_time=pair.reference.start.isoformat(),
        secondary_time=pair.secondary.start.isoformat(),
        dt_days=pair.dt_days,
        reference_granules=tuple(pair.reference.product_ids),
        secondary_granules=tuple(pair.secondary.product_ids),
        orbit_type=orbit_type,
        polarization=polarization,
        processing_parameters=dict(processing_parameters),
    )


def result_attrs(record: PairRecord, *, grid: str) -> dict[str, Any]:
    """The attribute block of a pair result: ``record`` in attribute form (:meth:`PairRecord.to_attrs`, read back
    by :meth:`PairRecord.from_attrs`) and the ``grid`` layout. The one place result attributes are made."""
    return {**record.to_attrs(), "grid": grid}


def worse_orbit_type(*types: str) -> str:
    """The least precise of several orbit types (annotation < RESORB < POEORB)."""
    return max(types, key=ORBIT_TYPES.index)


def write_pair_result(ds: xr.Dataset, pair_dir: Path) -> Path:
    """Validate and write ``ds`` atomically to ``pair_dir/offsets.zarr``; return that path."""
    ds = validate_pair_result(ds, where=str(pair_dir))
    for name in ds.data_vars:
        if name not in ("latitude", "longitude") and ds[name].dtype == np.float64:
            ds[name] = ds[name].astype(np.float32)
    target = pair_dir / RESULT_NAME
    with atomic_path(target) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
    return target


def read_pair_result(path: Path) -> xr.Dataset:
    """Open and validate a pair result written by :func:`write_pair_result` (lazily)."""
    if not path.exists():
        raise EngineError(f"pair result {path} does not exist")
    ds = xr.open_zarr(path, consolidated=False)
    return validate_pair_result(ds, where=str(path))
