"""Cube benchmarks: read patterns under three chunkings, and insert costs of the versioned store.

Run: ``.venv/bin/python bench/cube_bench.py [--layers 48] [--size 256]``. Prints times and ratios against a
baseline measured in the same process (timings on a shared machine vary; the ratios are what to compare).

1. Reads. The same synthetic float32 cube (30 % NaN) is stored with
   - ours ``(16, 128, 128)``: balanced between maps and time series;
   - smaller ``(16, 64, 64)``: time series ~2x faster, maps ~1.4x slower, 4x more chunk files;
   - ITS_LIVE ``(min(n, 20000), 10, 10)``: time-series chunks;
   - per-layer ``(1, ny, nx)``: map chunks.
   Each is read as whole maps (one layer) and as pixel time series (all layers at one cell).
2. Inserts into the versioned store (offset_cube.cube.store): an append at the end (the 12-day routine), a
   backfill at the start (rewrites every layer), against building the whole cube anew; and the lock's cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from offset_cube.conventions import PairRecord
from offset_cube.cube.grid import CubeGrid
from offset_cube.cube.lock import CubeLock
from offset_cube.cube.product import VARIABLES, write_mapping
from offset_cube.cube.store import insert_products
from offset_cube.cube.zarrio import write_dataset
from offset_cube.result import result_attrs

AREA = "POLYGON((99 -70.2, 101 -70.2, 101 -69.8, 99 -69.8, 99 -70.2))"


def read_maps(array: Any, layers: np.ndarray) -> None:
    """Read whole map layers (one time step each)."""
    for t in layers:
        np.asarray(array[int(t)])


def read_series(array: Any, pixels: np.ndarray) -> None:
    """Read whole pixel time series."""
    for r, c in pixels:
        np.asarray(array[:, int(r), int(c)])


def take_lock(path: Path) -> None:
    """Acquire and release the cube lock once."""
    with CubeLock(path, 1.0):
        pass


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` runs, seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_reads(folder: Path, layers: int, size: int, rng: np.random.Generator) -> None:
    data = rng.normal(300.0, 50.0, (layers, size, size)).astype(np.float32)
    data[rng.random(data.shape) < 0.3] = np.nan
    layouts = {
        "ours (16,128,128)": (16, 128, 128),
        "smaller (16,64,64)": (16, 64, 64),
        f"ITS_LIVE ({min(layers, 20000)},10,10)": (min(layers, 20000), 10, 10),
        f"per-layer (1,{size},{size})": (1, size, size),
    }
    arrays = {}
    for name, chunks in layouts.items():
        chunks = (min(chunks[0], layers), min(chunks[1], size), min(chunks[2], size))
        array = zarr.create_array(
            str(folder / name.split()[0]), shape=data.shape, chunks=chunks, dtype="float32", fill_value=np.nan
        )
        array[:] = data
        arrays[name] = array
    maps = rng.integers(0, layers, 8)
    pixels = rng.integers(0, size, (8, 2))
    results = {}
    for name, array in arrays.items():
        map_s = timed(functools.partial(read_maps, array, maps), 3) / len(maps)
        series_s = timed(functools.partial(read_series, array, pixels), 3) / len(pixels)
        results[name] = (map_s, series_s)
    base_map, base_series = results[next(iter(results))]
    print(f"\nreads of a {layers} x {size} x {size} float32 cube (best of 3; ratio = time / ours)")
    print(f"{'chunking':28s} {'map read':>12s} {'ratio':>7s} {'time series':>13s} {'ratio':>7s}")
    for name, (map_s, series_s) in results.items():
        print(
            f"{name:28s} {map_s * 1e3:9.2f} ms {map_s / base_map:7.2f} "
            f"{series_s * 1e3:10.2f} ms {series_s / base_series:7.2f}"
        )


def fake_product(folder: Path, grid: CubeGrid, day: int, rng: np.random.Generator) -> Path:
    """A product store on ``grid`` with random values (the cube reads only its variables and attributes)."""
    ref = dt.datetime(2020, 1, 1, 3) + dt.timedelta(days=day)
    sec = ref + dt.timedelta(days=12)
    pair_id = f"{ref:%Y%m%d}_{sec:%Y%m%d}_t012"
    shape = grid.shape
    data = {name: (("y", "x"), rng.normal(100, 10, shape).astype(np.float32)) for name in VARIABLES}
    data["valid"] = (("y", "x"), np.ones(shape, np.uint8))
    data["invalid_reason"] = (("y", "x"), np.zeros(shape, np.uint8))
    ds = write_mapping(xr.Dataset(data, coords={"y": grid.y, "x": grid.x}), grid)
    ds.attrs = {
        **result_attrs(
            PairRecord(
                pair_id=pair_id,
                track=12,
                direction="ASCENDING",
                engine="builtin",
                reference_time=ref.isoformat() + "Z",
                secondary_time=sec.isoformat() + "Z",
                dt_days=12.0,
                reference_granules=("REF",),
                secondary_granules=("SEC",),
                orbit_type="POEORB",
                polarization="HH",
                processing_parameters={},
            ),
            grid="radar",
        ),
        "valid_percentage": 100.0,
        **grid.to_attrs(),
    }
    path = folder / f"{pair_id}.zarr"
    write_dataset(ds, path)
    return path


def bench_inserts(folder: Path, layers: int, size: int, rng: np.random.Generator) -> None:
    grid = CubeGrid(crs="EPSG:3031", spacing_m=120.0, x_min=2_100_000.0, y_max=-300_000.0, nx=size, ny=size)
    products = [fake_product(folder / "products", grid, 12 * (i + 1), rng) for i in range(layers)]
    early = fake_product(folder / "products", grid, 0, rng)
    late = fake_product(folder / "products", grid, 12 * (layers + 1), rng)

    def fresh(name: str, items: list[Path]) -> Path:
        cube = folder / name / "cube.zarr"
        shutil.rmtree(cube.parent, ignore_errors=True)
        insert_products(cube, items, grid=grid, area_wkt=AREA)
        return cube

    base = fresh("base", products)

    def insert_into_copy(product: Path) -> float:
        copy = folder / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base.parent, copy, symlinks=True)
        start = time.perf_counter()
        insert_products(copy / "cube.zarr", [product], grid=grid, area_wkt=AREA)
        return time.perf_counter() - start

    full = timed(lambda: fresh("full", [*products, late]), 2)
    append = min(insert_into_copy(late) for _ in range(2))
    backfill = min(insert_into_copy(early) for _ in range(2))
    lock = timed(functools.partial(take_lock, folder / "bench.lock"), 50)
    print(f"\ninserts into a cube of {layers} layers of {size} x {size} (ratio = time / full rebuild)")
    print(f"{'full rebuild, ' + str(layers + 1) + ' layers':34s} {full:8.2f} s {1.0:7.2f}")
    print(f"{'append 1 layer (newest pair)':34s} {append:8.2f} s {append / full:7.2f}")
    print(f"{'insert 1 layer first (backfill)':34s} {backfill:8.2f} s {backfill / full:7.2f}")
    print(f"lock acquire + release: {lock * 1e6:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print("timings on a machine that may be shared with other work; compare the ratios")
    with tempfile.TemporaryDirectory(prefix="cube-bench-") as tmp:
        bench_reads(Path(tmp), args.layers, args.size, rng)
        bench_inserts(Path(tmp), args.layers, args.size, rng)


if __name__ == "__main__":
    main()
