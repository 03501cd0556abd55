"""The protocol messages: versioned JSON objects with base64url (unpadded) binary fields.

Every message names the protocol, its version and its type, and carries the session id and a
fresh random nonce of its sender; every message after the first of a session also carries
``reply_to``, the nonce of the message it answers.  A party accepts a message only if
``reply_to`` equals the nonce it sent last (so replayed and reordered messages are refused) and
the sender's nonce was not seen before in the session.  See ``keysplit/README.md`` for the
flows; this module is the single definition of the wire format.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any, ClassVar, TypeVar

from keysplit.errors import MalformedMessage

PROTOCOL = "medsign-keysplit"
VERSION = 1
SESSION_SIZE = 16
NONCE_SIZE = 16
DIGEST_SIZE = 32
POINT_SIZE = 65  # uncompressed SEC1: 04 || x || y
SCALAR_SIZE = 32
MAX_SM2_SIGNATURE = 72
MAX_ITEMS = 500  # digests per batch: one clinic session's prescriptions, with room to spare
MAX_RSA_BYTES = 512  # RSA-4096
MAX_MESSAGE_BYTES = 1 << 20


def _size(exact: int | None = None, *, max_size: int | None = None, items: bool = False,
          optional: bool = False) -> Any:
    meta = {"exact": exact, "max": max_size, "items": items, "optional": optional}
    if optional:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(metadata=meta)


@dataclasses.dataclass(frozen=True)
class Message:
    """Fields common to every message."""

    TYPE: ClassVar[str] = ""
    session: bytes = _size(SESSION_SIZE)
    nonce: bytes = _size(NONCE_SIZE)

    def encode(self) -> bytes:
        """The JSON wire form (UTF-8)."""
        body: dict[str, Any] = {"protocol": PROTOCOL, "v": VERSION, "type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            body[f.name] = _encode_value(value)
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @property
    def item_count(self) -> int:
        """How many items (digests, points, signatures) the message carries."""
        counts = _item_counts(self)
        return counts.pop() if counts else 0


@dataclasses.dataclass(frozen=True)
class Reply(Message):
    reply_to: bytes = _size(NONCE_SIZE)


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()
    if isinstance(value, tuple):
        return [_encode_value(v) for v in value]
    return value


# --- SM2 co-keygen ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeygenOffer(Message):
    """Server -> phone: a keygen session is open."""

    TYPE: ClassVar[str] = "keygen.offer"


@dataclasses.dataclass(frozen=True)
class KeygenCommit(Reply):
    """Phone -> server: P1 = d1^-1 * G, and the proof of the PIN the share will be wrapped under."""

    TYPE: ClassVar[str] = "keygen.commit"
    p1: bytes = _size(POINT_SIZE)
    pin_proof: bytes = _size(SCALAR_SIZE)


@dataclasses.dataclass(frozen=True)
class KeygenResult(Reply):
    """Server -> phone: the joint public key P = d2^-1 * P1 - G, and the PIN unwrap key."""

    TYPE: ClassVar[str] = "keygen.result"
    public_key: bytes = _size(POINT_SIZE)
    unwrap: bytes = _size(SCALAR_SIZE)


# --- SM2 co-sign -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CosignOffer(Message):
    """Server -> phone: co-sign these digests e = SM3(Z || M) for this key."""

    TYPE: ClassVar[str] = "cosign.offer"
    public_key: bytes = _size(POINT_SIZE)
    digests: tuple[bytes, ...] = _size(DIGEST_SIZE, items=True)
    require_pin: bool = True


@dataclasses.dataclass(frozen=True)
class CosignCommit(Reply):
    """Phone -> server: Q1 = k1 * G for each digest (and the PIN proof when required)."""

    TYPE: ClassVar[str] = "cosign.commit"
    digests: tuple[bytes, ...] = _size(DIGEST_SIZE, items=True)
    q1: tuple[bytes, ...] = _size(POINT_SIZE, items=True)
    pin_proof: bytes | None = _size(SCALAR_SIZE, optional=True)


@dataclasses.dataclass(frozen=True)
class CosignResponse(Reply):
    """Server -> phone: r, s2 = d2*k3, s3 = d2*(r + k2) per digest (and the PIN unwrap key)."""

    TYPE: ClassVar[str] = "cosign.response"
    r: tuple[bytes, ...] = _size(SCALAR_SIZE, items=True)
    s2: tuple[bytes, ...] = _size(SCALAR_SIZE, items=True)
    s3: tuple[bytes, ...] = _size(SCALAR_SIZE, items=True)
    unwrap: bytes | None = _size(SCALAR_SIZE, optional=True)


@dataclasses.dataclass(frozen=True)
class CosignResult(Reply):
    """Phone -> server: the finished DER signatures, in digest order."""

    TYPE: ClassVar[str] = "cosign.result"
    signatures: tuple[bytes, ...] = _size(max_size=MAX_SM2_SIGNATURE, items=True)


@dataclasses.dataclass(frozen=True)
class CosignDone(Reply):
    """Server -> phone: the signatures were verified and accepted; the session is closed."""

    TYPE: ClassVar[str] = "cosign.done"


# --- RSA split signing -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RsaOffer(Message):
    """Server -> phone: sign these SHA-256 digests with the split RSA key."""

    TYPE: ClassVar[str] = "rsa.offer"
    modulus: bytes = _size(max_size=MAX_RSA_BYTES)
    digests: tuple[bytes, ...] = _size(DIGEST_SIZE, items=True)
    require_pin: bool = True


@dataclasses.dataclass(frozen=True)
class RsaUnlock(Reply):
    """Phone -> server: the PIN proof (omitted when the offer did not require one)."""

    TYPE: ClassVar[str] = "rsa.unlock"
    pin_proof: bytes | None = _size(SCALAR_SIZE, optional=True)


@dataclasses.dataclass(frozen=True)
class RsaUnlocked(Reply):
    """Server -> phone: the PIN unwrap key (when a PIN was checked)."""

    TYPE: ClassVar[str] = "rsa.unlocked"
    unwrap: bytes | None = _size(SCALAR_SIZE, optional=True)


@dataclasses.dataclass(frozen=True)
class RsaCommit(Reply):
    """Phone -> server: the partial signatures m^d1 mod n, in digest order."""

    TYPE: ClassVar[str] = "rsa.commit"
    partials: tuple[bytes, ...] = _size(max_size=MAX_RSA_BYTES, items=True)


@dataclasses.dataclass(frozen=True)
class RsaResult(Reply):
    """Server -> phone: the finished PKCS#1 v1.5 signatures."""

    TYPE: ClassVar[str] = "rsa.result"
    signatures: tuple[bytes, ...] = _size(max_size=MAX_RSA_BYTES, items=True)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (
        KeygenOffer, KeygenCommit, KeygenResult, CosignOffer, CosignCommit, CosignResponse,
        CosignResult, CosignDone, RsaOffer, RsaUnlock, RsaUnlocked, RsaCommit, RsaResult,
    )
}

