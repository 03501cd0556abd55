"""The SDK's request signing against the appliance's own (appliance.api.hmac_signing and
device_signing), webhook verification against the appliance's signer, the problem documents
as typed errors, and the transport's retry rules against a loopback server."""

from __future__ import annotations

import contextlib
import http.server
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.api import device_signing, hmac_signing
from appliance.services.webhooks import signature_headers
from medsign_sdk import _signing, _sm2, errors, verify_webhook
from medsign_sdk.backend import BackendClient
from medsign_sdk.phone import JsonFileStorage, MemoryStorage, parse_qr
from medsign_sdk.transport import Transport
from signcore.sm2 import SM2PublicKey
from tests.support.loopback_http import serve_loopback

SECRET = bytes(range(32))
TARGETS = ["/api/v1/sign-requests", "/api/v1/qr-sessions/abc?wait=5",
           "/api/v1/signers?name=%E5%BC%A0&status=active&limit=50",
           "/api/v1/x?b=2&a=1&a=0&c=x+y&d=%2F", "/api/v1/%E5%A4%84%E6%96%B9?q="]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("algorithm", ["SM3", "SHA256"])
def test_backend_signature_equals_the_appliance_s(target: str, algorithm: str) -> None:
    body = json.dumps({"title": "处方"}, ensure_ascii=False).encode()
    ours = _signing.hmac_headers("POST", target, body, key_id="app_1", secret=SECRET,
                                 algorithm=algorithm, timestamp=1_790_000_000,
                                 nonce="n" * 24)
    theirs = hmac_signing.sign_request("POST", target, key_id="app_1", secret=SECRET,
                                       body=body, algorithm=hmac_signing.Algorithm[algorithm],
                                       timestamp=1_790_000_000, nonce="n" * 24)
    assert ours == theirs


@pytest.mark.parametrize("target", TARGETS)
def test_device_signature_verifies_as_the_appliance_checks_it(target: str) -> None:
    key = _sm2.new_private_key()
    headers = _signing.device_headers("GET", target, b"", device_id="dv_abc", key=key,
                                      timestamp=1_790_000_000, nonce="m" * 24)
    device_id, signature = device_signing.parse_authorization(headers["Authorization"])
    assert device_id == "dv_abc"
    path, _, query = target.partition("?")
    import urllib.parse  # noqa: PLC0415

    message = device_signing.string_to_sign(
        method="GET", decoded_path=urllib.parse.unquote(path), query=query, body=b"",
        timestamp="1790000000", nonce="m" * 24)
    public = SM2PublicKey.from_point(_sm2.public_point(key))
    assert device_signing.signature_matches(public, message, signature)


