"""topsApp.py supervision through the real subprocess code, with the stand-in topsApp (tests/fake_isce/),
which parses the XML it is given and writes ISCE-format outputs: streaming, deadline kill of the whole process
group, PID-file kill from another process, parent-death signal, and judging runs by their outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from offset_cube.config import JobConfig
from offset_cube.isce2.discovery import discover_isce
from offset_cube.isce2.engine import required_outputs
from offset_cube.isce2.judge import judge_run
from offset_cube.isce2.render import read_render_record, render_pair_inputs
from offset_cube.isce2.supervise import kill_recorded_run, kill_recorded_runs, run_topsapp
from offset_cube.isce2.topsapp import PID_FILE, TOPSAPP_STEPS, RunRecord, TopsAppError, TopsAppTimeout
from tests.conftest import data_path
from tests.isce2_support import alive, bc_inputs, isce2_job, kill_stand_in


def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.05)


def rendered(tmp_path: Path) -> tuple[JobConfig, Path]:
    job = isce2_job(tmp_path)
    return job, render_pair_inputs(bc_inputs(job), job)


def run(job: JobConfig, pair_dir: Path, **kwargs: object) -> RunRecord:
    install = discover_isce(job.isce2)
    return run_topsapp(install, pair_dir, deadline_s=60, omp_num_threads=1, grace_s=2.0, **kwargs)  # type: ignore[arg-type]


def judge(pair_dir: Path, record: RunRecord) -> None:
    rendering = read_render_record(pair_dir)
    judge_run(
        pair_dir,
        record,
        record.notable,
        expected_swaths=rendering.expected_swaths,
        listed_swaths=rendering.swaths,
        required=required_outputs(rendering),
    )


def test_successful_run_streams_lines_and_steps(tmp_path: Path) -> None:
    job, pair_dir = rendered(tmp_path)
    lines: list[str] = []
    steps: list[tuple[int, str]] = []
    record = run(job, pair_dir, on_line=lines.append, on_step=lambda i, s: steps.append((i, s)))
    judge(pair_dir, record)
    assert record.returncode == 0
    assert [s for _, s in steps] == list(TOPSAPP_STEPS) and steps[-1][0] == len(TOPSAPP_STEPS) - 1
    assert "Running step geocodeoffsets" in lines
    log = (pair_dir / "topsApp.log").read_text()
    assert "--start=startup --end=geocodeoffsets" in log and "Running step denseoffsets" in log
    assert not (pair_dir / PID_FILE).exists()
    calls = [json.loads(c) for c in (pair_dir / "fake_topsapp_calls.jsonl").read_text().splitlines()]
    assert calls[0]["argv"] == [str(pair_dir / "topsApp.xml"), "--start=startup", "--end=geocodeoffsets"]


def test_stand_in_outputs_have_isce_formats(tmp_path: Path) -> None:
    """Same .xml property names and .vrt layout as ISCE2's own DenseAmpcor rasters in tests/data/isce/."""
    job, pair_dir = rendered(tmp_path)
    run(job, pair_dir)

    def layout(xml: Path) -> tuple[set[str], set[str]]:
        root = etree.parse(str(xml)).getroot()
        props = {p.get("name", "") for p in root.findall("property")}
        comps = {f"{c.get('name')}.{p.get('name')}" for c in root.findall("component") for p in c.findall("property")}
        return props - {"image_type"}, comps

    def vrt(path: Path) -> list[tuple[str, ...]]:
        root = etree.parse(str(path)).getroot()
        return [tuple(child.tag for child in band) for band in root.findall("VRTRasterBand")]

    for name in ("dense_offsets.bil", "dense_offsets_snr.bil", "dense_offsets_cov.bil"):
        ours, isce = pair_dir / "merged" / name, data_path(f"isce/complex/{name}")
        assert layout(Path(f"{ours}.xml")) == layout(Path(f"{isce}.xml"))
        assert vrt(Path(f"{ours}.vrt")) == vrt(Path(f"{isce}.vrt"))
        assert layout(Path(f"{ours}.geo.xml")) == layout(Path(f"{isce}.xml"))
    geo_vrt = etree.parse(str(pair_dir / "merged" / "dense_offsets.bil.geo.vrt")).getroot()
    assert geo_vrt.findtext("SRS") == "EPSG:4326" and geo_vrt.find("GeoTransform") is not None


def test_deadline_kills_the_whole_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, pair_dir = rendered(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "hang")
    install = discover_isce(job.isce2)
    with pytest.raises(TopsAppTimeout, match=r"ran past its deadline .* process group was killed") as caught:
        run_topsapp(install, pair_dir, deadline_s=4.0, omp_num_threads=1, grace_s=1.0)
    assert "DenseAmpcor: working" in str(caught.value)  # the last log lines are quoted
    pids = json.loads((pair_dir / "fake_topsapp_pids.json").read_text())
    for pid in [pids["topsapp"], *pids["workers"]]:
        wait_for(lambda pid=pid: not alive(pid), 10)
    assert not (pair_dir / PID_FILE).exists()


