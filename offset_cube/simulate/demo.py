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

from offset_cube.area import parse_area
from offset_cube.errors import CubeError
from offset_cube.simulate.stack import SimulatedStack

#: Tracking set-up of the demo. The simulated speckle carries no interferometric phase (no topography or
#: strain fringes), so coherent (complex) tracking reaches its Cramér–Rao bound; 128 × 32 windows every
#: 64 × 16 pixels give ~235 m × 225 m postings, close to the 120 m cube grid after interpolation.
DEMO_TRACKING: dict[str, Any] = {"window": [128, 32], "skip": [64, 16], "mode": "complex"}
#: The demo's automatic DEM covers the area plus this margin (the engine's crops reach ~2 km beyond the area).
DEMO_DEM_MARGIN_M = 5000.0
#: Beside the simulator's ``dem.tif``: its terrain laid out as the GLO-30 bucket, and the geoid grid.
DEM_SOURCE = "dem-source"
GEOID_FILE = "us_nga_egm2008_1_4326__agisoft.tif"
#: Truth speeds from which a cube cell counts as moving ice in the accuracy summary (the glacier's slowest part).
MOVING_ICE_M_PER_YR = 200.0


def stack_description(folder: Path) -> dict[str, Any] | None:
    """The ``simulation.json`` of a complete simulated stack in ``folder``, or None when there is none."""
    path = folder / "simulation.json"
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    folder = folder.absolute()
    doc["folder"] = str(folder)
    # Paths are written relative to the folder (absolute ones stay as they are), and read back absolute.
    for key in ("truth", "dem"):
        if doc.get(key):
            doc[key] = str(folder / doc[key])
    for date in doc["dates"]:
        for key in ("scene", "orbit_file", "geolocation"):
            if date.get(key):
                date[key] = str(folder / date[key])
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


def demo_job(doc: dict[str, Any], dem: str = "auto", stack: str = ".") -> dict[str, Any]:
    """The job (as YAML-ready data) that processes the simulated stack into ``cube.zarr`` beside its ``job.yaml``.

    Its paths are relative to the job file's folder, from which ``stack`` leads to the stack's folder (``.``: the
    job is written in the stack's folder), so the folder can be moved. ``dem: auto`` (the default) fetches the
    simulator's terrain through the same GLO-30 code path as a real run, from the local tile source
    :func:`serve_dem` wrote; ``dem: none`` uses the valley floor's height everywhere.
    """
    days = [_scene_date(Path(d["scene"]).name) for d in doc["dates"]]
    if dem == "auto" and doc.get("dem"):
        source = Path(stack) / serve_dem(doc).relative_to(doc["folder"])
        terrain: dict[str, Any] = {
            "source": "auto",
            "tiles_url": (source / "glo30").as_posix(),
            "geoid_url": (source / GEOID_FILE).as_posix(),
            "margin_m": DEMO_DEM_MARGIN_M,
            "cache": (Path(stack) / "dem").as_posix(),
        }
    else:
        terrain = {"source": "none", "height_m": doc["height_m"]}
    return {
        "name": "demo",
        "area": doc["area"],
        "start": (min(days) - dt.timedelta(days=1)).isoformat(),
        "end": (max(days) + dt.timedelta(days=1)).isoformat(),
        "search": f"local:{(Path(stack) / 'scenes').as_posix()}",
        "engine": "builtin",
        "polarization": doc["polarisation"],
        "max_speed_m_per_yr": 1000.0,
        "tracking": DEMO_TRACKING,
        "dem": terrain,
        "grid": {"spacing_m": doc["grid_spacing_m"]},
        "storage": {"out": ".", "orbit_cache": (Path(stack) / "orbits").as_posix()},
    }


