"""Small Zarr helpers shared by products and the cube: consolidated v3 writes, UTC times, string arrays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from offset_cube.quiet import quiet_warnings

#: Times are stored as int64 microseconds (exact: the µs uniqueness step of ``mid_date`` survives a round trip;
#: float "days since" as ITS_LIVE uses would blur it). CF readers decode any units.
TIME_UNITS = "microseconds since 1970-01-01T00:00:00"
TIME_ENCODING: dict[str, Any] = {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}


def consolidate(path: Path) -> None:
    """Write consolidated metadata so plain ``xarray.open_zarr(path)`` opens the store quickly and silently.

    zarr-python warns that consolidated metadata is not yet part of the v3 spec; it is what xarray reads by
    default (without it, ``open_zarr`` warns on every open), so the warning is expected here.
    """
    with quiet_warnings(UserWarning, message="Consolidated metadata is currently not part"):
        zarr.consolidate_metadata(str(path), zarr_format=3)


def write_dataset(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``ds`` as a new Zarr v3 store at ``path`` (which must not exist) with consolidated metadata."""
    ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=False, encoding=encoding or {})
    consolidate(path)


def open_dataset(path: Path) -> xr.Dataset:
    """Open a store written by :func:`write_dataset` lazily, resolving links first (a fixed snapshot)."""
    ds: xr.Dataset = xr.open_zarr(Path(path).resolve(), consolidated=True, chunks=None)
    return ds


def parse_utc(text: str) -> np.datetime64:
    """ISO-8601 time (``Z``/offset or naive UTC) → ``datetime64[us]`` in UTC."""
    try:
        value = dt.datetime.fromisoformat(str(text).strip())
    except ValueError as err:
        raise ValueError(f"{text!r} is not an ISO-8601 time (e.g. 2018-08-07T03:12:45.123456Z)") from err
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return np.datetime64(value, "us")


def iso_utc(value: np.datetime64) -> str:
    """``datetime64`` → ISO text with ``Z`` (microseconds)."""
    return str(np.datetime_as_string(np.asarray(value).astype("datetime64[us]"), unit="us")) + "Z"


def text_array(values: list[str]) -> np.ndarray[Any, np.dtype[np.object_]]:
    """Variable-length strings (object dtype): the Zarr v3 string type, unlike fixed-width ``<U``."""
    return np.array([str(v) for v in values], dtype=object)
