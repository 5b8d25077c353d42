"""A flow process killed mid-run resumes without redoing finished pairs or downloads.

The run happens in a child process (its own ephemeral Prefect server), killed with SIGKILL once two pairs
have finished. The orbit, product and cube stages are test doubles, and so is the engine inside the real
engine task (it counts its calls in a file and blocks on the last pair until killed); search, planning and
the download stage (local catalog verification, counted through a wrapper) are real, as are Prefect's caching
and result storage.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_flow import AREA, write_scene

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys, time
from pathlib import Path
from prefect import task
import flows.pipeline as pipeline
import tasks.download as download_tasks
from offset_cube.config import load_job
from offset_cube.stages import OrbitFile
import tasks.engine as engine_tasks
from tests.test_flow import _engine_double, orbit_double, product_double, cube_double

out, catalog, block = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "block"
counts = out / "counts.txt"

def count(kind):
    with counts.open("a") as f:
        f.write(kind + "\n")

real_verify = download_tasks.verify_local_scene
def verify(scene):
    count("download " + scene.product_id)
    return real_verify(scene)
download_tasks.verify_local_scene = verify

def engine(inputs, job):
    if block and inputs.pair.pair_id == "20200125_20200218_t071":
        count("blocked")
        time.sleep(600)
    count("engine " + inputs.pair.pair_id)
    return _engine_double(inputs, job)

engine_tasks._run_builtin = engine  # the engine itself; the real engine task (cache, reuse, slot) runs around it
pipeline.fetch_orbit = orbit_double
pipeline.make_product = product_double
pipeline.insert_into_cube = cube_double
job = load_job(None, {"name": "resume", "area": sys.argv[4], "start": "2019-12-01", "end": "2020-03-01",
                      "search": "local:" + catalog, "storage": {"out": str(out)}, "dem": "none",
                      "concurrency": {"pairs": 1, "downloads": 1}})
state = pipeline.flow_for(job)(job, return_state=True)
print("FINAL", state.type.value, state.message)
"""


def counts(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_run_resumes_without_redoing_work(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    first = dt.datetime(2020, 1, 1, 13, 51, 17)
    for days in (0, 12, 24, 48):
        write_scene(catalog, first + dt.timedelta(days=days), 30600 + 175 * days // 12)
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(script), str(out), str(catalog)]

    child = subprocess.Popen(
        [*command, "block", AREA],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while (
            "blocked" not in counts(out / "counts.txt")
            or sum(c.startswith("engine") for c in counts(out / "counts.txt")) < 2
        ):
            assert child.poll() is None, "the flow process ended before it could be killed"
            assert time.monotonic() < deadline, f"no progress: {counts(out / 'counts.txt')}"
            time.sleep(0.2)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    first_run = counts(out / "counts.txt")
    assert sorted(c for c in first_run if c.startswith("engine")) == [
        "engine 20200101_20200113_t071",
        "engine 20200113_20200125_t071",
    ]

    rerun = subprocess.run([*command, "go", AREA], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "FINAL COMPLETED" in rerun.stdout, rerun.stdout + rerun.stderr
    second_run = counts(out / "counts.txt")[len(first_run) :]
    assert [c for c in second_run if c.startswith("engine")] == ["engine 20200125_20200218_t071"]
    downloads = [c for c in counts(out / "counts.txt") if c.startswith("download")]
    assert len(downloads) == len(set(downloads)) == 4  # every scene verified once, across both runs
