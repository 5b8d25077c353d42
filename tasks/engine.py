"""Engine stage: the pair's dense offsets in the common per-pair result format (offsets.zarr)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import Engine, JobConfig
from offset_cube.errors import EngineError
from offset_cube.stages import PairInputs
from tasks._common import run_logger, stage_cache_key


def _engine_key_inputs(inputs: dict[str, object]) -> list[object]:
    job = inputs["job"]
    pair_inputs = inputs["inputs"]
    assert isinstance(pair_inputs, PairInputs)
    from offset_cube.config import JobConfig as _Job

    assert isinstance(job, _Job)
    return [
        pair_inputs,
        job.engine,
        job.tracking,
        job.builtin if job.engine is Engine.BUILTIN else job.isce2,
        job.area,
        job.polarization,
        job.swaths,
    ]


@task(
    name="engine",
    task_run_name="engine {inputs.pair.label}",
    cache_key_fn=stage_cache_key("engine", _engine_key_inputs),
)
def run_engine(inputs: PairInputs, job: JobConfig) -> Path:
    """Run the configured engine for one pair; return the path of its ``offsets.zarr``."""
    if job.engine is Engine.BUILTIN:
        return _run_builtin(inputs, job)
    raise EngineError(f"{inputs.pair.label}: engine {job.engine.value} is not available in this build yet")


# ----------------------------------------------------------------------------------------- builtin engine
# Owned by the built-in engine's issue: it replaces this function only.


def _run_builtin(inputs: PairInputs, job: JobConfig) -> Path:
    """The built-in engine (SAFE zips → offsets, no ISCE2) for one pair."""
    from offset_cube.builtin.engine import run_builtin

    logger = run_logger(__name__)
    result = run_builtin(inputs, job)
    logger.info("%s: built-in engine wrote %s", inputs.pair.label, result)
    return result