def serve_dem(doc: dict[str, Any]) -> Path:
    """Lay the simulator's terrain out as the public GLO-30 bucket does, beside it in ``dem-source/``: the tiles
    the demo job's area needs (heights above the geoid, full 1″ posting) and an EGM2008-like geoid grid, so
    that ``dem: auto`` fetches, mosaics and converts them exactly as it would the real ones. Written once."""
    from offset_cube.dem import dem_box
    from offset_cube.dem.glo30 import Box, glo30_tiles
    from offset_cube.dem.mirror import write_geoid, write_tile

    root = Path(doc["dem"]).parent / DEM_SOURCE
    done = root / "complete"
    if done.is_file():
        return root
    box = dem_box(parse_area(doc["area"]), DEMO_DEM_MARGIN_M)
    heights = _GeoTiffSampler(Path(doc["dem"]))
    for tile in glo30_tiles(box):
        write_tile(root / "glo30", tile, lambda lat, lon: heights(lat, lon) - demo_geoid(lat, lon))
    around = Box(box.west - 0.5, box.south - 0.5, box.east + 0.5, box.north + 0.5)
    write_geoid(root / GEOID_FILE, around, demo_geoid)
    done.write_text("tiles and geoid written\n", encoding="utf-8")
    return root


def demo_geoid(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth stand-in for EGM2008 undulations (metres; a few tens, varying over degrees)."""
    return np.asarray(-30.0 + 6.0 * np.sin(np.radians(7.0 * lat)) * np.cos(np.radians(5.0 * lon)))


class _GeoTiffSampler:
    """Bilinear heights of a north-up EPSG:4326 GeoTIFF; beyond its edge, the nearest edge value."""

    def __init__(self, path: Path) -> None:
        import rasterio

        with rasterio.open(path) as dataset:
            self.data = dataset.read(1).astype(np.float64)
            self.transform = dataset.transform

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        from scipy.ndimage import map_coordinates

        t = self.transform
        rows = (np.asarray(lat) - t.f) / t.e - 0.5
        cols = (np.asarray(lon) - t.c) / t.a - 0.5
        return np.asarray(map_coordinates(self.data, [rows, cols], order=1, mode="nearest"))


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


@dataclass(frozen=True)
class Geolocation:
    """How far one pair's window centres (the engine's latitude/longitude) lie from where the simulator's
    reference date truly looked at those radar positions (on its terrain)."""

    pair_id: str
    median_m: float
    p95_m: float
    max_m: float
    windows: int

    def line(self) -> str:
        return (
            f"{self.pair_id}: window centres {self.median_m:.2f} m from their true ground position (median), "
            f"95% within {self.p95_m:.2f} m, max {self.max_m:.2f} m ({self.windows} windows)"
        )


def geolocation_errors(doc: dict[str, Any], pairs_dir: Path) -> list[Geolocation]:
    """Per pair folder under ``pairs_dir``: the geolocation error of its window centres (radar-grid results)."""
    from pyproj import Geod
    from scipy.interpolate import RectBivariateSpline

    truth_of = {Path(d["scene"]).stem: Path(d["geolocation"]) for d in doc["dates"] if d.get("geolocation")}
    geod = Geod(ellps="WGS84")
    results = []
    for path in sorted(pairs_dir.glob("*/offsets.zarr")):
        with xr.open_zarr(path, consolidated=False) as ds:
            truth = truth_of.get(str(ds.attrs.get("reference_granules", "")).split(" ")[0])
            if truth is None or ds.attrs.get("grid") != "radar":
                continue
            lines, samples = np.meshgrid(ds["line"].values, ds["sample"].values, indexing="ij")
            lat, lon = ds["latitude"].values, ds["longitude"].values
        nodes = np.load(truth)
        at = [
            RectBivariateSpline(nodes["lines"], nodes["samples"], nodes[k]).ev(lines, samples)
            for k in ("latitude", "longitude")
        ]
        _, _, dist = geod.inv(lon.ravel(), lat.ravel(), at[1].ravel(), at[0].ravel())
        dist = np.abs(np.asarray(dist))
        results.append(
            Geolocation(
                path.parent.name, float(np.median(dist)), float(np.percentile(dist, 95)), float(dist.max()), dist.size
            )
        )
    return results


def _day(value: Any) -> str:
    return str(np.datetime_as_string(np.datetime64(value, "D")))
