"""Downloads and orbits through the real flow, against local stand-ins for ASF, Earthdata Login and the orbit bucket.

Search (a saved ASF GeoJSON export whose URLs point at tests/fake_asf.py), planning, the credential check,
the download and orbit tasks, the concurrency limit and the cleanup are the production code. The engine,
product and cube stages belong to other issues and are replaced by the test doubles of tests/test_flow.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import flows.pipeline as pipeline
from offset_cube import progress
from offset_cube.config import JobConfig, load_job
from offset_cube.progress import terminal_progress
from tests.fake_asf import FakeAsf, serve_fake_asf, small_safe_zip
from tests.fake_orbits import FakeOrbitServer, serve_orbits
from tests.test_flow import AREA, cube_double, product_double, use_engine_double

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

FOOTPRINT = [[-118.5, 37.1], [-115.6, 37.5], [-115.3, 39.2], [-118.1, 38.8], [-118.5, 37.1]]
FIRST = dt.datetime(2020, 1, 1, 13, 51, 17, tzinfo=dt.UTC)


def product_id(when: dt.datetime, orbit: int) -> str:
    stop = when + dt.timedelta(seconds=27)
    datatake = f"{orbit * 7 % 0xFFFFFF:06X}"
    return f"S1A_IW_SLC__1SDV_{when:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_{datatake}_{orbit % 65536:04X}"


def publish_stack(fake: FakeAsf, folder: Path, dates: int = 3) -> tuple[Path, list[str]]:
    """Serve ``dates`` scenes 12 days apart on one track and write the ASF GeoJSON export that lists them."""
    features, products = [], []
    for i in range(dates):
        when = FIRST + dt.timedelta(days=12 * i)
        product = product_id(when, 30600 + 175 * i)
        data = small_safe_zip(product, payload_bytes=300_000, seed=i)
        url = fake.add(f"{product}.zip", data)
        props = {
            "sceneName": product,
            "fileID": f"{product}-SLC",
            "startTime": when.isoformat(),
            "stopTime": (when + dt.timedelta(seconds=27)).isoformat(),
            "pathNumber": 71,
            "flightDirection": "DESCENDING",
            "url": url,
            "bytes": len(data),
            "md5sum": hashlib.md5(data).hexdigest(),
        }
        geometry = {"type": "Polygon", "coordinates": [FOOTPRINT]}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
        products.append(product)
    export = folder / "search.geojson"
    export.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return export, products


def make_job(tmp_path: Path, export: Path, orbit_url: str, **overrides: Any) -> JobConfig:
    values: dict[str, Any] = {
        "name": "download-flow",
        "area": AREA,
        "start": "2019-12-01",
        "end": "2020-03-01",
        "search": f"file:{export}",
        "storage": {"out": str(tmp_path / "out")},
        "dem": "none",
        "download": {"edl_host": "localhost", "retries": 2, "retry_delay_s": 0},
        "orbits": {"allow_annotation": True, "asf_bucket_url": orbit_url},
        "concurrency": {"downloads": 3},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return load_job(None, values)


@pytest.fixture()
def servers() -> Iterator[tuple[FakeAsf, FakeOrbitServer]]:
    with serve_fake_asf() as fake, serve_orbits() as orbits:
        yield fake, orbits


@pytest.fixture(autouse=True)
def doubles_and_clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_engine_double(monkeypatch)
    monkeypatch.setattr(pipeline, "make_product", product_double)
    monkeypatch.setattr(pipeline, "insert_into_cube", cube_double)
    for name in ("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "EARTHDATA_TOKEN", "CDSE_USERNAME", "CDSE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def run(job: JobConfig) -> Any:
    return pipeline.flow_for(job)(job, return_state=True)


def test_shared_scene_downloads_once_under_the_limit_and_finished_scenes_are_released(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, orbits = servers
    export, products = publish_stack(fake, tmp_path)
    monkeypatch.setenv("EARTHDATA_TOKEN", fake.token)
    job = make_job(tmp_path, export, orbits.url, cleanup={"delete_scenes": True}, concurrency={"downloads": 1})

    state = run(job)

    assert state.is_completed(), state.message
    assert "2 pair(s) completed" in (state.message or "")
    assert dict(fake.downloads_started) == {f"{p}.zip": 1 for p in products}  # the middle scene served once
    assert fake.max_active == 1  # concurrency.downloads: 1
    scene_dir = job.storage.scene_dir
    assert sorted(p.name for p in scene_dir.glob("*.zip")) == [f"{products[-1]}.zip"]  # newest date kept
    assert orbits.requests["/"] >= 1  # each scene's POEORB was looked for before the annotation fallback

    # The cube double records nothing, so a rerun plans both pairs again: the two released zips are fetched
    # again (Prefect's cache must not hand out their deleted paths) and the kept one is reused.
    again = run(job)
    assert again.is_completed(), again.message
    assert [fake.downloads_started[f"{p}.zip"] for p in products] == [2, 2, 1]


def test_progress_is_logged_every_ten_percent_and_kept_as_an_artifact(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    fake, orbits = servers
    export, products = publish_stack(fake, tmp_path, dates=2)
    monkeypatch.setenv("EARTHDATA_TOKEN", fake.token)
    monkeypatch.setattr(progress, "TerminalBars", _RecordingBars)
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    logging.getLogger("prefect").addHandler(handler)
    try:
        with terminal_progress(enabled=True):  # as `offset-cube run` does in a terminal
            state = run(make_job(tmp_path, export, orbits.url))
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert state.is_completed(), state.message
    labels = sorted(f"S1A {p.split('_')[5]} {p.split('_')[-1]}" for p in products)
    assert sorted(_RecordingBars.updates) == labels  # the bars reached the task threads
    assert all(done == total for _, (done, total) in _RecordingBars.updates.items())
    lines = [r.getMessage() for r in records if products[0] in r.getMessage() and "%" in r.getMessage()]
    percents = [int(line.split(": ")[1].split("%")[0]) for line in lines]
    assert percents[0] == 0 and percents[-1] == 100
    assert {p // 10 for p in percents} == set(range(11))  # a line in every tenth, none repeated
    assert len(percents) == 11

    key = "download-" + re.sub(r"[^a-z0-9]+", "-", products[0].lower())
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert artifacts and artifacts[-1].type == "progress" and artifacts[-1].data == 100


def test_retries_recover_a_server_error_and_give_up_on_a_corrupt_file_with_a_clear_error(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, orbits = servers
    export, products = publish_stack(fake, tmp_path)
    fake.failures[f"{products[0]}.zip"].extend(["corrupt"] * 3)  # every attempt (1 + 2 retries) is corrupt
    fake.failures[f"{products[1]}.zip"].append("500")
    monkeypatch.setenv("EARTHDATA_TOKEN", fake.token)

    state = run(make_job(tmp_path, export, orbits.url, cleanup={"delete_scenes": True}))

    assert state.is_failed()
    assert "1 of 2 pair(s) failed" in (state.message or "")
    # the middle zip serves the failed pair too, so cleanup keeps it for the rerun; the newest is always kept
    assert sorted(p.name for p in (tmp_path / "out" / "scenes").glob("*.zip")) == [f"{p}.zip" for p in products[1:]]
    assert f"{products[0]}: md5 of the download is" in (state.message or "")
    assert fake.downloads_started[f"{products[0]}.zip"] == 3
    assert fake.downloads_started[f"{products[1]}.zip"] == 2
    assert fake.downloads_started[f"{products[2]}.zip"] == 1
    assert not list((tmp_path / "out" / "scenes").glob("*.part"))


def test_missing_credentials_fail_before_any_download(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, orbits = servers
    export, _ = publish_stack(fake, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))

    state = run(make_job(tmp_path, export, orbits.url, download={"earthdata_secret": "no-such-block"}))

    assert state.is_failed()
    message = state.message or ""
    assert "no Earthdata credentials" in message and "EARTHDATA_TOKEN" in message and ".netrc" in message
    assert "'no-such-block'" in message
    assert sum(fake.downloads_started.values()) == 0


class _RecordingBars:
    """Stands in for the rich bars: records the last progress of each bar."""

    updates: ClassVar[dict[str, tuple[int, int | None]]] = {}

    def shown(self) -> contextlib.AbstractContextManager[_RecordingBars]:
        _RecordingBars.updates = {}
        return contextlib.nullcontext(self)

    def bar(self, label: str) -> Callable[[int, int | None], None]:
        def update(done: int, total: int | None) -> None:
            _RecordingBars.updates[label] = (done, total)

        return update


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _everything_said(flow_run_id: Any, records: list[logging.LogRecord], roots: list[Path]) -> str:
    """Every log record (local and in the API), artifact, run parameter, state message and written file."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    parts = [r.getMessage() + str(r.args) + str(r.exc_info) for r in records]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        parts += [log.message for log in logs]
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        parts += [a.model_dump_json() for a in client.read_artifacts(flow_run_filter=runs)]
        flow_run = client.read_flow_run(flow_run_id)
        parts.append(flow_run.model_dump_json())
        parts += [t.model_dump_json() for t in client.read_task_runs(flow_run_filter=runs)]
    for root in roots:
        parts += [p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file()]
    return "\n".join(parts)


