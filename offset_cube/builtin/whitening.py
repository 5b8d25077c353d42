"""Whitening of deramped bursts before coherent (complex) tracking: the estimator's weights made optimal.

Complex-mode tracking correlates the two images coherently; on a flat spectrum and uniform power it reaches the
coherent Cramér-Rao bound (Bamler & Eineder 2005, IEEE GRSL 2(2)). Sentinel-1 SLCs are neither:

* **Spectral weighting.** The processor weights the azimuth and range processing bands with a generalised
  Hamming window ``w(f) = α + (1 − α) cos(2π f / B)`` (annotation ``swathProcParams``: ``windowCoefficient``
  α = 0.75, ``processingBandwidth`` B). The decorrelated part of the secondary has the same spectrum, so every
  frequency in the band carries the same coherence and the maximum-likelihood time-delay estimator divides the
  cross-spectrum by the signal spectrum (Knapp & Carter 1976, IEEE TASSP 24(4): generalised cross-correlation
  with constant coherence = whitening). Plain cross-correlation over-weights the band's centre, whose
  frequencies measure shifts least; we undo the weighting with a short separable FIR filter (``1/w(f)`` inside
  the band, held at the band edge's value beyond it, where nothing but noise lives).
* **Backscatter texture.** Rock roughness, crevasses and ice-versus-rock contrast change the local power by
  factors of several over tens to hundreds of metres, and the texture persists from date to date. Coherent
  correlation sums ``r · conj(s)``, so a window's bright parts dominate its estimate: fewer effective looks
  (more noise) and, where a window spans a shear margin, the offset of its brighter part (bias). For circular
  Gaussian speckle of slowly varying power P the likelihood weights every pixel by 1/P, so each image is divided
  by the square root of its local mean power (a box of :data:`POWER_BOX` pixels, ~130 m on Sentinel-1 IW,
  ~140 looks: the estimate's own speckle is ±8 %). Amplitude mode is left alone: there the persistent texture
  is what the incoherent correlation tracks.

On synthetic pairs (coherence 0.7, 128 × 32 windows, tests/test_whitening.py) the two steps take the azimuth
noise from 1.43× to 0.98× the flat-spectrum bound (range 1.29× to 0.94×); on the relief demo's stable ground from
0.0176 px to 0.0135 px, and they remove most of the shear margins' error (bench/relief_accuracy.py). Each burst
is filtered on its own, from its own valid pixels plus a margin (never across a burst or swath cut), with the
weighting its own annotation states.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d, uniform_filter

from offset_cube.safe.annotation import SwathAnnotation

#: Half length (taps each side) of the de-weighting filters: within the band their response is 1/w(f) to 2.6 %
#: (azimuth, B = 0.64 of the line rate) and 2.0 % (range, 0.75 of the sampling rate); 12 taps give 1.4 %/1.1 %
#: and the same offsets (the bound is reached either way).
DEWEIGHT_HALF_TAPS = 8
#: Local-power box (lines, samples): ~125 m x 120 m on the ground for Sentinel-1 IW, ~140 independent looks.
#: Boxes from 5 x 17 to 15 x 55 px give the same noise on synthetic textured pairs (0.97x the bound each).
POWER_BOX = (9, 33)


@functools.lru_cache(maxsize=16)
def deweighting_kernel(band_fraction: float, alpha: float, half_taps: int = DEWEIGHT_HALF_TAPS) -> np.ndarray:
    """FIR taps (2 * half_taps + 1, float64) whose response is ``1 / w(f)`` over the processing band.

    ``band_fraction`` is the processing bandwidth over the sampling rate (cycles per pixel, < 1) and ``alpha``
    the Hamming coefficient (1: no weighting, the filter is the identity). Beyond the band the response stays
    at the band edge's value (smooth, so few taps suffice); a Hann taper limits the truncation ripple.
    """
    if not 0.0 < band_fraction <= 1.0 or not 0.5 < alpha <= 1.0:
        raise ValueError(f"band fraction {band_fraction} must be in (0, 1] and alpha {alpha} in (0.5, 1]")
    n = 4096
    f = np.minimum(np.abs(np.fft.fftfreq(n)), band_fraction / 2)
    response = 1.0 / (alpha + (1.0 - alpha) * np.cos(2 * np.pi * f / band_fraction))
    taps = np.real(np.fft.ifft(response))
    taps = np.concatenate([taps[-half_taps:], taps[: half_taps + 1]])
    taper = 0.5 * (1.0 + np.cos(np.pi * np.arange(-half_taps, half_taps + 1) / (half_taps + 1)))
    out = taps * taper
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class BandWeighting:
    """How one swath's processing bands are weighted: band over sampling rate (cycles per pixel) and the Hamming
    coefficient, per axis (annotation ``swathProcParams``; Sentinel-1's IPF uses Hamming windows only)."""

    azimuth_fraction: float
    azimuth_alpha: float
    range_fraction: float
    range_alpha: float

    @classmethod
    def of(cls, annotation: SwathAnnotation) -> BandWeighting:
        return cls(
            azimuth_fraction=annotation.azimuth_bandwidth_hz * annotation.azimuth_time_interval_s,
            azimuth_alpha=annotation.azimuth_window_coefficient,
            range_fraction=annotation.range_bandwidth_hz / annotation.range_sampling_rate_hz,
            range_alpha=annotation.range_window_coefficient,
        )


@dataclass(frozen=True)
class Whitening:
    """What is applied to every burst before complex tracking (the job's ``builtin.whitening``)."""

    deweight: bool = True
    power_box: tuple[int, int] | None = POWER_BOX

    @property
    def margin(self) -> tuple[int, int]:
        """Pixels (lines, samples) read beyond a burst's part of the grid so the filters see real data there."""
        lines = samples = DEWEIGHT_HALF_TAPS if self.deweight else 0
        if self.power_box is not None:
            lines += self.power_box[0] // 2
            samples += self.power_box[1] // 2
        return lines, samples

    def apply(self, data: np.ndarray, weighting: BandWeighting) -> np.ndarray:
        """``data`` (deramped pixels of one burst, zero where invalid) whitened; complex64, zero where it was zero."""
        usable = data != 0
        out = np.asarray(data, dtype=np.complex64)
        if self.deweight:
            azimuth = deweighting_kernel(weighting.azimuth_fraction, weighting.azimuth_alpha)
            out = convolve1d(out, azimuth, axis=0, mode="constant")
            out = convolve1d(
                out, deweighting_kernel(weighting.range_fraction, weighting.range_alpha), axis=1, mode="constant"
            )
        if self.power_box is not None:
            # Mean power over the box's usable pixels only, so the data's edges are not over-amplified.
            power = uniform_filter((out.real**2 + out.imag**2) * usable, size=self.power_box, mode="constant")
            count = uniform_filter(usable.astype(np.float32), size=self.power_box, mode="constant")
            mean = np.where(count > 0, power / np.where(count > 0, count, 1.0), 0.0)
            out = np.where(mean > 0, out / np.sqrt(np.where(mean > 0, mean, 1.0)), 0.0)
        return np.where(usable, out, 0).astype(np.complex64)

    def describe(self) -> str:
        parts = []
        if self.deweight:
            parts.append("Hamming de-weighting of both bands (annotation windowCoefficient, processingBandwidth)")
        if self.power_box is not None:
            parts.append(f"local power equalised over {self.power_box[0]}x{self.power_box[1]} px (lines x samples)")
        return ", ".join(parts) or "none"
