"""Benchmark of the built-in engine on one simulated pair per area size: seconds per stage and peak memory.

For each area side (km) a two-date stack of the demo template is simulated (cached under ``--cache``), and one
fresh process runs the engine on the pair (``run_builtin``) under cProfile. The stages are the engine's own
functions, timed inclusively: ``open_date`` (manifests, annotations, orbits), ``build_radar_grid`` (burst
layout), ``layout_pair`` (predicted geometry at every window centre), ``track_offsets`` (tracking, reads
included), ``write_pair_result``, and ``RadarGrid.read`` (pixels read from the SAFE and deramped, summed over
the tracker's threads, so it can exceed its share of the wall time).
Peak RSS is the child's high-water mark (``ru_maxrss``), start-up included; CPU seconds are the child's (all
threads), the figure to compare across areas on a shared machine. ``--swath-cost`` also times reading a
real-size swath TIFF (1.37 GB) from a zip against the unpacked file (:func:`swath_cost`).

``PYTHONPATH=. python3 bench/engine_bench.py --areas 8,16,32,64 [--cache DIR] [--swath-cost] [--json-out FILE]``.
The simulator takes areas of 1 to 70 km (64 km: ~6 GB and tens of CPU-minutes, once; the stacks are cached).
Timings on a shared machine vary with its load, which is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (stage, function name as cProfile records it, source file suffix)
STAGES = [
    ("open dates", "open_date", "geometry/acquisition.py"),
    ("burst layout", "build_radar_grid", "builtin/radargrid.py"),
    ("predict geometry", "layout_pair", "builtin/engine.py"),
    ("track (reads included)", "track_offsets", "tracking/tracker.py"),
    ("write result", "write_pair_result", "result.py"),
]


def simulate(area_km: float, cache: Path) -> Path:
    """A two-date stack over a square area of ``area_km`` (cached), described in ``stack.json``."""
    from offset_cube.simulate import DEMO_TEMPLATE
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack

    folder = cache / f"stack_{area_km:g}km"
    if not (folder / "stack.json").exists():
        # The DEM must cover the radar crop, whose corners reach ~0.17 x the side beyond a map-square area (the
        # track's heading turns the crop by ~10 degrees): 11 km at 64 km, more than the default 8 km margin.
        config = SimulationConfig(
            template=DEMO_TEMPLATE,
            dates=2,
            area_m=(1000 * area_km, 1000 * area_km),
            seed=3,
            dem_margin_m=max(8000.0, 250.0 * area_km),
        )
        stack = simulate_stack(config, folder)
        description = {
            "area_wkt": stack.area_wkt,
            "height_m": stack.height_m,
            "scene_dir": str(stack.scene_dir),
            "products": [str(d.product) for d in stack.dates],
            "orbit_files": [str(d.orbit_file) for d in stack.dates],
        }
        (folder / "stack.json").write_text(json.dumps(description))
    return folder


def child(folder: Path, tracking: dict[str, Any]) -> dict[str, Any]:
    """Run the engine on the stack's pair under cProfile; stage seconds, windows, peak RSS."""
    from offset_cube.builtin.engine import run_builtin
    from offset_cube.config import job_from_dict
    from offset_cube.planning import Pair, make_acquisitions, search_window
    from offset_cube.result import read_pair_result
    from offset_cube.search import local_scene
    from offset_cube.stages import OrbitFile, PairInputs

    stack = json.loads((folder / "stack.json").read_text())
    raw = {
        "area": stack["area_wkt"],
        "start": "2014-10-03",
        "search": f"local:{stack['scene_dir']}",
        "tracking": tracking,
        "dem": str(folder / "dem.tif"),  # the simulated terrain (ellipsoidal heights)
        "storage": {"out": str(folder / "out")},
    }
    job = job_from_dict(raw)
    # Each run is a scene's first pair: the measurement TIFFs are unpacked from the zips again (the default
    # builtin.unpack_measurements), as the first of its pairs does; later pairs read the copies.
    shutil.rmtree(job.storage.unpacked_dir, ignore_errors=True)
    products = [Path(p) for p in stack["products"]]
    scenes = [local_scene(p) for p in products]
    ref, sec = make_acquisitions(scenes)[:2]
    dt_days = (sec.start - ref.start).total_seconds() / 86400
    pair = Pair(reference=ref, secondary=sec, search_px=search_window(job, dt_days)[0])
    orbits = [
        OrbitFile(product_id=scene.product_id, orbit_type="POEORB", path=Path(path))
        for scene, path in zip(scenes, stack["orbit_files"], strict=True)
    ]
    inputs = PairInputs(
        pair=pair,
        pair_dir=folder / "out" / pair.pair_id,
        reference_safes=(products[0],),
        secondary_safes=(products[1],),
        reference_orbits=(orbits[0],),
        secondary_orbits=(orbits[1],),
    )
    reading = _time_grid_reads()
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    result = run_builtin(inputs, job)
    profile.disable()
    total = time.perf_counter() - started
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    stages = {}
    for stage, function, suffix in STAGES:
        stages[stage] = sum(
            cumulative
            for (path, _, name), (_, _, _, cumulative, _) in stats.items()
            if name == function and path.endswith(suffix)
        )
    stages["read + deramp (in tracking)"] = reading[0]
    ds = read_pair_result(result)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    crop = json.loads(ds.attrs["processing_parameters"])["reference_crop"]
    return {
        "windows": int(ds["azimuth_offset"].size),
        "crop_lines_samples": crop[2:],
        "seconds": total,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # the whole child (start-up included), all threads
        "stages": stages,
        "peak_rss_mib": _peak_rss_mib(usage),
        "load": os.getloadavg()[0],
    }


