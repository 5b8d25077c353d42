"""Scene downloads: the real asf_search download code against a local stand-in for ASF and Earthdata Login.

The servers in tests/fake_asf.py replace only the outside systems (datapool, Earthdata Login); the session,
``asf.download_url``, verification and caching are the production code paths.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from offset_cube import download
from offset_cube.credentials import Credentials, credentials_from_netrc
from offset_cube.download import (
    TransferLimits,
    cached_scene,
    check_login,
    download_scene_file,
    needs_download,
    open_session,
    remembered_md5,
    remove_scene_file,
)
from offset_cube.errors import AuthenticationError, DownloadError, TransientDownloadError
from tests.conftest import ROOT
from tests.fake_asf import PRODUCT, FakeAsf, serve_fake_asf, small_safe_zip


@pytest.fixture()
def fake() -> Iterator[FakeAsf]:
    with serve_fake_asf() as server:
        yield server


def login(fake: FakeAsf, password: str | None = None) -> Credentials:
    return Credentials(source="test", username=fake.username, password=SecretStr(password or fake.password))


def session_for(
    fake: FakeAsf, credentials: Credentials | None = None, timeout_s: float = 10.0
) -> download.EarthdataSession:
    return open_session(credentials or login(fake), timeout_s=timeout_s, edl_host="localhost")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_earthdata_redirect_with_basic_auth_downloads_and_verifies(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    seen: list[tuple[int, int | None]] = []

    path = download_scene_file(scene, tmp_path, session_for(fake), progress=lambda d, t: seen.append((d, t)))

    assert path == tmp_path / f"{PRODUCT}.zip"
    assert hashlib.md5(path.read_bytes()).hexdigest() == scene.md5
    assert remembered_md5(path) == scene.md5  # the sidecar makes the next check cheap
    assert len(fake.logins) == 1 and fake.logins[0].startswith("Basic ")  # credentials went to the login host
    assert fake.authorization_seen_by_data_host == []  # ... and only there
    assert seen[-1] == (scene.size_bytes, scene.size_bytes)
    assert all(total == scene.size_bytes for _, total in seen)
    assert leftovers(tmp_path) == []


def test_login_is_not_passed_on_from_the_login_host_to_trusted_asf_hosts(fake: FakeAsf, tmp_path: Path) -> None:
    """ASFSession keeps Authorization on redirects between its trusted domains (asf.alaska.edu and
    earthdata.nasa.gov in reality); here the two local hosts are made trusted the same way."""
    scene = fake.scene()
    session = session_for(fake)
    session.auth_domains = ["localhost", "0.0.1"]  # ASFSession compares the last three labels of a host name
    download_scene_file(scene, tmp_path, session)
    assert len(fake.logins) == 1
    assert fake.authorization_seen_by_data_host == []


def test_netrc_default_entry_goes_to_the_login_host_only(
    fake: FakeAsf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``requests`` would send a ``.netrc`` ``default`` login to every host (here the data host, which with a
    ``file:`` export could be any host); the session must send it to the Earthdata login host only."""
    netrc = tmp_path / "netrc"
    netrc.write_text(f"default login {fake.username} password {fake.password}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    found = credentials_from_netrc(netrc, "localhost")
    assert found is not None and found.source == f"{netrc} (default entry, used for localhost only)"

    path = download_scene_file(fake.scene(), tmp_path, session_for(fake, found))

    assert path.is_file()
    assert fake.authorization_seen_by_data_host == []
    assert len(fake.logins) == 1


def test_login_check_asks_the_login_host_once_and_moves_no_data(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    assert check_login(scene, session_for(fake)) is True
    wrong = "wrong-PASSWORD-xyz"
    with pytest.raises(AuthenticationError, match="HTTP 401") as caught:
        check_login(scene, session_for(fake, login(fake, wrong)))
    assert wrong not in str(caught.value) and caught.value.__context__ is None
    token = Credentials(source="test", token=SecretStr(fake.token))
    assert check_login(scene, session_for(fake, token)) is False  # a token is checked by the download itself
    assert len(fake.logins) == 2
    assert sum(fake.downloads_started.values()) == 0


def test_bearer_token_is_accepted(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    token = Credentials(source="test", token=SecretStr(fake.token))
    path = download_scene_file(scene, tmp_path, session_for(fake, token))
    assert hashlib.md5(path.read_bytes()).hexdigest() == scene.md5
    assert fake.logins == []


def test_refused_login_fails_fast_without_leaking_the_password(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    wrong = "wrong-PASSWORD-xyz"
    with pytest.raises(AuthenticationError) as caught:
        download_scene_file(scene, tmp_path, session_for(fake, login(fake, wrong)))
    message = str(caught.value)
    assert "HTTP 401" in message and "EULA" in message and "from test" in message
    assert wrong not in message
    assert not getattr(caught.value, "transient", False)
    assert fake.downloads_started[scene.file_name] == 0
    assert leftovers(tmp_path) == [] and not (tmp_path / scene.file_name).exists()


def test_server_error_is_transient_and_the_next_attempt_succeeds(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    fake.failures[scene.file_name].append("500")
    session = session_for(fake)
    with pytest.raises(TransientDownloadError, match="HTTP 500") as caught:
        download_scene_file(scene, tmp_path, session)
    assert caught.value.transient
    path = download_scene_file(scene, tmp_path, session)
    assert hashlib.md5(path.read_bytes()).hexdigest() == scene.md5
    assert fake.downloads_started[scene.file_name] == 2


def test_connection_cut_at_half_discards_the_part_and_the_retry_verifies(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    fake.failures[scene.file_name].append("cut")
    session = session_for(fake)
    with pytest.raises(TransientDownloadError, match="broke off"):
        download_scene_file(scene, tmp_path, session)
    assert leftovers(tmp_path) == [] and not (tmp_path / scene.file_name).exists()
    path = download_scene_file(scene, tmp_path, session)
    assert hashlib.md5(path.read_bytes()).hexdigest() == scene.md5


def test_wrong_md5_is_rejected(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    fake.failures[scene.file_name].extend(["corrupt", "corrupt"])
    session = session_for(fake)
    for _ in range(2):
        with pytest.raises(TransientDownloadError, match=f"ASF lists {scene.md5}"):
            download_scene_file(scene, tmp_path, session)
        assert list(tmp_path.glob("*.zip*")) == []
    assert download_scene_file(scene, tmp_path, session).is_file()


def test_stalled_transfer_ends_by_timeout(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    fake.failures[scene.file_name].append("stall")
    with pytest.raises(TransientDownloadError, match="stalled"):
        download_scene_file(scene, tmp_path, session_for(fake, timeout_s=0.5))
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (TransferLimits(deadline_s=2.0), "still running at its deadline of 2 s"),
        (TransferLimits(min_rate_bytes_per_s=1000, window_s=1.5), "below download.min_rate_bytes_per_s = 1000"),
    ],
)
def test_trickling_server_is_cut_off_in_time_with_a_retryable_error(
    fake: FakeAsf, tmp_path: Path, limits: TransferLimits, expected: str
) -> None:
    """A server sending 1 byte/s never trips the socket timeout (10 s here); the deadline or the minimum rate
    ends the transfer, with an error that names the scene and the rate and is retried."""
    scene = fake.scene()
    fake.failures[scene.file_name].append("trickle")
    session = open_session(login(fake), timeout_s=10.0, edl_host="localhost", limits=limits)
    started = time.monotonic()
    with pytest.raises(TransientDownloadError) as caught:
        download_scene_file(scene, tmp_path, session)
    assert time.monotonic() - started < 8.0  # the limit (2 s or 1.5 s) and a poll, far below the 10 s timeout
    message = str(caught.value)
    assert message.startswith(scene.product_id) and expected in message and "B/s" in message
    assert caught.value.transient
    assert leftovers(tmp_path) == [] and not (tmp_path / scene.file_name).exists()


def test_login_web_page_instead_of_zip_is_an_authentication_error(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    fake.failures[scene.file_name].append("html")
    with pytest.raises(AuthenticationError, match="web page"):
        download_scene_file(scene, tmp_path, session_for(fake))


def test_not_found_is_a_plain_download_error(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene().model_copy(update={"url": f"{fake.data_url}/missing.zip"})
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        download_scene_file(scene, tmp_path, session_for(fake))
    assert not isinstance(caught.value, TransientDownloadError | AuthenticationError)


def test_cached_file_is_reused_from_its_sidecar_without_rehashing(
    fake: FakeAsf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = fake.scene()
    first = download_scene_file(scene, tmp_path, session_for(fake))

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(download, "file_md5", no_hashing)
    assert download_scene_file(scene, tmp_path, session_for(fake)) == first
    assert not needs_download(scene, tmp_path)
    assert fake.downloads_started[scene.file_name] == 1


def test_corrupted_cache_file_is_detected_and_downloaded_again(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    path = download_scene_file(scene, tmp_path, session_for(fake))
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the sidecar no longer vouches for it
    assert cached_scene(scene, tmp_path) is None
    assert needs_download(scene, tmp_path)
    again = download_scene_file(scene, tmp_path, session_for(fake))
    assert hashlib.md5(again.read_bytes()).hexdigest() == scene.md5
    assert fake.downloads_started[scene.file_name] == 2


def test_cached_file_without_sidecar_is_hashed_once(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    (tmp_path / scene.file_name).write_bytes(fake.files[scene.file_name])
    assert cached_scene(scene, tmp_path) == tmp_path / scene.file_name
    assert remembered_md5(tmp_path / scene.file_name) == scene.md5
    assert fake.downloads_started[scene.file_name] == 0


def test_remove_scene_file_deletes_only_downloads(fake: FakeAsf, tmp_path: Path) -> None:
    scene = fake.scene()
    path = download_scene_file(scene, tmp_path, session_for(fake))
    local = scene.model_copy(update={"local_path": path})
    assert remove_scene_file(local, tmp_path) == []
    assert sorted(p.name for p in remove_scene_file(scene, tmp_path)) == [path.name, f"{path.name}.md5"]
    assert not path.exists()


def test_remove_scene_file_deletes_the_unpacked_measurements_too(fake: FakeAsf, tmp_path: Path) -> None:
    """The built-in engine's unpacked copies (builtin.unpack_measurements) go with the zip, and with a local
    catalog's scene the copies go while the user's zip stays."""
    scene = fake.scene()
    path = download_scene_file(scene, tmp_path, session_for(fake))
    copies = tmp_path / "unpacked" / path.name.removesuffix(".zip")
    (copies / "measurement").mkdir(parents=True)
    (copies / "measurement" / "s1a-iw1-slc-vv.tiff").write_bytes(b"II*\0")
    local = scene.model_copy(update={"local_path": path})
    assert remove_scene_file(local, tmp_path) == [copies] and path.exists() and not copies.exists()
    (copies / "measurement").mkdir(parents=True)
    removed = remove_scene_file(scene, tmp_path)
    assert copies in removed and path in removed and not copies.exists() and not path.exists()


def test_scene_without_url_is_refused(tmp_path: Path) -> None:
    scene = FakeAsf().scene().model_copy(update={"url": None})
    with pytest.raises(DownloadError, match="no download URL"):
        download_scene_file(scene, tmp_path, open_session(None))


KILLED_DOWNLOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from offset_cube.credentials import resolve_earthdata_credentials
    from offset_cube.download import download_scene_file, open_session
    from offset_cube.scenes import Scene

    scene = Scene.model_validate_json(sys.argv[1])
    session = open_session(resolve_earthdata_credentials(), timeout_s=60)
    download_scene_file(scene, Path(sys.argv[2]), session)
    """
)


def test_killing_a_download_leaves_no_corrupt_file_and_a_rerun_completes(fake: FakeAsf, tmp_path: Path) -> None:
    """SIGKILL a download process mid-transfer (the server stalls at 50 %), then download again."""
    scene = fake.scene(data=small_safe_zip(payload_bytes=2_000_000))
    fake.failures[scene.file_name].append("stall")
    token = Credentials(source="test", token=SecretStr(fake.token))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EARTHDATA_TOKEN": fake.token}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_DOWNLOAD, scene.model_dump_json(), str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    part = tmp_path / f"{scene.file_name}.part"
    deadline = time.monotonic() + 60
    try:
        while not (part.exists() and part.stat().st_size >= 500_000):
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never got half-way"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not (tmp_path / scene.file_name).exists()  # only the .part: nothing a reader would take as a scene
    assert cached_scene(scene, tmp_path) is None

    path = download_scene_file(scene, tmp_path, session_for(fake, token))
    assert hashlib.md5(path.read_bytes()).hexdigest() == scene.md5
    assert leftovers(tmp_path) == []
