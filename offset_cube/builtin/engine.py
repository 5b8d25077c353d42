"""The built-in engine: two dates of SAFE products → the common per-pair result, without ISCE2.

Per pair: open each date's products (IW SLC only, one track, the pair's polarisation); pick the swaths and bursts
over the area; deburst each date into one radar grid (deramped); predict the geometric offset of the secondary
relative to the reference at every window centre by zero-Doppler geometry (orbit file, else annotation state
vectors; ellipsoid plus a constant height or a DEM); track with the built-in tracker using that prediction as its
gross offset; subtract the prediction, remove the residual bias over stable ground, geolocate every window
centre and write :mod:`offset_cube.result` (``grid="radar"``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from shapely.geometry import MultiPolygon, Polygon

from offset_cube.area import parse_area
from offset_cube.builtin.bias import estimate_bias, stable_mask
from offset_cube.builtin.heights import HeightModel
from offset_cube.builtin.radargrid import RadarGrid, SwathSource, build_radar_grid
from offset_cube.builtin.streaming import StreamedCrop
from offset_cube.builtin.whitening import Whitening
from offset_cube.config import JobConfig
from offset_cube.dem import describe_dem, job_dem
from offset_cube.errors import EngineError, SafeError
from offset_cube.geometry.acquisition import DateScene, open_date
from offset_cube.geometry.ellipsoid import geodetic_to_ecef
from offset_cube.geometry.outline import outline_lon_lat
from offset_cube.geometry.rangedoppler import geo2rdr, look_geometry, rdr2geo
from offset_cube.planning import choose_polarization
from offset_cube.result import DIMS, pair_record, result_attrs, worse_orbit_type, write_pair_result
from offset_cube.size import Size
from offset_cube.stages import PairInputs

log = logging.getLogger(__name__)

#: Extra pixels around window + search when cropping, so gross-offset rounding never pushes a window out.
CROP_PAD_PX = 4


@dataclass(frozen=True)
class Crop:
    """A window of a radar grid: lines ``[l0, l0 + n_lines)`` and samples ``[s0, s0 + n_samples)``."""

    line0: int
    sample0: int
    n_lines: int
    n_samples: int

    @property
    def lines(self) -> tuple[int, int]:
        return self.line0, self.line0 + self.n_lines

    @property
    def samples(self) -> tuple[int, int]:
        return self.sample0, self.sample0 + self.n_samples

    def as_list(self) -> list[int]:
        """[first line, first sample, lines, samples] (for provenance)."""
        return [self.line0, self.sample0, self.n_lines, self.n_samples]


def run_builtin(inputs: PairInputs, job: JobConfig) -> Path:
    """Compute one pair's offsets with the built-in engine; write and return ``<pair_dir>/offsets.zarr``."""
    return write_pair_result(pair_offsets(inputs, job), inputs.pair_dir)


def pair_offsets(inputs: PairInputs, job: JobConfig) -> xr.Dataset:
    """The pair's per-pair result dataset (not yet written)."""
    polarisation = _polarisation(inputs, job)
    heights = HeightModel(job.dem.height_m, job_dem(job))
    area = parse_area(job.area)
    unpack_root = job.storage.unpacked_dir if job.builtin.unpack_measurements else None
    with (
        open_date(inputs.reference_safes, inputs.reference_orbits, polarisation, unpack_root) as ref,
        open_date(inputs.secondary_safes, inputs.secondary_orbits, polarisation, unpack_root) as sec,
    ):
        require_same_track(ref, sec)
        ref_grid = select_grid(ref, polarisation, area, heights, job.swaths and [s.value for s in job.swaths])
        sec_grid = select_grid(sec, polarisation, area, heights, ref_grid.swaths)
        return track_pair(inputs, job, ref, sec, ref_grid, sec_grid, area, heights, polarisation)


def _polarisation(inputs: PairInputs, job: JobConfig) -> str:
    chosen = choose_polarization(job, inputs.pair.scenes)
    if chosen is None:  # pragma: no cover - a pair always has scenes
        raise EngineError(f"{inputs.pair.label}: no polarisation to process")
    return chosen.value


