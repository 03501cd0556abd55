"""Small DER helpers for signature values: ``SEQUENCE { r INTEGER, s INTEGER }``."""

from __future__ import annotations

from asn1crypto import algos

from signcore.errors import DecodeError


def encode_ecdsa_signature(r: int, s: int) -> bytes:
    """DER of an SM2 or ECDSA signature (r, s)."""
    if r <= 0 or s <= 0:
        raise ValueError("r and s must be positive")
    return bytes(algos.DSASignature({"r": r, "s": s}).dump())


def decode_ecdsa_signature(der: bytes) -> tuple[int, int]:
    """(r, s) of a DER signature; strict DER, no trailing bytes."""
    try:
        value = algos.DSASignature.load(der, strict=True)
        r, s = int(value["r"].native), int(value["s"].native)
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"malformed signature DER: {exc}") from exc
    if value.dump(force=True) != der:
        raise DecodeError("signature is not canonical DER")
    return r, s
