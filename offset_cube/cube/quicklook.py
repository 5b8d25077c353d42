"""Pictures for people: a quicklook PNG per pair and a summary PNG of the cube (matplotlib, Agg, no display).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas, never ``pyplot``: pyplot keeps global
state and is not thread-safe, and the flow makes quicklooks from several task threads at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from pyproj import Transformer

from offset_cube.area import parse_area
from offset_cube.atomic import atomic_path
from offset_cube.cube.product import Reason, read_product
from offset_cube.cube.schema import cube_chunks
from offset_cube.cube.stats import nan_median
from offset_cube.cube.versions import open_cube

#: Arrows per image side in the quicklooks (sub-sampled so they stay readable).
ARROWS_PER_SIDE = 16
#: Arrows are drawn only where the speed exceeds this many times its error: below, the direction is noise.
ARROW_K = 3.0
#: Lowest speed on the colour scale, m/yr (a log scale needs a positive floor; slower ice shows as this colour).
MIN_SPEED = 1.0
SPEED_CMAP = "viridis"
MASKED_COLOUR = "0.6"


def pair_quicklook(product: Path, png: Path, area_wkt: str | None = None, k: float = ARROW_K) -> Path:
    """Speed of one pair product on a log scale; arrows scaled by speed where it exceeds ``k`` times its error;
    masked cells grey, no data white, the area outlined; legends outside the map."""
    with read_product(product) as ds:
        ds = ds.load()
    fig = Figure(figsize=(8, 7.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    extent = _extent_km(ds)
    masked = (ds["invalid_reason"].values != Reason.VALID) & (ds["invalid_reason"].values != Reason.NO_MEASUREMENT)
    ax.imshow(np.where(masked, 1.0, np.nan), extent=extent, cmap=_grey(), vmin=0, vmax=1, interpolation="nearest")
    speed = ds["v"].values
    image = ax.imshow(speed, extent=extent, norm=_speed_norm(speed), cmap=SPEED_CMAP, interpolation="nearest")
    arrows = arrow_field(ds, k)
    _draw_arrows(ax, arrows)
    handles: list[Artist] = [
        Patch(color=MASKED_COLOUR, label="masked (low SNR / outlier)"),
        Patch(facecolor="white", edgecolor="0.3", label="no data"),
    ]
    if area_wkt:
        handles.append(_outline(ax, area_wkt, str(ds.attrs.get("grid_crs", ""))))
    fig.colorbar(image, ax=ax, label="speed (m/yr, log scale)", shrink=0.85)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=8, frameon=False)
    ax.text(
        0.0,
        -0.16,
        arrows.caption,
        transform=ax.transAxes,
        fontsize=8,
        va="top",
    )
    a = ds.attrs
    ax.set_title(
        f"{str(a['reference_time'])[:10]} → {str(a['secondary_time'])[:10]}   track {a['track']} "
        f"{str(a['direction']).lower()}   Δt {float(a['dt_days']):.1f} d   "
        f"{float(a.get('valid_percentage', 0)):.0f}% valid",
        fontsize=10,
    )
    _axis_labels(ax, ds)
    return _save(fig, png)


def cube_summary(cube: Path, png: Path, n_points: int = 3) -> Path:
    """Median speed map of the cube and the speed time series at its fastest points."""
    ds = open_cube(cube)
    median = median_speed(ds)
    points = fastest_points(median, n_points)
    fig = Figure(figsize=(13, 5.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    map_ax, series_ax = fig.subplots(1, 2, width_ratios=[1, 1.3])
    extent = _extent_km(ds)
    image = map_ax.imshow(median, extent=extent, norm=_speed_norm(median), cmap=SPEED_CMAP, interpolation="nearest")
    fig.colorbar(image, ax=map_ax, label="median speed (m/yr, log scale)", shrink=0.85)
    if ds.attrs.get("area_wkt"):
        _outline(map_ax, str(ds.attrs["area_wkt"]), str(ds.attrs.get("grid_crs", "")))
    x_km, y_km = ds["x"].values / 1000.0, ds["y"].values / 1000.0
    mid = ds["mid_date"].values
    img1, img2 = ds["acquisition_date_img1"].values, ds["acquisition_date_img2"].values
    for k, (row, col) in enumerate(points):
        label = f"P{k + 1}"
        colour = f"C{k}"
        map_ax.plot(x_km[col], y_km[row], marker="o", mfc="none", mec=colour, ms=10, mew=2)
        map_ax.annotate(label, (x_km[col], y_km[row]), xytext=(6, 6), textcoords="offset points", color=colour)
        series = ds["v"].isel(y=row, x=col).values
        ok = np.isfinite(series)
        series_ax.hlines(series[ok], img1[ok], img2[ok], color=colour, linewidth=0.8)
        series_ax.plot(mid[ok], series[ok], "o", ms=4, color=colour, label=f"{label} ({median[row, col]:.0f} m/yr)")
    _axis_labels(map_ax, ds)
    map_ax.set_title(f"median speed of {ds.sizes['mid_date']} layer(s)", fontsize=10)
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    series_ax.xaxis.set_major_locator(locator)
    series_ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    series_ax.set_ylabel("speed (m/yr)")
    series_ax.set_title("speed at the fastest points (bars: acquisition dates)", fontsize=10)
    if points:
        series_ax.legend(fontsize=8)
    series_ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(cube).name}: {_date_range(ds)}", fontsize=11)
    ds.close()
    return _save(fig, png)


def median_speed(ds: xr.Dataset) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per-cell median of ``v`` over all layers, read one spatial chunk column at a time."""
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    out = np.full((ny, nx), np.nan)
    _, by, bx = cube_chunks(ds)
    for y0 in range(0, ny, by):
        for x0 in range(0, nx, bx):
            block = ds["v"].isel(y=slice(y0, y0 + by), x=slice(x0, x0 + bx)).values
            out[y0 : y0 + block.shape[1], x0 : x0 + block.shape[2]] = nan_median(block, axis=0)
    return out


