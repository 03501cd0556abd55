"""JSON over HTTP(S) with the standard library (http.client): timeouts, retries, typed errors.

Retries, with exponential backoff and jitter (``backoff * 2**attempt``, at most
``max_backoff``, or the server's ``Retry-After`` when it is shorter than that): a connection
error or timeout, and an answer 502, 503 or 504 — but only for requests that are safe to send
twice: GET, HEAD, PUT, DELETE and OPTIONS, and a POST that carries an ``Idempotency-Key``
(the appliance answers a repeated key with the first result).  Any other POST is sent once: a
lost answer is a :class:`~medsign_sdk.errors.TransportError` and the caller decides.

Each attempt is authenticated anew (``authenticate`` is called per attempt), so a retry has a
fresh timestamp and nonce and is not refused as a replay.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from medsign_sdk._version import __version__
from medsign_sdk.errors import ProtocolError, TransportError, from_response

#: (method, target, body) -> the authentication headers of one attempt
Authenticator = Callable[[str, str, bytes], Mapping[str, str]]
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        """The body as JSON (duplicate member names are refused)."""
        try:
            return json.loads(self.body.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError) as exc:
            raise TransportError(f"the answer is not JSON: {str(exc)[:100]}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ProtocolError("a JSON member appears twice")
    return body


class Transport:
    """One appliance at ``base_url`` (``https://medsign.example/`` or with a path prefix)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, retries: int = 3,
                 backoff: float = 0.5, max_backoff: float = 8.0,
                 ssl_context: ssl.SSLContext | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url: an http(s) URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("base_url: no query, fragment or user information")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout, self.retries = timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self._ssl = ssl_context
        self._sleep = sleep

    def target(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """The request target (path and query) of an API path."""
        target = self._prefix + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                target += "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
        return target

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                json_body: Any = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None,
                authenticate: Authenticator | None = None, idempotent: bool | None = None,
                timeout: float | None = None) -> Response:
        """Send a request; the answer if it is 2xx/3xx, else the typed ApiError."""
        method = method.upper()
        target = self.target(path, query)
        all_headers = {"Accept": "application/json, application/problem+json;q=0.9, */*;q=0.1",
                       "User-Agent": f"medsign-sdk-python/{__version__}", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            all_headers.setdefault("Content-Type", "application/json")
        data = body or b""
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS or any(
                k.lower() == "idempotency-key" for k in all_headers)
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            signed = dict(all_headers)
            if authenticate is not None:
                signed.update(authenticate(method, target, data))
            last = attempt == attempts - 1
            try:
                response = self._send(method, target, data, signed, timeout or self.timeout)
            except TransportError:
                if last:
                    raise
                self._pause(attempt, None)
                continue
            if response.status in RETRY_STATUSES and not last:
                self._pause(attempt, response.headers.get("retry-after"))
                continue
            if response.status >= 400:
                raise from_response(response.status, response.body, response.content_type)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** attempt)
        delay *= 0.5 + random.random() / 2  # noqa: S311 (jitter, not a secret)
        if retry_after is not None and retry_after.strip().isdigit():
            delay = min(self.max_backoff, max(delay, float(retry_after.strip())))
        self._sleep(delay)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._ssl or ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _send(self, method: str, target: str, body: bytes, headers: Mapping[str, str],
              timeout: float) -> Response:
        connection = self._connection(timeout)
        try:
            connection.request(method, target, body=body if body or method not in (
                "GET", "HEAD", "DELETE") else None, headers={**headers, "Connection": "close"})
            answer = connection.getresponse()
            data = answer.read(MAX_RESPONSE_BYTES + 1)
            if len(data) > MAX_RESPONSE_BYTES:
                raise TransportError("the answer is too large")
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"{method} {target}: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
