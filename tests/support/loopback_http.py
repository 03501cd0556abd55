"""A throwaway HTTP server on loopback for tests that play a remote party (a TSA, an OCSP
responder, a CRL point, a webhook receiver): started in a thread, stopped when the block ends.

A fake that must outlive one ``with`` block (built in a fixture, stopped by a test to play an
outage) enters one of these on a :class:`contextlib.ExitStack` and closes the stack to stop."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serve_loopback_server(handler: type[http.server.BaseHTTPRequestHandler], *,
                          poll_interval: float = 0.5) -> Iterator[http.server.ThreadingHTTPServer]:
    """The server itself (for its port, or to shut it down early) answering with ``handler``
    until the block ends; a shutdown is noticed within ``poll_interval`` seconds."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()  # returns at once if the test already shut it down
        server.server_close()
        thread.join(5)


def loopback_url(server: http.server.HTTPServer) -> str:
    """``http://127.0.0.1:PORT`` of ``server``."""
    return f"http://127.0.0.1:{server.server_address[1]}"


@contextlib.contextmanager
def serve_loopback(handler: type[http.server.BaseHTTPRequestHandler], *,
                   poll_interval: float = 0.5) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a server answering with ``handler`` until the block ends
    (see :func:`serve_loopback_server`)."""
    with serve_loopback_server(handler, poll_interval=poll_interval) as server:
        yield loopback_url(server)
