"""Find the ISCE2 installation that runs ``topsApp.py``: from the job's config first, then the environment.

Order: ``isce2.python``, ``isce2.conda_prefix``, ``isce2.isce_home`` (config), then ``ISCE_HOME`` and
``CONDA_PREFIX`` (environment). ``topsApp.py`` lives in ``$ISCE_HOME/applications``. Two layouts of ISCE_HOME are
recognised (ISCE2's README, "Setup Your Environment"; conda-forge isce2-feedstock ``recipe/scripts/activate.sh``):

* conda-forge / pip: ``<prefix>/lib/pythonX.Y/site-packages/isce``, with the python in ``<prefix>/bin``. The
  package does not add the applications to PATH, and topsApp shells out to ``gdal_translate``, so the
  environment's ``bin`` goes first on PATH.
* a source build: ``<install>/packages/isce`` (CMake installs the package as ``packages/isce2`` and links
  ``packages/isce`` to it, ISCE2's ``CMakeLists.txt``) or ``$ISCE_INSTALL_ROOT/isce`` (SCons), a folder holding
  ``components/``. Nothing records the python it was built for: ``isce2.python``, else ``python3`` on PATH; the
  folder above ``isce`` goes on the child's PYTHONPATH so ``import isce`` works in topsApp.

``isce2.pythonpath`` adds folders in front of that. Every layout tried is listed (``doctor`` prints them, and
an error names them). No path is hard-coded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from offset_cube.config import Isce2Config
from offset_cube.errors import EngineError

TOPSAPP = "topsApp.py"
_TAG_RE = re.compile(r"""Tag\(\s*['"]([^'"]+)['"]""")
_VERSION_RE = re.compile(r"""release_version\s*=\s*['"]([^'"]+)['"]""")


class IsceNotFoundError(EngineError):
    """No usable ISCE2 installation was found."""


@dataclass(frozen=True)
class IsceInstallation:
    """Where ISCE2 is and how to call ``topsApp.py``."""

    python: Path
    isce_home: Path
    env_bin: Path | None
    version: str | None
    found_by: str
    layout: str = "conda/pip"
    pythonpath: tuple[Path, ...] = ()
    tried: tuple[str, ...] = ()

    @property
    def topsapp(self) -> Path:
        return self.isce_home / "applications" / TOPSAPP

    def command(self, xml: str, start: str, end: str) -> list[str]:
        """The argument list (never a shell string) that runs topsApp from ``start`` to ``end`` in step mode."""
        return [str(self.python), str(self.topsapp), xml, f"--start={start}", f"--end={end}"]

    def environment(self, omp_num_threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: env ``bin`` and ISCE's applications first on PATH, ISCE_HOME, OpenMP threads."""
        env = dict(os.environ if base is None else base)
        first = [p for p in (self.env_bin, self.isce_home / "applications", self.isce_home / "bin") if p is not None]
        rest = [p for p in env.get("PATH", "").split(os.pathsep) if p]
        env["PATH"] = os.pathsep.join([str(p) for p in first] + [p for p in rest if p not in map(str, first)])
        env["ISCE_HOME"] = str(self.isce_home)
        if self.pythonpath:
            ours = [str(p) for p in self.pythonpath]
            theirs = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in ours]
            env["PYTHONPATH"] = os.pathsep.join(ours + theirs)
        # OMP_NUM_THREADS sets DenseAmpcor's process count (ISCE2 ``DenseAmpcor.py``) and the OpenMP threads of
        # topo/geozero.
        env["OMP_NUM_THREADS"] = str(omp_num_threads)
        env["PYTHONUNBUFFERED"] = "1"  # so log lines stream as they are printed
        return env

    def describe(self) -> str:
        version = self.version or "unknown version"
        return (
            f"ISCE2 {version} at {self.isce_home} ({self.layout} layout; python {self.python}; "
            f"found by {self.found_by})"
        )


