"""Request authentication, as the appliance checks it (appliance/api/hmac_signing.py and
appliance/api/device_signing.py).

String to sign: six lines joined by ``\\n``: the method (upper case); the path, percent-decoded
then RFC 3986 encoded with ``/`` kept; the canonical query (each name and value
percent-decoded, ``+`` as space, then RFC 3986 encoded, pairs sorted, joined by ``&``); the
lower-case hex digest of the exact body bytes (SM3, or SHA-256 for MEDSIGN-HMAC-SHA256); the
timestamp (``X-Medsign-Timestamp``, unix seconds); the nonce (``X-Medsign-Nonce``).

- Backend: ``Authorization: MEDSIGN-HMAC-SM3 keyId=<id>, signature=<base64 HMAC(secret, s)>``.
- Phone: ``Authorization: MEDSIGN-DEVICE-SM2 deviceId=<id>, signature=<base64 DER SM2>``,
  an SM2-with-SM3 signature (default ID) of the string to sign by the device key.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac

from medsign_sdk import _sm2

TIMESTAMP_HEADER = "X-Medsign-Timestamp"
NONCE_HEADER = "X-Medsign-Nonce"
ALGORITHMS = {"SM3": "MEDSIGN-HMAC-SM3", "SHA256": "MEDSIGN-HMAC-SHA256"}


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    if algorithm == "SM3":
        return hashes.SM3()
    if algorithm == "SHA256":
        return hashes.SHA256()
    raise ValueError("algorithm: SM3 or SHA256")


def _quote(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text, safe=safe)


def canonical_path(path: str) -> str:
    return _quote(urllib.parse.unquote(path) or "/", safe="/")


def canonical_query(query: str) -> str:
    pairs = [(urllib.parse.unquote_plus(name), urllib.parse.unquote_plus(value))
             for name, _, value in (part.partition("=") for part in query.split("&") if part)]
    return "&".join(f"{n}={v}" for n, v in sorted((_quote(n), _quote(v)) for n, v in pairs))


def string_to_sign(method: str, target: str, body: bytes, timestamp: str, nonce: str, *,
                   algorithm: str = "SM3") -> bytes:
    """``target`` is the path with its query, as sent (``/api/v1/x?a=1``)."""
    path, _, query = target.partition("?")
    digest = hashes.Hash(_hash(algorithm))
    digest.update(body)
    return "\n".join((method.upper(), canonical_path(path), canonical_query(query),
                      digest.finalize().hex(), timestamp, nonce)).encode()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters of [A-Za-z0-9_-]


def decode_secret(secret: bytes | str) -> bytes:
    """The raw credential secret: bytes as they are, text as the base64url shown at creation."""
    if isinstance(secret, bytes):
        return secret
    try:
        return base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not base64url text") from None


def hmac_digest(algorithm: str, secret: bytes, message: bytes) -> bytes:
    mac = _hmac.HMAC(secret, _hash(algorithm))
    mac.update(message)
    return mac.finalize()


def hmac_headers(method: str, target: str, body: bytes, *, key_id: str, secret: bytes,
                 algorithm: str = "SM3", timestamp: int | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The headers that sign a backend request."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    message = string_to_sign(method, target, body, stamp, nonce, algorithm=algorithm)
    signature = base64.b64encode(hmac_digest(algorithm, secret, message)).decode()
    return {"Authorization": f"{ALGORITHMS[algorithm]} keyId={key_id}, signature={signature}",
            TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce}


def device_headers(method: str, target: str, body: bytes, *, device_id: str, key: int,
                   timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that sign a phone request with its device key (a private scalar)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    message = string_to_sign(method, target, body, stamp, nonce)
    signature = base64.b64encode(_sm2.sign(key, message)).decode()
    return {"Authorization": f"MEDSIGN-DEVICE-SM2 deviceId={device_id}, signature={signature}",
            TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce}
