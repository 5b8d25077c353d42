"""Pixel sizes with named axes, so no code has to remember which of ``[0]`` and ``[1]`` is which."""

from __future__ import annotations

from typing import NamedTuple


class Size(NamedTuple):
    """A size in pixels as the job config and ISCE2's Ampcor properties give it: ``width`` = range samples,
    ``height`` = azimuth lines. Arrays are indexed (lines, samples): use :attr:`shape` for that order."""

    width: int
    height: int

    @property
    def samples(self) -> int:
        return self.width

    @property
    def lines(self) -> int:
        return self.height

    @property
    def shape(self) -> tuple[int, int]:
        """(lines, samples), the numpy order of a radar image."""
        return (self.height, self.width)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"
