"""Integrity records of cube versions: what each layer and each file held when the version was written.

Zarr reads a missing chunk file as fill values (NaN here) without complaint, so a deleted or damaged chunk
turns a layer silently empty, and the next insert would copy the NaNs into the new version. Each version
therefore has a record, ``<cube>.versions/vNNNNNN.integrity.json`` (beside the version: Zarr warns about any
foreign file inside a store), written before the version is renamed into place:

* per layer (by pair id), the number of valid (finite) cells of each data variable, counted from the pair
  product when the layer was inserted and carried from version to version after that;
* per file of the version, its size and SHA-256. A file hard-linked from the previous version keeps the
  previous record's digest, so an insert hashes only what it wrote.

:func:`damage` compares a version with its record (stat only, cheap: before every insert); :func:`verify`
also re-hashes every file and recounts every layer (``offset-cube inspect --verify``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from offset_cube.atomic import write_text_atomic
from offset_cube.errors import CubeError

RECORD_SUFFIX = ".integrity.json"
RECORD_FORMAT = 1
_HASH_BLOCK = 4 * 1024 * 1024

#: Valid-cell counts of one layer, per data variable.
LayerCounts = dict[str, int]


@dataclass
class IntegrityReport:
    """What :func:`damage` or :func:`verify` found; empty lists mean the version matches its record."""

    version: Path
    has_record: bool
    missing_files: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    damaged_layers: dict[str, list[str]] = field(default_factory=dict)  # pair id -> what differs

    @property
    def ok(self) -> bool:
        return not (self.missing_files or self.changed_files or self.damaged_layers)

    def describe(self, pair_ids: list[str], time_chunk: int) -> str:
        """One line naming the damaged chunks (with the layers they hold) and layers."""
        parts = []
        for label, files in (("missing", self.missing_files), ("changed", self.changed_files)):
            if files:
                shown = ", ".join(_with_layers(f, pair_ids, time_chunk) for f in files[:8])
                more = f" and {len(files) - 8} more" if len(files) > 8 else ""
                parts.append(f"{len(files)} file(s) {label}: {shown}{more}")
        if self.damaged_layers:
            shown = "; ".join(f"{p} ({', '.join(d)})" for p, d in list(self.damaged_layers.items())[:8])
            parts.append(f"{len(self.damaged_layers)} layer(s) differ from their record: {shown}")
        return "; ".join(parts) if parts else "matches its integrity record"


def _with_layers(name: str, pair_ids: list[str], time_chunk: int) -> str:
    """``vx/c/1/0/2`` with the pair ids its time chunk holds."""
    parts = name.split("/")
    if len(parts) == 5 and parts[1] == "c" and parts[2].isdigit():
        t = int(parts[2]) * time_chunk
        held = pair_ids[t : t + time_chunk]
        if held:
            return f"{name} (layers {held[0]}..{held[-1]})" if len(held) > 1 else f"{name} (layer {held[0]})"
    return name


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def valid_counts(arrays: Mapping[str, Any]) -> LayerCounts:
    """Finite cells of each 2-D array (a product's variables, or one layer of the cube's)."""
    return {name: int(np.isfinite(np.asarray(values)).sum()) for name, values in arrays.items()}


def record_path(version: Path) -> Path:
    """Where the record of ``version`` (``<cube>.versions/vNNNNNN``) lives."""
    return version.with_name(version.name + RECORD_SUFFIX)


def read_record(version: Path) -> dict[str, Any] | None:
    """The version's integrity record, or None for a version written before records existed."""
    path = record_path(version)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CubeError(f"{path} is unreadable ({err}); the cube version's integrity record is damaged") from err
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise CubeError(f"{path} is not an offset-cube integrity record of format {RECORD_FORMAT}")
    return record


def write_record(
    built: Path,
    version: Path,
    previous: Path | None,
    layer_counts: Mapping[str, LayerCounts],
    variables: Iterable[str],
) -> Path:
    """Record ``layer_counts`` and every file of ``built`` (the complete store, before it is renamed to
    ``version``). Digests of files hard-linked from ``previous`` are carried from its record, the rest hashed."""
    old_files: dict[str, Any] = {}
    if previous is not None:
        old_files = (read_record(previous) or {}).get("files", {})
    files = {}
    for path in sorted(p for p in built.rglob("*") if p.is_file()):
        name = path.relative_to(built).as_posix()
        stat = path.stat()
        digest = _carried_digest(previous, name, stat, old_files.get(name)) or file_digest(path)
        files[name] = [stat.st_size, digest]
    record = {"format": RECORD_FORMAT, "variables": sorted(variables), "layers": dict(layer_counts), "files": files}
    return write_text_atomic(record_path(version), json.dumps(record, separators=(",", ":")) + "\n")


def remove_orphan_records(folder: Path) -> None:
    """Delete records whose version is gone (pruned, or never published by a killed writer)."""
    for path in folder.glob("v*" + RECORD_SUFFIX):
        if not path.with_name(path.name.removesuffix(RECORD_SUFFIX)).is_dir():
            path.unlink(missing_ok=True)


def _carried_digest(previous: Path | None, name: str, stat: os.stat_result, old: Any) -> str | None:
    """The previous record's digest of ``name`` if this file is the very same file (a hard link to it)."""
    if previous is None or not isinstance(old, list) or len(old) != 2 or old[0] != stat.st_size:
        return None
    try:
        before = (previous / name).stat()
    except OSError:
        return None
    return str(old[1]) if (before.st_ino, before.st_dev) == (stat.st_ino, stat.st_dev) else None


def damage(version: Path) -> IntegrityReport:
    """Cheap check (one ``stat`` per file): files of the record that are missing or changed in size."""
    record = read_record(version)
    report = IntegrityReport(version=version, has_record=record is not None)
    for name, (size, _digest) in (record or {}).get("files", {}).items():
        try:
            actual = (version / name).stat().st_size
        except OSError:
            report.missing_files.append(name)
            continue
        if actual != size:
            report.changed_files.append(name)
    return report


def verify(version: Path, pair_ids: list[str]) -> IntegrityReport:
    """Full check: every file re-hashed against the record, every layer's valid cells recounted."""
    report = damage(version)
    record = read_record(version)
    if record is None:
        return report
    for name, (_size, digest) in record.get("files", {}).items():
        if name in report.missing_files or name in report.changed_files:
            continue
        if file_digest(version / name) != digest:
            report.changed_files.append(name)
    expected: dict[str, LayerCounts] = record.get("layers", {})
    arrays = {v: zarr.open_array(str(version / v), mode="r", zarr_format=3) for v in record.get("variables", [])}
    for i, pair_id in enumerate(pair_ids):
        try:
            counts = valid_counts({v: a[i] for v, a in arrays.items()})
        except Exception as err:  # a damaged chunk may fail to decode (zstd, crc): that is the finding
            report.damaged_layers[pair_id] = [f"unreadable ({type(err).__name__}: {err})"]
            continue
        wanted = expected.get(pair_id)
        if wanted is None:
            report.damaged_layers[pair_id] = ["no record"]
            continue
        differ = [f"{v}: {counts.get(v)} valid cells, recorded {n}" for v, n in wanted.items() if counts.get(v) != n]
        if differ:
            report.damaged_layers[pair_id] = differ
    return report
