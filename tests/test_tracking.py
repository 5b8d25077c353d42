"""The built-in tracker on synthetic speckle pairs with known offsets, and on ISCE2's own fixture.

Images are small (a few hundred lines) so that the whole file runs in well under a minute on 2 cores. Accuracy
limits are set from the Cramér-Rao bounds (coherent: Bamler & Eineder 2005, IEEE GRSL 2(2) 151-155; incoherent:
De Zan 2014, IEEE GRSL 11(1) 264-267) with margin for the small number of windows.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offset_cube.errors import TrackingError
from offset_cube.isce_raster import read_band
from offset_cube.tracking import DEFAULT_SNR_THRESHOLDS, track_offsets, window_centres
from offset_cube.tracking import kernels as k
from offset_cube.tracking.backend import get_backend
from offset_cube.tracking.synthetic import (
    constant_shift_pair,
    glacier_field,
    mix,
    speckle,
    warp,
    window_mean_offsets,
)
from offset_cube.tracking.tracker import outlier_windows
from tests.conftest import data_path

WINDOW = (64, 16)
SEARCH = (20, 8)
SKIP = (32, 16)
MODES = ("amplitude", "complex")


def track(ref: Any, sec: Any, **kwargs: Any) -> Any:
    options: dict[str, Any] = {"window": WINDOW, "search": SEARCH, "skip": SKIP, "workers": 1, **kwargs}
    return track_offsets(ref, sec, **options)


def errors(ds: Any, truth: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    return ds.azimuth_offset.values - truth[0], ds.range_offset.values - truth[1]


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(values**2)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shift", [(2.0, -3.0), (0.37, 1.71), (-1.5, -0.25), (-3.8, 6.6)])
def test_constant_shift_is_recovered(mode: str, shift: tuple[float, float]) -> None:
    """Integer, fractional and negative shifts, at coherence 0.7 (bounds ~0.026/0.023 px coherent)."""
    ref, sec = constant_shift_pair((192, 768), shift, gamma=0.7, seed=11)
    ds = track(ref, sec, mode=mode)
    d_az, d_rg = errors(ds, shift)
    assert np.isfinite(d_az).all() and np.isfinite(d_rg).all()
    assert abs(np.mean(d_az)) < 0.012 and abs(np.mean(d_rg)) < 0.012
    limit = 0.035 if mode == "complex" else 0.05
    assert rms(d_az) < limit and rms(d_rg) < limit
    assert ds.azimuth_offset.dtype == np.float32 and ds.snr.dtype == np.float32


@pytest.mark.parametrize("mode", MODES)
def test_no_pixel_locking(mode: str) -> None:
    """The mean error does not depend on the fractional part of the offset (amplitude NCC on the raw pixel
    grid swings by ±0.15 px here)."""
    means_az, means_rg = [], []
    fractions = np.linspace(0.0, 1.0, 8, endpoint=False)
    for fraction in fractions:
        shift = (-0.4 + fraction, 2.0 + fraction)
        ref, sec = constant_shift_pair((160, 768), shift, gamma=0.95, seed=5)
        d_az, d_rg = errors(track(ref, sec, mode=mode), shift)
        means_az.append(np.mean(d_az))
        means_rg.append(np.mean(d_rg))
    swing = max(np.ptp(means_az), np.ptp(means_rg))
    assert swing < (0.004 if mode == "complex" else 0.012), (means_az, means_rg)


def test_parabolic_refinement_is_biased_dft_is_not() -> None:
    """The 'parabolic' option shows the pixel-locking the default refinement removes (so the test above can fail)."""
    shift = (0.25, 1.25)
    ref, sec = constant_shift_pair((160, 768), shift, gamma=0.95, seed=5)
    parabolic = errors(track(ref, sec, mode="complex", subpixel="parabolic"), shift)
    dft = errors(track(ref, sec, mode="complex"), shift)
    assert abs(np.mean(parabolic[1])) > 0.03
    assert abs(np.mean(dft[1])) < 0.005


@pytest.mark.parametrize("mode", MODES)
def test_finer_oversampling_than_the_default_changes_little(mode: str) -> None:
    ref, sec = constant_shift_pair((160, 768), (0.3, -1.45), gamma=0.7, seed=8)
    default, fine = track(ref, sec, mode=mode), track(ref, sec, mode=mode, oversampling=64)
    coarse = track(ref, sec, mode=mode, oversampling=1)
    for name in ("azimuth_offset", "range_offset"):
        change = np.abs(default[name].values - fine[name].values)
        assert np.nanmax(change) < 0.005 and rms(change) < 0.001
    # A 1/2-px grid alone is not enough (in complex mode, whose last grid is refined by its quartic interpolant,
    # in range: 0.006 px RMS; 0.0015 in azimuth).
    assert max(rms(coarse[name].values - fine[name].values) for name in ("azimuth_offset", "range_offset")) > 0.002


@pytest.mark.parametrize("mode", MODES)
def test_smooth_field(mode: str) -> None:
    """A glacier-like field varying by 3-4 px over the image, with gradients up to 0.01 px/px (the strain of a
    fast glacier over 12 days; much steeper fields decorrelate the speckle inside a 64-px window)."""
    shape = (384, 768)
    rng = np.random.default_rng(3)
    ref = speckle(shape, rng)
    field = glacier_field((1024, 2048))
    sec = mix(warp(ref, field), speckle(shape, rng), 0.8)
    ds = track(ref, sec, mode=mode, skip=(48, 24))
    truth = window_mean_offsets(field, (ds.line.values, ds.sample.values), WINDOW)
    d_az, d_rg = errors(ds, truth)
    assert np.isfinite(d_az).mean() > 0.97
    assert rms(d_az) < 0.04 and rms(d_rg) < 0.04
    assert np.ptp(truth[1]) > 3.0  # the field really varies over the grid


def test_isce_fixture_beats_isce2() -> None:
    """On ISCE's grid: at least as good as ISCE2's complex mode, far better than its 'mag' mode (README table:
    complex 0.0250 / 0.0311, mag 0.1178 / 0.1211 px RMSE down / across); amplitude-mode SNR and covariance equal
    ampcor's (same definitions, same pixel-level surface)."""
    folder = data_path("isce")
    ref, sec = read_band(folder / "ref.slc"), read_band(folder / "sec.slc")
    truth = np.load(folder / "truth.npz")
    grid = {"lines": truth["centre_down"][:, 0], "samples": truth["centre_across"][0], "skip": None}
    isce = np.fromfile(folder / "complex" / "dense_offsets.bil", "<f4").reshape(19, 2, 19)
    ok = isce[:, 0] != -10000
    isce_rms = [rms((isce[:, i] - truth[key])[ok]) for i, key in enumerate(("down", "across"))]
    for mode in MODES:
        ds = track(ref, sec, mode=mode, **grid)
        np.testing.assert_array_equal(ds.line.values, truth["centre_down"][:, 0])
        d_az, d_rg = errors(ds, (truth["down"], truth["across"]))
        assert np.isfinite(d_az).all()
        assert rms(d_az) <= isce_rms[0] and rms(d_rg) <= isce_rms[1], (mode, rms(d_az), rms(d_rg), isce_rms)
        assert rms(d_az) < 0.117 / 3 and rms(d_rg) < 0.121 / 3
    snr = np.fromfile(folder / "complex" / "dense_offsets_snr.bil", "<f4").reshape(19, 19)
    cov = np.fromfile(folder / "complex" / "dense_offsets_cov.bil", "<f4").reshape(19, 3, 19)
    ds = track(ref, sec, mode="amplitude", **grid)
    np.testing.assert_allclose(ds.snr.values[ok], snr[ok], rtol=1e-3)
    for band, name in enumerate(("cov_rg", "cov_az", "cov_azrg")):
        np.testing.assert_allclose(ds[name].values[ok], cov[:, band][ok], rtol=1e-3, atol=2e-6)


