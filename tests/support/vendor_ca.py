"""A fake third-party CA with an HTTP+JSON interface, for the ``vendor-http`` channel's tests.

It follows the shape documented in :mod:`ca_client.vendor_http` but is written apart from it,
so that the two can disagree: the request signature is checked with an HMAC built by hand over
gmssl's pure-Python SM3 (RFC 2104: ``H((K ^ opad) || H((K ^ ipad) || m))``), or with the
standard library's ``hmac`` for HMAC-SHA256, and JSON names come from this vendor's own
:class:`VendorStyle`, not from the channel's configuration code.  It checks the app id, the
timestamp window and nonce replays (HTTP 401 with a vendor code, as real vendors do), issues
real certificates with :class:`ca_client.builtin.BuiltinCa` (one SM2 and one RSA hierarchy,
chosen by the CSR's key type), renews (revoking the old certificate as superseded) and revokes.

``FakeVendorCa.mode`` switches it to misbehave, after the authentication checks:

- ``reject``: the vendor's error code for a bad request (HTTP 200);
- ``http400``: HTTP 400 with the error code;
- ``busy``: the "busy, try later" code;
- ``http500``: HTTP 500 with an HTML body;
- ``garbage``: HTTP 200 with a body that is not JSON;
- ``huge``: HTTP 200 with a 2 MiB body (declared in Content-Length);
- ``huge-stream``: the same without Content-Length (ends when the connection closes);
- ``wrong-key``: a real certificate, but for a fresh key instead of the CSR's;
- ``wrong-chain``: the right certificate with the other hierarchy's CA certificates as chain;
- ``bad-answer-signature``: a correct answer with a wrong answer signature (signing styles);
- ``slow``: no answer until the server stops (the client times out first).

A closed port (channel down) needs no server: :func:`closed_port`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from gmssl import func, sm3

from ca_client.builtin import BuiltinCa, MemoryRepository, generate_hierarchy
from ca_client.errors import CaError
from ca_client.profiles import SubjectInfo
from signcore.algorithms import KeyType
from signcore.keys import generate_private_key
from signcore.x509 import Certificate, load_csr
from tests.support.loopback_http import loopback_url, serve_loopback_server

TIMESTAMP_WINDOW = 300  # seconds either side of the fake's clock
MAX_BODY = 1 << 20


# -- independent primitives -------------------------------------------------------------------

def gm_sm3(data: bytes) -> bytes:
    """SM3 by gmssl (pure Python)."""
    return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))


def gm_hmac_sm3(key: bytes, message: bytes) -> bytes:
    """HMAC-SM3 by hand (RFC 2104, block size 64) over gmssl's SM3."""
    if len(key) > 64:
        key = gm_sm3(key)
    key = key.ljust(64, b"\0")
    inner = gm_sm3(bytes(b ^ 0x36 for b in key) + message)
    return gm_sm3(bytes(b ^ 0x5C for b in key) + inner)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the vendor's conventions -----------------------------------------------------------------

