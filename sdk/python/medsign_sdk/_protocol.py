"""The phone's side of the keysplit protocol, version 1 (keysplit/README.md sections 6 to 8):
the JSON messages, byte-compatible with keysplit/messages.py, and the phone's state machines
for co-keygen and co-sign.

Outgoing messages are written as the reference writes them (compact JSON, sorted keys,
unpadded base64url).  Incoming messages are checked as strictly as the reference checks them:
protocol and version, the expected type, no unknown or null members, canonical base64url, exact
sizes, 1 to 500 items per list and equal list lengths, the session, ``reply_to`` equal to the
phone's latest nonce and a server nonce not seen before.  Anything else is a
:class:`medsign_sdk.errors.ProtocolError`, and the phone sends nothing more in that session.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medsign_sdk import _pin, _sm2
from medsign_sdk.errors import ProtocolError

PROTOCOL = "medsign-keysplit"
VERSION = 1
SESSION_SIZE = 16
NONCE_SIZE = 16
DIGEST_SIZE = 32
MAX_ITEMS = 500
MAX_ROUNDS = 3

RandomScalar = Callable[[], int]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(kind: str, fields: Mapping[str, Any]) -> bytes:
    """A message in the reference's wire form (compact JSON, sorted keys)."""
    body: dict[str, Any] = {"protocol": PROTOCOL, "v": VERSION, "type": kind}
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            body[name] = b64url(value)
        elif isinstance(value, list | tuple):
            body[name] = [b64url(v) for v in value]
        else:
            body[name] = value
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


# --- incoming messages -----------------------------------------------------------------------


class _Reader:
    """Typed, strict access to one incoming message's members."""

    def __init__(self, message: Any, kind: str, allowed: set[str]) -> None:
        if not isinstance(message, dict):
            raise ProtocolError("a protocol message is a JSON object")
        if message.get("protocol") != PROTOCOL:
            raise ProtocolError(f"not a {PROTOCOL} message")
        version = message.get("v")
        if type(version) is not int or version != VERSION:
            raise ProtocolError(f"unsupported protocol version {version!r}")
        if message.get("type") != kind:
            raise ProtocolError(f"expected a {kind} message, got {message.get('type')!r}")
        unknown = set(message) - allowed - {"protocol", "v", "type", "session", "nonce"}
        if unknown:
            raise ProtocolError(f"unknown members {sorted(unknown)}")
        if any(value is None for value in message.values()):
            raise ProtocolError("null members are not allowed")
        self._body: dict[str, Any] = message

    def blob(self, name: str, size: int) -> bytes:
        value = self.optional_bytes(name, size)
        if value is None:
            raise ProtocolError(f"member {name} is missing")
        return value

    def optional_bytes(self, name: str, size: int) -> bytes | None:
        if name not in self._body:
            return None
        return _decode_b64(name, self._body[name], size)

    def items(self, name: str, size: int) -> tuple[bytes, ...]:
        raw = self._body.get(name)
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_ITEMS:
            raise ProtocolError(f"member {name} must be a list of 1 to {MAX_ITEMS} items")
        return tuple(_decode_b64(name, item, size) for item in raw)

    def boolean(self, name: str, default: bool) -> bool:
        if name not in self._body:
            return default
        value = self._body[name]
        if not isinstance(value, bool):
            raise ProtocolError(f"member {name} must be true or false")
        return value


def _decode_b64(name: str, raw: Any, size: int) -> bytes:
    if not isinstance(raw, str):
        raise ProtocolError(f"member {name} must be a base64url string")
    try:
        value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ProtocolError(f"member {name} is not base64url") from None
    if b64url(value) != raw:
        raise ProtocolError(f"member {name} is not canonical unpadded base64url")
    if len(value) != size:
        raise ProtocolError(f"member {name} must be {size} bytes")
    return value


@dataclasses.dataclass(frozen=True)
class Incoming:
    """What every server message carries."""

    session: bytes
    nonce: bytes
    reply_to: bytes | None


def _header(reader: _Reader, *, reply: bool) -> Incoming:
    return Incoming(reader.blob("session", SESSION_SIZE), reader.blob("nonce", NONCE_SIZE),
                    reader.blob("reply_to", NONCE_SIZE) if reply else None)


