"""Earthdata (and optional Copernicus Data Space) credentials: where they come from, and keeping them secret.

Resolution order, first found wins (never a prompt, so scheduled runs behave like interactive ones):

1. the value of a Prefect Secret block named in the job (the task layer loads the block and passes its value
   here; this module does not import Prefect),
2. environment variables (``EARTHDATA_USERNAME`` + ``EARTHDATA_PASSWORD``, or ``EARTHDATA_TOKEN``),
3. a ``.netrc`` file (``$NETRC`` or ``~/.netrc``), ``machine urs.earthdata.nasa.gov``.

Secret values are held in :class:`pydantic.SecretStr`, whose ``repr``/``str`` print ``**********``; messages
built here name only where credentials came from, never their values.

Errors of code that holds credentials leave through :func:`keeps_secrets_out`: Prefect pickles a failed task's
exception into its result file, and with ``tblib`` installed (dask does so) that pickle includes the chained
``__cause__``/``__context__`` — a ``requests`` error holding the request with its ``Authorization`` header.
"""

from __future__ import annotations

import base64
import functools
import json
import netrc
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

from offset_cube.errors import AuthenticationError, OffsetCubeError

P = ParamSpec("P")
R = TypeVar("R")
#: An HTTP authorization value as servers may quote it back (``Basic dXNlcjpwYXNz``, ``Bearer eyJ...``).
_AUTH_VALUE = re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+", re.IGNORECASE)

#: Earthdata Login host; ASF's download redirects send credentials only here (asf_search ``ASFSession``).
EDL_HOST = "urs.earthdata.nasa.gov"
#: The ``.netrc`` machine of Copernicus Data Space, as sentineleof and ISCE2's fetchOrbit.py use it.
CDSE_HOST = "dataspace.copernicus.eu"

EARTHDATA_HOW_TO = (
    "provide Earthdata credentials in one of three ways: (1) a Prefect Secret block named in the job's "
    "download.earthdata_secret holding 'user:password', a token, or {{'username': ..., 'password': ...}} "
    "(`offset-cube credentials save-secret NAME`); (2) environment variables EARTHDATA_USERNAME and "
    "EARTHDATA_PASSWORD, or EARTHDATA_TOKEN; (3) a .netrc file ({netrc}; the NETRC variable may name another) "
    "with the line 'machine {host} login USER password PASSWORD'. Accounts: https://urs.earthdata.nasa.gov"
)


class MissingCredentialsError(AuthenticationError):
    """No credentials were found in any of the places they may come from."""