def _webhook(secret: bytes = SECRET, *, timestamp: int | None = None,
             body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    event = {"id": "0b7c7e52-5b1e-4c55-9a66-1a4f1c1e2d3f", "type": "sign_request.completed",
             "created_at": "2026-09-21T08:00:00+00:00",
             "data": {"sign_request_id": "r1", "status": "completed"}}
    raw = body if body is not None else json.dumps(event, ensure_ascii=False).encode()
    headers = signature_headers(key_id="app_1", secret=secret, event_id=event["id"],  # type: ignore[arg-type]
                                event_type="sign_request.completed", body=raw,
                                timestamp=int(time.time()) if timestamp is None else timestamp)
    return headers, raw


def test_webhooks_verify_and_forgeries_do_not() -> None:
    headers, body = _webhook()
    event = verify_webhook(headers, body, SECRET)
    assert event.type == "sign_request.completed" and event.data["sign_request_id"] == "r1"
    assert event.key_id == "app_1"
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_webhook(lower, body, _b64url(SECRET)).id == event.id
    client = BackendClient("http://127.0.0.1:1", "app_1", SECRET)
    assert client.verify_webhook(headers, body).id == event.id
    with pytest.raises(errors.WebhookError):
        BackendClient("http://127.0.0.1:1", "app_2", SECRET).verify_webhook(headers, body)
    forgeries = [
        (headers, body + b" "),
        (headers, body.replace(b"completed", b"cancelled")),
        ({**headers, "X-Medsign-Event-Id": "another"}, body),
        _webhook(bytes(32)),
        _webhook(timestamp=int(time.time()) - 301),
        _webhook(timestamp=int(time.time()) + 301),
        ({k: v for k, v in headers.items() if k != "X-Medsign-Signature"}, body),
        ({**headers, "X-Medsign-Signature": "MEDSIGN-HMAC-SHA256 " + headers[
            "X-Medsign-Signature"].split(" ", 1)[1]}, body),
    ]
    for forged_headers, forged_body in forgeries:
        with pytest.raises(errors.WebhookError):
            verify_webhook(forged_headers, forged_body, SECRET)
    old_headers, old_body = _webhook(timestamp=int(time.time()) - 3000)
    assert verify_webhook(old_headers, old_body, SECRET, max_age=3600).id == event.id


def _b64url(data: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_problem_documents_become_typed_errors() -> None:
    def problem(status: int, code: str, **extra: Any) -> errors.ApiError:
        body = json.dumps({"type": f"https://medsign.local/problems/{code}", "title": "t",
                           "status": status, "detail": "d", "code": code,
                           "instance": "/x", **extra}).encode()
        return errors.from_response(status, body, "application/problem+json")

    wrong = problem(403, "pin-wrong", attempts_left=7)
    assert isinstance(wrong, errors.PinWrong) and isinstance(wrong, errors.Forbidden)
    assert wrong.attempts_left == 7 and wrong.code == "pin-wrong" and wrong.detail == "d"
    assert isinstance(problem(423, "pin-locked"), errors.PinLocked)
    assert isinstance(problem(404, "not-found"), errors.NotFound)
    assert isinstance(problem(409, "idempotency-conflict"), errors.Conflict)
    assert isinstance(problem(400, "validation-failed", errors=[]), errors.ValidationFailed)
    assert isinstance(problem(422, "x"), errors.ValidationFailed)
    assert isinstance(problem(401, "replay"), errors.Unauthorized)
    assert isinstance(problem(503, "sealed"), errors.ServerError)
    assert problem(400, "x", errors=[1]).extensions == {"errors": [1], "instance": "/x"}
    html = errors.from_response(502, b"<html>bad gateway</html>", "text/html")
    assert isinstance(html, errors.ServerError) and html.code == "http-502"
    assert "bad gateway" in html.detail


# --- the transport's retry rules -------------------------------------------------------------


class _Flaky:
    """A loopback server answering ``statuses`` in turn (then 200 with a JSON body), from
    construction until :meth:`stop`."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                flaky.requests.append((self.command, self.path, dict(self.headers)))
                status = flaky.statuses.pop(0) if flaky.statuses else 200
                body = json.dumps({"ok": status} if status < 400 else {
                    "code": "busy", "status": status, "title": "busy"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if status < 400
                                 else "application/problem+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815

            def log_message(self, *_args: Any) -> None:
                pass

        self._serving = contextlib.ExitStack()
        self.url = self._serving.enter_context(serve_loopback(Handler))

    def stop(self) -> None:
        self._serving.close()


@pytest.fixture
def flaky() -> Iterator[_Flaky]:
    server = _Flaky()
    yield server
    server.stop()


def test_gets_and_idempotent_posts_are_retried_others_are_not(flaky: _Flaky) -> None:
    pauses: list[float] = []
    transport = Transport(flaky.url, retries=3, backoff=0.1, sleep=pauses.append)
    nonces: list[str] = []

    def sign(method: str, target: str, body: bytes) -> dict[str, str]:
        nonces.append(_signing.new_nonce())
        return {"X-Medsign-Nonce": nonces[-1]}

    flaky.statuses = [503, 502]
    assert transport.request("GET", "/a", authenticate=sign).json() == {"ok": 200}
    assert len(flaky.requests) == 3 and len(set(nonces)) == 3  # signed anew every time
    assert len(pauses) == 2 and pauses[0] <= 0.1 and pauses[1] <= 0.2
    flaky.requests.clear()
    flaky.statuses = [503]
    with pytest.raises(errors.ServerError) as refused:
        transport.request("POST", "/b", json_body={"x": 1})
    assert refused.value.status == 503 and len(flaky.requests) == 1
    flaky.requests.clear()
    flaky.statuses = [504, 503]
    answer = transport.request("POST", "/c", json_body={}, headers={"Idempotency-Key": "k1"})
    assert answer.status == 200 and len(flaky.requests) == 3
    assert all(r[2]["Idempotency-Key"] == "k1" for r in flaky.requests)
    flaky.requests.clear()
    flaky.statuses = [503] * 10
    with pytest.raises(errors.ServerError):
        transport.request("GET", "/d")
    assert len(flaky.requests) == 4  # the first try and 3 retries
    flaky.statuses = [404]
    with pytest.raises(errors.NotFound):
        transport.request("GET", "/e")


def test_connection_errors_are_retried_then_reported() -> None:
    pauses: list[float] = []
    transport = Transport("http://127.0.0.1:9", retries=2, backoff=0.01, sleep=pauses.append,
                          timeout=2)
    with pytest.raises(errors.TransportError):
        transport.request("GET", "/x")
    assert len(pauses) == 2
    pauses.clear()
    with pytest.raises(errors.TransportError):
        transport.request("POST", "/x", json_body={})
    assert pauses == []  # a POST without an Idempotency-Key is sent once


def test_base_url_prefix_and_query(flaky: _Flaky) -> None:
    transport = Transport(flaky.url + "/medsign/", retries=0)
    transport.request("GET", "/api/v1/signers", query={"name": "张 三", "limit": 5,
                                                       "status": None, "unread": True})
    assert flaky.requests[-1][1] == ("/medsign/api/v1/signers?name=%E5%BC%A0%20%E4%B8%89"
                                     "&limit=5&unread=true")
    with pytest.raises(ValueError):
        Transport("ftp://host/")


def test_storage_adapters_and_qr_uris(tmp_path: Any) -> None:
    path = tmp_path / "phone" / "state.json"
    storage = JsonFileStorage(path)
    assert storage.get("a") is None
    storage.set("a", "1")
    storage.set("b", "2")
    storage.set("a", None)
    assert JsonFileStorage(path).get("b") == "2" and JsonFileStorage(path).get("a") is None
    assert path.stat().st_mode & 0o777 == 0o600
    memory = MemoryStorage()
    memory.set("x", "y")
    assert memory.get("x") == "y"
    session = "0b7c7e52-5b1e-4c55-9a66-1a4f1c1e2d3f"
    assert parse_qr(f"medsign://qr?session={session}") == session
    assert parse_qr(session) == session
    for bad in ("medsign://qr?x=1", "../../etc", "medsign://qr?session=a/b"):
        with pytest.raises(ValueError):
            parse_qr(bad)
