"""Phone-share protection: the PIN is checked only by the server, and the phone's share is
encrypted under a key that needs both the PIN and a secret only the server holds.

Construction (HMAC is HMAC-SM3; every label is a distinct ASCII prefix):

- phone: ``salt`` = 16 random bytes kept only on the phone;
  ``pin_proof = HMAC(salt, "medsign/pin/v1" || PIN)``.
- server (per signer): ``pin_key`` = 32 random bytes, stored only wrapped under the KEK;
  ``verifier = HMAC(pin_key, "medsign/verify/v1" || pin_proof)``;
  on a correct proof it answers ``unwrap = HMAC(pin_key, "medsign/unwrap/v1" || pin_proof)``.
- phone: ``K = HMAC(unwrap, "medsign/share-key/v1" || salt)[:16]``; the share is stored as
  SM4-GCM(K) with the key identifier as associated data.

Threat model:

- *A thief with the phone* (share blob, salt, device key) but not the PIN cannot decrypt the
  share offline: K depends on ``pin_key``, which never leaves the server.  Each guess is an online
  request that the server counts; after ``max_failures`` (default 10) wrong PINs the share locks,
  and a correct PIN is refused until the signer's identity is re-verified.  So the thief gets at
  most ``max_failures`` guesses in total, not per day.
- *A thief with the server database* but not the KEK learns nothing: ``pin_key`` and the server
  key shares are stored wrapped.  *With* the KEK (a compromised running appliance) they hold
  the server shares and ``pin_key``, but not the phone's share, and cannot brute-force the PIN
  either, because the salt that enters ``pin_proof`` exists only on the phone.  The server share
  alone cannot sign (two-party SM2 and additive RSA shares: see ``keysplit.sm2``/``keysplit.rsa``).
- *Both together* (phone and a compromised server) can enumerate the PIN space offline and so
  recover the phone share and sign: split custody protects against either one, not both.
  A PKCS#11 token holding the KEK raises the bar for the server half.
- A passive observer of the (TLS-protected) traffic who records ``pin_proof`` can replay it only
  through a device-authenticated request of that signer's bound phone; the appliance binds every
  request to the device key.
- Unlocking a locked share after the signer's identity was re-verified keeps the PIN and grants
  another ``max_failures`` guesses: the identity check, not the counter, bounds the total.
- An auto-sign window works by the phone caching ``unwrap`` (the server skips the PIN check for
  that session); whoever holds the phone during the window can sign through the server, and
  the cached key opens the share until the PIN changes.  The phone must drop it when the window
  ends, and the server refuses PIN-less sessions outside an authorization.
- Residual: CPython's big-integer and HMAC code is not constant-time; the comparison of the
  verifier is (``hmac.compare_digest``).

A PIN change re-wraps the same share under a new ``pin_key`` without changing any signing key;
the old PIN stays valid until the phone proves it stored the new wrap by using the new PIN once
(so a phone that crashes mid-change is not locked out).
"""

from __future__ import annotations

import dataclasses
import hmac
import os
from typing import Any

from keysplit.errors import PinError, ShareLocked, WrongPin
from signcore import sm4
from signcore.errors import DecryptionError
from signcore.hashes import hmac_sm3

DEFAULT_MAX_FAILURES = 10
SALT_SIZE = 16
PIN_KEY_SIZE = 32
MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 64

_PIN_LABEL = b"medsign/pin/v1"
_VERIFY_LABEL = b"medsign/verify/v1"
_UNWRAP_LABEL = b"medsign/unwrap/v1"
_SHARE_KEY_LABEL = b"medsign/share-key/v1"


# --- phone side ------------------------------------------------------------------------------


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def pin_proof(pin: str, salt: bytes) -> bytes:
    """What the phone sends instead of the PIN."""
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise ValueError(f"a PIN has {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters")
    if len(salt) != SALT_SIZE:
        raise ValueError(f"the PIN salt is {SALT_SIZE} bytes")
    return hmac_sm3(salt, _PIN_LABEL + pin.encode())


def _share_key(unwrap: bytes, salt: bytes) -> bytes:
    return hmac_sm3(unwrap, _SHARE_KEY_LABEL + salt)[: sm4.KEY_SIZE]


def wrap_share(share: bytes, *, unwrap: bytes, salt: bytes, key_id: bytes) -> bytes:
    """Encrypt the phone's share for storage on the phone: nonce || SM4-GCM ciphertext."""
    nonce = os.urandom(sm4.GCM_NONCE_SIZE)
    return nonce + sm4.gcm_encrypt(_share_key(unwrap, salt), nonce, share, key_id)


