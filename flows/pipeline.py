"""The offset-cube flow: search → plan → DEM → per pair (download, orbits, render, engine, product) → cube → report.

Wiring only: every stage is a task in :mod:`tasks`, and every task wraps a plain function of
:mod:`offset_cube`. Pairs run concurrently; one failed pair never stops the others, and the run ends Failed
only when a pair failed, naming which and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prefect import State, flow, get_run_logger, tags
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict

from offset_cube.atomic import private_folder
from offset_cube.config import Engine, JobConfig
from offset_cube.disk import human_bytes, tree_bytes
from offset_cube.download import releasable_scenes
from offset_cube.errors import PairDeferred, PairSkipped
from offset_cube.planning import Pair, Plan
from offset_cube.stages import PairOutcome
from tasks._common.limits import engine_limits, prepare_limits
from tasks.cube import insert_into_cube, report_cube, update_composites
from tasks.dem import dem_task
from tasks.download import check_downloads, download_scene, release_scene, retry_options
from tasks.engine import kill_engine_processes, run_engine
from tasks.inputs import gather_inputs
from tasks.orbits import fetch_orbit
from tasks.plan import existing_pairs_task, plan_task, publish_plan_table
from tasks.product import make_product
from tasks.render import render_pair
from tasks.search import search_task


class RunSummary(BaseModel):
    """What a flow run did."""

    model_config = ConfigDict(extra="forbid")

    job: str
    cube: Path
    pairs_planned: int
    outcomes: list[PairOutcome]
    message: str
    pair_disk_bytes: dict[str, int] = {}

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def flow_run_name() -> str:
    """``<job name> <start>..<end>`` for the Prefect UI."""
    job = flow_run.parameters.get("job")
    if isinstance(job, JobConfig):
        return f"{job.name} {job.start}..{job.end_date}"
    if isinstance(job, dict):
        return f"{job.get('name', 'offset-cube')} {job.get('start')}..{job.get('end') or 'today'}"
    return "offset-cube"


@flow(
    name="offset-cube",  # the Prefect flow name that deployments and the UI use: keep it
    flow_run_name=flow_run_name,
    task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=4)),
    validate_parameters=True,
    # Prefect's cancel/crash handling does not stop child processes: kill topsApp's process groups ourselves.
    on_cancellation=[kill_engine_processes],
    on_crashed=[kill_engine_processes],
)
def velocity_cube_flow(job: JobConfig) -> RunSummary | State[Any]:
    """Process every new pair of the job's tracks into the job's velocity cube."""
    logger = get_run_logger()
    job.storage.check_writable()  # a deployment's bad storage ends the run before any work
    scenes = search_task(job)
    existing = existing_pairs_task(job)
    plan = plan_task(job, scenes, existing)
    publish_plan_table(plan)
    outcomes = [PairOutcome(pair_id=p, label=p, status="already-done") for p in plan.already_done]
    outcomes += [
        PairOutcome(pair_id=s.pair.pair_id, label=s.pair.label, status="skipped", message=s.reason)
        for s in plan.skipped
    ]
    if not plan.pairs:
        message = plan.no_pairs_reason()
        logger.info(message)
        summary = RunSummary(
            job=job.name, cube=job.storage.cube_path, pairs_planned=0, outcomes=outcomes, message=message
        )
        return Completed(message=message, data=summary)  # the state's message is what the terminal shows

    check_downloads(plan.scenes(), job)  # no credentials: one clear error before any download starts
    dem_task(job)  # the terrain once, before any pair (later calls find it in the DEM cache)
    prepare_limits(job, engine_limits(job))
    chains = _submit_pairs(plan, job)
    releases = _submit_releases(plan, job, chains) if job.cleanup.delete_scenes else []
    pair_outcomes = _follow(plan, chains)
    wait(releases)
    outcomes += pair_outcomes

    products = sorted(o.product for o in pair_outcomes if o.status == "completed" and o.product)
    if products:
        cube = insert_into_cube(products, job)
        report = report_cube(cube, job, return_state=True)  # pictures only: a failure must not fail the run
        if not report.is_completed():
            logger.warning("cube report failed: %s", report.message)
        if job.composites:
            update_composites(cube, job)
    summary = _summary(job, plan, outcomes)
    create_markdown_artifact(markdown=_summary_markdown(summary), key="run-summary", description=summary.message)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        details = "; ".join(o.message if o.message.startswith(o.label) else f"{o.label}: {o.message}" for o in failed)
        logger.error("%d pair(s) failed: %s", len(failed), details)
        return Failed(message=f"{len(failed)} of {len(plan.pairs)} pair(s) failed: {details}", data=summary)
    logger.info(summary.message)
    return Completed(message=summary.message, data=summary)


def _submit_pairs(plan: Plan, job: JobConfig) -> dict[str, list[PrefectFuture[Any]]]:
    """Submit each scene's download and orbit once, then each pair's chain; return the futures per pair."""
    results = private_folder(job.storage.out / ".prefect-results")
    download = download_scene.with_options(result_storage=results, **retry_options(job.download))
    orbit = fetch_orbit.with_options(result_storage=results)
    engine = run_engine.with_options(result_storage=results)
    # Futures stand in for task inputs (Prefect resolves them), which the task signatures cannot express.
    downloads: dict[str, Any] = {s.product_id: download.submit(s, job) for s in plan.scenes()}
    orbits: dict[str, Any] = {s.product_id: orbit.submit(s, job) for s in plan.scenes()}
    chains: dict[str, list[PrefectFuture[Any]]] = {}
    for pair in plan.pairs:
        with tags(f"track-{pair.track}", f"engine-{job.engine.value}"):
            chains[pair.pair_id] = _submit_pair(pair, job, downloads, orbits, engine)
    return chains


def _submit_pair(
    pair: Pair, job: JobConfig, downloads: dict[str, Any], orbits: dict[str, Any], engine: Any
) -> list[PrefectFuture[Any]]:
    """Submit one pair's chain (inputs → [render →] engine → product); return its futures, upstream first."""
    ref, sec = pair.reference.product_ids, pair.secondary.product_ids
    upstream = [downloads[i] for i in ref + sec] + [orbits[i] for i in ref + sec]
    inputs: Any = gather_inputs.submit(
        pair,
        job,
        [downloads[i] for i in ref],
        [downloads[i] for i in sec],
        [orbits[i] for i in ref],
        [orbits[i] for i in sec],
    )
    chain: list[PrefectFuture[Any]] = [*upstream, inputs]
    if job.engine is Engine.ISCE2:
        rendered = render_pair.submit(inputs, job)
        chain.append(rendered)
        result: Any = engine.submit(inputs, job, wait_for=[rendered], return_state=False)
    else:
        result = engine.submit(inputs, job)
    product = make_product.submit(pair, result, job)
    return [*chain, result, product]


