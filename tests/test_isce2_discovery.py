"""Finding ISCE2: config first (python, conda prefix, ISCE_HOME), then the environment; clear errors otherwise."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from offset_cube.config import Isce2Config
from offset_cube.isce2.discovery import IsceNotFoundError, discover_isce, probe_version, read_version
from tests.isce2_support import FAKE_ISCE_HOME, cmake_install, python_on_path


def conda_env(tmp_path: Path) -> Path:
    """A conda-like prefix: bin/python3 and lib/python3.11/site-packages/isce/applications/topsApp.py."""
    prefix = tmp_path / "envs" / "isce2"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python3").symlink_to(sys.executable)
    shutil.copytree(FAKE_ISCE_HOME, prefix / "lib" / "python3.11" / "site-packages" / "isce")
    return prefix


def test_conda_prefix_from_config(tmp_path: Path) -> None:
    prefix = conda_env(tmp_path)
    install = discover_isce(Isce2Config(conda_prefix=prefix), environ={})
    assert install.python == prefix / "bin" / "python3"
    assert install.isce_home == prefix / "lib" / "python3.11" / "site-packages" / "isce"
    assert install.version == "2.6.5"
    assert install.found_by == "isce2.conda_prefix"
    env = install.environment(3, base={"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[:3] == [
        str(prefix / "bin"),  # gdal_translate of the env comes first
        str(install.isce_home / "applications"),
        str(install.isce_home / "bin"),
    ]
    assert env["PATH"].endswith("/usr/bin:/bin")
    assert (env["ISCE_HOME"], env["OMP_NUM_THREADS"]) == (str(install.isce_home), "3")
    command = install.command("/w/topsApp.xml", "startup", "geocodeoffsets")
    assert command == [
        str(prefix / "bin" / "python3"),
        str(install.isce_home / "applications" / "topsApp.py"),
        "/w/topsApp.xml",
        "--start=startup",
        "--end=geocodeoffsets",
    ]


def test_python_and_isce_home_routes(tmp_path: Path) -> None:
    prefix = conda_env(tmp_path)
    by_python = discover_isce(Isce2Config(python=prefix / "bin" / "python3"), environ={})
    assert by_python.isce_home.name == "isce" and by_python.found_by == "isce2.python"
    home = prefix / "lib" / "python3.11" / "site-packages" / "isce"
    by_home = discover_isce(Isce2Config(isce_home=home), environ={})
    assert by_home.python == prefix / "bin" / "python3"
    by_env = discover_isce(Isce2Config(), environ={"ISCE_HOME": str(home)})
    assert by_env.found_by == "the ISCE_HOME environment variable"
    by_conda = discover_isce(Isce2Config(), environ={"CONDA_PREFIX": str(prefix)})
    assert by_conda.env_bin == prefix / "bin"
    explicit = discover_isce(Isce2Config(python=Path(sys.executable), isce_home=FAKE_ISCE_HOME), environ={})
    assert explicit.isce_home == FAKE_ISCE_HOME


def test_nothing_found_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IsceNotFoundError, match=r"no ISCE2 installation found \(tried: .*\): set isce2\.python") as e:
        discover_isce(Isce2Config(), environ={"CONDA_PREFIX": str(tmp_path)})
    assert f"CONDA_PREFIX {tmp_path} holds no lib/python*/site-packages/isce" in str(e.value)
    with pytest.raises(IsceNotFoundError, match=r"isce2\.python .*missing.* does not exist"):
        discover_isce(Isce2Config(python=tmp_path / "missing" / "python"), environ={})
    with pytest.raises(IsceNotFoundError, match="holds no isce package"):
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "python3").symlink_to(sys.executable)
        discover_isce(Isce2Config(conda_prefix=tmp_path), environ={})
    with pytest.raises(IsceNotFoundError, match="applications/topsApp.py does not exist"):
        discover_isce(Isce2Config(python=Path(sys.executable), isce_home=tmp_path), environ={})


def test_version_probe_imports_isce_with_the_env_python(monkeypatch: pytest.MonkeyPatch) -> None:
    install = discover_isce(Isce2Config(python=Path(sys.executable), isce_home=FAKE_ISCE_HOME), environ={})
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with pytest.raises(IsceNotFoundError, match="cannot import isce"):
        probe_version(install)  # the stand-in is not on this python's path
    monkeypatch.setenv("PYTHONPATH", str(FAKE_ISCE_HOME.parent))
    assert probe_version(install) == "2.6.5"
    assert read_version(FAKE_ISCE_HOME) == "2.6.5"


def test_cmake_source_build_is_found_from_isce_home_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ISCE_HOME = <install>/packages/isce (the link CMake makes to isce2) and a python3 on PATH: found, with
    <install>/packages on the child's PYTHONPATH so that `import isce` works there."""
    home = cmake_install(tmp_path / "install")
    python = python_on_path(tmp_path / "venv" / "bin")
    install = discover_isce(Isce2Config(), environ={"ISCE_HOME": str(home), "PATH": str(python.parent)})
    assert (install.python, install.isce_home, install.layout) == (python, home, "source build")
    assert install.topsapp == home / "applications" / "topsApp.py" and install.version == "2.6.5"
    assert install.pythonpath == (tmp_path / "install" / "packages",)
    assert install.tried == (
        f"conda/pip <prefix>/lib/pythonX.Y/site-packages/isce: {home} is not inside one",
        f"source build {home} (components/ inside): python3 on PATH {python}",
    )
    env = install.environment(2, base={"PATH": "/usr/bin", "PYTHONPATH": "/theirs"})
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "install" / "packages"), "/theirs"])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert probe_version(install) == "2.6.5"  # imports isce through the packages/isce link
    job_paths = Isce2Config(isce_home=home, pythonpath=[tmp_path / "extra"])
    with_extra = discover_isce(job_paths, environ={"PATH": str(python.parent)})
    assert with_extra.pythonpath == (tmp_path / "extra", tmp_path / "install" / "packages")
    assert with_extra.found_by == "isce2.isce_home"
    explicit = discover_isce(Isce2Config(python=Path(sys.executable), isce_home=home), environ={})
    assert explicit.layout == "source build" and explicit.pythonpath == (tmp_path / "install" / "packages",)


def test_isce_home_that_fits_no_layout_names_each_layout_tried(tmp_path: Path) -> None:
    home = cmake_install(tmp_path / "install")
    with pytest.raises(IsceNotFoundError) as caught:
        discover_isce(Isce2Config(), environ={"ISCE_HOME": str(home)})  # no python3 on PATH
    message = str(caught.value)
    assert f"the ISCE_HOME environment variable {home} is set but the python that goes with it was not found" in message
    assert "conda/pip <prefix>/lib/pythonX.Y/site-packages/isce: " in message
    assert "(components/ inside): no python3 on PATH" in message and message.endswith("set isce2.python")
    bare = tmp_path / "bare" / "isce"
    shutil.copytree(FAKE_ISCE_HOME, bare)
    with pytest.raises(
        IsceNotFoundError, match=f"source build <install>/packages/isce or <root>/isce: no {bare}/components"
    ):
        discover_isce(Isce2Config(isce_home=bare), environ={"PATH": str(python_on_path(tmp_path / "bin").parent)})


def test_pythonpath_field_accepts_a_colon_list() -> None:
    config = Isce2Config.model_validate({"pythonpath": "/a/packages::/b"})
    assert config.pythonpath == [Path("/a/packages"), Path("/b")]
