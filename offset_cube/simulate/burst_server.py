"""A local stand-in for ASF's burst service, for the offline demo: a folder of burst products
(``<SLC id>/<swath>/<pol>/<n>.tiff`` and ``.xml``, as :func:`offset_cube.burst_safe.publish_bursts` writes them)
served over HTTP on 127.0.0.1 while a block runs, with the burst search export rewritten to point at it.

The standard library's HTTP server is enough: the demo's downloads need plain GETs with a ``Content-Length``
(the downloader checks it and the byte count against the search record), nothing else of ASF's service.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from offset_cube.atomic import write_text_atomic

#: The base URL the demo's burst export is written with; :func:`serve_bursts` replaces it with the server's.
PLACEHOLDER_URL = "http://burst-server.invalid"
#: The export :func:`offset_cube.burst_safe.publish_bursts` writes, and the one served (URLs on 127.0.0.1).
PUBLISHED_EXPORT = "bursts.geojson"
SERVED_EXPORT = "search.geojson"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr (the download stage logs what it fetched)."""


@contextlib.contextmanager
def serve_bursts(folder: Path) -> Iterator[Path]:
    """Serve ``folder`` on 127.0.0.1 (a free port) while the block runs; yield the burst search export
    ``folder/search.geojson``: ``folder/bursts.geojson`` (written with :data:`PLACEHOLDER_URL`) with its URLs
    pointing at the server."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="burst-server", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        text = (folder / PUBLISHED_EXPORT).read_text(encoding="utf-8")
        yield write_text_atomic(folder / SERVED_EXPORT, text.replace(PLACEHOLDER_URL, url))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
