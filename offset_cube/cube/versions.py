"""Versions and the link: where a cube's immutable versions live, which one is current, and how the link to it is
swapped, leftovers removed and old versions pruned.

**Layout: immutable versions behind one link.** ``<cube>`` (e.g. ``cube.zarr``) is a symbolic link to the current
version ``<cube>.versions/vNNNNNN``, a complete Zarr v3 store that is never modified once published. An insert
builds the next version beside it under a temporary name, flushes it to disk, renames it, and then swaps the
link with one atomic ``rename``. Readers therefore see the old cube or the new one, never a half-written one, and
a writer killed at any point leaves the link on the previous version; the next writer deletes the leftovers.
``xarray.open_zarr("cube.zarr")`` opens the current version. A long-lived reader that must not see a concurrent
update can open ``Path("cube.zarr").resolve()`` (a fixed version; the last :data:`KEEP_PREVIOUS_VERSIONS` old
versions are kept for such readers).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

import xarray as xr

from offset_cube.atomic import TMP_PREFIX, remove_stale_temporaries
from offset_cube.cube import durability
from offset_cube.cube.grid import CubeGrid
from offset_cube.cube.integrity import remove_orphan_records
from offset_cube.cube.zarrio import open_dataset
from offset_cube.errors import CubeError

log = logging.getLogger(__name__)

KEEP_PREVIOUS_VERSIONS = 2
_VERSION = re.compile(r"^v(\d{6})$")


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


def next_version_name(folder: Path) -> str:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return f"v{max(numbers, default=0) + 1:06d}"


def swap_link(cube_path: Path, version: Path) -> None:
    """Point the cube link at ``version`` with one atomic rename."""
    link = cube_path.with_name(f"{TMP_PREFIX}{cube_path.name}-{uuid.uuid4().hex[:8]}")
    link.symlink_to(os.path.relpath(version, cube_path.parent))
    durability.checkpoint("before-swap")  # the new version and a temporary link exist; the cube link is unchanged
    try:
        link.replace(cube_path)  # rename(2): atomic, readers see the old link or the new one
    except OSError as err:
        link.unlink(missing_ok=True)
        raise CubeError(f"cannot update the cube link {cube_path}: {err}") from err
    durability.fsync(cube_path.parent)


def remove_garbage(cube_path: Path, current: Path | None) -> None:
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
    current_number = version_number(current) if current is not None else 0
    for path in folder.iterdir():
        number = version_number(path)
        if number is not None and current_number is not None and number > current_number:
            log.info("removing unpublished cube version %s of an interrupted write", path.name)
            shutil.rmtree(path, ignore_errors=True)


def prune_versions(cube_path: Path, current: Path) -> None:
    """Keep the current version and the :data:`KEEP_PREVIOUS_VERSIONS` before it; delete older ones."""
    folder = versions_dir(cube_path)
    current_number = version_number(current) or 0
    older = sorted(
        (p for p in folder.iterdir() if (n := version_number(p)) is not None and n < current_number),
        key=lambda p: p.name,
    )
    for path in older[: max(len(older) - KEEP_PREVIOUS_VERSIONS, 0)]:
        shutil.rmtree(path, ignore_errors=True)
    remove_orphan_records(folder)  # integrity records of pruned versions


def version_number(path: Path | None) -> int | None:
    match = _VERSION.match(path.name) if path is not None else None
    return int(match.group(1)) if match else None
