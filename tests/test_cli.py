"""The command line: help, plan output, and one clear error line (exit 2, nothing written) for bad input."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import ROOT, data_path
from tests.isce2_support import alive

STACK = data_path("asf/geojson/S1A_IW_SLC__1SSV_20160528T141908_20160528T141938_011460_011746_335C_stack.geojson")
STACK_AREA = "POLYGON((-121 54.5,-120.5 54.5,-120.5 54.9,-121 54.9,-121 54.5))"
SAFE_ZIPS = data_path("safe/s1-reader")
runner = CliRunner()


def plan_args(*extra: str) -> list[str]:
    return [
        "plan",
        "--area",
        STACK_AREA,
        "--start",
        "2015-01-01",
        "--end",
        "2022-01-01",
        "--search",
        f"file:{STACK}",
        *extra,
    ]


def test_help_lists_every_command() -> None:
    """Through the installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("offset-cube")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True, timeout=120)
    for command in ("demo", "run", "plan", "track", "inspect", "serve"):
        assert f" {command} " in result.stdout


def test_plan_json_lists_consecutive_pairs() -> None:
    result = runner.invoke(app, plan_args("--json"))
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)
    assert len(pairs) == 169
    assert set(pairs[0]) == {
        "track",
        "direction",
        "reference_date",
        "secondary_date",
        "dt_days",
        "reference_scenes",
        "secondary_scenes",
        "reference_bursts",
        "secondary_bursts",
        "reference_bytes",
        "secondary_bytes",
        "search",
    }
    assert pairs[0]["reference_bursts"] == []  # whole scenes: an SLC export
    assert pairs[0]["reference_bytes"] == 2830964932
    assert pairs[0]["track"] == 13 and pairs[0]["direction"] == "DESCENDING"
    assert pairs[0]["dt_days"] == pytest.approx(24.0, abs=1e-3)
    assert all(a["secondary_date"] == b["reference_date"] for a, b in itertools.pairwise(pairs))
    assert "72-day gap" in result.stderr