def unwrap_share(blob: bytes, *, unwrap: bytes, salt: bytes, key_id: bytes) -> bytes:
    """Decrypt a wrapped share; PinError if the unwrap key does not open it."""
    nonce, body = blob[: sm4.GCM_NONCE_SIZE], blob[sm4.GCM_NONCE_SIZE :]
    try:
        return sm4.gcm_decrypt(_share_key(unwrap, salt), nonce, body, key_id)
    except (DecryptionError, ValueError):
        raise PinError("the share does not open with this unwrap key") from None


# --- server side -----------------------------------------------------------------------------


def _verifier(pin_key: bytes, proof: bytes) -> bytes:
    return hmac_sm3(pin_key, _VERIFY_LABEL + proof)


def _unwrap(pin_key: bytes, proof: bytes) -> bytes:
    return hmac_sm3(pin_key, _UNWRAP_LABEL + proof)


@dataclasses.dataclass(frozen=True)
class PinOutcome:
    """The result of a PIN check: persist ``record`` first, then act on ``error``."""

    record: PinRecord
    unwrap: bytes | None = None
    new_unwrap: bytes | None = None  # during a PIN change: the unwrap key for the new PIN
    error: PinError | None = None

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


@dataclasses.dataclass(frozen=True)
class PinRecord:
    """The server's PIN state for one signer's share (immutable; methods return new records).

    ``pin_key`` is secret: the appliance stores the record only wrapped under the KEK.
    """

    pin_key: bytes
    verifier: bytes
    failures: int = 0
    locked: bool = False
    max_failures: int = DEFAULT_MAX_FAILURES
    pending_pin_key: bytes | None = None
    pending_verifier: bytes | None = None

    @classmethod
    def create(cls, proof: bytes, max_failures: int = DEFAULT_MAX_FAILURES
               ) -> tuple[PinRecord, bytes]:
        """A record for a first PIN; returns it and the unwrap key for wrapping the share."""
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        pin_key = os.urandom(PIN_KEY_SIZE)
        return cls(pin_key, _verifier(pin_key, proof), max_failures=max_failures), _unwrap(
            pin_key, proof)

    @property
    def attempts_left(self) -> int:
        return 0 if self.locked else self.max_failures - self.failures

    def verify(self, proof: bytes | None) -> PinOutcome:
        """Check a PIN proof; a proof of the pending new PIN completes a PIN change."""
        if self.locked:
            return PinOutcome(self, error=ShareLocked())
        if proof is not None and hmac.compare_digest(_verifier(self.pin_key, proof),
                                                     self.verifier):
            return PinOutcome(dataclasses.replace(self, failures=0), _unwrap(self.pin_key, proof))
        if (proof is not None and self.pending_pin_key is not None
                and self.pending_verifier is not None
                and hmac.compare_digest(_verifier(self.pending_pin_key, proof),
                                        self.pending_verifier)):
            committed = dataclasses.replace(
                self, pin_key=self.pending_pin_key, verifier=self.pending_verifier, failures=0,
                pending_pin_key=None, pending_verifier=None)
            return PinOutcome(committed, _unwrap(committed.pin_key, proof))
        return self._failure()

    def _failure(self) -> PinOutcome:
        failures = self.failures + 1
        locked = failures >= self.max_failures
        record = dataclasses.replace(self, failures=failures, locked=locked)
        error: PinError = ShareLocked() if locked else WrongPin(record.attempts_left)
        return PinOutcome(record, error=error)

    def begin_change(self, old_proof: bytes, new_proof: bytes) -> PinOutcome:
        """Check the old PIN and prepare the new one.  The outcome carries the unwrap keys for
        both: the phone opens its share with the old one and re-wraps it with the new one."""
        outcome = self.verify(old_proof)
        if outcome.error is not None:
            return outcome
        current = outcome.record
        if hmac.compare_digest(_verifier(current.pin_key, new_proof), current.verifier):
            # The "new" PIN is the current one: keep its key.  A pending key for it could never
            # commit (verify matches the current key first), so the share the phone re-wraps
            # under it would never open again.
            record = dataclasses.replace(current, pending_pin_key=None, pending_verifier=None)
            return PinOutcome(record, outcome.unwrap, outcome.unwrap)
        pin_key = os.urandom(PIN_KEY_SIZE)
        record = dataclasses.replace(outcome.record, pending_pin_key=pin_key,
                                     pending_verifier=_verifier(pin_key, new_proof))
        return PinOutcome(record, outcome.unwrap, _unwrap(pin_key, new_proof))

    def unlock_after_identity_check(self) -> PinRecord:
        """Clear the lock and the counter; only after the signer's identity was re-verified."""
        return dataclasses.replace(self, failures=0, locked=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PinRecord:
        def optional(name: str) -> bytes | None:
            value = data.get(name)
            return bytes.fromhex(value) if value is not None else None

        return cls(bytes.fromhex(data["pin_key"]), bytes.fromhex(data["verifier"]),
                   int(data["failures"]), bool(data["locked"]), int(data["max_failures"]),
                   optional("pending_pin_key"), optional("pending_verifier"))
