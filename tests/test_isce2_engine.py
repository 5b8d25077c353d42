"""The ISCE2 engine end to end with the stand-in topsApp (tests/fake_isce/, a test double that parses the XML
and writes ISCE-format outputs): the common per-pair result, failures judged by outputs, resuming from
PICKLE, clean restarts when inputs change, and the cleanup policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from offset_cube.config import JobConfig
from offset_cube.errors import EngineError
from offset_cube.isce2.engine import reference_geometry, run_isce2
from offset_cube.isce2.render import read_render_record, render_pair_inputs
from offset_cube.isce2.topsapp import TOPSAPP_STEPS, TopsAppError
from offset_cube.result import read_pair_result
from offset_cube.stages import PairInputs
from tests.isce2_support import bc_inputs, cmake_install, fake_topsapp_module, isce2_job, python_on_path


def calls(pair_dir: Path) -> list[list[str]]:
    path = pair_dir / "fake_topsapp_calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []


def prepared(tmp_path: Path, **sections: object) -> tuple[JobConfig, PairInputs]:
    job = isce2_job(tmp_path, **sections)  # type: ignore[arg-type]
    inputs = bc_inputs(job)
    render_pair_inputs(inputs, job)
    return job, inputs


def test_engine_writes_the_common_result(tmp_path: Path) -> None:
    job, inputs = prepared(tmp_path)
    steps: list[str] = []
    lines: list[str] = []
    path = run_isce2(inputs, job, on_line=lines.append, on_step=lambda _i, name: steps.append(name))
    assert path == inputs.pair_dir / "offsets.zarr"
    assert steps == list(TOPSAPP_STEPS) and "Running step denseoffsets" in lines
    ds = read_pair_result(path).load()
    assert ds.attrs["engine"] == "isce2" and ds.attrs["grid"] == "geographic"
    assert (ds.attrs["pair_id"], ds.attrs["track"]) == ("20250406_20250418_t108", 108)
    assert ds.attrs["direction"] == "ASCENDING"
    assert ds.attrs["polarization"] == "VV" and ds.attrs["orbit_type"] == "annotation"
    assert ds.attrs["dt_days"] == pytest.approx(12.0, abs=1e-3)
    parameters = json.loads(ds.attrs["processing_parameters"])
    assert parameters["isce_version"] == "2.6.5" and parameters["swaths"] == [2]
    assert parameters["bursts"] == {"IW2": [3, 4, 5]}  # of 9: the bursts holding the area (test_isce2_bursts)
    assert parameters["search"] == [20, 10] and parameters["offsets_file"] == "merged/dense_offsets.bil.geo"
    # what topsApp really ran: amplitude correlation (always) at the rendered oversampling
    assert (parameters["mode"], parameters["oversampling"]) == ("amplitude", job.tracking.oversampling)
    rendered = (inputs.pair_dir / "topsApp.xml").read_text()
    assert f'<property name="Ampcor oversampling factor">{parameters["oversampling"]}</property>' in rendered
    # values: the stand-in's field at each sample's latitude/longitude (sample centres), NaN where no data
    fake = fake_topsapp_module()
    box = [51.78, 52.12, -128.22, -127.68]  # area + isce2.geocode_margin_deg, S N W E
    azimuth, rng = fake.truth(ds["latitude"].values, ds["longitude"].values, box)
    valid = ds["snr"].notnull().values
    assert valid.sum() > 0.7 * valid.size
    assert np.allclose(ds["azimuth_offset"].values[valid], azimuth[valid], atol=1e-5)
    assert np.allclose(ds["range_offset"].values[valid], rng[valid], atol=1e-5)
    west = ds["longitude"].values < box[2] + 0.15 * (box[3] - box[2])
    assert ds["azimuth_offset"].isnull().values[west].all()  # 0.0 fill outside the swath is masked
    assert float(ds["cov_rg"].max()) == pytest.approx(0.01) and float(ds["cov_az"].max()) == pytest.approx(0.02)
    assert 35.8 < float(ds["incidence_angle"].min()) < float(ds["incidence_angle"].max()) < 42.0
    assert float(ds["heading"].mean()) == pytest.approx(-10.1, abs=0.2)
    # the reference orbit's look geometry on the ground topsApp geocoded onto: the job's flat 100 m DEM
    looks = reference_geometry(inputs, read_render_record(inputs.pair_dir))
    expected = looks.at(ds["latitude"].values, ds["longitude"].values, 100.0)
    for name in ("incidence_angle", "heading", "azimuth_spacing"):
        assert np.allclose(ds[name].values, expected[name], atol=1e-4), name
    assert ds["latitude"].dtype == np.float64 and ds["azimuth_offset"].dtype == np.float32


def test_exit_zero_without_outputs_is_a_clear_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, inputs = prepared(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "no-outputs")
    with pytest.raises(TopsAppError) as caught:
        run_isce2(inputs, job)
    message = str(caught.value)
    assert message.startswith("track-108 20250406→20250418: expected output missing or empty: ")
    assert "merged/dense_offsets.bil or merged/dense_offsets.bip" in message
    assert "exited with status" not in message  # it exited 0: only the outputs tell
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "ok")
    run_isce2(inputs, job)
    assert calls(inputs.pair_dir)[-1][1] == "--start=startup"  # nothing of the useless run was resumed


def test_retry_resumes_from_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, inputs = prepared(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "die-at:denseoffsets")
    with pytest.raises(TopsAppError, match="exited with status 1") as caught:
        run_isce2(inputs, job)
    assert "RuntimeError: fake topsApp failure in step denseoffsets" in str(caught.value)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "ok")
    steps: list[str] = []
    run_isce2(inputs, job, on_step=lambda _i, name: steps.append(name))
    assert calls(inputs.pair_dir)[-1][1:] == ["--start=denseoffsets", "--end=geocodeoffsets"]
    assert steps == ["denseoffsets", "filteroffsets", "geocodeoffsets"]
    assert read_pair_result(inputs.pair_dir / "offsets.zarr").attrs["engine"] == "isce2"
    run_isce2(inputs, job)  # every step done with the same inputs: topsApp is not started again
    assert len(calls(inputs.pair_dir)) == 2


def test_changed_inputs_start_from_a_clean_folder(tmp_path: Path) -> None:
    job, inputs = prepared(tmp_path)
    run_isce2(inputs, job)
    stale = inputs.pair_dir / "merged" / "reference.slc.full"
    stale.write_bytes(b"stale")  # runDenseOffsets.py reuses an existing one (it translates only a missing one)
    changed = job.model_copy(update={"tracking": job.tracking.model_copy(update={"skip": (16, 4)})})
    render_pair_inputs(inputs, changed)
    run_isce2(inputs, changed)
    assert calls(inputs.pair_dir)[-1][1] == "--start=startup"
    assert not stale.exists()


def test_default_cleanup_leaves_only_what_a_rerun_and_a_user_need(tmp_path: Path) -> None:
    job, inputs = prepared(tmp_path)
    assert job.cleanup.pair_files == "minimal"  # the default
    first = read_pair_result(run_isce2(inputs, job)).load()
    pair_dir = inputs.pair_dir
    inputs_and_log = {"topsApp.xml", "reference.xml", "secondary.xml", "topsApp.render.json", "topsApp.log"}
    state, stand_in = "topsApp.state.json", "fake_topsapp_calls.jsonl"  # the inputs' fingerprint; the test double's
    assert {p.name for p in pair_dir.iterdir()} == {*inputs_and_log, state, stand_in, "merged", "offsets.zarr"}
    geocoded = [
        f"{name}.bil.geo" for name in ("dense_offsets", "dense_offsets_snr", "dense_offsets_cov", "filt_dense_offsets")
    ]
    kept = {f"{g}{extension}" for g in geocoded for extension in ("", ".xml", ".vrt")}
    assert {p.name for p in (pair_dir / "merged").iterdir()} == kept
    # a rerun with the same inputs reads ISCE's kept offsets again instead of starting topsApp
    again = read_pair_result(run_isce2(inputs, job)).load()
    assert len(calls(pair_dir)) == 1
    assert np.array_equal(first["azimuth_offset"].values, again["azimuth_offset"].values, equal_nan=True)
    # changed inputs start from a clean folder, as always
    changed = job.model_copy(update={"tracking": job.tracking.model_copy(update={"skip": (16, 4)})})
    render_pair_inputs(inputs, changed)
    run_isce2(inputs, changed)
    assert len(calls(pair_dir)) == 2 and calls(pair_dir)[-1][1] == "--start=startup"


def test_keep_leaves_topsapps_working_files(tmp_path: Path) -> None:
    job, inputs = prepared(tmp_path, cleanup={"pair_files": "keep"})
    run_isce2(inputs, job)
    left = {p.name for p in inputs.pair_dir.iterdir()}
    assert {"PICKLE", "merged", "reference", "secondary", "topsApp.state.json", "offsets.zarr"} <= left
    assert (inputs.pair_dir / "merged" / "dense_offsets.bil").is_file()


def test_gpu_outputs_are_read_with_their_band_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, inputs = prepared(tmp_path, isce2={"use_gpu": True})
    monkeypatch.setenv("FAKE_TOPSAPP_GPU", "1")
    ds = read_pair_result(run_isce2(inputs, job)).load()
    parameters = json.loads(ds.attrs["processing_parameters"])
    assert parameters["gpu_output"] is True and parameters["offsets_file"] == "merged/dense_offsets.bip.geo"
    assert float(ds["cov_az"].max()) == pytest.approx(0.02) and float(ds["cov_rg"].max()) == pytest.approx(0.01)


def test_filtered_offsets_when_an_snr_threshold_is_set(tmp_path: Path) -> None:
    job, inputs = prepared(tmp_path, isce2={"snr_threshold_factor": 5.0})
    ds = read_pair_result(run_isce2(inputs, job))
    assert json.loads(ds.attrs["processing_parameters"])["offsets_file"] == "merged/filt_dense_offsets.bil.geo"


def test_engine_needs_the_render_stage(tmp_path: Path) -> None:
    job = isce2_job(tmp_path)
    with pytest.raises(EngineError, match="render stage must run first"):
        run_isce2(bc_inputs(job), job)


def test_source_build_runs_with_its_pythonpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISCE2 found only by ISCE_HOME = <install>/packages/isce: topsApp's child gets <install>/packages (after the
    job's isce2.pythonpath) on PYTHONPATH, and its `import isce` works without anything exported by the shell."""
    home = cmake_install(tmp_path / "install")
    python = python_on_path(tmp_path / "venv" / "bin")
    monkeypatch.setenv("PATH", f"{python.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("ISCE_HOME", str(home))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    extra = tmp_path / "site"
    job, inputs = prepared(tmp_path, isce2={"python": None, "isce_home": None, "pythonpath": [str(extra)]})
    ds = read_pair_result(run_isce2(inputs, job))
    assert json.loads(ds.attrs["processing_parameters"])["topsapp"] == str(home / "applications" / "topsApp.py")
    call = json.loads((inputs.pair_dir / "fake_topsapp_calls.jsonl").read_text().splitlines()[-1])
    assert call["pythonpath"] == os.pathsep.join([str(extra), str(tmp_path / "install" / "packages")])
    assert call["isce"] == "2.6.5"
