"""Product stage: the pair's offsets → velocity on the cube grid, written to pairs/<id>/, plus its quicklook."""

from __future__ import annotations

import re
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from offset_cube.config import JobConfig
from offset_cube.cube.product import QUICKLOOK_NAME, make_pair_product, product_figures, product_path
from offset_cube.cube.quicklook import pair_quicklook
from offset_cube.cube.store import job_grid
from offset_cube.errors import PairSkipped
from offset_cube.planning import Pair
from tasks._common import OutputRecord, path_fingerprint, run_logger, stage_key


def product_record(pair: Pair, result: Path, job: JobConfig) -> OutputRecord:
    """The pair's product and the key of what changes it: the engine result on disk and the product settings."""
    out = product_path(job.storage.pairs_dir, pair.pair_id)
    try:
        source: list[int] | str = path_fingerprint(result)
    except OSError:
        source = "missing"
    key = stage_key("product", pair.pair_id, str(result), source, job.product, job.grid, job.area)
    return OutputRecord(output=out, marker=out.parent / ".product-key", key=key)


@task(
    name="product",
    task_run_name="product {pair.label}",
    cache_key_fn=lambda _ctx, i: product_record(i["pair"], i["result"], i["job"]).cache_key(),
)
def make_product(pair: Pair, result: Path, job: JobConfig) -> Path:
    """Convert the engine result at ``result`` into the pair product on the cube grid, draw its quicklook and
    publish its key figures; return the product's path.

    Raises :class:`PairSkipped` when the product is empty or below ``product.min_coverage_pct``: the product
    stays in the pair folder for inspection, but it never becomes a layer of the cube.
    """
    out = product_record(pair, result, job).produce(lambda: _make(pair, result, job), pair.label)
    figures = publish_figures(pair, out)
    coverage = float(figures["valid_percentage"])
    minimum = job.product.min_coverage_pct
    if coverage <= 0 or coverage < minimum:
        raise PairSkipped(
            f"{pair.label}: {coverage:.2f} % of the area's cells are valid, below product.min_coverage_pct = "
            f"{minimum:g} %; not added to the cube (search window or chip larger than the image over the "
            f"area, no overlap, or no correlation; product kept at {out})"
        )
    return out


def _make(pair: Pair, result: Path, job: JobConfig) -> Path:
    out = product_path(job.storage.pairs_dir, pair.pair_id)
    make_pair_product(result, job_grid(job), job.product, out)
    png = pair_quicklook(out, out.parent / QUICKLOOK_NAME)
    run_logger(__name__).info("%s: product %s, quicklook %s", pair.label, out, png)
    return out


def publish_figures(pair: Pair, product: Path) -> dict[str, float | str]:
    """A markdown artifact ``pair-<id>`` with the pair's key figures (inside a run only); the figures."""
    figures = product_figures(product)
    if TaskRunContext.get() is None:
        return figures
    rows = [
        ("dates", f"{pair.reference.date} → {pair.secondary.date} ({figures['dt_days']} days)"),
        ("track", f"{pair.track} {pair.direction.value.lower()}"),
        ("valid coverage", f"{figures['valid_percentage']:.1f} %"),
        ("median speed", f"{figures['median_speed_m_per_yr']} m/yr (90th percentile {figures['p90_speed_m_per_yr']})"),
        ("median SNR", f"{figures['median_snr']}"),
        ("engine / orbit", f"{figures['engine']} / {figures['orbit_type']}"),
        ("product", f"`{product}`"),
    ]
    markdown = "\n".join([f"# {pair.label}", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    key = "pair-" + re.sub(r"[^a-z0-9-]+", "-", pair.pair_id.lower())
    create_markdown_artifact(markdown=markdown, key=key, description=f"key figures of {pair.label}")
    return figures