def _follow(plan: Plan, chains: dict[str, list[PrefectFuture[Any]]]) -> list[PairOutcome]:
    """Wait for every pair, updating the plan table artifact as each one finishes; outcomes in plan order."""
    pairs = {p.pair_id: p for p in plan.pairs}
    last = {id(chain[-1]): pair_id for pair_id, chain in chains.items()}
    done: dict[str, PairOutcome] = {}
    for future in as_completed([chain[-1] for chain in chains.values()]):
        pair_id = last[id(future)]
        wait(chains[pair_id])  # the product finished, so its upstream has too; this only makes it certain
        done[pair_id] = _outcome(pairs[pair_id], chains[pair_id])
        publish_plan_table(plan, {i: o.status for i, o in done.items()})
    return [done[p.pair_id] for p in plan.pairs]


def _submit_releases(plan: Plan, job: JobConfig, chains: dict[str, list[PrefectFuture[Any]]]) -> list[Any]:
    """Delete each downloaded zip once all its pairs completed (a failed or deferred pair keeps it)."""
    return [
        release_scene.submit(scene, job, wait_for=[chains[p][-1] for p in pair_ids], return_state=False)
        for scene, pair_ids in releasable_scenes(plan, keep_newest=job.neighbours)
    ]


def _outcome(pair: Pair, chain: list[PrefectFuture[Any]]) -> PairOutcome:
    """Completed with its product path, or the first stage that did not complete and why."""
    for future in chain:
        state = future.state
        if state.is_completed():
            continue
        error = state.result(raise_on_failure=False)
        if isinstance(error, PairDeferred | PairSkipped):
            status = "deferred" if isinstance(error, PairDeferred) else "skipped"
            return PairOutcome(pair_id=pair.pair_id, label=pair.label, status=status, message=str(error))
        message = str(error) if isinstance(error, BaseException) else (state.message or state.name or "not run")
        return PairOutcome(pair_id=pair.pair_id, label=pair.label, status="failed", message=message)
    return PairOutcome(pair_id=pair.pair_id, label=pair.label, status="completed", product=chain[-1].result())


