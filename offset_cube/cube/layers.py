"""The cube's 1-D layer variables (along ``mid_date``), generated from the pair record's fields and conventions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from offset_cube.conventions import PairRecord, RecordField, decode, encode
from offset_cube.cube.zarrio import TIME_ENCODING, iso_utc, parse_utc, text_array
from offset_cube.errors import CubeError


def layer_columns(records: Sequence[PairRecord], record_type: type[PairRecord]) -> dict[str, xr.Variable]:
    """The 1-D cube variables (name → variable along ``mid_date`` with its CF attributes) of ``records``."""
    out: dict[str, xr.Variable] = {}
    for f in record_type.cube_fields():
        values = [getattr(r, f.name) for r in records]
        out[str(f.cube_name)] = xr.Variable(("mid_date",), _column(f, values), attrs=f.convention.attrs())
    return out


def layer_encoding(record_type: type[PairRecord]) -> dict[str, dict[str, Any]]:
    """Zarr/NetCDF encoding of the 1-D layer variables: integer microseconds for times, NaN fill for floats."""
    encoding: dict[str, dict[str, Any]] = {}
    for f in record_type.cube_fields():
        dtype = f.convention.dtype
        if dtype == "time":
            encoding[str(f.cube_name)] = dict(TIME_ENCODING)
        elif dtype.startswith("float"):
            encoding[str(f.cube_name)] = {"_FillValue": np.dtype(dtype).type(np.nan)}
    return encoding


def time_variables(record_type: type[PairRecord]) -> list[str]:
    """Names of the layer variables that hold times."""
    return [str(f.cube_name) for f in record_type.cube_fields() if f.convention.dtype == "time"]


def layer_records(ds: xr.Dataset, record_type: type[PairRecord]) -> list[PairRecord]:
    """The pair record of every layer of an opened cube. A field the cube lacks (a cube written before the field
    existed) takes its default; without one the cube cannot hold this record type."""
    n = ds.sizes["mid_date"]
    columns: dict[str, list[Any]] = {}
    for f in record_type.cube_fields():
        name = str(f.cube_name)
        if name in ds.variables:
            columns[f.name] = [_cell(f, v) for v in ds[name].values]
        elif f.required:
            raise CubeError(f"the cube has no layer variable {name!r} (pair field {f.name}); rebuild the cube")
    records: list[PairRecord] = []
    for i in range(n):
        values = {name: column[i] for name, column in columns.items()}
        try:
            records.append(record_type(**values))
        except (TypeError, ValueError) as err:
            raise CubeError(f"layer {i} of the cube has invalid pair values: {err}") from err
    return records


def _column(f: RecordField, values: list[Any]) -> np.ndarray[Any, Any]:
    dtype = f.convention.dtype
    if dtype == "time":
        return np.array([parse_utc(v) for v in values], dtype="datetime64[us]")
    if dtype == "text":
        return text_array([encode(f, v) for v in values])
    return np.array([np.nan if v is None else encode(f, v) for v in values], dtype=dtype)


def _cell(f: RecordField, value: Any) -> Any:
    dtype = f.convention.dtype
    if dtype == "time":
        return iso_utc(np.datetime64(value, "us"))
    if dtype == "text":
        return decode(f, str(value))
    return decode(f, value.item() if isinstance(value, np.generic) else value)