@dataclasses.dataclass(frozen=True)
class KeygenOffer(Incoming):
    @classmethod
    def parse(cls, message: Any) -> KeygenOffer:
        reader = _Reader(message, "keygen.offer", set())
        return cls(**dataclasses.asdict(_header(reader, reply=False)))


@dataclasses.dataclass(frozen=True)
class KeygenResult(Incoming):
    public_key: bytes = b""
    unwrap: bytes = b""

    @classmethod
    def parse(cls, message: Any) -> KeygenResult:
        reader = _Reader(message, "keygen.result", {"reply_to", "public_key", "unwrap"})
        return cls(**dataclasses.asdict(_header(reader, reply=True)),
                   public_key=reader.blob("public_key", _sm2.POINT_SIZE),
                   unwrap=reader.blob("unwrap", 32))


@dataclasses.dataclass(frozen=True)
class CosignOffer(Incoming):
    public_key: bytes = b""
    digests: tuple[bytes, ...] = ()
    require_pin: bool = True

    @classmethod
    def parse(cls, message: Any) -> CosignOffer:
        reader = _Reader(message, "cosign.offer", {"public_key", "digests", "require_pin"})
        return cls(**dataclasses.asdict(_header(reader, reply=False)),
                   public_key=reader.blob("public_key", _sm2.POINT_SIZE),
                   digests=reader.items("digests", DIGEST_SIZE),
                   require_pin=reader.boolean("require_pin", True))


@dataclasses.dataclass(frozen=True)
class CosignResponse(Incoming):
    r: tuple[bytes, ...] = ()
    s2: tuple[bytes, ...] = ()
    s3: tuple[bytes, ...] = ()
    unwrap: bytes | None = None

    @classmethod
    def parse(cls, message: Any) -> CosignResponse:
        reader = _Reader(message, "cosign.response", {"reply_to", "r", "s2", "s3", "unwrap"})
        parsed = cls(**dataclasses.asdict(_header(reader, reply=True)),
                     r=reader.items("r", 32), s2=reader.items("s2", 32),
                     s3=reader.items("s3", 32), unwrap=reader.optional_bytes("unwrap", 32))
        if not len(parsed.r) == len(parsed.s2) == len(parsed.s3):
            raise ProtocolError("the lists of a message must all have one item per digest")
        return parsed


@dataclasses.dataclass(frozen=True)
class CosignDone(Incoming):
    @classmethod
    def parse(cls, message: Any) -> CosignDone:
        reader = _Reader(message, "cosign.done", {"reply_to"})
        return cls(**dataclasses.asdict(_header(reader, reply=True)))


class _Session:
    """Session id, the phone's latest nonce and the server nonces seen (replay checks)."""

    def __init__(self, new_nonce: Callable[[], bytes]) -> None:
        self._new_nonce = new_nonce
        self.session: bytes | None = None
        self.nonce: bytes | None = None
        self._seen: set[bytes] = set()

    def start(self, offer: Incoming) -> None:
        self.session = offer.session
        self._seen.add(offer.nonce)

    def next_nonce(self) -> bytes:
        self.nonce = self._new_nonce()
        return self.nonce

    def check(self, message: Incoming) -> None:
        if message.session != self.session:
            raise ProtocolError("the message belongs to another session")
        if self.nonce is None or message.reply_to != self.nonce:
            raise ProtocolError("the message does not answer the phone's latest message")
        if message.nonce in self._seen or message.nonce == self.nonce:
            raise ProtocolError("the message reuses a nonce")

    def accept(self, message: Incoming) -> None:
        """The message checked out completely: its nonce is used now."""
        self._seen.add(message.nonce)


def fresh_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


