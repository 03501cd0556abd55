"""What the remote channels (CMP, vendor HTTP) share: bounded reads of an answer, cleaning a
CA's text for messages and logs, and ordering the chain a CA sent."""

from __future__ import annotations

import http.client
import re
import socket
import time

from ca_client.errors import ChannelUnavailable
from signcore.errors import SigncoreError
from signcore.x509 import Certificate, names_equal

MAX_TEXT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean(text: str) -> str:
    """A CA's text, safe in an error message and a log line (no control characters, short)."""
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."


def read_bounded(sock: socket.socket, response: http.client.HTTPResponse, *, deadline: float,
                 limit: int, where: str) -> bytes:
    """The answer's body: at most ``limit`` bytes, all of it before ``deadline`` (monotonic),
    so a CA trickling bytes cannot hold the caller longer than the read timeout; TimeoutError
    after the deadline."""
    length = response.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise ChannelUnavailable(f"{where} sent an answer over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = response.read1(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ChannelUnavailable(f"{where} sent an answer over {limit} bytes")


def signed_by(certificate: Certificate, issuer: Certificate) -> bool:
    if not names_equal(certificate.issuer_name, issuer.subject_name):
        return False
    try:
        certificate.verify_signature(issuer.public_key())
    except (SigncoreError, ValueError):
        return False
    return True


def ordered_chain(certificate: Certificate, pool: list[Certificate]) -> tuple[Certificate, ...]:
    """The chain from the issuing CA upwards, whatever order the CA sent it in; certificates
    of the answer that are not in the chain are dropped."""
    chain: list[Certificate] = []
    current = certificate
    remaining = [c for c in dict.fromkeys(pool) if c != certificate]
    while remaining:
        issuer = next((c for c in remaining if c.is_ca and signed_by(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        remaining.remove(issuer)
        if issuer.is_self_issued:
            break
        current = issuer
    return tuple(chain)
