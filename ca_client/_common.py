"""What the remote channels (CMP, vendor HTTP) share: bounded reads of an answer, cleaning a
CA's text for messages and logs, and ordering the chain a CA sent."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ca_client.errors import ChannelUnavailable
from signcore.errors import SigncoreError
from signcore.x509 import Certificate, names_equal

MAX_TEXT_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
Bad = Callable[[str, str], NoReturn]  # (setting, reason): raises the channel's own error


def check_channel_name(name: str, bad: Bad) -> None:
    if not _CHANNEL_NAME.fullmatch(name):
        bad("name", "must be 1 to 63 lower-case letters, digits, '-' or '_'")


def check_endpoint(setting: str, url: str, bad: Bad) -> urllib.parse.SplitResult:
    """A CA endpoint from the configuration: http(s), a host, a valid port, nothing else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        bad(setting, "must be an http or https URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        bad(setting, "takes no query, fragment or user information")
    try:
        parts.port  # noqa: B018 -- raises for a port out of range
    except ValueError:
        bad(setting, "has an invalid port")
    return parts


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


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def exchange(connection: http.client.HTTPConnection, method: str, target: str, *,
             body: bytes | None, headers: dict[str, str], connect_timeout: float,
             read_timeout: float, limit: int, where: str) -> Answer:
    """One HTTP exchange on a fresh connection (closed afterwards): connect within
    ``connect_timeout`` (set on the connection), the whole answer within ``read_timeout``, at
    most ``limit`` bytes.  Every failure is a :class:`ChannelUnavailable` naming ``where``."""
    try:
        connection.connect()
        deadline = time.monotonic() + read_timeout
        sock = connection.sock  # kept: getresponse() may hand it over to the response
        assert sock is not None
        sock.settimeout(read_timeout)
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        raw = read_bounded(sock, response, deadline=deadline, limit=limit, where=where)
        return Answer(response.status, response.msg, raw)
    except TimeoutError:
        raise ChannelUnavailable(f"{where} did not answer in time (connect "
                                 f"{connect_timeout:g} s, read {read_timeout:g} s)") from None
    except ConnectionRefusedError:
        raise ChannelUnavailable(f"{where} refused the connection") from None
    except ssl.SSLError as exc:
        raise ChannelUnavailable(f"{where}: TLS failed: {clean(str(exc))}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ChannelUnavailable(f"{where}: {type(exc).__name__}: "
                                 f"{clean(str(exc)) or 'connection failed'}") from None
    finally:
        connection.close()


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
