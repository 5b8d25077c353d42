"""Product stage: the pair's offsets → velocity on the cube grid, written to pairs/<id>/."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.errors import CubeError
from offset_cube.planning import Pair


@task(name="product", task_run_name="product {pair.label}")
def make_product(pair: Pair, result: Path, job: JobConfig) -> Path:
    """Convert the engine result at ``result`` into the pair product on the cube grid; return its path."""
    raise CubeError(f"{pair.label}: the pair product is not available in this build yet")
