"""Local fakes of the notification providers, written from their public documentation (not
from our adapters), for ``appliance.services.notify``:

- Tencent Cloud SMS API 3.0 (``SendSms``, version 2021-01-11): checks the TC3-HMAC-SHA256
  signature (recomputed here step by step from the documentation: canonical request, string
  to sign, derived key), the action, version and timestamp window, and answers
  ``Response.SendStatusSet`` or ``Response.Error``;
- WeChat: ``/cgi-bin/token`` (client_credential) issues access tokens; ``/cgi-bin/message/
  subscribe/send`` checks the token (40001 when unknown), the JSON shape, and answers errcode.

``mode`` makes them misbehave: ``auth`` (SMS signature refused), ``refuse`` (one number
refused), ``busy`` (SMS LimitExceeded / WeChat -1), ``revoke-token`` (the next send finds the
token invalid once), ``unsubscribed`` (WeChat 43101).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.server
import json
import secrets
import time
import urllib.parse
from typing import Any

from tests.support.loopback_http import serve_loopback


class _Server:
    """Serves from construction until :meth:`stop`."""

    def __init__(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self, "GET", b"")

            def do_POST(self) -> None:
                owner._answer(self, "POST",
                              self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def log_message(self, *_args: Any) -> None:
                pass

        self.mode = ""
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self._serving = contextlib.ExitStack()
        self.base = self._serving.enter_context(serve_loopback(Handler))

    def stop(self) -> None:
        self._serving.close()

    def _answer(self, handler: Any, method: str, body: bytes) -> None:
        status, answer = self.handle(handler, method, body)
        data = json.dumps(answer, ensure_ascii=False).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler: Any, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError


class FakeTencentSms(_Server):
    def __init__(self, secret_id: str, secret_key: str) -> None:
        super().__init__()
        self.secret_id, self.secret_key = secret_id, secret_key

    def _expected_signature(self, handler: Any, body: bytes, timestamp: str) -> str:
        # https://cloud.tencent.com/document/api/382/52071 (signature v3), step by step.
        host = handler.headers["Host"]
        content_type = handler.headers["Content-Type"]
        canonical_request = (f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n"
                             f"content-type;host\n{hashlib.sha256(body).hexdigest()}")
        date = time.strftime("%Y-%m-%d", time.gmtime(int(timestamp)))
        credential_scope = f"{date}/sms/tc3_request"
        string_to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{credential_scope}\n"
                          f"{hashlib.sha256(canonical_request.encode()).hexdigest()}")
        secret_date = hmac.new(("TC3" + self.secret_key).encode(), date.encode(),
                               hashlib.sha256).digest()
        secret_service = hmac.new(secret_date, b"sms", hashlib.sha256).digest()
        secret_signing = hmac.new(secret_service, b"tc3_request", hashlib.sha256).digest()
        return hmac.new(secret_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def handle(self, handler: Any, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request_id = secrets.token_hex(8)

        def error(code: str, message: str) -> tuple[int, dict[str, Any]]:
            return 200, {"Response": {"Error": {"Code": code, "Message": message},
                                      "RequestId": request_id}}

        headers = handler.headers
        timestamp = headers.get("X-TC-Timestamp", "0")
        authorization = headers.get("Authorization", "")
        signature = authorization.rpartition("Signature=")[2]
        if self.mode == "auth" or f"Credential={self.secret_id}/" not in authorization or \
                not hmac.compare_digest(signature, self._expected_signature(handler, body,
                                                                            timestamp)):
            return error("AuthFailure.SignatureFailure", "The provided credentials could "
                                                         "not be validated.")
        if abs(time.time() - int(timestamp)) > 300:
            return error("AuthFailure.SignatureExpire", "Request has expired")
        if headers.get("X-TC-Action") != "SendSms" or headers.get("X-TC-Version") != \
                "2021-01-11":
            return error("InvalidAction", "action or version not supported")
        request = json.loads(body)
        self.requests.append(("SendSms", method, request))
        if self.mode == "busy":
            return error("LimitExceeded.PhoneNumberDailyLimit", "daily limit")
        statuses = []
        for n, number in enumerate(request["PhoneNumberSet"]):
            refused = self.mode == "refuse" and n == 0
            statuses.append({"SerialNo": secrets.token_hex(6), "PhoneNumber": number,
                             "Fee": 0 if refused else 1, "SessionContext": "",
                             "Code": "FailedOperation.PhoneNumberInBlacklist" if refused
                             else "Ok",
                             "Message": "blacklist" if refused else "send success",
                             "IsoCode": "CN"})
        return 200, {"Response": {"SendStatusSet": statuses, "RequestId": request_id}}


class FakeWechat(_Server):
    def __init__(self, app_id: str, app_secret: str) -> None:
        super().__init__()
        self.app_id, self.app_secret = app_id, app_secret
        self.tokens: set[str] = set()
        self.token_requests = 0

    def handle(self, handler: Any, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.path == "/cgi-bin/token" and method == "GET":
            return self._token(query)
        if parts.path == "/cgi-bin/message/subscribe/send" and method == "POST":
            return self._send(query, body)
        return 404, {"errcode": 404, "errmsg": "not found"}

    def _token(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        if query.get("grant_type") != "client_credential" or \
                query.get("appid") != self.app_id or query.get("secret") != self.app_secret:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 7200}

    def _send(self, query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        token = query.get("access_token", "")
        if self.mode == "revoke-token":
            self.mode = ""
            self.tokens.discard(token)
        if token not in self.tokens:
            return 200, {"errcode": 40001, "errmsg": "invalid credential, access_token "
                                                     "is invalid or not latest"}
        request = json.loads(body)
        self.requests.append(("subscribe/send", "POST", request))
        if not {"touser", "template_id", "data"} <= set(request) or not all(
                isinstance(v, dict) and "value" in v for v in request["data"].values()):
            return 200, {"errcode": 47003, "errmsg": "argument invalid!"}
        errors = {"unsubscribed": (43101, "user refuse to accept the msg"),
                  "busy": (-1, "system error")}
        if self.mode in errors:
            code, message = errors[self.mode]
            return 200, {"errcode": code, "errmsg": message}
        return 200, {"errcode": 0, "errmsg": "ok",
                     "msgid": int(dt.datetime.now(dt.UTC).timestamp())}
