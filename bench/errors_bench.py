"""Errors and composites against the truth of a simulated stack: consecutive pairs vs a pair network.

Run: ``.venv/bin/python bench/errors_bench.py [--out DIR] [--dates 22] [--coherence 0.5] [--coherence-floor 0.2]
[--window 64x16 --skip 32x8] [--pairings consecutive network]``. It simulates a stack of one track over the demo
glacier (offset_cube.simulate), runs the real flow with the built-in engine on it with ``pairing: consecutive``
and with ``network`` (``max_neighbours 3``, ``max_gap_days 36``), and reports:

1. per layer: the RMS of the reported ``v_error`` over the layer's valid cells against the true RMS error of ``v``
   (cube − truth) over the same cells, and whether their ratio is within a factor 1.5;
2. per mode: month composites (:mod:`offset_cube.cube.composite`): the median reported error, the true RMS error,
   and the share of cells whose truth lies within ±1.96 reported errors (95 %) in vx and in vy.

3. for the consecutive run (``consecutive_shared_and_varying``): how much of the 12-day layers' error is shared by
   all of them (their mean error map, less its expected noise) and how much varies from pair to pair, over all
   cells and by distance from the glacier's margin line, and how well two layers' error maps correlate;

and the issue's three acceptance figures (``acceptance`` in the output): per mode, how many layers' reported/true
ratio lies within ×1.5 (and the range); the share of (cell, month) values whose truth lies within ±1.96 reported
errors, over all months, per component; and the network's month composites' true RMS error of ``v`` against the
consecutive ones' (all cells of all months pooled).

**The stack and the tracking** (README, "Errors and composites", says why). Tracking uses the project's default
windows, 64 × 16 pixels every 32 × 8 (complex mode, as the demo): the demo's 128 × 32 windows (~450 m on the
ground) smooth the glacier's 300 m shear margins by 10-17 m/yr the same way in every pair, an error no estimate
of a layer sees and no number of pairs averages out. Speckle coherence is 0.5 between consecutive dates with a
long-term floor of 0.2 (``coherence_floor``: dates k apart 0.2 + 0.8 · 0.375ᵏ), as persistent scatterers give (Rocca
2007, IEEE TGRS 45(10), 3289–3299); with ``--coherence-floor 0`` (the simulator's default, γᵏ) the stack's likelihood
factorises over consecutive pairs, so longer pairs carry no new information and no network can beat consecutive pairs.

It writes ``results.json`` and ``errors_composites.png`` (the README's figure) in ``--out``. A second run on the
same ``--out`` reuses the stack and the engines' offsets; remove ``--out``/*/cube.zarr* and ``pairs/*/product.zarr``
to recompute products and errors with changed code (``--fresh-products`` does that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from pyproj import Transformer

from flows.runtime import configure_prefect_env
from offset_cube.area import parse_area
from offset_cube.config import job_from_dict
from offset_cube.cube.composite import composite_cube
from offset_cube.simulate import DEMO_TEMPLATE
from offset_cube.simulate.demo import DEMO_TRACKING, demo_job, describe, stack_description
from offset_cube.simulate.flow import ValleyGlacier
from offset_cube.simulate.stack import SimulationConfig, simulate_stack

Z95 = 1.96


def run_mode(doc: dict[str, Any], stack: Path, out: Path, pairing: str, tracking: dict[str, Any]) -> Path:
    """Run the flow on the stack with ``pairing`` and ``tracking``; return the cube path."""
    from flows.cli.jobs import run_flow

    raw = demo_job(doc)  # paths relative to the stack's folder; those set below are absolute
    raw.update({"search": f"local:{stack / 'scenes'}", "pairing": pairing, "max_gap_days": 36, "max_neighbours": 3})
    raw["tracking"] = tracking
    raw["storage"] = {"out": str(out), "orbit_cache": str(stack / "orbits"), "scene_cache": str(out / "scenes")}
    job = job_from_dict(raw, origin=pairing, base=stack)
    state = run_flow(job)
    if not state.is_completed():
        raise SystemExit(f"{pairing} run failed: {state.message}")
    return job.storage.cube_path


def layer_errors(cube: Path, truth: xr.Dataset) -> list[dict[str, Any]]:
    """Reported vs true error of each layer over its valid cells."""
    rows = []
    with xr.open_zarr(cube) as ds:
        for i in range(ds.sizes["mid_date"]):
            layer = ds.isel(mid_date=i).load()
            ok = np.isfinite(layer["v"].values) & np.isfinite(layer["v_error"].values)
            true_rms = math.sqrt(float(np.mean((layer["v"].values - truth["v"].values)[ok] ** 2)))
            reported = math.sqrt(float(np.mean(layer["v_error"].values[ok] ** 2)))
            rows.append(
                {
                    "pair": str(layer["pair_id"].values),
                    "dt_days": round(float(layer["date_dt"].values), 1),
                    "cells": int(ok.sum()),
                    "reported_v_error": round(reported, 2),
                    "true_rms_v_error": round(true_rms, 2),
                    "ratio": round(reported / true_rms, 3),
                    "vx_error": round(float(layer["vx_error"].values), 2),
                    "vy_error": round(float(layer["vy_error"].values), 2),
                }
            )
    return rows


def composite_errors(cube: Path, truth: xr.Dataset, out: Path) -> dict[str, Any]:
    """Month composites of the cube against the truth."""
    path = out / "composites-month.zarr"
    composite_cube(cube, "month", path)
    periods = []
    with xr.open_zarr(path) as ds:
        for i in range(ds.sizes["time"]):
            month = ds.isel(time=i).load()
            ok = np.isfinite(month["vx"].values) & np.isfinite(month["vy"].values)
            if not ok.any():
                continue
            dx = np.abs(month["vx"].values - truth["vx"].values)[ok]
            dy = np.abs(month["vy"].values - truth["vy"].values)[ok]
            both = (dx <= Z95 * month["vx_error"].values[ok]) & (dy <= Z95 * month["vy_error"].values[ok])
            periods.append(
                {
                    "month": str(month["period_label"].values),
                    "sum_sq_v": float(np.sum((month["v"].values - truth["v"].values)[ok] ** 2)),
                    "covered_x": int(np.sum(dx <= Z95 * month["vx_error"].values[ok])),
                    "covered_y": int(np.sum(dy <= Z95 * month["vy_error"].values[ok])),
                    "covered_both": int(np.sum(both)),
                    "cells": int(ok.sum()),
                    "median_layers": float(np.median(month["count"].values[ok])),
                    "median_reported_v_error": round(float(np.median(month["v_error"].values[ok])), 2),
                    "true_rms_v_error": round(
                        math.sqrt(float(np.mean((month["v"].values - truth["v"].values)[ok] ** 2))), 2
                    ),
                    "covered_95_vx": round(float(np.mean(dx <= Z95 * month["vx_error"].values[ok])), 3),
                    "covered_95_vy": round(float(np.mean(dy <= Z95 * month["vy_error"].values[ok])), 3),
                }
            )
    return {"periods": periods}


#: Bands of distance from the glacier's margin line (m, negative on the ice) for the error decomposition.
MARGIN_BANDS = ((-2000, -900), (-900, -450), (-450, -150), (-150, 150), (150, 450), (450, 3000))


def shared_and_varying(cube: Path, truth: xr.Dataset, doc: dict[str, Any]) -> dict[str, Any]:
    """How much of the 12-day layers' error is common to all of them (the mean error map over layers, less its
    expected noise) and how much varies from pair to pair (the spread about that mean), in vx and vy, over all
    cells and in bands of distance from the glacier's margin line (the simulator's ValleyGlacier); and the mean
    correlation between two layers' error maps."""
    area = parse_area(doc["area"])
    xc, yc = Transformer.from_crs("EPSG:4326", doc["crs"], always_xy=True).transform(area.centroid.x, area.centroid.y)
    glacier = ValleyGlacier(x0=xc, y0=yc)
    xx, yy = np.meshgrid(truth["x"].values, truth["y"].values)
    edge = np.abs(glacier.frame(xx, yy)[1]) - glacier.width_m / 2
    with xr.open_zarr(cube) as ds:
        short = np.flatnonzero(ds["date_dt"].values < 13)
        layers = {c: ds[c].isel(mid_date=short).values.astype(np.float64) for c in ("vx", "vy")}
    out: dict[str, Any] = {"layers": int(short.size)}
    for comp, values in layers.items():
        error = values - truth[comp].values[None]
        ok = np.isfinite(error).all(axis=0)
        n = error.shape[0]
        mean = error.mean(axis=0)
        varying = ((error - mean) ** 2).sum(axis=0) / (n - 1)
        shared = mean**2 - varying / n  # E[mean²] = shared² + varying/n

        def rms(a: np.ndarray[Any, Any], cells: np.ndarray[Any, Any]) -> float:
            return round(math.sqrt(max(float(np.mean(a[cells])), 0.0)), 2)

        corr = np.corrcoef(error[:, ok])
        out[comp] = {
            "shared_rms": rms(shared, ok),
            "varying_rms": rms(varying, ok),
            "mean_layer_correlation": round(float((corr.sum() - n) / (n * n - n)), 3),
            "by_margin_distance_m": [
                {
                    "band": list(band),
                    "cells": int(cells.sum()),
                    "shared_rms": rms(shared, cells),
                    "varying_rms": rms(varying, cells),
                }
                for band in MARGIN_BANDS
                for cells in [ok & (edge >= band[0]) & (edge < band[1])]
            ],
        }
    return out


