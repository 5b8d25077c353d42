"""Cube stage: insert finished pair products into the cube (single writer)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.errors import CubeError


@task(name="cube-insert")
def insert_into_cube(products: list[Path], job: JobConfig) -> Path:
    """Insert pair products into the job's cube (sorted, unique, idempotent); return the cube path."""
    raise CubeError("the cube writer is not available in this build yet")