def _peak_rss_mib(usage: resource.struct_rusage) -> float:
    """This process's own peak RSS: VmHWM of /proc/self/status, else ``ru_maxrss``.

    On Linux ``ru_maxrss`` survives ``exec``: a child started by a parent that had just simulated a stack (several
    GB resident) reported the parent's high-water mark (2.8 GB for the 32 km engine, 0.7 GB when run again from a
    small parent). VmHWM belongs to the child's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return usage.ru_maxrss / 1024


#: A real IW SLC swath's measurement TIFF: ~9 bursts x 1 500 lines x 25 389 samples of complex int16, 1.37 GB.
SWATH_SHAPE = (13_500, 25_389)
SWATH_MEMBER = "S1A_SIMULATED.SAFE/measurement/s1a-iw2-slc-vv-swath-001.tiff"


def swath_cost(cache: Path, shape: tuple[int, int] = SWATH_SHAPE, block_lines: int = 128) -> dict[str, float]:
    """What one real-size swath costs to read from a SAFE zip: a dense, speckle-like (normal, 60 DN per
    component) complex int16 TIFF of :data:`SWATH_SHAPE` in strips, as real measurement TIFFs, deflated into a
    zip (zlib's default level 6; real SAFE zips are deflated too) and read with the engine's own reader
    (GDAL ``/vsizip/``, :func:`offset_cube.safe.product.read_tiff_window`)."""
    import zipfile

    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from offset_cube.safe.product import open_tiff, read_tiff_window

    folder = cache / "swath"
    folder.mkdir(parents=True, exist_ok=True)
    plain, archive = folder / "swath.tiff", folder / "swath.zip"
    lines, samples = shape
    if not archive.exists():
        rng = np.random.default_rng(0)
        profile = {"driver": "GTiff", "dtype": "complex_int16", "width": samples, "height": lines, "count": 1}
        with rasterio.open(plain, "w", **profile) as ds:
            for r0 in range(0, lines, 500):
                n = min(500, lines - r0)
                data = np.empty((n, samples), dtype=np.complex64)
                data.real = np.round(rng.normal(0.0, 60.0, (n, samples)))
                data.imag = np.round(rng.normal(0.0, 60.0, (n, samples)))
                ds.write(data, 1, window=Window(0, r0, samples, n))
        with zipfile.ZipFile(archive.with_suffix(".part"), "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            zf.write(plain, SWATH_MEMBER)
        archive.with_suffix(".part").rename(archive)
    location = f"/vsizip/{archive}/{SWATH_MEMBER}"
    burst = (max(lines - 1500, 0), lines)
    result: dict[str, float] = {
        "member_gb": plain.stat().st_size / 1e9,
        "zipped_gb": archive.stat().st_size / 1e9,
    }

    def timed(name: str, where: str, windows: list[tuple[int, int]]) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        if windows:
            dataset = open_tiff(where, where)
            try:
                for rows in windows:
                    read_tiff_window(dataset, rows, (0, samples), where)
            finally:
                dataset.close()
        else:  # the member inflated by zlib, nothing else
            with zipfile.ZipFile(archive) as zf, zf.open(SWATH_MEMBER) as member:
                while member.read(64 * 2**20):
                    pass
        result[f"{name}_s"] = time.perf_counter() - started
        result[f"{name}_cpu_s"] = time.process_time() - cpu

    blocks = [(r0, min(r0 + block_lines, lines)) for r0 in range(0, lines, block_lines)]
    timed("plain_last_burst", str(plain), [burst])
    timed("zip_last_burst", location, [burst])
    timed("plain_whole_in_blocks", str(plain), blocks)
    timed("zip_whole_in_blocks", location, blocks)
    timed("inflate_only", location, [])
    return result


def _time_grid_reads() -> list[float]:
    """Seconds spent in RadarGrid.read, summed over the tracker's worker threads (cProfile sees one thread)."""
    from offset_cube.builtin.radargrid import RadarGrid

    total = [0.0]
    lock = threading.Lock()
    real = RadarGrid.read

    def timed(self: RadarGrid, lines: tuple[int, int], samples: tuple[int, int]) -> Any:
        started = time.perf_counter()
        try:
            return real(self, lines, samples)
        finally:
            with lock:
                total[0] += time.perf_counter() - started

    RadarGrid.read = timed  # type: ignore[method-assign]
    return total


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--areas", type=lambda s: [float(v) for v in s.split(",") if v], default=[4.0, 8.0])
    parser.add_argument("--cache", default="bench-cache", help="folder for the simulated stacks")
    parser.add_argument("--window", default="64x32", help="WIDTHxHEIGHT")
    parser.add_argument("--skip", default="64x32", help="WIDTHxHEIGHT")
    parser.add_argument("--mode", default="amplitude")
    parser.add_argument("--json-out")
    parser.add_argument(
        "--swath-cost",
        action="store_true",
        help="also time reading a real-size (1.37 GB) swath TIFF from a zip against unpacked (cached, 2.6 GB)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    tracking = {
        "window": [int(v) for v in args.window.split("x")],
        "skip": [int(v) for v in args.skip.split("x")],
        "mode": args.mode,
    }
    if args.child:
        print(json.dumps(child(Path(args.child), tracking)))
        return []
    print(f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    for area in args.areas:
        started = time.perf_counter()
        folder = simulate(area, Path(args.cache).absolute())
        simulated = time.perf_counter() - started
        command = [sys.executable, __file__, "--child", str(folder), "--window", args.window, "--skip", args.skip]
        command += ["--mode", args.mode]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{area:g} km: the engine failed:\n{done.stderr[-3000:]}")
        output = done.stdout
        row = {"area_km": area, "simulate_s": simulated, **json.loads(output.strip().splitlines()[-1])}
        rows.append(row)
        stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in row["stages"].items())
        per_k = 1000 / max(row["windows"], 1)
        print(
            f"{area:g} km: {row['windows']} windows (crop {row['crop_lines_samples'][0]} x "
            f"{row['crop_lines_samples'][1]} px), engine {row['seconds']:.1f} s = {row['seconds'] * per_k:.2f} s "
            f"per 1000 windows, child CPU {row['cpu_s']:.1f} s = {row['cpu_s'] * per_k:.2f} s per 1000 windows "
            f"({stages}), peak RSS {row['peak_rss_mib']:.0f} MiB, load {row['load']:.1f}"
        )
    if args.swath_cost:
        cost = swath_cost(Path(args.cache).absolute())
        rows.append({"swath_cost": cost, "load": os.getloadavg()[0]})
        print("swath " + ", ".join(f"{name} {value:.2f}" for name, value in cost.items()))
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
