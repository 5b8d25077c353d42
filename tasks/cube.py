"""Cube stage: insert finished pair products into the cube (single writer), then report on the cube."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from offset_cube.config import JobConfig
from offset_cube.cube.composite import composite_cube, default_composite_path
from offset_cube.cube.export import describe_cube
from offset_cube.cube.quicklook import cube_summary
from offset_cube.cube.store import insert_products, job_grid
from tasks._common import png_markdown, run_logger

#: File name of the cube summary picture, in ``storage.out``.
SUMMARY_PNG = "cube_summary.png"


@task(name="cube-insert")
def insert_into_cube(products: list[Path], job: JobConfig) -> Path:
    """Insert pair products into the job's cube (sorted, unique, idempotent); return the cube path."""
    logger = run_logger(__name__)
    report = insert_products(
        job.storage.cube_path,
        products,
        grid=job_grid(job),
        area_wkt=job.area,
        job_config=job.model_dump_json(),
        replace=job.product.replace,
        lock_timeout_s=job.storage.cube_lock_timeout_s,
    )
    logger.info("cube %s: %s", report.cube, report.summary())
    if report.skipped:
        logger.info("already in the cube (use --replace to redo): %s", ", ".join(report.skipped))
    return report.cube


@task(name="cube-report")
def report_cube(cube: Path, job: JobConfig) -> Path:
    """Draw the cube summary PNG and publish a ``cube-summary`` artifact (layers, dates, Δt, coverage)."""
    png = cube_summary(cube, job.storage.out / SUMMARY_PNG)
    info = describe_cube(cube)
    lines = [
        f"# Cube {cube}",
        "",
        f"{len(info.layers)} layer(s); grid {info.grid.describe()}; updated {info.updated}.",
        "",
        png_markdown(png, "cube summary"),
        "",
        f"Summary picture: `{png}`; per-pair quicklooks: `<pairs>/<pair id>/quicklook.png` and each pair's artifact.",
        "",
    ]
    header, rows = info.table()
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    create_markdown_artifact(markdown="\n".join(lines), key="cube-summary", description=f"{len(info.layers)} layers")
    return png


@task(name="composites")
def update_composites(cube: Path, job: JobConfig) -> list[Path]:
    """Update the composites the job asks for (only periods touched by new layers); return their paths."""
    logger = run_logger(__name__)
    paths = []
    for period in dict.fromkeys(job.composites):
        report = composite_cube(cube, period, default_composite_path(cube, period))
        logger.info("%s", report.summary())
        paths.append(report.path)
    return paths