class Credentials(BaseModel):
    """A login (username + password) or a bearer token, and where it was found. Repr never shows secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @property
    def has_login(self) -> bool:
        return bool(self.username and self.password)

    def secret_values(self) -> list[str]:
        """The raw secrets and their HTTP basic-auth encoding (for redaction only)."""
        values = [s.get_secret_value() for s in (self.password, self.token) if s is not None and s.get_secret_value()]
        if self.username and self.password is not None:
            login = f"{self.username}:{self.password.get_secret_value()}"
            values += [login, base64.b64encode(login.encode()).decode()]
        return sorted(values, key=len, reverse=True)  # the longest first: a login contains its password

    def redact(self, text: str) -> str:
        """``text`` without secrets (for messages that quote a server's reply)."""
        return redact(text, self.secret_values())


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with each of ``secrets`` and every quoted ``Basic``/``Bearer`` credential replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _AUTH_VALUE.sub(lambda m: f"{m.group(1)} ***", text)


def keeps_secrets_out(
    wrap: Callable[[str], OffsetCubeError],
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate code that handles credentials so that no error it raises carries them on.

    The project's own errors leave with no ``__cause__``, ``__context__`` or traceback (the chain would hold
    the ``requests`` objects, with headers, that their clean message replaces); any other error becomes
    ``wrap(message)`` naming its type and its redacted text. The error is raised outside the ``except``
    clause, so that Python does not attach the caught error as its ``__context__`` again.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            failure: OffsetCubeError
            try:
                return func(*args, **kwargs)
            except OffsetCubeError as err:
                failure = err
            except Exception as err:  # any error escaping code that holds a login is cleaned, not kept
                failure = wrap(f"{type(err).__name__}: {redact(str(err))}")
            raise detached(failure)

        return guarded

    return decorate


def detached(error: OffsetCubeError) -> OffsetCubeError:
    """``error`` without its chained cause, context and traceback (see :func:`keeps_secrets_out`)."""
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = True
    return error.with_traceback(None)


def credentials_from_value(value: Any, source: str) -> Credentials:
    """Credentials from a Secret block value: ``'user:password'``, a bare token, or a mapping.

    Mappings may hold ``username`` + ``password`` or ``token`` (a JSON string of such a mapping works too).
    """
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            # ``from None``: the decode error keeps the whole document (the secret) as an attribute.
            raise AuthenticationError(f"{source} holds text that starts like JSON but does not parse") from None
    if isinstance(value, Mapping):
        username, password, token = value.get("username"), value.get("password"), value.get("token")
        if username and password:
            return Credentials(source=source, username=str(username), password=SecretStr(str(password)))
        if token:
            return Credentials(source=source, token=SecretStr(str(token)))
        raise AuthenticationError(
            f"{source} must hold 'username' and 'password', or 'token' (found keys {sorted(value)})"
        )
    if isinstance(value, str) and value.strip():
        text = value.strip()
        user, sep, password = text.partition(":")
        if sep and user and password:
            return Credentials(source=source, username=user, password=SecretStr(password))
        if not sep and " " not in text:
            return Credentials(source=source, token=SecretStr(text))
    raise AuthenticationError(f"{source} must hold 'user:password', a token, or a mapping with username/password")


def credentials_from_env(env: Mapping[str, str], prefix: str) -> Credentials | None:
    """``<PREFIX>_USERNAME`` + ``<PREFIX>_PASSWORD``, else ``<PREFIX>_TOKEN``; None when neither is set."""
    username, password = env.get(f"{prefix}_USERNAME", ""), env.get(f"{prefix}_PASSWORD", "")
    if username and password:
        return Credentials(
            source=f"environment ({prefix}_USERNAME/{prefix}_PASSWORD)", username=username, password=SecretStr(password)
        )
    token = env.get(f"{prefix}_TOKEN", "")
    if token:
        return Credentials(source=f"environment ({prefix}_TOKEN)", token=SecretStr(token))
    return None


def netrc_file(env: Mapping[str, str]) -> Path:
    """The ``.netrc`` that requests and curl would read: ``$NETRC``, else ``~/.netrc``."""
    named = env.get("NETRC")
    if named:
        return Path(named).expanduser()
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".netrc"


def credentials_from_netrc(path: Path, host: str) -> Credentials | None:
    """Login and password of ``machine host`` in ``path``, else of its ``default`` entry; None when absent.

    The source names which entry it was. Either is used for ``host`` only: the download session never lets
    ``requests`` apply ``.netrc`` itself, which would send a ``default`` login to every host it meets.
    """
    if not path.is_file():
        return None
    try:
        hosts = netrc.netrc(str(path)).hosts
    except netrc.NetrcParseError as err:
        # The parser's own message can quote a token of the file (a password), so only its line is named.
        raise AuthenticationError(f"{path} is not a valid .netrc file (parse error near line {err.lineno})") from None
    except OSError as err:
        raise AuthenticationError(f"{path} cannot be read: {err.strerror or type(err).__name__}") from None
    entry, label = hosts.get(host), f"machine {host}"
    if entry is None:
        # Python's netrc keeps the ``default`` entry under that name (Lib/netrc.py).
        entry, label = hosts.get("default"), f"default entry, used for {host} only"
    if entry is None:
        return None
    login, _account, password = entry
    if not (login and password):
        return None
    return Credentials(source=f"{path} ({label})", username=login, password=SecretStr(password))


def resolve_earthdata_credentials(
    secret_value: Any = None,
    secret_source: str = "Prefect Secret block",
    env: Mapping[str, str] | None = None,
    missing_note: str = "",
) -> Credentials:
    """Earthdata credentials, first found wins: Secret block value, environment, ``.netrc``.

    Raises :class:`MissingCredentialsError` naming the three ways (and ``missing_note``, e.g. that a named
    block was not found) when none holds any.
    """
    env = os.environ if env is None else env
    if secret_value is not None:
        return credentials_from_value(secret_value, secret_source)
    found = credentials_from_env(env, "EARTHDATA")
    if found is not None:
        return found
    path = netrc_file(env)
    found = credentials_from_netrc(path, EDL_HOST)
    if found is not None:
        return found
    note = f"{missing_note}; " if missing_note else ""
    raise MissingCredentialsError(
        f"no Earthdata credentials found for downloading from ASF: {note}"
        + EARTHDATA_HOW_TO.format(host=EDL_HOST, netrc=path)
    )


def resolve_cdse_credentials(secret_value: Any = None, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Copernicus Data Space credentials if configured (Secret block value, CDSE_* variables, ``.netrc``)."""
    env = os.environ if env is None else env
    if secret_value is not None:
        return credentials_from_value(secret_value, "Prefect Secret block (orbits.cdse_secret)")
    found = credentials_from_env(env, "CDSE")
    if found is not None:
        return found
    return credentials_from_netrc(netrc_file(env), CDSE_HOST)
