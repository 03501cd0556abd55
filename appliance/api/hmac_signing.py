"""Signed application requests: MEDSIGN-HMAC-SM3 (HMAC-SHA256 accepted), one algorithm for
the server's check and for clients (:func:`sign_request`: tests, benchmarks, the Python SDK).

The string to sign is six lines joined by ``\\n`` (no trailing newline), UTF-8 encoded::

    METHOD            the HTTP method, upper case                               POST
    path              percent-decoded (as the server sees it), then RFC 3986
                      encoded, "/" kept                                          /api/v1/whoami
    canonical query   name=value pairs, each part percent-decoded ("+" is a
                      space) then RFC 3986 encoded; the encoded pairs sorted
                      (by name, then value), joined by "&"; "" without a query  a=1&b=x%20y
    body digest       lower-case hex SM3 (…-SM3) or SHA-256 (…-SHA256) of the
                      exact body bytes, of b"" without a body
    timestamp         X-Medsign-Timestamp, unix seconds in decimal              1764121200
    nonce             X-Medsign-Nonce, 16 to 64 of [A-Za-z0-9_-]

The request carries::

    Authorization: MEDSIGN-HMAC-SM3 keyId=<key id>, signature=<base64 HMAC-SM3(secret, s)>
    X-Medsign-Timestamp: <timestamp>
    X-Medsign-Nonce: <nonce>

where ``secret`` is the 32 raw bytes of the credential (shown as base64url at creation) and the
signature uses the standard base64 alphabet with padding.  With ``MEDSIGN-HMAC-SHA256`` both the
body digest and the HMAC use SHA-256.

Threat model: the signature binds everything that decides what the request does (a changed
method, path, query or byte of body breaks it); the timestamp bounds how long a captured
request is worth anything; the nonce, remembered per key id for the window, makes it worth
nothing after its first use (the check is in :mod:`appliance.services.applications`).  The
server compares MACs in constant time.  Refusals are 401 problems with distinct codes, but an
unknown key id is answered exactly like a wrong signature.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Mapping

from appliance.errors import Unauthorized
from signcore.hashes import HashAlgorithm, constant_time_equal, digest, hmac

TIMESTAMP_HEADER = "X-Medsign-Timestamp"
NONCE_HEADER = "X-Medsign-Nonce"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"?([^",\s]*)"?\s*')


class Algorithm(enum.Enum):
    """The Authorization scheme names and their hash."""

    SM3 = "MEDSIGN-HMAC-SM3"
    SHA256 = "MEDSIGN-HMAC-SHA256"

    @property
    def hash(self) -> HashAlgorithm:
        return HashAlgorithm.SM3 if self is Algorithm.SM3 else HashAlgorithm.SHA256


class AuthMalformed(Unauthorized):
    code, title = "auth-malformed", "认证信息格式错误"


class AuthHeadersMissing(Unauthorized):
    code, title = "auth-headers-missing", "缺少请求签名所需的请求头"


class RequestExpired(Unauthorized):
    code, title = "request-expired", "请求时间戳超出允许范围"


# -- the algorithm ---------------------------------------------------------------------------

def _encode(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text, safe=safe)  # RFC 3986: unreserved characters stay


def canonical_path(decoded_path: str) -> str:
    """The canonical form of a path that is already percent-decoded (WSGI ``PATH_INFO``)."""
    return _encode(decoded_path or "/", safe="/")


def canonical_query(query: str | Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The canonical form of a raw query string (``a=1&b=2``) or of name/value pairs."""
    if isinstance(query, str):
        pairs = [(urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value))
                 for name, _, value in (part.partition("=") for part in query.split("&") if part)]
    elif isinstance(query, Mapping):
        pairs = list(query.items())
    else:
        pairs = list(query)
    return "&".join(f"{n}={v}" for n, v in sorted((_encode(n), _encode(v)) for n, v in pairs))


def body_digest(algorithm: Algorithm, body: bytes) -> str:
    return digest(algorithm.hash, body).hex()


