"""The demo: a simulated stack, the job that processes it with the built-in engine, and its accuracy vs truth.

``DIR`` holds everything: ``scenes/`` (SAFE zips, the local catalog), ``orbits/`` (their ``.EOF`` files, which
is also the job's orbit cache), ``truth.zarr``, ``simulation.json``, ``job.yaml`` and, after the flow,
``cube.zarr`` and ``pairs/``. The burst demo adds ``bursts/`` (the stack cut into ASF burst products, with the
export of a burst search) and ``from-bursts/`` (the run that searched, downloaded and assembled them).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from offset_cube.area import parse_area
from offset_cube.errors import CubeError
from offset_cube.scenes import Scene
from offset_cube.simulate.stack import SimulatedStack

#: Tracking set-up of the demo. The simulated speckle carries no interferometric phase (no topography or
#: strain fringes), so coherent (complex) tracking, whitened by the engine (builtin.whitening), reaches its
#: Cramér–Rao bound. 160 × 32 windows (~590 m across track × 445 m along it) every 64 × 16 pixels (~235 m ×
#: 225 m postings, close to the 120 m cube grid after interpolation): against 128 × 32, the longer range extent
#: lowers the noise by ~11 % where vy (nearly along track) needs it, and costs the shear margins little; taller
#: or coarser-posted windows blur the 300 m margins more than they gain (README, "Measured on the valley stack").
DEMO_TRACKING: dict[str, Any] = {"window": [160, 32], "skip": [64, 16], "mode": "complex"}
#: The demo's automatic DEM covers the area plus this margin (the engine's crops reach ~2 km beyond the area).
DEMO_DEM_MARGIN_M = 5000.0
#: Beside the simulator's ``dem.tif``: its terrain laid out as the GLO-30 bucket, and the geoid grid.
DEM_SOURCE = "dem-source"
GEOID_FILE = "us_nga_egm2008_1_4326__agisoft.tif"
#: Truth speeds from which a cube cell counts as moving ice in the accuracy summary (the glacier's slowest part).
MOVING_ICE_M_PER_YR = 200.0
#: The relief demo's acceptance (issue 13): on its 12-day pairs, median |vx|, |vy| error on moving ice at most
#: this, with at least TARGET_COVERAGE of the moving-ice cells valid.
TARGET_M_PER_YR = 5.0
TARGET_COVERAGE = 0.95
#: Layers of at most this many days are the "12-day pairs" of the target.
TARGET_DT_DAYS = 12.5
#: The burst demo's cube equals the whole-scene cube to this (the issue's acceptance: 0.1 m/yr).
SAME_CUBE_M_PER_YR = 0.1
#: Where the burst demo's job writes (its downloaded bursts, assembled SAFEs, pairs and cube).
FROM_BURSTS = "from-bursts"


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


def demo_burst_job(doc: dict[str, Any], served_export: str) -> dict[str, Any]:
    """The demo job that reads the stack as burst products, to be written in ``DIR/from-bursts`` (its paths are
    relative to that folder, as :func:`demo_job`'s): searched in ``DIR/bursts/<served_export>`` (the local burst
    server's ASF burst search export) and downloaded without login (the server is the demo's own); orbits and
    DEM as :func:`demo_job`'s."""
    job = demo_job(doc, stack="..")
    job.update(
        {
            "name": "demo-bursts",
            "search": f"file:../bursts/{served_export}",
            "acquisition": "bursts",
            "download": {"anonymous": True},
        }
    )
    return job


def bytes_per_date(burst_scenes: Sequence[Scene], scene_zips: Sequence[Path]) -> str:
    """What a date of the demo costs as bursts (the search records' sizes, as downloaded) and as a whole IW SLC
    (:func:`~offset_cube.bursts.full_scene_bytes_estimate`: 3 swaths × 9 bursts per polarisation at these
    bursts' size). The simulated SAFE zips are no measure of a real scene: only the area carries pixels, and the
    zeros around it compress to nothing."""
    from offset_cube.bursts import full_scene_bytes_estimate

    dates = max(len({(s.relative_orbit, s.date) for s in burst_scenes}), 1)
    bursts = sum(s.size_bytes or 0 for s in burst_scenes) / dates
    count = sum(len(s.bursts) for s in burst_scenes) / dates
    whole = sum(full_scene_bytes_estimate(s) or 0 for s in burst_scenes) / dates
    zips = sum(p.stat().st_size for p in scene_zips) / max(len(scene_zips), 1)
    ratio = f", {whole / bursts:.1f}× more" if bursts else ""
    return (
        f"bytes per date: bursts {bursts / 1e6:.1f} MB ({count:g} burst(s)) vs a whole IW SLC of such bursts "
        f"{whole / 1e6:.0f} MB{ratio} (the simulated SAFE zips: {zips / 1e6:.1f} MB, pixels over the area only)"
    )


