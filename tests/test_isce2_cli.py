"""``offset-cube doctor`` and ``offset-cube run --dry-run / --dem`` (ISCE2 engine), through the typer app.
ISCE2 is the stand-in in tests/fake_isce/; scenes come from a local catalog of real SAFE annotations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from lxml import etree
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import ROOT
from tests.isce2_support import (
    BC_AREA,
    BC_REFERENCE,
    BC_SECONDARY,
    FAKE_ISCE_HOME,
    cmake_install,
    python_on_path,
    write_isce_dem,
)
from tests.test_isce2_dem import write_geotiff

runner = CliRunner()


@pytest.fixture
def ready_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in isce importable and a gdal_translate on PATH, as in a working ISCE2 environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gdal_translate").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "gdal_translate").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", str(FAKE_ISCE_HOME.parent))


def test_doctor_reports_what_it_found(ready_env: None) -> None:
    result = runner.invoke(app, ["doctor", "--python", sys.executable, "--isce-home", str(FAKE_ISCE_HOME)])
    assert result.exit_code == 0, result.output
    assert "found by        isce2.python" in result.output
    assert f"topsApp.py      {FAKE_ISCE_HOME}/applications/topsApp.py" in result.output
    assert "version         2.6.5 (release_history.py); import isce: 2.6.5" in result.output
    assert "ok: ISCE2 is ready" in result.output


def test_doctor_explains_the_layouts_it_tried_for_a_source_build(
    ready_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = cmake_install(tmp_path / "install")
    python = python_on_path(tmp_path / "venv" / "bin")
    monkeypatch.setenv("PATH", f"{python.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PYTHONPATH")  # what the source build needs comes from its layout
    result = runner.invoke(app, ["doctor", "--isce-home", str(home)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  layout tried    conda/pip <prefix>/lib/pythonX.Y/site-packages/isce: {home} is not inside one" in lines
    assert f"  layout tried    source build {home} (components/ inside): python3 on PATH {python}" in lines
    assert "  layout          source build" in lines and f"  python          {python}" in lines
    assert f"  PYTHONPATH      {tmp_path / 'install' / 'packages'}" in lines
    assert "version         2.6.5 (release_history.py); import isce: 2.6.5" in result.output


def test_doctor_without_isce_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISCE_HOME", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2
    assert "error: no ISCE2 installation found" in result.output


def test_doctor_flags_an_environment_that_cannot_import_isce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    result = runner.invoke(app, ["doctor", "--python", sys.executable, "--isce-home", str(FAKE_ISCE_HOME)])
    assert result.exit_code == 1
    assert "import isce: FAILED" in result.output and "cannot import isce" in result.output


def job_file(tmp_path: Path, **fields: object) -> Path:
    catalog = tmp_path / "catalog"
    catalog.mkdir(exist_ok=True)
    for safe in (BC_REFERENCE, BC_SECONDARY):
        if not (catalog / safe.name).exists():
            (catalog / safe.name).symlink_to(safe)
    job = {
        "name": "bc",
        "area": BC_AREA,
        "start": "2025-04-01",
        "end": "2025-04-30",
        "engine": "isce2",
        "search": f"local:{catalog}",
        "tracking": {"window": [64, 16], "skip": [32, 8], "search": [20, 10]},
        "storage": {"out": str(tmp_path / "out")},
        **fields,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_dry_run_renders_every_pair_and_runs_nothing(tmp_path: Path) -> None:
    dem = write_isce_dem(tmp_path / "dem" / "bc.dem")
    result = runner.invoke(app, ["run", "-c", str(job_file(tmp_path)), "--dry-run", "--dem", str(dem)])
    assert result.exit_code == 0, result.output
    pair_dir = tmp_path / "out" / "pairs" / "20250406_20250418_t108"
    assert result.stdout.splitlines() == [str(pair_dir)]
    assert {p.name for p in pair_dir.iterdir()} == {
        "topsApp.xml", "reference.xml", "secondary.xml", "topsApp.render.json"
    }  # fmt: skip
    comp = etree.parse(str(pair_dir / "topsApp.xml")).getroot().find("component")
    assert comp is not None
    values = {p.get("name"): p.text for p in comp.findall("property")}
    assert values["swaths"] == "[2]"  # from the reference annotation footprints over the area
    assert values["demFilename"] == str(dem)
    safes = etree.parse(str(pair_dir / "reference.xml")).getroot().find("property[@name='safe']")
    assert safes is not None and safes.text == repr([str(tmp_path / "catalog" / BC_REFERENCE.name)])
    assert not (tmp_path / "out" / "scenes").exists() and not (tmp_path / "out" / "cube.zarr").exists()


def test_geotiff_dem_is_converted_with_a_note(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "bc.tif")
    result = runner.invoke(app, ["run", "-c", str(job_file(tmp_path)), "--dry-run", "--dem", str(tif)])
    assert result.exit_code == 0, result.output
    converted = tmp_path / "out" / "dem" / "bc.dem"
    assert f"DEM converted to {converted}: topsApp expects WGS84 ellipsoid heights" in result.output
    assert Path(f"{converted}.xml").is_file()


@pytest.mark.parametrize(
    ("dem", "message"),
    [
        ("missing.dem", "does not exist"),
        ("small.dem", "but the region of interest (area + isce2.roi_margin_deg) needs"),
    ],
)
def test_bad_dem_fails_before_any_download(tmp_path: Path, dem: str, message: str) -> None:
    write_isce_dem(tmp_path / "small.dem", box=(51.9, 52.0, -128.0, -127.9))
    result = runner.invoke(app, ["run", "-c", str(job_file(tmp_path)), "--dem", str(tmp_path / dem)])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out" / "scenes").exists()


def test_polar_job_with_dem_none_fails_before_searching() -> None:
    """topsApp's own SRTM download (dem: none) cannot serve 70°S; `dem: auto` is the way (test_dem_jobs.py)."""
    result = runner.invoke(app, ["run", "-c", str(ROOT / "examples" / "shirase.yaml"), "--dry-run", "--dem", "none"])
    assert result.exit_code == 2
    assert "dem: none and the area reaches latitude -70.50" in result.output and "SRTM" in result.output


def test_dry_run_needs_the_isce2_engine(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "-c", str(job_file(tmp_path)), "--engine", "builtin", "--dry-run"])
    assert result.exit_code == 2
    assert "--dry-run shows the inputs topsApp would get; it needs --engine isce2" in result.output
