"""Shamir secret sharing over GF(2^8), byte by byte (the scheme HashiCorp Vault uses).

Each share is ``(x, y_1..y_L)`` with x in 1..255; any k shares reconstruct the secret by
Lagrange interpolation at 0, fewer reveal nothing about it.  Shares are printed for security
officers as ``MSS1-<x>-<k>-<hex body>-<check>`` where ``check`` is 4 hex digits of SM3 over the
rest, so a mistyped share is named before any reconstruction is attempted.

Threat model: this code handles secret bytes in Python (table lookups indexed by secret
values); it runs once per unseal on the appliance, not on an attacker-observable hot path.
"""

from __future__ import annotations

import os
import re

from signcore.hashes import sm3

PREFIX = "MSS1"
_SHARE_RE = re.compile(r"^MSS1-([0-9a-f]{2})-(\d{1,3})-([0-9a-f]+)-([0-9a-f]{4})$")

# log/exp tables of GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1 and generator 3.
_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _i in range(255):
    _EXP[_i] = _value
    _LOG[_value] = _i
    _value ^= (_value << 1) ^ (0x11B if _value & 0x80 else 0)  # multiply by 3
    _value &= 0xFF
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


def split(secret: bytes, threshold: int, shares: int) -> list[tuple[int, bytes]]:
    """``shares`` shares of ``secret``, any ``threshold`` of which reconstruct it."""
    if not 2 <= threshold <= shares <= 255:
        raise ValueError("need 2 <= threshold <= shares <= 255")
    if not secret:
        raise ValueError("empty secret")
    # One random polynomial of degree threshold-1 per byte, with the secret byte as constant.
    coefficients = [os.urandom(threshold - 1) for _ in secret]
    out = []
    for x in range(1, shares + 1):
        body = bytearray()
        for byte, coeffs in zip(secret, coefficients, strict=True):
            y, power = byte, 1
            for c in coeffs:
                power = _mul(power, x)
                y ^= _mul(c, power)
            body.append(y)
        out.append((x, bytes(body)))
    return out


def combine(shares: list[tuple[int, bytes]]) -> bytes:
    """The secret from at least ``threshold`` distinct shares (more are fine)."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs) or any(not 1 <= x <= 255 for x in xs):
        raise ValueError("shares must have distinct indexes 1..255")
    lengths = {len(body) for _, body in shares}
    if len(lengths) != 1:
        raise ValueError("shares of different lengths")
    secret = bytearray(lengths.pop())
    for i, (xi, body) in enumerate(shares):
        # Lagrange basis polynomial l_i evaluated at 0: prod x_j / (x_j - x_i); "-" is XOR.
        basis = 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                basis = _mul(basis, _div(xj, xj ^ xi))
        for pos, y in enumerate(body):
            secret[pos] ^= _mul(y, basis)
    return bytes(secret)


def _check(text: str) -> str:
    return sm3(text.encode()).hex()[:4]


def encode_share(index: int, threshold: int, body: bytes) -> str:
    head = f"{PREFIX}-{index:02x}-{threshold}-{body.hex()}"
    return f"{head}-{_check(head)}"


def decode_share(text: str) -> tuple[int, int, bytes]:
    """(index, threshold, body) of a printed share; ValueError naming what is wrong."""
    cleaned = "".join(text.split()).lower()
    match = _SHARE_RE.match(cleaned.replace("mss1", PREFIX, 1))
    if not match:
        raise ValueError("not a medsign unseal share (expected MSS1-xx-k-hex-check)")
    index_hex, threshold, body_hex, check = match.groups()
    head = f"{PREFIX}-{index_hex}-{threshold}-{body_hex}"
    if _check(head) != check:
        raise ValueError(f"share {int(index_hex, 16)} has a typo (its check digits do not match)")
    if len(body_hex) % 2:
        raise ValueError("share body has an odd number of hex digits")
    return int(index_hex, 16), int(threshold), bytes.fromhex(body_hex)
