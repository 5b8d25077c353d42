"""Crash safety and concurrency of cube writes, with real writer processes (tests/cube_writer.py).

A writer SIGKILLs itself at a named point of an insert (``OFFSET_CUBE_CRASH_AT``, see offset_cube.cube.store);
the cube must then open with exactly its previous layers, the lock must be free, and a rerun must complete the
insert and clear the leftovers. Two writers released together must both land.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from offset_cube.cube import integrity, store
from offset_cube.cube.durability import CRASH_ENV, CRASH_POINTS
from offset_cube.cube.lookup import existing_pair_ids
from offset_cube.cube.product import read_product
from offset_cube.cube.store import insert_products
from offset_cube.cube.versions import open_cube, versions_dir
from tests.conftest import ROOT
from tests.cube_synth import SOUTH_AREA, make_products, south_grid

WRITER_DEADLINE_S = 120


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """Products A-D and a base cube holding A and C in time chunks of 2 layers."""
    folder = tmp_path_factory.mktemp("crash")
    products = make_products(folder / "products", ["A", "B", "C", "D"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "TIME_CHUNK", 2)
        insert_products(
            folder / "base" / "cube.zarr", [products["A"], products["C"]], grid=south_grid(), area_wkt=SOUTH_AREA
        )
    return folder / "base", products


def copy_cube(base: Path, target: Path) -> Path:
    shutil.copytree(base, target, symlinks=True)
    return target / "cube.zarr"


def writer(cube: Path, products: list[Path], crash_at: str | None = None, wait: bool = False) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    args = [sys.executable, "-m", "tests.cube_writer", str(cube), *map(str, products)]
    return subprocess.Popen(
        [*args, "--wait-stdin"] if wait else args,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ids(products: dict[str, Path], *names: str) -> set[str]:
    return {str(read_product(products[n]).attrs["pair_id"]) for n in names}


def check_layers(cube: Path, products: dict[str, Path], names: tuple[str, ...]) -> None:
    """The cube opens with plain xarray, holds exactly ``names`` in time order, each with its product's data."""
    with xr.open_zarr(cube) as ds:
        pair_ids = [str(p) for p in ds["pair_id"].values]
        assert pair_ids == sorted(ids(products, *names))  # ids start with the dates: sorted = time order
        assert np.all(np.diff(ds["mid_date"].values) > np.timedelta64(0, "ns"))
    with open_cube(cube) as ds:
        for name in names:
            pid = str(read_product(products[name]).attrs["pair_id"])
            data = ds["vx"].isel(mid_date=pair_ids.index(pid)).values
            assert np.array_equal(data, read_product(products[name])["vx"].values, equal_nan=True)


def leftovers(cube: Path) -> list[str]:
    names = [p.name for p in versions_dir(cube).iterdir() if p.name.startswith(".tmp-")]
    return names + [p.name for p in cube.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_writer_killed_anywhere_leaves_the_previous_cube_and_a_rerun_completes(
    tmp_path: Path, setup: tuple[Path, dict[str, Path]], point: str
) -> None:
    base, products = setup
    cube = copy_cube(base, tmp_path / "out")
    proc = writer(cube, [products["B"]], crash_at=point)  # B lands between A and C: a rewrite along mid_date
    _, err = proc.communicate(timeout=WRITER_DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL, err

    published = point == "after-swap"  # killed after the link swap: the insert had already happened
    check_layers(cube, products, ("A", "B", "C") if published else ("A", "C"))
    assert existing_pair_ids(cube) == (ids(products, "A", "B", "C") if published else ids(products, "A", "C"))

    started = time.monotonic()
    report = insert_products(cube, [products["B"]], grid=south_grid(), area_wkt=SOUTH_AREA, lock_timeout_s=10)
    assert time.monotonic() - started < 10  # the dead writer's lock did not have to time out
    assert report.added == (() if published else tuple(ids(products, "B")))
    check_layers(cube, products, ("A", "B", "C"))
    assert leftovers(cube) == []
    numbers = sorted(p.name for p in versions_dir(cube).iterdir() if p.is_dir())
    assert cube.resolve().name == numbers[-1]
    with open_cube(cube) as ds:
        order = [str(p) for p in ds["pair_id"].values]
    assert integrity.verify(cube.resolve(), order).ok  # the record matches what the surviving writer built


def test_two_concurrent_writers_both_land(tmp_path: Path, setup: tuple[Path, dict[str, Path]]) -> None:
    base, products = setup
    cube = copy_cube(base, tmp_path / "out")
    procs = [writer(cube, [products[name]], wait=True) for name in ("B", "D")]
    for proc in procs:  # both started and imported; release them together
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=WRITER_DEADLINE_S)
        assert proc.returncode == 0, err
        assert out.startswith("added ")
    check_layers(cube, products, ("A", "B", "C", "D"))
    assert leftovers(cube) == []