def test_plan_table_and_yaml_with_flag_overrides(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(f"area: '{STACK_AREA}'\nstart: 2015-01-01\nend: 2016-01-01\nsearch: file:{STACK}\n")
    result = runner.invoke(app, ["plan", "--config", str(config), "--end", "2015-09-30"])
    assert result.exit_code == 0, result.output
    assert "4 pair(s)" in result.stdout  # 2015-06-03, -06-27, -07-21, -08-14, -09-07: five dates
    assert "2015-09-07" in result.stdout


def test_one_acquisition_is_not_an_error() -> None:
    one = data_path("asf/geojson/Fairbanks_SLC.geojson")
    result = runner.invoke(
        app,
        [
            "plan",
            "--area",
            "POLYGON((-150 63,-144 63,-144 66,-150 66,-150 63))",
            "--start",
            "2020-01-01",
            "--search",
            f"file:{one}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "only one acquisition" in result.stderr


def test_run_with_nothing_new_starts_no_prefect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to process is decided from the search and the cube alone: the flow (and Prefect's temporary
    server, 8-18 s to start) is never reached."""
    import flows.pipeline

    def no_flow(*args: object) -> None:
        raise AssertionError("the flow must not start when nothing is new")

    monkeypatch.setattr(flows.pipeline, "flow_for", no_flow)
    one = data_path("asf/geojson/Fairbanks_SLC.geojson")
    area = "POLYGON((-150 63,-144 63,-144 66,-150 66,-150 63))"
    result = runner.invoke(app, ["run", "--area", area, "--start", "2020-01-01", "--search", f"file:{one}"])
    assert result.exit_code == 0, result.output
    assert "only one acquisition found" in result.stdout and "nothing to run" in result.stdout


def _local_catalog(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(SAFE_ZIPS / name)
    return folder


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--area", "POLYGON((0 0, 1 1"], "area is not valid WKT"),
        (["--area", "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"], "Self-intersection"),
        (["--end", "2014-12-31"], "end 2014-12-31 is before start 2015-01-01"),
        (["--start", "2014-06-01"], "before Sentinel-1's first data (2014-10-03)"),
        (["--start", (dt.date.today() + dt.timedelta(days=2)).isoformat()], "after today"),
        (["--engine", "gamma"], "engine"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["plan", "--area", STACK_AREA, "--start", "2015-01-01", "--search", f"file:{STACK}"]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "--aera", "POINT(0 0)"],
            "no such option: --aera; did you mean --area or --start? (see 'offset-cube run --help')",
        ),
        (["--aera"], "no such option: --aera (see 'offset-cube --help')"),
        (["rnu"], "no such command 'rnu'; did you mean 'run'? (see 'offset-cube --help')"),
        (["inspect"], "missing argument 'CUBE' (see 'offset-cube inspect --help')"),
        (["demo", "--dates", "four"], "invalid value for '--dates'"),
    ],
)
def test_command_line_mistakes_are_one_error_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    """Mistyped options and commands, missing arguments and bad values: one line naming close matches, no box."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["demo", "doctor", "inspect", "plan", "run", "serve", "simulate", "track"])
def test_help_with_h_shows_plain_argument_names_and_no_bool_placeholder(command: str) -> None:
    result = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert usage.strip().startswith(f"Usage: offset-cube {command} [OPTIONS]") and "{" not in usage
    assert "<bool>" not in result.stdout
    assert re.search(r"--help\s+-h\s+Show this message", result.stdout)


def test_arguments_show_in_capitals() -> None:
    usage = {c: runner.invoke(app, [c, "--help"], env={"COLUMNS": "200"}).stdout for c in ("inspect", "track")}
    assert "Usage: offset-cube inspect [OPTIONS] CUBE" in usage["inspect"]
    assert "Usage: offset-cube track [OPTIONS] REFERENCE SECONDARY" in usage["track"]
    assert "{cube}" not in usage["inspect"] and "{reference}" not in usage["track"]


def test_version_is_the_installed_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"offset-cube {importlib.metadata.version('offset-cube')}\n"


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_run_with_an_unusable_out_is_one_error_line_exit_2_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Checked before any search, download or engine: not 200 lines of tracebacks after the whole run.

    Root passes any permission bits, so as root (CI containers) the read-only case runs in a forked child that has
    dropped to the unprivileged uid 65534 ("nobody") inside a world-readable folder; the real CLI runs either way.
    """
    if kind == "read-only" and os.geteuid() == 0:
        tmp_path = Path(tempfile.mkdtemp(prefix="offset-cube-ro-"))
        tmp_path.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    if kind == "a file":
        out = tmp_path / "out"
        out.write_text("not a folder\n")
        expected = f"storage.out {out}: it is a file, not a folder"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        out = locked / "out"
        expected = f"{locked}, where it would be created, is not writable"
    before = sorted(tmp_path.rglob("*"))
    args = ["run", "--area", STACK_AREA, "--start", "2020-01-01", "--end", "2020-03-01"]
    args += ["--search", f"local:{catalog}", "--out", str(out)]
    if kind == "read-only" and os.geteuid() == 0:
        exit_code, stderr = _invoke_as_nobody(args)
        shutil.rmtree(tmp_path)
    else:
        result = runner.invoke(app, args)
        exit_code, stderr = result.exit_code, result.stderr
        assert sorted(tmp_path.rglob("*")) == before
    assert exit_code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def _invoke_as_nobody(args: list[str]) -> tuple[int, str]:
    """Run the CLI in a forked child with uid/gid 65534; return its exit code and stderr, and check that the child
    wrote nothing (the folder's listing is compared inside the child, before it exits)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            before = sorted(Path.cwd().rglob("*"))
            result = runner.invoke(app, args)
            written = sorted(Path.cwd().rglob("*")) != before
            payload = json.dumps({"exit": 3 if written else result.exit_code, "stderr": result.stderr})
            os.write(write_end, payload.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    reply = json.loads(data)
    return int(reply["exit"]), str(reply["stderr"])


def test_unknown_yaml_field_and_engine_constraints(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(f"area: '{STACK_AREA}'\nstart: 2015-01-01\nsearch: file:{STACK}\nenigne: isce2\n")
    result = runner.invoke(app, ["plan", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown field 'enigne'" in result.stderr
    config.write_text(
        f"area: '{STACK_AREA}'\nstart: 2015-01-01\nsearch: file:{STACK}\nengine: isce2\n"
        "tracking:\n  window: [64, 16]\n  search: [20, 40]\n"
    )
    result = runner.invoke(app, ["plan", "--config", str(config)])
    assert result.exit_code == 2
    assert "must be < 2 x window height (32) for ISCE2's ampcor; got 40" in result.stderr
    config.write_text(f"area: '{STACK_AREA}'\nstart: 2015-01-01\nsearch: file:{STACK}\ntracking:\n  mode: complex\n")
    result = runner.invoke(app, ["plan", "--config", str(config), "--engine", "isce2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tracking.mode 'complex'" in lines[0]
    assert "correlate amplitudes" in lines[0]


def test_ew_product_in_a_local_catalog_is_rejected(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    ew = catalog / "S1A_EW_SLC__1SDH_20200511T135117_20200511T135144_032518_03C421_7768.zip"
    ew.symlink_to(SAFE_ZIPS / "S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip")
    result = runner.invoke(
        app,
        [
            "plan",
            "--area",
            "POLYGON((-118 37.5,-116 37.5,-116 38.5,-118 38.5,-118 37.5))",
            "--start",
            "2020-01-01",
            "--search",
            f"local:{catalog}",
        ],
    )
    assert result.exit_code == 2
    assert "is a EW product" in result.stderr and ew.name in result.stderr


def test_local_catalog_pairs_two_dates_of_one_track(tmp_path: Path) -> None:
    catalog = _local_catalog(
        tmp_path / "catalog",
        [
            "S1A_IW_SLC__1SDV_20200511T135117_20200511T135144_032518_03C421_7768.zip",
            "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.zip",
            "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.zip",
        ],
    )
    result = runner.invoke(
        app,
        [
            "plan",
            "--area",
            "POLYGON((-120 32,-115 32,-115 39.5,-120 39.5,-120 32))",
            "--start",
            "2020-01-01",
            "--search",
            f"local:{catalog}",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)
    assert [(p["track"], p["reference_date"], p["secondary_date"]) for p in pairs] == [(71, "2020-05-11", "2023-01-08")]


def test_cli_sets_prefect_offline_environment(tmp_path: Path) -> None:
    code = (
        "import os, sys; sys.argv=['offset-cube','--help']\n"
        "from flows.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('ENV', os.environ['DO_NOT_TRACK'], os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'],"
        " os.environ['PREFECT_HOME'], os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("ENV"))
    assert line.split()[1:] == ["1", "false", str(tmp_path / ".prefect"), "90"]


_SERVER_CHILD = """
import sys, time
from pathlib import Path
from flows.runtime import configure_prefect_env, start_local_server
configure_prefect_env(Path(sys.argv[1]))
server = start_local_server()
print(server.server_process.pid, flush=True)
time.sleep(600)
"""


def test_runs_started_together_on_a_fresh_prefect_home_start_cleanly_and_sigkill_leaves_no_server(
    tmp_path: Path,
) -> None:
    """Two processes set up one fresh PREFECT_HOME at once (Prefect alone: "duplicate column name"); then
    SIGKILL, which runs no atexit handler, must not leave their temporary API servers running."""
    import signal
    import time

    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _SERVER_CHILD, str(home)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    servers = []
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip().isdigit(), child.stderr.read() if child.stderr else ""
            servers.append(int(line))
        assert home.stat().st_mode & 0o777 == 0o700
    finally:
        for child in children:
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=30)
    end = time.monotonic() + 30
    while any(alive(pid) for pid in servers) and time.monotonic() < end:
        time.sleep(0.2)
    assert not [pid for pid in servers if alive(pid)]


def test_the_test_harness_server_is_reaped_too(prefect_harness: None) -> None:
    """The test suite's own Prefect server (``prefect_harness``) has a reaper watching it, so a killed pytest run
    leaves no uvicorn behind: the reaper's command line names the server's pid."""
    from prefect.server.api.server import SubprocessASGIServer

    process = SubprocessASGIServer().server_process
    assert process is not None and process.poll() is None
    reapers = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"offset_cube.reaper" in argv and str(process.pid).encode() in argv:
            reapers.append(entry.name)
    assert len(reapers) == 1, reapers
