"""Synthetic per-pair results (the engines' offsets.zarr schema) for the cube tests.

A result is a lattice of window centres laid out like a radar grid: rows along the local heading, columns along
ground range (right-looking), about ``spacing_m`` apart, centred on ``centre`` (lon, lat). Offsets are uniform
unless the caller edits the dataset, so the expected velocity anywhere follows from :mod:`offset_cube.cube.velocity`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from offset_cube.conventions import PairRecord
from offset_cube.cube.grid import CubeGrid, grid_for_area
from offset_cube.result import result_attrs, write_pair_result

EARTH_RADIUS_M = 6_371_000.0
#: A small area near 70°S (about 5.7 km x 5.6 km), where grid convergence in EPSG:3031 is large.
SOUTH_CENTRE = (100.0, -70.0)
SOUTH_AREA = "POLYGON((99.92 -70.025, 100.08 -70.025, 100.08 -69.975, 99.92 -69.975, 99.92 -70.025))"


def south_grid() -> CubeGrid:
    return grid_for_area(SOUTH_AREA, "auto", 120.0)


def pair_id(ref: dt.datetime, sec: dt.datetime, track: int) -> str:
    return f"{ref:%Y%m%d}_{sec:%Y%m%d}_t{track:03d}"


def synthetic_result(
    pairs_dir: Path,
    ref: dt.datetime,
    sec: dt.datetime,
    *,
    track: int = 12,
    direction: str = "ASCENDING",
    heading_deg: float = -25.8,
    incidence_deg: float = 39.0,
    az_px: float = 1.0,
    rg_px: float = 0.5,
    snr: float = 12.0,
    centre: tuple[float, float] = SOUTH_CENTRE,
    size: tuple[int, int] = (90, 90),
    spacing_m: float = 100.0,
    edit: Any = None,
) -> Path:
    """Write a result to ``pairs_dir/<pair_id>/offsets.zarr`` and return its path. ``edit(ds)`` may alter it first."""
    rows, cols = size
    r, c = np.meshgrid(np.arange(rows) - rows / 2, np.arange(cols) - cols / 2, indexing="ij")
    h = np.radians(heading_deg)
    east = r * spacing_m * np.sin(h) + c * spacing_m * np.cos(h)
    north = r * spacing_m * np.cos(h) - c * spacing_m * np.sin(h)
    lon0, lat0 = centre
    lat = lat0 + np.degrees(north / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(east / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))

    def full(value: float) -> tuple[tuple[str, str], np.ndarray]:
        return ("line", "sample"), np.full((rows, cols), value, dtype=np.float32)

    ds = xr.Dataset(
        {
            "azimuth_offset": full(az_px),
            "range_offset": full(rg_px),
            "snr": full(snr),
            "latitude": (("line", "sample"), lat),
            "longitude": (("line", "sample"), lon),
            "incidence_angle": full(incidence_deg),
            "heading": full(heading_deg),
            "azimuth_spacing": full(13.93),
            "range_spacing": full(2.329562),
        },
        coords={"line": np.arange(rows), "sample": np.arange(cols)},
    )
    pid = pair_id(ref, sec, track)
    record = PairRecord(
        pair_id=pid,
        track=track,
        direction=direction,
        engine="builtin",
        reference_time=ref.isoformat() + "Z",
        secondary_time=sec.isoformat() + "Z",
        dt_days=(sec - ref).total_seconds() / 86400.0,
        reference_granules=(f"S1A_IW_SLC__1SSH_{ref:%Y%m%dT%H%M%S}_REF",),
        secondary_granules=(f"S1A_IW_SLC__1SSH_{sec:%Y%m%dT%H%M%S}_SEC",),
        orbit_type="POEORB",
        polarization="HH",
        processing_parameters={"window": [64, 16]},
    )
    ds.attrs = result_attrs(record, grid="radar")
    if edit is not None:
        edit(ds)
    return write_pair_result(ds, pairs_dir / pid)


def acquisition(day: int, track: int = 12) -> dt.datetime:
    """A 2020 acquisition time ``day`` days after 1 January; the time of day depends on the track."""
    return dt.datetime(2020, 1, 1, 3, 0, 0) + dt.timedelta(days=day, minutes=track)


#: Products used by the cube tests: name → (reference day, secondary day, track, azimuth offset in pixels).
PRODUCT_SPECS: dict[str, tuple[int, int, int, float]] = {
    "A": (0, 12, 12, 1.0),
    "B": (12, 24, 12, 1.5),
    "C": (24, 36, 12, 2.0),
    "D": (36, 48, 12, 2.5),
    "E": (6, 18, 40, 0.8),  # another track, between A and B in time
    "A2": (0, 12, 12, 3.0),  # the pair of A reprocessed with other results
    "F": (3, 9, 12, 1.2),  # the same mid-time as A (day 6, same track time of day)
}


def make_products(folder: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Product stores for ``PRODUCT_SPECS`` (all by default) under ``folder``."""
    from offset_cube.config import ProductConfig
    from offset_cube.cube.product import make_pair_product

    grid = south_grid()
    out: dict[str, Path] = {}
    for name in names or list(PRODUCT_SPECS):
        ref_day, sec_day, track, az = PRODUCT_SPECS[name]
        result = synthetic_result(
            folder / "results" / name, acquisition(ref_day, track), acquisition(sec_day, track), track=track, az_px=az
        )
        out[name] = make_pair_product(result, grid, ProductConfig(), folder / name / "product.zarr")
    return out
