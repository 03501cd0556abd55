"""The wire format (keysplit.messages): every message type round-trips, and decode() refuses
everything that is not exactly a message of the expected type."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keysplit import messages
from keysplit.errors import MalformedMessage, ProtocolError
from keysplit.messages import (
    MAX_ITEMS,
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    CosignCommit,
    CosignOffer,
    CosignResponse,
    KeygenOffer,
    Message,
    decode,
    peek_type,
)

ALL_TYPES = sorted(MESSAGE_TYPES.values(), key=lambda cls: cls.TYPE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def field_value(f: dataclasses.Field[Any], items: int, draw: Any = None) -> Any:
    """A valid value for field ``f`` (random bytes of the right size)."""
    meta = f.metadata
    if f.type == "bool":
        return True if draw is None else draw(st.booleans())

    def one() -> bytes:
        size = meta["exact"] if meta["exact"] is not None else (
            meta["max"] if draw is None else draw(st.integers(1, meta["max"])))
        return os.urandom(size) if draw is None else draw(st.binary(min_size=size,
                                                                   max_size=size))

    if meta.get("items"):
        return tuple(one() for _ in range(items))
    if meta.get("optional") and draw is not None and draw(st.booleans()):
        return None
    return one()


def example(cls: type[Message], items: int = 3) -> Message:
    values = {f.name: field_value(f, items) for f in dataclasses.fields(cls)}
    return cls(**values)


def body_of(message: Message) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message.encode())
    return body


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@st.composite
def any_message(draw: st.DrawFn) -> Message:
    cls = draw(st.sampled_from(ALL_TYPES))
    items = draw(st.integers(1, 8))
    return cls(**{f.name: field_value(f, items, draw) for f in dataclasses.fields(cls)})


# --- round trips -----------------------------------------------------------------------------


def test_thirteen_message_types_are_registered_under_their_own_type() -> None:
    assert len(MESSAGE_TYPES) == 13
    for name, cls in MESSAGE_TYPES.items():
        assert name == cls.TYPE


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_every_type_round_trips(cls: type[Message]) -> None:
    message = example(cls)
    wire = message.encode()
    assert decode(wire, cls) == message
    assert decode(wire.decode(), cls) == message  # str input too
    assert peek_type(wire) == cls.TYPE
    body = json.loads(wire)
    assert body["protocol"] == "medsign-keysplit" and body["v"] == 1 and body["type"] == cls.TYPE
    assert "=" not in wire.decode()  # unpadded base64url
    assert message.item_count == (3 if any(f.metadata.get("items")
                                           for f in dataclasses.fields(cls)) else 0)


@given(any_message())
def test_random_messages_round_trip(message: Message) -> None:
    wire = message.encode()
    assert decode(wire, type(message)) == message
    assert peek_type(wire) == message.TYPE
    assert wire == decode(wire, type(message)).encode()  # the encoding is canonical


def test_optional_fields_are_omitted_and_come_back_as_none() -> None:
    base = example(CosignCommit)
    assert isinstance(base, CosignCommit)
    commit = dataclasses.replace(base, pin_proof=None)
    assert "pin_proof" not in body_of(commit)
    assert decode(commit.encode(), CosignCommit).pin_proof is None


def test_require_pin_defaults_to_true_when_absent() -> None:
    base = example(CosignOffer)
    assert isinstance(base, CosignOffer)
    offer = dataclasses.replace(base, require_pin=False)
    body = body_of(offer)
    assert body["require_pin"] is False
    assert decode(raw(body), CosignOffer).require_pin is False
    del body["require_pin"]
    assert decode(raw(body), CosignOffer).require_pin is True


# --- refusals --------------------------------------------------------------------------------


def refused(data: bytes | str, cls: type[Message], match: str | None = None) -> None:
    with pytest.raises(MalformedMessage, match=match) as info:
        decode(data, cls)
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("protocol", ["medsign", "MEDSIGN-KEYSPLIT", "", None, 1, ["x"]])
def test_wrong_protocol(protocol: Any) -> None:
    body = body_of(example(KeygenOffer))
    body["protocol"] = protocol
    refused(raw(body), KeygenOffer, "not a medsign-keysplit message")
    del body["protocol"]
    refused(raw(body), KeygenOffer, "not a medsign-keysplit message")


@pytest.mark.parametrize("version", [0, 2, -1, True, False, "1", 1.0, 1.5, None, [1], {"v": 1}],
                         ids=repr)
def test_wrong_version(version: Any) -> None:
    body = body_of(example(CosignCommit))
    body["v"] = version
    refused(raw(body), CosignCommit, "unsupported protocol version")


def test_missing_version() -> None:
    body = body_of(example(CosignCommit))
    del body["v"]
    refused(raw(body), CosignCommit, "unsupported protocol version")


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_wrong_type(cls: type[Message]) -> None:
    wire = example(cls).encode()
    for other in ALL_TYPES:
        if other is not cls:
            refused(wire, other, "expected a")
    body = json.loads(wire)
    for kind in ("", cls.TYPE.upper(), cls.TYPE + " ", None, 7):
        body["type"] = kind
        refused(raw(body), cls, "expected a")


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_unknown_fields(cls: type[Message]) -> None:
    body = body_of(example(cls))
    body["extra"] = "AAAA"
    refused(raw(body), cls, "unknown fields")
    body = body_of(example(cls))
    body["TYPE"] = cls.TYPE  # the class attribute is not a field
    refused(raw(body), cls, "unknown fields")


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.TYPE)
def test_missing_or_null_required_fields(cls: type[Message]) -> None:
    required = [f.name for f in dataclasses.fields(cls)
                if not f.metadata.get("optional") and f.type != "bool"]
    assert {"session", "nonce"} <= set(required)
    for name in required:
        body = body_of(example(cls))
        del body[name]
        refused(raw(body), cls, f"field {name} is missing")
        body[name] = None
        refused(raw(body), cls, f"field {name} must not be null")


def test_mistyped_fields() -> None:
    body = body_of(example(CosignOffer))
    for name, value in [("session", 12), ("session", ["AAAA"]), ("session", {"b": "AA"}),
                        ("digests", b64(os.urandom(32))), ("digests", [5]),
                        ("require_pin", 1), ("require_pin", "true"), ("require_pin", None)]:
        changed = dict(body, **{name: value})
        refused(raw(changed), CosignOffer)  # null is refused too: senders omit optional fields


@pytest.mark.parametrize("mangle", [
    lambda s: s + "=",  # padded
    lambda s: s + "==",
    lambda s: s.replace("-", "+").replace("_", "/") if ("-" in s or "_" in s) else s + "+",
    lambda s: s + "A",  # a dangling character
    lambda s: s[:4] + " " + s[4:],
    lambda s: s[:4] + "\n" + s[4:],
    lambda s: s[:4] + "!" + s[4:],
    lambda s: s[:4] + "é" + s[4:],
], ids=["pad1", "pad2", "std-alphabet", "dangling", "space", "newline", "bang",
        "non-ascii"])
def test_non_canonical_base64url(mangle: Any) -> None:
    session = bytes(range(200, 216))  # base64url has '-' or '_' for these bytes
    message = dataclasses.replace(example(KeygenOffer), session=session)
    body = body_of(message)
    assert "-" in body["session"] or "_" in body["session"]
    body["session"] = mangle(body["session"])
    refused(raw(body), KeygenOffer)


def test_non_zero_trailing_bits_are_refused() -> None:
    # 16 bytes -> 22 characters; the last character carries 4 unused bits which must be zero.
    body = body_of(dataclasses.replace(example(KeygenOffer), session=bytes(16)))
    assert body["session"] == "A" * 22
    body["session"] = "A" * 21 + "B"
    refused(raw(body), KeygenOffer, "canonical")


@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_wrong_sizes_of_exact_fields(size: int) -> None:
    body = body_of(example(KeygenOffer))
    body["nonce"] = b64(os.urandom(size))
    refused(raw(body), KeygenOffer, "must be 16 bytes")


@pytest.mark.parametrize(("field", "size"), [("q1", 64), ("q1", 66), ("q1", 33), ("q1", 1),
                                              ("digests", 31), ("digests", 33),
                                              ("pin_proof", 31), ("reply_to", 0)])
def test_wrong_sizes_in_a_commit(field: str, size: int) -> None:
    body = body_of(example(CosignCommit, items=2))
    value = b64(os.urandom(size))
    body[field] = [body[field][0], value] if isinstance(body[field], list) else value
    refused(raw(body), CosignCommit, f"field {field} must be")


def test_bounded_fields() -> None:
    body = body_of(example(messages.CosignResult, items=2))
    for size in (0, messages.MAX_SM2_SIGNATURE + 1):
        body["signatures"] = [b64(os.urandom(size))] * 2
        refused(raw(body), messages.CosignResult, "must be 1 to")
    body["signatures"] = [b64(os.urandom(messages.MAX_SM2_SIGNATURE))] * 2
    assert decode(raw(body), messages.CosignResult).item_count == 2
    body = body_of(example(messages.RsaOffer))
    body["modulus"] = b64(os.urandom(messages.MAX_RSA_BYTES + 1))
    refused(raw(body), messages.RsaOffer, "must be 1 to")


def test_the_point_at_infinity_encoding_is_a_wrong_size() -> None:
    body = body_of(example(CosignCommit, items=1))
    body["q1"] = [b64(b"\x00")]
    refused(raw(body), CosignCommit, "must be 65 bytes")


@pytest.mark.parametrize("cls", [cls for cls in ALL_TYPES
                                 if any(f.metadata.get("items") for f in dataclasses.fields(cls))],
                         ids=lambda cls: cls.TYPE)
def test_item_lists_hold_one_to_max_items(cls: type[Message]) -> None:
    names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("items")]
    for count in (1, MAX_ITEMS):
        message = example(cls, items=count)
        assert decode(message.encode(), cls).item_count == count
    body = body_of(example(cls, items=MAX_ITEMS))
    for name in names:
        changed = dict(body, **{name: []})
        refused(raw(changed), cls, f"field {name} must be a list of 1 to {MAX_ITEMS}")
        changed = dict(body, **{name: [*body[name], body[name][0]]})
        refused(raw(changed), cls, f"field {name} must be a list of 1 to {MAX_ITEMS}")


@pytest.mark.parametrize("cls", [cls for cls in ALL_TYPES
                                 if sum(bool(f.metadata.get("items"))
                                        for f in dataclasses.fields(cls)) > 1],
                         ids=lambda cls: cls.TYPE)
def test_mismatched_list_lengths(cls: type[Message]) -> None:
    body = body_of(example(cls, items=3))
    name = next(f.name for f in dataclasses.fields(cls) if f.metadata.get("items"))
    for items in (body[name][:2], [*body[name], body[name][0]]):
        refused(raw(dict(body, **{name: items})), cls, "one item per digest")


def test_cosign_response_lists_must_match() -> None:
    body = body_of(example(CosignResponse, items=2))
    body["s3"] = body["s3"][:1]
    refused(raw(body), CosignResponse, "one item per digest")


@pytest.mark.parametrize("data", [
    b"", b" ", b"not json", b"{", b"{}x", b"[]", b"null", b"1", b'"keygen.offer"',
    b"\xff\xfe\x00", b"\x80", b"NaN", b"[" * 100_000, b'{"a":' * 100_000,
], ids=lambda d: repr(d[:12]))
def test_non_json_and_non_objects(data: bytes) -> None:
    refused(data, KeygenOffer)
    with pytest.raises(MalformedMessage):
        peek_type(data)


def test_only_utf8_json() -> None:
    wire = example(KeygenOffer).encode().decode()
    for data in (wire.encode("utf-16"), wire.encode("utf-16-le"), wire.encode("utf-32"),
                 b"\xef\xbb\xbf" + wire.encode(), "\ufeff" + wire, "\ud800" + wire):
        refused(data, KeygenOffer)
        with pytest.raises(MalformedMessage):
            peek_type(data)


def test_oversize() -> None:
    message = example(KeygenOffer)
    body = body_of(message)
    padded = json.dumps(body)[:-1] + " " * (MAX_MESSAGE_BYTES - len(json.dumps(body))) + "}"
    assert len(padded) == MAX_MESSAGE_BYTES
    assert decode(padded, KeygenOffer) == message  # exactly at the limit: fine
    for data in (padded[:-1] + " }", (padded[:-1] + " }").encode()):
        refused(data, KeygenOffer, "larger than")
    # Multi-byte characters count as bytes, not as characters.
    wide = json.dumps(body)[:-1] + ',"x":"' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}'
    assert len(wide) < MAX_MESSAGE_BYTES < len(wide.encode())
    refused(wide, KeygenOffer, "larger than")


def test_peek_type() -> None:
    for cls in ALL_TYPES:
        assert peek_type(example(cls).encode()) == cls.TYPE
    # peek_type dispatches only: it does not validate the rest of the message
    assert peek_type(b'{"type":"cosign.done"}') == "cosign.done"
    for data in (b'{"type":"cosign.nope"}', b'{"type":1}', b"{}", b'["cosign.done"]',
                 b'{"type":["cosign.done"]}'):
        with pytest.raises(MalformedMessage, match="unknown message type"):
            peek_type(data)


def test_null_optional_field_and_duplicate_keys_are_refused() -> None:
    body = body_of(example(CosignCommit))
    body["pin_proof"] = None
    refused(raw(body), CosignCommit, "must not be null")
    del body["pin_proof"]
    assert decode(raw(body), CosignCommit).pin_proof is None
    text = raw(body_of(example(CosignOffer)))
    duplicated = text.replace(b'"require_pin":', b'"require_pin":false,"require_pin":', 1)
    assert duplicated != text
    refused(duplicated, CosignOffer, "appears twice")
