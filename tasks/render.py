"""Render stage (ISCE2 engine): topsApp.xml, reference.xml and secondary.xml in the pair folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.isce2.render import render_pair_inputs
from offset_cube.stages import PairInputs
from tasks._common import run_logger


@task(name="render", task_run_name="render {inputs.pair.label}")
def render_pair(inputs: PairInputs, job: JobConfig) -> Path:
    """Write the three topsApp XML files for the pair; return the pair folder."""
    pair_dir = render_pair_inputs(inputs, job)
    run_logger(__name__).info("%s: topsApp inputs written to %s", inputs.pair.label, pair_dir)
    return pair_dir