@pytest.mark.parametrize("mode", MODES)
def test_pure_noise_is_low_snr_and_invalid(mode: str) -> None:
    rng = np.random.default_rng(9)
    ref, sec = speckle((256, 1024), rng), speckle((256, 1024), rng)
    ds = track(ref, sec, mode=mode)
    assert np.isfinite(ds.snr.values).all()
    assert np.median(ds.snr.values) < DEFAULT_SNR_THRESHOLDS[mode] * 0.8
    assert np.isnan(ds.range_offset.values).mean() > 0.9
    matched = track(*constant_shift_pair((256, 1024), (0.5, 0.5), gamma=0.7, seed=9), mode=mode)
    assert np.median(matched.snr.values) > 2 * DEFAULT_SNR_THRESHOLDS[mode]
    kept = track(ref, sec, mode=mode, snr_threshold=0.0, outlier_mad_k=None)
    assert np.isfinite(kept.range_offset.values).mean() > 0.5


def test_nan_and_zero_regions_invalidate_only_their_windows() -> None:
    """Windows with under 90 % usable pixels are invalid (ampcor's rule); the others are unaffected."""
    shift = (0.3, 1.2)
    ref, sec = constant_shift_pair((192, 768), shift, gamma=0.8, seed=2)
    ref[:, 300:420] = np.nan
    sec[100:, :] = 0
    ds = track(ref, sec, mode="amplitude")
    d_rg = errors(ds, shift)[1]
    samples, lines = ds.sample.values, ds.line.values
    chip_hits_nan = (samples[None, :] + 32 > 300) & (samples[None, :] - 31.5 < 420)
    search_hits_zero = np.broadcast_to((lines[:, None] + 7.5 + 8 >= 100), d_rg.shape)
    should_fail = chip_hits_nan | search_hits_zero
    assert np.isnan(d_rg[should_fail]).all()
    assert np.isnan(ds.snr.values[should_fail]).all()
    good = ~should_fail
    assert good.sum() >= 10
    assert np.isfinite(d_rg[good]).all() and rms(d_rg[good]) < 0.06