def acceptance(modes: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance figures from the per-mode results."""
    out: dict[str, Any] = {}
    for mode, res in modes.items():
        ratios = [r["ratio"] for r in res["layers"]]
        periods = res["composites"]["periods"]
        cells = sum(p["cells"] for p in periods)
        out[mode] = {
            "layers": len(ratios),
            "layers_within_1_5": sum(1 / 1.5 <= r <= 1.5 for r in ratios),
            "ratio_range": [min(ratios), max(ratios)],
            "composite_cells": cells,
            "composite_covered_95_vx_pct": round(100 * sum(p["covered_x"] for p in periods) / cells, 1),
            "composite_covered_95_vy_pct": round(100 * sum(p["covered_y"] for p in periods) / cells, 1),
            "composite_covered_95_both_pct": round(100 * sum(p["covered_both"] for p in periods) / cells, 1),
            "composite_true_rms_v_error": round(math.sqrt(sum(p["sum_sq_v"] for p in periods) / cells), 2),
        }
    if {"consecutive", "network"} <= out.keys():
        ratio = out["network"]["composite_true_rms_v_error"] / out["consecutive"]["composite_true_rms_v_error"]
        out["network_over_consecutive_composite_error"] = round(ratio, 3)
    return out


def fresh_products(out: Path) -> None:
    """Remove the cubes, composites and pair products under ``out`` (the engines' offsets stay for reuse)."""
    import shutil

    for mode in ("consecutive", "network"):
        folder = out / mode
        stale = [*folder.glob("cube.zarr*"), *folder.glob("composites-*.zarr"), *folder.glob("pairs/*/product.zarr")]
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def figure(results: dict[str, Any], png: Path) -> None:
    fig = Figure(figsize=(11, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for k, (mode, res) in enumerate(results["modes"].items()):
        true = [r["true_rms_v_error"] for r in res["layers"]]
        rep = [r["reported_v_error"] for r in res["layers"]]
        marker = "o" if k == 0 else "x"  # the network holds the consecutive layers too
        left.plot(true, rep, marker, color=f"C{k}", ms=7 if k == 0 else 6, label=f"{mode} ({len(true)} layers)")
        months = res["composites"]["periods"]
        labels = [p["month"] for p in months]
        width = 0.38
        xs = np.arange(len(labels)) + (k - 0.5) * width
        right.bar(xs, [p["true_rms_v_error"] for p in months], width, color=f"C{k}", alpha=0.45)
        right.plot(xs, [p["median_reported_v_error"] for p in months], "_", ms=18, mew=2, color=f"C{k}")
        right.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right")
    top = max(max(r["true_rms_v_error"], r["reported_v_error"]) for m in results["modes"].values() for r in m["layers"])
    low = min(min(r["true_rms_v_error"], r["reported_v_error"]) for m in results["modes"].values() for r in m["layers"])
    line = np.array([low / 1.2, top * 1.2])
    left.plot(line, line, "k-", lw=0.8, label="1:1")
    left.fill_between(line, line / 1.5, line * 1.5, color="0.85", label="within x1.5")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("true RMS error of v in the layer (m/yr)")
    left.set_ylabel("reported v_error, RMS (m/yr)")
    left.set_title("per layer: reported vs true error", fontsize=10)
    left.legend(fontsize=8)
    right.set_ylabel("m/yr")
    right.set_title("month composites: true RMS error (bars), median reported (ticks)", fontsize=9)
    handles = [Patch(color=f"C{k}", alpha=0.45, label=mode) for k, mode in enumerate(results["modes"])]
    right.legend(handles=handles, fontsize=8)
    fig.savefig(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("errors-bench"))
    parser.add_argument("--dates", type=int, default=22, help="22: 21 consecutive layers (>= 20)")
    parser.add_argument("--coherence", type=float, default=0.5, help="speckle coherence of consecutive dates")
    parser.add_argument(
        "--coherence-floor", type=float, default=0.2, help="long-term coherence (0: gamma**k for dates k apart)"
    )
    parser.add_argument("--area-km", type=float, default=4.0)
    parser.add_argument("--window", default="64x16", help="tracking window, range x azimuth pixels")
    parser.add_argument("--skip", default="32x8", help="tracking step, range x azimuth pixels")
    parser.add_argument("--pairings", nargs="+", choices=("consecutive", "network"), default=["consecutive", "network"])
    parser.add_argument("--fresh-products", action="store_true", help="recompute products/cubes, reuse offsets")
    args = parser.parse_args()
    configure_prefect_env()
    out = args.out.absolute()
    if args.fresh_products:
        fresh_products(out)
    stack = out / "stack"
    started = time.monotonic()
    doc = stack_description(stack)
    if doc is None:
        side = 1000 * args.area_km
        config = SimulationConfig(
            template=DEMO_TEMPLATE,
            dates=args.dates,
            coherence=args.coherence,
            coherence_floor=args.coherence_floor,
            area_m=(side, side),
        )
        doc = describe(simulate_stack(config, stack))
    wanted = {"dates": args.dates, "coherence": args.coherence, "coherence_floor": args.coherence_floor}
    found = {
        "dates": len(doc["dates"]),
        "coherence": doc["coherence"],
        "coherence_floor": doc.get("coherence_floor", 0),
    }
    if found != wanted:
        raise SystemExit(f"error: {stack} holds a stack simulated with {found}, not {wanted}; use another --out")
    truth = xr.open_zarr(doc["truth"], consolidated=False).load()
    tracking = {**DEMO_TRACKING, "window": args.window, "skip": args.skip}
    results: dict[str, Any] = {
        "dates": args.dates,
        "coherence": args.coherence,
        "coherence_floor": args.coherence_floor,
        "area_km": args.area_km,
        "tracking": tracking,
        "load_average": os.getloadavg(),
        "modes": {},
    }
    for pairing in args.pairings:
        cube = run_mode(doc, stack, out / pairing, pairing, tracking)
        layers = layer_errors(cube, truth)
        results["modes"][pairing] = {
            "layers": layers,
            "within_1_5": sum(1 / 1.5 <= r["ratio"] <= 1.5 for r in layers),
            "composites": composite_errors(cube, truth, out / pairing),
        }
        if pairing == "consecutive":
            results["consecutive_shared_and_varying"] = shared_and_varying(cube, truth, doc)
    results["acceptance"] = acceptance(results["modes"])
    results["seconds"] = round(time.monotonic() - started)
    results["load_average_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    figure(results, out / "errors_composites.png")
    print(json.dumps({k: v for k, v in results.items() if k != "modes"}, indent=2))


if __name__ == "__main__":
    main()
