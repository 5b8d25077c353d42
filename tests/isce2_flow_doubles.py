"""Test doubles for the flow stages around the ISCE2 engine (search, download, orbits, product, cube).

Search returns the real BC pair (local SAFE annotation folders), download returns the local path, orbits are
the annotation's, product and cube pass paths through. Render and engine are the real tasks; topsApp.py is the
stand-in in tests/fake_isce/. Run as ``python -m tests.isce2_flow_doubles JOB.json`` to run the flow in its own
process (its main thread, as a deployment's flow-run process does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.planning import Pair
from offset_cube.scenes import Scene
from offset_cube.stages import OrbitFile
from tests.isce2_support import bc_scenes

FLOW_RUN_FILE = "OFFSET_CUBE_TEST_FLOW_RUN_FILE"


@task(name="search")
def search_double(job: JobConfig) -> list[Scene]:
    target = os.environ.get(FLOW_RUN_FILE)
    if target:
        from prefect.runtime import flow_run

        Path(target).write_text(str(flow_run.id))
    return bc_scenes()


@task(name="download")
def download_double(scene: Scene, job: JobConfig) -> Path:
    assert scene.local_path is not None
    return scene.local_path


@task(name="orbit")
def orbit_double(scene: Scene, job: JobConfig) -> OrbitFile:
    return OrbitFile(product_id=scene.product_id, orbit_type="annotation")


@task(name="product")
def product_double(pair: Pair, result: Path, job: JobConfig) -> Path:
    return result


@task(name="cube-insert")
def cube_double(products: list[Path], job: JobConfig) -> Path:
    return job.storage.cube_path


DOUBLES: dict[str, Any] = {
    "search_task": search_double,
    "download_scene": download_double,
    "fetch_orbit": orbit_double,
    "make_product": product_double,
    "insert_into_cube": cube_double,
}


def main(job_json: str) -> None:
    import flows.pipeline as pipeline

    for name, double in DOUBLES.items():
        setattr(pipeline, name, double)
    job = JobConfig.model_validate_json(Path(job_json).read_text())
    pipeline.flow_for(job)(job)


if __name__ == "__main__":
    main(sys.argv[1])