M = TypeVar("M", bound=Message)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Two values for one field would let two parsers read two different messages."""
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ValueError("a field appears twice")
    return body


_ABSENT = object()


def _parse(data: bytes | str) -> Any:
    """JSON from UTF-8 only (json.loads would also take UTF-16/32 bytes and a BOM), within the
    size limit; too deeply nested JSON is MalformedMessage too, not a RecursionError."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_MESSAGE_BYTES:
            raise ValueError(f"larger than {MAX_MESSAGE_BYTES} bytes")
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise MalformedMessage(f"not UTF-8 JSON: {str(exc)[:100]}") from None


def decode(data: bytes | str, expected: type[M]) -> M:
    """Parse and validate a message of type ``expected``; MalformedMessage for anything else."""
    body = _parse(data)
    if not isinstance(body, dict):
        raise MalformedMessage("a message is a JSON object")
    if body.get("protocol") != PROTOCOL:
        raise MalformedMessage(f"not a {PROTOCOL} message")
    if type(body.get("v")) is not int or body["v"] != VERSION:  # not True, 1.0 or "1"
        raise MalformedMessage(f"unsupported protocol version {body.get('v')!r} (expected "
                               f"{VERSION})")
    if body.get("type") != expected.TYPE:
        raise MalformedMessage(f"expected a {expected.TYPE} message, got {body.get('type')!r}")
    fields = {f.name: f for f in dataclasses.fields(expected)}
    unknown = set(body) - set(fields) - {"protocol", "v", "type"}
    if unknown:
        raise MalformedMessage(f"unknown fields {sorted(unknown)}")
    values = {name: _decode_field(f, body.get(name, _ABSENT)) for name, f in fields.items()}
    message = expected(**values)
    _check_item_counts(message)
    return message


def _decode_field(f: dataclasses.Field[Any], raw: Any) -> Any:
    meta = f.metadata
    if raw is None:
        raise MalformedMessage(f"field {f.name} must not be null (omit an optional field)")
    if f.type in ("bool", bool):
        if raw is _ABSENT:
            return f.default
        if not isinstance(raw, bool):
            raise MalformedMessage(f"field {f.name} must be true or false")
        return raw
    if raw is _ABSENT:
        if meta.get("optional"):
            return None
        raise MalformedMessage(f"field {f.name} is missing")
    if meta.get("items"):
        if not isinstance(raw, list) or not raw or len(raw) > MAX_ITEMS:
            raise MalformedMessage(f"field {f.name} must be a list of 1 to {MAX_ITEMS} items")
        return tuple(_decode_bytes(f.name, item, meta) for item in raw)
    return _decode_bytes(f.name, raw, meta)


def _decode_bytes(name: str, raw: Any, meta: Any) -> bytes:
    if not isinstance(raw, str):
        raise MalformedMessage(f"field {name} must be a base64url string")
    try:
        value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise MalformedMessage(f"field {name} is not base64url") from None
    if _encode_value(value) != raw:
        raise MalformedMessage(f"field {name} is not canonical unpadded base64url")
    exact, max_size = meta.get("exact"), meta.get("max")
    if exact is not None and len(value) != exact:
        raise MalformedMessage(f"field {name} must be {exact} bytes, got {len(value)}")
    if max_size is not None and not 0 < len(value) <= max_size:
        raise MalformedMessage(f"field {name} must be 1 to {max_size} bytes")
    return value


def _item_counts(message: Message) -> set[int]:
    return {len(getattr(message, f.name)) for f in dataclasses.fields(message)
            if f.metadata.get("items") and getattr(message, f.name) is not None}


def _check_item_counts(message: Message) -> None:
    if len(_item_counts(message)) > 1:
        raise MalformedMessage("the lists of a message must all have one item per digest")


def peek_type(data: bytes | str) -> str:
    """The ``type`` of a message, to dispatch on (the message is not validated)."""
    body = _parse(data)
    kind = body.get("type") if isinstance(body, dict) else None
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise MalformedMessage(f"unknown message type {kind!r}")
    return kind
