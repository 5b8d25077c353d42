"""Where the relief demo's velocity error comes from: tracker noise, shear margins, or the geometry.

Simulates the demo's valley stack (``offset-cube demo``'s defaults: 8 km, 4 dates, coherence 0.7) into ``--out``,
runs the demo's job on it (built-in engine, ``dem: auto`` from the simulator's terrain served as GLO-30 tiles)
through the real flow and prints

* per cube layer: median |vx|, |vy| error on moving ice (true speed >= 200 m/yr), over all of it, the glacier's
  interior (within 700 m of its centreline) and its shear margins (beyond 1000 m), and the coverage;
* per pair (radar grid, window centres): the azimuth and range offset noise on stable ground (px, 1 sigma) beside
  the flat-spectrum coherent Cramer-Rao bound (Bamler & Eineder 2005, IEEE GRSL 2(2):
  sigma = sqrt(3 / (2N)) * sqrt(1 - g^2) / (pi g) in resolution cells, N = w*h / (beta_rg * beta_az) cells,
  sigma_px = beta * sigma), and the error of the geometry alone: the simulator's true motion at each window
  (material advected along the terrain between the two dates' true orbits) converted with the engine's geometry.

Usage: ``PYTHONPATH=. python3 bench/relief_accuracy.py [--out DIR]`` (about 2 CPU-minutes; the machine's load
changes the time, not the figures, which are deterministic).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyproj import Proj, Transformer  # noqa: E402

from offset_cube.area import parse_area  # noqa: E402
from offset_cube.config import job_from_dict  # noqa: E402
from offset_cube.cube.velocity import velocity_from_result  # noqa: E402
from offset_cube.geometry.ellipsoid import ecef_to_geodetic, geodetic_to_ecef  # noqa: E402
from offset_cube.geometry.rangedoppler import geo2rdr, rdr2geo  # noqa: E402
from offset_cube.simulate import DEMO_TEMPLATE  # noqa: E402
from offset_cube.simulate.demo import DEMO_TRACKING, MOVING_ICE_M_PER_YR, accuracy, demo_job, describe  # noqa: E402
from offset_cube.simulate.flow import ValleyGlacier, advect  # noqa: E402
from offset_cube.simulate.stack import SimulatedStack, SimulationConfig, simulate_stack  # noqa: E402

INTERIOR_M, MARGIN_M = 700.0, 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="folder for the stack and the run (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relief-") as tmp:
        out = (args.out or Path(tmp)).absolute()
        stack = simulate_stack(SimulationConfig(template=DEMO_TEMPLATE, area_m=(8000.0, 8000.0)), out)
        from flows.cli.jobs import run_flow
        from flows.runtime import configure_prefect_env

        configure_prefect_env(out / ".prefect")  # offline, as the CLI runs it

        job = job_from_dict(demo_job(describe(stack)), base=out)  # its paths are relative to the stack
        state = run_flow(job)
        if not state.is_completed():
            sys.exit(f"the demo run failed: {state.message}")
        print(f"tracking {DEMO_TRACKING}, coherence {0.7}, moving ice: true speed >= {MOVING_ICE_M_PER_YR:g} m/yr")
        layers(stack, job.storage.cube_path)
        for path in sorted(job.storage.pairs_dir.glob("*/offsets.zarr")):
            pair(stack, path)


def layers(stack: SimulatedStack, cube_path: Path) -> None:
    """Median velocity errors per cube layer: all moving ice, the interior, the shear margins."""
    assert isinstance(stack.flow, ValleyGlacier)
    cube = xr.open_zarr(cube_path, consolidated=False)
    x, y = np.meshgrid(cube["x"].values, cube["y"].values)
    true_vx, true_vy = stack.flow.velocity(x, y)
    _, across, _, _ = stack.flow.frame(x, y)
    moving = np.hypot(true_vx, true_vy) >= MOVING_ICE_M_PER_YR
    parts = {
        "all": moving,
        "interior": moving & (np.abs(across) < INTERIOR_M),
        "margins": moving & (np.abs(across) >= MARGIN_M),
    }
    for i, figures in enumerate(accuracy(cube_path, stack.truth or stack.folder / "truth.zarr")):
        layer = cube.isel(mid_date=i)
        text = []
        for name, cells in parts.items():
            vx, vy = (np.abs(layer[v].values - t)[cells] for v, t in (("vx", true_vx), ("vy", true_vy)))
            text.append(f"{name} vx {np.nanmedian(vx):.1f} vy {np.nanmedian(vy):.1f}")
        print(
            f"layer {figures.label} ({figures.dt_days:.0f} d): {'; '.join(text)} m/yr; "
            f"coverage {100 * figures.coverage:.1f}%"
        )


def pair(stack: SimulatedStack, path: Path) -> None:
    """Offset noise on stable ground vs the bound, and the geometry's own error on moving ice, for one pair."""
    ds = xr.open_zarr(path, consolidated=False).load()
    dates = {Path(d.product).stem: d for d in stack.dates if d.product}
    a = dates[str(ds.attrs["reference_granules"]).split(" ")[0]]
    b = dates[str(ds.attrs["secondary_granules"]).split(" ")[0]]
    lines, samples = np.meshgrid(ds["line"].values, ds["sample"].values, indexing="ij")
    points = rdr2geo(a.orbit, a.lattice.line_time(lines), a.lattice.slant_range(samples), stack.terrain)
    lat, lon, _ = ecef_to_geodetic(points)
    to_map = Transformer.from_crs("EPSG:4326", stack.crs, always_xy=True)
    x, y = (np.asarray(v) for v in to_map.transform(lon, lat))
    centre = parse_area(stack.area_wkt).centroid
    scale = float(Proj(stack.crs).get_factors(centre.x, centre.y).meridional_scale)
    assert stack.flow is not None
    x2, y2 = advect(stack.flow, x, y, b.days - a.days, scale)
    lon2, lat2 = (np.asarray(v) for v in Transformer.from_crs(stack.crs, "EPSG:4326", always_xy=True).transform(x2, y2))
    moved = geodetic_to_ecef(lat2, lon2, stack.terrain(lat2, lon2))
    l1, s1 = b.lattice.radar_coords(*geo2rdr(b.orbit, points, b.lattice.line_time(lines)))
    l2, s2 = b.lattice.radar_coords(*geo2rdr(b.orbit, moved, b.lattice.line_time(lines)))
    true_vx, true_vy = stack.flow.velocity(x, y)
    speed = np.hypot(true_vx, true_vy)
    stable, moving = speed < 1.0, speed >= MOVING_ICE_M_PER_YR
    noise_az = float(np.nanstd((ds["azimuth_offset"].values - (l2 - l1))[stable]))
    noise_rg = float(np.nanstd((ds["range_offset"].values - (s2 - s1))[stable]))
    ann = a.annotation
    beta_az = 1.0 / (ann.azimuth_bandwidth_hz * ann.azimuth_time_interval_s)
    beta_rg = ann.range_sampling_rate_hz / ann.range_bandwidth_hz
    width, height = DEMO_TRACKING["window"]
    cells = width * height / (beta_rg * beta_az)
    gamma = 0.7
    sigma = math.sqrt(3 / (2 * cells)) * math.sqrt(1 - gamma**2) / (math.pi * gamma)
    truth = ds.copy()
    truth["azimuth_offset"] = (("line", "sample"), l2 - l1)
    truth["range_offset"] = (("line", "sample"), s2 - s1)
    geometry = velocity_from_result(truth, stack.crs)
    vx_err, vy_err = (np.abs(v - t)[moving] for v, t in ((geometry.vx, true_vx), (geometry.vy, true_vy)))
    print(
        f"pair {path.parent.name}: stable-ground noise azimuth {noise_az:.4f} px, range {noise_rg:.4f} px "
        f"(flat-spectrum bound {beta_az * sigma:.4f} / {beta_rg * sigma:.4f} px); geometry alone on moving ice: "
        f"median |vx| {np.median(vx_err):.2f}, |vy| {np.median(vy_err):.2f} m/yr (max {vx_err.max():.2f}, "
        f"{vy_err.max():.2f})"
    )


if __name__ == "__main__":
    main()