def test_pid_file_lets_another_process_kill_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the flow's cancellation/crash hook does: kill the group recorded in pairs/*/topsApp.pid."""
    job, pair_dir = rendered(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "hang")
    outcome: dict[str, RunRecord] = {}
    worker = threading.Thread(target=lambda: outcome.update(record=run(job, pair_dir)))
    worker.start()
    pids_file = pair_dir / "fake_topsapp_pids.json"
    try:
        wait_for(lambda: pids_file.is_file() and (pair_dir / PID_FILE).is_file())
        pids = json.loads(pids_file.read_text())
        assert kill_recorded_runs(job.storage.pairs_dir, grace_s=2.0) == [pair_dir]
        for pid in [pids["topsapp"], *pids["workers"]]:
            wait_for(lambda pid=pid: not alive(pid), 10)
    finally:
        kill_stand_in(pair_dir)
        worker.join(timeout=30)
    assert outcome["record"].returncode == -signal.SIGTERM
    with pytest.raises(TopsAppError, match="exited with status -15"):
        judge(pair_dir, outcome["record"])


def test_sigkill_of_the_supervisor_leaves_no_topsapp_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL the process supervising topsApp (no handler, no ``finally`` runs): PR_SET_PDEATHSIG ends topsApp
    only; the reaper ends its forked worker too, within seconds. The stale PID file is cleaned up after."""
    job, pair_dir = rendered(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "hang")
    script = (
        "import sys; from pathlib import Path; from offset_cube.config import Isce2Config;"
        "from offset_cube.isce2.discovery import discover_isce; from offset_cube.isce2.supervise import run_topsapp;"
        "i = discover_isce(Isce2Config(python=sys.argv[1], isce_home=sys.argv[2]));"
        "run_topsapp(i, Path(sys.argv[3]), deadline_s=300, omp_num_threads=1)"
    )
    args = [sys.executable, "-c", script, str(job.isce2.python), str(job.isce2.isce_home), str(pair_dir)]
    supervisor = subprocess.Popen(args)
    try:
        pids_file = pair_dir / "fake_topsapp_pids.json"
        wait_for(pids_file.is_file)
        pids = json.loads(pids_file.read_text())
        supervisor.kill()
        supervisor.wait(timeout=30)
        assert pids["workers"]
        for pid in [pids["topsapp"], *pids["workers"]]:
            wait_for(lambda pid=pid: not alive(pid), 15)
        assert not kill_recorded_run(pair_dir, grace_s=2.0)  # nothing left to kill; the stale file goes
        assert not (pair_dir / PID_FILE).exists()
    finally:
        supervisor.kill()
        kill_recorded_run(pair_dir, grace_s=0.5)
        kill_stand_in(pair_dir)


def test_could_not_extract_swath_fails_although_outputs_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = isce2_job(tmp_path, swaths=["IW1", "IW2"])
    pair_dir = render_pair_inputs(bc_inputs(job), job)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "could-not-extract")  # swath 1 fails, swath 2 is processed
    record = run(job, pair_dir)
    assert record.returncode == 0 and (pair_dir / "merged" / "dense_offsets.bil.geo").is_file()
    with pytest.raises(TopsAppError, match="a swath could not be extracted") as caught:
        judge(pair_dir, record)
    assert "| Could not extract swath 1 from" in str(caught.value)
    assert "| Generated error:" in str(caught.value)
    assert str(pair_dir / "topsApp.log") in str(caught.value)


def test_only_swath_failing_makes_topsapp_crash_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, pair_dir = rendered(tmp_path)
    monkeypatch.setenv("FAKE_TOPSAPP_MODE", "could-not-extract")
    record = run(job, pair_dir)
    with pytest.raises(TopsAppError, match="exited with status 1; a swath could not be extracted") as caught:
        judge(pair_dir, record)
    assert "IndexError: list index out of range" in str(caught.value)


@pytest.mark.parametrize(
    ("expected", "listed", "failed", "fatal"),
    [((2,), (2,), [2], True), ((1, 2), (1, 2), [1], True), ((), (1, 2, 3), [1, 3], False), ((), (1, 2), [1, 2], True)],
)
def test_which_swath_failures_are_fatal(
    tmp_path: Path, expected: tuple[int, ...], listed: tuple[int, ...], failed: list[int], fatal: bool
) -> None:
    """Swaths chosen from the job or the footprints must extract; with all three listed blindly, topsApp's
    message for a swath outside the region of interest is normal unless every swath failed."""
    notable = [f"Could not extract swath {n} from ['/s.zip']" for n in failed]
    record = RunRecord(returncode=0, start_step="startup", log_path=tmp_path / "topsApp.log", notable=notable)
    check = lambda: judge_run(tmp_path, record, notable, expected_swaths=expected, listed_swaths=listed, required=[])  # noqa: E731
    if fatal:
        with pytest.raises(TopsAppError, match="a swath could not be extracted"):
            check()
    else:
        check()


def test_unknown_property_exits_like_topsapp(tmp_path: Path) -> None:
    job, pair_dir = rendered(tmp_path)
    xml = pair_dir / "topsApp.xml"
    xml.write_text(xml.read_text().replace('name="do ESD"', 'name="do ESDX"'))
    record = run(job, pair_dir)
    with pytest.raises(TopsAppError, match="exited with status 1; an unknown property in the XML") as caught:
        judge(pair_dir, record)
    assert 'The attribute corresponding to the key "doesdx" is not present' in str(caught.value)