def require_same_track(ref: DateScene, sec: DateScene) -> None:
    """Both dates must be one track and direction (relative orbit at product start, as the manifest says)."""
    tracks = {(p.manifest.relative_orbit, p.manifest.flight_direction): p for p in (*ref.products, *sec.products)}
    if len(tracks) > 1:
        described = "; ".join(f"{p.path} is track {t} {d}" for (t, d), p in tracks.items())
        raise SafeError(f"a pair must come from one track and direction, but {described}")


def select_grid(
    date: DateScene,
    polarisation: str,
    area: Polygon | MultiPolygon,
    heights: HeightModel,
    swaths: Sequence[str] | None,
) -> RadarGrid:
    """The date's radar grid over the swaths whose bursts cover the area (``swaths`` when given)."""
    candidates = []
    for product in date.products:
        available = product.swaths(polarisation)
        wanted = list(swaths) if swaths else available
        for swath in wanted:
            if swath not in available:
                raise SafeError(f"{product.path} has no {swath} {polarisation} swath (it has {', '.join(available)})")
            annotation = product.annotation(swath, polarisation)
            if annotation.bursts:
                candidates.append(SwathSource(product, swath, polarisation, annotation))
    if not candidates:
        raise SafeError(f"{date.paths}: no bursts in swaths {', '.join(swaths or [])} {polarisation}")
    grid = build_radar_grid(candidates, date.orbit)
    lines, samples = area_bounds(grid, area, heights)
    covering = {t.source.swath for t in grid.tiles if _overlaps(t.lines, lines) and _overlaps(t.samples, samples)}
    if not covering or grid.covered(lines, samples) == 0:
        raise SafeError(
            f"{date.paths}: no burst of {', '.join(grid.swaths)} {polarisation} covers the area "
            f"(the area falls on radar lines {lines[0]}..{lines[1]}, samples {samples[0]}..{samples[1]}; the bursts "
            f"span lines 0..{grid.shape[0]}, samples 0..{grid.shape[1]})"
        )
    if swaths is None and covering != set(grid.swaths):
        grid = build_radar_grid([c for c in candidates if c.swath in covering], date.orbit)
        lines, samples = area_bounds(grid, area, heights)
    covered = grid.covered(lines, samples) / ((lines[1] - lines[0]) * (samples[1] - samples[0]))
    if covered < 0.999:
        log.warning("%s: bursts cover only %.0f%% of the area's radar extent", date.paths, 100 * covered)
    return grid


