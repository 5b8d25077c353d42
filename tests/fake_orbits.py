"""Local stand-ins for the orbit services: ASF's S3 bucket (a recorded listing) and Copernicus Data Space.

The bucket answers S3 ``ListObjects`` (v1: ``prefix``, ``marker``, ``IsTruncated``, in the XML of the recorded
listing, tests/data/s1-orbits-listing-2025-03.txt) with small pages so paging is exercised, and serves object
bodies the test provides. The CDSE stand-in answers the OData catalogue search, the password-grant token
request and the ``$value`` download, in the formats sentineleof's recorded cassettes show.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

from offset_cube.eof import EofName
from tests.local_http import QuietHandler, serve

LISTING = Path(__file__).parent / "data" / "s1-orbits-listing-2025-03.txt"
OWNER = "<Owner><ID>b08a1626ed97f49e63483aa60000f3c316bf6eb598048d1098af32b4f00aac48</ID></Owner>"


@dataclass
class ListedObject:
    key: str
    last_modified: str
    etag: str
    size: int


def recorded_listing() -> list[ListedObject]:
    rows = [line.split() for line in LISTING.read_text().splitlines() if line and not line.startswith("#")]
    return [ListedObject(key, modified, etag, int(size)) for key, modified, etag, size in rows]


@dataclass
class FakeOrbitServer:
    port: int = 0
    objects: dict[str, ListedObject] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    page_size: int = 7
    listing_failures: list[int] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    cdse_user: tuple[str, str] = ("cdse-user", "cdse-PASSWORD-9876")
    cdse_products: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    cdse_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def put(self, key: str, body: bytes) -> None:
        """Serve ``body`` at ``key`` and list it with its real size and md5 ETag."""
        self.bodies[key] = body
        previous = self.objects.get(key)
        modified = previous.last_modified if previous else "2025-03-01T00:00:00.000Z"
        self.objects[key] = ListedObject(key, modified, hashlib.md5(body).hexdigest(), len(body))

    def add_cdse(self, name: str, body: bytes) -> None:
        self.cdse_products[name] = (str(uuid.uuid4()), body)

    def count(self, prefix: str) -> int:
        return sum(n for path, n in self.requests.items() if path.startswith(prefix))


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        fake: FakeOrbitServer = self.server.state
        url = urlparse(self.path)
        with fake.lock:
            fake.requests[url.path] += 1
        query = parse_qs(url.query)
        if url.path == "/":
            self._list(fake, query.get("prefix", [""])[0], query.get("marker", [""])[0])
        elif url.path.startswith("/AUX_"):
            body = fake.bodies.get(url.path.lstrip("/"))
            self.send_body(200 if body is not None else 404, body if body is not None else b"NoSuchKey")
        elif url.path == "/odata/v1/Products":
            self._cdse_search(fake, query.get("$filter", [""])[0])
        elif url.path.startswith("/zipper/Products("):
            self._cdse_download(fake, url.path)
        else:
            self.send_body(404, b"not found")

    def do_POST(self) -> None:
        fake: FakeOrbitServer = self.server.state
        with fake.lock:
            fake.requests[self.path] += 1
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode())
        given = (form.get("username", [""])[0], form.get("password", [""])[0])
        if self.path != "/token" or form.get("client_id") != ["cdse-public"] or given != fake.cdse_user:
            self.send_body(401, b'{"error":"invalid_grant"}')
            return
        self.send_body(200, json.dumps({"access_token": fake.cdse_token, "token_type": "Bearer"}).encode())

    def _list(self, fake: FakeOrbitServer, prefix: str, marker: str) -> None:
        if fake.listing_failures:
            self.send_body(fake.listing_failures.pop(0), b"<Error><Code>InternalError</Code></Error>")
            return
        keys = sorted(k for k in fake.objects if k.startswith(prefix) and k > marker)
        page, truncated = keys[: fake.page_size], len(keys) > fake.page_size
        contents = "".join(
            f"<Contents><Key>{escape(o.key)}</Key><LastModified>{o.last_modified}</LastModified>"
            f"<ETag>&quot;{o.etag}&quot;</ETag><Size>{o.size}</Size>{OWNER}"
            "<StorageClass>INTELLIGENT_TIERING</StorageClass></Contents>"
            for o in (fake.objects[k] for k in page)
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>s1-orbits</Name>'
            f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker><MaxKeys>{fake.page_size}</MaxKeys>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{contents}</ListBucketResult>"
        )
        self.send_body(200, body.encode())

    def _cdse_search(self, fake: FakeOrbitServer, query: str) -> None:
        mission = re.search(r"startswith\(Name,'(S1[A-D])'\)", query)
        kind = re.search(r"contains\(Name,'(AUX_\w+)'\)", query)
        start = re.search(r"ContentDate/Start lt '([^']+)'", query)
        stop = re.search(r"ContentDate/End gt '([^']+)'", query)
        if not (mission and kind and start and stop):
            self.send_body(400, b'{"detail":"bad filter"}')
            return
        value = []
        for name, (product_id, _) in fake.cdse_products.items():
            parsed = EofName.parse(name)
            begin, end = (
                parsed.valid_start.strftime("%Y-%m-%dT%H:%M:%S"),
                parsed.valid_stop.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            if (
                name.startswith(mission.group(1))
                and kind.group(1) in name
                and begin < start.group(1)
                and end > stop.group(1)
            ):
                value.append({"@odata.mediaContentType": "application/octet-stream", "Id": product_id, "Name": name})
        self.send_body(200, json.dumps({"@odata.context": "$metadata#Products", "value": value}).encode())

    def _cdse_download(self, fake: FakeOrbitServer, path: str) -> None:
        if self.headers.get("Authorization") != f"Bearer {fake.cdse_token}":
            self.send_body(401, b"unauthorised")
            return
        wanted = path.removeprefix("/zipper/Products(").removesuffix(")/$value")
        for product_id, body in fake.cdse_products.values():
            if product_id == wanted:
                self.send_body(200, body)
                return
        self.send_body(404, b"no such product")


@contextmanager
def serve_orbits(fake: FakeOrbitServer | None = None) -> Iterator[FakeOrbitServer]:
    """Run the fake orbit services on 127.0.0.1 while the block runs; the recorded listing is pre-loaded."""
    fake = fake or FakeOrbitServer()
    if not fake.objects:
        fake.objects = {o.key: o for o in recorded_listing()}
    with serve(_Handler, fake) as port:
        fake.port = port
        yield fake
