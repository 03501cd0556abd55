"""asn1crypto with the GM identifiers registered, and strict DER loading.

asn1crypto keeps its OID name maps as class attributes; registering the GM names there is the
library's documented extension point (``NamedCurve.register``) and is idempotent, so importing this
module is safe from anywhere and any number of times.  pyHanko uses the same asn1crypto classes,
so the names registered here are the ones it will see.
"""

from __future__ import annotations

from typing import Any, TypeVar

from asn1crypto import algos, cms, core, keys, ocsp, tsp, x509

from signcore.algorithms import (
    OID_GM_DATA,
    OID_GM_SIGNED_DATA,
    OID_SM2_CURVE,
    OID_SM2_SIGN,
    OID_SM2_WITH_SM3,
    OID_SM3,
)
from signcore.errors import DecodeError

__all__ = ["algos", "cms", "core", "keys", "load", "ocsp", "tsp", "x509"]

#: Certificates, CRLs, CMS and TSP inputs larger than this are refused before parsing.
MAX_DER_INPUT = 16 * 1024 * 1024


def _name(cls: Any, oid: str, name: str) -> None:
    cls._map[oid] = name
    if cls._reverse_map is not None:
        cls._reverse_map[name] = oid


def _register() -> None:
    if OID_SM2_CURVE not in keys.NamedCurve._map:
        keys.NamedCurve.register("sm2p256v1", OID_SM2_CURVE, 32)
    _name(algos.DigestAlgorithmId, OID_SM3, "sm3")
    _name(algos.SignedDigestAlgorithmId, OID_SM2_WITH_SM3, "sm2sign_with_sm3")
    _name(algos.SignedDigestAlgorithmId, OID_SM2_SIGN, "sm2sign")
    _name(keys.PublicKeyAlgorithmId, OID_SM2_CURVE, "sm2")
    _name(cms.ContentType, OID_GM_DATA, "gm_data")
    _name(cms.ContentType, OID_GM_SIGNED_DATA, "gm_signed_data")
    cms.ContentInfo._oid_specs["gm_signed_data"] = cms.SignedData
    cms.ContentInfo._oid_specs["gm_data"] = core.OctetString
    callbacks = keys.PublicKeyInfo._spec_callbacks
    if callbacks["public_key"] is not _public_key_spec:
        callbacks["public_key"] = _public_key_spec


_ASN1CRYPTO_PUBLIC_KEY_SPEC = keys.PublicKeyInfo._public_key_spec


def _public_key_spec(info: keys.PublicKeyInfo) -> Any:
    """asn1crypto types the key bits from a fixed table that lacks the bare SM2 OID (written as
    the SPKI algorithm by some Chinese toolkits): an SM2 key is an EC point."""
    if info["algorithm"]["algorithm"].dotted == OID_SM2_CURVE:
        return keys.ECPointBitString, None
    return _ASN1CRYPTO_PUBLIC_KEY_SPEC(info)


_register()

T = TypeVar("T", bound=core.Asn1Value)


def load(spec: type[T], der: bytes, what: str) -> T:
    """Parse ``der`` as ``spec`` strictly: no trailing bytes, fully parsed, and ``dump()`` of the
    result (and of every part of it) returns exactly the bytes that were parsed."""
    if len(der) > MAX_DER_INPUT:
        raise DecodeError(f"{what} of {len(der)} bytes exceeds the {MAX_DER_INPUT} byte limit")
    if not der:
        raise DecodeError(f"empty {what}")
    try:
        value: T = spec.load(der, strict=True)
        if isinstance(value, (core.Sequence, core.SequenceOf)):
            value._parse_children(recurse=True)
            _settle_defaults(value)
        # asn1crypto parses lazily; force the whole tree now so errors surface here, typed.
        value.native  # noqa: B018
        _settle_defaults(value)
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:
        raise DecodeError(f"malformed {what}: {exc}") from exc
    return value


def _settle_defaults(root: core.Asn1Value) -> None:
    """Undo asn1crypto's "mutated" mark on omitted DEFAULT fields it filled in while parsing.

    When a SEQUENCE omits a field whose DEFAULT is itself a structure (ESSCertIDv2's hashAlgorithm
    in every RSA time-stamp token, for one), asn1crypto builds the default value and flags it as
    mutated, so every ``dump()`` of an ancestor re-encodes the whole tree: slow (100+ ms for a
    token) and, for input that was not canonical DER, different from the bytes that were signed.
    The default is given its own encoding and the flag cleared; the parsed ancestors then keep
    the bytes they were parsed from.  (This walks asn1crypto internals on purpose: children,
    _header, _mutated, _parsed and _set_contents have been stable across its 1.x releases.)
    """
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, core.Choice):
            stack.append(node.chosen)
        elif isinstance(node, (core.ParsableOctetString, core.ParsableOctetBitString, core.Any)):
            if node._parsed is not None:
                stack.append(node._parsed[0])
        elif isinstance(node, (core.Sequence, core.SequenceOf)) and node.children is not None:
            for child in node.children:
                if isinstance(child, tuple):  # not parsed yet: nothing was filled in
                    continue
                if isinstance(child, (core.Sequence, core.SequenceOf)) and child._header is None:
                    _seal(child)
                else:
                    stack.append(child)


def _seal(default: Any) -> None:
    default._set_contents()
    for child in default.children or ():
        if isinstance(child, (core.Sequence, core.SequenceOf)):
            _seal(child)
    default._mutated = False
