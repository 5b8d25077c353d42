"""The velocity cube: a Zarr v3 store (dims ``mid_date, y, x``) that grows safely, one writer at a time.

**Layout: immutable versions behind one link.** ``<cube>`` (e.g. ``cube.zarr``) is a symbolic link to the current
version ``<cube>.versions/vNNNNNN``, a complete Zarr v3 store that is never modified once published. An insert
builds the next version beside it under a temporary name, flushes it to disk, renames it, and then swaps the
link with one atomic ``rename``. Readers therefore see the old cube or the new one, never a half-written one, and
a writer killed at any point leaves the link on the previous version; the next writer deletes the leftovers.
``xarray.open_zarr("cube.zarr")`` opens the current version. A long-lived reader that must not see a concurrent
update can open ``Path("cube.zarr").resolve()`` (a fixed version; the last :data:`KEEP_PREVIOUS_VERSIONS` old
versions are kept for such readers).

**Cheap copies.** A new version hard-links every chunk file that did not change from the previous version and
writes only the rest (with a copy as fallback where hard links are not supported). Layers are sorted by
``mid_date``, so a layer inserted at position ``p`` shifts every later layer: the time chunks from ``p //
TIME_CHUNK`` on are rewritten, the earlier ones are linked. The usual insert (new acquisitions) touches only the
last time chunk; a backfill of old pairs rewrites the tail after its oldest pair once per insert call, however
many pairs it brings. Icechunk would give the same transactions, but its stores cannot be opened with plain
``xarray.open_zarr`` (and planning reads the cube that way), so plain Zarr plus a link it is.

**Chunking** ``(mid_date 16, y 128, x 128)`` (float32, ~1 MiB raw per chunk) serves both reads: a map of one layer
touches ``ceil(ny/128)·ceil(nx/128)`` chunks, a pixel's time series ``ceil(n/16)`` chunks. ITS_LIVE's
``(20000, 10, 10)`` makes a map read touch every chunk of the cube; ``(1, ny, nx)`` makes a time series touch one
chunk per layer. ``bench/cube_bench.py`` measures both against those alternatives (200 x 400 x 400, shared
machine: map 16 ms / series 15 ms here, 760 / 0.7 ms for ITS_LIVE's chunks, 2 / 330 ms for one chunk per layer)
and the inserts (append ~0.1x, backfill at the start ~0.26x the time of rebuilding the cube).

**Writers** take an exclusive lock first (:mod:`offset_cube.cube.lock`). Inserting a pair already present does
nothing unless ``replace=True``, which rewrites its layer in place (and says so in the report).

**Fault injection.** With ``OFFSET_CUBE_CRASH_AT`` set to one of :data:`CRASH_POINTS`, the writer SIGKILLs itself
at that point; the crash-safety tests use it.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
import zarr

import offset_cube
from offset_cube.atomic import TMP_PREFIX, remove_stale_temporaries
from offset_cube.conventions import MID_DATE_ATTRS, PairRecord
from offset_cube.cube.grid import CubeGrid
from offset_cube.cube.integrity import (
    LayerCounts,
    damage,
    read_record,
    remove_orphan_records,
    valid_counts,
    write_record,
)
from offset_cube.cube.layers import layer_columns, layer_encoding, layer_records
from offset_cube.cube.lock import CubeLock
from offset_cube.cube.product import VARIABLES, add_xy_attrs, read_product, write_mapping
from offset_cube.cube.zarrio import TIME_ENCODING, consolidate, open_dataset, parse_utc
from offset_cube.errors import CubeError

log = logging.getLogger(__name__)

TIME_CHUNK = 16
SPACE_CHUNK = 128
KEEP_PREVIOUS_VERSIONS = 2
CRASH_ENV = "OFFSET_CUBE_CRASH_AT"
CRASH_POINTS = ("after-lock", "before-data", "during-data", "before-metadata", "before-swap", "after-swap")
_VERSION = re.compile(r"^v(\d{6})$")
_MICROSECOND = np.timedelta64(1, "us")


@dataclass(frozen=True)
class Layer:
    """One layer: its pair record and where its data comes from (a product path, or an index in the old version)."""

    record: PairRecord
    source: Path | int = field(compare=False)

    @property
    def pair_id(self) -> str:
        return self.record.pair_id

    @property
    def mid_exact(self) -> np.datetime64:
        img1, img2 = parse_utc(self.record.reference_time), parse_utc(self.record.secondary_time)
        return img1 + (img2 - img1) // 2


@dataclass(frozen=True)
class InsertReport:
    """What an insert did. ``version`` is None when nothing changed (no new version was written)."""

    cube: Path
    added: tuple[str, ...]
    replaced: tuple[str, ...]
    skipped: tuple[str, ...]
    layers: int
    version: Path | None

    def summary(self) -> str:
        return (
            f"{len(self.added)} layer(s) added, {len(self.replaced)} replaced, {len(self.skipped)} already present "
            f"(not replaced); the cube holds {self.layers} layer(s)"
        )


def versions_dir(cube_path: Path) -> Path:
    return cube_path.with_name(cube_path.name + ".versions")


def lock_path(cube_path: Path) -> Path:
    return cube_path.with_name(cube_path.name + ".lock")


def current_version(cube_path: Path) -> Path | None:
    """The version folder the cube link points to; None when there is no cube yet."""
    if not cube_path.is_symlink():
        if cube_path.exists():
            raise CubeError(
                f"{cube_path} is a plain folder, not an offset-cube cube (a link to {versions_dir(cube_path).name}/"
                "vNNNNNN); move it aside or set storage.cube to another path"
            )
        return None
    target = cube_path.resolve()
    if not (target / "zarr.json").is_file():
        raise CubeError(f"cube link {cube_path} points to {target}, which is not a Zarr store")
    return target


def open_cube(cube_path: Path) -> xr.Dataset:
    """The current version of the cube, opened lazily (a fixed snapshot even if a writer swaps the link)."""
    version = current_version(cube_path)
    if version is None:
        raise CubeError(f"there is no cube at {cube_path}")
    return open_dataset(version)


def read_cube_grid(cube_path: Path) -> tuple[CubeGrid, str] | None:
    """The grid and area (WKT) stored in the cube; None when there is no cube yet."""
    version = current_version(cube_path)
    if version is None:
        return None
    attrs = json.loads((version / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
    return CubeGrid.from_attrs(attrs, where=str(cube_path)), str(attrs.get("area_wkt", ""))


def grid_for_cube(cube_path: Path, grid: CubeGrid, area_wkt: str) -> CubeGrid:
    """``grid`` when it matches the existing cube (or there is none); otherwise refuse with every difference."""
    stored = read_cube_grid(cube_path)
    if stored is None:
        return grid
    problems = _job_problems(stored[0], stored[1], grid, area_wkt)
    if problems:
        raise CubeError(
            f"this job does not match the existing cube {cube_path}: {'; '.join(problems)}. "
            "A cube's grid is fixed when it is created: use the cube's area, grid.crs and grid.spacing_m, "
            "or write to another storage.cube"
        )
    return stored[0]


def insert_products(
    cube_path: Path,
    products: Sequence[Path],
    *,
    grid: CubeGrid,
    area_wkt: str,
    job_config: str = "",
    replace: bool = False,
    lock_timeout_s: float = 3600.0,
    record_type: type[PairRecord] = PairRecord,
) -> InsertReport:
    """Insert pair products into the cube (created on first use), sorted by ``mid_date``; see the module docstring.

    A pair already in the cube is skipped, or its layer rewritten when ``replace`` is true. Safe against
    concurrent writers (they wait for the lock) and against being killed at any point. Each layer's 1-D
    variables are the fields of ``record_type`` read from the product's attributes.
    """
    candidates = _read_candidates(products, grid, record_type)
    with CubeLock(lock_path(cube_path), lock_timeout_s):
        _checkpoint("after-lock")
        current = current_version(cube_path)
        _remove_garbage(cube_path, current)
        old_layers: list[Layer] = []
        old_attrs: dict[str, Any] = {}
        if current is not None:
            old_layers, old_attrs = _read_layers(current, record_type)
            stored = CubeGrid.from_attrs(old_attrs, where=str(cube_path))
            problems = _job_problems(stored, str(old_attrs.get("area_wkt", "")), grid, area_wkt)
            if problems:
                raise CubeError(f"cannot insert into {cube_path}: {'; '.join(problems)}")
        layers, added, replaced, skipped = _merge(old_layers, candidates, replace)
        if not added and not replaced:
            return InsertReport(cube_path, (), (), tuple(skipped), len(old_layers), None)
        if current is not None:
            _refuse_damaged(cube_path, current, old_layers)
        chunks = _chunks_of(current) if current is not None else default_chunks(grid)
        attrs = _global_attrs(old_attrs, grid, area_wkt, job_config, chunks)
        version = _write_version(cube_path, current, layers, grid, attrs, chunks, record_type)
        _swap_link(cube_path, version)
        _checkpoint("after-swap")
        _prune_versions(cube_path, version)
    report = InsertReport(cube_path, tuple(added), tuple(replaced), tuple(skipped), len(layers), version)
    log.info("cube %s: %s", cube_path, report.summary())
    return report


def _refuse_damaged(cube_path: Path, current: Path, layers: list[Layer]) -> None:
    """A new version is built from the current one: never from a damaged one (its NaNs would be copied)."""
    found = damage(current)
    if not found.ok:
        described = found.describe([la.pair_id for la in layers], _chunks_of(current)[0])
        raise CubeError(
            f"cannot insert into {cube_path}: its current version {current.name} is damaged ({described}); "
            f"`offset-cube inspect {cube_path} --verify` lists the damage. Restore the version from a backup, or "
            f"point the link at an intact earlier version in {versions_dir(cube_path)}, and run again"
        )
    if not found.has_record:
        log.info("cube version %s has no integrity record (written before records existed)", current.name)


def _checkpoint(name: str) -> None:
    """Fault injection for the crash tests: SIGKILL this process when ``OFFSET_CUBE_CRASH_AT`` names ``name``."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _job_problems(stored: CubeGrid, stored_area: str, grid: CubeGrid, area_wkt: str) -> list[str]:
    problems = stored.problems_against(grid)
    if stored_area and area_wkt and not shapely.from_wkt(stored_area).equals(shapely.from_wkt(area_wkt)):
        problems.append(f"area {_short(area_wkt)} differs from the cube's {_short(stored_area)}")
    return problems


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_candidates(products: Sequence[Path], grid: CubeGrid, record_type: type[PairRecord]) -> dict[str, Layer]:
    """Layers for the given products, checked against the grid; a pair given twice keeps its last product."""
    layers: dict[str, Layer] = {}
    for path in products:
        ds = read_product(Path(path))
        problems = grid.problems_against(CubeGrid.from_attrs(ds.attrs, where=str(path)))
        if problems:
            raise CubeError(f"product {path} is not on the cube grid ({grid.describe()}): {'; '.join(problems)}")
        try:
            layer = Layer(record_type.from_attrs(ds.attrs, where=f"product {path}"), source=Path(path))
        except ValueError as err:
            raise CubeError(f"product {path} has invalid pair attributes: {err}") from err
        if layer.pair_id in layers:
            log.warning("pair %s given twice; using %s", layer.pair_id, path)
        layers[layer.pair_id] = layer
    return layers


