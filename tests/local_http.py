"""A threaded HTTP server on 127.0.0.1 for the stand-ins of outside services (tests/fake_*.py)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler that logs nothing; ``self.server.state`` is the stand-in's state object."""

    server: LocalServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def send_body(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    state: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, killed processes) are part of the tests, not errors."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(handler: type[QuietHandler], state: Any) -> Iterator[int]:
    """Serve ``handler`` with ``state`` on 127.0.0.1 in a thread while the block runs; yield the port."""
    server = LocalServer(("127.0.0.1", 0), handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=handler.__name__, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
