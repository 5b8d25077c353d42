"""The simulator's speckle decorrelation between dates: Markov by default, with an optional long-term floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offset_cube.errors import ConfigError
from offset_cube.simulate.stack import SimulationConfig, speckle_series

SIZE = 200_000


def _series(coherence: float, floor: float, dates: int = 5, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        return np.asarray((rng.standard_normal(SIZE) + 1j * rng.standard_normal(SIZE)) / np.sqrt(2))

    return [field.copy() for field, _ in speckle_series(draw, dates, coherence, floor)]


def _coherence(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real))


@pytest.mark.parametrize(("coherence", "floor"), [(0.5, 0.0), (0.5, 0.2), (0.7, 0.35)])
def test_coherence_between_dates_follows_the_model(coherence: float, floor: float) -> None:
    fields = _series(coherence, floor)
    memory = (coherence - floor) / (1 - floor)
    for k in range(1, len(fields)):
        expected = floor + (1 - floor) * memory**k
        measured = [_coherence(fields[n], fields[n + k]) for n in range(len(fields) - k)]
        # 200 000 samples: the estimate's spread is ~0.003
        assert np.allclose(measured, expected, atol=0.012), (k, measured, expected)
    assert all(abs(np.mean(np.abs(f) ** 2) - 1) < 0.02 for f in fields)  # unit power on every date


def test_without_a_floor_the_series_is_the_plain_markov_chain() -> None:
    rng = np.random.default_rng(5)
    draws = [rng.standard_normal(64) + 1j * rng.standard_normal(64) for _ in range(4)]
    queue = iter([d.copy() for d in draws])
    got = [f.copy() for f, _ in speckle_series(lambda: next(queue), 4, 0.6)]
    expected = [draws[0]]
    for fresh in draws[1:]:
        expected.append(0.6 * expected[-1] + np.sqrt(1 - 0.36) * fresh)
    assert all(np.allclose(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("floor", [-0.1, 0.6, 1.0])
def test_a_floor_outside_zero_to_the_coherence_is_refused(floor: float) -> None:
    with pytest.raises(ConfigError, match="coherence_floor"):
        SimulationConfig(template=Path("x.zip"), coherence=0.5 if floor < 1 else 1.0, coherence_floor=floor)


@pytest.mark.parametrize("floor", [0.0, 0.2])
def test_spilling_the_previous_field_to_disk_gives_the_same_fields(tmp_path: Path, floor: float) -> None:
    """A 64 km area's field is ~3.7 GB: the simulator keeps the previous date's on disk while drawing the next
    (``spill``); the fields are exactly those of the in-memory chain."""

    def fields(spill: Path | None) -> list[np.ndarray]:
        rng = np.random.default_rng(11)

        def draw() -> np.ndarray:
            return (rng.standard_normal((300, 70)) + 1j * rng.standard_normal((300, 70))).astype(np.complex64)

        return [f.copy() for f, _ in speckle_series(draw, 4, 0.6, floor, spill=spill)]

    in_memory, spilled = fields(None), fields(tmp_path / "previous.c64")
    assert all(np.array_equal(a, b) for a, b in zip(in_memory, spilled, strict=True))
