"""The simulated stack with relief: valley walls ≥ 1500 m, rendered through the terrain; the built-in engine on
``dem: auto`` (the simulator's DEM served as local GLO-30 tiles with a geoid grid) predicts the imposed geometry
and places its windows where the simulator looked; on ``dem: none`` it does measurably worse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

from offset_cube.builtin.engine import run_builtin
from offset_cube.config import job_from_dict
from offset_cube.simulate import DEMO_TEMPLATE
from offset_cube.simulate.demo import demo_job, describe, geolocation_errors
from offset_cube.simulate.stack import SimulatedStack, SimulationConfig, simulate_stack
from tests.test_builtin_engine import TRACKING, make_inputs


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> SimulatedStack:
    config = SimulationConfig(template=DEMO_TEMPLATE, dates=2, area_m=(4000.0, 4000.0), margin_m=800.0, seed=5)
    return simulate_stack(config, tmp_path_factory.mktemp("relief"))


def test_the_valley_walls_rise_1500_m_above_the_glacier(stack: SimulatedStack) -> None:
    assert stack.dem is not None
    with rasterio.open(stack.dem) as dataset:
        heights = dataset.read(1)
    assert float(heights.max()) - stack.height_m >= 1500.0
    doc = json.loads((stack.folder / "simulation.json").read_text())
    assert doc["relief"] == "valley" and stack.folder / doc["dem"] == stack.dem  # relative: the folder can move


@pytest.mark.slow
def test_dem_auto_places_windows_where_the_simulator_looked_and_dem_none_does_not(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    doc = describe(stack)
    results = {}
    for dem in ("auto", "none"):
        raw = demo_job(doc, dem=dem)  # paths relative to the stack's folder
        raw.update(tracking=TRACKING, storage={"out": str(tmp_path / dem)})
        job = job_from_dict(raw, base=stack.folder)
        path = run_builtin(make_inputs(stack, 0, 1, job, tmp_path / dem / "pairs"), job)
        results[dem] = xr.open_zarr(path, consolidated=False).load()
        (geolocation,) = geolocation_errors(doc, tmp_path / dem / "pairs")
        results[dem].attrs["geolocation_max_m"] = geolocation.max_m
        results[dem].attrs["geolocation_median_m"] = geolocation.median_m
    auto, none = results["auto"], results["none"]
    true_az, true_rg = stack.true_offsets(0, 1, *np.meshgrid(auto.line.values, auto.sample.values, indexing="ij"))
    # Through tiles, mosaic and geoid, the geometry is the simulator's to a thousandth of a pixel and a metre.
    assert np.max(np.abs(auto.geometric_range_offset.values - true_rg)) < 1e-3
    assert np.max(np.abs(auto.geometric_azimuth_offset.values - true_az)) < 1e-3
    assert auto.attrs["geolocation_max_m"] < 1.0
    assert "auto (Copernicus GLO-30" in auto.attrs["processing_parameters"]
    # On a constant height the windows land hundreds of metres off on the walls and the prediction is biased.
    assert none.attrs["geolocation_max_m"] > 500.0 and none.attrs["geolocation_median_m"] > 10.0
    _, true_rg = stack.true_offsets(0, 1, *np.meshgrid(none.line.values, none.sample.values, indexing="ij"))
    assert np.max(np.abs(none.geometric_range_offset.values - true_rg)) > 0.02
    assert f"none (constant {stack.height_m:g} m" in none.attrs["processing_parameters"]