@dataclass(frozen=True)
class VendorStyle:
    """How one vendor spells the interface (``fields``: logical name -> JSON name, dotted for
    nesting, '' for "not used"; missing logical names keep their own name)."""

    app_id: str = "medsign-hospital-01"
    secret: bytes = b"vendor-app-secret-0123456789abcd"
    prefix: str = "/api/ca/v1"
    enroll_path: str = "/cert/apply"
    renew_path: str = "/cert/renew"
    revoke_path: str = "/cert/revoke"
    status_path: str = "/status"
    fields: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)  # ours -> the vendor's
    reasons: dict[str, str] = field(default_factory=dict)  # ours -> the vendor's
    app_id_header: str = "X-App-Id"
    timestamp_header: str = "X-Timestamp"
    nonce_header: str = "X-Nonce"
    signature_header: str = "X-Signature"
    algorithm: str = "hmac-sm3"
    encoding: str = "base64"
    timestamp_unit: str = "s"
    csr_format: str = "base64"
    serial_format: str = "hex"
    success_code: str | int = "0"
    error_code: str | int = "E400"
    busy_code: str | int = "E503"
    auth_code: str | int = "E401"
    sign_answers: bool = False
    chain_as_pem_bundle_root_first: bool = False

    def name(self, logical: str) -> str:
        return self.fields.get(logical, logical)

    def channel_config(self, base_url: str, **overrides: Any) -> dict[str, Any]:
        """The channel configuration (a TOML table's content) that matches this vendor."""
        config: dict[str, Any] = {
            "name": "vendor-test", "base_url": base_url, "app_id": self.app_id,
            "secret_hex": self.secret.hex(), "enroll_path": self.enroll_path,
            "renew_path": self.renew_path, "revoke_path": self.revoke_path,
            "status_path": self.status_path, "fields": dict(self.fields),
            "profiles": dict(self.profiles), "reasons": dict(self.reasons),
            "app_id_header": self.app_id_header, "timestamp_header": self.timestamp_header,
            "nonce_header": self.nonce_header, "signature_header": self.signature_header,
            "signature_algorithm": self.algorithm, "signature_encoding": self.encoding,
            "timestamp_unit": self.timestamp_unit, "csr_format": self.csr_format,
            "serial_format": self.serial_format, "success_code": self.success_code,
            "retry_codes": [self.busy_code], "verify_responses": self.sign_answers,
            "connect_timeout": 5, "read_timeout": 10,
        }
        config.update(overrides)
        return config

    def mac(self, message: bytes) -> bytes:
        if self.algorithm == "hmac-sm3":
            return gm_hmac_sm3(self.secret, message)
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def body_digest(self, body: bytes) -> str:
        return (gm_sm3(body) if self.algorithm == "hmac-sm3"
                else hashlib.sha256(body).digest()).hex()

    def encode_mac(self, mac: bytes) -> str:
        return base64.b64encode(mac).decode() if self.encoding == "base64" else mac.hex()


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _put(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


def _pem(der: bytes) -> str:
    text = base64.b64encode(der).decode()
    body = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


@dataclass
class Hierarchies:
    """The fake vendor's CAs (expensive to make: built once per test module)."""

    sm2: BuiltinCa
    rsa: BuiltinCa

    @classmethod
    def generate(cls) -> Hierarchies:
        cas = {}
        for algorithm in ("sm2", "rsa"):
            h = generate_hierarchy(algorithm, "测试第三方CA")
            cas[algorithm] = BuiltinCa(f"vendor-{algorithm}", h.issuing, h.issuing_key,
                                       MemoryRepository(), chain=[h.root])
        return cls(cas["sm2"], cas["rsa"])

    def for_key(self, key_type: KeyType) -> BuiltinCa:
        return self.sm2 if key_type is KeyType.SM2 else self.rsa


class _RefusalError(Exception):
    def __init__(self, status: int, code: str | int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- the server -------------------------------------------------------------------------------

class FakeVendorCa:
    """The fake vendor on 127.0.0.1 (a free port); :meth:`start`, then :meth:`stop`."""

    port: int  # the port and base_url are known once start() has bound the server
    base_url: str

    def __init__(self, style: VendorStyle, cas: Hierarchies) -> None:
        self.style = style
        self.cas = cas
        self.mode = "ok"
        self.received: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, body)
        self.issued: dict[int, tuple[BuiltinCa, Certificate]] = {}
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._serving = contextlib.ExitStack()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                vendor._handle(self)

            def do_POST(self) -> None:
                vendor._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet tests

        self._handler = Handler

    def start(self) -> FakeVendorCa:
        server = self._serving.enter_context(serve_loopback_server(self._handler))
        self.port = int(server.server_address[1])
        self.base_url = f"{loopback_url(server)}{self.style.prefix}"
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases a "slow" handler
        self._serving.close()

    # -- one request

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(min(length, MAX_BODY)) if length else b""
        path = request.path
        try:
            self._authenticate(request, path, body)
            parsed = json.loads(body) if body else {}
            with self._lock:
                self.received.append((request.command, path, parsed))
            if self._misbehave(request, path):
                return
            answer = self._route(request.command, path, parsed)
            self._answer(request, path, 200, {**self._code(self.style.success_code, "成功"),
                                              **answer})
        except _RefusalError as refusal:
            self._answer(request, path, refusal.status,
                         self._code(refusal.code, refusal.message))

    def _authenticate(self, request: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        style = self.style
        if request.headers.get(style.app_id_header) != style.app_id:
            raise _RefusalError(401, style.auth_code, "未知的应用标识")
        timestamp = request.headers.get(style.timestamp_header) or ""
        nonce = request.headers.get(style.nonce_header) or ""
        if not timestamp.isdigit():
            raise _RefusalError(401, style.auth_code, "时间戳格式错误")
        seconds = int(timestamp) / (1000 if style.timestamp_unit == "ms" else 1)
        if abs(seconds - time.time()) > TIMESTAMP_WINDOW:
            raise _RefusalError(401, style.auth_code, "时间戳超出允许范围")
        message = "\n".join((request.command, path, timestamp, nonce,
                             style.body_digest(body))).encode()
        given = request.headers.get(style.signature_header) or ""
        if not hmac.compare_digest(given, style.encode_mac(style.mac(message))):
            raise _RefusalError(401, style.auth_code, "签名验证失败")
        with self._lock:
            if len(nonce) < 16 or nonce in self._nonces:
                raise _RefusalError(401, style.auth_code, "nonce 重复使用")
            self._nonces.add(nonce)

    def _misbehave(self, request: BaseHTTPRequestHandler, path: str) -> bool:
        mode = self.mode
        if mode == "slow":
            self._stopping.wait(30)
            return True  # never answers: the client gave up long ago
        if mode in ("reject", "http400"):
            raise _RefusalError(200 if mode == "reject" else 400, self.style.error_code,
                           "证书申请信息不完整")
        if mode == "busy":
            raise _RefusalError(200, self.style.busy_code, "系统繁忙，请稍后再试")
        raw = {"http500": (500, b"<html><body>Internal Server Error</body></html>"),
               "garbage": (200, b"<html>\x00\xff not json"),
               "huge": (200, b"{" + b" " * (2 << 20) + b"}"),
               "huge-stream": (200, b"{" + b" " * (2 << 20) + b"}")}.get(mode)
        if raw is not None:
            self._send(request, path, raw[0], raw[1], declare_length=mode != "huge-stream")
            return True
        return False

    def _route(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        style = self.style
        endpoint = path.removeprefix(style.prefix)
        if method == "GET" and endpoint == style.status_path:
            return {}
        if method == "POST" and endpoint in (style.enroll_path, style.renew_path):
            return self._issue(body, renew=endpoint == style.renew_path)
        if method == "POST" and endpoint == style.revoke_path:
            self._revoke(body)
            return {}
        raise _RefusalError(404, style.error_code, "接口不存在")

    def _field(self, body: dict[str, Any], logical: str, default: Any = None) -> Any:
        name = self.style.name(logical)
        value = _get(body, name) if name else None
        return default if value is None else value

    def _serial(self, body: dict[str, Any]) -> tuple[BuiltinCa, Certificate]:
        text = str(self._field(body, "serial", ""))
        try:
            serial = int(text, 16 if self.style.serial_format == "hex" else 10)
        except ValueError:
            raise _RefusalError(200, self.style.error_code, "证书序列号格式错误") from None
        with self._lock:
            found = self.issued.get(serial)
        if found is None:
            raise _RefusalError(200, self.style.error_code, "证书不存在")
        return found

    def _issue(self, body: dict[str, Any], *, renew: bool) -> dict[str, Any]:
        style = self.style
        old = self._serial(body) if renew else None
        csr_text = str(self._field(body, "csr", ""))
        try:
            csr = load_csr(csr_text.encode() if style.csr_format == "pem"
                           else base64.b64decode(csr_text, validate=True))
        except ValueError:
            raise _RefusalError(200, style.error_code, "证书请求格式错误") from None
        vendor_profile = self._field(body, "profile", "")
        ours = {v: k for k, v in style.profiles.items()}.get(vendor_profile, vendor_profile)
        subject = SubjectInfo(
            common_name=self._field(body, "name", ""),
            organization=self._field(body, "organization", ""),
            department=self._field(body, "department", ""),
            title=self._field(body, "title", ""),
            unique_id=self._field(body, "unique_id", ""),
            dns_names=tuple(self._field(body, "dns_names", ())))
        ca = self.cas.for_key(csr.public_key().key_type)
        try:
            if self.mode == "wrong-key":
                other = generate_private_key("sm2" if ca is self.cas.sm2 else "rsa2048")
                record = ca.issue(ours, subject, public_key=other.public_key())
            else:
                record = ca.issue(ours, subject, csr=csr,
                                  validity_days=self._field(body, "validity_days"))
        except CaError as exc:
            raise _RefusalError(200, style.error_code, f"证书申请被拒绝：{exc}") from None
        with self._lock:
            self.issued[record.serial_number] = (ca, record.certificate)
        if old is not None:
            old[0].revoke(old[1].serial_number, "superseded")
        chain = [ca.certificate, *ca.chain]
        if self.mode == "wrong-chain":
            other_ca = self.cas.rsa if ca is self.cas.sm2 else self.cas.sm2
            chain = [other_ca.certificate, *other_ca.chain]
        answer: dict[str, Any] = {}
        _put(answer, style.name("certificate"), base64.b64encode(record.certificate.der)
             .decode())
        if style.chain_as_pem_bundle_root_first:
            _put(answer, style.name("chain"), "".join(_pem(c.der) for c in reversed(chain)))
        else:
            _put(answer, style.name("chain"), [base64.b64encode(c.der).decode() for c in chain])
        _put(answer, style.name("order_id"), f"ORD-{uuid.uuid4().hex[:16].upper()}")
        return answer

    def _revoke(self, body: dict[str, Any]) -> None:
        ca, certificate = self._serial(body)
        vendor_reason = self._field(body, "reason", "")
        reason = {v: k for k, v in self.style.reasons.items()}.get(vendor_reason, vendor_reason)
        try:
            ca.revoke(certificate.serial_number, reason)
        except CaError as exc:
            raise _RefusalError(200, self.style.error_code, f"吊销失败：{exc}") from None

    # -- answers

    def _code(self, code: str | int, message: str) -> dict[str, Any]:
        answer: dict[str, Any] = {}
        _put(answer, self.style.name("code"), code)
        _put(answer, self.style.name("message"), message)
        return answer

    def _answer(self, request: BaseHTTPRequestHandler, path: str, status: int,
                answer: dict[str, Any]) -> None:
        self._send(request, path, status, json.dumps(answer, ensure_ascii=False).encode())

    def _send(self, request: BaseHTTPRequestHandler, path: str, status: int,
              body: bytes, *, declare_length: bool = True) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        if declare_length:
            request.send_header("Content-Length", str(len(body)))
        if self.style.sign_answers:
            nonce = request.headers.get(self.style.nonce_header) or ""
            mac = self.style.mac("\n".join((str(status), path, nonce,
                                            self.style.body_digest(body))).encode())
            if self.mode == "bad-answer-signature":
                mac = bytes([mac[0] ^ 1]) + mac[1:]
            request.send_header(self.style.signature_header, self.style.encode_mac(mac))
        request.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (answer too large, timeout)
            request.wfile.write(body)
