"""The simulator's command, the sign/orientation of the whole chain on ascending and descending geometry, and the
demo (the real Prefect flow on a simulated stack) against its truth."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.simulate import DEMO_TEMPLATE
from tests.conftest import data_path

runner = CliRunner()
DESCENDING = data_path(
    "safe/hyp3-isce2/multi_burst/S1A_IW_SLC__1SSV_20200604T022307_20200604T022318_032861_03CE65_C158.SAFE"
)


def test_simulate_command_writes_a_stack(tmp_path: Path) -> None:
    out = tmp_path / "stack"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--dates", "2", "--area-km", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    zips = sorted((out / "scenes").glob("*.zip"))
    assert len(zips) == 2 and len(list((out / "orbits").glob("*.EOF"))) == 2
    assert (out / "truth.zarr" / "zarr.json").is_file()
    doc = json.loads((out / "simulation.json").read_text())
    assert [d["days_after_first"] for d in doc["dates"]] == [0.0, 12.0]
    with zipfile.ZipFile(zips[1]) as zf:
        names = zf.namelist()
    assert any(n.endswith(".tiff") and "/measurement/" in n for n in names)
    assert sum(p.stat().st_size for p in zips) < 10_000_000  # only the area carries pixels


def test_simulate_command_rejects_bad_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--flow", "east"])
    assert result.exit_code == 2
    assert "flow must be 'glacier' or 'north', got 'east'" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("template", [DEMO_TEMPLATE, DESCENDING], ids=["ascending", "descending"])
def test_flow_due_north_comes_out_north(template: Path, tmp_path: Path) -> None:
    """A band of ice flowing due north (map +y) at 500 m/yr gives vy > 0 and |vx| small through the engine and
    the product stage's velocity conversion, on ascending and on descending geometry."""
    from offset_cube.builtin.engine import run_builtin
    from offset_cube.config import ProductConfig
    from offset_cube.cube.grid import grid_for_area
    from offset_cube.cube.product import make_pair_product
    from offset_cube.simulate.stack import SimulationConfig, simulate_stack
    from tests.test_builtin_engine import make_inputs, make_job

    config = SimulationConfig(template=template, dates=2, flow="north", area_m=(4000.0, 4000.0), margin_m=800.0)
    stack = simulate_stack(config, tmp_path / "stack")
    tracking = {"window": [64, 32], "skip": [32, 16], "mode": "complex"}
    job = make_job(stack, tmp_path / "out", start="2014-10-03", end=None, tracking=tracking)
    inputs = make_inputs(stack, 0, 1, job, tmp_path / "out")
    result = run_builtin(inputs, job)
    grid = grid_for_area(stack.area_wkt, "auto", 120.0)
    product = xr.open_zarr(make_pair_product(result, grid, ProductConfig(), tmp_path / "product.zarr"))
    truth = xr.open_zarr(stack.truth, consolidated=False)  # type: ignore[arg-type]
    moving = truth.v.values > 400
    vx, vy = product.vx.values[moving], product.vy.values[moving]
    assert np.mean(np.isfinite(vy)) > 0.9
    assert np.mean(vy[np.isfinite(vy)] > 0) > 0.99
    assert abs(float(np.nanmedian(vy - truth.vy.values[moving]))) < 20
    assert abs(float(np.nanmedian(vx))) < 15


def worst_m(geolocation_line: str) -> float:
    """The largest window-centre error (m) in one of the demo's geolocation lines."""
    return float(geolocation_line.split(" max ")[1].split(" m")[0])


@pytest.mark.flow
def test_demo_runs_the_flow_and_matches_the_truth(prefect_harness: None, tmp_path: Path) -> None:
    """The demo, smaller: 3 dates (12 and 24 days) over 4 km of the valley. Cube, truth and quicklooks exist; on
    moving ice the velocity errors are small and coverage complete, and the window centres sit where the simulator
    looked (dem: auto through the local GLO-30 tiles); a second run reuses the stack and adds nothing, and its
    comparison run on dem: none places windows hundreds of metres off."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--dates", "3", "--area-km", "4"]
    result = runner.invoke(app, [*args, "--no-compare"])
    assert result.exit_code == 0, result.output
    assert (out / "cube.zarr").is_dir() and (out / "truth.zarr").is_dir() and (out / "job.yaml").is_file()
    assert len(list(out.rglob("*.png"))) >= 2
    cube = xr.open_zarr(out / "cube.zarr")
    assert cube.sizes["mid_date"] == 2
    accuracy_lines = [line for line in result.output.splitlines() if line.startswith("accuracy:")]
    assert len(accuracy_lines) == 2
    from offset_cube.simulate.demo import accuracy

    for layer in accuracy(out / "cube.zarr", out / "truth.zarr"):
        assert layer.coverage > 0.9, layer.line()
        assert layer.median_vx_error < 8 and layer.median_vy_error < 8, layer.line()
    geolocation = [line for line in result.output.splitlines() if line.startswith("geolocation:")]
    assert len(geolocation) == 2 and all(worst_m(line) < 1.0 for line in geolocation), geolocation
    assert not any(line.startswith("dem none") for line in result.output.splitlines())
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "using the simulated stack" in again.output
    assert "run:        no new pairs: all 2 pair(s) are already in the cube" in again.stdout
    assert xr.open_zarr(out / "cube.zarr").sizes["mid_date"] == 2
    assert xr.open_zarr(out / "dem-none" / "cube.zarr").sizes["mid_date"] == 2
    # job.yaml and simulation.json name no absolute path: the folder moves, and its job still finds all of it
    assert str(tmp_path) not in (out / "job.yaml").read_text() + (out / "simulation.json").read_text()
    moved = out.rename(tmp_path / "moved")
    plan = runner.invoke(app, ["plan", "--config", str(moved / "job.yaml"), "--json"])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout) == [] and "all 2 pair(s) are already in the cube" in plan.stderr
    flat = [line for line in again.output.splitlines() if line.startswith("dem none geolocation:")]
    assert len(flat) == 2 and all(worst_m(line) > 300 for line in flat), flat
    dem_none = runner.invoke(app, ["plan", "--config", str(moved / "dem-none" / "job.yaml"), "--json"])
    assert dem_none.exit_code == 0 and json.loads(dem_none.stdout) == [], dem_none.output
