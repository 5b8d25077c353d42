"""The real product, cube and report stages inside the Prefect flow (one session-scoped test server).

Search and download are real (local catalog, as in tests/test_flow.py); the orbit and engine stages are that
module's doubles: the engine double writes a valid per-pair result (offset_cube.result schema) over the area.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import flows.pipeline as pipeline
from offset_cube.config import JobConfig
from offset_cube.cube.lookup import existing_pair_ids
from tests.test_flow import ENGINE_CALLS, FAILING_PAIRS, catalog_job, orbit_double, use_engine_double

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
__all__ = ["catalog_job"]  # a fixture, used by name

PAIRS = ["20200101_20200113_t071", "20200113_20200125_t071", "20200125_20200218_t071"]


@pytest.fixture(autouse=True)
def doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    ENGINE_CALLS.clear()
    FAILING_PAIRS.clear()
    monkeypatch.setattr(pipeline, "fetch_orbit", orbit_double)
    use_engine_double(monkeypatch)


def test_flow_builds_products_quicklooks_cube_and_summary(catalog_job: JobConfig) -> None:
    with_composites = catalog_job.model_copy(update={"composites": ["month"]})
    state = pipeline.flow_for(with_composites)(with_composites, return_state=True)
    assert state.is_completed(), state.message
    with xr.open_zarr(catalog_job.storage.out / "composites-month.zarr") as months:
        assert [str(v) for v in months["period_label"].values] == ["2020-01", "2020-02"]
        assert int(months["count"].isel(time=0).max()) == 3  # all three pairs touch January
    out = catalog_job.storage.out
    cube = catalog_job.storage.cube_path
    assert existing_pair_ids(cube) == set(PAIRS)
    for pair in PAIRS:
        assert (out / "pairs" / pair / "product.zarr" / "zarr.json").is_file()
        assert (out / "pairs" / pair / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "cube_summary.png").read_bytes()[:4] == b"\x89PNG"
    summary = cube_summary_artifact()
    assert all(pair in summary for pair in PAIRS) and "coverage %" in summary
    with xr.open_zarr(cube) as ds:
        assert [str(p) for p in ds["pair_id"].values] == PAIRS
        assert ds.rio.crs.to_epsg() == 32611  # UTM 11N for an area at 117°W, 37.7°N
        assert float(ds["roi_valid_percentage"].min()) > 50
        assert np.all(np.isfinite(ds["v"].isel(mid_date=0, y=ds.sizes["y"] // 2, x=ds.sizes["x"] // 2).values))
        assert '"name":"flow-test"' in ds.attrs["job_config"]
        first_update = ds.attrs["date_updated"]

    again = pipeline.flow_for(catalog_job)(catalog_job, return_state=True)
    assert again.is_completed() and again.message == "no new pairs: all 3 pair(s) are already in the cube"
    assert again.result().message == again.message

    replace = catalog_job.model_copy(update={"product": catalog_job.product.model_copy(update={"replace": True})})
    redo = pipeline.flow_for(replace)(replace, return_state=True)
    assert redo.is_completed(), redo.message
    assert "3 pair(s) completed" in (redo.message or "")
    with xr.open_zarr(cube) as ds:
        assert [str(p) for p in ds["pair_id"].values] == PAIRS
        assert ds.attrs["date_updated"] >= first_update
        assert ds.attrs["date_created"] <= ds.attrs["date_updated"]
    assert dict(ENGINE_CALLS) == dict.fromkeys(PAIRS, 1)  # the replace run reused the cached engine results


def cube_summary_artifact() -> str:
    """The newest ``cube-summary`` markdown artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["cube-summary"])))
    assert found, "no cube-summary artifact"
    return str(max(found, key=lambda a: a.created or 0).data)


def test_pairs_without_valid_cells_are_skipped_with_the_reason_and_never_become_layers(
    catalog_job: JobConfig,
) -> None:
    """An engine result with no usable offset (here every SNR is below the threshold; in the field a search
    window larger than the radar image over the area) gives an empty product: skipped, never a layer."""
    product = catalog_job.product.model_copy(update={"snr_threshold": 100.0})
    job = catalog_job.model_copy(update={"product": product})

    state = pipeline.flow_for(job)(job, return_state=True)

    assert state.is_completed(), state.message
    message = state.message or ""
    assert "0 pair(s) completed, 0 failed, 0 deferred, 3 skipped" in message
    assert message.count("0.00 % of the area's cells are valid, below product.min_coverage_pct = 1 %") == 3
    assert [o.status for o in state.result().outcomes] == ["skipped"] * 3
    assert existing_pair_ids(job.storage.cube_path) == set()
    assert not job.storage.cube_path.exists()