@pytest.mark.parametrize("mode", MODES)
def test_a_false_match_that_passes_the_snr_cut_is_an_outlier(mode: str) -> None:
    """A copy of one window's reference chip pasted 5 x 6 px away in the secondary gives that window a strong,
    wrong peak (SNR far above the cut); the neighbour consistency test invalidates it and keeps the rest."""
    shift = (2.0, -3.0)
    ref, sec = constant_shift_pair((192, 1024), shift, gamma=0.8, seed=21)
    top, left = 8 + 16 * 5, 20 + 32 * 12  # window row 5, column 12
    sec[top + 5 : top + 21, left + 6 : left + 70] = ref[top : top + 16, left : left + 64]
    unfiltered = track(ref, sec, mode=mode, outlier_mad_k=None)
    d_az, d_rg = errors(unfiltered, shift)
    wrong = np.hypot(np.nan_to_num(d_az), np.nan_to_num(d_rg)) > 1
    assert wrong[5, 12] and np.isfinite(d_az[5, 12])
    assert unfiltered.snr.values[5, 12] > 3 * DEFAULT_SNR_THRESHOLDS[mode]
    ds = track(ref, sec, mode=mode)
    d_az, d_rg = errors(ds, shift)
    assert np.isnan(d_az[5, 12]) and np.isnan(d_rg[5, 12])
    valid = np.isfinite(d_az)
    assert (np.abs(d_az[valid]) < 0.5).all() and (np.abs(d_rg[valid]) < 0.5).all()
    assert ds.attrs["outlier_windows"] == wrong.sum() >= 1
    assert valid.sum() == np.isfinite(unfiltered.azimuth_offset.values).sum() - wrong.sum()


def test_outlier_windows_rule() -> None:
    """k * max(MAD, 0.1 px) around the median of the passing windows in a 5x5 box; sparse boxes are not judged."""
    az = np.tile(np.linspace(0.0, 3.0, 12), (9, 1))  # a ramp of 0.27 px per window is not an outlier
    rg = np.zeros_like(az)
    passing = np.ones(az.shape, dtype=bool)
    az[4, 6] += 2.0  # the ramp makes the MAD 0.27 px here: limit 1.36 px
    rg[2, 2] -= 0.4
    passing[0, 0] = False
    az[0, 0] = 50.0  # not passing: never an outlier whatever its value
    isolated = np.zeros_like(passing)
    isolated[8, 11] = isolated[8, 10] = True
    found = outlier_windows((az, rg), passing, 5.0)
    assert found.sum() == 1 and found[4, 6]
    assert outlier_windows((az, rg), passing, 3.0).sum() == 2
    assert not outlier_windows((az + 9 * isolated, rg), isolated, 5.0).any()


def test_windows_at_borders_and_gross_offsets() -> None:
    """A search area leaving the secondary makes that window invalid; gross offsets move the search (a field
    with non-integer values is rounded to place it, and the result is still the total offset)."""
    shift = (5.3, -12.6)
    ref, sec = constant_shift_pair((160, 640), shift, gamma=0.8, seed=4)
    lines, samples = window_centres(ref.shape, WINDOW, (4, 4), SKIP)
    assert lines[0] == 4 + 7.5 and samples[0] == 4 + 31.5
    no_gross = track(ref, sec, search=(4, 4), lines=lines, samples=samples)
    assert np.isnan(no_gross.range_offset.values).all()  # true offset beyond the +/-4 search
    gross_az = np.full((lines.size, samples.size), 5.4)
    gross_rg = np.full((lines.size, samples.size), -12.4)
    gross_rg[0, 3] = np.nan
    ds = track(ref, sec, search=(4, 4), lines=lines, samples=samples, gross_offset=(gross_az, gross_rg))
    d_az, d_rg = errors(ds, shift)
    left_out = samples - 31.5 - 12 - 4 < 0  # search area would start left of the image
    assert np.isnan(d_rg[:, left_out]).all() and left_out.any()
    assert np.isnan(d_rg[0, 3])
    rest = np.isfinite(d_rg)
    assert rest.sum() == d_rg.size - left_out.sum() * lines.size - 1
    assert rms(d_rg[rest]) < 0.05 and rms(d_az[rest]) < 0.05
    assert ds.attrs["gross_offset_range"] == "field"
    constant = track(ref, sec, search=(4, 4), lines=lines, samples=samples, gross_offset=(5.0, -13.0))
    np.testing.assert_array_equal(constant.range_offset.values[rest], ds.range_offset.values[rest])


def test_non_square_windows_and_snapped_centres() -> None:
    shift = (1.2, -0.7)
    ref, sec = constant_shift_pair((256, 512), shift, gamma=0.8, seed=6)
    ds = track_offsets(
        ref, sec, window=(24, 48), search=(6, 10), skip=None, lines=[40.2, 100.0, 150.6], samples=[50.0, 300.3]
    )
    # a 48-line window has centres on half pixels: each requested centre moves to the nearest one (ties: later)
    np.testing.assert_array_equal(ds.line.values, [40.5, 100.5, 150.5])
    np.testing.assert_array_equal(ds.sample.values, [50.5, 300.5])
    d_az, d_rg = errors(ds, shift)
    assert rms(d_az) < 0.05 and rms(d_rg) < 0.05
    assert (ds.attrs["window_width"], ds.attrs["window_height"]) == (24, 48)


def test_window_centres_convention() -> None:
    lines, samples = window_centres((100, 300), (64, 16), (20, 8), (32, 16))
    # first window: lines 8..23, samples 20..83 -> centre (15.5, 51.5); last search area ends inside the image
    assert lines[0] == 15.5 and samples[0] == 51.5
    assert np.all(np.diff(lines) == 16) and np.all(np.diff(samples) == 32)
    assert lines[-1] + 7.5 + 1 + 8 <= 100 and samples[-1] + 31.5 + 1 + 20 <= 300
    assert lines[-1] + 16 + 7.5 + 1 + 8 > 100


