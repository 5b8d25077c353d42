"""Every name, unit and long name that pair results, products and the cube write, in one place.

Names follow the ITS_LIVE velocity cube where a counterpart exists (``mid_date``, ``date_dt``,
``acquisition_date_img1/2``, ``granule_img1/2``, ``roi_valid_percentage``, ``vx``/``vy``/``v``; ITS_LIVE data
dictionary, https://its-live.jpl.nasa.gov) and CF-1.8 otherwise (standard names from the CF standard name table,
https://cfconventions.org/standard-names.html).

**The pair record.** :class:`PairRecord` is the one description of a pair that travels from the engine run to the
cube: the engine builds it from the plan's pair, writes it as the attributes of its result, the product copies it
(adding its coverage), and the cube stores each field as a 1-D variable along ``mid_date``. Each field carries its
:class:`Convention` in its type (``Annotated``), so adding a field to the record, here or in a subclass, is one
edit: the attribute codec, the cube's layer variables, ``offset-cube inspect`` and the exports all follow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

#: How a record field is stored as a 1-D cube variable.
CubeDtype = Literal["text", "time", "int16", "float32", "float64"]


@dataclass(frozen=True)
class Convention:
    """Attributes of one variable; for a :class:`PairRecord` field also how the cube stores and shows it.

    ``cube`` is the name of the field's 1-D cube variable (``""``: the field's own name; ``None``: not in the
    cube). ``column`` is its header in the ``inspect`` table and the cube-summary artifact (``None``: not shown),
    ``fmt`` its format there.
    """

    long_name: str
    units: str | None = None
    standard_name: str | None = None
    cube: str | None = ""
    dtype: CubeDtype = "text"
    column: str | None = None
    fmt: str = "{}"

    def attrs(self) -> dict[str, str]:
        """The CF attributes of the variable (``long_name``, and ``units``/``standard_name`` where set)."""
        out = {"long_name": self.long_name}
        if self.units is not None:
            out["units"] = self.units
        if self.standard_name is not None:
            out["standard_name"] = self.standard_name
        return out


@dataclass(frozen=True)
class RecordField:
    """One field of a pair record: its name, its Python type (without ``None``) and its convention."""

    name: str
    base: Any
    optional: bool
    required: bool
    convention: Convention

    @property
    def cube_name(self) -> str | None:
        c = self.convention.cube
        return None if c is None else (c or self.name)


@dataclass(frozen=True, kw_only=True)
class PairRecord:
    """What identifies a pair and how it was processed: the attributes of its result and product, the 1-D layer
    variables of the cube. Times are ISO-8601 UTC text; ``valid_percentage`` is set by the product stage."""

    pair_id: Annotated[
        str, Convention("pair id <reference date>_<secondary date>_t<track>", cube="pair_id", column="pair")
    ]
    track: Annotated[int, Convention("Sentinel-1 relative orbit", dtype="int16", column="track")]
    direction: Annotated[str, Convention("flight direction (ASCENDING or DESCENDING)", column="dir")]
    engine: Annotated[str, Convention("offset engine (builtin or isce2)", column="engine")]
    reference_time: Annotated[
        str,
        Convention("reference (earlier) acquisition start time, UTC", cube="acquisition_date_img1", dtype="time"),
    ]
    secondary_time: Annotated[
        str,
        Convention("secondary (later) acquisition start time, UTC", cube="acquisition_date_img2", dtype="time"),
    ]
    dt_days: Annotated[
        float,
        Convention(
            "time separation of the two acquisitions",
            units="days",
            cube="date_dt",
            dtype="float64",
            column="Δt (d)",
            fmt="{:.1f}",
        ),
    ]
    reference_granules: Annotated[
        tuple[str, ...], Convention("reference SAFE product ids (space-separated)", cube="granule_img1")
    ]
    secondary_granules: Annotated[
        tuple[str, ...], Convention("secondary SAFE product ids (space-separated)", cube="granule_img2")
    ]
    orbit_type: Annotated[str, Convention("least precise orbit used (POEORB, RESORB or annotation)", column="orbit")]
    polarization: Annotated[str, Convention("polarisation tracked")]
    processing_parameters: Annotated[Mapping[str, Any], Convention("engine and masking parameters (JSON)")]
    valid_percentage: Annotated[
        float | None,
        Convention(
            "cells of the grid with a valid velocity", units="percent", cube="roi_valid_percentage", dtype="float32"
        ),
    ] = None
    # Set by the product stage from the layer's stable ground (ITS_LIVE names; offset_cube.cube.uncertainty).
    vx_error: Annotated[
        float | None,
        Convention(
            "RMS of vx about its shift over stable ground (error of one cell)", units="meter/year", dtype="float32"
        ),
    ] = None
    vy_error: Annotated[
        float | None,
        Convention(
            "RMS of vy about its shift over stable ground (error of one cell)", units="meter/year", dtype="float32"
        ),
    ] = None
    vx_stable_shift: Annotated[
        float | None,
        Convention(
            "median vx over stable ground (subtracted when stable_shift_flag > 0)", units="meter/year", dtype="float32"
        ),
    ] = None
    vy_stable_shift: Annotated[
        float | None,
        Convention(
            "median vy over stable ground (subtracted when stable_shift_flag > 0)", units="meter/year", dtype="float32"
        ),
    ] = None
    stable_count: Annotated[
        float | None,
        Convention("number of stable-ground cells behind the errors and shifts", units="1", dtype="float32"),
    ] = None
    stable_shift_flag: Annotated[
        float | None,
        Convention(
            "stable shift: 0 not applied, 1 applied from the stable-ground mask, 2 applied from slow cells",
            units="1",
            dtype="float32",
        ),
    ] = None

    def __post_init__(self) -> None:
        for f in self.fields():
            value = getattr(self, f.name)
            if typing.get_origin(f.base) is tuple and isinstance(value, list):  # stays immutable
                object.__setattr__(self, f.name, tuple(value))
            if f.convention.dtype == "time":
                try:
                    dt.datetime.fromisoformat(str(value))
                except ValueError as err:
                    raise ValueError(f"{f.name} {value!r} is not an ISO-8601 time (e.g. 2020-01-13T03:12:45Z)") from err

    @classmethod
    def fields(cls) -> list[RecordField]:
        """The record's fields with their conventions, in declaration order (subclass fields last)."""
        return list(_record_fields(cls))  # cached per class

    @classmethod
    def cube_fields(cls) -> list[RecordField]:
        """The fields stored as 1-D cube variables."""
        return [f for f in cls.fields() if f.cube_name is not None]

    @classmethod
    def cube_name_of(cls, field_name: str) -> str:
        """The name of the 1-D cube variable that holds ``field_name``."""
        found = [f.cube_name for f in cls.cube_fields() if f.name == field_name]
        if not found or found[0] is None:
            raise KeyError(f"{cls.__name__} has no field {field_name!r} stored in the cube")
        return found[0]

    def to_attrs(self) -> dict[str, Any]:
        """Zarr/NetCDF-friendly attributes: granules as space-separated text, parameters as sorted JSON text;
        fields that are ``None`` are left out."""
        out: dict[str, Any] = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = encode(f, value)
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str = "attributes") -> Self:
        """The record written by :meth:`to_attrs` (extra attributes are ignored); ``ValueError`` names what is
        missing or malformed."""
        values: dict[str, Any] = {}
        for f in cls.fields():
            if f.name not in attrs:
                if f.required:
                    raise ValueError(f"{where} lack the pair attribute {f.name!r}")
                continue
            try:
                values[f.name] = decode(f, attrs[f.name])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{where}: pair attribute {f.name}={attrs[f.name]!r} is invalid: {err}") from err
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The record as plain JSON values (granules as lists, parameters as an object)."""
        return {f.name: _plain(getattr(self, f.name)) for f in self.fields()}


def required_attrs(record_type: type[PairRecord] = PairRecord) -> tuple[str, ...]:
    """Names of the attributes every pair result carries (the record's fields without a default)."""
    return tuple(f.name for f in record_type.fields() if f.required)


def encode(f: RecordField, value: Any) -> Any:
    """A field value as an attribute value (text or number)."""
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, default=str)
    if f.base is int:
        return int(value)
    if f.base is float:
        return float(value)
    return str(value)


