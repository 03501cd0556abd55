"""A test RFC 3161 TSA: signcore.tsp builds the tokens with the test PKI's TSA key, as a callable
(TimeStampReq DER -> TimeStampResp DER) and, for the URL path, as a tiny loopback HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import itertools
from collections.abc import Iterator

from signcore import tsp
from tests.support.loopback_http import serve_loopback
from tests.support.pki import TestPKI

__all__ = ["TEST_POLICY", "TestTSA", "http_tsa"]

TEST_POLICY = "2.999.1.2"


class TestTSA:
    """Answers time-stamp requests with tokens signed by ``pki``'s TSA certificate."""

    __test__ = False

    def __init__(self, pki: TestPKI) -> None:
        self.pki = pki
        self.serials = itertools.count(1)
        self.requests = 0

    def __call__(self, request_der: bytes) -> bytes:
        request = tsp.load_request(request_der)
        self.requests += 1
        token = tsp.build_token(
            hash_algorithm=request.hash_algorithm, message_imprint=request.message_imprint,
            signer=self.pki.tsa_key, certificate=self.pki.tsa, serial_number=next(self.serials),
            policy=TEST_POLICY, nonce=request.nonce,
            extra_certificates=self.pki.chain if request.cert_req else ())
        return tsp.build_response(token)


@contextlib.contextmanager
def http_tsa(tsa: TestTSA) -> Iterator[str]:
    """Serve ``tsa`` over HTTP on loopback; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = tsa(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_loopback(Handler) as url:
        yield url + "/tsa"
