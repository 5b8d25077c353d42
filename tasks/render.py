"""Render stage (ISCE2 engine): topsApp.xml, reference.xml and secondary.xml in the pair folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.errors import EngineError
from offset_cube.stages import PairInputs


@task(name="render", task_run_name="render {inputs.pair.label}")
def render_pair(inputs: PairInputs, job: JobConfig) -> Path:
    """Write the three topsApp XML files for the pair; return the pair folder."""
    raise EngineError(f"{inputs.pair.label}: the ISCE2 engine is not available in this build yet")