def decode(f: RecordField, value: Any) -> Any:
    """An attribute value (as :func:`encode` wrote it) as the field's type."""
    if f.optional and value is None:
        return None
    origin = typing.get_origin(f.base)
    if origin is tuple:
        return tuple(value) if isinstance(value, list | tuple) else tuple(str(value).split())
    if f.base is Mapping or origin in (Mapping, dict):
        return dict(value) if isinstance(value, Mapping) else json.loads(str(value) or "{}")
    if f.base is int:
        return int(value)
    if f.base is float:
        return float(value)
    return str(value)


_FIELDS: dict[type, tuple[RecordField, ...]] = {}


def _record_fields(cls: type[PairRecord]) -> tuple[RecordField, ...]:
    if cls not in _FIELDS:  # type hints are resolved once per record class
        _FIELDS[cls] = tuple(_read_fields(cls))
    return _FIELDS[cls]


def _read_fields(cls: type[PairRecord]) -> Iterator[RecordField]:
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        conventions = [a for a in getattr(hint, "__metadata__", ()) if isinstance(a, Convention)]
        if not conventions:
            raise TypeError(
                f"{cls.__name__}.{f.name} has no Convention: annotate it as Annotated[type, Convention(...)]"
            )
        base = typing.get_args(hint)[0]
        args = typing.get_args(base)
        optional = (typing.get_origin(base) in (typing.Union, types.UnionType)) and type(None) in args
        if optional:
            base = next(a for a in args if a is not type(None))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        yield RecordField(f.name, base, optional, required, conventions[0])


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


