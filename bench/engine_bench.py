"""Benchmark of the built-in engine on one simulated pair per area size: seconds per stage and peak memory.

For each area side (km) a two-date stack of the demo template is simulated (cached under ``--cache``), and one
fresh process runs the engine on the pair (``run_builtin``) under cProfile. The stages are the engine's own
functions, timed inclusively: ``open_date`` (manifests, annotations, orbits), ``build_radar_grid`` (burst
layout), ``layout_pair`` (predicted geometry at every window centre), ``track_offsets`` (tracking, reads
included), ``write_pair_result``, and ``RadarGrid.read`` (pixels read from the SAFE and deramped, summed over
the tracker's threads, so it can exceed its share of the wall time).
Peak RSS is the child's high-water mark (``ru_maxrss``), start-up included.

``PYTHONPATH=. python3 bench/engine_bench.py --areas 4,8 [--cache DIR] [--json-out FILE]``. The simulator
takes areas of 1 to 70 km. Timings on a shared machine vary with its load, which is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
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
        config = SimulationConfig(template=DEMO_TEMPLATE, dates=2, area_m=(1000 * area_km, 1000 * area_km), seed=3)
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
    return {
        "windows": int(ds["azimuth_offset"].size),
        "seconds": total,
        "stages": stages,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


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
    parser.add_argument("--areas", type=lambda s: [float(v) for v in s.split(",")], default=[4.0, 8.0])
    parser.add_argument("--cache", default="bench-cache", help="folder for the simulated stacks")
    parser.add_argument("--window", default="64x32", help="WIDTHxHEIGHT")
    parser.add_argument("--skip", default="64x32", help="WIDTHxHEIGHT")
    parser.add_argument("--mode", default="amplitude")
    parser.add_argument("--json-out")
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
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        row = {"area_km": area, "simulate_s": simulated, **json.loads(output.strip().splitlines()[-1])}
        rows.append(row)
        stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in row["stages"].items())
        print(
            f"{area:g} km: {row['windows']} windows, engine {row['seconds']:.1f} s ({stages}), "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB"
        )
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