def discover_isce(config: Isce2Config, environ: Mapping[str, str] | None = None) -> IsceInstallation:
    """The installation named by ``config``, else by ``ISCE_HOME``/``CONDA_PREFIX``; :class:`IsceNotFoundError`."""
    env = os.environ if environ is None else environ
    install = _discover(config, env)
    if config.pythonpath:
        install = replace(install, pythonpath=(*config.pythonpath, *install.pythonpath))
    return install


def _discover(config: Isce2Config, env: Mapping[str, str]) -> IsceInstallation:
    if config.python is not None:
        return _from_python(config.python, config.isce_home, "isce2.python", env)
    if config.conda_prefix is not None:
        return _from_prefix(config.conda_prefix, config.isce_home, "isce2.conda_prefix")
    if config.isce_home is not None:
        return _from_isce_home(config.isce_home, "isce2.isce_home", env)
    if env.get("ISCE_HOME"):
        return _from_isce_home(Path(env["ISCE_HOME"]), "the ISCE_HOME environment variable", env)
    prefix = env.get("CONDA_PREFIX")
    if prefix and _isce_home_in_prefix(Path(prefix)) is not None:
        return _from_prefix(Path(prefix), None, "the active conda environment (CONDA_PREFIX)")
    conda = f"CONDA_PREFIX {prefix} holds no lib/python*/site-packages/isce" if prefix else "CONDA_PREFIX unset"
    raise IsceNotFoundError(
        "no ISCE2 installation found (tried: isce2.python, isce2.conda_prefix, isce2.isce_home unset; ISCE_HOME "
        f"unset; {conda}): set isce2.python (the ISCE2 environment's python), isce2.conda_prefix or "
        "isce2.isce_home in the job, or ISCE_HOME in the environment (e.g. after `conda activate isce2`). "
        "ISCE2 installs with `conda install -c conda-forge isce2`, or from source (CMake: ISCE_HOME = "
        "<install>/packages/isce)."
    )


