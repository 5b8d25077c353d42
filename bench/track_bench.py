"""Benchmark of the built-in tracker: accuracy against the Cramér-Rao bound, speed against scikit-image.

Synthesises a seeded speckle pair with a known smooth displacement field and coherence gamma, tracks it in both
modes, and prints windows/s, RMSE against the truth and against the Cramér-Rao bound, and the same for
scikit-image's ``phase_cross_correlation`` (upsample 16, per window) run in the same process, with the speed
ratio. Optionally measures the tracker's peak memory on the image and on one twice its size.

Bounds (per window, 1 sigma; Bamler & Eineder 2005, IEEE GRSL 2(2); De Zan 2014, IEEE GRSL 11(1)), with
N = w*h / (beta_rg * beta_az) independent resolution cells and sigma_px = beta * sigma on each axis:

* coherent (Bamler & Eineder 2005):   sigma = sqrt(3 / (2N)) * sqrt(1 - g^2) / (pi g)
* incoherent (De Zan 2014):           sigma = sqrt(3 / (10N)) * sqrt(2 + 5 g^2 - 7 g^4) / (pi g^2)

Runs with only numpy, scipy, xarray (and scikit-image for the baseline, CuPy for ``--backend cupy``) on the
path: ``PYTHONPATH=. python3 bench/track_bench.py [--backend cupy] [--lines 2048 --samples 4096]``.
Timings on a shared machine vary; the ratio to the in-process baseline is the robust figure: the methods run in
rounds (each once per round, ``--repeat`` rounds), so that a drift of the machine's speed falls on all alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from offset_cube.tracking import track_offsets, window_centres  # noqa: E402
from offset_cube.tracking.synthetic import (  # noqa: E402
    S1_BETA,
    glacier_field,
    mix,
    speckle,
    warp,
    window_mean_offsets,
)

#: Acceptance targets of issue 18 on a >= 4096 x 8192 pair at gamma 0.7 (2 cores, quiet): per preset and mode,
#: windows/s and an accuracy limit, RMSE / CRB ("crb") or RMSE in px with no window off by more than 1 px ("px").
TARGETS: dict[str, dict[str, tuple[float, str, float]]] = {
    "peer": {"complex": (12000.0, "crb", 1.1), "amplitude": (4000.0, "px", 0.045)},
    "shirase": {"amplitude": (2000.0, "crb", 1.2)},
}
TARGET_PAIR = (4096, 8192)
#: (window, half search, skip) as WIDTHxHEIGHT of the issue's two reference jobs: the peer comparison's and the
#: hand-run Shirase notebook's (examples/shirase.yaml).
PRESETS = {"peer": ((64, 16), (20, 8), (32, 16)), "shirase": ((256, 64), (30, 10), (44, 8))}
#: Errors above this are outliers, left out of the RMSE and counted separately.
OUTLIER_PX = 1.0


def crb(window: tuple[int, int], gamma: float, beta: tuple[float, float], coherent: bool) -> tuple[float, float]:
    """Cramér-Rao bound (azimuth, range) in pixels for a (width, height) window; see the module docstring."""
    cells = window[0] * window[1] / (beta[0] * beta[1])
    if coherent:
        sigma = math.sqrt(3 / (2 * cells)) * math.sqrt(1 - gamma**2) / (math.pi * gamma)
    else:
        sigma = math.sqrt(3 / (10 * cells)) * math.sqrt(2 + 5 * gamma**2 - 7 * gamma**4) / (math.pi * gamma**2)
    return beta[0] * sigma, beta[1] * sigma


def make_pair(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, Any]:
    """The seeded pair (cached as .npy under --cache when given) and its displacement field."""
    shape = (args.lines, args.samples)
    field = glacier_field(shape)
    cache = Path(args.cache) if args.cache else None
    name = f"pair_{args.lines}x{args.samples}_g{args.gamma}_s{args.seed}"
    if cache and (cache / f"{name}_ref.npy").exists():
        return np.load(cache / f"{name}_ref.npy"), np.load(cache / f"{name}_sec.npy"), field
    rng = np.random.default_rng(args.seed)
    ref = speckle(shape, rng)
    sec = mix(warp(ref, field), speckle(shape, rng), args.gamma)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{name}_ref.npy", ref)
        np.save(cache / f"{name}_sec.npy", sec)
    return ref, sec, field


def accuracy(az: np.ndarray, rg: np.ndarray, truth: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """RMSE over inliers (both errors under 1 px) and over every valid window, the largest error, fractions of
    valid windows and of outliers, mean bias."""
    e_az, e_rg = az - truth[0], rg - truth[1]
    valid = np.isfinite(e_az) & np.isfinite(e_rg)
    inlier = valid & (np.abs(np.nan_to_num(e_az, nan=9)) < OUTLIER_PX) & (np.abs(np.nan_to_num(e_rg, nan=9)) < 1)
    return {
        "rmse_az": float(np.sqrt(np.mean(e_az[inlier] ** 2))),
        "rmse_rg": float(np.sqrt(np.mean(e_rg[inlier] ** 2))),
        "rmse_all_az": float(np.sqrt(np.mean(e_az[valid] ** 2))),
        "rmse_all_rg": float(np.sqrt(np.mean(e_rg[valid] ** 2))),
        "max_error_px": float(np.max(np.hypot(e_az[valid], e_rg[valid]), initial=0.0)),
        "bias_az": float(np.mean(e_az[inlier])),
        "bias_rg": float(np.mean(e_rg[inlier])),
        "valid": float(valid.mean()),
        "outliers": float((valid & ~inlier).sum() / max(valid.sum(), 1)),
    }


def run_tracker(
    ref: Any,
    sec: Any,
    args: argparse.Namespace,
    mode: str,
    backend: str,
    path: str = "window",
    warm_up: bool = True,
) -> tuple[Any, list[float], list[float]]:
    """One timed tracker run (after an untimed warm-up on a GPU, unless not ``warm_up``): the Dataset, its wall and
    CPU seconds (one-element lists, as :func:`run_skimage` returns them)."""
    options = {
        "oversampling_path": path,
        "window": args.window,
        "search": args.search,
        "skip": args.skip,
        "mode": mode,
        "backend": backend,
        "workers": args.workers,
        "memory_budget_mb": args.memory_budget_mb,
        # the tracker's defaults (SNR cut, outlier test) unless --no-filters: what `offset-cube track` writes
        **({"snr_threshold": 0.0, "outlier_mad_k": None} if args.no_filters else {}),
    }
    if backend == "cupy" and warm_up:
        track_offsets(ref, sec, **options)
    started, cpu_started = time.perf_counter(), time.process_time()
    ds = track_offsets(ref, sec, **options)
    return ds, [time.perf_counter() - started], [time.process_time() - cpu_started]


def run_skimage(
    ref: np.ndarray, sec: np.ndarray, args: argparse.Namespace, lines: Any, samples: Any
) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    """scikit-image phase_cross_correlation (upsample 16) on co-located amplitude windows, window by window."""
    from skimage.registration import phase_cross_correlation

    w, h = args.window
    tops = (np.asarray(lines) - (h - 1) / 2).astype(int)
    lefts = (np.asarray(samples) - (w - 1) / 2).astype(int)
    amp_ref, amp_sec = np.abs(ref), np.abs(sec)
    az = np.full((tops.size, lefts.size), np.nan)
    rg = np.full_like(az, np.nan)
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, top in enumerate(tops):
        for j, left in enumerate(lefts):
            a = amp_ref[top : top + h, left : left + w]
            b = amp_sec[top : top + h, left : left + w]
            shift = phase_cross_correlation(a, b, upsample_factor=16, normalization=None)[0]  # type: ignore[no-untyped-call]
            az[i, j], rg[i, j] = -shift[0], -shift[1]  # skimage returns the shift that registers b onto a
    return az, rg, [time.perf_counter() - started], [time.process_time() - cpu_started]


class NpyRows:
    """A 2-D .npy file read with ``os.pread`` (no memory map), so RSS shows only the tracker's own memory."""

    def __init__(self, path: Path) -> None:
        header = np.load(path, mmap_mode="r")  # only for shape, dtype and data offset; no page is touched
        if header.ndim != 2 or not header.flags.c_contiguous:
            raise ValueError(f"{path}: need a C-ordered 2-D array")
        self.shape, self.dtype, self._offset = header.shape, header.dtype, header.offset
        del header
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        row_bytes = self.shape[1] * self.dtype.itemsize
        data = os.pread(self._fd, (r1 - r0) * row_bytes, self._offset + r0 * row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(r1 - r0, self.shape[1])[:, cols].copy()


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def memory_child(args: argparse.Namespace) -> None:
    """Child process: track a pair read with pread; print RSS before and at peak (MiB) as JSON.

    The peak is reset after start-up (``/proc/self/clear_refs`` 5) so that import-time transients do not hide
    the tracker's own working memory.
    """
    folder = Path(args.memory_child)
    ref, sec = NpyRows(folder / "ref.npy"), NpyRows(folder / "sec.npy")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before, peak_field = _status_mib("VmRSS"), "VmHWM"
    except OSError:
        before, peak_field = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ""
    ds, times, _ = run_tracker(ref, sec, args, args.modes[0], args.backend, args.oversampling_paths[-1])
    peak = _status_mib(peak_field) if peak_field else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    windows = int(ds.attrs["windows"])
    print(json.dumps({"windows": windows, "rss_before_mib": before, "rss_peak_mib": peak, "seconds": times[-1]}))


def measure_memory(ref: np.ndarray, sec: np.ndarray, args: argparse.Namespace, mode: str) -> list[dict[str, Any]]:
    """Peak RSS of a fresh process tracking the pair, and the pair stacked twice (2x the pixels)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="track-bench-") as tmp:
        for factor in (1, 2):
            np.save(Path(tmp) / "ref.npy", np.concatenate([ref] * factor))
            np.save(Path(tmp) / "sec.npy", np.concatenate([sec] * factor))
            command = [sys.executable, __file__, "--memory-child", tmp, "--modes", mode]
            command += ["--oversampling-paths", args.oversampling_paths[-1]]
            command += ["--backend", args.backend, "--workers", str(args.workers)]
            command += ["--memory-budget-mb", str(args.memory_budget_mb)]
            command += ["--window", _size(args.window), "--search", _size(args.search), "--skip", _size(args.skip)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            record = json.loads(output.strip().splitlines()[-1])
            record.update({"factor": factor, "mode": mode, "input_mib": 2 * ref.nbytes * factor / 2**20})
            results.append(record)
    return results


def _size(value: tuple[int, int]) -> str:
    return f"{value[0]}x{value[1]}"


def _parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--window", type=_parse_size, default=(64, 16), help="WIDTHxHEIGHT")
    parser.add_argument("--search", type=_parse_size, default=(20, 8), help="half search WIDTHxHEIGHT")
    parser.add_argument("--skip", type=_parse_size, default=(32, 16), help="WIDTHxHEIGHT")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["complex", "amplitude"])
    parser.add_argument(
        "--presets",
        type=_presets,
        default=["peer", "shirase"],
        help="comma-separated window/search/skip sets, each run on the same pair: peer (64x16, 20x8, 32x16), "
        "shirase (256x64, 30x10, 44x8), or custom (--window, --search, --skip)",
    )
    parser.add_argument(
        "--oversampling-paths",
        type=lambda s: s.split(","),
        default=["auto"],
        help="amplitude mode's paths to time: auto (the cost model's choice), window, dense, or a list",
    )
    parser.add_argument(
        "--baseline-stride",
        type=int,
        default=1,
        help="run scikit-image on every Nth window row and column only (its speed is per window)",
    )
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-budget-mb", type=int, default=512)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of timed runs, each method (and the baseline) once per round; the median is reported",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip scikit-image")
    parser.add_argument("--no-filters", action="store_true", help="tracker without its SNR cut and outlier test")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS at 1x and 2x image size")
    parser.add_argument("--compare-numpy", action="store_true", help="with --backend cupy: numpy differences")
    parser.add_argument("--cache", help="folder to keep the synthesised pair in (.npy) between runs")
    parser.add_argument("--json-out", help="also write every figure to this JSON file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _presets(text: str) -> list[str]:
    names = text.split(",")
    for name in names:
        if name not in (*PRESETS, "custom"):
            raise argparse.ArgumentTypeError(f"preset {name!r} is not one of {[*PRESETS, 'custom']}")
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return {}
    report: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "memory_child"}}
    report["load_average_start"] = os.getloadavg()
    print(f"load average at start {report['load_average_start'][0]:.1f} on {os.cpu_count()} CPUs")
    started = time.perf_counter()
    ref, sec, field = make_pair(args)
    print(
        f"pair {args.lines}x{args.samples}, gamma {args.gamma} ({time.perf_counter() - started:.0f} s to "
        f"synthesise); backend {args.backend}, workers {args.workers}"
    )
    report["settings"] = []
    for preset in args.presets:
        settings = argparse.Namespace(**vars(args))
        if preset != "custom":
            settings.window, settings.search, settings.skip = PRESETS[preset]
        report["settings"].append({"preset": preset, **run_settings(ref, sec, field, settings, preset)})
    report["load_average_end"] = os.getloadavg()
    print(f"load average at end {report['load_average_end'][0]:.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))
    return report


def run_settings(ref: np.ndarray, sec: np.ndarray, field: Any, args: argparse.Namespace, preset: str) -> dict[str, Any]:
    """Every method on one window/search/skip set: speed, accuracy, peak memory; the table printed."""
    out: dict[str, Any] = {}
    lines, samples = window_centres(ref.shape, args.window, args.search, args.skip)
    truth = window_mean_offsets(field, (lines, samples), args.window)
    print(
        f"\n{preset}: window {_size(args.window)}, search {_size(args.search)}, skip {_size(args.skip)}: "
        f"{lines.size * samples.size} windows"
    )
    trackers = [
        (mode, path) for mode in args.modes for path in (args.oversampling_paths if mode == "amplitude" else ["window"])
    ]
    stride = max(1, args.baseline_stride)
    sub_lines, sub_samples = lines[::stride], samples[::stride]
    methods: list[tuple[str, str]] = trackers + ([] if args.no_baseline else [("skimage", "")])
    times: dict[tuple[str, str], tuple[list[float], list[float], list[float]]] = {m: ([], [], []) for m in methods}
    last: dict[tuple[str, str], Any] = {}
    # Rounds of every method once each, so that the machine's drift (a shared VM's speed can move by a third within
    # minutes) falls on the tracker and the baseline alike and their ratios compare runs made side by side.
    for round_index in range(args.repeat):
        for method in methods:
            before = _reset_peak()
            if method[0] == "skimage":
                az, rg, wall, cpu = run_skimage(ref, sec, args, sub_lines, sub_samples)
                last[method] = (az, rg)
            else:
                ds, wall, cpu = run_tracker(ref, sec, args, method[0], args.backend, method[1], round_index == 0)
                last[method] = ds
            times[method][0].extend(wall)
            times[method][1].extend(cpu)
            times[method][2].append(_peak_mib() - before)
    rows: list[dict[str, Any]] = []
    by_path: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for mode, path in trackers:
        ds = last[(mode, path)]
        wall, cpu, peaks = times[(mode, path)]
        az, rg = ds.azimuth_offset.values, ds.range_offset.values
        bound = crb(args.window, args.gamma, S1_BETA, mode == "complex")
        chosen = ds.attrs["oversampling_path"]
        name = f"tracker {mode}" + (f" ({path}: {chosen})" if mode == "amplitude" else "")
        row = {**result_row(name, az, rg, truth, wall, cpu, bound), "peak_rss_mib": float(np.max(peaks)), "mode": mode}
        if args.backend == "cupy" and args.compare_numpy:
            row.update(compare_with_numpy(ds, ref, sec, args, mode))
        rows.append(row)
        by_path[(mode, chosen)] = (az, rg)
    if ("amplitude", "dense") in by_path and ("amplitude", "window") in by_path:
        dense, window = by_path[("amplitude", "dense")], by_path[("amplitude", "window")]
        differences = [d - w for d, w in zip(dense, window, strict=True)]
        out["dense_vs_window_rms_px"] = [float(np.sqrt(np.nanmean(d**2))) for d in differences]
        print(
            "amplitude dense - per-window offsets, RMS az/rg (px): {:.5f}/{:.5f}".format(*out["dense_vs_window_rms_px"])
        )
    if not args.no_baseline:
        sub_truth = (truth[0][::stride, ::stride], truth[1][::stride, ::stride])
        az, rg = last[("skimage", "")]
        wall, cpu, peaks = times[("skimage", "")]
        bound = crb(args.window, args.gamma, S1_BETA, coherent=False)
        name = "skimage phase_cross_correlation up16 (amplitude)" + (f" 1/{stride}^2" if stride > 1 else "")
        rows.append({**result_row(name, az, rg, sub_truth, wall, cpu, bound), "peak_rss_mib": float(np.max(peaks))})
        for row in rows:
            row["speed_vs_skimage"] = row["windows_per_s"] / rows[-1]["windows_per_s"]
            row["cpu_speed_vs_skimage"] = row["windows_per_cpu_s"] / rows[-1]["windows_per_cpu_s"]
    out["results"] = rows
    print_table(rows, args, preset)
    if args.memory:
        out["memory"] = [m for mode in args.modes for m in measure_memory(ref, sec, args, mode)]
        for m in out["memory"]:
            print(
                f"memory {m['mode']:9s} x{m['factor']}: {m['windows']} windows, inputs {m['input_mib']:.0f} MiB "
                f"(read with pread, not held), RSS {m['rss_before_mib']:.0f} MiB after start-up, "
                f"peak {m['rss_peak_mib']:.0f} MiB (+{m['rss_peak_mib'] - m['rss_before_mib']:.0f})"
            )
    return out


def _reset_peak() -> float:
    """Reset this process's peak RSS (``/proc/self/clear_refs`` 5) and return the current RSS in MiB (NaN where
    the peak cannot be reset, so that no lifetime peak passes for a method's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    return _status_mib("VmHWM")


def result_row(
    method: str,
    az: np.ndarray,
    rg: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray],
    times: list[float],
    cpu: list[float],
    bound: tuple[float, float],
) -> dict[str, Any]:
    """Speed (median and best wall time, CPU time) and accuracy of one method, against the bound."""
    acc = accuracy(az, rg, truth)
    return {
        "method": method,
        "windows_per_s": az.size / statistics.median(times),
        "best_windows_per_s": az.size / min(times),
        "windows_per_cpu_s": az.size / statistics.median(cpu),
        **acc,
        "crb_az": bound[0],
        "crb_rg": bound[1],
        "crb_ratio_az": acc["rmse_az"] / bound[0],
        "crb_ratio_rg": acc["rmse_rg"] / bound[1],
    }