# --- the share the phone stores --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StoredShare:
    """The phone's share, wrapped; the joint public key; the PIN salt (keysplit's PhoneShare,
    same JSON: hex members ``public_key``, ``salt``, ``wrapped``, ``algorithm``)."""

    public_key: bytes
    salt: bytes
    wrapped: bytes
    algorithm: str = "sm2"

    @property
    def key_id(self) -> bytes:
        return _pin.key_id(self.public_key)

    def open(self, unwrap: bytes) -> int:
        """d1; UnwrapError if ``unwrap`` does not open it."""
        raw = _pin.unwrap_share(self.wrapped, unwrap=unwrap, salt=self.salt, key_id=self.key_id)
        return int.from_bytes(raw, "big")

    def rewrap(self, old_unwrap: bytes, new_unwrap: bytes) -> StoredShare:
        return seal_share(self.open(old_unwrap), self.public_key, new_unwrap, self.salt)

    def to_json(self) -> str:
        return json.dumps({"public_key": self.public_key.hex(), "salt": self.salt.hex(),
                           "wrapped": self.wrapped.hex(), "algorithm": self.algorithm})

    @classmethod
    def from_json(cls, text: str) -> StoredShare:
        data = json.loads(text)
        return cls(bytes.fromhex(data["public_key"]), bytes.fromhex(data["salt"]),
                   bytes.fromhex(data["wrapped"]), data.get("algorithm", "sm2"))


def seal_share(d1: int, public_key: bytes, unwrap: bytes, salt: bytes) -> StoredShare:
    wrapped = _pin.wrap_share(_sm2.encode_scalar(d1), unwrap=unwrap, salt=salt,
                              key_id=_pin.key_id(public_key))
    return StoredShare(public_key, salt, wrapped)


# --- co-keygen -------------------------------------------------------------------------------


class Keygen:
    """keygen.offer -> keygen.commit -> keygen.result -> StoredShare."""

    def __init__(self, pin: str, *, random_scalar: RandomScalar = _sm2.random_scalar,
                 salt: bytes | None = None,
                 new_nonce: Callable[[], bytes] = fresh_nonce) -> None:
        self._salt = _pin.new_salt() if salt is None else salt
        self._proof = _pin.pin_proof(pin, self._salt)
        self._random = random_scalar
        self._state = _Session(new_nonce)
        self._d1: int | None = None

    def commit(self, offer: KeygenOffer) -> bytes:
        if self._state.session is not None:
            raise ProtocolError("this keygen already started")
        self._state.start(offer)
        self._d1 = self._random()
        return encode("keygen.commit", {
            "session": offer.session, "nonce": self._state.next_nonce(),
            "reply_to": offer.nonce, "p1": _sm2.keygen_commit(self._d1),
            "pin_proof": self._proof})

    def finish(self, result: KeygenResult) -> StoredShare:
        if self._d1 is None:
            raise ProtocolError("keygen.result before keygen.commit")
        self._state.check(result)
        try:
            _sm2.decode_point(result.public_key)
        except _sm2.PointError:
            raise ProtocolError("the joint public key is not a point of the SM2 group") from None
        share = seal_share(self._d1, result.public_key, result.unwrap, self._salt)
        self._state.accept(result)
        self._d1 = None
        return share


# --- co-sign ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CosignStep:
    """What the phone sends next: ``kind`` is ``"cosign.result"`` or, on the rare retry,
    ``"cosign.commit"``."""

    kind: str
    wire: bytes