def probe_version(install: IsceInstallation, timeout_s: float = 120.0) -> str:
    """Import ``isce`` with the installation's python (proves the environment works); its ``__version__``."""
    code = "import isce; print('ISCE_VERSION=' + str(isce.__version__))"
    try:
        done = subprocess.run(
            [str(install.python), "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=install.environment(1),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise IsceNotFoundError(f"{install.python} could not be run to import isce: {err}") from err
    for line in done.stdout.splitlines():
        if line.startswith("ISCE_VERSION="):
            return line.removeprefix("ISCE_VERSION=").strip()
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    raise IsceNotFoundError(f"{install.python} cannot import isce (exit {done.returncode}): {' | '.join(tail)}")


def _from_python(python: Path, isce_home: Path | None, found_by: str, env: Mapping[str, str]) -> IsceInstallation:
    if not python.is_file():
        raise IsceNotFoundError(f"{found_by} {python} does not exist; give the ISCE2 environment's python")
    prefix = python.parent.parent
    tried = []
    home = isce_home or _isce_home_in_prefix(prefix)
    if isce_home is None:
        outcome = "found" if home is not None else "not found"
        tried.append(f"conda/pip: {prefix}/lib/python*/site-packages/isce beside {found_by}: {outcome}")
    if home is None and env.get("ISCE_HOME"):
        home = Path(env["ISCE_HOME"])
        tried.append(f"the ISCE_HOME environment variable: {home}")
    if home is None:
        raise IsceNotFoundError(
            f"{found_by} {python} is set but no isce package was found beside it "
            f"({prefix}/lib/python*/site-packages/isce) and ISCE_HOME is unset; set isce2.isce_home"
        )
    return _installation(python, home, python.parent, found_by, tried)


def _from_prefix(prefix: Path, isce_home: Path | None, found_by: str) -> IsceInstallation:
    python = _python_in(prefix)
    if python is None:
        raise IsceNotFoundError(f"{found_by} {prefix} has no bin/python3 or bin/python; is it a conda environment?")
    home = isce_home or _isce_home_in_prefix(prefix)
    if home is None:
        raise IsceNotFoundError(
            f"{found_by} {prefix} holds no isce package (lib/python*/site-packages/isce); "
            "install it there with `conda install -c conda-forge isce2`"
        )
    return _installation(python, home, prefix / "bin", found_by, [f"conda/pip: {home}: found"])


def _from_isce_home(isce_home: Path, found_by: str, env: Mapping[str, str]) -> IsceInstallation:
    """The python for an ISCE_HOME of either layout (module docstring)."""
    home = isce_home.expanduser().absolute()
    tried = []
    prefix = _prefix_of_isce_home(home)
    python = _python_in(prefix) if prefix is not None else None
    if prefix is None:
        tried.append(f"conda/pip <prefix>/lib/pythonX.Y/site-packages/isce: {home} is not inside one")
    else:
        tried.append(f"conda/pip prefix {prefix}: " + (f"python {python}" if python else "no bin/python3 there"))
    if python is None and _is_source_tree(home):
        found = shutil.which("python3", path=env.get("PATH", ""))
        python = Path(found) if found else None
        outcome = f"python3 on PATH {python}" if python else "no python3 on PATH"
        tried.append(f"source build {home.parent}/{home.name} (components/ inside): {outcome}")
    elif python is None:
        tried.append(f"source build <install>/packages/isce or <root>/isce: no {home}/components")
    if python is None:
        raise IsceNotFoundError(
            f"{found_by} {home} is set but the python that goes with it was not found (tried: {'; '.join(tried)}); "
            "set isce2.python"
        )
    return _installation(python, home, python.parent, found_by, tried)


def _installation(
    python: Path, isce_home: Path, env_bin: Path | None, found_by: str, tried: list[str]
) -> IsceInstallation:
    home = isce_home.expanduser().absolute()
    topsapp = home / "applications" / TOPSAPP
    if not topsapp.is_file():
        raise IsceNotFoundError(
            f"{found_by}: {topsapp} does not exist; ISCE_HOME must be the installed `isce` package folder "
            "(the one holding applications/topsApp.py)"
        )
    source = _prefix_of_isce_home(home) is None and _is_source_tree(home)
    return IsceInstallation(
        python=python.absolute(),
        isce_home=home,
        env_bin=env_bin.absolute() if env_bin is not None else None,
        version=read_version(home),
        found_by=found_by,
        layout="source build" if source else "conda/pip",
        # the folder holding `isce` (CMake: <install>/packages), what ISCE2's README puts on PYTHONPATH
        pythonpath=(home.parent,) if source else (),
        tried=tuple(tried),
    )


def _is_source_tree(isce_home: Path) -> bool:
    """An ``isce`` package folder as a source build installs it (``components/`` inside, as ISCE2's README lays
    out ``$ISCE_HOME``)."""
    return (isce_home / "components").is_dir() and (isce_home / "applications" / TOPSAPP).is_file()


def read_version(isce_home: Path) -> str | None:
    """ISCE's release from ``release_history.py`` (what ``isce.__version__`` returns), without importing it."""
    try:
        text = (isce_home / "release_history.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _VERSION_RE.search(text)
    if match:
        return match.group(1)
    tags = _TAG_RE.findall(text)
    return tags[-1] if tags else None


def _isce_home_in_prefix(prefix: Path) -> Path | None:
    for candidate in sorted(prefix.glob("lib/python3*/site-packages/isce"), reverse=True):
        if (candidate / "applications" / TOPSAPP).is_file():
            return candidate
    return None


def _prefix_of_isce_home(isce_home: Path) -> Path | None:
    """``<prefix>`` of ``<prefix>/lib/pythonX.Y/site-packages/isce``; None for other layouts."""
    parts = isce_home.expanduser().absolute().parts
    if len(parts) >= 5 and parts[-2] == "site-packages" and parts[-3].startswith("python") and parts[-4] == "lib":
        return Path(*parts[:-4])
    return None


def _python_in(prefix: Path) -> Path | None:
    for name in ("python3", "python"):
        candidate = prefix / "bin" / name
        if candidate.is_file():
            return candidate
    return None
