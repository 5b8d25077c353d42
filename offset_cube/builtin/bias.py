"""Residual offset bias removal over stable ground.

After the predicted geometric offset is subtracted, what remains on stable ground is a small residual (orbit
error maps 1:1 into range offset: 1 m of line-of-sight error ≈ 0.43 px; timing errors into azimuth). Without a
stable-ground mask, the windows whose motion (in ground metres) is among the slowest ``stable_quantile`` are
taken as stable. ``median`` removes one constant per component; ``plane`` removes a least-squares plane in
(line, sample), which also absorbs a baseline-error tilt across the area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: Fewest stable windows for which a bias estimate is trusted.
MIN_STABLE_WINDOWS = 10


@dataclass(frozen=True)
class BiasEstimate:
    """What was removed: the per-component bias at each window (pixels) and a summary for provenance."""

    azimuth: np.ndarray
    range: np.ndarray
    summary: dict[str, object] = field(default_factory=dict)


def stable_mask(
    azimuth: np.ndarray, range_: np.ndarray, azimuth_m: np.ndarray, ground_range_m: np.ndarray, quantile: float
) -> np.ndarray:
    """Windows whose displacement magnitude (ground metres) is within the slowest ``quantile`` of valid ones."""
    valid = np.isfinite(azimuth) & np.isfinite(range_)
    moved = np.hypot(azimuth * azimuth_m, range_ * ground_range_m)
    if not np.any(valid):
        return np.asarray(valid, dtype=bool)
    limit = np.quantile(moved[valid], quantile)
    return np.asarray(valid & (moved <= limit), dtype=bool)


def estimate_bias(
    azimuth: np.ndarray,
    range_: np.ndarray,
    lines: np.ndarray,
    samples: np.ndarray,
    stable: np.ndarray,
    method: Literal["none", "median", "plane"],
) -> BiasEstimate:
    """The residual bias of both components over ``stable`` windows (zero when ``method`` is none or too few)."""
    zeros = np.zeros(azimuth.shape)
    count = int(np.sum(stable))
    if method == "none":
        return BiasEstimate(zeros, zeros, {"method": "none"})
    if count < MIN_STABLE_WINDOWS:
        return BiasEstimate(zeros, zeros, {"method": method, "skipped": f"only {count} stable windows"})
    if method == "median":
        az, rg = float(np.median(azimuth[stable])), float(np.median(range_[stable]))
        return BiasEstimate(
            np.full(azimuth.shape, az),
            np.full(azimuth.shape, rg),
            {"method": "median", "stable_windows": count, "azimuth_px": round(az, 4), "range_px": round(rg, 4)},
        )
    ll, ss = np.broadcast_arrays(lines, samples)
    design = np.stack([np.ones(count), ll[stable] - ll.mean(), ss[stable] - ss.mean()], axis=1)
    full = np.stack([np.ones(ll.size), (ll - ll.mean()).ravel(), (ss - ss.mean()).ravel()], axis=1)
    planes = []
    coefficients = {}
    for name, values in (("azimuth", azimuth), ("range", range_)):
        coef = _robust_plane(design, values[stable])
        planes.append((full @ coef).reshape(azimuth.shape))
        coefficients[f"{name}_plane"] = [round(float(c), 8) for c in coef]
    return BiasEstimate(planes[0], planes[1], {"method": "plane", "stable_windows": count, **coefficients})


def _robust_plane(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares plane, refitted once without points beyond 3 scaled MADs of the first fit."""
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ coef
    mad = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    keep = np.abs(residual) <= 3 * mad if mad > 0 else np.ones(values.shape, dtype=bool)
    if int(np.sum(keep)) >= MIN_STABLE_WINDOWS:
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
    return np.asarray(coef)
