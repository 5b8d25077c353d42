"""Sentinel-1 orbit files (``.EOF``, Earth Explorer format): names and contents.

File name: ``S1X_OPER_AUX_{POEORB|RESORB}_OPOD_<created>_V<valid start>_<valid stop>.EOF`` (times UTC,
``YYYYMMDDTHHMMSS``). Content: a fixed header (mission, type, validity, creation) and ``List_of_OSVs`` with
Earth-fixed (ITRF) positions in m and velocities in m/s, UTC times prefixed ``UTC=``, nominally every 10 s.
Some real files are trimmed: the ``count`` attribute claims more vectors than the file holds; we count what
is there. Format: ESA, *Copernicus POD Service File Format Specification* (GMES-GSEG-EOPG-FS-10-0075).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from lxml import etree

from offset_cube.errors import OrbitError

EOF_NAME_RE = re.compile(
    r"""
    (?P<mission>S1[A-D])_OPER_AUX_
    (?P<orbit_type>POEORB|RESORB)_OPOD_
    (?P<created>\d{8}T\d{6})
    _V(?P<start>\d{8}T\d{6})
    _(?P<stop>\d{8}T\d{6})
    (?:\.EOF)?$
    """,
    re.VERBOSE,
)

OrbitKind = Literal["POEORB", "RESORB"]
_MISSIONS = {"Sentinel-1A": "S1A", "Sentinel-1B": "S1B", "Sentinel-1C": "S1C", "Sentinel-1D": "S1D"}


@dataclass(frozen=True, slots=True)
class EofName:
    """The fields of an orbit file name."""

    name: str
    mission: str
    orbit_type: OrbitKind
    created: dt.datetime
    valid_start: dt.datetime
    valid_stop: dt.datetime

    @classmethod
    def parse(cls, name: str) -> EofName:
        base = Path(name).name
        match = EOF_NAME_RE.search(base)
        if match is None:
            raise OrbitError(
                f"{name!r} is not a Sentinel-1 orbit file name "
                "(expected S1A_OPER_AUX_POEORB_OPOD_<created>_V<start>_<stop>.EOF)"
            )
        g = match.groupdict()
        kind: OrbitKind = "POEORB" if g["orbit_type"] == "POEORB" else "RESORB"
        return cls(
            name=base,
            mission=g["mission"],
            orbit_type=kind,
            created=_stamp(g["created"]),
            valid_start=_stamp(g["start"]),
            valid_stop=_stamp(g["stop"]),
        )

    def covers(self, start: dt.datetime, stop: dt.datetime, margin_s: float = 60.0) -> bool:
        """True when the validity window covers ``[start - margin, stop + margin]``."""
        margin = dt.timedelta(seconds=margin_s)
        return self.valid_start <= start - margin and self.valid_stop >= stop + margin


@dataclass(frozen=True)
class OrbitStateVectors:
    """State vectors of an orbit file. ``times`` are float seconds since ``epoch`` (UTC)."""

    mission: str
    orbit_type: OrbitKind
    valid_start: dt.datetime
    valid_stop: dt.datetime
    created: dt.datetime | None
    epoch: dt.datetime
    times: np.ndarray  # (N,) float64 seconds since epoch
    positions: np.ndarray  # (N, 3) float64 m, ITRF
    velocities: np.ndarray  # (N, 3) float64 m/s

    @property
    def first_time(self) -> dt.datetime:
        return self.epoch + dt.timedelta(seconds=float(self.times[0]))

    @property
    def last_time(self) -> dt.datetime:
        return self.epoch + dt.timedelta(seconds=float(self.times[-1]))

    def spans(self, start: dt.datetime, stop: dt.datetime, margin_s: float = 60.0) -> bool:
        """True when state vectors exist from ``start - margin`` to ``stop + margin``."""
        margin = dt.timedelta(seconds=margin_s)
        return self.first_time <= start - margin and self.last_time >= stop + margin


def read_eof(path: Path | str) -> OrbitStateVectors:
    """Parse an ``.EOF`` file; raise :class:`OrbitError` naming the file for anything malformed."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise OrbitError(f"orbit file {path} cannot be read: {err.strerror or err}") from err
    if size == 0:
        raise OrbitError(f"orbit file {path} is empty (0 bytes)")
    try:
        root = etree.parse(str(path)).getroot()
    except etree.XMLSyntaxError as err:
        raise OrbitError(f"orbit file {path} is not valid XML ({err})") from err
    header = root.find("Earth_Explorer_Header/Fixed_Header")
    if header is None:
        raise OrbitError(f"orbit file {path} has no Earth_Explorer_Header/Fixed_Header")
    mission = _MISSIONS.get(_text(header, "Mission", path), "")
    if not mission:
        raise OrbitError(f"orbit file {path}: unknown mission {_text(header, 'Mission', path)!r}")
    file_type = _text(header, "File_Type", path).removeprefix("AUX_")
    if file_type not in ("POEORB", "RESORB"):
        raise OrbitError(f"orbit file {path}: File_Type {file_type!r} is not AUX_POEORB or AUX_RESORB")
    kind: OrbitKind = "POEORB" if file_type == "POEORB" else "RESORB"
    valid_start = _utc(_text(header, "Validity_Period/Validity_Start", path))
    valid_stop = _utc(_text(header, "Validity_Period/Validity_Stop", path))
    created_text = header.findtext("Source/Creation_Date")
    osvs = root.findall("Data_Block/List_of_OSVs/OSV")
    if not osvs:
        raise OrbitError(f"orbit file {path} holds no state vectors")
    times = [_utc(_field(osv, "UTC", path)) for osv in osvs]
    epoch = times[0].replace(microsecond=0)
    seconds = np.array([(t - epoch).total_seconds() for t in times])
    try:
        positions = np.array([[float(_field(o, k, path)) for k in ("X", "Y", "Z")] for o in osvs])
        velocities = np.array([[float(_field(o, k, path)) for k in ("VX", "VY", "VZ")] for o in osvs])
    except ValueError as err:
        raise OrbitError(f"orbit file {path}: non-numeric state vector ({err})") from err
    if np.any(np.diff(seconds) <= 0):
        raise OrbitError(f"orbit file {path}: state vector times are not strictly increasing")
    return OrbitStateVectors(
        mission=mission,
        orbit_type=kind,
        valid_start=valid_start,
        valid_stop=valid_stop,
        created=_utc(created_text) if created_text else None,
        epoch=epoch,
        times=seconds,
        positions=positions,
        velocities=velocities,
    )


def _text(node: etree._Element, path_in: str, path: Path) -> str:
    value = node.findtext(path_in)
    if value is None or not value.strip():
        raise OrbitError(f"orbit file {path} lacks {path_in}")
    return value.strip()


def _field(osv: etree._Element, name: str, path: Path) -> str:
    value = osv.findtext(name)
    if value is None:
        raise OrbitError(f"orbit file {path}: a state vector lacks <{name}>")
    return value.strip()


def _utc(text: str) -> dt.datetime:
    """``UTC=2019-12-31T22:59:42.000000`` (prefix optional) → aware UTC datetime."""
    value = text.split("=", 1)[-1].strip()
    return dt.datetime.fromisoformat(value.replace("Z", "")).replace(tzinfo=dt.UTC)


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