#: 2-D variables of a pair result (the engines' output on their own grid) and their units.
RESULT_VARIABLES: dict[str, str] = {
    "azimuth_offset": "pixel",
    "range_offset": "pixel",
    "snr": "1",
    "latitude": "degrees_north",
    "longitude": "degrees_east",
    "incidence_angle": "degree",
    "heading": "degree",
    "azimuth_spacing": "m",
    "range_spacing": "m",
}
#: Optional 2-D variables of a pair result.
OPTIONAL_RESULT_VARIABLES: dict[str, str] = {
    "cov_az": "pixel2",
    "cov_rg": "pixel2",
    "cov_azrg": "pixel2",
    "slope_east": "1",  # terrain gradient from the DEM: the velocity conversion is then surface-parallel
    "slope_north": "1",
}

#: Float map variables of a product and the cube (CF-1.8; ITS_LIVE names for the velocities).
MAP_VARIABLES: dict[str, Convention] = {
    "vx": Convention(
        "velocity component along the grid x axis (true ground metres)",
        units="meter/year",
        standard_name="land_ice_surface_x_velocity",
    ),
    "vy": Convention(
        "velocity component along the grid y axis (true ground metres)",
        units="meter/year",
        standard_name="land_ice_surface_y_velocity",
    ),
    "v": Convention("surface speed", units="meter/year"),
    "azimuth_offset": Convention(
        "motion offset along track, secondary minus reference, + = flight direction", units="pixel"
    ),
    "range_offset": Convention(
        "motion offset in slant range, secondary minus reference, + = away from the sensor", units="pixel"
    ),
    "snr": Convention("correlation peak signal-to-noise ratio", units="1"),
    "v_error": Convention(
        "error of the speed v from the cell's vx and vy errors: sqrt((ex vx/v)^2 + (ey vy/v)^2)", units="meter/year"
    ),
    "vx_error_cell": Convention(
        "error of vx at the cell: tracker covariance scaled to the layer's stable-ground vx_error", units="meter/year"
    ),
    "vy_error_cell": Convention(
        "error of vy at the cell: tracker covariance scaled to the layer's stable-ground vy_error", units="meter/year"
    ),
}

#: Projected coordinates of products and the cube.
X_ATTRS = {"standard_name": "projection_x_coordinate", "long_name": "x of cell centre", "units": "m"}
Y_ATTRS = {"standard_name": "projection_y_coordinate", "long_name": "y of cell centre", "units": "m"}
#: The cube's time coordinate.
MID_DATE_ATTRS = {
    "long_name": "midpoint of the two acquisition times (UTC), unique",
    "description": "acquisition_date_img1 + date_dt/2; equal midpoints are stepped 1 microsecond apart",
}
