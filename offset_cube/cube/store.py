"""The velocity cube: a Zarr v3 store (dims ``mid_date, y, x``) that grows safely, one writer at a time. This module
merges new pair products into the next version; :mod:`.schema` defines what a version holds, :mod:`.versions`
where versions live and how the link to the current one is swapped, :mod:`.durability` how a version reaches the
disk before it is published.

**Cheap copies.** A new version hard-links every chunk file that did not change from the previous version and
writes only the rest (with a copy as fallback where hard links are not supported). Layers are sorted by
``mid_date``, so a layer inserted at position ``p`` shifts every later layer: the time chunks from ``p //
TIME_CHUNK`` on are rewritten, the earlier ones are linked. The usual insert (new acquisitions) touches only the
last time chunk; a backfill of old pairs rewrites the tail after its oldest pair once per insert call, however
many pairs it brings. Icechunk would give the same transactions, but its stores cannot be opened with plain
``xarray.open_zarr`` (and planning reads the cube that way), so plain Zarr plus a link it is.

**Writers** take an exclusive lock first (:mod:`offset_cube.cube.lock`). Inserting a pair already present does
nothing unless ``replace=True``, which rewrites its layer in place (and says so in the report).
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
import zarr

from offset_cube.atomic import TMP_PREFIX
from offset_cube.config import JobConfig
from offset_cube.conventions import PairRecord
from offset_cube.cube import durability
from offset_cube.cube.durability import checkpoint, link_tree, make_durable
from offset_cube.cube.grid import CubeGrid, grid_for_job
from offset_cube.cube.integrity import LayerCounts, damage, read_record, valid_counts, write_record
from offset_cube.cube.layers import layer_records
from offset_cube.cube.lock import CubeLock
from offset_cube.cube.product import VARIABLES, read_product
from offset_cube.cube.schema import SPACE_CHUNK, TIME_CHUNK, Layer, cube_encoding, global_attrs, layer_dataset
from offset_cube.cube.versions import (
    current_version,
    lock_path,
    next_version_name,
    prune_versions,
    read_cube_grid,
    remove_garbage,
    swap_link,
    versions_dir,
)
from offset_cube.cube.zarrio import consolidate, open_dataset
from offset_cube.errors import CubeError

log = logging.getLogger(__name__)


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


def job_grid(job: JobConfig) -> CubeGrid:
    """The job's cube grid, refused when it disagrees with the existing cube (area, CRS, spacing)."""
    return grid_for_cube(job.storage.cube_path, grid_for_job(job.area, job.grid), job.area)


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
        checkpoint("after-lock")
        current = current_version(cube_path)
        remove_garbage(cube_path, current)
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
        attrs = global_attrs(old_attrs, grid, area_wkt, job_config, chunks)
        version = _write_version(cube_path, current, layers, grid, attrs, chunks, record_type)
        swap_link(cube_path, version)
        checkpoint("after-swap")
        prune_versions(cube_path, version)
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


def default_chunks(grid: CubeGrid) -> tuple[int, int, int]:
    """Chunk shape (mid_date, y, x) of the 3-D variables of a new cube on ``grid``."""
    return (TIME_CHUNK, min(SPACE_CHUNK, grid.ny), min(SPACE_CHUNK, grid.nx))


def _chunks_of(version: Path) -> tuple[int, int, int]:
    """The chunk shape an existing cube was created with (it, not today's defaults, governs its updates)."""
    chunks = _array(version, "v", "r").chunks
    return (int(chunks[0]), int(chunks[1]), int(chunks[2]))


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
    target = folder / next_version_name(folder)
    first_changed = next(
        (i for i, layer in enumerate(layers) if not (isinstance(layer.source, int) and layer.source == i)),
        len(layers),
    )
    time_chunk = chunks[0]
    start = (first_changed // time_chunk) * time_chunk if current is not None else 0
    tmp = folder / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    try:
        ds = layer_dataset(layers, grid, attrs, current is None, record_type)
        ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, encoding=cube_encoding(ds, chunks, record_type))
        if current is not None:
            for name in VARIABLES:
                _carry_array(current, tmp, name, len(layers), start // time_chunk)
        checkpoint("before-data")
        _write_layers(tmp, current, layers, start, chunks)
        checkpoint("before-metadata")
        consolidate(tmp)
        write_record(tmp, target, current, _layer_counts(current, layers), VARIABLES)
        make_durable(tmp)
        tmp.rename(target)
        durability.fsync(folder)
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
        elif current is not None:  # a variable the old version lacks is carried as all-NaN: 0 valid cells
            present = [v for v in VARIABLES if (current / v).is_dir()]
            counts[layer.pair_id] = valid_counts({v: _array(current, v, "r")[layer.source] for v in present})
            counts[layer.pair_id].update({v: 0 for v in VARIABLES if v not in present})
    return counts


def _carry_array(old: Path, new: Path, name: str, n_layers: int, keep_time_chunks: int) -> None:
    """Create array ``name`` in ``new`` like the old one (grown to ``n_layers``) and link its unchanged chunks.

    A cube written before ``name`` existed (e.g. the per-cell errors) gets it as a new all-NaN array.
    """
    if not (old / name / "zarr.json").is_file():
        template = _array(old, "vx", "r")
        created = zarr.create_array(
            str(new / name),
            shape=(n_layers, *template.shape[1:]),
            chunks=template.chunks,
            dtype=np.float32,
            fill_value=np.float32(np.nan),
            dimension_names=("mid_date", "y", "x"),
            attributes={**VARIABLES[name], "grid_mapping": "mapping"},
        )
        log.info("cube: new variable %s (NaN for the %d existing layers)", name, created.shape[0])
        return
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
            link_tree(source, new / name / "c" / str(t))


def _write_layers(new: Path, old: Path | None, layers: list[Layer], start: int, chunks: tuple[int, int, int]) -> None:
    """Write the 3-D data of layers ``start:`` into ``new``, block by block (time chunk x row band of chunks)."""
    time_chunk, row_band = chunks[0], chunks[1]
    written = False
    for name in VARIABLES:
        array = _array(new, name, "r+")
        old_array = _array(old, name, "r") if old is not None and (old / name / "zarr.json").is_file() else None
        products = {
            la.source: _array(la.source, name, "r")
            for la in layers[start:]
            if isinstance(la.source, Path) and (la.source / name / "zarr.json").is_file()
        }
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
                    if isinstance(layer.source, Path) and layer.source in products:
                        block[j] = np.asarray(products[layer.source][y0:y1, :])
                array[t0 : t0 + len(block_layers), y0:y1, :] = block
                if not written:
                    written = True
                    checkpoint("during-data")


def _array(store: Path, name: str, mode: Literal["r", "r+"]) -> zarr.Array[Any]:
    return zarr.open_array(str(store / name), mode=mode, zarr_format=3)
