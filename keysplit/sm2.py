"""Two-party SM2, server side: co-keygen and co-sign as explicit state machines.

The protocol (DESIGN.md section 4; n = group order, G = base point, arithmetic mod n):

- keygen: the phone picks d1 and sends P1 = d1^-1*G; the server picks d2 and publishes
  P = d2^-1*P1 - G.  The key pair is (d, P) with d = (d1*d2)^-1 - 1; neither side can compute d.
- co-sign of e = SM3(Z || M): the phone picks k1 and sends Q1 = k1*G; the server picks k2, k3,
  computes (x1, y1) = k3*Q1 + k2*G, r = (e + x1) mod n (new k2, k3 if r = 0),
  s2 = d2*k3, s3 = d2*(r + k2), and returns r, s2, s3; the phone computes
  s = d1*k1*s2 + d1*s3 - r (a new round if s = 0 or s = n - r).  (r, s) is an ordinary SM2
  signature: s = (1 + d)^-1 * (k - r*d) with k = k1*k3 + k2.

Every multiplication of a point by a secret scalar is a single-scalar ``EC_POINT_mul`` in
libcrypto (its constant-time ladder): k3*Q1 and k2*G are two calls and an add, never one
double-scalar call.  The server only ever co-signs the digests a session was opened for (the
caller opens it from sign requests it can attribute), verifies the finished signatures, and
never keeps k2 or k3 beyond one response.

States are immutable values with ``to_dict``/``from_dict`` so a stateless appliance node can
keep them in the database between requests.  A refused message raises a
:class:`keysplit.errors.ProtocolError` and leaves the state as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

from keysplit._internal import scalars
from keysplit._internal.session import check_reply, fresh_nonce, new_session
from keysplit.errors import (
    DigestMismatch,
    InvalidPoint,
    MalformedMessage,
    OutOfOrder,
    SignatureRejected,
)
from keysplit.messages import (
    DIGEST_SIZE,
    MAX_ITEMS,
    CosignCommit,
    CosignDone,
    CosignOffer,
    CosignResponse,
    CosignResult,
    KeygenCommit,
    KeygenOffer,
    KeygenResult,
)
from keysplit.pin import DEFAULT_MAX_FAILURES, PinRecord
from signcore import ec
from signcore.errors import InvalidKey, InvalidSignature
from signcore.hashes import sm3
from signcore.sm2 import SM2PublicKey

#: Rounds one co-sign session may take: the first, plus retries for s = 0 or s = n - r
#: (probability about 2^-255 each, so a third round means something is wrong).
MAX_ROUNDS = 3

UnlockFn = Callable[[bytes | None], bytes | None]


def key_id(public_point: bytes) -> bytes:
    """A stable 16-byte identifier of a joint public key: SM3 of its point, truncated."""
    return sm3(public_point)[:16]


def _point(data: bytes, what: str) -> ec.Point:
    try:
        return ec.decode_point(data)
    except InvalidKey:
        raise InvalidPoint(f"{what} is not a point of the SM2 group") from None


def _hex_state(state: Any) -> dict[str, Any]:
    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, tuple):
            return [encode(v) for v in value]
        return value

    return {f.name: encode(getattr(state, f.name)) for f in dataclasses.fields(state)}


def _unhex_state(cls: Any, data: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = data[f.name]
        if f.type in ("bytes", "bytes | None"):
            values[f.name] = bytes.fromhex(raw) if raw is not None else None
        elif f.type == "tuple[bytes, ...]":
            values[f.name] = tuple(bytes.fromhex(v) for v in raw)
        else:
            values[f.name] = raw
    return cls(**values)


# --- shares ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerShare:
    """The server's half of a joint SM2 key.  ``d2`` is secret: store it wrapped under the KEK."""

    d2: int
    public_key: bytes  # the joint public point P, 04 || x || y

    def __post_init__(self) -> None:
        if not 0 < self.d2 < scalars.N:
            raise ValueError("d2 out of range")

    @property
    def key_id(self) -> bytes:
        return key_id(self.public_key)

    def sm2_public_key(self) -> SM2PublicKey:
        return SM2PublicKey.from_point(self.public_key)

    def __repr__(self) -> str:  # never print d2
        return f"ServerShare(key_id={self.key_id.hex()})"

    def to_dict(self) -> dict[str, str]:
        return {"d2": scalars.encode(self.d2).hex(), "public_key": self.public_key.hex()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ServerShare:
        return cls(scalars.decode(bytes.fromhex(data["d2"])), bytes.fromhex(data["public_key"]))


# --- co-keygen -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeygenState:
    session: bytes
    nonce: bytes  # the server's latest nonce: the phone's next message must answer it
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return _hex_state(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeygenState:
        state: KeygenState = _unhex_state(cls, data)
        return state


def open_keygen() -> tuple[KeygenState, KeygenOffer]:
    """Start a co-keygen session (after the signer's identity check passed)."""
    session, nonce = new_session()
    return KeygenState(session, nonce), KeygenOffer(session=session, nonce=nonce)


@dataclasses.dataclass(frozen=True)
class KeygenOutcome:
    state: KeygenState
    share: ServerShare
    pin_record: PinRecord
    reply: KeygenResult


def complete_keygen(
    state: KeygenState,
    commit: KeygenCommit,
    *,
    max_pin_failures: int = DEFAULT_MAX_FAILURES,
    random_scalar: scalars.RandomScalar = scalars.random_scalar,
) -> KeygenOutcome:
    """Answer the phone's P1 with the joint public key; create the share and its PIN record."""
    if state.done:
        raise OutOfOrder("this keygen session is finished")
    check_reply(commit, state.session, state.nonce, ())
    p1 = _point(commit.p1, "P1")
    minus_g = ec.neg(ec.G)
    while True:
        d2 = random_scalar()
        try:
            # P = d2^-1 * P1 - G; infinity means d1*d2 = 1: pick another d2.
            joint = ec.add(ec.mul(p1, scalars.inverse(d2)), minus_g)
        except InvalidKey:
            continue
        break
    share = ServerShare(d2, joint.encode())
    record, unwrap = PinRecord.create(commit.pin_proof, max_pin_failures)
    nonce = fresh_nonce()
    reply = KeygenResult(session=state.session, nonce=nonce, reply_to=commit.nonce,
                         public_key=share.public_key, unwrap=unwrap)
    return KeygenOutcome(KeygenState(state.session, nonce, done=True), share, record, reply)


# --- co-sign ---------------------------------------------------------------------------------

Phase = Literal["await_commit", "await_result", "done"]


@dataclasses.dataclass(frozen=True)
class CosignState:
    session: bytes
    phase: Phase
    nonce: bytes  # the server's latest nonce
    public_key: bytes
    digests: tuple[bytes, ...]
    require_pin: bool
    rounds: int = 0
    seen: tuple[bytes, ...] = ()  # the phone's nonces so far
    signatures: tuple[bytes, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _hex_state(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CosignState:
        state: CosignState = _unhex_state(cls, data)
        return state


@dataclasses.dataclass(frozen=True)
class CosignResponseOutcome:
    state: CosignState
    reply: CosignResponse


@dataclasses.dataclass(frozen=True)
class CosignAcceptOutcome:
    state: CosignState
    reply: CosignDone
    signatures: tuple[bytes, ...]


class SM2Server:
    """The server role of co-signing for one joint key."""

    def __init__(self, share: ServerShare,
                 random_scalar: scalars.RandomScalar = scalars.random_scalar) -> None:
        self._share = share
        self._random = random_scalar

    def open_cosign(self, digests: Sequence[bytes], *, require_pin: bool = True
                    ) -> tuple[CosignState, CosignOffer]:
        """Open a session for digests e = SM3(Z || M) that the caller registered itself."""
        items = tuple(digests)
        if not 0 < len(items) <= MAX_ITEMS or any(len(e) != DIGEST_SIZE for e in items):
            raise ValueError(f"1 to {MAX_ITEMS} digests of {DIGEST_SIZE} bytes")
        session, nonce = new_session()
        state = CosignState(session, "await_commit", nonce, self._share.public_key, items,
                            require_pin)
        offer = CosignOffer(session=session, nonce=nonce, public_key=self._share.public_key,
                            digests=items, require_pin=require_pin)
        return state, offer

    def respond(self, state: CosignState, commit: CosignCommit, *,
                unlock: UnlockFn | None = None) -> CosignResponseOutcome:
        """Answer the phone's Q1 values with (r, s2, s3) per digest.

        When the session requires a PIN, ``unlock(pin_proof)`` is called after the message
        passed every other check; it must persist the PIN outcome and return the unwrap key,
        or raise :class:`keysplit.errors.PinError`.
        """
        if state.phase == "done":
            raise OutOfOrder("this co-sign session is finished")
        if state.phase == "await_result" and state.rounds >= MAX_ROUNDS:
            raise OutOfOrder(f"no more than {MAX_ROUNDS} rounds per session")
        check_reply(commit, state.session, state.nonce, state.seen)
        if commit.digests != state.digests:
            raise DigestMismatch("the digests differ from the ones this session was opened for")
        if len(commit.q1) != len(state.digests):
            raise MalformedMessage("one Q1 per digest is required")
        q1 = [_point(point, f"Q1[{i}]") for i, point in enumerate(commit.q1)]
        unwrap = None
        if state.require_pin:
            if commit.pin_proof is None:
                raise MalformedMessage("this session requires a PIN proof")
            if unlock is None:
                raise ValueError("a PIN-protected session needs an unlock function")
            unwrap = unlock(commit.pin_proof)
        r, s2, s3 = zip(*(self._partial(e, point) for e, point in zip(state.digests, q1,
                                                                        strict=True)),
                        strict=True)
        nonce = fresh_nonce()
        reply = CosignResponse(session=state.session, nonce=nonce, reply_to=commit.nonce,
                               r=r, s2=s2, s3=s3, unwrap=unwrap)
        new_state = dataclasses.replace(state, phase="await_result", nonce=nonce,
                                        rounds=state.rounds + 1,
                                        seen=(*state.seen, commit.nonce))
        return CosignResponseOutcome(new_state, reply)

    def _partial(self, digest: bytes, q1: ec.Point) -> tuple[bytes, bytes, bytes]:
        e = scalars.decode(digest)
        n, d2 = scalars.N, self._share.d2
        while True:
            k2, k3 = self._random(), self._random()
            try:
                point = ec.add(ec.mul(q1, k3), ec.mul_base(k2))
            except InvalidKey:  # k3*Q1 = -k2*G
                continue
            r = (e + point.x) % n
            # r = 0 is not a signature; r + k2 = 0 would make s3 = 0, which the phone refuses.
            if r != 0 and (r + k2) % n != 0:
                break
        s2 = d2 * k3 % n
        s3 = d2 * (r + k2) % n
        return scalars.encode(r), scalars.encode(s2), scalars.encode(s3)

    def accept(self, state: CosignState, result: CosignResult) -> CosignAcceptOutcome:
        """Verify the phone's finished signatures and close the session."""
        if state.phase != "await_result":
            raise OutOfOrder(f"no result is expected now (phase {state.phase})")
        check_reply(result, state.session, state.nonce, state.seen)
        if len(result.signatures) != len(state.digests):
            raise MalformedMessage("one signature per digest is required")
        public = self._share.sm2_public_key()
        for i, (signature, digest) in enumerate(zip(result.signatures, state.digests,
                                                    strict=True)):
            try:
                public.verify_digest(signature, digest)
            except InvalidSignature:
                raise SignatureRejected(f"signature {i} does not verify") from None
        nonce = fresh_nonce()
        done = dataclasses.replace(state, phase="done", nonce=nonce,
                                   seen=(*state.seen, result.nonce),
                                   signatures=result.signatures)
        return CosignAcceptOutcome(
            done, CosignDone(session=state.session, nonce=nonce, reply_to=result.nonce),
            result.signatures)


__all__ = [
    "MAX_ROUNDS",
    "CosignAcceptOutcome",
    "CosignResponseOutcome",
    "CosignState",
    "KeygenOutcome",
    "KeygenState",
    "SM2Server",
    "ServerShare",
    "complete_keygen",
    "key_id",
    "open_keygen",
]
