"""The engine's block-streamed crops: same pixels and same offsets as one whole read, memory bounded by blocks."""

from __future__ import annotations

import numpy as np
import pytest

from offset_cube.builtin.streaming import KEEP_BLOCKS, MIN_BLOCK_LINES, StreamedCrop, block_lines_for
from offset_cube.tracking import track_offsets
from offset_cube.tracking.synthetic import constant_shift_pair


class ArrayGrid:
    """Stands in for RadarGrid.read (its contract: deramped complex64 pixels of the asked lines x samples, zero
    and invalid outside the data), over an in-memory image; records every read."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.reads: list[tuple[tuple[int, int], tuple[int, int]]] = []

    def read(self, lines: tuple[int, int], samples: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        self.reads.append((lines, samples))
        out = np.zeros((lines[1] - lines[0], samples[1] - samples[0]), dtype=np.complex64)
        valid = np.zeros(out.shape, dtype=bool)
        r0, r1 = max(lines[0], 0), min(lines[1], self.image.shape[0])
        c0, c1 = max(samples[0], 0), min(samples[1], self.image.shape[1])
        if r1 > r0 and c1 > c0:
            out[r0 - lines[0] : r1 - lines[0], c0 - samples[0] : c1 - samples[0]] = self.image[r0:r1, c0:c1]
            valid[r0 - lines[0] : r1 - lines[0], c0 - samples[0] : c1 - samples[0]] = True
        return out, valid


def test_slices_match_one_whole_read() -> None:
    rng = np.random.default_rng(1)
    image = (rng.standard_normal((700, 90)) + 1j * rng.standard_normal((700, 90))).astype(np.complex64)
    grid = ArrayGrid(image)
    crop = StreamedCrop(grid, (-20, 10), (650, 70), block_lines=100)  # starts above the image: zeros there
    whole, _ = ArrayGrid(image).read((-20, 630), (10, 80))
    for rows, cols in [(slice(0, 650), slice(0, 70)), (slice(95, 305), slice(3, 40)), (slice(640, 650), slice(None))]:
        np.testing.assert_array_equal(crop[rows, cols], whole[rows, cols])
    assert crop[5:5, :].shape == (0, 70)
    assert crop[95:305, 3:40].flags.c_contiguous  # only the asked samples were copied, not whole lines
    assert all(samples == (10, 80) for _, samples in grid.reads)  # full-width blocks
    assert crop.shape == (650, 70) and crop.dtype == np.complex64
    assert crop.peak_bytes() == KEEP_BLOCKS * 100 * 70 * 8


@pytest.mark.parametrize("workers", [1, 2])
def test_tracking_a_streamed_crop_gives_the_offsets_of_one_block(workers: int) -> None:
    """Offsets are identical whether the tracker reads the crop in 64-line blocks or from memory; with one
    worker every block is read exactly once although tiles overlap."""
    ref, sec = constant_shift_pair((448, 640), (1.4, -2.3), gamma=0.7, seed=8)
    options = {"window": (64, 16), "search": (20, 8), "skip": (32, 16), "mode": "amplitude", "workers": workers}
    expected = track_offsets(ref, sec, **options)
    ref_grid, sec_grid = ArrayGrid(ref), ArrayGrid(sec)
    streamed = track_offsets(
        StreamedCrop(ref_grid, (0, 0), ref.shape, block_lines=64),
        StreamedCrop(sec_grid, (0, 0), sec.shape, block_lines=64),
        **options,
    )
    for name in ("azimuth_offset", "range_offset", "snr", "cov_az"):
        np.testing.assert_array_equal(streamed[name].values, expected[name].values)
    if workers == 1:
        assert len(ref_grid.reads) == len(sec_grid.reads) == 448 // 64


def test_block_size_follows_the_width() -> None:
    assert block_lines_for(8_000) == 16 * 2**20 // (8 * 8_000) == 262
    assert block_lines_for(100) == 16 * 2**20 // 800
    assert block_lines_for(25_000) == MIN_BLOCK_LINES
