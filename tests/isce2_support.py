"""Shared set-up for the ISCE2 engine tests: the stand-in topsApp, a real S1 pair's annotation, a small DEM.

The pair is the real repeat pair in tests/data/safe/hyp3-isce2/slc/ (S1A track 108 ascending, 2025-04-06 and
2025-04-18, British Columbia coast; VV annotation for IW1-3, no measurement pixels). The area lies inside IW2.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from offset_cube.config import FlightDirection, JobConfig, job_from_dict
from offset_cube.isce_raster import write_isce_raster
from offset_cube.planning import Pair, plan_pairs
from offset_cube.scenes import Scene
from offset_cube.stages import OrbitFile, PairInputs
from tests.conftest import data_path

FAKE_ISCE_HOME = Path(__file__).resolve().parent / "fake_isce" / "isce"
FAKE_TOPSAPP = FAKE_ISCE_HOME / "applications" / "topsApp.py"
SLC = data_path("safe/hyp3-isce2/slc")
BC_REFERENCE = SLC / "S1A_IW_SLC__1SDV_20250406T022008_20250406T022035_058630_07421F_93A7.SAFE"
BC_SECONDARY = SLC / "S1A_IW_SLC__1SDV_20250418T022008_20250418T022035_058805_074946_C7D4.SAFE"
BC_AREA = "POLYGON((-128.2 51.8, -127.7 51.8, -127.7 52.1, -128.2 52.1, -128.2 51.8))"
#: DEM span (S, N, W, E) comfortably around the area plus every margin.
BC_DEM_BOX = (51.5, 52.4, -128.6, -127.3)


def cmake_install(root: Path) -> Path:
    """A stand-in ISCE2 laid out as its CMake install does: ``<root>/packages/isce2`` (the package, with
    ``components/``) and the link ``packages/isce -> isce2`` (ISCE2's CMakeLists.txt); returns that link."""
    package = root / "packages" / "isce2"
    shutil.copytree(FAKE_ISCE_HOME, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "components").mkdir()
    (root / "packages" / "isce").symlink_to("isce2")
    return root / "packages" / "isce"


def python_on_path(bin_dir: Path) -> Path:
    """``bin_dir/python3`` running this interpreter (a script, not a link: a linked venv python loses its venv)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python3"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def fake_topsapp_module() -> ModuleType:
    """The stand-in topsApp imported as a module (to reuse its truth field in assertions)."""
    spec = importlib.util.spec_from_file_location("fake_topsapp", FAKE_TOPSAPP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_isce_dem(path: Path, box: tuple[float, float, float, float] = BC_DEM_BOX, step: float = 0.01) -> Path:
    """A flat ISCE DEM (float32, 100 m) with sample-centre coordinates over ``box`` (S, N, W, E)."""
    south, north, west, east = box
    lines, samples = round((north - south) / (step / 2)) + 1, round((east - west) / step) + 1
    heights = np.full((lines, samples), 100.0, np.float32)
    return write_isce_raster(
        path, [heights], scheme="BIP", x_start=west, x_delta=step, y_start=north, y_delta=-step / 2, geographic=True
    )


def isce2_job(tmp_path: Path, dem: Path | dict[str, Any] | None = None, **sections: Any) -> JobConfig:
    """An isce2 job over the BC area that runs the stand-in topsApp with this interpreter (``dem``: a DEM file,
    or the job's ``dem`` section; default a flat ISCE DEM)."""
    raw: dict[str, Any] = {
        "name": "bc-test",
        "area": BC_AREA,
        "start": "2025-04-01",
        "end": "2025-04-30",
        "engine": "isce2",
        "tracking": {"window": [64, 16], "skip": [32, 8], "search": [20, 10], "oversampling": 32},
        "storage": {"out": str(tmp_path / "out")},
        "isce2": {
            "python": sys.executable,
            "isce_home": str(FAKE_ISCE_HOME),
        },
        "dem": dem if isinstance(dem, dict) else str(dem or write_isce_dem(tmp_path / "dem" / "bc.dem")),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return job_from_dict(raw)


def bc_scenes(local: bool = True) -> list[Scene]:
    return [
        Scene.from_fields(
            path.name.removesuffix(".SAFE"),
            flight_direction=FlightDirection.ASCENDING,
            local_path=path if local else None,
        )
        for path in (BC_REFERENCE, BC_SECONDARY)
    ]


def bc_pair(job: JobConfig) -> Pair:
    plan = plan_pairs(job, bc_scenes())
    assert len(plan.pairs) == 1, plan
    return plan.pairs[0]


def bc_inputs(job: JobConfig, orbits: list[OrbitFile] | None = None) -> PairInputs:
    pair = bc_pair(job)
    pair_dir = job.storage.pairs_dir / pair.pair_id
    pair_dir.mkdir(parents=True, exist_ok=True)
    ref_orbits = orbits or [OrbitFile(product_id=i, orbit_type="annotation") for i in pair.reference.product_ids]
    sec_orbits = orbits or [OrbitFile(product_id=i, orbit_type="annotation") for i in pair.secondary.product_ids]
    return PairInputs(
        pair=pair,
        pair_dir=pair_dir,
        reference_safes=(BC_REFERENCE,),
        secondary_safes=(BC_SECONDARY,),
        reference_orbits=tuple(ref_orbits),
        secondary_orbits=tuple(sec_orbits),
    )


def alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def kill_stand_in(pair_dir: Path) -> None:
    """Test clean-up: SIGKILL a hanging stand-in topsApp and its worker, even when the code under test failed."""
    pids_file = pair_dir / "fake_topsapp_pids.json"
    if not pids_file.is_file():
        return
    pids = json.loads(pids_file.read_text())
    for pid in [pids["topsapp"], *pids["workers"]]:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
