"""A licensed third-party CA's HTTP+JSON interface as a channel (``kind = "vendor-http"``).

Hospitals obtain doctors' certificates from licensed CAs through the health-sector multi-CA
interface shape (T/SHIA 013-2024): JSON requests identified by an app id and signed with
HMAC-SM3 over a timestamp, a nonce and the request.  Every vendor spells it differently, so
endpoints, JSON field names, header names, code values and the signing details are
configuration (:class:`VendorHttpConfig`, read from the appliance's TOML through
:meth:`VendorHttpConfig.from_dict`); this module is the one shape they are fitted to.

Requests.  Enrollment is PKCS#10 (:func:`~ca_client.channel.pkcs10_pending`): :meth:`prepare`
returns the CertificationRequestInfo the key holder signs, :meth:`complete` assembles and checks
the CSR and sends it with the subject fields (the CSR's own subject is a placeholder; the CA
builds the subject from the fields).  Every call is one HTTP request on a new connection::

    POST <enroll_path>   {csr, profile, name, organization, department, title, unique_id,
                          dns_names, validity_days}                     -> certificate, chain
    POST <renew_path>    the same, plus serial (of the certificate renewed)
    POST <revoke_path>   {serial, reason}
    GET  <status_path>   (no body)                                      -> code

Names in braces are *logical* names; ``fields`` maps each to the vendor's JSON name, where a
dotted name is a path into nested objects (``data.signCert``) and an empty name means "not
sent / not read".  Absent from the map, a field keeps its logical name.  Empty subject fields
are not sent.  ``csr`` is base64 DER (``csr_format = "pem"``: PEM text); ``serial`` upper-case
hex (``serial_format = "decimal"``: decimal); the profile and the revocation reason are mapped
through ``profiles`` and ``reasons`` (default: our names, :data:`~ca_client.builtin.
REVOCATION_REASONS`).  Bodies are UTF-8 JSON with ``ensure_ascii=False`` (names stay Chinese).

String to sign.  Five lines joined by ``\\n`` (no trailing newline), UTF-8::

    METHOD         upper case                                           POST
    path           the request target as sent: the base URL's path
                   followed by the endpoint path (no query is used)     /api/ca/v1/cert/apply
    timestamp      the timestamp header's value: unix time in seconds
                   (``timestamp_unit = "ms"``: milliseconds), decimal    1764121200
    nonce          the nonce header's value: 32 random lower-case hex
    body digest    lower-case hex SM3 of the exact body bytes (of b""
                   for GET); SHA-256 with ``signature_algorithm =
                   "hmac-sha256"``

The request carries the app id, timestamp, nonce and signature headers (names configurable),
the signature being HMAC-SM3(secret, string to sign) (HMAC-SHA256 for ``hmac-sha256``) in
base64 (``signature_encoding = "hex"``: lower-case hex).  With ``verify_responses``, the answer
must carry the signature header too, over ``STATUS\\npath\\nnonce\\nbody digest`` (HTTP status
code, the request's path and nonce, the digest of the answer's exact bytes); it is compared in
constant time, and binding the request's nonce makes an old answer useless for a new request.

Answers.  ``code`` equal to ``success_code`` means success; a code in ``retry_codes`` ("busy,
try later") raises :class:`~ca_client.errors.ChannelUnavailable`; any other code, and HTTP 4xx
(except 408, 425 and 429), :class:`~ca_client.errors.RequestRejected` with the vendor's code and
message.  Connection errors, timeouts, redirects, HTTP 5xx, answers over ``max_response_bytes``
and malformed answers (not JSON, no code, no or undecodable certificate) raise
``ChannelUnavailable``.  ``reference`` is the vendor's ``order_id`` when it returns one.

Threat model.  The adversary is on the network between the appliance and the vendor.  TLS is
expected in production (``https`` with the system's trust store or ``ca_file``; plain ``http``
is refused for any host but loopback unless ``allow_http`` says otherwise).  Requests are
signed, so a request changed in flight (method, path, body) is refused by the vendor, and the
timestamp and nonce let the vendor refuse replays.  What comes back is not trusted for more
than it can be checked: the certificate must carry exactly the public key being enrolled (so a
substituted certificate cannot bind a doctor's name to someone else's key), must not be a CA
certificate, and, when the answer has a chain, must be signed by a certificate of that chain;
the chain is returned ordered from the issuing CA upwards and is validated to a trust anchor by
the caller, not here.  Answer size and time are bounded (``max_response_bytes``, the connect and
read timeouts, the read timeout being a deadline for the whole answer).  Vendor messages are cut
to 200 characters without control characters before they reach an error message (and logs).
The secret never appears in a repr or an error.  A vendor that is down or slow raises
``ChannelUnavailable``: it never affects certificates already issued, which live in the
appliance, not behind this channel.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http.client
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import time
import types
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ca_client._common import (
    check_channel_name,
    check_endpoint,
    clean,
    exchange,
    ordered_chain,
)
from ca_client.builtin import REVOCATION_REASONS
from ca_client.channel import (
    ChannelStatus,
    Enrollment,
    EnrollmentRequest,
    PendingEnrollment,
    pkcs10_finish,
    pkcs10_pending,
)
from ca_client.errors import ChannelUnavailable, RequestRejected
from ca_client.profiles import PROFILES, profile
from signcore.errors import SigncoreError
from signcore.hashes import HashAlgorithm, constant_time_equal, digest, hmac
from signcore.x509 import Certificate, load_certificates

__all__ = ["DEFAULT_FIELDS", "VendorHttpChannel", "VendorHttpConfig"]

_REQUEST_FIELDS = ("csr", "profile", "name", "organization", "department", "title",
                   "unique_id", "dns_names", "validity_days", "serial", "reason")
_ANSWER_FIELDS = ("code", "message", "certificate", "chain", "order_id")
#: logical field -> the vendor's JSON name, unless the configuration says otherwise
DEFAULT_FIELDS: Mapping[str, str] = types.MappingProxyType(
    {name: name for name in (*_REQUEST_FIELDS, *_ANSWER_FIELDS)})
_HASHES = {"hmac-sm3": HashAlgorithm.SM3, "hmac-sha256": HashAlgorithm.SHA256}
_CHOICES = {
    "signature_algorithm": tuple(_HASHES),
    "signature_encoding": ("base64", "hex"),
    "timestamp_unit": ("s", "ms"),
    "csr_format": ("base64", "pem"),
    "serial_format": ("hex", "decimal"),
}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an HTTP header name (RFC 9110)
_APP_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no space: safe in a header
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
_JSON_NAME = re.compile(r"[^.\s]+(\.[^.\s]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_RETRYABLE_4XX = frozenset({408, 425, 429})
MIN_SECRET_BYTES = 16


# -- configuration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VendorHttpConfig:
    """One vendor CA's interface (module docstring).  Invalid values raise
    :class:`RequestRejected` with a one-line reason, from the constructor as from
    :meth:`from_dict`."""

    name: str
    base_url: str
    app_id: str
    secret: bytes = field(repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    enroll_path: str = "/cert/apply"
    renew_path: str = "/cert/renew"
    revoke_path: str = "/cert/revoke"
    status_path: str = "/status"
    fields: dict[str, str] = field(default_factory=dict)  # merged over DEFAULT_FIELDS
    profiles: dict[str, str] = field(default_factory=dict)  # ours -> vendor's; {}: all, as is
    reasons: dict[str, str] = field(default_factory=dict)  # ours -> vendor's; default: as is
    app_id_header: str = "X-App-Id"
    timestamp_header: str = "X-Timestamp"
    nonce_header: str = "X-Nonce"
    signature_header: str = "X-Signature"
    signature_algorithm: str = "hmac-sm3"
    signature_encoding: str = "base64"
    timestamp_unit: str = "s"
    csr_format: str = "base64"
    serial_format: str = "hex"
    success_code: str = "0"
    retry_codes: frozenset[str] = frozenset()
    verify_responses: bool = False
    max_response_bytes: int = 1 << 20
    ca_file: str | None = None  # PEM trust anchors for the vendor's TLS server
    allow_http: bool = False  # plain http to a host other than loopback

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.type == "str" and not isinstance(value, str):
                _bad(spec.name, "must be a string")
            if spec.type == "dict[str, str]" and not (isinstance(value, Mapping) and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
                _bad(spec.name, "must map names to strings")
        object.__setattr__(self, "fields", {**DEFAULT_FIELDS, **self.fields})
        object.__setattr__(self, "profiles", dict(self.profiles))
        object.__setattr__(self, "reasons", dict(self.reasons))
        object.__setattr__(self, "retry_codes", frozenset(self.retry_codes))
        self._validate_transport()
        self._validate_mapping()

    def _validate_transport(self) -> None:  # noqa: PLR0912 -- a flat list of checks reads best
        """Where and how to talk: URL, credentials, timeouts, paths, headers, formats."""
        for name in ("verify_responses", "allow_http"):
            if not isinstance(getattr(self, name), bool):
                _bad(name, "must be true or false")
        check_channel_name(self.name, _bad)
        url = check_endpoint("base_url", self.base_url, _bad)
        if url.scheme == "http" and not self.allow_http and not _is_loopback(url.hostname or ""):
            _bad("base_url", "must use https (set allow_http to accept plain http)")
        if url.path and not _PATH.fullmatch(url.path):
            _bad("base_url", "has an invalid path")
        if not _APP_ID.fullmatch(self.app_id):
            _bad("app_id", "must be 1 to 128 printable ASCII characters without spaces")
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            _bad("secret", f"must be at least {MIN_SECRET_BYTES} bytes")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not 0 < value <= 600:
                _bad(name, "must be a number of seconds above 0 and at most 600")
        for name in ("enroll_path", "renew_path", "revoke_path", "status_path"):
            if not _PATH.fullmatch(getattr(self, name)):
                _bad(name, "must be a path starting with '/'")
        for name in ("app_id_header", "timestamp_header", "nonce_header", "signature_header"):
            if not _TOKEN.fullmatch(getattr(self, name)):
                _bad(name, "must be an HTTP header name")
        headers = [getattr(self, n).lower() for n in ("app_id_header", "timestamp_header",
                                                      "nonce_header", "signature_header")]
        if len(set(headers)) != len(headers):
            _bad("headers", "the app id, timestamp, nonce and signature headers must differ")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                _bad(name, f"must be one of {', '.join(allowed)}")
        if isinstance(self.max_response_bytes, bool) or not isinstance(
                self.max_response_bytes, int) or not 1024 <= self.max_response_bytes <= 1 << 24:
            _bad("max_response_bytes", "must be an integer from 1024 to 16777216")
        if self.ca_file is not None and (not isinstance(self.ca_file, str) or not self.ca_file):
            _bad("ca_file", "must be the path of a PEM file")

    def _validate_mapping(self) -> None:
        """What to say: field names, profile and reason values, codes."""
        unknown = sorted(set(self.fields) - set(DEFAULT_FIELDS))
        if unknown:
            _bad("fields", f"name an unknown logical field {unknown[0]!r}; known: "
                           f"{', '.join(sorted(DEFAULT_FIELDS))}")
        for logical, json_name in self.fields.items():
            if not isinstance(json_name, str) or (json_name and not _JSON_NAME.fullmatch(
                    json_name)):
                _bad("fields", f"{logical} must map to a JSON name (dots for nesting) or ''")
        for required in ("csr", "certificate"):
            if not self.fields[required]:
                _bad("fields", f"{required} cannot be left out")
        sent = sorted(self.fields[n] for n in _REQUEST_FIELDS if self.fields[n])
        for first, second in itertools.pairwise(sent):
            if second == first or second.startswith(first + "."):
                _bad("fields", f"map two request fields to {first!r} (or inside it)")
        _check_map("profiles", self.profiles, PROFILES)
        _check_map("reasons", self.reasons, REVOCATION_REASONS)
        for code in (self.success_code, *self.retry_codes):
            if not isinstance(code, str) or not code or len(code) > 64:
                _bad("codes", "the success and retry codes must be non-empty strings")
        if self.success_code in self.retry_codes:
            _bad("retry_codes", "must not contain the success code")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VendorHttpConfig:
        """The configuration from a plain mapping (a ``[ca.vendors.<name>]`` TOML table).

        The secret is given as exactly one of ``secret`` (text: its UTF-8 bytes, as most vendors
        hand out an "appSecret"; or bytes), ``secret_hex`` or ``secret_base64``.  Codes may be
        strings or integers.  Unknown keys are refused, so a typo does not go unnoticed.
        """
        if not isinstance(data, Mapping):
            raise RequestRejected("vendor CA configuration: expected a table")
        known = {f.name for f in dataclasses.fields(cls)} - {"secret"}
        known |= {"secret", "secret_hex", "secret_base64"}
        unknown = sorted(str(k) for k in data if k not in known)
        label = data.get("name", "?")
        if unknown:
            raise RequestRejected(f"vendor CA {label}: unknown configuration key {unknown[0]!r}")
        for required in ("name", "base_url", "app_id"):
            if not isinstance(data.get(required), str):
                raise RequestRejected(f"vendor CA {label}: {required} is required (a string)")
        kwargs: dict[str, Any] = {k: v for k, v in data.items()
                                  if k not in ("secret", "secret_hex", "secret_base64")}
        kwargs["secret"] = _secret(data, str(label))
        if "success_code" in data:
            kwargs["success_code"] = _code(data["success_code"], "success_code", str(label))
        if "retry_codes" in data:
            codes = data["retry_codes"]
            if isinstance(codes, str | bytes) or not isinstance(codes, list | tuple | set |
                                                                    frozenset):
                raise RequestRejected(f"vendor CA {label}: retry_codes must be a list")
            kwargs["retry_codes"] = frozenset(_code(c, "retry_codes", str(label)) for c in codes)
        try:
            return cls(**kwargs)
        except RequestRejected as exc:
            raise RequestRejected(f"vendor CA {label}: {exc}") from None


def _bad(name: str, reason: str) -> NoReturn:
    raise RequestRejected(f"{name} {reason}")


def _check_map(name: str, mapping: Mapping[str, str], ours: Any) -> None:
    for key, value in mapping.items():
        if key not in ours:
            _bad(name, f"names {key!r}, which is not one of {', '.join(sorted(ours))}")
        if not isinstance(value, str) or not value or _CONTROL.search(value):
            _bad(name, f"maps {key!r} to an empty or invalid value")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(data: Mapping[str, Any], label: str) -> bytes:
    given = [k for k in ("secret", "secret_hex", "secret_base64") if k in data]
    if len(given) != 1:
        raise RequestRejected(f"vendor CA {label}: give exactly one of secret, secret_hex or "
                              f"secret_base64")
    value = data[given[0]]
    if given[0] == "secret" and isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise RequestRejected(f"vendor CA {label}: {given[0]} must be a string")
    try:
        if given[0] == "secret_hex":
            return bytes.fromhex(value)
        if given[0] == "secret_base64":
            return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise RequestRejected(f"vendor CA {label}: {given[0]} does not decode") from None
    return value.encode()


def _code(value: Any, name: str, label: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RequestRejected(f"vendor CA {label}: {name} must be strings or integers")
    return str(value)


# -- the channel ------------------------------------------------------------------------------

class VendorHttpChannel:
    """A vendor CA's HTTP+JSON interface as a :class:`~ca_client.channel.Channel`.

    Stateless between calls (one connection per request), so one instance serves every thread.
    ``clock`` (unix seconds) and ``nonce`` are there for tests.
    """

    kind = "vendor-http"

    def __init__(self, config: VendorHttpConfig, *, clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str] = lambda: secrets.token_hex(16)) -> None:
        self.name = config.name
        self.config = config
        self._clock = clock
        self._nonce = nonce
        self._hash = _HASHES[config.signature_algorithm]
        url = urllib.parse.urlsplit(config.base_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            try:
                self._ssl = ssl.create_default_context(cafile=config.ca_file)
            except (OSError, ssl.SSLError):
                raise RequestRejected(f"vendor CA {self.name}: ca_file {config.ca_file} is not "
                                      f"a readable PEM file") from None
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2

    def __repr__(self) -> str:
        return f"<VendorHttpChannel {self.name} {self.config.base_url}>"

    # -- the Channel protocol

    def prepare(self, request: EnrollmentRequest, *,
                renewal_of: Certificate | None = None) -> PendingEnrollment:
        chosen = profile(request.profile)
        if self.config.profiles and request.profile not in self.config.profiles:
            raise RequestRejected(f"vendor CA {self.name} is not configured to issue "
                                  f"{request.profile} certificates")
        request.subject.checked(chosen)  # refused before the key holder is asked to sign
        return pkcs10_pending(self.name, request, renewal_of)

    def complete(self, pending: PendingEnrollment, signature: bytes) -> Enrollment:
        if pending.channel != self.name:
            raise RequestRejected(f"the pending enrollment belongs to channel "
                                  f"{pending.channel}, not {self.name}")
        csr = pkcs10_finish(pending, signature)
        request = pending.request
        subject = request.subject
        body: dict[str, Any] = {}
        self._put(body, "csr", base64.b64encode(csr).decode() if self.config.csr_format ==
                  "base64" else _pem("CERTIFICATE REQUEST", csr))
        self._put(body, "profile", self.config.profiles.get(request.profile, request.profile))
        for logical, value in (("name", subject.common_name),
                               ("organization", subject.organization),
                               ("department", subject.department), ("title", subject.title),
                               ("unique_id", subject.unique_id)):
            if value:
                self._put(body, logical, value)
        if subject.dns_names:
            self._put(body, "dns_names", list(subject.dns_names))
        if request.validity_days is not None:
            self._put(body, "validity_days", request.validity_days)
        path = self.config.enroll_path
        if pending.renewal_of is not None:
            self._put(body, "serial", self._serial(pending.renewal_of))
            path = self.config.renew_path
        answer = self._call("POST", path, body)
        certificate, chain = self._issued(answer, request)
        order = self._get(answer, "order_id")
        reference = clean(str(order)) if isinstance(order, str | int) and \
            not isinstance(order, bool) else ""
        return Enrollment(certificate, chain, self.name, reference)

    def revoke(self, certificate: Certificate, reason: str) -> None:
        if reason not in REVOCATION_REASONS:
            raise RequestRejected(f"unknown revocation reason {reason!r}; one of "
                                  f"{', '.join(REVOCATION_REASONS)}")
        body: dict[str, Any] = {}
        self._put(body, "serial", self._serial(certificate))
        self._put(body, "reason", self.config.reasons.get(reason, reason))
        self._call("POST", self.config.revoke_path, body)

    def status(self) -> ChannelStatus:
        try:
            self._call("GET", self.config.status_path, None)
        except ChannelUnavailable as exc:
            return ChannelStatus(self.name, self.kind, False, str(exc))
        except RequestRejected as exc:
            return ChannelStatus(self.name, self.kind, False, f"refused: {exc}")
        return ChannelStatus(self.name, self.kind, True, self.config.base_url)

    # -- signing

    def string_to_sign(self, method: str, path: str, timestamp: str, nonce: str,
                       body: bytes) -> bytes:
        """The request's canonical string (module docstring)."""
        return "\n".join((method.upper(), path, timestamp, nonce,
                          digest(self._hash, body).hex())).encode()

    def _mac(self, message: bytes) -> str:
        mac = hmac(self._hash, self.config.secret, message)
        return base64.b64encode(mac).decode() if self.config.signature_encoding == "base64" \
            else mac.hex()

    def _decode_mac(self, text: str) -> bytes | None:
        try:
            if self.config.signature_encoding == "base64":
                return base64.b64decode(text.strip(), validate=True)
            return bytes.fromhex(text.strip())
        except (ValueError, binascii.Error):
            return None

    # -- HTTP

    def _call(self, method: str, endpoint: str, payload: dict[str, Any] | None
              ) -> dict[str, Any]:
        """Send one signed request; the answer's JSON object once its code says success."""
        body = b"" if payload is None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        path = self._prefix + endpoint
        now = self._clock()
        timestamp = str(int(now * 1000) if self.config.timestamp_unit == "ms" else int(now))
        nonce = self._nonce()
        headers = {
            "Accept": "application/json",
            "User-Agent": "medsign-ca-client",
            self.config.app_id_header: self.config.app_id,
            self.config.timestamp_header: timestamp,
            self.config.nonce_header: nonce,
            self.config.signature_header: self._mac(self.string_to_sign(
                method, path, timestamp, nonce, body)),
        }
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        status, signature, raw = self._exchange(method, path, body if payload is not None
                                                else None, headers)
        if self.config.verify_responses and 200 <= status < 300:
            self._check_answer_signature(status, path, nonce, raw, signature)
        return self._interpret(status, raw)

    def _exchange(self, method: str, path: str, body: bytes | None,
                  headers: dict[str, str]) -> tuple[int, str | None, bytes]:
        """(HTTP status, the answer's signature header, the answer's bytes)."""
        config = self.config
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(self._host, self._port,
                                                     timeout=config.connect_timeout,
                                                     context=self._ssl)
        else:
            connection = http.client.HTTPConnection(self._host, self._port,
                                                    timeout=config.connect_timeout)
        where = f"vendor CA {self.name} ({config.base_url})"
        answer = exchange(connection, method, path, body=body, headers=headers,
                          connect_timeout=config.connect_timeout,
                          read_timeout=config.read_timeout, limit=config.max_response_bytes,
                          where=where)
        return answer.status, answer.headers.get(config.signature_header), answer.body

    def _check_answer_signature(self, status: int, path: str, nonce: str, raw: bytes,
                                signature: str | None) -> None:
        if signature is None:
            raise ChannelUnavailable(f"vendor CA {self.name} sent an unsigned answer "
                                     f"(no {self.config.signature_header})")
        expected = hmac(self._hash, self.config.secret, "\n".join(
            (str(status), path, nonce, digest(self._hash, raw).hex())).encode())
        given = self._decode_mac(signature)
        if given is None or not constant_time_equal(expected, given):
            raise ChannelUnavailable(f"vendor CA {self.name} sent an answer whose signature "
                                     f"does not verify")

    def _interpret(self, status: int, raw: bytes) -> dict[str, Any]:
        where = f"vendor CA {self.name}"
        answer = _json_object(raw)
        code = self._get(answer, "code") if answer is not None else None
        code_text = str(code) if isinstance(code, str | int) and not isinstance(
            code, bool) else None
        message = self._get(answer, "message") if answer is not None else None
        said = _said(code_text, message)
        if code_text is not None and code_text in self.config.retry_codes:
            raise ChannelUnavailable(f"{where} is busy, try again later{said}")
        if 300 <= status < 400:
            raise ChannelUnavailable(f"{where} answered with a redirect (HTTP {status}), "
                                     f"which is not followed; check base_url")
        if status >= 500 or status in _RETRYABLE_4XX:
            raise ChannelUnavailable(f"{where} answered HTTP {status}{said}")
        if status in (401, 403):
            raise RequestRejected(f"{where} refused our credentials (HTTP {status}{said}); "
                                  f"check app_id, the secret and the clock")
        if 400 <= status < 500:
            raise RequestRejected(f"{where} refused the request (HTTP {status}{said})")
        if status < 200 or status >= 300:
            raise ChannelUnavailable(f"{where} answered with HTTP {status}")
        if answer is None:
            raise ChannelUnavailable(f"{where} sent an answer that is not a JSON object")
        if self.config.fields["code"]:
            if code_text is None:
                raise ChannelUnavailable(f"{where} sent an answer without a code "
                                         f"({self.config.fields['code']})")
            if code_text != self.config.success_code:
                raise RequestRejected(f"{where} refused the request{said}")
        return answer

    # -- JSON fields

    def _put(self, body: dict[str, Any], logical: str, value: Any) -> None:
        name = self.config.fields[logical]
        if not name:
            return
        *parents, last = name.split(".")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    def _get(self, answer: Mapping[str, Any], logical: str) -> Any:
        name = self.config.fields[logical]
        if not name:
            return None
        node: Any = answer
        for part in name.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node

    def _serial(self, certificate: Certificate) -> str:
        serial = certificate.serial_number
        return f"{serial:X}" if self.config.serial_format == "hex" else str(serial)

    def _issued(self, answer: Mapping[str, Any], request: EnrollmentRequest
                ) -> tuple[Certificate, tuple[Certificate, ...]]:
        where = f"vendor CA {self.name}"
        certificates = _certificates(self._get(answer, "certificate"))
        if certificates is None or len(certificates) != 1:
            raise ChannelUnavailable(f"{where} sent no readable certificate "
                                     f"({self.config.fields['certificate']})")
        (certificate,) = certificates
        try:
            key = certificate.public_key()
        except (SigncoreError, ValueError):
            raise ChannelUnavailable(f"{where} sent a certificate with an unreadable key"
                                     ) from None
        if key != request.public_key:
            raise ChannelUnavailable(f"{where} sent a certificate for another key than the one "
                                     f"enrolled; refused")
        if certificate.is_ca:
            raise ChannelUnavailable(f"{where} sent a CA certificate; refused")
        raw_chain = self._get(answer, "chain")
        chain = _certificates(raw_chain) if raw_chain not in (None, "", []) else []
        if chain is None:
            raise ChannelUnavailable(f"{where} sent an unreadable certificate chain "
                                     f"({self.config.fields['chain']})")
        return certificate, _vendor_chain(certificate, chain, where)


