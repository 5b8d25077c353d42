"""Plan stage: pairs of consecutive acquisitions per track, minus those already in the cube."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from offset_cube.config import JobConfig
from offset_cube.cube.lookup import existing_pair_ids
from offset_cube.planning import Plan, plan_pairs
from offset_cube.scenes import Scene
from tasks._common import run_logger


@task(name="existing-pairs")
def existing_pairs_task(job: JobConfig) -> list[str]:
    """Pair ids already in the job's cube (none with ``product.replace``: every pair is redone and replaced)."""
    if job.product.replace:
        return []
    return sorted(existing_pair_ids(job.storage.cube_path))


@task(name="plan")
def plan_task(job: JobConfig, scenes: list[Scene], existing: list[str]) -> Plan:
    """Plan the pairs and publish the plan as a table artifact."""
    logger = run_logger(__name__)
    plan = plan_pairs(job, scenes, existing=set(existing))
    for notice in plan.notices():
        logger.warning(notice)
    logger.info(plan.summary_line())
    return plan


def publish_plan_table(plan: Plan, status: dict[str, str] | None = None) -> None:
    """Create or update the ``plan`` table artifact (pairs, Δt, search window, status)."""
    status = status or {}
    rows = [
        {
            "pair": p.pair_id,
            "track": p.track,
            "direction": p.direction.value,
            "reference": p.reference.date.isoformat(),
            "secondary": p.secondary.date.isoformat(),
            "dt_days": round(p.dt_days, 2),
            "search_px": str(p.search_px),
            "status": status.get(p.pair_id, "planned"),
        }
        for p in plan.pairs
    ] + [
        {
            "pair": s.pair.pair_id,
            "track": s.pair.track,
            "direction": s.pair.direction.value,
            "reference": s.pair.reference.date.isoformat(),
            "secondary": s.pair.secondary.date.isoformat(),
            "dt_days": round(s.pair.dt_days, 2),
            "search_px": str(s.pair.search_px),
            "status": f"skipped: {s.reason}",
        }
        for s in plan.skipped
    ]
    create_table_artifact(table=rows, key="plan", description="Pairs of this run and their status")
