"""Errors and composites against the truth of a simulated stack: consecutive pairs vs a pair network.

Run: ``.venv/bin/python bench/errors_bench.py [--out DIR] [--dates 10] [--coherence 0.5]``. It simulates a stack
of one track over the demo glacier (offset_cube.simulate), runs the real flow with the built-in engine twice on it
(``pairing: consecutive``, and ``network`` with ``max_neighbours 3``, ``max_gap_days 36``), and reports:

1. per layer: the RMS of the reported ``v_error`` over the layer's valid cells against the true RMS error of ``v``
   (cube − truth) over the same cells, and whether their ratio is within a factor 1.5;
2. per mode: month composites (:mod:`offset_cube.cube.composite`): the median reported error, the true RMS error,
   and the share of cells whose truth lies within ±1.96 reported errors (95 %) in vx and in vy.

It writes ``results.json`` and ``errors_composites.png`` (the README's figure) in ``--out``.
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

from flows.runtime import configure_prefect_env
from offset_cube.config import job_from_dict
from offset_cube.cube.composite import composite_cube
from offset_cube.simulate import DEMO_TEMPLATE
from offset_cube.simulate.demo import demo_job, describe, stack_description
from offset_cube.simulate.stack import SimulationConfig, simulate_stack

Z95 = 1.96


def run_mode(doc: dict[str, Any], stack: Path, out: Path, pairing: str) -> Path:
    """Run the flow on the stack with ``pairing``; return the cube path."""
    from flows.cli.jobs import run_flow

    raw = demo_job(doc)  # paths relative to the stack's folder; those set below are absolute
    raw.update({"search": f"local:{stack / 'scenes'}", "pairing": pairing, "max_gap_days": 36, "max_neighbours": 3})
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
            periods.append(
                {
                    "month": str(month["period_label"].values),
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
        right.set_xticks(np.arange(len(labels)), labels)
    top = max(max(r["true_rms_v_error"], r["reported_v_error"]) for m in results["modes"].values() for r in m["layers"])
    line = np.array([0, top * 1.1])
    left.plot(line, line, "k-", lw=0.8, label="1:1")
    left.fill_between(line, line / 1.5, line * 1.5, color="0.85", label="within x1.5")
    left.set_xlabel("true RMS error of v in the layer (m/yr)")
    left.set_ylabel("reported v_error, RMS (m/yr)")
    left.set_title("per layer: reported vs true error", fontsize=10)
    left.legend(fontsize=8)
    right.set_ylabel("m/yr")
    right.set_title("month composites: true RMS error (bars), reported median error (ticks)", fontsize=10)
    handles = [Patch(color=f"C{k}", alpha=0.45, label=mode) for k, mode in enumerate(results["modes"])]
    right.legend(handles=handles, fontsize=8)
    fig.savefig(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("errors-bench"))
    parser.add_argument("--dates", type=int, default=10)
    parser.add_argument("--coherence", type=float, default=0.5)
    parser.add_argument("--area-km", type=float, default=4.0)
    args = parser.parse_args()
    configure_prefect_env()
    out = args.out.absolute()
    stack = out / "stack"
    started = time.monotonic()
    doc = stack_description(stack)
    if doc is None:
        side = 1000 * args.area_km
        config = SimulationConfig(
            template=DEMO_TEMPLATE, dates=args.dates, coherence=args.coherence, area_m=(side, side)
        )
        doc = describe(simulate_stack(config, stack))
    truth = xr.open_zarr(doc["truth"], consolidated=False).load()
    results: dict[str, Any] = {
        "dates": args.dates,
        "coherence": args.coherence,
        "area_km": args.area_km,
        "load_average": os.getloadavg(),
        "modes": {},
    }
    for pairing in ("consecutive", "network"):
        cube = run_mode(doc, stack, out / pairing, pairing)
        layers = layer_errors(cube, truth)
        results["modes"][pairing] = {
            "layers": layers,
            "within_1_5": sum(1 / 1.5 <= r["ratio"] <= 1.5 for r in layers),
            "composites": composite_errors(cube, truth, out / pairing),
        }
    results["seconds"] = round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    figure(results, out / "errors_composites.png")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
