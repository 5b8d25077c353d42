"""Pictures for people: a quicklook PNG per pair and a summary PNG of the cube (matplotlib, Agg, no display).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas, never ``pyplot``: pyplot keeps global
state and is not thread-safe, and the flow makes quicklooks from several task threads at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm, Normalize
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from offset_cube.atomic import atomic_path
from offset_cube.cube.product import Reason, read_product
from offset_cube.cube.schema import cube_chunks
from offset_cube.cube.stats import nan_median
from offset_cube.cube.versions import open_cube

#: Arrows per image side in the quicklooks (sub-sampled so they stay readable).
ARROWS_PER_SIDE = 16
#: Lowest speed on the colour scale, m/yr (a log scale needs a positive floor; slower ice shows as this colour).
MIN_SPEED = 1.0
SPEED_CMAP = "viridis"
MASKED_COLOUR = "0.6"


def pair_quicklook(product: Path, png: Path) -> Path:
    """Speed of one pair product on a log scale with flow arrows; masked cells grey, no data white."""
    with read_product(product) as ds:
        ds = ds.load()
    fig = Figure(figsize=(8, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    extent = _extent_km(ds)
    masked = (ds["invalid_reason"].values != Reason.VALID) & (ds["invalid_reason"].values != Reason.NO_MEASUREMENT)
    ax.imshow(np.where(masked, 1.0, np.nan), extent=extent, cmap=_grey(), vmin=0, vmax=1, interpolation="nearest")
    speed = ds["v"].values
    image = ax.imshow(speed, extent=extent, norm=_speed_norm(speed), cmap=SPEED_CMAP, interpolation="nearest")
    _arrows(ax, ds)
    fig.colorbar(image, ax=ax, label="speed (m/yr, log scale)", shrink=0.85)
    ax.legend(
        handles=[
            Patch(color=MASKED_COLOUR, label="masked (low SNR / outlier)"),
            Patch(facecolor="white", edgecolor="0.3", label="no data"),
        ],
        loc="lower right",
        fontsize=8,
        framealpha=0.9,
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


def _arrows(ax: Any, ds: xr.Dataset) -> None:
    step = max(1, -(-max(ds.sizes["x"], ds.sizes["y"]) // ARROWS_PER_SIDE))
    sub = ds[["vx", "vy", "v"]].isel(x=slice(step // 2, None, step), y=slice(step // 2, None, step))
    u, w, speed = sub["vx"].values, sub["vy"].values, sub["v"].values
    # Still ice can measure exactly 0 (ISCE2's offsets come in steps of 1/oversampling px): such cells get no
    # arrow, and only the moving cells are divided by their speed.
    ok = np.isfinite(u) & np.isfinite(w) & (speed > 0)
    if not ok.any():
        return
    xx, yy = np.meshgrid(sub["x"].values / 1000.0, sub["y"].values / 1000.0)
    ax.quiver(
        xx[ok],
        yy[ok],
        u[ok] / speed[ok],
        w[ok] / speed[ok],
        color="white",
        edgecolor="black",
        linewidth=0.3,
        width=0.004,
    )


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
