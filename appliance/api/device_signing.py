"""Device-signed requests: MEDSIGN-DEVICE-SM2, how a signer's bound phone calls
``/api/v1/mobile/...``.

The string to sign is the one of :mod:`appliance.api.hmac_signing` with SM3 as the body
digest (method, canonical path, canonical query, SM3 of the body, timestamp, nonce).  The
phone signs it with its device key: SM2 with SM3 and the default signer ID
``1234567812345678``, the signature DER ``SEQUENCE { r, s }``::

    Authorization: MEDSIGN-DEVICE-SM2 deviceId=<device id>, signature=<base64 DER>
    X-Medsign-Timestamp: <unix seconds>
    X-Medsign-Nonce: <16 to 64 of [A-Za-z0-9_-]>

Threat model: as for application requests (hmac_signing), with a key only the phone holds
instead of a shared secret; the server keeps the device's public key.  Checks are in
:class:`appliance.services.devices.DeviceService`.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
import urllib.parse

from appliance.api import hmac_signing
from appliance.api.hmac_signing import NONCE_HEADER, TIMESTAMP_HEADER, AuthMalformed
from signcore.errors import InvalidSignature
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

SCHEME = "MEDSIGN-DEVICE-SM2"
DEVICE_ID = re.compile(r"dv_[A-Za-z0-9_-]{1,40}")


def string_to_sign(*, method: str, decoded_path: str, query: str, body: bytes,
                   timestamp: str, nonce: str) -> bytes:
    return hmac_signing.string_to_sign(hmac_signing.Algorithm.SM3, method=method,
                                       decoded_path=decoded_path, query=query, body=body,
                                       timestamp=timestamp, nonce=nonce)


def sign_request(method: str, target: str, *, device_id: str, key: SM2PrivateKey,
                 body: bytes = b"", timestamp: int | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The headers that sign a request from a device (tests, benchmarks, the Python SDK)."""
    path, _, query = target.partition("?")
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    message = string_to_sign(method=method, decoded_path=urllib.parse.unquote(path),
                             query=query, body=body, timestamp=stamp, nonce=nonce)
    signature = base64.b64encode(key.sign(message)).decode()
    return {"Authorization": f"{SCHEME} deviceId={device_id}, signature={signature}",
            TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce}


def is_device_signed(authorization: str | None) -> bool:
    return authorization is not None and authorization.lstrip().upper().startswith(
        SCHEME + " ")


def parse_authorization(header: str) -> tuple[str, bytes]:
    """(device id, signature) of a MEDSIGN-DEVICE-SM2 Authorization header."""
    _, _, rest = header.strip().partition(" ")
    params = hmac_signing.parse_params(rest, id_name="deviceId", id_pattern=DEVICE_ID)
    signature = hmac_signing.decode_signature(params["signature"])
    if not 8 <= len(signature) <= 80:
        raise AuthMalformed("signature 长度不对")
    return params["deviceId"], signature


def signature_matches(key: SM2PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
