"""Assembling DER from already-encoded parts.

asn1crypto re-serializes a whole tree when a freshly built value is placed inside another one
(it copies the child and forgets its cached encoding): wrapping a signed TBSCertificate into a
Certificate cost ten times the signature itself.  The outer layers of signed objects are tiny
and fixed (SEQUENCE of TBS, AlgorithmIdentifier, BIT STRING), so they are written here from
the TBS bytes that were signed -- which also guarantees the signed bytes are the ones shipped.
"""

from __future__ import annotations


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV with a single-octet tag (universal, context or application class)."""
    return bytes([tag]) + _length(len(content)) + content


def sequence(*encoded: bytes) -> bytes:
    return tlv(0x30, b"".join(encoded))


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole octets (no unused bits), as signatures are."""
    return tlv(0x03, b"\x00" + data)


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def explicit(number: int, encoded: bytes) -> bytes:
    """``[number] EXPLICIT`` around an encoded value (constructed context tag, number < 31)."""
    return tlv(0xA0 | number, encoded)


def header(tag: int, size: int) -> bytes:
    """The tag and length octets of a TLV whose content (``size`` octets) follows separately:
    large content is then copied once, by the final join, instead of once per nesting level."""
    return bytes([tag]) + _length(size)


def read_tlv(data: bytes, offset: int, end: int) -> tuple[int, int, int] | None:
    """``(tag, start, stop)`` of the DER TLV at ``data[offset:end]``: its single-octet tag and
    the bounds of its content.  None for anything that is not strict DER at this level
    (multi-octet tag, indefinite or non-minimal length, content running past ``end``): callers
    that only read what they wrote themselves then hand the input to a full parser instead."""
    if offset + 2 > end:
        return None
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        return None
    size = data[offset + 1]
    start = offset + 2
    if size & 0x80:
        count = size & 0x7F
        if not 0 < count <= 4 or start + count > end or data[start] == 0:
            return None
        size = int.from_bytes(data[start:start + count], "big")
        start += count
        if size < 0x80:
            return None
    stop = start + size
    if stop > end:
        return None
    return tag, start, stop
