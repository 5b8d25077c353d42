"""Gather one pair's downloaded SAFEs and orbit files into :class:`PairInputs`."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from offset_cube.config import JobConfig
from offset_cube.errors import PairDeferred
from offset_cube.planning import Pair
from offset_cube.stages import OrbitFile, PairInputs


@task(name="inputs", task_run_name="inputs {pair.label}")
def gather_inputs(
    pair: Pair,
    job: JobConfig,
    reference_safes: list[Path],
    secondary_safes: list[Path],
    reference_orbits: list[OrbitFile],
    secondary_orbits: list[OrbitFile],
) -> PairInputs:
    """Check every input of the pair is present; defer the pair when an orbit is not yet available."""
    deferred = [o for o in (*reference_orbits, *secondary_orbits) if o.deferred]
    if deferred:
        raise PairDeferred(
            f"{pair.label} deferred: " + "; ".join(f"{o.product_id}: {o.note or 'no orbit yet'}" for o in deferred)
        )
    pair_dir = job.storage.pairs_dir / pair.pair_id
    pair_dir.mkdir(parents=True, exist_ok=True)
    return PairInputs(
        pair=pair,
        pair_dir=pair_dir,
        reference_safes=tuple(reference_safes),
        secondary_safes=tuple(secondary_safes),
        reference_orbits=tuple(reference_orbits),
        secondary_orbits=tuple(secondary_orbits),
    )
