"""Product stage: the pair's offsets → velocity on the cube grid, written to pairs/<id>/, plus its quicklook."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.cube.grid import CubeGrid, grid_for_job
from offset_cube.cube.product import QUICKLOOK_NAME, make_pair_product, product_path
from offset_cube.cube.quicklook import pair_quicklook
from offset_cube.cube.store import grid_for_cube
from offset_cube.planning import Pair
from tasks._common import run_logger


def job_grid(job: JobConfig) -> CubeGrid:
    """The job's cube grid, refused when it disagrees with the existing cube (area, CRS, spacing)."""
    return grid_for_cube(job.storage.cube_path, grid_for_job(job.area, job.grid), job.area)


@task(name="product", task_run_name="product {pair.label}")
def make_product(pair: Pair, result: Path, job: JobConfig) -> Path:
    """Convert the engine result at ``result`` into the pair product on the cube grid; return its path."""
    logger = run_logger(__name__)
    out = product_path(job.storage.pairs_dir, pair.pair_id)
    make_pair_product(result, job_grid(job), job.product, out)
    png = pair_quicklook(out, out.parent / QUICKLOOK_NAME)
    logger.info("%s: product %s, quicklook %s", pair.label, out, png)
    return out