def string_to_sign(algorithm: Algorithm, *, method: str, decoded_path: str,
                   query: str | Mapping[str, str] | Iterable[tuple[str, str]], body: bytes,
                   timestamp: str, nonce: str) -> bytes:
    return "\n".join((method.upper(), canonical_path(decoded_path), canonical_query(query),
                      body_digest(algorithm, body), timestamp, nonce)).encode()


def compute_signature(algorithm: Algorithm, secret: bytes, message: bytes) -> bytes:
    return hmac(algorithm.hash, secret, message)


# -- client side -----------------------------------------------------------------------------

def sign_request(method: str, target: str, *, key_id: str, secret: bytes | str,
                 body: bytes = b"", algorithm: Algorithm = Algorithm.SM3,
                 timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that sign a request.  ``target`` is the path with its query as sent
    (``/api/v1/x?a=1``); ``secret`` the raw bytes or the base64url text shown at creation."""
    raw = secret if isinstance(secret, bytes) else base64.urlsafe_b64decode(
        secret + "=" * (-len(secret) % 4))
    path, _, query = target.partition("?")
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    message = string_to_sign(algorithm, method=method, decoded_path=urllib.parse.unquote(path),
                             query=query, body=body, timestamp=stamp, nonce=nonce)
    signature = base64.b64encode(compute_signature(algorithm, raw, message)).decode()
    return {"Authorization": f"{algorithm.value} keyId={key_id}, signature={signature}",
            TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce}


# -- server side -----------------------------------------------------------------------------

def is_signed(authorization: str | None) -> bool:
    """Whether an Authorization header claims this scheme (others are left to other checks)."""
    return authorization is not None and authorization.lstrip().upper().startswith(
        "MEDSIGN-HMAC-")


def parse_authorization(header: str) -> tuple[Algorithm, str, bytes]:
    """(algorithm, key id, signature) of a MEDSIGN-HMAC-* Authorization header."""
    scheme, _, rest = header.strip().partition(" ")
    try:
        algorithm = Algorithm(scheme.upper())
    except ValueError:
        raise AuthMalformed("未知的签名算法，请使用 MEDSIGN-HMAC-SM3 或 MEDSIGN-HMAC-SHA256"
                            ) from None
    params = parse_params(rest, id_name="keyId", id_pattern=KEY_ID)
    return algorithm, params["keyId"], decode_signature(params["signature"])


def parse_params(rest: str, *, id_name: str, id_pattern: re.Pattern[str]) -> dict[str, str]:
    """The ``name=value, signature=...`` parameters after an Authorization scheme: exactly
    ``id_name`` (matching ``id_pattern``) and ``signature``, each once."""
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _PARAM.fullmatch(part)
        if match is None or match.group(1) in params:
            raise AuthMalformed("Authorization 请求头格式错误")
        params[match.group(1)] = match.group(2)
    if set(params) != {id_name, "signature"} or not id_pattern.fullmatch(params[id_name]):
        raise AuthMalformed(f"Authorization 请求头须包含 {id_name} 和 signature")
    return params


def decode_signature(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthMalformed("signature 不是有效的 base64") from None


def check_timestamp(value: str | None, max_skew: int, now: float | None = None) -> str:
    if not value:
        raise AuthHeadersMissing(f"缺少 {TIMESTAMP_HEADER} 请求头")
    if not (value.isascii() and value.isdigit() and len(value) <= 12):
        raise AuthMalformed(f"{TIMESTAMP_HEADER} 须为 Unix 时间（秒）")
    current = time.time() if now is None else now
    if abs(int(value) - current) > max_skew:
        # server_time lets a client with a wrong clock correct its offset and retry.
        raise RequestExpired(f"请求时间戳与设备时间相差超过 {max_skew} 秒，请检查时钟同步",
                             server_time=int(current))
    return value


def check_nonce(value: str | None) -> str:
    if not value:
        raise AuthHeadersMissing(f"缺少 {NONCE_HEADER} 请求头")
    if not NONCE.fullmatch(value):
        raise AuthMalformed(f"{NONCE_HEADER} 须为 16 到 64 个字母、数字、下划线或连字符")
    return value


def signature_matches(algorithm: Algorithm, secret: bytes, message: bytes,
                      signature: bytes) -> bool:
    return constant_time_equal(compute_signature(algorithm, secret, message), signature)