def area_bounds(
    grid: RadarGrid, area: Polygon | MultiPolygon, heights: HeightModel
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Grid lines ``[l0, l1)`` and samples ``[s0, s1)`` that hold the area (at the height model's heights)."""
    lon, lat = outline_lon_lat(area)
    points = geodetic_to_ecef(lat, lon, heights(lat, lon))
    t_mid = grid.line_time(grid.shape[0] / 2)
    t, slant = geo2rdr(grid.orbit, points, t_mid)
    lines, samples = grid.radar_coords(t, slant)
    return (
        (math.floor(float(lines.min())), math.ceil(float(lines.max())) + 1),
        (math.floor(float(samples.min())), math.ceil(float(samples.max())) + 1),
    )


#: Window centres whose geometry is solved at once. rdr2geo on a DEM, geo2rdr and the look geometry hold about
#: 1.5 kB of temporaries per point (interpolated orbit states, ECEF vectors, Newton steps); solved chunk by chunk
#: they hold ~25 MB whatever the area, and only the results (~0.3 kB per window) grow with it. All at once, a whole
#: IW swath at the Shirase settings (943 k windows) would have held ~1.4 GB.
GEOMETRY_CHUNK = 16_384


def in_chunks(
    compute: Callable[..., dict[str, np.ndarray]], *arrays: np.ndarray, chunk: int | None = None
) -> dict[str, np.ndarray]:
    """``compute`` applied to at most ``chunk`` (:data:`GEOMETRY_CHUNK`) points at a time and its named results
    put together.

    The arrays share their leading shape, that of the first (the points); trailing axes (an ECEF vector's 3) stay
    with each point. ``compute`` gets 1-D runs of points and returns arrays with one leading entry per point.
    """
    shape = arrays[0].shape
    count = math.prod(shape)
    flat = [np.asarray(a).reshape(count, *np.shape(a)[len(shape) :]) for a in arrays]
    out: dict[str, np.ndarray] = {}
    chunk = chunk or GEOMETRY_CHUNK
    for start in range(0, max(count, 1), chunk):
        part = compute(*(a[start : start + chunk] for a in flat))
        for name, values in part.items():
            if name not in out:
                out[name] = np.empty((count, *np.shape(values)[1:]), dtype=np.asarray(values).dtype)
            out[name][start : start + chunk] = values
    return {name: values.reshape(*shape, *values.shape[1:]) for name, values in out.items()}


def predict_offsets(
    ref: RadarGrid, sec: RadarGrid, lines: np.ndarray, samples: np.ndarray, heights: HeightModel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric offsets (secondary − reference, lines and samples) at reference grid positions, and the ground
    points (ECEF) seen there: zero-Doppler rdr2geo on the reference, geo2rdr on the secondary (as topsApp's
    ``fineoffsets`` step, ``TopsProc/runFineOffsets.py``), :data:`GEOMETRY_CHUNK` points at a time."""
    height: float | HeightModel = heights.constant_m if heights.is_constant else heights

    def solve(lines: np.ndarray, samples: np.ndarray) -> dict[str, np.ndarray]:
        points = rdr2geo(
            ref.orbit, ref.line_time(lines), ref.slant_range(samples), height, initial_height=heights.typical_m
        )
        t_sec, r_sec = geo2rdr(sec.orbit, points, sec.line_time(lines))
        sec_lines, sec_samples = sec.radar_coords(t_sec, r_sec)
        return {"azimuth": sec_lines - lines, "range": sec_samples - samples, "points": points}

    lines, samples = np.broadcast_arrays(np.asarray(lines, dtype=np.float64), np.asarray(samples, dtype=np.float64))
    solved = in_chunks(solve, lines, samples)
    return solved["azimuth"], solved["range"], solved["points"]


def window_geometry(
    grid: RadarGrid, lines: np.ndarray, points: np.ndarray, heights: HeightModel
) -> dict[str, np.ndarray]:
    """The look geometry (:func:`~offset_cube.geometry.rangedoppler.look_geometry`) of the ground ``points`` seen
    at reference ``lines``, and on a DEM the terrain's slopes there (``slope_east``, ``slope_north``),
    :data:`GEOMETRY_CHUNK` points at a time."""

    def solve(lines: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
        looks = look_geometry(grid.orbit, grid.line_time(lines), points, grid.line_interval)
        if not heights.is_constant:
            looks["slope_east"], looks["slope_north"] = heights.slopes(looks["latitude"], looks["longitude"])
        return looks

    return in_chunks(solve, np.asarray(lines, dtype=np.float64), points)


@dataclass(frozen=True)
class PairLayout:
    """Where the pair is tracked: both crops, the window centres (reference grid coordinates) and the predicted
    geometry there (offsets in grid pixels, ground points in ECEF)."""

    ref_crop: Crop
    sec_crop: Crop
    lines: np.ndarray  # window-centre lines of the reference grid (1-D)
    samples: np.ndarray  # window-centre samples (1-D)
    predicted_az: np.ndarray  # (lines, samples)
    predicted_rg: np.ndarray
    points: np.ndarray  # (lines, samples, 3)

    @property
    def gross(self) -> tuple[np.ndarray, np.ndarray]:
        """The predicted offsets between the crops (what the tracker gets as its gross offset)."""
        shift_l = self.sec_crop.line0 - self.ref_crop.line0
        shift_s = self.sec_crop.sample0 - self.ref_crop.sample0
        return self.predicted_az - shift_l, self.predicted_rg - shift_s


def layout_pair(
    ref_grid: RadarGrid,
    sec_grid: RadarGrid,
    area: Polygon | MultiPolygon,
    heights: HeightModel,
    window: Size,
    search: Size,
    skip: Size,
) -> PairLayout:
    """Crops around the area and the predicted geometry at every window centre."""
    from offset_cube.tracking import window_centres

    lines, samples = area_bounds(ref_grid, area, heights)
    # A coarse prediction over the area fixes the secondary's whole-pixel shift and how far the geometric
    # offset strays from it, so the crops leave room for every window's search area.
    coarse = np.meshgrid(np.linspace(*lines, 5), np.linspace(*samples, 5), indexing="ij")
    coarse_az, coarse_rg, _ = predict_offsets(ref_grid, sec_grid, coarse[0], coarse[1], heights)
    shift = (round(float(np.median(coarse_az))), round(float(np.median(coarse_rg))))
    spread = (
        math.ceil(float(np.max(np.abs(coarse_az - shift[0])))),
        math.ceil(float(np.max(np.abs(coarse_rg - shift[1])))),
    )
    ref_crop = _crop(lines, samples, window, search, skip, spread)
    sec_crop = Crop(ref_crop.line0 + shift[0], ref_crop.sample0 + shift[1], ref_crop.n_lines, ref_crop.n_samples)
    centre_lines, centre_samples = window_centres((ref_crop.n_lines, ref_crop.n_samples), window, search, skip)
    grid_lines = ref_crop.line0 + np.asarray(centre_lines, dtype=np.float64)
    grid_samples = ref_crop.sample0 + np.asarray(centre_samples, dtype=np.float64)
    mesh_l, mesh_s = np.meshgrid(grid_lines, grid_samples, indexing="ij")
    pred_az, pred_rg, points = predict_offsets(ref_grid, sec_grid, mesh_l, mesh_s, heights)
    return PairLayout(ref_crop, sec_crop, grid_lines, grid_samples, pred_az, pred_rg, points)


def track_pair(
    inputs: PairInputs,
    job: JobConfig,
    ref: DateScene,
    sec: DateScene,
    ref_grid: RadarGrid,
    sec_grid: RadarGrid,
    area: Polygon | MultiPolygon,
    heights: HeightModel,
    polarisation: str,
) -> xr.Dataset:
    """Track the pair over the area with the predicted geometry as gross offset; build the result dataset."""
    from offset_cube.tracking import track_offsets

    # Size(*...) also where a model copy skipped validation
    window, search, skip = Size(*job.tracking.window), Size(*inputs.pair.search_px), Size(*job.tracking.skip)
    layout = layout_pair(ref_grid, sec_grid, area, heights, window, search, skip)
    if sec_grid.covered(layout.sec_crop.lines, layout.sec_crop.samples) == 0:
        raise SafeError(f"{sec.paths}: no burst covers the area's counterpart in the secondary")
    whitening = Whitening() if job.tracking.mode.value == "complex" and job.builtin.whitening else None
    # Both crops are read (deramped, and whitened for complex tracking) in azimuth blocks as the tracker reaches
    # them, so memory is bounded by the block size, not by the area (offset_cube.builtin.streaming).
    ref_data, sec_data = (
        StreamedCrop(
            dataclasses.replace(grid, whitening=whitening), (crop.line0, crop.sample0), (crop.n_lines, crop.n_samples)
        )
        for grid, crop in ((ref_grid, layout.ref_crop), (sec_grid, layout.sec_crop))
    )
    log.info(
        "%s: swaths %s, crop %dx%d px read in blocks of %d lines, %d windows, geometric offset %.2f..%.2f lines, "
        "%.2f..%.2f samples",
        inputs.pair.label,
        ",".join(ref_grid.swaths),
        layout.ref_crop.n_samples,
        layout.ref_crop.n_lines,
        ref_data.block_lines,
        layout.predicted_az.size,
        float(layout.predicted_az.min()),
        float(layout.predicted_az.max()),
        float(layout.predicted_rg.min()),
        float(layout.predicted_rg.max()),
    )
    gross_az, gross_rg = layout.gross
    # The tracker's own SNR cut and outlier test are off: the product stage applies product.snr_threshold and
    # its outlier filter with the job's settings.
    tracked = track_offsets(
        ref_data,
        sec_data,
        window=window,
        search=search,
        skip=skip,
        gross_offset=(gross_az, gross_rg),
        mode=job.tracking.mode.value,
        oversampling=job.tracking.oversampling,
        backend=job.builtin.backend,
        workers=job.builtin.workers,
        memory_budget_mb=job.builtin.memory_budget_mb,
        oversampling_path=job.builtin.tracking_path,
        lines=layout.lines - layout.ref_crop.line0,
        samples=layout.samples - layout.ref_crop.sample0,
        snr_threshold=0.0,
        outlier_mad_k=None,
    )
    motion_az = np.asarray(tracked["azimuth_offset"].values, dtype=np.float64) - gross_az
    motion_rg = np.asarray(tracked["range_offset"].values, dtype=np.float64) - gross_rg
    mesh_l, mesh_s = np.meshgrid(layout.lines, layout.samples, indexing="ij")
    geometry = window_geometry(ref_grid, mesh_l, layout.points, heights)
    ground_range_m = ref_grid.range_spacing / np.sin(np.radians(geometry["incidence_angle"]))
    stable = stable_mask(motion_az, motion_rg, geometry["azimuth_spacing"], ground_range_m, job.builtin.stable_quantile)
    bias = estimate_bias(motion_az, motion_rg, mesh_l, mesh_s, stable, job.builtin.bias_removal)
    log.info("%s: bias removal %s", inputs.pair.label, json.dumps(bias.summary))
    variables: dict[str, Any] = {
        "azimuth_offset": motion_az - bias.azimuth,
        "range_offset": motion_rg - bias.range,
        "snr": tracked["snr"].values,
        **{name: geometry[name] for name in ("latitude", "longitude", "incidence_angle", "heading")},
        "azimuth_spacing": geometry["azimuth_spacing"],
        "azimuth_skew": geometry["azimuth_skew"],
        "range_spacing": np.full(mesh_l.shape, ref_grid.range_spacing),
        "geometric_azimuth_offset": layout.predicted_az,
        "geometric_range_offset": layout.predicted_rg,
        **{name: tracked[name].values for name in ("cov_az", "cov_rg", "cov_azrg") if name in tracked},
    }
    if not heights.is_constant:  # the terrain's slope: the product converts surface-parallel motion
        variables["slope_east"], variables["slope_north"] = geometry["slope_east"], geometry["slope_north"]
    parameters = {
        "window": list(window),
        "search": list(search),
        "skip": list(skip),
        "mode": job.tracking.mode.value,
        "oversampling": job.tracking.oversampling,
        "whitening": whitening.describe() if whitening is not None else "none",
        "swaths": ref_grid.swaths,
        "dem": describe_dem(job),
        "heights": heights.describe(),
        "bias": bias.summary,
        "reference_crop": layout.ref_crop.as_list(),
        "secondary_crop": layout.sec_crop.as_list(),
    }
    return _result_dataset(inputs, ref, sec, polarisation, layout, variables, parameters)


def _result_dataset(
    inputs: PairInputs,
    ref: DateScene,
    sec: DateScene,
    polarisation: str,
    layout: PairLayout,
    variables: dict[str, Any],
    parameters: dict[str, Any],
) -> xr.Dataset:
    """The per-pair result (schema of :mod:`offset_cube.result`) on the window-centre grid."""
    record = pair_record(
        inputs.pair,
        engine="builtin",
        orbit_type=worse_orbit_type(ref.orbit_type, sec.orbit_type),
        polarization=polarisation,
        processing_parameters=parameters,
    )
    ds = xr.Dataset(
        {name: (DIMS, np.asarray(value)) for name, value in variables.items()},
        coords={"line": layout.lines, "sample": layout.samples},
        attrs=result_attrs(record, grid="radar"),
    )
    ds["geometric_azimuth_offset"].attrs.update(units="pixel", long_name="predicted geometric azimuth offset")
    ds["geometric_range_offset"].attrs.update(units="pixel", long_name="predicted geometric range offset")
    return ds


def _crop(
    lines: tuple[int, int],
    samples: tuple[int, int],
    window: Size,
    search: Size,
    skip: Size,
    spread: tuple[int, int],
) -> Crop:
    """The area's extent plus one skip (so window centres reach past the area's corners), half a window, the
    search range, the gross-offset spread and a pad on every side."""
    spread_lines, spread_samples = spread
    pad_l = skip.lines + window.lines // 2 + search.lines + spread_lines + CROP_PAD_PX
    pad_s = skip.samples + window.samples // 2 + search.samples + spread_samples + CROP_PAD_PX
    line0, sample0 = lines[0] - pad_l, samples[0] - pad_s
    return Crop(line0, sample0, lines[1] + pad_l - line0, samples[1] + pad_s - sample0)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]
