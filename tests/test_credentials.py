"""Credential resolution order and secrecy (no Prefect needed: the task layer passes a block's value in)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from offset_cube.credentials import (
    AuthenticationError,
    MissingCredentialsError,
    credentials_from_value,
    keeps_secrets_out,
    resolve_cdse_credentials,
    resolve_earthdata_credentials,
)
from offset_cube.errors import DownloadError

PASSWORD = "pw-from-somewhere-1234"


def write_netrc(path: Path, machine: str = "urs.earthdata.nasa.gov", password: str = PASSWORD) -> Path:
    path.write_text(f"machine {machine}\n  login netrc-user\n  password {password}\n")
    path.chmod(0o600)
    return path


def test_secret_block_value_wins_over_environment_and_netrc(tmp_path: Path) -> None:
    env = {"EARTHDATA_TOKEN": "env-token", "NETRC": str(write_netrc(tmp_path / "netrc"))}
    found = resolve_earthdata_credentials("block-user:" + PASSWORD, "Prefect Secret block 'edl'", env)
    assert (found.username, found.source) == ("block-user", "Prefect Secret block 'edl'")
    assert found.password is not None and found.password.get_secret_value() == PASSWORD


def test_environment_login_then_token_then_netrc(tmp_path: Path) -> None:
    netrc = str(write_netrc(tmp_path / "netrc"))
    both = {"EARTHDATA_USERNAME": "u", "EARTHDATA_PASSWORD": PASSWORD, "EARTHDATA_TOKEN": "t", "NETRC": netrc}
    assert resolve_earthdata_credentials(env=both).username == "u"
    token = resolve_earthdata_credentials(env={"EARTHDATA_TOKEN": "tok", "NETRC": netrc})
    assert token.token is not None and token.token.get_secret_value() == "tok" and token.username is None
    from_netrc = resolve_earthdata_credentials(env={"NETRC": netrc})
    assert from_netrc.username == "netrc-user" and netrc in from_netrc.source


def test_home_netrc_is_read_when_netrc_is_unset(tmp_path: Path) -> None:
    write_netrc(tmp_path / ".netrc")
    assert resolve_earthdata_credentials(env={"HOME": str(tmp_path)}).username == "netrc-user"


def test_missing_credentials_name_the_three_ways(tmp_path: Path) -> None:
    env = {"NETRC": str(write_netrc(tmp_path / "netrc", machine="example.com"))}
    with pytest.raises(MissingCredentialsError) as caught:
        resolve_earthdata_credentials(env=env, missing_note="Prefect Secret block 'edl' was not found")
    message = str(caught.value)
    for needle in (
        "download.earthdata_secret",
        "EARTHDATA_USERNAME",
        "EARTHDATA_TOKEN",
        "machine urs.earthdata",
        "'edl'",
    ):
        assert needle in message
    assert isinstance(caught.value, AuthenticationError)


@pytest.mark.parametrize(
    ("value", "username", "token"),
    [
        ("me:" + PASSWORD, "me", None),
        ({"username": "me", "password": PASSWORD}, "me", None),
        ('{"token": "abc.def.ghi"}', None, "abc.def.ghi"),
        ("abc.def.ghi", None, "abc.def.ghi"),
    ],
)
def test_secret_value_forms(value: object, username: str | None, token: str | None) -> None:
    found = credentials_from_value(value, "block")
    assert found.username == username
    assert (found.token.get_secret_value() if found.token else None) == token


@pytest.mark.parametrize("value", ["", "two words", {"user": "x"}, "{not json " + PASSWORD])
def test_unusable_secret_values_are_refused_without_echoing_them(value: object) -> None:
    with pytest.raises(AuthenticationError) as caught:
        credentials_from_value(value, "block")
    assert PASSWORD not in str(caught.value)
    assert caught.value.__cause__ is None


def test_repr_and_messages_never_show_secrets() -> None:
    found = credentials_from_value({"username": "me", "password": PASSWORD}, "block")
    assert PASSWORD not in repr(found) and PASSWORD not in str(found)
    assert found.redact(f"server echoed {PASSWORD}") == "server echoed ***"
    basic = base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    assert found.redact(f"you sent me:{PASSWORD} as Basic {basic}") == "you sent *** as Basic ***"
    assert found.redact("header Authorization: Bearer abc.DEF-123") == "header Authorization: Bearer ***"


@pytest.mark.parametrize("kind", ["project error chained to the requests error", "foreign error"])
def test_errors_leaving_code_that_holds_a_login_carry_no_chain_and_pickle_clean(kind: str) -> None:
    """Prefect pickles a failed task's exception; with tblib's pickling support (installed by dask) the pickle
    holds ``__cause__``, ``__context__`` and the traceback: none may lead to the request with its header."""
    import cloudpickle
    import requests
    from tblib import pickling_support

    basic = base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    request = requests.Request("GET", "http://127.0.0.1/", headers={"Authorization": f"Basic {basic}"}).prepare()

    @keeps_secrets_out(DownloadError)
    def fetch() -> None:
        try:
            raise requests.HTTPError(f"401 for Basic {basic}", request=request)
        except requests.HTTPError as err:
            if kind == "foreign error":
                raise
            raise DownloadError("refused (HTTP 401)") from err

    with pytest.raises(DownloadError) as caught:
        fetch()
    err = caught.value
    assert err.__cause__ is None and err.__context__ is None
    assert "HTTPError" in str(err) if kind == "foreign error" else str(err) == "refused (HTTP 401)"
    pickling_support.install(err)
    blob = cloudpickle.dumps(err)
    assert basic.encode() not in blob and PASSWORD.encode() not in blob


def test_broken_netrc_is_reported_without_its_content(tmp_path: Path) -> None:
    broken = tmp_path / "netrc"
    broken.write_text(f"machine urs.earthdata.nasa.gov login me password\n{PASSWORD} extra-junk\n")
    with pytest.raises(AuthenticationError, match="not a valid .netrc") as caught:
        resolve_earthdata_credentials(env={"NETRC": str(broken)})
    assert PASSWORD not in str(caught.value) and "extra-junk" not in str(caught.value)


def test_cdse_credentials_are_optional(tmp_path: Path) -> None:
    assert resolve_cdse_credentials(env={"NETRC": str(tmp_path / "none")}) is None
    netrc = write_netrc(tmp_path / "netrc", machine="dataspace.copernicus.eu")
    found = resolve_cdse_credentials(env={"NETRC": str(netrc)})
    assert found is not None and found.username == "netrc-user"
    assert resolve_cdse_credentials({"username": "c", "password": "p"}, env={}).username == "c"  # type: ignore[union-attr]
