"""Stand-ins for the model hub on localhost: one that never answers, one that answers 404 to everything."""

from __future__ import annotations

import http.server
import socket
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def silent_hub() -> Iterator[str]:
    """Accepts connections (the kernel's backlog does) but never answers: a network that swallows requests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args) -> None:
        pass


@contextmanager
def empty_hub() -> Iterator[str]:
    """A reachable hub that has none of the files: every download fails at once."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