def test_credentials_never_appear_in_logs_artifacts_parameters_or_files(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with a login from a Secret block, and one with a refused token from the environment.

    The Prefect server's own database is not searched: the Secret block is meant to be kept there.
    """
    from prefect.blocks.system import Secret

    fake, orbits = servers
    export, products = publish_stack(fake, tmp_path)
    Secret(value=f"{fake.username}:{fake.password}").save("edl-login-test", overwrite=True)
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    for name in ("", "prefect"):
        logging.getLogger(name).addHandler(handler)
    try:
        login_job = make_job(tmp_path, export, orbits.url, download={"earthdata_secret": "edl-login-test"})
        with_login = run(login_job)
        assert with_login.is_completed(), with_login.message
        assert len(fake.logins) == 4  # basic auth went to the login host: the check, then once per scene

        wrong_token = "refused-TOKEN-value-42"
        monkeypatch.setenv("EARTHDATA_TOKEN", wrong_token)
        token_job = make_job(tmp_path / "second", export, orbits.url)
        refused = run(token_job)
        assert refused.is_failed() and "HTTP 401" in (refused.message or "")
    finally:
        for name in ("", "prefect"):
            logging.getLogger(name).removeHandler(handler)

    said = _everything_said(with_login.state_details.flow_run_id, records, [tmp_path]) + (refused.message or "")
    said += _everything_said(refused.state_details.flow_run_id, [], [])
    assert products[0] in said  # the haystack does hold what the runs wrote and logged
    for secret in (fake.password, wrong_token, fake.token):
        assert secret not in said


def test_credentials_commands_store_a_secret_block_and_name_the_source_without_showing_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    stored = runner.invoke(app, ["credentials", "save-secret", "edl-cli-test"], input="cli-user\nCLI-secret-pw\n")
    assert stored.exit_code == 0, stored.output
    assert "CLI-secret-pw" not in stored.output
    checked = runner.invoke(app, ["credentials", "check", "--secret", "edl-cli-test"])
    assert checked.exit_code == 0, checked.output
    assert "login of user cli-user from Prefect Secret block 'edl-cli-test'" in checked.output
    assert "CLI-secret-pw" not in checked.output
    missing = runner.invoke(app, ["credentials", "check", "--secret", "no-such-block"], env={"HOME": str(tmp_path)})
    assert missing.exit_code == 2 and "'no-such-block' was not found" in missing.output


def _prefect_database_bytes() -> bytes:
    """The test server's SQLite database (and its write-ahead log), as stored on disk."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    database = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())


def _decoded_result_files(folder: Path) -> list[bytes]:
    """Every Prefect result file under ``folder`` decoded: the pickle inside its JSON record (pickle keeps
    text as UTF-8, so a secret anywhere in the pickled exception shows up in these bytes)."""
    import base64

    decoded = []
    for path in folder.rglob("*"):
        if path.is_file():
            decoded.append(base64.b64decode(json.loads(path.read_bytes())["result"]))
    return decoded


@pytest.mark.parametrize(
    ("case", "echo"),
    [(case, echo) for case in ("refused login", "server error after login") for echo in (False, True)],
)
def test_no_password_in_any_file_result_or_database_after_a_failed_download(
    servers: tuple[FakeAsf, FakeOrbitServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, echo: bool
) -> None:
    """Acceptance (issue 12): after a 401, a 5xx after login, and with a server that echoes what it was sent,
    neither the password nor base64(user:password) is in any file the run wrote, any decoded Prefect result,
    the logs, or the Prefect database."""
    import base64
    import uuid

    fake, orbits = servers
    fake.echo = echo
    fake.password = f"pw-{uuid.uuid4().hex}"  # unique: the shared test database holds other tests' Secret blocks
    export, products = publish_stack(fake, tmp_path, dates=2)
    password = fake.password if case == "server error after login" else f"refused-{uuid.uuid4().hex}"
    if case == "server error after login":
        fake.failures[f"{products[0]}.zip"].extend(["500"] * 3)
    monkeypatch.setenv("EARTHDATA_USERNAME", fake.username)
    monkeypatch.setenv("EARTHDATA_PASSWORD", password)
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    for name in ("", "prefect"):
        logging.getLogger(name).addHandler(handler)
    try:
        state = run(make_job(tmp_path, export, orbits.url))
    finally:
        for name in ("", "prefect"):
            logging.getLogger(name).removeHandler(handler)

    assert state.is_failed()
    assert ("HTTP 401" if case == "refused login" else "HTTP 500") in (state.message or "")
    if case == "refused login":  # refused once, before any download: not once per scene
        assert len(fake.logins) == 1 and sum(fake.downloads_started.values()) == 0
        assert (state.message or "").count("HTTP 401") == 1
    results = tmp_path / "out" / ".prefect-results"
    decoded = _decoded_result_files(results) if results.exists() else []
    if case == "server error after login":
        assert results.stat().st_mode & 0o777 == 0o700  # results are private to the user
        assert decoded  # the failed download's exception was persisted, and decoded here
    said = _everything_said(state.state_details.flow_run_id, records, [tmp_path]).encode("latin-1", "replace")
    haystack = b"\n".join([said, *decoded, _prefect_database_bytes(), (state.message or "").encode()])
    assert products[0].encode() in haystack
    basic = base64.b64encode(f"{fake.username}:{password}".encode())
    assert password.encode() not in haystack
    assert basic not in haystack
