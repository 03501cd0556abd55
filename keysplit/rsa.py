"""Split RSA signing: d = d1 + d2 mod lambda(n); signatures are (m^d1 * m^d2) mod n.

Key generation makes an ordinary RSA key, splits its private exponent into a random phone share
d1 and the server share d2 = d - d1 mod lambda(n), and drops the key (p, q and d are not kept
anywhere; CPython cannot wipe integers, so they linger in freed memory until reused).  The
phone share travels to the phone encrypted to its device key (:meth:`RsaPhoneSecret.seal`).

Signing is PKCS#1 v1.5 with SHA-256: m = EMSA-PKCS1-v1_5(H(M)); the phone sends m^d1 mod n, the
server multiplies by m^d2 mod n (libcrypto's constant-time exponentiation) and verifies the
product as a standard signature before releasing it, so a wrong or malicious partial never
yields a signature, and a fault never leaks the server's share.

Flow (``keysplit/README.md``): rsa.offer -> rsa.unlock (PIN proof) -> rsa.unlocked (unwrap
key) -> rsa.commit (partials) -> rsa.result (signatures).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from keysplit._internal.session import check_reply, fresh_nonce, new_session
from keysplit.errors import (
    DigestMismatch,
    InvalidScalar,
    MalformedMessage,
    OutOfOrder,
    SignatureRejected,
)
from keysplit.messages import (
    DIGEST_SIZE,
    MAX_ITEMS,
    Reply,
    RsaCommit,
    RsaOffer,
    RsaResult,
    RsaUnlock,
    RsaUnlocked,
)
from keysplit.sm2 import UnlockFn
from signcore.algorithms import SignatureAlgorithm
from signcore.bignum import mod_exp_secret
from signcore.errors import InvalidSignature
from signcore.keys import RSAPublicKey
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

# DER of DigestInfo { sha256, NULL } before the 32-byte hash (RFC 8017 section 9.2, note 1).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
PUBLIC_EXPONENT = 65537


def emsa_pkcs1_v15(digest: bytes, modulus_bytes: int) -> int:
    """EMSA-PKCS1-v1_5 encoding of a SHA-256 digest, as an integer."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError("a SHA-256 digest is 32 bytes")
    t = _SHA256_DIGEST_INFO + digest
    if modulus_bytes < len(t) + 11:
        raise ValueError("modulus too short")
    encoded = b"\x00\x01" + b"\xff" * (modulus_bytes - len(t) - 3) + b"\x00" + t
    return int.from_bytes(encoded, "big")


