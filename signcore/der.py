"""DER helpers for code that builds its own ASN.1 structures on signcore (CMS-like protocols
such as CMP): signature values (``SEQUENCE { r INTEGER, s INTEGER }``), signature
AlgorithmIdentifiers with the GM identifiers, and the strict loader signcore parses with."""

from __future__ import annotations

from typing import Any, TypeVar

from asn1crypto import algos

from signcore._internal import algids
from signcore._internal.asn1 import load
from signcore.algorithms import SignatureAlgorithm
from signcore.errors import DecodeError

T = TypeVar("T")


def load_strict(spec: type[T], der: bytes, what: str) -> T:
    """Parse ``der`` as the asn1crypto ``spec``: no trailing bytes, fully parsed, and
    re-encoding gives the same bytes; DecodeError naming ``what`` otherwise."""
    return load(spec, der, what)


def signature_algorithm_id(algorithm: SignatureAlgorithm) -> algos.SignedDigestAlgorithm:
    """The AlgorithmIdentifier signcore writes for ``algorithm`` (SM2-with-SM3: the GM OID)."""
    return algids.signature_algorithm_id(algorithm)


def signature_algorithm_from_id(value: Any) -> SignatureAlgorithm:
    """The algorithm an AlgorithmIdentifier names; UnsupportedAlgorithm if signcore has none."""
    return algids.signature_algorithm_from_id(value)


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