def fastest_points(median: np.ndarray[Any, Any], n_points: int, min_separation: int = 10) -> list[tuple[int, int]]:
    """Up to ``n_points`` cells of highest median speed, at least ``min_separation`` cells apart."""
    order = np.argsort(np.where(np.isfinite(median), median, -np.inf), axis=None)[::-1]
    chosen: list[tuple[int, int]] = []
    for flat in order:
        if len(chosen) == n_points:
            break
        row, col = (int(i) for i in np.unravel_index(flat, median.shape))
        if not np.isfinite(median[row, col]):
            break
        if all(max(abs(row - r), abs(col - c)) >= min_separation for r, c in chosen):
            chosen.append((row, col))
    return chosen


def _speed_norm(speed: np.ndarray[Any, Any]) -> Normalize:
    finite = speed[np.isfinite(speed) & (speed > 0)]
    if finite.size == 0:
        return LogNorm(vmin=MIN_SPEED, vmax=MIN_SPEED * 10)
    low = max(float(np.percentile(finite, 2)), MIN_SPEED)
    high = max(float(np.percentile(finite, 99.5)), low * 10)
    return LogNorm(vmin=low, vmax=high, clip=True)


def _grey() -> ListedColormap:
    return ListedColormap([MASKED_COLOUR])


@dataclass(frozen=True)
class Arrows:
    """The arrows of a quicklook: positions (km), components (m/yr) and what they mean."""

    x_km: np.ndarray[Any, Any]
    y_km: np.ndarray[Any, Any]
    vx: np.ndarray[Any, Any]
    vy: np.ndarray[Any, Any]
    step_km: float
    caption: str