def _to_bytes(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


@dataclasses.dataclass(frozen=True)
class RsaServerShare:
    """The server's exponent share.  ``d2`` is secret: store it wrapped under the KEK."""

    modulus: int
    public_exponent: int
    d2: int

    @property
    def size(self) -> int:
        return (self.modulus.bit_length() + 7) // 8

    def public_key(self) -> RSAPublicKey:
        return RSAPublicKey(pyca_rsa.RSAPublicNumbers(self.public_exponent,
                                                      self.modulus).public_key())

    def partial(self, digest: bytes) -> int:
        """m^d2 mod n, on libcrypto's constant-time ladder."""
        return mod_exp_secret(emsa_pkcs1_v15(digest, self.size), self.d2, self.modulus)

    def __repr__(self) -> str:
        return f"RsaServerShare({self.modulus.bit_length()} bits)"

    def to_dict(self) -> dict[str, str]:
        return {"modulus": hex(self.modulus), "public_exponent": hex(self.public_exponent),
                "d2": hex(self.d2)}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> RsaServerShare:
        return cls(int(data["modulus"], 16), int(data["public_exponent"], 16),
                   int(data["d2"], 16))


@dataclasses.dataclass(frozen=True)
class RsaPhoneSecret:
    """The phone's exponent share in transit from keygen to the phone."""

    modulus: int
    public_exponent: int
    d1: int

    def partial(self, digest: bytes) -> int:
        """m^d1 mod n (the reference phone; a real phone uses its platform's RSA primitive)."""
        size = (self.modulus.bit_length() + 7) // 8
        return pow(emsa_pkcs1_v15(digest, size), self.d1, self.modulus)

    def seal(self, device_key: SM2PublicKey) -> bytes:
        """Encrypt the share to the phone's device key (SM2 encryption, GM/T 0009 DER)."""
        size = (self.modulus.bit_length() + 7) // 8
        return device_key.encrypt(_to_bytes(self.d1, size))

    @classmethod
    def unseal(cls, sealed: bytes, device_key: SM2PrivateKey, modulus: int,
               public_exponent: int = PUBLIC_EXPONENT) -> RsaPhoneSecret:
        return cls(modulus, public_exponent, int.from_bytes(device_key.decrypt(sealed), "big"))

    def __repr__(self) -> str:
        return f"RsaPhoneSecret({self.modulus.bit_length()} bits)"


def split_keygen(bits: int = 2048) -> tuple[RsaServerShare, RsaPhoneSecret]:
    """A fresh RSA key, split; the whole private key is dropped before returning."""
    if bits not in (2048, 3072, 4096):
        raise ValueError("RSA-2048, 3072 or 4096")
    key = pyca_rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    lam = math.lcm(numbers.p - 1, numbers.q - 1)
    d = numbers.d % lam
    del key, numbers
    d1 = secrets.randbelow(lam - 1) + 1
    d2 = (d - d1) % lam
    return (RsaServerShare(n, PUBLIC_EXPONENT, d2), RsaPhoneSecret(n, PUBLIC_EXPONENT, d1))


# --- signing session (server) ----------------------------------------------------------------

Phase = Literal["await_unlock", "await_commit", "done"]


@dataclasses.dataclass(frozen=True)
class RsaState:
    session: bytes
    phase: Phase
    nonce: bytes
    digests: tuple[bytes, ...]
    require_pin: bool
    seen: tuple[bytes, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session.hex(), "phase": self.phase, "nonce": self.nonce.hex(),
                "digests": [d.hex() for d in self.digests], "require_pin": self.require_pin,
                "seen": [s.hex() for s in self.seen]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RsaState:
        return cls(bytes.fromhex(data["session"]), data["phase"], bytes.fromhex(data["nonce"]),
                   tuple(bytes.fromhex(d) for d in data["digests"]), bool(data["require_pin"]),
                   tuple(bytes.fromhex(s) for s in data["seen"]))


def _check(message: Reply, state: RsaState, phase: Phase) -> None:
    if state.phase != phase:
        raise OutOfOrder(f"a {type(message).__name__} is not expected now (phase {state.phase})")
    check_reply(message, state.session, state.nonce, state.seen)


class RsaServer:
    """The server role of split RSA signing for one key."""

    def __init__(self, share: RsaServerShare) -> None:
        self._share = share

    def open(self, digests: Sequence[bytes], *, require_pin: bool = True
             ) -> tuple[RsaState, RsaOffer]:
        items = tuple(digests)
        if not 0 < len(items) <= MAX_ITEMS or any(len(d) != DIGEST_SIZE for d in items):
            raise ValueError(f"1 to {MAX_ITEMS} SHA-256 digests")
        session, nonce = new_session()
        state = RsaState(session, "await_unlock", nonce, items, require_pin)
        modulus = _to_bytes(self._share.modulus, self._share.size)
        return state, RsaOffer(session=session, nonce=nonce, modulus=modulus, digests=items,
                               require_pin=require_pin)

    def unlock(self, state: RsaState, message: RsaUnlock, *, unlock: UnlockFn | None = None
               ) -> tuple[RsaState, RsaUnlocked]:
        _check(message, state, "await_unlock")
        unwrap = None
        if state.require_pin:
            if message.pin_proof is None:
                raise MalformedMessage("this session requires a PIN proof")
            if unlock is None:
                raise ValueError("a PIN-protected session needs an unlock function")
            unwrap = unlock(message.pin_proof)
        nonce = fresh_nonce()
        new_state = dataclasses.replace(state, phase="await_commit", nonce=nonce,
                                        seen=(*state.seen, message.nonce))
        return new_state, RsaUnlocked(session=state.session, nonce=nonce,
                                      reply_to=message.nonce, unwrap=unwrap)

    def finish(self, state: RsaState, commit: RsaCommit
               ) -> tuple[RsaState, RsaResult, tuple[bytes, ...]]:
        """Multiply in the server's partials, verify, and close the session."""
        _check(commit, state, "await_commit")
        if len(commit.partials) != len(state.digests):
            raise DigestMismatch("one partial signature per digest is required")
        share, public = self._share, self._share.public_key()
        signatures = []
        for i, (raw, digest) in enumerate(zip(commit.partials, state.digests, strict=True)):
            partial = int.from_bytes(raw, "big")
            if len(raw) != share.size or not 1 < partial < share.modulus - 1:
                raise InvalidScalar(f"partial signature {i} is out of range")
            signature = _to_bytes(partial * share.partial(digest) % share.modulus, share.size)
            try:
                public.verify_digest(signature, digest, SignatureAlgorithm.RSA_PKCS1_SHA256)
            except InvalidSignature:
                raise SignatureRejected(f"partial signature {i} is not the phone's") from None
            signatures.append(signature)
        nonce = fresh_nonce()
        done = dataclasses.replace(state, phase="done", nonce=nonce,
                                   seen=(*state.seen, commit.nonce))
        result = RsaResult(session=state.session, nonce=nonce, reply_to=commit.nonce,
                           signatures=tuple(signatures))
        return done, result, tuple(signatures)