class Cosigner:
    """cosign.offer -> commit -> response -> result (or a new commit) -> done -> signatures.

    ``shares`` are the phone's wraps of its share to try, in order (after a PIN change, the new
    wrap and the previous one until the new PIN was used once).  Give ``pin`` when the offer
    requires one, ``unwrap`` (the cached key) for an auto-sign session.
    """

    def __init__(self, shares: Sequence[StoredShare], *, pin: str | None = None,
                 unwrap: bytes | None = None,
                 random_scalar: RandomScalar = _sm2.random_scalar,
                 new_nonce: Callable[[], bytes] = fresh_nonce) -> None:
        if not shares or any(s.algorithm != "sm2" or s.public_key != shares[0].public_key
                             or s.salt != shares[0].salt for s in shares):
            raise ValueError("SM2 shares of one key are required")
        self._shares = list(shares)
        self._proof = _pin.pin_proof(pin, shares[0].salt) if pin is not None else None
        self._unwrap = unwrap
        self._random = random_scalar
        self._state = _Session(new_nonce)
        self._offer: CosignOffer | None = None
        self._k1: list[int] = []
        self._signatures: tuple[bytes, ...] = ()
        self.rounds = 0
        #: the unwrap key that opened the share, and which of ``shares`` it opened
        self.unwrap_used: bytes | None = None
        self.share_used: int | None = None

    def commit(self, offer: CosignOffer, expected_digests: Sequence[bytes] | None = None
               ) -> bytes:
        """The first cosign.commit; ``expected_digests``: the e values the phone computed
        itself (refuse an offer for anything else)."""
        if self._offer is not None:
            raise ProtocolError("this co-sign already started")
        if offer.public_key != self._shares[0].public_key:
            raise ProtocolError("the offer is for another key")
        if expected_digests is not None and tuple(expected_digests) != offer.digests:
            raise ProtocolError("the offer's digests are not the documents shown")
        if offer.require_pin and self._proof is None:
            raise ValueError("this co-sign requires the PIN")
        if not offer.require_pin and self._unwrap is None:
            raise ValueError("a PIN-less co-sign needs the unwrap key cached from a PIN check")
        self._offer = offer
        self._state.start(offer)
        return self._new_commit(offer.nonce)

    def _new_commit(self, reply_to: bytes) -> bytes:
        assert self._offer is not None
        if self.rounds >= MAX_ROUNDS:
            raise ProtocolError(f"more than {MAX_ROUNDS} co-sign rounds")
        self.rounds += 1
        self._k1 = [self._random() for _ in self._offer.digests]
        return encode("cosign.commit", {
            "session": self._offer.session, "nonce": self._state.next_nonce(),
            "reply_to": reply_to, "digests": list(self._offer.digests),
            "q1": _sm2.cosign_commit(self._k1),
            "pin_proof": self._proof if self._offer.require_pin else None})

    def finish(self, response: CosignResponse) -> CosignStep:
        """The signatures (``cosign.result``), or a new commit when a round must be retried."""
        offer = self._offer
        if offer is None or not self._k1:
            raise ProtocolError("cosign.response before cosign.commit")
        self._state.check(response)
        if len(response.r) != len(offer.digests):
            raise ProtocolError("one (r, s2, s3) per digest is required")
        d1 = self._open(response.unwrap or self._unwrap)
        signatures = []
        for k1, e, r_raw, s2_raw, s3_raw in zip(self._k1, offer.digests, response.r,
                                                response.s2, response.s3, strict=True):
            r, s2, s3 = (_sm2.decode_scalar(v) for v in (r_raw, s2_raw, s3_raw))
            try:
                s = _sm2.cosign_finish(d1, k1, r, s2, s3)
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
            if s is None:  # s = 0 or s = n - r: all digests again, fresh k1
                self._state.accept(response)
                return CosignStep("cosign.commit", self._new_commit(response.nonce))
            signature = _sm2.encode_signature(r, s)
            if not _sm2.verify_digest(offer.public_key, e, signature):
                raise ProtocolError("the server's contribution does not make a valid signature")
            signatures.append(signature)
        del d1
        self._state.accept(response)
        self._k1 = []
        self._signatures = tuple(signatures)
        return CosignStep("cosign.result", encode("cosign.result", {
            "session": offer.session, "nonce": self._state.next_nonce(),
            "reply_to": response.nonce, "signatures": list(self._signatures)}))

    def _open(self, unwrap: bytes | None) -> int:
        if unwrap is None:
            raise ProtocolError("no unwrap key: the server checked no PIN and none is cached")
        for index, share in enumerate(self._shares):
            try:
                d1 = share.open(unwrap)
            except _pin.UnwrapError:
                continue
            self.unwrap_used, self.share_used = unwrap, index
            return d1
        raise ProtocolError("the phone's share does not open with the unwrap key")

    def close(self, done: CosignDone) -> tuple[bytes, ...]:
        """The signatures, once the server confirmed it verified and recorded them."""
        if not self._signatures:
            raise ProtocolError("cosign.done before cosign.result")
        self._state.check(done)
        self._state.accept(done)
        return self._signatures
