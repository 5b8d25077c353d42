"""A crop of a radar grid read in azimuth blocks as the tracker asks for it: memory bounded by the block size.

The tracker reads its inputs tile by tile (any array-like with ``shape``, ``dtype`` and 2-D slicing), in row
order. :class:`StreamedCrop` gives it the crop of a :class:`~offset_cube.builtin.radargrid.RadarGrid` that way:
full-width blocks of ``block_lines`` lines are read (and deramped) on first use, and only the last
:data:`KEEP_BLOCKS` stay in memory, so a pair's peak memory is ``2 x KEEP_BLOCKS x block_lines x width x 8``
bytes for the two images plus the tracker's own ``memory_budget_mb``, whatever the area's length in azimuth.
Tiles overlap (window plus search); the blocks they share are read once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np

#: Blocks kept in memory per image: two tracker workers each span at most two consecutive blocks (a block is at
#: least :data:`MIN_BLOCK_LINES` lines, more than any tile the tracker reads at the job's window sizes).
KEEP_BLOCKS = 4
MIN_BLOCK_LINES = 128
#: Default size of one block of one image (complex64): 16 MiB, e.g. 128 lines (the minimum) of a 25 000-sample
#: swath or 262 lines of an 8 000-sample crop. Small blocks matter twice: reading and deramping a block needs
#: several float64 temporaries of its size, and they coexist with the tracker's batches (64 MiB blocks took a
#: 16 km pair to 1.5 GB peak RSS; 16 MiB blocks to 575 MiB, as much as reading both crops whole did).
DEFAULT_BLOCK_BYTES = 16 * 2**20


class GridReader(Protocol):
    """What is read from: :meth:`RadarGrid.read` (deramped complex64 pixels and their validity)."""

    def read(self, lines: tuple[int, int], samples: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]: ...


def block_lines_for(n_samples: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Lines per block so that one block of a crop ``n_samples`` wide holds about ``block_bytes`` (complex64)."""
    return max(MIN_BLOCK_LINES, block_bytes // (8 * max(n_samples, 1)))


class StreamedCrop:
    """Lines ``[line0, line0 + n_lines)`` x samples ``[sample0, sample0 + n_samples)`` of a grid, read lazily.

    Thread-safe: reads are serialised (the tracker's other worker keeps computing meanwhile).
    """

    def __init__(
        self,
        grid: GridReader,
        origin: tuple[int, int],
        shape: tuple[int, int],
        block_lines: int | None = None,
    ) -> None:
        self._grid = grid
        self._origin = origin
        self.shape = shape
        self.dtype = np.dtype(np.complex64)
        self.block_lines = block_lines or block_lines_for(shape[1])
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        #: Blocks read so far (a block evicted and needed again counts twice).
        self.blocks_read = 0

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        r0, r1, row_step = rows.indices(self.shape[0])
        c0, c1, col_step = cols.indices(self.shape[1])
        if row_step != 1 or col_step != 1:
            raise IndexError("StreamedCrop supports contiguous line and sample ranges only")
        # Only the asked samples are copied: the tracker's tiles may be narrower than the crop, and copying full
        # rows for each would cost (crop width / tile width) times the pixels, growing faster than the area.
        out = np.empty((max(r1 - r0, 0), max(c1 - c0, 0)), dtype=self.dtype)
        if r1 <= r0 or c1 <= c0:
            return out
        n = self.block_lines
        for index in range(r0 // n, (r1 - 1) // n + 1):
            block = self._block(index)
            lo, hi = max(r0, index * n), min(r1, (index + 1) * n)
            out[lo - r0 : hi - r0] = block[lo - index * n : hi - index * n, c0:c1]
        return out

    def _block(self, index: int) -> np.ndarray:
        with self._lock:
            if index in self._blocks:
                self._blocks.move_to_end(index)
                return self._blocks[index]
            first = index * self.block_lines
            last = min(first + self.block_lines, self.shape[0])
            line0, sample0 = self._origin
            data, _ = self._grid.read((line0 + first, line0 + last), (sample0, sample0 + self.shape[1]))
            self.blocks_read += 1
            self._blocks[index] = data
            while len(self._blocks) > KEEP_BLOCKS:
                self._blocks.popitem(last=False)
            return data

    def peak_bytes(self) -> int:
        """The most this crop holds at once: :data:`KEEP_BLOCKS` blocks."""
        return KEEP_BLOCKS * self.block_lines * self.shape[1] * self.dtype.itemsize