# -- helpers ----------------------------------------------------------------------------------

def _pem(label: str, der: bytes) -> str:
    text = base64.b64encode(der).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "\n".join((f"-----BEGIN {label}-----", *lines, f"-----END {label}-----")) + "\n"


def _said(code: str | None, message: Any) -> str:
    parts = []
    if code is not None:
        parts.append(f"code {clean(code)}")
    if isinstance(message, str) and message.strip():
        parts.append(clean(message))
    return ": " + ": ".join(parts) if parts else ""


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _certificates(value: Any) -> list[Certificate] | None:
    """Certificates from a PEM string (one or a bundle), a base64 DER string, or a list of
    those; None if anything does not decode."""
    items = value if isinstance(value, list) else [value]
    found: list[Certificate] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            return None
        try:
            if "-----BEGIN" in item:
                found.extend(load_certificates(item.encode("ascii")))
            else:
                found.extend(load_certificates(base64.b64decode("".join(item.split()),
                                                                validate=True)))
        except (SigncoreError, ValueError, binascii.Error, UnicodeEncodeError):
            return None
    return found


def _vendor_chain(certificate: Certificate, pool: list[Certificate],
                  where: str) -> tuple[Certificate, ...]:
    """:func:`ordered_chain`, refusing an answer whose chain does not certify the certificate."""
    chain = ordered_chain(certificate, pool)
    if pool and not chain:
        raise ChannelUnavailable(f"{where} sent a certificate that no CA certificate of its "
                                 f"chain signed; refused")
    return chain
