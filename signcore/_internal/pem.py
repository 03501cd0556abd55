"""PEM armour (RFC 7468) without a dependency on either OpenSSL."""

from __future__ import annotations

import base64
import binascii
import re

from signcore.errors import DecodeError

_PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def pem_encode(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        f"-----BEGIN {label}-----\n".encode()
        + b"\n".join(lines)
        + f"\n-----END {label}-----\n".encode()
    )


def is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data[:4096]


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``data`` as (label, DER), in order."""
    blocks = []
    for match in _PEM_RE.finditer(data):
        body = match.group(2)
        if b":" in body.split(b"\n", 1)[0]:
            raise DecodeError("legacy PEM with headers (Proc-Type/DEK-Info) is not supported")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"bad base64 in PEM block {match.group(1).decode()}") from exc
        blocks.append((match.group(1).decode(), der))
    return blocks


def pem_decode(data: bytes, *labels: str) -> tuple[str, bytes]:
    """The first PEM block whose label is one of ``labels`` (any label when none given)."""
    for label, der in pem_blocks(data):
        if not labels or label in labels:
            return label, der
    wanted = " or ".join(labels) if labels else "any"
    raise DecodeError(f"no PEM block ({wanted}) found")


def to_der(data: bytes, *labels: str) -> bytes:
    """Accept PEM or DER; return DER."""
    if is_pem(data):
        return pem_decode(data, *labels)[1]
    return data