def arrow_field(ds: xr.Dataset, k: float = ARROW_K) -> Arrows:
    """Arrows on a sub-sampled grid, only where the speed exceeds ``k`` × its error (``v_error``; products
    without one: everywhere valid). Noise on stable ground (a few m/yr in random directions) gets no arrow."""
    step = max(1, -(-max(ds.sizes["x"], ds.sizes["y"]) // ARROWS_PER_SIDE))
    names = ["vx", "vy", "v"] + (["v_error"] if "v_error" in ds else [])
    sub = ds[names].isel(x=slice(step // 2, None, step), y=slice(step // 2, None, step))
    u, w, speed = (np.asarray(sub[n].values, dtype=np.float64) for n in ("vx", "vy", "v"))
    # Still ice can measure exactly 0 (ISCE2's offsets come in steps of 1/oversampling px): no arrow there.
    ok = np.isfinite(u) & np.isfinite(w) & (speed > 0)
    if "v_error" in sub:
        error = np.asarray(sub["v_error"].values, dtype=np.float64)
        ok &= np.isfinite(error) & (speed > k * error)
        caption = f"arrows: flow where speed > {k:g} x its error (v_error), length proportional to speed"
    else:
        caption = "arrows: flow direction and speed (no error estimate in this product)"
    xx, yy = np.meshgrid(sub["x"].values / 1000.0, sub["y"].values / 1000.0)
    spacing = float(abs(ds["x"].values[1] - ds["x"].values[0])) if ds.sizes["x"] > 1 else 1.0
    return Arrows(xx[ok], yy[ok], u[ok], w[ok], step * spacing / 1000.0, caption)


def _draw_arrows(ax: Any, arrows: Arrows) -> None:
    if arrows.vx.size == 0:
        return
    fastest = float(np.max(np.hypot(arrows.vx, arrows.vy)))
    scale = fastest / (1.3 * arrows.step_km)  # the fastest arrow spans 1.3 arrow spacings
    quiver = ax.quiver(
        arrows.x_km,
        arrows.y_km,
        arrows.vx,
        arrows.vy,
        angles="xy",
        scale_units="xy",
        scale=scale,
        color="white",
        edgecolor="black",
        linewidth=0.3,
        width=0.004,
    )
    reference = _round_speed(fastest / 2)
    ax.quiverkey(
        quiver,
        1.02,
        -0.06,
        reference,
        f"{reference:g} m/yr",
        labelpos="E",
        coordinates="axes",
        fontproperties={"size": 8},
    )


def _round_speed(value: float) -> float:
    """1, 2 or 5 times a power of ten, at most ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(max(m * power for m in (1, 2, 5) if m * power <= value))


def _outline(ax: Any, area_wkt: str, crs: str) -> Line2D:
    """Draw the area's outline (km, grid CRS) and return its legend handle."""
    area = parse_area(area_wkt)
    forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    polygons = list(getattr(area, "geoms", [area]))
    for polygon in polygons:
        lon, lat = np.asarray(polygon.exterior.coords).T
        x, y = forward.transform(lon, lat)
        ax.plot(np.asarray(x) / 1000.0, np.asarray(y) / 1000.0, color="magenta", linewidth=1.2)
    return Line2D([], [], color="magenta", linewidth=1.2, label="area")


def _extent_km(ds: xr.Dataset) -> tuple[float, float, float, float]:
    x, y = ds["x"].values, ds["y"].values
    half = float(abs(x[1] - x[0])) / 2 if x.size > 1 else 0.0
    return ((x[0] - half) / 1e3, (x[-1] + half) / 1e3, (y[-1] - half) / 1e3, (y[0] + half) / 1e3)


def _axis_labels(ax: Any, ds: xr.Dataset) -> None:
    crs = ds.attrs.get("grid_crs", "")
    ax.set_xlabel(f"x (km, {crs})")
    ax.set_ylabel(f"y (km, {crs})")


def _date_range(ds: xr.Dataset) -> str:
    if ds.sizes["mid_date"] == 0:
        return "no layers"
    first = np.datetime_as_string(ds["acquisition_date_img1"].values.min(), unit="D")
    last = np.datetime_as_string(ds["acquisition_date_img2"].values.max(), unit="D")
    return f"{ds.sizes['mid_date']} layer(s), {first} to {last}"


def _save(fig: Figure, png: Path) -> Path:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    return png


@dataclass(frozen=True)
class PointSeries:
    """The layers' velocity at the cube cell nearest to a point (NaN where a layer has none)."""

    lon: float
    lat: float
    x: float
    y: float
    pair_ids: list[str]
    img1: np.ndarray[Any, Any]
    img2: np.ndarray[Any, Any]
    mid: np.ndarray[Any, Any]
    v: np.ndarray[Any, Any]
    v_error: np.ndarray[Any, Any]

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-friendly row per layer."""
        return [
            {
                "pair_id": pid,
                "mid_date": str(np.datetime_as_string(self.mid[i], unit="s")),
                "v": None if not np.isfinite(self.v[i]) else round(float(self.v[i]), 2),
                "v_error": None if not np.isfinite(self.v_error[i]) else round(float(self.v_error[i]), 2),
            }
            for i, pid in enumerate(self.pair_ids)
        ]


def point_series(cube: Path, lon: float, lat: float) -> PointSeries:
    """The time series at the cell holding (``lon``, ``lat``); :class:`CubeError` if it is outside the grid."""
    from offset_cube.cube.grid import CubeGrid, from_lonlat
    from offset_cube.errors import CubeError

    with open_cube(cube) as ds:
        grid = CubeGrid.from_attrs(dict(ds.attrs), where=str(cube))
        x, y = (float(v) for v in from_lonlat(grid).transform(lon, lat))
        x0, y0, x1, y1 = grid.bounds
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            raise CubeError(
                f"point {lon:g},{lat:g} (x {x:.0f}, y {y:.0f} in {grid.crs}) is outside the cube grid "
                f"x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}; give LON,LAT inside the area"
            )
        col = min(int((x - x0) // grid.spacing_m), grid.nx - 1)
        row = min(int((y1 - y) // grid.spacing_m), grid.ny - 1)
        cell = ds.isel(x=col, y=row)
        error = cell["v_error"].values if "v_error" in ds else np.full(ds.sizes["mid_date"], np.nan)
        return PointSeries(
            lon=lon,
            lat=lat,
            x=float(grid.x[col]),
            y=float(grid.y[row]),
            pair_ids=[str(p) for p in ds["pair_id"].values],
            img1=ds["acquisition_date_img1"].values,
            img2=ds["acquisition_date_img2"].values,
            mid=ds["mid_date"].values,
            v=np.asarray(cell["v"].values, dtype=np.float64),
            v_error=np.asarray(error, dtype=np.float64),
        )


def point_plot(series: PointSeries, png: Path) -> Path:
    """Speed at one point through time: each layer at its mid-date with ±1σ error bars and a horizontal bar over
    its two acquisition dates."""
    fig = Figure(figsize=(10, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ok = np.isfinite(series.v)
    yerr = np.where(np.isfinite(series.v_error), series.v_error, 0.0)[ok]
    ax.hlines(series.v[ok], series.img1[ok], series.img2[ok], color="0.6", linewidth=1, label="acquisition dates")
    ax.errorbar(
        series.mid[ok], series.v[ok], yerr=yerr, fmt="o", ms=4, color="C0", ecolor="C0", capsize=2, label="speed ± 1σ"
    )
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_ylabel("speed (m/yr)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(
        f"{series.lon:.4f}, {series.lat:.4f}  (cell x {series.x:.0f}, y {series.y:.0f}): "
        f"{int(ok.sum())} of {ok.size} layer(s) with a velocity",
        fontsize=10,
    )
    return _save(fig, png)
