"""gmssl (pure Python SM2/SM3) as an independent second implementation for the tests.

DESIGN.md section 3: every SM2 signature the project makes is cross-checked by gmssl.  Nothing
here uses signcore to compute what gmssl is asked to confirm: signature DER is parsed with
asn1crypto, Z and e are computed with gmssl's own SM3, and points come in as plain integers.

gmssl traps (PEERS.md "gmssl"): its constructor strips a leading "04" with ``lstrip``, which also
eats leading 0/4 hex digits of X, so the public key is set on the instance after construction as
``X_hex + Y_hex``.  ``verify_with_sm3``/``sign_with_sm3`` hard-code the ID 1234567812345678; for
other IDs the oracle computes Z itself with gmssl's SM3 and calls the raw ``verify``/``sign``.
``verify`` does not range-check r and s, so the oracle does that before asking gmssl.
"""

from __future__ import annotations

import secrets
from typing import Any

from asn1crypto import algos
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3

from signcore import ec
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

DEFAULT_ID = b"1234567812345678"
N = int(gm_sm2.default_ecc_table["n"], 16)
_TABLE = gm_sm2.default_ecc_table


def sm3(data: bytes) -> bytes:
    """SM3 by gmssl."""
    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def _xy(public: SM2PublicKey | ec.Point) -> tuple[int, int]:
    point = public.point if isinstance(public, SM2PublicKey) else public
    return point.x, point.y


def _crypt(public: SM2PublicKey | ec.Point, private_scalar: int | None = None) -> Any:
    x, y = _xy(public)
    priv = f"{private_scalar:064x}" if private_scalar is not None else ""
    c = gm_sm2.CryptSM2(private_key=priv, public_key="")
    c.public_key = f"{x:064x}{y:064x}"  # never through the constructor (see module docstring)
    return c


def z(public: SM2PublicKey | ec.Point, signer_id: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), all with gmssl's SM3."""
    x, y = _xy(public)
    entl = (len(signer_id) * 8).to_bytes(2, "big")
    curve = bytes.fromhex(_TABLE["a"] + _TABLE["b"] + _TABLE["g"])
    return sm3(entl + signer_id + curve + x.to_bytes(32, "big") + y.to_bytes(32, "big"))


def e(public: SM2PublicKey | ec.Point, message: bytes, signer_id: bytes = DEFAULT_ID) -> bytes:
    """e = SM3(Z_A || M) with gmssl's SM3."""
    return sm3(z(public, signer_id) + message)


def parse_signature(signature: bytes) -> tuple[int, int] | None:
    """(r, s) of a strict-DER SM2 signature with both in [1, n-1], else None (asn1crypto)."""
    try:
        value = algos.DSASignature.load(signature, strict=True)
        r, s = int(value["r"].native), int(value["s"].native)
        if value.dump(force=True) != signature:
            return None
    except (ValueError, TypeError, KeyError):
        return None
    if not (0 < r < N and 0 < s < N):
        return None
    return r, s


def verify_digest(public: SM2PublicKey | ec.Point, signature: bytes, digest: bytes) -> bool:
    """gmssl's verdict on a DER signature over a precomputed e."""
    rs = parse_signature(signature)
    if rs is None or len(digest) != 32:
        return False
    try:
        return bool(_crypt(public).verify(f"{rs[0]:064x}{rs[1]:064x}", digest))
    except (TypeError, ValueError):  # gmssl hits the point at infinity on hostile input
        return False


def verify(
    public: SM2PublicKey | ec.Point,
    signature: bytes,
    message: bytes,
    signer_id: bytes = DEFAULT_ID,
) -> bool:
    """gmssl's verdict on a DER SM2-with-SM3 signature over ``message`` with ``signer_id``."""
    if signer_id != DEFAULT_ID:
        return verify_digest(public, signature, e(public, message, signer_id))
    rs = parse_signature(signature)
    if rs is None:
        return False
    try:
        return bool(_crypt(public).verify_with_sm3(f"{rs[0]:064x}{rs[1]:064x}", message))
    except (TypeError, ValueError):
        return False


def sign(
    private_scalar: int,
    public: SM2PublicKey | ec.Point,
    message: bytes,
    signer_id: bytes = DEFAULT_ID,
) -> bytes:
    """A DER SM2-with-SM3 signature made by gmssl (random k from ``secrets``)."""
    crypt = _crypt(public, private_scalar)
    while True:
        k = f"{secrets.randbelow(N - 1) + 1:064x}"
        if signer_id == DEFAULT_ID:
            rs = crypt.sign_with_sm3(message, k)
        else:
            rs = crypt.sign(e(public, message, signer_id), k)
        if rs is not None:  # gmssl returns None for the (negligible) r=0 / s=0 cases
            break
    r, s = int(rs[:64], 16), int(rs[64:], 16)
    return bytes(algos.DSASignature({"r": r, "s": s}).dump())


class CheckedSM2Key:
    """An SM2 private key whose every signature is also verified by gmssl before it is returned.

    Tests that make SM2 signatures use this (through a fixture) so that no signature the project
    makes escapes the second implementation.
    """

    def __init__(self, key: SM2PrivateKey) -> None:
        self.key = key
        self.public = key.public_key()
        self.checked = 0

    def sign(self, message: bytes, *, signer_id: bytes = DEFAULT_ID) -> bytes:
        signature = self.key.sign(message, signer_id=signer_id)
        assert verify(self.public, signature, message, signer_id), "gmssl rejects our signature"
        self.checked += 1
        return signature

    def sign_digest(self, digest: bytes) -> bytes:
        signature = self.key.sign_digest(digest)
        assert verify_digest(self.public, signature, digest), "gmssl rejects our signature"
        self.checked += 1
        return signature
