"""The built-in engine on a small simulated stack: predicted geometry vs what the simulator imposed, tracking of
still ground, the per-pair result, and the bad-input errors.

The simulated SAFE zips, orbit files and measurement TIFFs are read by exactly the code that reads real
products; the simulator keeps its true orbits and lattices in memory so the imposed geometry is known.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from offset_cube.builtin.bias import estimate_bias, stable_mask
from offset_cube.builtin.engine import pair_offsets, run_builtin
from offset_cube.config import JobConfig, job_from_dict
from offset_cube.errors import EngineError, SafeError
from offset_cube.planning import Pair, make_acquisitions, search_window
from offset_cube.result import read_pair_result
from offset_cube.search import local_scene
from offset_cube.simulate import DEMO_TEMPLATE
from offset_cube.simulate.stack import SimulatedStack, SimulationConfig, simulate_stack
from offset_cube.stages import OrbitFile, PairInputs
from tests.conftest import data_path

TRACKING = {"window": [64, 32], "skip": [64, 32], "mode": "complex"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SimulatedStack:
    """Three dates (12 and 24 days apart) over a 4 km area of the Pamir template, glacier flowing inside, on flat
    ground (the relief stack is tested in test_relief.py)."""
    config = SimulationConfig(
        template=DEMO_TEMPLATE, dates=3, area_m=(4000.0, 4000.0), margin_m=800.0, seed=5, relief="flat"
    )
    return simulate_stack(config, tmp_path_factory.mktemp("stack"))


def make_job(stack: SimulatedStack, out: Path, **overrides: object) -> JobConfig:
    raw: dict[str, object] = {
        "area": stack.area_wkt,
        "start": "2022-08-01",
        "end": "2022-12-31",
        "search": f"local:{stack.scene_dir}",
        "tracking": TRACKING,
        "dem": {"source": "none", "height_m": stack.height_m},
        "storage": {"out": str(out)},
    }
    raw.update(overrides)
    return job_from_dict(raw)


def make_inputs(
    stack: SimulatedStack, i: int, j: int, job: JobConfig, out: Path, orbit_type: str = "POEORB"
) -> PairInputs:
    scenes = [local_scene(d.product) for d in stack.dates if d.product]
    acquisitions = make_acquisitions(scenes)
    ref, sec = acquisitions[i], acquisitions[j]
    dt_days = (sec.start - ref.start).total_seconds() / 86400
    pair = Pair(reference=ref, secondary=sec, search_px=search_window(job, dt_days)[0])

    def orbit(k: int) -> OrbitFile:
        date = stack.dates[k]
        path = date.orbit_file if orbit_type == "POEORB" else None
        return OrbitFile(product_id=scenes[k].product_id, orbit_type=orbit_type, path=path)  # type: ignore[arg-type]

    return PairInputs(
        pair=pair,
        pair_dir=out / pair.pair_id,
        reference_safes=(stack.dates[i].product,),  # type: ignore[arg-type]
        secondary_safes=(stack.dates[j].product,),  # type: ignore[arg-type]
        reference_orbits=(orbit(i),),
        secondary_orbits=(orbit(j),),
    )


@pytest.mark.parametrize(("i", "j"), [(0, 1), (1, 2)])
def test_predicted_geometry_matches_what_the_simulator_imposed(
    stack: SimulatedStack, tmp_path: Path, i: int, j: int
) -> None:
    """Acceptance: within 0.05 px, from the .EOF files and annotation timing, at every window centre."""
    job = make_job(stack, tmp_path)
    ds = pair_offsets(make_inputs(stack, i, j, job, tmp_path), job)
    lines, samples = np.meshgrid(ds.line.values, ds.sample.values, indexing="ij")
    true_az, true_rg = stack.true_offsets(i, j, lines, samples)
    assert np.max(np.abs(ds.geometric_azimuth_offset.values - true_az)) < 0.05
    assert np.max(np.abs(ds.geometric_range_offset.values - true_rg)) < 0.05
    assert np.ptp(true_rg) > 0.01 and np.max(np.abs(true_rg)) > 5  # baselines make the geometry non-trivial


def test_annotation_orbit_fallback_predicts_the_same(stack: SimulatedStack, tmp_path: Path) -> None:
    job = make_job(stack, tmp_path)
    ds = pair_offsets(make_inputs(stack, 0, 1, job, tmp_path, orbit_type="annotation"), job)
    lines, samples = np.meshgrid(ds.line.values, ds.sample.values, indexing="ij")
    true_az, true_rg = stack.true_offsets(0, 1, lines, samples)
    assert np.max(np.abs(ds.geometric_range_offset.values - true_rg)) < 0.05
    assert np.max(np.abs(ds.geometric_azimuth_offset.values - true_az)) < 0.05
    assert ds.attrs["orbit_type"] == "annotation"


def test_still_ground_tracks_to_zero_and_ice_moves(stack: SimulatedStack, tmp_path: Path) -> None:
    """With no bias removal, stable ground comes out at zero motion (deramp, deburst and prediction all
    consistent with the pixels), and the glacier (flowing south-west) moves towards the sensor and backwards."""
    job = make_job(stack, tmp_path, builtin={"bias_removal": "none"})
    ds = pair_offsets(make_inputs(stack, 0, 1, job, tmp_path), job)
    az, rg = ds.azimuth_offset.values, ds.range_offset.values
    vx, vy = stack.true_velocity(ds.longitude.values, ds.latitude.values)
    still = np.hypot(vx, vy) < 0.5
    assert np.sum(still) > 20
    assert abs(float(np.nanmedian(az[still]))) < 0.05
    assert abs(float(np.nanmedian(rg[still]))) < 0.05
    assert np.nanmin(az) < -0.3 and np.nanmin(rg) < -1.5  # ~600 m/yr over 12 days, along -x, -y
    assert np.mean(np.isfinite(az)) > 0.9


def test_result_is_the_common_schema(stack: SimulatedStack, tmp_path: Path) -> None:
    job = make_job(stack, tmp_path)
    inputs = make_inputs(stack, 1, 2, job, tmp_path)
    path = run_builtin(inputs, job)
    assert path == inputs.pair_dir / "offsets.zarr"
    ds = read_pair_result(path)
    assert ds.attrs["grid"] == "radar" and ds.attrs["engine"] == "builtin"
    assert ds.attrs["direction"] == "ASCENDING" and ds.attrs["track"] == 27
    assert ds.attrs["dt_days"] == pytest.approx(24.0, abs=0.01)
    assert ds.attrs["orbit_type"] == "POEORB"
    parameters = json.loads(ds.attrs["processing_parameters"])
    assert (parameters["mode"], parameters["oversampling"]) == ("complex", job.tracking.oversampling)
    assert parameters["whitening"].startswith("Hamming de-weighting") and "9x33 px" in parameters["whitening"]
    lon, lat = ds.longitude.values, ds.latitude.values
    assert 74.9 < lon.min() < lon.max() < 75.2 and 38.2 < lat.min() < lat.max() < 38.5
    assert np.all((ds.heading.values > -12) & (ds.heading.values < -9))  # ascending, local heading
    assert np.all((ds.incidence_angle.values > 35) & (ds.incidence_angle.values < 45))
    assert np.allclose(ds.azimuth_spacing.values, 13.94, atol=0.05)
    assert np.allclose(ds.range_spacing.values, 2.329562, atol=1e-5)
    assert set(ds.dims) == {"line", "sample"} and ds.line.values[0] % 1 in (0.0, 0.5)


def test_dem_heights_equal_a_constant_height(stack: SimulatedStack, tmp_path: Path) -> None:
    """A flat DEM at the simulated height predicts what the constant height does; a DEM that misses the area
    is refused, naming it."""
    import rasterio
    from affine import Affine

    dem = tmp_path / "dem.tif"
    profile = {"driver": "GTiff", "dtype": "float32", "width": 60, "height": 60, "count": 1, "crs": "EPSG:4326"}
    with rasterio.open(dem, "w", transform=Affine(0.01, 0.0, 74.7, 0.0, -0.01, 38.6), **profile) as out:
        out.write(np.full((1, 60, 60), stack.height_m, dtype=np.float32))
    job = make_job(stack, tmp_path, dem=str(dem))
    ds = pair_offsets(make_inputs(stack, 0, 1, job, tmp_path), job)
    lines, samples = np.meshgrid(ds.line.values, ds.sample.values, indexing="ij")
    true_az, true_rg = stack.true_offsets(0, 1, lines, samples)
    assert np.max(np.abs(ds.geometric_range_offset.values - true_rg)) < 0.05
    assert np.max(np.abs(ds.geometric_azimuth_offset.values - true_az)) < 0.05
    with rasterio.open(dem, "w", transform=Affine(0.01, 0.0, 10.0, 0.0, -0.01, 50.0), **profile) as out:
        out.write(np.zeros((1, 60, 60), dtype=np.float32))
    with pytest.raises(EngineError, match=r"DEM .*dem\.tif does not cover"):
        pair_offsets(make_inputs(stack, 0, 1, job, tmp_path), job)


def test_streamed_blocks_give_the_offsets_of_one_block(
    stack: SimulatedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading both crops in 128-line azimuth blocks (deramped burst by burst, burst seams inside blocks) gives
    exactly the offsets of one block holding each whole crop; every read is at most one block, so the pixels
    the reader allocates are bounded by the block size, not by the area; each block is read once (one tracker
    worker); each measurement TIFF is opened once per pair, however many blocks are read from it; and GDAL's
    block cache is capped, so tiles read once do not stay in memory."""
    from offset_cube.builtin import streaming
    from offset_cube.builtin.radargrid import RadarGrid
    from offset_cube.safe import product

    job = make_job(stack, tmp_path, builtin={"workers": 1})
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    reads: list[tuple[int, int]] = []
    opened: list[str] = []
    real_read, real_open = RadarGrid.read, product.open_tiff

    def recording_read(self: RadarGrid, lines: tuple[int, int], samples: tuple[int, int]) -> tuple[Any, Any]:
        data, valid = real_read(self, lines, samples)
        reads.append(data.shape)
        return data, valid

    def recording_open(location: str, where: str) -> Any:
        opened.append(location)
        return real_open(location, where)

    monkeypatch.setattr(RadarGrid, "read", recording_read)
    monkeypatch.setattr(product, "open_tiff", recording_open)
    monkeypatch.setattr(streaming, "block_lines_for", lambda n_samples: 10**6)
    whole = pair_offsets(inputs, job)
    assert len(reads) == 2  # one block per crop: the whole crop
    (crop_lines, crop_samples), whole_reads = reads[0], list(reads)
    reads.clear()
    opened.clear()
    monkeypatch.setattr(streaming, "block_lines_for", lambda n_samples: streaming.MIN_BLOCK_LINES)
    streamed = pair_offsets(inputs, job)
    for name in ("azimuth_offset", "range_offset", "snr", "geometric_azimuth_offset", "cov_az"):
        np.testing.assert_array_equal(streamed[name].values, whole[name].values)
    blocks = -(-crop_lines // streaming.MIN_BLOCK_LINES)
    assert blocks >= 4 and whole_reads == [(crop_lines, crop_samples)] * 2
    assert len(reads) == 2 * blocks
    assert max(lines for lines, _ in reads) == streaming.MIN_BLOCK_LINES
    assert all(samples == crop_samples for _, samples in reads)
    assert sorted(opened) == sorted(set(opened)) and len(opened) == 2
    # GDAL's own block cache (5 % of RAM by default) would keep every tile read, growing with the area.
    from rasterio.env import get_gdal_config

    assert int(get_gdal_config("GDAL_CACHEMAX")) <= product.GDAL_BLOCK_CACHE_BYTES


# --------------------------------------------------------------------------------------------- bad input


def test_area_outside_the_bursts_names_the_file(stack: SimulatedStack, tmp_path: Path) -> None:
    job = make_job(stack, tmp_path, area="POLYGON((75.6 38.3, 75.65 38.3, 75.65 38.35, 75.6 38.35, 75.6 38.3))")
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    with pytest.raises(SafeError, match=rf"{inputs.reference_safes[0]}: no burst of IW2 VV covers the area"):
        pair_offsets(inputs, job)


def test_missing_polarisation_names_the_file(stack: SimulatedStack, tmp_path: Path) -> None:
    job = make_job(stack, tmp_path, polarization="HH")
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    with pytest.raises(SafeError, match=rf"{inputs.reference_safes[0]} has no HH data; it holds VV"):
        pair_offsets(inputs, job)


def test_pair_from_two_tracks_names_both_files(stack: SimulatedStack, tmp_path: Path) -> None:
    """A real track-64 product as the secondary of a simulated track-27 one: refused before any pixel is read."""
    job = make_job(stack, tmp_path)
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    other = data_path("safe/s1-reader/S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.zip")
    mixed = inputs.model_copy(update={"secondary_safes": (other,)})
    mixed = mixed.model_copy(update={"secondary_orbits": (OrbitFile(product_id=other.stem, orbit_type="annotation"),)})
    with pytest.raises(SafeError, match=r"one track and direction.*track 27 ASCENDING.*6681\.zip is track 64"):
        pair_offsets(mixed, job)


@pytest.mark.parametrize(("mode", "kind"), [("EW", "SLC"), ("IW", "GRD")])
def test_ew_and_grd_products_are_refused_naming_the_file(
    stack: SimulatedStack, tmp_path: Path, mode: str, kind: str
) -> None:
    job = make_job(stack, tmp_path)
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    source = inputs.reference_safes[0]
    bad = tmp_path / source.name.replace("_IW_SLC_", f"_{mode}_{kind}_")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("manifest.safe"):
                text = data.decode()
                text = text.replace("<s1sarl1:mode>IW</s1sarl1:mode>", f"<s1sarl1:mode>{mode}</s1sarl1:mode>")
                text = text.replace(
                    "<s1sarl1:productType>SLC</s1sarl1:productType>",
                    f"<s1sarl1:productType>{kind}</s1sarl1:productType>",
                )
                data = text.encode()
            zout.writestr(item, data)
    with pytest.raises(SafeError, match=rf"{bad} is a {mode} {kind} product"):
        pair_offsets(inputs.model_copy(update={"reference_safes": (bad,)}), job)


def test_truncated_measurement_names_the_file(stack: SimulatedStack, tmp_path: Path) -> None:
    job = make_job(stack, tmp_path)
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    source = inputs.secondary_safes[0]
    broken = tmp_path / source.name
    shutil.copy(source, broken)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(broken, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, b"" if item.filename.endswith(".tiff") else zin.read(item))
    with pytest.raises(SafeError, match=rf"{broken}: measurement file .* is empty"):
        pair_offsets(inputs.model_copy(update={"secondary_safes": (broken,)}), job)


# --------------------------------------------------------------------------------------------- bias


def test_bias_removal_median_and_plane() -> None:
    rng = np.random.default_rng(0)
    lines, samples = np.meshgrid(np.arange(40.0), np.arange(50.0), indexing="ij")
    tilt = 0.2 + 0.004 * lines - 0.002 * samples
    az = tilt + rng.normal(0, 0.01, lines.shape)
    rg = -0.1 + rng.normal(0, 0.01, lines.shape)
    az[10:20, 10:30] += 3.0  # moving ice
    rg[10:20, 10:30] -= 4.0
    az[0, 0] = np.nan
    stable = stable_mask(az, rg, np.full(az.shape, 14.0), np.full(az.shape, 3.7), 0.5)
    assert not np.any(stable[10:20, 10:30]) and not stable[0, 0]
    plane = estimate_bias(az, rg, lines, samples, stable, "plane")
    residual = (az - plane.azimuth)[~np.isnan(az)]
    assert np.median(np.abs(residual[residual < 1])) < 0.02
    median = estimate_bias(az, rg, lines, samples, stable, "median")
    assert median.range[0, 0] == pytest.approx(-0.1, abs=0.01)
    assert estimate_bias(az, rg, lines, samples, stable, "none").summary == {"method": "none"}
    few = estimate_bias(az, rg, lines, samples, np.zeros(az.shape, dtype=bool), "median")
    assert "skipped" in few.summary and not np.any(few.azimuth)


def test_simulated_products_look_like_real_ones(stack: SimulatedStack) -> None:
    """Names, manifests and orbit files of the simulated stack go through the same parsers as real ones."""
    from offset_cube.eof import EofName, read_eof

    scenes = [local_scene(d.product) for d in stack.dates if d.product]
    assert [s.relative_orbit for s in scenes] == [27, 27, 27]
    assert [round((s.start - scenes[0].start).total_seconds() / 86400) for s in scenes] == [0, 12, 36]
    for date in stack.dates:
        assert date.orbit_file is not None
        name = EofName.parse(date.orbit_file.name)
        vectors = read_eof(date.orbit_file)
        first_line = date.orbit.epoch + dt.timedelta(seconds=date.lattice.t0)
        assert name.orbit_type == "POEORB" and name.covers(first_line, first_line)
        assert vectors.spans(first_line, first_line + dt.timedelta(seconds=10))
    truth = xr.open_zarr(stack.truth, consolidated=False)  # type: ignore[arg-type]
    assert 550 < float(truth.v.max()) < 810 and float(truth.v.min()) < 1


def test_simulated_bursts_carry_the_tops_ramp(stack: SimulatedStack) -> None:
    """Raw simulated pixels sweep the azimuth spectrum like real TOPS bursts; read through the engine's
    deramping they sit at 0 Hz (the simulator and the engine share one ramp function, the test measures it)."""
    from offset_cube.area import parse_area
    from offset_cube.builtin.engine import area_bounds
    from offset_cube.builtin.heights import HeightModel
    from offset_cube.builtin.radargrid import SwathSource, build_radar_grid
    from offset_cube.safe.product import SafeProduct
    from tests.test_geometry import _local_centroid

    date = stack.dates[1]
    assert date.product is not None
    with SafeProduct(date.product) as product:
        annotation = product.annotation("IW2", "VV")
        grid = build_radar_grid([SwathSource(product, "IW2", "VV", annotation)], date.orbit)
        lines, samples = area_bounds(grid, parse_area(stack.area_wkt), HeightModel(stack.height_m))
        lines = (lines[0] - 50, lines[1] + 50)  # the simulated data extend 800 m (~57 lines) beyond the area
        tile = max(grid.tiles, key=lambda t: min(t.lines[1], lines[1]) - max(t.lines[0], lines[0]))
        first, last = max(tile.lines[0], lines[0]), min(tile.lines[1], lines[1])
        columns = ((samples[0] + samples[1]) // 2, (samples[0] + samples[1]) // 2 + 64)
        row0 = tile.burst.index * annotation.lines_per_burst - tile.line0
        raw = product.read_window("IW2", "VV", (row0 + first, row0 + last), columns)
        deramped, valid = grid.read((first, last), columns)
    assert last - first > 190 and valid.all() and np.all(np.any(raw, axis=1))
    prf = 1 / annotation.azimuth_time_interval_s
    _, before = _local_centroid(raw, prf)
    _, after = _local_centroid(deramped, prf)
    assert np.ptp(before) > 300
    assert abs(float(np.mean(after))) < 15 and np.std(after) < 30


def test_whitened_bursts_are_read_the_same_whatever_the_block(stack: SimulatedStack) -> None:
    """With whitening (complex tracking's default), each burst is filtered from its own pixels around the part
    asked for, so a small read equals the same part of a larger one, across a burst cut too; the whitened range
    spectrum is flat over the band (the Hamming weighting undone) and the local power equalised."""
    import dataclasses

    from offset_cube.area import parse_area
    from offset_cube.builtin.engine import area_bounds
    from offset_cube.builtin.heights import HeightModel
    from offset_cube.builtin.radargrid import SwathSource, build_radar_grid
    from offset_cube.builtin.whitening import Whitening
    from offset_cube.safe.product import SafeProduct

    date = stack.dates[0]
    assert date.product is not None
    with SafeProduct(date.product) as product:
        annotation = product.annotation("IW2", "VV")
        plain = build_radar_grid([SwathSource(product, "IW2", "VV", annotation)], date.orbit)
        grid = dataclasses.replace(plain, whitening=Whitening())
        lines, samples = area_bounds(grid, parse_area(stack.area_wkt), HeightModel(stack.height_m))
        cut = next(t.lines[1] for t in grid.tiles if lines[0] < t.lines[1] < lines[1])
        big, valid = grid.read((cut - 120, cut + 120), (samples[0], samples[0] + 400))
        small, _ = grid.read((cut - 20, cut + 30), (samples[0] + 100, samples[0] + 200))
        raw, _ = plain.read((cut - 120, cut + 120), (samples[0], samples[0] + 400))
    assert valid.all()
    assert np.array_equal(small, big[100:150, 100:200])
    band = annotation.range_bandwidth_hz / annotation.range_sampling_rate_hz
    f = np.fft.fftfreq(400)
    centre, edge = np.abs(f) < 0.1 * band, (np.abs(f) > 0.35 * band) & (np.abs(f) < 0.45 * band)
    for image, low, high in ((raw, 0.0, 0.6), (big, 0.8, 1.25)):
        power = np.mean(np.abs(np.fft.fft(image, axis=1)) ** 2, axis=0)
        assert low < np.mean(power[edge]) / np.mean(power[centre]) < high
    local = np.abs(big) ** 2
    assert np.mean(local) == pytest.approx(1.0, abs=0.1)


def test_window_geometry_is_solved_in_chunks_with_bounded_memory(
    stack: SimulatedStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The predicted offsets, ground points and look geometry of 120 000 window centres (a 64 km area at the
    Shirase settings has ~1e5) are solved GEOMETRY_CHUNK points at a time: the same values as all at once, and
    the memory they take beyond their results does not grow with the number of windows (all at once, on a constant
    height: 67 MB more for the 120 000 points than for 4 000; in chunks under 16 MB)."""
    import tracemalloc

    from offset_cube.builtin import engine
    from offset_cube.builtin.heights import HeightModel

    job = make_job(stack, tmp_path)
    inputs = make_inputs(stack, 0, 1, job, tmp_path)
    heights = HeightModel(stack.height_m)
    with (
        engine.open_date(inputs.reference_safes, inputs.reference_orbits, "VV") as ref,
        engine.open_date(inputs.secondary_safes, inputs.secondary_orbits, "VV") as sec,
    ):
        area = engine.parse_area(job.area)
        ref_grid = engine.select_grid(ref, "VV", area, heights, None)
        sec_grid = engine.select_grid(sec, "VV", area, heights, ref_grid.swaths)

    def solve(count: int) -> tuple[dict[str, np.ndarray], int]:
        lines, samples = np.meshgrid(np.linspace(100, 900, count // 400), np.linspace(200, 2000, 400), indexing="ij")
        tracemalloc.start()
        try:
            az, rg, points = engine.predict_offsets(ref_grid, sec_grid, lines, samples, heights)
            looks = engine.window_geometry(ref_grid, lines, points, heights)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        results = {"az": az, "rg": rg, "points": points, **looks}
        return results, peak - sum(v.nbytes for v in results.values())

    small, small_extra = solve(4_000)
    _, large_extra = solve(120_000)
    assert large_extra - small_extra < 16e6, (small_extra, large_extra)
    # In chunks, the same values as all points at once (on fewer points, to keep the test light).
    monkeypatch.setattr(engine, "GEOMETRY_CHUNK", 1_000)
    chunked, _ = solve(4_000)
    for name, values in small.items():
        np.testing.assert_allclose(chunked[name], values, rtol=0, atol=1e-9, err_msg=name)


def test_a_date_shared_by_two_pairs_is_unpacked_once_with_the_offsets_of_the_zip(
    stack: SimulatedStack, tmp_path: Path, unpacked_copies: list[str]
) -> None:
    """builtin.unpack_measurements (the default): each date's measurement TIFF is inflated from its zip once, by
    the first pair that reads it, into storage.scene_cache/unpacked/; the second pair reads the copy. The offsets
    are those read straight from the zips."""
    made = unpacked_copies
    job = make_job(stack, tmp_path)
    unpacked = [pair_offsets(make_inputs(stack, i, j, job, tmp_path), job) for i, j in ((0, 1), (1, 2))]
    assert len(made) == len(set(made)) == 3  # one swath member of each of the three dates, once each
    assert all(Path(name).is_relative_to(job.storage.unpacked_dir) for name in made)
    zipped_job = make_job(stack, tmp_path / "zip", builtin={"unpack_measurements": False})
    for (i, j), ds in zip(((0, 1), (1, 2)), unpacked, strict=True):
        direct = pair_offsets(make_inputs(stack, i, j, zipped_job, tmp_path / "zip"), zipped_job)
        np.testing.assert_array_equal(ds.azimuth_offset.values, direct.azimuth_offset.values)
        np.testing.assert_array_equal(ds.range_offset.values, direct.range_offset.values)
    assert len(made) == 3 and not zipped_job.storage.unpacked_dir.exists()
