"""A local stand-in for ASF's datapool and Earthdata Login, for driving the real asf_search download code.

It mimics the real exchange (asf_search's ``ASFSession`` with ASF's datapool and Earthdata Login):
``GET /data/<file>`` without the ``asf-urs`` cookie redirects to the login host (``localhost``, so that it is
another host than ``127.0.0.1``) at ``/oauth/authorize``, which checks HTTP basic credentials and redirects back to
``/login`` on the data host, which sets the cookie and redirects to the file. A valid ``Authorization: Bearer``
token is served directly. Failures can be queued per file: ``500``, ``cut`` (connection closed at 50 %), ``corrupt``
(one byte flipped), ``stall`` (half sent, then silence), ``trickle`` (one byte a second), ``html`` (a login web page
with status 200). With ``echo`` set, every refusal of the login host and every ``500`` quotes back the credentials
it was sent (header and decoded), as a careless server might.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import threading
import zipfile
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from offset_cube.scenes import Scene
from tests.local_http import QuietHandler, serve

PRODUCT = "S1A_IW_SLC__1SDV_20221011T162212_20221011T162240_045397_056D9F_6E2D"
CHUNK = 64 * 1024


def small_safe_zip(product: str = PRODUCT, payload_bytes: int = 400_000, seed: int = 0) -> bytes:
    """A small SAFE-structured zip (manifest, annotation, incompressible measurement) as bytes."""
    stamp = product.split("_")[5].lower()
    swath = f"s1a-iw1-slc-vv-{stamp}-{stamp}-045397-056d9f-004"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{product}.SAFE/manifest.safe", "<xfdu:XFDU/>")
        archive.writestr(f"{product}.SAFE/annotation/{swath}.xml", "<product/>")
        archive.writestr(f"{product}.SAFE/measurement/{swath}.tiff", random.Random(seed).randbytes(payload_bytes))
    return buffer.getvalue()


@dataclass
class FakeAsf:
    """State of the fake servers: files, accepted credentials, queued failures and what was asked."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    username: str = "offset-user"
    password: str = "s3cret-PASSWORD-value"
    token: str = "token-ABCDEF-0123456789"
    failures: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    downloads_started: Counter[str] = field(default_factory=Counter)
    logins: list[str] = field(default_factory=list)
    authorization_seen_by_data_host: list[str] = field(default_factory=list)
    echo: bool = False
    last_authorization: str = ""
    active: int = 0
    max_active: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/data"

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` as ``/data/<name>``; return its URL."""
        self.files[name] = data
        return f"{self.data_url}/{name}"

    def scene(self, product: str = PRODUCT, data: bytes | None = None, **overrides: Any) -> Scene:
        """A scene record whose URL, size and md5 point at a file served here (as ASF search metadata would)."""
        data = small_safe_zip(product) if data is None else data
        url = self.add(f"{product}.zip", data)
        fields: dict[str, Any] = {
            "flight_direction": "ASCENDING",
            "url": url,
            "size_bytes": len(data),
            "md5": hashlib.md5(data).hexdigest(),
        }
        fields.update(overrides)
        return Scene.from_fields(product, **fields)


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        fake: FakeAsf = self.server.state
        url = urlparse(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        if url.path == "/oauth/authorize" and host == "localhost":
            self._authorize(fake, url.query)
        elif url.path == "/login":
            query = parse_qs(url.query)
            self.send_body(302, b"", {"Location": query["state"][0], "Set-Cookie": "asf-urs=granted; Path=/"})
        elif url.path.startswith("/data/"):
            self._data(fake, url.path)
        else:
            self.send_body(404, b"not found")

    def _authorize(self, fake: FakeAsf, query: str) -> None:
        expected = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        given = self.headers.get("Authorization", "")
        fake.logins.append(given)
        fake.last_authorization = given
        if given != f"Basic {expected}":
            self.send_body(401, b"HTTP Basic: Access denied." + _echo(fake, given))
            return
        params = parse_qs(query)
        self.send_body(302, b"", {"Location": f"{params['redirect_uri'][0]}?code=abc&state={params['state'][0]}"})

    def _data(self, fake: FakeAsf, path: str) -> None:
        name = path.removeprefix("/data/")
        authorization = self.headers.get("Authorization", "")
        if authorization:
            fake.authorization_seen_by_data_host.append(authorization)
        if name not in fake.files:
            self.send_body(404, b"no such file")
            return
        cookie_ok = "asf-urs=granted" in (self.headers.get("Cookie") or "")
        if not cookie_ok and authorization != f"Bearer {fake.token}":
            if authorization.startswith("Bearer"):
                self.send_body(401, b"Invalid token")
                return
            redirect = f"http://127.0.0.1:{fake.port}/login"
            location = f"http://localhost:{fake.port}/oauth/authorize?redirect_uri={redirect}&state={path}"
            self.send_body(302, b"", {"Location": location})
            return
        with fake.lock:
            behaviour = fake.failures[name].popleft() if fake.failures[name] else "ok"
            fake.downloads_started[name] += 1
        if behaviour == "500":
            self.send_body(500, b"Internal Server Error" + _echo(fake, fake.last_authorization))
        elif behaviour == "html":
            self.send_body(200, b"<!DOCTYPE html><html><body>Please accept the EULA</body></html>")
        else:
            self._stream(fake, fake.files[name], behaviour)

    def _stream(self, fake: FakeAsf, data: bytes, behaviour: str) -> None:
        if behaviour == "corrupt":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        limit = len(data) // 2 if behaviour in ("cut", "stall") else len(data)
        with fake.lock:
            fake.active += 1
            fake.max_active = max(fake.max_active, fake.active)
        try:
            if behaviour == "trickle":  # a byte a second: every socket read returns well within its timeout
                for offset in range(len(data)):
                    self.wfile.write(data[offset : offset + 1])
                    self.wfile.flush()
                    if fake.release.wait(timeout=1.0):
                        break
                limit = 0
            for offset in range(0, limit, CHUNK):
                self.wfile.write(data[offset : min(offset + CHUNK, limit)])
            self.wfile.flush()
            if behaviour == "stall":
                fake.release.wait(timeout=30)
            if behaviour in ("cut", "stall"):
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with fake.lock:
                fake.active -= 1


def _echo(fake: FakeAsf, authorization: str) -> bytes:
    """What an echoing server adds to an error page: the Authorization header and its decoded credentials."""
    if not fake.echo or not authorization.startswith("Basic "):
        return b""
    decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode("utf-8", errors="replace")
    return f" You sent: Authorization: {authorization} ({decoded})".encode()


@contextmanager
def serve_fake_asf(fake: FakeAsf | None = None) -> Iterator[FakeAsf]:
    """Run the fake ASF on 127.0.0.1 (also reachable as ``localhost``) in a thread while the block runs."""
    fake = fake or FakeAsf()
    with serve(_Handler, fake) as port:
        fake.port = port
        try:
            yield fake
        finally:
            fake.release.set()  # let stalled transfers end
