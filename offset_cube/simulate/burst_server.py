"""A local stand-in for ASF's burst service, for the offline demo: a folder of burst products
(``<SLC id>/<swath>/<pol>/<n>.tiff`` and ``.xml``, as :func:`offset_cube.burst_safe.publish_bursts` writes them)
served over HTTP on 127.0.0.1, with the burst search export rewritten to point at it."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from offset_cube.atomic import write_text_atomic

#: The base URL :func:`offset_cube.burst_safe.publish_bursts` is given for a stack that will be served locally.
PLACEHOLDER_URL = "http://burst-server.invalid"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr (the download stage logs what it fetched)."""


@contextlib.contextmanager
def serve_bursts(folder: Path) -> Iterator[Path]:
    """Serve ``folder`` on 127.0.0.1 (a free port) while the block runs; yield the burst search export
    (``folder/search.geojson``) whose URLs point at the server."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="burst-server", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        text = (folder / "bursts.geojson").read_text(encoding="utf-8")
        yield write_text_atomic(folder / "search.geojson", text.replace(PLACEHOLDER_URL, url))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