def _read_layers(version: Path, record_type: type[PairRecord]) -> tuple[list[Layer], dict[str, Any]]:
    with open_dataset(version) as ds:
        records = layer_records(ds, record_type)
        return [Layer(record, source=i) for i, record in enumerate(records)], dict(ds.attrs)


def _merge(
    old: list[Layer], new: dict[str, Layer], replace: bool
) -> tuple[list[Layer], list[str], list[str], list[str]]:
    merged = {layer.pair_id: layer for layer in old}
    added, replaced, skipped = [], [], []
    for pair_id, layer in new.items():
        if pair_id not in merged:
            added.append(pair_id)
        elif replace:
            replaced.append(pair_id)
        else:
            skipped.append(pair_id)
            continue
        merged[pair_id] = layer
    layers = sorted(merged.values(), key=lambda layer: (layer.mid_exact, layer.pair_id))
    return layers, sorted(added), sorted(replaced), sorted(skipped)


def mid_dates(layers: Sequence[Layer]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """Midpoints of sorted layers, made strictly increasing by stepping equal ones 1 µs apart (as ITS_LIVE does
    with its microsecond token, but deterministic from the set of layers)."""
    out: list[np.datetime64] = []
    for layer in layers:
        mid = layer.mid_exact
        if out and mid <= out[-1]:
            mid = out[-1] + _MICROSECOND
        out.append(mid)
    return np.array(out, dtype="datetime64[us]")


def default_chunks(grid: CubeGrid) -> tuple[int, int, int]:
    """Chunk shape (mid_date, y, x) of the 3-D variables of a new cube on ``grid``."""
    return (TIME_CHUNK, min(SPACE_CHUNK, grid.ny), min(SPACE_CHUNK, grid.nx))


def cube_chunks(ds: xr.Dataset) -> tuple[int, int, int]:
    """Chunk shape (mid_date, y, x) of an opened cube (what block-wise readers should follow)."""
    chunks = ds["v"].encoding.get("chunks") or (TIME_CHUNK, SPACE_CHUNK, SPACE_CHUNK)
    return (int(chunks[0]), int(chunks[1]), int(chunks[2]))


def _chunks_of(version: Path) -> tuple[int, int, int]:
    """The chunk shape an existing cube was created with (it, not today's defaults, governs its updates)."""
    chunks = _array(version, "v", "r").chunks
    return (int(chunks[0]), int(chunks[1]), int(chunks[2]))


def _global_attrs(
    old: dict[str, Any], grid: CubeGrid, area_wkt: str, job_config: str, chunks: tuple[int, int, int]
) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {
        "Conventions": "CF-1.8",
        "title": "offset-cube velocity cube (Sentinel-1 dense offsets)",
        "source": f"offset-cube {offset_cube.__version__}",
        "software_version": offset_cube.__version__,
        "date_created": old.get("date_created", now),
        "date_updated": now,
        "projection": str(grid.epsg or grid.crs),
        "GDAL_AREA_OR_POINT": "Area",
        "time_standard": "UTC",
        "area_wkt": area_wkt,
        "job_config": job_config or old.get("job_config", ""),
        "chunking": f"(mid_date {chunks[0]}, y {chunks[1]}, x {chunks[2]}) for both map and time-series reads",
        "velocity_metres": "true ground metres resolved along the grid axes (not map-scaled)",
        **grid.to_attrs(),
    }


def _layer_dataset(
    layers: Sequence[Layer], grid: CubeGrid, attrs: dict[str, Any], with_data: bool, record_type: type[PairRecord]
) -> xr.Dataset:
    """The cube without its 3-D data: coordinates, 1-D layer variables, ``mapping`` and attributes.

    With ``with_data`` the 3-D variables are included as an all-NaN template (a zero-copy broadcast: Zarr writes
    no chunk for it), so that xarray creates their arrays with its CF encoding.
    """
    data: dict[str, Any] = dict(layer_columns([la.record for la in layers], record_type))
    shape = (len(layers), grid.ny, grid.nx)
    if with_data:
        empty = np.broadcast_to(np.float32(np.nan), shape)
        data.update({name: (("mid_date", "y", "x"), empty) for name in VARIABLES})
    ds = xr.Dataset(data, coords={"mid_date": mid_dates(layers), "y": grid.y, "x": grid.x})
    if with_data:
        for name, var_attrs in VARIABLES.items():
            ds[name].attrs.update(var_attrs)
    ds["mid_date"].attrs.update(MID_DATE_ATTRS)
    add_xy_attrs(ds)
    ds = write_mapping(ds, grid)
    ds.attrs = attrs
    return ds


def _encoding(ds: xr.Dataset, chunks: tuple[int, int, int], record_type: type[PairRecord]) -> dict[str, dict[str, Any]]:
    encoding: dict[str, dict[str, Any]] = {"mid_date": dict(TIME_ENCODING), **layer_encoding(record_type)}
    for name in VARIABLES:
        if name in ds:
            encoding[name] = {"_FillValue": np.float32(np.nan), "chunks": chunks}
    return encoding


def _next_version_name(folder: Path) -> str:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return f"v{max(numbers, default=0) + 1:06d}"


def _write_version(
    cube_path: Path,
    current: Path | None,
    layers: list[Layer],
    grid: CubeGrid,
    attrs: dict[str, Any],
    chunks: tuple[int, int, int],
    record_type: type[PairRecord],
) -> Path:
    """Build the next version folder (complete, fsynced) and return it; the cube link is not touched."""
    folder = versions_dir(cube_path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _next_version_name(folder)
    first_changed = next(
        (i for i, layer in enumerate(layers) if not (isinstance(layer.source, int) and layer.source == i)),
        len(layers),
    )
    time_chunk = chunks[0]
    start = (first_changed // time_chunk) * time_chunk if current is not None else 0
    tmp = folder / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        ds = _layer_dataset(layers, grid, attrs, current is None, record_type)
        ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, encoding=_encoding(ds, chunks, record_type))
        if current is not None:
            for name in VARIABLES:
                _carry_array(current, tmp, name, len(layers), start // time_chunk)
        _checkpoint("before-data")
        _write_layers(tmp, current, layers, start, chunks)
        _checkpoint("before-metadata")
        consolidate(tmp)
        write_record(tmp, target, current, _layer_counts(current, layers), VARIABLES)
        _make_durable(tmp)
        tmp.rename(target)
        _fsync(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _layer_counts(current: Path | None, layers: list[Layer]) -> dict[str, LayerCounts]:
    """Valid cells per variable of each layer: counted in its product when it is new, carried from the current
    version's record otherwise (counted in the current version once, for a version without a record)."""
    previous = (read_record(current) or {}).get("layers", {}) if current is not None else {}
    counts: dict[str, LayerCounts] = {}
    for layer in layers:
        if isinstance(layer.source, Path):
            counts[layer.pair_id] = valid_counts({v: _array(layer.source, v, "r")[...] for v in VARIABLES})
        elif layer.pair_id in previous:
            counts[layer.pair_id] = dict(previous[layer.pair_id])
        elif current is not None:
            counts[layer.pair_id] = valid_counts({v: _array(current, v, "r")[layer.source] for v in VARIABLES})
    return counts


def _make_durable(root: Path) -> None:
    """Flush the new version to disk before it is published, so a power cut cannot publish a partial one.

    One ``syncfs(2)`` of the file system where the kernel offers it (Linux); otherwise an fsync of every file
    written here and of every folder (which makes the hard links durable). fsyncing each linked chunk file
    instead would cost a journal commit per chunk (its link count changed): O(cube) per insert.
    """
    if _syncfs(root):
        return
    for path in root.rglob("*"):
        if path.is_dir() or path.stat().st_nlink == 1:
            _fsync(path)
    _fsync(root)


def _syncfs(path: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``path``; False where it is not available."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return bool(call(fd) == 0)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _carry_array(old: Path, new: Path, name: str, n_layers: int, keep_time_chunks: int) -> None:
    """Create array ``name`` in ``new`` like the old one (grown to ``n_layers``) and link its unchanged chunks."""
    (new / name).mkdir()
    shutil.copyfile(old / name / "zarr.json", new / name / "zarr.json")
    array = _array(new, name, "r+")
    array.resize((n_layers, *array.shape[1:]))
    meta = json.loads((old / name / "zarr.json").read_text(encoding="utf-8"))
    if meta.get("chunk_key_encoding") != {"name": "default", "configuration": {"separator": "/"}}:
        raise CubeError(f"cube array {old / name} has an unexpected chunk key encoding; rebuild the cube")
    for t in range(keep_time_chunks):
        source = old / name / "c" / str(t)
        if source.is_dir():
            _link_tree(source, new / name / "c" / str(t))


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file under ``source`` into ``target`` (copy where the file system has no hard links)."""
    for path in source.rglob("*"):
        if not path.is_file():
            continue
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)


def _write_layers(new: Path, old: Path | None, layers: list[Layer], start: int, chunks: tuple[int, int, int]) -> None:
    """Write the 3-D data of layers ``start:`` into ``new``, block by block (time chunk x row band of chunks)."""
    time_chunk, row_band = chunks[0], chunks[1]
    written = False
    for name in VARIABLES:
        array = _array(new, name, "r+")
        old_array = _array(old, name, "r") if old is not None else None
        products = {la.source: _array(la.source, name, "r") for la in layers[start:] if isinstance(la.source, Path)}
        ny, nx = array.shape[1:]
        for t0 in range(start, len(layers), time_chunk):
            block_layers = layers[t0 : t0 + time_chunk]
            old_rows = [la.source for la in block_layers if isinstance(la.source, int)]
            for y0 in range(0, ny, row_band):
                y1 = min(y0 + row_band, ny)
                block = np.full((len(block_layers), y1 - y0, nx), np.nan, dtype=np.float32)
                if old_rows and old_array is not None:
                    first = min(old_rows)
                    old_block = np.asarray(old_array[first : max(old_rows) + 1, y0:y1, :])
                    for j, layer in enumerate(block_layers):
                        if isinstance(layer.source, int):
                            block[j] = old_block[layer.source - first]
                for j, layer in enumerate(block_layers):
                    if isinstance(layer.source, Path):
                        block[j] = np.asarray(products[layer.source][y0:y1, :])
                array[t0 : t0 + len(block_layers), y0:y1, :] = block
                if not written:
                    written = True
                    _checkpoint("during-data")


def _array(store: Path, name: str, mode: Literal["r", "r+"]) -> zarr.Array[Any]:
    return zarr.open_array(str(store / name), mode=mode, zarr_format=3)


def _swap_link(cube_path: Path, version: Path) -> None:
    """Point the cube link at ``version`` with one atomic rename."""
    link = cube_path.with_name(f"{TMP_PREFIX}{cube_path.name}-{uuid.uuid4().hex[:8]}")
    link.symlink_to(os.path.relpath(version, cube_path.parent))
    _checkpoint("before-swap")  # the new version and a temporary link exist; the cube link is unchanged
    try:
        link.replace(cube_path)  # rename(2): atomic, readers see the old link or the new one
    except OSError as err:
        link.unlink(missing_ok=True)
        raise CubeError(f"cannot update the cube link {cube_path}: {err}") from err
    _fsync(cube_path.parent)


def _remove_garbage(cube_path: Path, current: Path | None) -> None:
    """Delete what killed writers left: temporary folders and links, and versions newer than the current one."""
    folder = versions_dir(cube_path)
    for leftover in remove_stale_temporaries(folder):
        log.info("removed leftover %s of an interrupted cube write", leftover)
    ours = re.compile(rf"{re.escape(TMP_PREFIX + cube_path.name)}-[0-9a-f]{{8}}")  # not another cube's links
    for link in cube_path.parent.glob(f"{TMP_PREFIX}{cube_path.name}-*"):
        if ours.fullmatch(link.name):
            link.unlink(missing_ok=True)
    if not folder.is_dir():
        return
    remove_orphan_records(folder)
    current_number = _version_number(current) if current is not None else 0
    for path in folder.iterdir():
        number = _version_number(path)
        if number is not None and current_number is not None and number > current_number:
            log.info("removing unpublished cube version %s of an interrupted write", path.name)
            shutil.rmtree(path, ignore_errors=True)


def _prune_versions(cube_path: Path, current: Path) -> None:
    """Keep the current version and the :data:`KEEP_PREVIOUS_VERSIONS` before it; delete older ones."""
    folder = versions_dir(cube_path)
    current_number = _version_number(current) or 0
    older = sorted(
        (p for p in folder.iterdir() if (n := _version_number(p)) is not None and n < current_number),
        key=lambda p: p.name,
    )
    for path in older[: max(len(older) - KEEP_PREVIOUS_VERSIONS, 0)]:
        shutil.rmtree(path, ignore_errors=True)
    remove_orphan_records(folder)


def _version_number(path: Path | None) -> int | None:
    match = _VERSION.match(path.name) if path is not None else None
    return int(match.group(1)) if match else None
