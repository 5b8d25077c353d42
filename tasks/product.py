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
from tasks._common import OutputRecord, path_fingerprint, png_markdown, run_logger, stage_key


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
    png = pair_quicklook(out, out.parent / QUICKLOOK_NAME, job.area)
    run_logger(__name__).info("%s: product %s, quicklook %s", pair.label, out, png)
    return out


def publish_figures(pair: Pair, product: Path) -> dict[str, float | str]:
    """A markdown artifact ``pair-<id>`` with the pair's quicklook and key figures (inside a run only); the
    figures."""
    figures = product_figures(product)
    if TaskRunContext.get() is None:
        return figures
    key = "pair-" + re.sub(r"[^a-z0-9-]+", "-", pair.pair_id.lower())
    create_markdown_artifact(
        markdown=pair_markdown(pair.label, product, figures), key=key, description=f"key figures of {pair.label}"
    )
    return figures


def pair_markdown(label: str, product: Path, figures: dict[str, float | str] | None = None) -> str:
    """The pair artifact: its quicklook (embedded, so the UI shows it) and a table of key figures."""
    figures = product_figures(product) if figures is None else figures
    figures_dates = f"{figures['reference_date']} → {figures['secondary_date']} ({figures['dt_days']} days)"
    rows = [
        ("dates", figures_dates),
        ("track", f"{figures['track']} {str(figures['direction']).lower()}"),
        ("valid coverage", f"{figures['valid_percentage']:.1f} %"),
        ("median speed", f"{figures['median_speed_m_per_yr']} m/yr (90th percentile {figures['p90_speed_m_per_yr']})"),
        ("median SNR", f"{figures['median_snr']}"),
        ("error (stable ground)", f"vx ± {figures['vx_error']}, vy ± {figures['vy_error']} m/yr"),
        ("engine / orbit", f"{figures['engine']} / {figures['orbit_type']}"),
        ("product", f"`{product}`"),
    ]
    picture = png_markdown(product.parent / QUICKLOOK_NAME, f"quicklook of {figures['pair_id']}")
    table = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join([f"# {label}", "", picture, "", *table])
