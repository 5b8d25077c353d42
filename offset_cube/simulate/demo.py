"""The demo: a simulated stack, the job that processes it with the built-in engine, and its accuracy vs truth.

``DIR`` holds everything: ``scenes/`` (SAFE zips, the local catalog), ``orbits/`` (their ``.EOF`` files, which
is also the job's orbit cache), ``truth.zarr``, ``simulation.json``, ``job.yaml`` and, after the flow,
``cube.zarr`` and ``pairs/``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from offset_cube.errors import CubeError
from offset_cube.simulate.stack import SimulatedStack

#: Tracking set-up of the demo. The simulated speckle carries no interferometric phase (no topography or
#: strain fringes), so coherent (complex) tracking reaches its Cramér–Rao bound; 128 × 32 windows every
#: 64 × 16 pixels give ~235 m × 225 m postings, close to the 120 m cube grid after interpolation.
DEMO_TRACKING: dict[str, Any] = {"window": [128, 32], "skip": [64, 16], "mode": "complex"}
#: Truth speeds from which a cube cell counts as moving ice in the accuracy summary (the glacier's slowest part).
MOVING_ICE_M_PER_YR = 200.0


def stack_description(folder: Path) -> dict[str, Any] | None:
    """The ``simulation.json`` of a complete simulated stack in ``folder``, or None when there is none."""
    path = folder / "simulation.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    files = [Path(d["scene"]) for d in doc["dates"]] + [Path(d["orbit_file"]) for d in doc["dates"]]
    if not all(f.is_file() for f in files) or not Path(doc["truth"]).exists():
        return None
    return doc


def describe(stack: SimulatedStack) -> dict[str, Any]:
    """The description of a stack just simulated (as :func:`stack_description` reads it back)."""
    doc = stack_description(stack.folder)
    if doc is None:  # pragma: no cover - simulate_stack always writes it
        raise CubeError(f"{stack.folder} holds no complete simulated stack")
    return doc


def demo_job(doc: dict[str, Any], out: Path) -> dict[str, Any]:
    """The job (as YAML-ready data) that processes the simulated stack into ``out/cube.zarr``."""
    days = [_scene_date(Path(d["scene"]).name) for d in doc["dates"]]
    return {
        "name": "demo",
        "area": doc["area"],
        "start": (min(days) - dt.timedelta(days=1)).isoformat(),
        "end": (max(days) + dt.timedelta(days=1)).isoformat(),
        "search": f"local:{out / 'scenes'}",
        "engine": "builtin",
        "polarization": doc["polarisation"],
        "max_speed_m_per_yr": 1000.0,
        "tracking": DEMO_TRACKING,
        "builtin": {"height_m": doc["height_m"]},
        "grid": {"spacing_m": doc["grid_spacing_m"]},
        "storage": {"out": str(out), "orbit_cache": str(out / "orbits")},
    }


def demo_burst_job(doc: dict[str, Any], out: Path, export: Path) -> dict[str, Any]:
    """The demo job reading the stack as burst products from the local burst server's search export."""
    job = demo_job(doc, out)
    job.update({"search": f"file:{export}", "acquisition": "bursts", "download": {"anonymous": True}})
    return job


def _scene_date(name: str) -> dt.date:
    return dt.datetime.strptime(name.split("_")[5][:8], "%Y%m%d").date()


@dataclass(frozen=True)
class LayerAccuracy:
    """One cube layer against the truth, over cells whose true speed is at least the moving-ice threshold."""

    label: str
    dt_days: float
    median_vx_error: float
    median_vy_error: float
    coverage: float
    cells: int

    def line(self) -> str:
        return (
            f"{self.label} ({self.dt_days:.0f} d): median |vx - truth| {self.median_vx_error:.1f} m/yr, "
            f"|vy - truth| {self.median_vy_error:.1f} m/yr, coverage {100 * self.coverage:.1f}% of "
            f"{self.cells} moving-ice cells"
        )


def accuracy(cube_path: Path, truth_path: Path, moving_m_per_yr: float = MOVING_ICE_M_PER_YR) -> list[LayerAccuracy]:
    """Per cube layer: median absolute velocity errors and valid coverage on moving ice."""
    truth = xr.open_zarr(truth_path, consolidated=False)
    cube = xr.open_zarr(cube_path, consolidated=False)
    true_vx = truth["vx"].sel(x=cube["x"], y=cube["y"], method="nearest", tolerance=1.0).values
    true_vy = truth["vy"].sel(x=cube["x"], y=cube["y"], method="nearest", tolerance=1.0).values
    moving = np.hypot(true_vx, true_vy) >= moving_m_per_yr
    results = []
    for i in range(cube.sizes["mid_date"]):
        layer = cube.isel(mid_date=i)
        vx, vy = layer["vx"].values, layer["vy"].values
        measured = moving & np.isfinite(vx) & np.isfinite(vy)
        label = "layer"
        if "acquisition_date_img1" in layer and "acquisition_date_img2" in layer:
            label = f"{_day(layer['acquisition_date_img1'].values)} → {_day(layer['acquisition_date_img2'].values)}"
        dt_days = float(layer["date_dt"].values) if "date_dt" in layer else float("nan")
        results.append(
            LayerAccuracy(
                label=label,
                dt_days=dt_days,
                median_vx_error=float(np.median(np.abs(vx - true_vx)[measured])) if measured.any() else float("nan"),
                median_vy_error=float(np.median(np.abs(vy - true_vy)[measured])) if measured.any() else float("nan"),
                coverage=float(measured.sum() / max(int(moving.sum()), 1)),
                cells=int(moving.sum()),
            )
        )
    return results


def _day(value: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(value, "D")))