def compare_with_numpy(ds: Any, ref: Any, sec: Any, args: argparse.Namespace, mode: str) -> dict[str, float]:
    """Largest offset difference between this (GPU) result and the numpy backend's, and how often > 0.005 px."""
    cpu_ds, _, _ = run_tracker(ref, sec, args, mode, "numpy")
    diffs = [np.abs(ds[n].values - cpu_ds[n].values) for n in ("azimuth_offset", "range_offset")]
    both = np.isfinite(diffs[0]) & np.isfinite(diffs[1])
    return {
        "max_diff_vs_numpy_px": float(max(d[both].max() for d in diffs)),
        "frac_diff_over_0.005": float(np.mean((diffs[0] > 0.005) | (diffs[1] > 0.005))),
        "frac_valid_in_one_only": float(np.mean(np.isfinite(diffs[0]) != np.isfinite(ds.azimuth_offset.values))),
    }


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, preset: str) -> None:
    print(
        f"{'method':50s} {'win/s':>8s} {'best':>6s} {'/CPU-s':>7s} {'x skimage':>9s} {'/CPU-s x':>8s} "
        f"{'RMSE az/rg (px)':>16s} {'CRB az/rg':>13s} {'RMSE/CRB':>11s} {'valid':>6s} {'outl.':>6s} "
        f"{'max err':>7s} {'peak RSS':>8s}"
    )
    for r in rows:
        ratio = f"{r.get('speed_vs_skimage', float('nan')):.2f}"
        cpu_ratio = f"{r.get('cpu_speed_vs_skimage', float('nan')):.2f}"
        print(
            f"{r['method']:50s} {r['windows_per_s']:8.0f} {r['best_windows_per_s']:6.0f} {r['windows_per_cpu_s']:7.0f} "
            f"{ratio:>9s} {cpu_ratio:>8s} {r['rmse_az']:7.4f}/{r['rmse_rg']:.4f} "
            f"{r['crb_az']:6.4f}/{r['crb_rg']:.4f} {r['crb_ratio_az']:5.2f}/{r['crb_ratio_rg']:.2f} "
            f"{r['valid']:6.3f} {r['outliers']:6.3f} {r['max_error_px']:7.3f} {r['peak_rss_mib']:6.0f}MiB"
        )
        if "max_diff_vs_numpy_px" in r:
            print(
                f"{'':50s} max |cupy - numpy| {r['max_diff_vs_numpy_px']:.5f} px, "
                f"{100 * r['frac_diff_over_0.005']:.3f} % of windows over 0.005 px"
            )
    if (args.lines, args.samples) < TARGET_PAIR or args.gamma != 0.7:
        return
    for r in rows:
        target = TARGETS.get(preset, {}).get(r.get("mode", ""))
        if target is None:
            continue
        speed, kind, limit = target
        if kind == "crb":
            ok = max(r["crb_ratio_az"], r["crb_ratio_rg"]) <= limit
            what = f"RMSE <= {limit} x CRB"
        else:
            ok = max(r["rmse_az"], r["rmse_rg"]) <= limit and r["outliers"] == 0
            what = f"RMSE <= {limit} px, no window > {OUTLIER_PX:.0f} px off"
        print(
            f"target {preset} {r['method']}: {what}: {'met' if ok else 'MISSED'}; >= {speed:.0f} windows/s: "
            f"{'met' if r['windows_per_s'] >= speed else 'missed'} (speed depends on the machine and its load)"
        )
        if r["mode"] == "amplitude" and "cpu_speed_vs_skimage" in r:
            # issue 18 item 4: in amplitude mode, at least scikit-image's windows per CPU-second
            print(
                f"target {preset} {r['method']}: windows per CPU-second >= scikit-image's: "
                f"{'met' if r['cpu_speed_vs_skimage'] >= 1 else 'missed'} ({r['cpu_speed_vs_skimage']:.2f}x)"
            )


if __name__ == "__main__":
    main()
