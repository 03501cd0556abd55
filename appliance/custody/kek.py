"""The key-encryption key (KEK) and the envelopes of everything the appliance keeps secret.

Threat model: the database (and its backups) may be stolen; the KEK must not be in it, nor
anything that lets a thief derive it without the unseal material.  The KEK is 16 random bytes
(an SM4 key).  At rest it exists only *sealed*:

- ``passphrase``: SM4-GCM under Argon2id(passphrase) (t=3, m=64 MiB, p=2);
- ``shamir``: SM4-GCM under an unseal key U split into n Shamir shares (k needed), one per
  security officer, printed once at ``medsign init``;
- ``pkcs11``: wrapped by an AES key that never leaves a PKCS#11 token.

After unseal the KEK lives in the appliance process only.  Every secret the appliance stores
(server key shares, CA/TSA/seal keys, TOTP seeds, application secrets, PIN records) is an
*envelope*: a fresh 16-byte data key encrypts the secret with SM4-GCM, bound by associated data
to what it is (so an envelope cannot be moved to another row), and the KEK wraps the data key.

Envelope layout (all SM4-GCM, 12-byte nonces, 16-byte tags)::

    0x01 | dek_nonce | SM4-GCM_KEK(dek, "medsign/dek/v1") | data_nonce | SM4-GCM_dek(secret, aad)
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
from typing import Any

from argon2.low_level import Type, hash_secret_raw

from appliance.custody import shamir
from appliance.errors import BadRequest, Sealed
from signcore import sm4
from signcore.errors import DecryptionError
from signcore.hashes import hmac_sm3, sm3

KEK_SIZE = sm4.KEY_SIZE
ENVELOPE_VERSION = 1
_DEK_AAD = b"medsign/dek/v1"
_SEAL_AAD = b"medsign/kek/v1"
ARGON2 = {"time_cost": 3, "memory_cost": 64 * 1024, "parallelism": 2}
MIN_PASSPHRASE = 12


class UnsealFailed(BadRequest):
    code, title = "unseal-failed", "解封失败"


class Keyring:
    """The unsealed KEK: wraps and unwraps envelopes."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEK_SIZE:
            raise ValueError("the KEK is 16 bytes")
        self._kek = kek
        self._fingerprint = hmac_sm3(kek, b"medsign/kek-fingerprint/v1").hex()[:16]

    @property
    def fingerprint(self) -> str:
        """HMAC-SM3 of a label under the KEK, 16 hex digits: which KEK is loaded, revealing none
        of it (computed once: caches are keyed by it on every request)."""
        return self._fingerprint

    def wrap(self, secret: bytes, context: bytes) -> bytes:
        dek = os.urandom(sm4.KEY_SIZE)
        dek_nonce, data_nonce = os.urandom(12), os.urandom(12)
        return (bytes([ENVELOPE_VERSION]) + dek_nonce
                + sm4.gcm_encrypt(self._kek, dek_nonce, dek, _DEK_AAD)
                + data_nonce + sm4.gcm_encrypt(dek, data_nonce, secret, context))

    def unwrap(self, envelope: bytes, context: bytes) -> bytes:
        """The secret; DecryptionError if the envelope was altered, moved or is for another KEK."""
        if len(envelope) < 1 + 12 + 32 + 12 + 16 or envelope[0] != ENVELOPE_VERSION:
            raise DecryptionError("not a medsign envelope")
        dek_nonce, wrapped_dek = envelope[1:13], envelope[13:45]
        data_nonce, body = envelope[45:57], envelope[57:]
        dek = sm4.gcm_decrypt(self._kek, dek_nonce, wrapped_dek, _DEK_AAD)
        return sm4.gcm_decrypt(dek, data_nonce, body, context)

    def hmac(self, label: bytes, data: bytes) -> bytes:
        """A keyed digest derived from the KEK for one purpose (never the KEK itself)."""
        return hmac_sm3(hmac_sm3(self._kek, b"medsign/derive/v1:" + label), data)


def new_kek() -> bytes:
    return os.urandom(KEK_SIZE)


def _encrypt(key: bytes, kek: bytes) -> dict[str, str]:
    nonce = os.urandom(12)
    return {"nonce": nonce.hex(), "ct": sm4.gcm_encrypt(key, nonce, kek, _SEAL_AAD).hex()}


def _decrypt(key: bytes, sealed: dict[str, Any]) -> bytes:
    try:
        return sm4.gcm_decrypt(key, bytes.fromhex(sealed["nonce"]), bytes.fromhex(sealed["ct"]),
                               _SEAL_AAD)
    except (DecryptionError, KeyError, ValueError):
        raise UnsealFailed("the unseal material does not open this appliance's KEK") from None


def _passphrase_key(passphrase: str, salt: bytes, params: dict[str, int]) -> bytes:
    return hash_secret_raw(passphrase.encode(), salt, hash_len=KEK_SIZE, type=Type.ID,
                           **params)


def seal_with_passphrase(kek: bytes, passphrase: str) -> dict[str, Any]:
    if len(passphrase) < MIN_PASSPHRASE:
        raise BadRequest(f"an unseal passphrase has at least {MIN_PASSPHRASE} characters")
    salt = os.urandom(16)
    return {"method": "passphrase", "kdf": {"alg": "argon2id", "salt": salt.hex(), **ARGON2},
            **_encrypt(_passphrase_key(passphrase, salt, ARGON2), kek)}


def seal_with_shamir(kek: bytes, threshold: int, count: int) -> tuple[dict[str, Any], list[str]]:
    """The sealed KEK and the printed shares (show each once, to one officer)."""
    unseal_key = os.urandom(KEK_SIZE)
    parts = shamir.split(unseal_key, threshold, count)
    printed = [shamir.encode_share(x, threshold, body) for x, body in parts]
    sealed = {"method": "shamir", "threshold": threshold, "shares": count,
              # Per-share digests let the appliance name a wrong share instead of failing late.
              "share_digests": {str(x): sm3(body).hex()[:16] for x, body in parts},
              **_encrypt(unseal_key, kek)}
    return sealed, printed


def open_with_passphrase(sealed: dict[str, Any], passphrase: str) -> bytes:
    kdf = sealed["kdf"]
    params = {k: int(kdf[k]) for k in ARGON2}
    return _decrypt(_passphrase_key(passphrase, bytes.fromhex(kdf["salt"]), params), sealed)


@dataclasses.dataclass
class ShamirProgress:
    """Shares collected so far for one unseal attempt (in memory only)."""

    threshold: int
    shares: dict[int, bytes] = dataclasses.field(default_factory=dict)

    def add(self, sealed: dict[str, Any], text: str) -> bool:
        """Add one printed share; True once enough are present.  ValueError names a bad one."""
        index, threshold, body = shamir.decode_share(text)
        if threshold != sealed["threshold"]:
            raise UnsealFailed(f"share {index} belongs to a {threshold}-of-n split, not this one")
        expected = sealed["share_digests"].get(str(index))
        if expected is None or not hmac.compare_digest(sm3(body).hex()[:16], expected):
            raise UnsealFailed(f"share {index} is not one of this appliance's shares")
        self.shares[index] = body
        return len(self.shares) >= self.threshold

    def open(self, sealed: dict[str, Any]) -> bytes:
        return _decrypt(shamir.combine(list(self.shares.items())), sealed)


def dumps(sealed: dict[str, Any]) -> str:
    return json.dumps(sealed, sort_keys=True)


def seal_required(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise Sealed()
    return keyring
