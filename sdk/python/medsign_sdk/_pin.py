"""The PIN proof and the wrap of the phone's share, byte for byte as keysplit/pin.py
(keysplit/README.md section 10):

- ``pin_proof = HMAC-SM3(salt, "medsign/pin/v1" || UTF-8(PIN))``
- ``K = HMAC-SM3(unwrap, "medsign/share-key/v1" || salt)[:16]``
- ``key_id = SM3(public key bytes)[:16]``
- ``wrapped = nonce (12) || SM4-GCM(K, nonce, share, aad = key_id) || tag (16)``

SM4-GCM uses ``cryptography``'s when its OpenSSL has it; otherwise GCM (NIST SP 800-38D) is
built here over the SM4 block function (SM4-ECB of ``cryptography``): CTR with the 32-bit
counter of GCM and GHASH in pure Python.  Both give the same bytes (the tests check both against
RFC 8998 and keysplit).
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from medsign_sdk._sm2 import hmac_sm3, sm3

SALT_SIZE = 16
MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 64
KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
_PIN_LABEL = b"medsign/pin/v1"
_SHARE_KEY_LABEL = b"medsign/share-key/v1"


class UnwrapError(ValueError):
    """The unwrap key does not open the wrapped share (the GCM tag does not verify)."""


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def pin_proof(pin: str, salt: bytes) -> bytes:
    """What the phone sends instead of the PIN (4 to 64 characters)."""
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise ValueError(f"a PIN has {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters")
    if len(salt) != SALT_SIZE:
        raise ValueError(f"the PIN salt is {SALT_SIZE} bytes")
    return hmac_sm3(salt, _PIN_LABEL + pin.encode())


def share_key(unwrap: bytes, salt: bytes) -> bytes:
    return hmac_sm3(unwrap, _SHARE_KEY_LABEL + salt)[:KEY_SIZE]


def key_id(public_key: bytes) -> bytes:
    return sm3(public_key)[:16]


def wrap_share(share: bytes, *, unwrap: bytes, salt: bytes, key_id: bytes,
               nonce: bytes | None = None) -> bytes:
    """nonce || SM4-GCM(K, share, aad=key_id) || tag; a fresh nonce unless one is given."""
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    return nonce + gcm_encrypt(share_key(unwrap, salt), nonce, share, key_id)


def unwrap_share(blob: bytes, *, unwrap: bytes, salt: bytes, key_id: bytes) -> bytes:
    """The share; UnwrapError if this unwrap key does not open it."""
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        raise UnwrapError("the wrapped share is too short")
    return gcm_decrypt(share_key(unwrap, salt), blob[:NONCE_SIZE], blob[NONCE_SIZE:], key_id)


# --- SM4-GCM ---------------------------------------------------------------------------------


def _native_gcm() -> bool:
    try:
        Cipher(algorithms.SM4(bytes(KEY_SIZE)), modes.GCM(bytes(NONCE_SIZE))).encryptor()
    except (UnsupportedAlgorithm, ValueError):
        return False
    return True


NATIVE_GCM = _native_gcm()


def gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"", *,
                portable: bool | None = None) -> bytes:
    """ciphertext || tag.  ``portable`` forces (True) or avoids (False) the SDK's own GCM."""
    _check(key, nonce)
    if not (NATIVE_GCM if portable is None else not portable):
        return _portable_encrypt(key, nonce, plaintext, aad)
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + encryptor.tag


def gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"", *,
                portable: bool | None = None) -> bytes:
    """The plaintext of ciphertext || tag; UnwrapError unless the tag verifies."""
    _check(key, nonce)
    if len(data) < TAG_SIZE:
        raise UnwrapError("SM4-GCM input shorter than its tag")
    ciphertext, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not (NATIVE_GCM if portable is None else not portable):
        return _portable_decrypt(key, nonce, ciphertext, tag, aad)
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise UnwrapError("SM4-GCM: authentication failed") from None


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError("SM4 keys are 16 bytes")
    if len(nonce) != NONCE_SIZE:
        raise ValueError("SM4-GCM nonces are 12 bytes here")


def _ecb(key: bytes, blocks: bytes) -> bytes:
    encryptor = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305 (block fn)
    return encryptor.update(blocks) + encryptor.finalize()


_R = 0xE1 << 120


def _gf_mult(x: int, y: int) -> int:
    """Multiplication in GF(2^128) with GCM's bit order (SP 800-38D algorithm 1)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ghash(h: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    h_int, y = int.from_bytes(h, "big"), 0

    def absorb(data: bytes) -> None:
        nonlocal y
        padded = data + bytes(-len(data) % 16)
        for i in range(0, len(padded), 16):
            y = _gf_mult(y ^ int.from_bytes(padded[i:i + 16], "big"), h_int)

    absorb(aad)
    absorb(ciphertext)
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    y = _gf_mult(y ^ int.from_bytes(lengths, "big"), h_int)
    return y.to_bytes(16, "big")


def _keystream_xor(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """GCTR from inc32(J0), J0 = nonce || 00000001."""
    if len(data) > (2**32 - 2) * 16:
        raise ValueError("too long for GCM")
    count = (len(data) + 15) // 16
    counters = b"".join(nonce + ((2 + i) % 2**32).to_bytes(4, "big") for i in range(count))
    stream = _ecb(key, counters) if counters else b""
    return bytes(a ^ b for a, b in zip(data, stream, strict=False))


def _tag(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    blocks = _ecb(key, bytes(16) + nonce + b"\x00\x00\x00\x01")  # H = E(0), E(J0)
    s = _ghash(blocks[:16], aad, ciphertext)
    return bytes(a ^ b for a, b in zip(blocks[16:], s, strict=True))


def _portable_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    ciphertext = _keystream_xor(key, nonce, plaintext)
    return ciphertext + _tag(key, nonce, aad, ciphertext)


def _portable_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, tag: bytes,
                      aad: bytes) -> bytes:
    if not hmac.compare_digest(_tag(key, nonce, aad, ciphertext), tag):
        raise UnwrapError("SM4-GCM: authentication failed")
    return _keystream_xor(key, nonce, ciphertext)