@dataclass(frozen=True)
class CubeDifference:
    """Two cubes of the same stack compared layer by layer (same pairs, same grid): the largest velocity
    difference where both hold a value, and the cells valid in one cube only."""

    layers: int
    cells: int
    max_dvx: float
    max_dvy: float
    valid_in_one_only: int
    mismatch: str | None = None

    def agrees(self, tolerance_m_per_yr: float = SAME_CUBE_M_PER_YR) -> bool:
        return (
            self.mismatch is None
            and self.valid_in_one_only == 0
            and self.cells > 0
            and max(self.max_dvx, self.max_dvy) <= tolerance_m_per_yr
        )

    def line(self, tolerance_m_per_yr: float = SAME_CUBE_M_PER_YR) -> str:
        if self.mismatch is not None:
            return f"the cubes cannot be compared: {self.mismatch}"
        figures = (
            f"max |Δvx| {self.max_dvx:.3f} m/yr, |Δvy| {self.max_dvy:.3f} m/yr over {self.cells} cells of "
            f"{self.layers} layer(s)"
        )
        if self.agrees(tolerance_m_per_yr):
            return f"equal to {tolerance_m_per_yr:g} m/yr ({figures}; the same valid cells)"
        return (
            f"DIFFERENT (tolerance {tolerance_m_per_yr:g} m/yr): {figures}; "
            f"{self.valid_in_one_only} cell(s) valid in one cube only"
        )


def compare_cubes(first: Path, second: Path) -> CubeDifference:
    """Compare the velocities of two cubes that should hold the same pairs on the same grid."""
    a = xr.open_zarr(first, consolidated=False)
    b = xr.open_zarr(second, consolidated=False)
    pairs_a, pairs_b = [str(p) for p in a["pair_id"].values], [str(p) for p in b["pair_id"].values]
    if pairs_a != pairs_b:
        return CubeDifference(0, 0, math.nan, math.nan, 0, f"pairs {pairs_a} in {first}, {pairs_b} in {second}")
    if a.sizes != b.sizes or not (np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"])):
        return CubeDifference(0, 0, math.nan, math.nan, 0, f"grids differ: {dict(a.sizes)} vs {dict(b.sizes)}")
    worst = {"vx": 0.0, "vy": 0.0}
    cells = only_one = 0
    for i in range(a.sizes["mid_date"]):
        valid_a = np.isfinite(a["vx"][i].values) & np.isfinite(a["vy"][i].values)
        valid_b = np.isfinite(b["vx"][i].values) & np.isfinite(b["vy"][i].values)
        both = valid_a & valid_b
        cells += int(both.sum())
        only_one += int((valid_a ^ valid_b).sum())
        for name in worst:
            if both.any():
                diff = np.abs(a[name][i].values - b[name][i].values)[both]
                worst[name] = max(worst[name], float(diff.max()))
    return CubeDifference(a.sizes["mid_date"], cells, worst["vx"], worst["vy"], only_one)


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


def target_line(layers: Sequence[LayerAccuracy]) -> str:
    """Whether the 12-day layers meet the demo's target (:data:`TARGET_M_PER_YR`, :data:`TARGET_COVERAGE`), with
    the worst figures among them."""
    short = [layer for layer in layers if layer.dt_days <= TARGET_DT_DAYS]
    goal = (
        f"12-day pairs, moving ice: median |vx|, |vy| <= {TARGET_M_PER_YR:g} m/yr, coverage >= "
        f"{100 * TARGET_COVERAGE:g}%"
    )
    if not short:
        return f"{goal}: no 12-day pair in the cube"
    worst_vx = max(layer.median_vx_error for layer in short)
    worst_vy = max(layer.median_vy_error for layer in short)
    coverage = min(layer.coverage for layer in short)
    met = max(worst_vx, worst_vy) <= TARGET_M_PER_YR and coverage >= TARGET_COVERAGE
    return (
        f"{goal}: {'met' if met else 'MISSED'} (worst of {len(short)}: vx {worst_vx:.1f}, vy {worst_vy:.1f} m/yr, "
        f"coverage {100 * coverage:.1f}%)"
    )


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
