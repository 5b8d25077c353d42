"""Sentinel-1 product ids and the scene record every stage passes around.

A product id (the SAFE name without extension) encodes the mission, mode, product type, polarisation, sensing
start/stop, absolute orbit, data-take and a CRC. Layout (Sentinel-1 Product Specification S1-RS-MDA-52-7441,
SAFE naming)::

    S1A_IW_SLC__1SSH_20180807T175609_20180807T175636_023143_028391_AE45
    MMM BB TTTR LFPP start           stop            orbit  dtake  CRC
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offset_cube.config import FlightDirection, Polarization
from offset_cube.errors import SceneNameError

PRODUCT_ID_RE = re.compile(
    r"""
    ^(?P<mission>S1[A-D])                       # satellite: S1A..S1D
    _(?P<beam_mode>IW|EW|WV|S[1-6])             # acquisition mode
    _(?P<product_type>SLC|GRD|RAW|OCN|ETA)      # product type
    (?P<resolution>[FHM_])                      # resolution class; '_' for SLC
    _(?P<level>[012])                           # processing level
    (?P<product_class>[SAN])                    # S standard, A annotation, N noise
    (?P<polarisation>SH|SV|DH|DV|HH|VV|HV|VH)   # SH single HH, DV dual VV+VH, ...
    _(?P<start>\d{8}T\d{6})                     # sensing start, UTC
    _(?P<stop>\d{8}T\d{6})                      # sensing stop, UTC
    _(?P<absolute_orbit>\d{6})                  # absolute orbit at start
    _(?P<datatake>[0-9A-F]{6})                  # mission data-take id (hex)
    _(?P<crc>[0-9A-F]{4})                       # product unique id (CRC-16 of the manifest)
    (?:\.SAFE|\.zip)?$
    """,
    re.VERBOSE,
)

#: Polarisations held by each product polarisation code.
POLARISATIONS: dict[str, tuple[Polarization, ...]] = {
    "SH": (Polarization.HH,),
    "SV": (Polarization.VV,),
    "DH": (Polarization.HH, Polarization.HV),
    "DV": (Polarization.VV, Polarization.VH),
    "HH": (Polarization.HH,),
    "VV": (Polarization.VV,),
    "HV": (Polarization.HV,),
    "VH": (Polarization.VH,),
}

#: Orbits per 12-day repeat cycle.
ORBITS_PER_CYCLE = 175

_TIME_FORMAT = "%Y%m%dT%H%M%S"


@dataclass(frozen=True, slots=True)
class ProductName:
    """The fields of a Sentinel-1 product id."""

    product_id: str
    mission: str
    beam_mode: str
    product_type: str
    resolution: str
    level: int
    product_class: str
    polarisation: str
    start: dt.datetime
    stop: dt.datetime
    absolute_orbit: int
    datatake: str
    crc: str

    @classmethod
    def parse(cls, name: str) -> ProductName:
        """Parse a product id, SAFE folder name or zip file name (a leading path is ignored)."""
        base = Path(name.strip()).name.removesuffix("-SLC")
        match = PRODUCT_ID_RE.match(base)
        if match is None:
            raise SceneNameError(
                f"{name!r} is not a Sentinel-1 product id "
                "(expected e.g. S1A_IW_SLC__1SSH_20180807T175609_20180807T175636_023143_028391_AE45)"
            )
        g = match.groupdict()
        return cls(
            product_id=base.removesuffix(".zip").removesuffix(".SAFE"),
            mission=g["mission"],
            beam_mode=g["beam_mode"],
            product_type=g["product_type"],
            resolution=g["resolution"],
            level=int(g["level"]),
            product_class=g["product_class"],
            polarisation=g["polarisation"],
            start=_utc(g["start"]),
            stop=_utc(g["stop"]),
            absolute_orbit=int(g["absolute_orbit"]),
            datatake=g["datatake"],
            crc=g["crc"],
        )

    @property
    def polarisations(self) -> tuple[Polarization, ...]:
        return POLARISATIONS[self.polarisation]

    def require_iw_slc(self, where: str = "") -> ProductName:
        """Raise unless this is an IW SLC product (the only kind the engines process)."""
        suffix = f" ({where})" if where else ""
        if self.beam_mode != "IW":
            raise SceneNameError(
                f"{self.product_id}{suffix} is a {self.beam_mode} product; offset-cube processes IW SLC products only"
            )
        if self.product_type != "SLC":
            raise SceneNameError(
                f"{self.product_id}{suffix} is a {self.product_type} product; offset-cube processes IW SLC "
                "products only (dense offsets need complex data)"
            )
        return self


def relative_orbit(mission: str, absolute_orbit: int) -> int:
    """Relative orbit (track) from the absolute orbit: ``((abs - offset) % 175) + 1``.

    Offsets: S1A 73 and S1B 27 (match ASF's pathNumber on all 176 test records); S1C 172 up to absolute orbit
    8018 and 99 after its June 2026 orbit change; S1D 42 (both from sentineleof 0.13.1). Prefer ASF's
    ``pathNumber`` or the manifest's relative orbit where available.
    """
    if mission == "S1A":
        offset = 73
    elif mission == "S1B":
        offset = 27
    elif mission == "S1C":
        offset = 172 if absolute_orbit <= 8018 else 99
    elif mission == "S1D":
        offset = 42
    else:
        raise SceneNameError(f"unknown Sentinel-1 mission {mission!r}; expected S1A, S1B, S1C or S1D")
    return ((absolute_orbit - offset) % ORBITS_PER_CYCLE) + 1


class Scene(BaseModel):
    """One Sentinel-1 IW SLC product as found by a search; small, immutable, serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str = Field(description="SAFE product id without extension.")
    start: dt.datetime = Field(description="Sensing start (UTC, as precise as the source gives).")
    stop: dt.datetime = Field(description="Sensing stop (UTC).")
    relative_orbit: int = Field(ge=1, le=ORBITS_PER_CYCLE, description="Track (ASF pathNumber).")
    flight_direction: FlightDirection
    footprint_wkt: str | None = Field(None, description="Footprint polygon (lon lat WKT) when known.")
    url: str | None = Field(None, description="Download URL (ASF datapool).")
    size_bytes: int | None = Field(None, ge=0, description="Size of the distributed zip.")
    md5: str | None = Field(None, description="MD5 of the distributed zip.")
    local_path: Path | None = Field(None, description="Path of the SAFE zip/folder for local catalogs.")
    frame: int | None = Field(None, description="ASF frame number (information only; frames drift).")
    ipf_version: str | None = Field(None, description="Processor (IPF) version, e.g. '003.31'.")

    @property
    def name(self) -> ProductName:
        return ProductName.parse(self.product_id)

    @property
    def mission(self) -> str:
        return self.product_id[:3]

    @property
    def polarisations(self) -> tuple[Polarization, ...]:
        return self.name.polarisations

    @property
    def date(self) -> dt.date:
        """UTC date of the sensing start: acquisitions are grouped by it."""
        return self.start.astimezone(dt.UTC).date()

    @property
    def file_name(self) -> str:
        return f"{self.product_id}.zip"

    @classmethod
    def from_fields(cls, product_id: str, **fields: Any) -> Scene:
        """Build a scene, checking the id is an IW SLC and filling what the id alone tells."""
        name = ProductName.parse(product_id).require_iw_slc()
        fields.setdefault("start", name.start)
        fields.setdefault("stop", name.stop)
        if fields.get("relative_orbit") is None:
            fields["relative_orbit"] = relative_orbit(name.mission, name.absolute_orbit)
        return cls(product_id=name.product_id, **fields)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)


def parse_utc(text: str) -> dt.datetime:
    """Parse an ISO-8601 time ('2021-01-02T03:20:31.092706Z', with or without zone) as aware UTC."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