def test_real_images_in_amplitude_mode() -> None:
    shift = (0.6, 2.3)
    ref, sec = constant_shift_pair((192, 768), shift, gamma=0.8, seed=8)
    ds = track(np.abs(ref), np.abs(sec).astype(np.float64))
    d_rg = errors(ds, shift)[1]
    assert np.isfinite(d_rg).mean() > 0.95 and rms(d_rg[np.isfinite(d_rg)]) < 0.15


def test_lazy_inputs_are_read_tile_by_tile() -> None:
    """Any array-like with shape/dtype/slicing works and is never read whole; results equal the in-memory run."""
    ref, sec = constant_shift_pair((256, 1024), (0.4, -1.1), gamma=0.7, seed=12)

    class Recorder:
        def __init__(self, data: np.ndarray) -> None:
            self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

        def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
            self.reads.append(key)
            return self.data[key]

    lazy_ref, lazy_sec = Recorder(ref), Recorder(sec)
    lazy = track(lazy_ref, lazy_sec, mode="amplitude", memory_budget_mb=16)
    direct = track(ref, sec, mode="amplitude", workers=2)
    np.testing.assert_array_equal(lazy.range_offset.values, direct.range_offset.values)
    for recorder in (lazy_ref, lazy_sec):
        assert len(recorder.reads) > 1
        assert all((key[0].stop - key[0].start) * (key[1].stop - key[1].start) < ref.size / 2 for key in recorder.reads)


