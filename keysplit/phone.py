"""The phone's side of two-party SM2 and split RSA: the Python reference implementation.

This is what the WeChat mini-program SDK and the Python SDK implement; the tests drive the
server with it.  A phone keeps a :class:`PhoneShare` (its share, encrypted under a key that
needs the PIN *and* the server, see :mod:`keysplit.pin`) and, during an operation, its
ephemeral k1 values in memory only.  It checks everything the server sends, as the server
checks the phone: session, nonces, item counts, scalar ranges and the final signatures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from keysplit._internal import scalars
from keysplit._internal.session import check_reply, fresh_nonce
from keysplit.errors import (
    DigestMismatch,
    InvalidPoint,
    InvalidScalar,
    KeysplitError,
    MalformedMessage,
    OutOfOrder,
    SignatureRejected,
)
from keysplit.messages import (
    CosignCommit,
    CosignDone,
    CosignOffer,
    CosignResponse,
    CosignResult,
    KeygenCommit,
    KeygenOffer,
    KeygenResult,
    RsaCommit,
    RsaOffer,
    RsaResult,
    RsaUnlock,
    RsaUnlocked,
)
from keysplit.pin import new_salt, pin_proof, unwrap_share, wrap_share
from keysplit.rsa import PUBLIC_EXPONENT, RsaPhoneSecret, RsaServerShare
from keysplit.sm2 import key_id
from signcore import ec
from signcore.algorithms import SignatureAlgorithm
from signcore.der import encode_ecdsa_signature
from signcore.errors import InvalidKey, InvalidSignature
from signcore.sm2 import SM2PublicKey


@dataclasses.dataclass(frozen=True)
class PhoneShare:
    """What the phone stores: its share, wrapped; the joint public key; the PIN salt."""

    public_key: bytes  # the joint SM2 point P (or, for RSA, the modulus)
    salt: bytes
    wrapped: bytes
    algorithm: str = "sm2"

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)

    def open(self, unwrap: bytes) -> int:
        """The share's secret value, decrypted with the unwrap key the server released."""
        raw = unwrap_share(self.wrapped, unwrap=unwrap, salt=self.salt, key_id=self.key_id)
        return int.from_bytes(raw, "big")

    def rewrap(self, old_unwrap: bytes, new_unwrap: bytes) -> PhoneShare:
        """The same share under a new PIN (see :meth:`keysplit.pin.PinRecord.begin_change`)."""
        secret = self.open(old_unwrap)
        return seal_share(secret, self.public_key, new_unwrap, self.salt, self.algorithm)

    def to_json(self) -> str:
        return json.dumps({k: (v.hex() if isinstance(v, bytes) else v)
                           for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> PhoneShare:
        data: dict[str, Any] = json.loads(text)
        return cls(bytes.fromhex(data["public_key"]), bytes.fromhex(data["salt"]),
                   bytes.fromhex(data["wrapped"]), data.get("algorithm", "sm2"))


def seal_share(secret: int, public_key: bytes, unwrap: bytes, salt: bytes,
               algorithm: str = "sm2") -> PhoneShare:
    raw = secret.to_bytes(max(32, (secret.bit_length() + 7) // 8), "big")
    wrapped = wrap_share(raw, unwrap=unwrap, salt=salt, key_id=key_id(public_key))
    return PhoneShare(public_key, salt, wrapped, algorithm)


# --- co-keygen -------------------------------------------------------------------------------


class PhoneKeygen:
    """keygen.offer -> keygen.commit -> keygen.result -> PhoneShare."""

    def __init__(self, pin: str, random_scalar: scalars.RandomScalar = scalars.random_scalar
                 ) -> None:
        self._salt = new_salt()
        self._proof = pin_proof(pin, self._salt)
        self._random = random_scalar
        self._d1: int | None = None
        self._session: bytes | None = None
        self._nonce: bytes | None = None

    def commit(self, offer: KeygenOffer) -> KeygenCommit:
        if self._session is not None:
            raise OutOfOrder("this keygen already started")
        self._d1 = self._random()
        p1 = ec.mul_base(scalars.inverse(self._d1))  # d1^-1 * G
        self._session, self._nonce = offer.session, fresh_nonce()
        return KeygenCommit(session=offer.session, nonce=self._nonce, reply_to=offer.nonce,
                            p1=p1.encode(), pin_proof=self._proof)

    def finish(self, result: KeygenResult) -> PhoneShare:
        if self._d1 is None or self._session is None:
            raise OutOfOrder("keygen.result before keygen.commit")
        check_reply(result, self._session, self._nonce)
        try:
            ec.decode_point(result.public_key)
        except InvalidKey:
            raise InvalidPoint("the joint public key is not a point of the SM2 group") from None
        share = seal_share(self._d1, result.public_key, result.unwrap, self._salt)
        self._d1 = None
        return share


# --- co-sign ---------------------------------------------------------------------------------


class PhoneCosigner:
    """cosign.offer -> cosign.commit -> cosign.response -> cosign.result (or another commit on
    the rare retry) -> cosign.done -> the signatures.

    Give the PIN when the offer requires one; for an authorized PIN-less (auto-sign) session
    give ``unwrap``, the key the phone kept from its last PIN check for that window.
    """

    def __init__(self, share: PhoneShare, *, pin: str | None = None, unwrap: bytes | None = None,
                 random_scalar: scalars.RandomScalar = scalars.random_scalar) -> None:
        if share.algorithm != "sm2":
            raise ValueError("an SM2 co-signer needs an SM2 share")
        self._share = share
        self._proof = pin_proof(pin, share.salt) if pin is not None else None
        self._unwrap = unwrap
        self._random = random_scalar
        self._public = SM2PublicKey.from_point(share.public_key)
        self._offer: CosignOffer | None = None
        self._k1: list[int] = []
        self._nonce: bytes | None = None
        self._signatures: tuple[bytes, ...] = ()

    def commit(self, offer: CosignOffer, expected_digests: Sequence[bytes] | None = None
               ) -> CosignCommit:
        """Start co-signing; ``expected_digests`` are the e values the phone computed itself
        from the documents it displayed (recommended: the server cannot swap documents)."""
        if self._offer is not None:
            raise OutOfOrder("this co-sign already started")
        if offer.public_key != self._share.public_key:
            raise MalformedMessage("the offer is for another key")
        if expected_digests is not None and tuple(expected_digests) != offer.digests:
            raise DigestMismatch("the offer's digests are not the documents shown")
        if offer.require_pin and self._proof is None:
            raise MalformedMessage("this co-sign requires the PIN")
        self._offer = offer
        return self._new_commit(offer.nonce)

    def _new_commit(self, reply_to: bytes) -> CosignCommit:
        assert self._offer is not None
        self._k1 = [self._random() for _ in self._offer.digests]
        q1 = tuple(ec.mul_base(k).encode() for k in self._k1)
        self._nonce = fresh_nonce()
        return CosignCommit(session=self._offer.session, nonce=self._nonce, reply_to=reply_to,
                            digests=self._offer.digests, q1=q1,
                            pin_proof=self._proof if self._offer.require_pin else None)

    def finish(self, response: CosignResponse) -> CosignResult | CosignCommit:
        """The finished signatures, or (rarely) a new commit when some s was 0 or n - r."""
        offer = self._offer
        if offer is None or not self._k1:
            raise OutOfOrder("cosign.response before cosign.commit")
        check_reply(response, offer.session, self._nonce)
        if response.item_count != len(offer.digests):
            raise MalformedMessage("one (r, s2, s3) per digest is required")
        d1 = self._share.open(self._unwrap_key(response))
        signatures = []
        for k1, digest, r_raw, s2_raw, s3_raw in zip(self._k1, offer.digests, response.r,
                                                     response.s2, response.s3, strict=True):
            r, s2, s3 = (self._scalar(v) for v in (r_raw, s2_raw, s3_raw))
            s = (d1 * k1 * s2 + d1 * s3 - r) % scalars.N
            if s == 0 or (s + r) % scalars.N == 0:
                return self._new_commit(response.nonce)
            signature = encode_ecdsa_signature(r, s)
            try:
                self._public.verify_digest(signature, digest)
            except InvalidSignature:
                raise SignatureRejected("the server's contribution does not make a valid "
                                        "signature") from None
            signatures.append(signature)
        self._k1 = []
        self._signatures = tuple(signatures)
        self._nonce = fresh_nonce()
        return CosignResult(session=offer.session, nonce=self._nonce, reply_to=response.nonce,
                            signatures=self._signatures)

    def _unwrap_key(self, response: CosignResponse) -> bytes:
        key = response.unwrap or self._unwrap
        if key is None:
            raise KeysplitError("no unwrap key: a PIN-less session needs the cached one")
        return key

    @staticmethod
    def _scalar(raw: bytes) -> int:
        value = scalars.decode(raw)
        if not 0 < value < scalars.N:
            raise InvalidScalar("a scalar from the server is out of range")
        return value

    def close(self, done: CosignDone) -> tuple[bytes, ...]:
        """The signatures, once the server confirmed it accepted them."""
        if not self._signatures or self._offer is None:
            raise OutOfOrder("cosign.done before cosign.result")
        check_reply(done, self._offer.session, self._nonce)
        return self._signatures


# --- split RSA -------------------------------------------------------------------------------


class PhoneRsaEnrollment:
    """Receive an RSA phone share from the server's split keygen and wrap it under the PIN."""

    def __init__(self, pin: str) -> None:
        self._salt = new_salt()
        self.pin_proof = pin_proof(pin, self._salt)

    def finish(self, secret: RsaPhoneSecret, unwrap: bytes) -> PhoneShare:
        size = (secret.modulus.bit_length() + 7) // 8
        return seal_share(secret.d1, secret.modulus.to_bytes(size, "big"), unwrap, self._salt,
                          "rsa")


class PhoneRsaSigner:
    """rsa.offer -> rsa.unlock -> rsa.unlocked -> rsa.commit -> rsa.result -> the signatures."""

    def __init__(self, share: PhoneShare, *, pin: str | None = None,
                 unwrap: bytes | None = None) -> None:
        if share.algorithm != "rsa":
            raise ValueError("a split-RSA signer needs an RSA share")
        self._share = share
        self._proof = pin_proof(pin, share.salt) if pin is not None else None
        self._unwrap = unwrap
        self._modulus = int.from_bytes(share.public_key, "big")
        self._offer: RsaOffer | None = None
        self._nonce: bytes | None = None

    def unlock(self, offer: RsaOffer, expected_digests: Sequence[bytes] | None = None
               ) -> RsaUnlock:
        if self._offer is not None:
            raise OutOfOrder("this signing already started")
        if offer.modulus != self._share.public_key:
            raise MalformedMessage("the offer is for another key")
        if expected_digests is not None and tuple(expected_digests) != offer.digests:
            raise DigestMismatch("the offer's digests are not the documents shown")
        if offer.require_pin and self._proof is None:
            raise MalformedMessage("this signing requires the PIN")
        self._offer, self._nonce = offer, fresh_nonce()
        return RsaUnlock(session=offer.session, nonce=self._nonce, reply_to=offer.nonce,
                         pin_proof=self._proof if offer.require_pin else None)

    def commit(self, unlocked: RsaUnlocked) -> RsaCommit:
        offer = self._offer
        if offer is None:
            raise OutOfOrder("rsa.unlocked before rsa.unlock")
        check_reply(unlocked, offer.session, self._nonce)
        key = unlocked.unwrap or self._unwrap
        if key is None:
            raise KeysplitError("no unwrap key: a PIN-less session needs the cached one")
        secret = RsaPhoneSecret(self._modulus, PUBLIC_EXPONENT, self._share.open(key))
        size = len(self._share.public_key)
        partials = tuple(secret.partial(d).to_bytes(size, "big") for d in offer.digests)
        self._nonce = fresh_nonce()
        return RsaCommit(session=offer.session, nonce=self._nonce, reply_to=unlocked.nonce,
                         partials=partials)

    def close(self, result: RsaResult) -> tuple[bytes, ...]:
        offer = self._offer
        if offer is None:
            raise OutOfOrder("rsa.result before rsa.commit")
        check_reply(result, offer.session, self._nonce)
        if len(result.signatures) != len(offer.digests):
            raise MalformedMessage("one signature per digest is required")
        public = RsaServerShare(self._modulus, PUBLIC_EXPONENT, 1).public_key()
        for signature, digest in zip(result.signatures, offer.digests, strict=True):
            try:
                public.verify_digest(signature, digest, SignatureAlgorithm.RSA_PKCS1_SHA256)
            except InvalidSignature:
                raise SignatureRejected("the server returned an invalid signature") from None
        return result.signatures