def _summary(job: JobConfig, plan: Plan, outcomes: list[PairOutcome]) -> RunSummary:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("completed", "failed", "deferred", "skipped")}
    message = (
        f"{counts['completed']} pair(s) completed, {counts['failed']} failed, {counts['deferred']} deferred, "
        f"{counts['skipped']} skipped, {len(plan.already_done)} already in the cube"
    )
    disk = {p.pair_id: tree_bytes(job.storage.pairs_dir / p.pair_id) for p in plan.pairs}
    disk = {pair_id: size for pair_id, size in disk.items() if size}
    if disk:
        message += (
            f"; this run's pair folders hold {human_bytes(sum(disk.values()))} "
            f"(at most {human_bytes(max(disk.values()))} per pair; cleanup.pair_files: {job.cleanup.pair_files})"
        )
    skipped = [o.message for o in outcomes if o.status == "skipped" and o.message]
    if skipped:
        message += ". Skipped: " + "; ".join(skipped)
    return RunSummary(
        job=job.name,
        cube=job.storage.cube_path,
        pairs_planned=len(plan.pairs),
        outcomes=outcomes,
        message=message,
        pair_disk_bytes=disk,
    )


def _summary_markdown(summary: RunSummary) -> str:
    header = ["| pair | status | disk left | detail |", "|---|---|---|---|"]
    lines = [f"# {summary.job}", "", summary.message, "", *header]
    for o in summary.outcomes:
        size = summary.pair_disk_bytes.get(o.pair_id)
        disk = human_bytes(size) if size is not None else ""
        lines.append(f"| {o.label} | {o.status} | {disk} | {o.message.replace('|', '/')[:300]} |")
    return "\n".join(lines)


def flow_for(job: JobConfig) -> Any:
    """The flow with the task runner the job asks for: threads (default) or Dask (prefect-dask).

    With Dask, ``runner.dask_address`` names an existing cluster (its workers need the project installed and
    the job's storage folders on shared storage); without it a temporary local cluster is started.
    """
    if job.runner.task_runner == "dask":
        try:
            from prefect_dask.task_runners import DaskTaskRunner
        except ImportError as err:
            from offset_cube.errors import ConfigError

            raise ConfigError("runner.task_runner 'dask' needs prefect-dask: pip install 'offset-cube[dask]'") from err
        if job.runner.dask_address:
            runner: Any = DaskTaskRunner(address=job.runner.dask_address)
        else:
            runner = DaskTaskRunner(
                cluster_class="distributed.LocalCluster",
                cluster_kwargs={
                    "n_workers": job.runner.dask_workers,
                    "threads_per_worker": 1,
                    # a free port: None still starts the dashboard on 8787 and warns when another cluster holds it
                    "dashboard_address": ":0",
                },
            )
        return velocity_cube_flow.with_options(task_runner=runner)
    workers = job.concurrency.pairs + job.concurrency.downloads
    return velocity_cube_flow.with_options(task_runner=cast(Any, ThreadPoolTaskRunner(max_workers=workers)))