def test_memmap_input(tmp_path: Path) -> None:
    ref, sec = constant_shift_pair((128, 512), (0.4, -1.1), gamma=0.8, seed=1)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "sec.npy", sec)
    mapped = track(np.load(tmp_path / "ref.npy", mmap_mode="r"), np.load(tmp_path / "sec.npy", mmap_mode="r"))
    np.testing.assert_array_equal(mapped.azimuth_offset.values, track(ref, sec).azimuth_offset.values)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": (63, 16)}, "window width 63 is not allowed: window sizes must be even"),
        ({"window": (64, 15)}, "window height 15 is not allowed"),
        ({"search": (1, 8)}, "half search ranges must be between 2"),
        ({"search": (20, 60)}, "needs 104 samples x 136 lines, but the reference is only 512 x 128"),
        ({"window": (600, 16)}, "but the reference is only 512 x 128"),
        ({"skip": (0, 16)}, "skips must be at least 1"),
        ({"mode": "coherent"}, "mode 'coherent' is not one of"),
        ({"subpixel": "gauss"}, "subpixel 'gauss' is not one of"),
        ({"oversampling": 12}, "oversampling must be a power of two"),
        ({"backend": "torch"}, "backend 'torch' is not one of"),
        ({"gross_offset": (np.zeros((3, 3)), 0.0)}, "gross azimuth offset field has shape (3, 3)"),
        ({"skip": None}, "skip is needed unless both lines and samples"),
        ({"workers": 0}, "workers must be at least 1"),
        ({"outlier_mad_k": 0}, "outlier_mad_k must be a positive number"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    ref, sec = constant_shift_pair((128, 512), (0.0, 0.0), seed=1)
    with pytest.raises(TrackingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        track(ref, sec, **kwargs)


def test_bad_inputs_are_rejected() -> None:
    ref, sec = constant_shift_pair((128, 512), (0.0, 0.0), seed=1)
    with pytest.raises(TrackingError, match="mode 'complex' needs complex images"):
        track(np.abs(ref), np.abs(sec), mode="complex")
    with pytest.raises(TrackingError, match="both be complex or both be real"):
        track(ref, np.abs(sec))
    with pytest.raises(TrackingError, match="must be a 2-D image"):
        track(ref[None], sec[None])


def test_threads_and_batch_sizes_do_not_change_results() -> None:
    ref, sec = constant_shift_pair((256, 1024), (0.4, -1.1), gamma=0.6, seed=13)
    one = track(ref, sec, mode="complex", workers=1)
    two = track(ref, sec, mode="complex", workers=2, memory_budget_mb=16)
    for name in ("azimuth_offset", "range_offset", "snr", "cov_az"):
        np.testing.assert_array_equal(one[name].values, two[name].values)


def test_batches_fit_the_memory_budget_and_amplitude_chunks_the_caches() -> None:
    """A batch (a tile read at once) holds up to MAX_BATCH windows within the budget; on the CPU in amplitude mode
    its per-window surfaces run in chunks of ~CPU_BATCH_SEARCH_PX search-chip pixels (the caches)."""
    from offset_cube.size import Size
    from offset_cube.tracking.core import BatchParams
    from offset_cube.tracking.tracker import MAX_BATCH, MIN_BATCH, _batch_size, _chunk_size

    def params(window: tuple[int, int], search: tuple[int, int], mode: str) -> BatchParams:
        return BatchParams(Size(*window), Size(*search), mode, "dft", 8, True)  # type: ignore[arg-type]

    peer_amplitude, peer_complex = params((64, 16), (20, 8), "amplitude"), params((64, 16), (20, 8), "complex")
    assert peer_amplitude.search_shape == (32, 104)
    assert _chunk_size(peer_amplitude, "numpy") == 2**18 // (32 * 104) == 78
    assert _chunk_size(params((256, 64), (30, 10), "amplitude"), "numpy") == 2**18 // (84 * 316) == 9
    assert _chunk_size(params((512, 512), (100, 100), "amplitude"), "numpy") == MIN_BATCH
    assert _chunk_size(peer_complex, "numpy") == _chunk_size(peer_amplitude, "cupy") == 0  # the whole batch
    assert _batch_size(peer_complex, 512, 2, "numpy") == MAX_BATCH["numpy"]
    assert _batch_size(peer_complex, 512, 1, "cupy") == 512 * 2**20 // peer_complex.bytes_per_window() > 1000
    assert _batch_size(peer_complex, 16, 2, "numpy") == 16 * 2**20 // (2 * peer_complex.bytes_per_window()) < 78


def test_per_window_surfaces_do_not_depend_on_the_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-window path's surfaces run in cache-sized chunks of a batch: the same offsets, bit for bit, in
    chunks of 8 windows or the whole batch at once."""
    from offset_cube.tracking import tracker

    ref, sec = constant_shift_pair((192, 768), (0.3, 1.6), gamma=0.8, seed=2)
    options = {"window": (64, 16), "search": (8, 6), "skip": (32, 16), "oversampling_path": "window"}
    monkeypatch.setattr(tracker, "CPU_BATCH_SEARCH_PX", {"amplitude": 2**40})
    whole = track(ref, sec, **options)
    monkeypatch.setattr(tracker, "CPU_BATCH_SEARCH_PX", {"amplitude": 1})
    chunks = track(ref, sec, **options)
    for name in ("azimuth_offset", "range_offset", "snr", "cov_az"):
        np.testing.assert_array_equal(whole[name].values, chunks[name].values)
    assert np.isfinite(whole.azimuth_offset.values).mean() > 0.5


#: Tracks the pair saved in argv[2] with two workers in a fresh process (as the command line does) and prints the
#: page faults of the run; argv[1] "off" keeps glibc's default malloc thresholds.
_FAULTS_CHILD = """
import resource, sys
import numpy as np
from offset_cube.tracking import track_offsets, tracker
if sys.argv[1] == "off":
    tracker._keep_freed_memory = lambda: False
ref, sec = np.load(sys.argv[2] + "/ref.npy"), np.load(sys.argv[2] + "/sec.npy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
track_offsets(ref, sec, window=(64, 16), search=(20, 8), skip=(32, 16), mode="amplitude", workers=2)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_the_tracker_keeps_freed_memory_instead_of_faulting_it_in_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc hands freed batch arrays back to the kernel and faults them in again unless the tracker sets its
    thresholds (measured: 46 k page faults for this pair with glibc's defaults, 7 k with the tracker's)."""
    from offset_cube.tracking import tracker

    ref, sec = constant_shift_pair((256, 2048), (0.3, 1.2), gamma=0.7, seed=1)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "sec.npy", sec)

    def faults(setting: str) -> int:
        command = [sys.executable, "-c", _FAULTS_CHILD, setting, str(tmp_path)]
        env = {k: v for k, v in os.environ.items() if k not in tracker.MALLOC_ENVIRONMENT}
        root = Path(__file__).parents[1]
        run = subprocess.run(command, capture_output=True, text=True, check=True, cwd=root, env=env)
        return int(run.stdout.split()[-1])

    kept, default = faults("on"), faults("off")
    assert kept < 0.4 * default, (kept, default)
    # a user's own malloc settings win
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert tracker._keep_freed_memory.__wrapped__() is False


def test_gather_paths_agree() -> None:
    """The fancy-index gather that CuPy runs equals the strided gather numpy runs."""
    be = get_backend("numpy")
    block = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    tops, lefts = np.array([0, 3, 20]), np.array([5, 0, 30])
    rows = tops[:, None, None] + np.arange(8)[None, :, None]
    cols = lefts[:, None, None] + np.arange(12)[None, None, :]
    np.testing.assert_array_equal(k.gather(be, block, tops, lefts, (8, 12)), block[rows, cols])


def test_box_sums_match_direct_sums() -> None:
    be = get_backend("numpy")
    values = np.random.default_rng(0).random((2, 12, 20)).astype(np.float32)
    sums = k.box_sums(be, values, (4, 9), (9, 12))
    direct = np.array(
        [[[values[b, y : y + 4, x : x + 9].sum() for x in range(12)] for y in range(9)] for b in range(2)]
    )
    np.testing.assert_allclose(sums, direct, rtol=1e-6)


def test_box_sums_ignore_samples_past_the_chip() -> None:
    """Complex chips are gathered at their FFT size; what lies past the chip is in no box."""
    be = get_backend("numpy")
    values = np.random.default_rng(1).random((3, 13, 23)).astype(np.float32)
    np.testing.assert_array_equal(
        k.box_sums(be, values, (4, 9), (9, 12)), k.box_sums(be, values[:, :12, :20].copy(), (4, 9), (9, 12))
    )
    with pytest.raises(ValueError, match="does not match"):
        k.box_sums(be, values[:, :11, :], (4, 9), (9, 12))


def _complex_batch(shape: tuple[int, int] = (16, 64), lags: tuple[int, int] = (17, 41)) -> tuple[Any, Any]:
    """Reference chips and search chips at their FFT size (data past the chip) of a constant-shift pair."""
    ref, sec = constant_shift_pair((96, 1200), (0.37, -1.2), gamma=0.8, seed=21)
    be = get_backend("numpy")
    lefts = 30 + 40 * np.arange(24)
    tops = np.full(lefts.size, 40)
    chips = k.gather(be, ref, tops, lefts, shape)
    fft_shape = k.complex_search_shape(shape, lags)
    search = k.gather(be, sec, tops - lags[0] // 2, lefts - lags[1] // 2, fft_shape)
    return chips, search


def test_complex_search_chips_gathered_at_their_fft_size_give_the_chips_surface() -> None:
    be = get_backend("numpy")
    ref, search = _complex_batch()
    chip = (16 + 16, 64 + 40)
    assert search.shape[1:] == k.complex_search_shape((16, 64), (17, 41)) != chip
    whole = k.complex_surface(be, ref, search.copy(), (17, 41))
    cut = k.complex_surface(be, ref, search[:, : chip[0], : chip[1]].copy(), (17, 41))
    np.testing.assert_allclose(whole.ncc, cut.ncc, atol=2e-6)
    np.testing.assert_allclose(whole.energy, cut.energy, rtol=1e-6)
    with pytest.raises(ValueError, match="not between"):
        k.complex_surface(be, ref, search[:, :, : chip[1] - 1].copy(), (17, 41))


def test_zoom_from_a_parabola_matches_a_fine_zoom_and_falls_back_when_the_parabola_misses() -> None:
    """The DFT zoom skips its 1/2-px grid (a parabola through the integer samples instead) and refines the last
    grid by its quartic interpolant: within 0.002 px of a 1/512-px zoom (which starts from the integer peak).
    Where the parabola misses by more than the next grid spans (here its samples are doctored so that it
    lands half a lag to the right), the first grid's maximum is on its border and the window is zoomed again
    from the integer peak through every grid."""
    be = get_backend("numpy")
    ref, search = _complex_batch()
    surface = k.complex_surface(be, ref, search, (17, 41))
    peak = k.find_peak(be, surface.ncc, 16 * 64)
    assert peak.interior.all()
    fine = np.array(k.zoom_peak(be, surface, peak.iy, peak.ix, levels=5))
    default = np.array(k.zoom_peak(be, surface, peak.iy, peak.ix, levels=2))
    assert np.abs(default - fine).max() < 0.002
    ncc = surface.ncc.copy()
    b = np.arange(ncc.shape[0])
    ncc[b, peak.iy, peak.ix + 1] = 0.999 * ncc[b, peak.iy, peak.ix]
    ncc[b, peak.iy, peak.ix - 1] = 0.0
    doctored = k.Surface(ncc, surface.spectrum, surface.fft_shape, surface.energy)
    start = np.array(k.parabolic_peak(be, ncc, peak.iy, peak.ix))
    assert np.abs(start[1] - fine[1]).max() > 0.5  # far outside the +/-0.25 px of the 1/8-px grid
    np.testing.assert_allclose(np.array(k.zoom_peak(be, doctored, peak.iy, peak.ix, levels=2)), default, atol=2e-3)


def test_quartic_peak_of_a_tilted_peak() -> None:
    """The last grid's peak: a tilted Gaussian peak about as wide as a correlation peak sampled every 1/8 px is
    located to 0.005 grid steps by the quartic interpolant, where the parabola through the grid maximum's row is
    off by 0.1 steps (the tilt moves the peak off that row)."""
    xp = np
    ty, tx = np.array([0.31, -0.7, 1.2]), np.array([-0.45, 0.6, -1.1])
    steps = np.arange(-2.0, 3.0)
    dy = steps[None, :, None] - ty[:, None, None]
    dx = steps[None, None, :] - tx[:, None, None]
    values = np.exp(-0.02 * (dy**2 + dx**2 + 0.8 * dy * dx))
    flat = np.argmax(values.reshape(3, -1), axis=1)
    y, x = k._quartic_peak(xp, values, flat // 5, flat % 5)
    np.testing.assert_allclose(y, ty, atol=5e-3)
    np.testing.assert_allclose(x, tx, atol=5e-3)
    ky, kx = flat // 5, flat % 5
    b = np.arange(3)
    row = k._vertex(xp, values[b, ky, kx - 1], values[b, ky, kx], values[b, ky, kx + 1]) + kx - 2
    assert np.abs(row - tx).max() > 0.1


def test_unit_phases_match_the_complex_exponential() -> None:
    centres = np.array([0.0, 3.25, -17.6, 40.123])
    freqs = np.fft.fftfreq(105)
    exact = np.exp(2j * np.pi * centres[:, None] * freqs[None, :])
    phases = k._unit_phases(np, centres, freqs, np.complex64)
    assert phases.dtype == np.complex64
    np.testing.assert_allclose(phases, exact, atol=5e-7)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"]


def test_blas_runs_single_threaded_inside_the_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracker's workers own the cores: BLAS is pinned to one thread while they run, restored afterwards."""
    from threadpoolctl import threadpool_limits

    from offset_cube.tracking import tracker

    seen: list[list[int]] = []
    real = tracker.track_batch

    def recording(*args: Any) -> Any:
        seen.append(_blas_threads())
        return real(*args)

    monkeypatch.setattr(tracker, "track_batch", recording)
    ref, sec = constant_shift_pair((128, 512), (0.5, 0.5), seed=3)
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        track(ref, sec, mode="amplitude", workers=2)
        assert _blas_threads() == before
        # overlapping trackers (two pairs at once) share the limit until the last one ends
        first, second = tracker._single_threaded_blas(), tracker._single_threaded_blas()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert all(n == 1 for n in _blas_threads())
        second.__exit__(None, None, None)
        assert _blas_threads() == before
    assert seen and all(threads and all(n == 1 for n in threads) for threads in seen)


#: How the dense path computes its two surfaces in the agreement tests: strip by strip, or window by window from
#: the tile's oversampled blocks (the cost model picks per job and surface; these force each way).
DENSE_SURFACES = {"strips": (True, True), "windows": (False, False)}


def _dense_and_per_window(
    monkeypatch: pytest.MonkeyPatch, surfaces: str, ref: Any, sec: Any, **kwargs: Any
) -> tuple[Any, Any]:
    from offset_cube.tracking import tracker

    monkeypatch.setattr(tracker, "dense_strips", lambda params, skip: DENSE_SURFACES[surfaces])
    raw = {"mode": "amplitude", "snr_threshold": 0.0, "outlier_mad_k": None, **kwargs}
    return track(ref, sec, oversampling_path="dense", **raw), track(ref, sec, oversampling_path="window", **raw)


def _assert_paths_agree(dense: Any, window: Any, min_windows: int) -> None:
    for name in ("azimuth_offset", "range_offset"):
        a, b = dense[name].values, window[name].values
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
        both = np.isfinite(a)
        assert both.sum() >= min_windows
        assert rms(a[both] - b[both]) <= 0.005 and np.abs(a[both] - b[both]).max() < 0.06, name
    np.testing.assert_allclose(dense.snr.values, window.snr.values, rtol=1e-5)  # stage 1 is shared
    assert (dense.attrs["oversampling_path"], window.attrs["oversampling_path"]) == ("dense", "window")


@pytest.mark.parametrize("surfaces", sorted(DENSE_SURFACES))
@pytest.mark.parametrize(
    ("window", "search", "skip", "gamma"),
    [((64, 16), (20, 8), (32, 16), 0.7), ((256, 64), (30, 10), (44, 8), 0.7)],
)
def test_dense_and_per_window_oversampling_agree(
    monkeypatch: pytest.MonkeyPatch,
    surfaces: str,
    window: tuple[int, int],
    search: tuple[int, int],
    skip: tuple[int, int],
    gamma: float,
) -> None:
    """The dense path (each tile's blocks oversampled once; surfaces by strips or window by window) gives the
    per-window path's offsets to <= 0.005 px RMS on the same windows, on a smooth field, for the peer settings and
    the Shirase settings (windows overlap 46-fold). What differs is the per-window chips' edge ringing inside their
    2-px guard band."""
    shape = (224, 768)
    field = glacier_field((8 * shape[0], 4 * shape[1]))  # a corner of a field with the benchmark's gradients
    rng = np.random.default_rng(17)
    ref = speckle(shape, rng)
    sec = mix(warp(ref, field), speckle(shape, rng), gamma)
    dense, window_path = _dense_and_per_window(monkeypatch, surfaces, ref, sec, window=window, search=search, skip=skip)
    _assert_paths_agree(dense, window_path, 40)
    truth = window_mean_offsets(field, (dense.line.values, dense.sample.values), window)
    assert rms(errors(dense, truth)[0]) < 0.05


@pytest.mark.parametrize("surfaces", sorted(DENSE_SURFACES))
def test_dense_and_per_window_agree_at_borders_with_no_data_and_a_gross_field(
    monkeypatch: pytest.MonkeyPatch, surfaces: str
) -> None:
    """Windows whose search areas reach the image edges, NaN and zero regions, and a gross-offset field that
    moves each window's search area differently: the two paths still agree, window by window."""
    shift = (3.6, -9.2)
    ref, sec = constant_shift_pair((192, 768), shift, gamma=0.8, seed=23)
    ref[60:75, 300:330] = np.nan
    sec[150:, 500:] = 0
    lines, samples = window_centres(ref.shape, WINDOW, (6, 6), SKIP)
    lines = np.concatenate([[7.5], lines, [ref.shape[0] - 8.5]])  # chips touching the top and bottom edges
    samples = np.concatenate([[31.5], samples, [ref.shape[1] - 32.5]])
    gross_az = np.full((lines.size, samples.size), 3.0) + np.linspace(-0.6, 0.6, samples.size)[None, :]
    gross_rg = np.full((lines.size, samples.size), -9.0) + np.linspace(-0.7, 0.7, lines.size)[:, None]
    options = {"search": (6, 6), "lines": lines, "samples": samples, "gross_offset": (gross_az, gross_rg)}
    dense, window_path = _dense_and_per_window(monkeypatch, surfaces, ref, sec, **options)
    _assert_paths_agree(dense, window_path, 200)
    d_az = errors(dense, shift)[0]
    assert np.isnan(d_az[0]).all() and np.isnan(d_az[:, 0]).all()  # search areas leave the image
    assert np.isfinite(d_az[1:-1, 1:-1]).mean() > 0.6


def test_dense_window_by_window_surfaces_do_not_depend_on_the_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dense path's per-window surfaces run in cache-sized chunks of a tile's windows: the offsets are the
    same, bit for bit, in chunks of 8 windows or all at once."""
    from offset_cube.tracking import tracker

    ref, sec = constant_shift_pair((192, 768), (0.3, 1.6), gamma=0.8, seed=2)
    options = {"window": (64, 16), "search": (8, 6), "skip": (32, 16), "oversampling_path": "dense"}
    monkeypatch.setattr(tracker, "dense_strips", lambda params, skip: (False, False))
    monkeypatch.setattr(tracker, "CPU_BATCH_SEARCH_PX", {"amplitude": 2**40})
    whole = track(ref, sec, **options)
    monkeypatch.setattr(tracker, "CPU_BATCH_SEARCH_PX", {"amplitude": 1})
    chunks = track(ref, sec, **options)
    for name in ("azimuth_offset", "range_offset", "snr"):
        np.testing.assert_array_equal(whole[name].values, chunks[name].values)
    assert np.isfinite(whole.azimuth_offset.values).mean() > 0.5


def test_cost_model_picks_dense_for_overlapping_windows_only() -> None:
    from offset_cube.size import Size
    from offset_cube.tracking.core import BatchParams, dense_is_cheaper, dense_strips

    def params(window: tuple[int, int], search: tuple[int, int], mode: str = "amplitude") -> BatchParams:
        return BatchParams(Size(*window), Size(*search), mode, "dft", 8, True)  # type: ignore[arg-type]

    # skips are (lines, samples): the Shirase job's windows overlap 46-fold, its dense path is ~6x cheaper with
    # both surfaces by strips; the peer settings' windows overlap 2-fold: blocks oversampled once, then window by
    # window (0.70x the per-window path's CPU, paired)
    assert dense_is_cheaper(params((256, 64), (30, 10)), (8, 44))
    assert dense_strips(params((256, 64), (30, 10)), (8, 44)) == (True, True)
    assert dense_is_cheaper(params((64, 16), (20, 8)), (16, 32))
    assert dense_strips(params((64, 16), (20, 8)), (16, 32)) == (False, False)
    assert dense_is_cheaper(params((128, 32), (16, 8)), (16, 32))
    # windows that do not overlap share nothing; complex mode has no dense path
    assert not dense_is_cheaper(params((64, 64), (10, 10)), (64, 64))
    assert not dense_is_cheaper(params((256, 64), (30, 10), "complex"), (8, 44))
    # 'auto' follows the model for the job; 'window' stays the default
    ref, sec = constant_shift_pair((192, 768), (0.3, 1.6), gamma=0.8, seed=2)
    shirase_like = {"window": (128, 32), "search": (8, 8), "skip": (32, 8)}
    auto = track(ref, sec, oversampling_path="auto", **shirase_like)
    assert auto.attrs["oversampling_path"] == "dense"
    dense = track(ref, sec, oversampling_path="dense", **shirase_like)
    np.testing.assert_array_equal(auto.range_offset.values, dense.range_offset.values)
    sparse = {"window": (32, 32), "search": (8, 8), "skip": (48, 48)}
    assert track(ref, sec, oversampling_path="auto", **sparse).attrs["oversampling_path"] == "window"
    assert track(ref, sec).attrs["oversampling_path"] == "window"


@pytest.mark.parametrize("spread", [0, 3, 40])
def test_strip_surfaces_equal_per_window_surfaces(spread: int) -> None:
    """The dense path's strip correlation gives the per-window FFT path's amplitude NCC at every lag, for windows
    on a regular grid (segment sums), on irregular lines (one-line segments, a window height that is not a power
    of two) and with search areas scattered beyond one cluster (a gross-offset field, refinement around
    scattered peaks)."""
    from offset_cube.tracking import strips

    be = get_backend("numpy")
    rng = np.random.default_rng(spread)
    ref = np.abs(speckle((260, 700), rng)).astype(np.float32)
    sec = np.roll(ref, (3, -5), axis=(0, 1)) + 0.5 * np.abs(speckle((260, 700), rng)).astype(np.float32)
    window, lags = (24, 96), (13, 31)
    tops = np.arange(60, 160, 8) + (rng.integers(0, 5, 13) if spread else 0)
    rt = np.repeat(tops, 3)
    rl = np.tile([120, 220, 330], tops.size)
    st = rt - 6 + rng.integers(-spread, spread + 1, rt.size)
    sl = rl - 15 + rng.integers(-spread, spread + 1, rt.size)
    dense = strips.amplitude_ncc(be, ref, sec, (rt, rl, st, sl), window, lags)
    chips = k.gather(be, ref, rt, rl, window), k.gather(be, sec, st, sl, (window[0] + 12, window[1] + 30))
    per_window = k.amplitude_surface(be, *chips, lags)
    np.testing.assert_allclose(dense, per_window, atol=2e-6)
    count = len(strips.clusters(rt, rl, st, sl, lags))
    assert count == 3 if spread <= strips.CLUSTER_SPREAD // 2 else count > 20  # one per column, or scattered


@pytest.mark.parametrize("length", [1, 5, 8, 13])
def test_sliding_sums(length: int) -> None:
    from offset_cube.tracking.strips import sliding_sums

    values = np.random.default_rng(length).standard_normal((20, 3))
    expected = np.array([values[i : i + length].sum(axis=0) for i in range(20 - length + 1)])
    np.testing.assert_allclose(sliding_sums(np, values, length), expected, rtol=1e-12, atol=1e-12)
