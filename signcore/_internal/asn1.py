"""asn1crypto with the GM identifiers registered, and strict DER loading.

asn1crypto keeps its OID name maps as class attributes; registering the GM names there is the
library's documented extension point (``NamedCurve.register``) and is idempotent, so importing this
module is safe from anywhere and any number of times.  pyHanko uses the same asn1crypto classes,
so the names registered here are the ones it will see.
"""

from __future__ import annotations

from typing import Any, TypeVar

from asn1crypto import algos, cms, core, keys, tsp, x509

from signcore.algorithms import (
    OID_GM_DATA,
    OID_GM_SIGNED_DATA,
    OID_SM2_CURVE,
    OID_SM2_SIGN,
    OID_SM2_WITH_SM3,
    OID_SM3,
)
from signcore.errors import DecodeError

__all__ = ["algos", "cms", "core", "keys", "load", "tsp", "x509"]

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
    """Parse ``der`` as ``spec`` strictly: DER only, no trailing bytes, fully parsed."""
    if len(der) > MAX_DER_INPUT:
        raise DecodeError(f"{what} of {len(der)} bytes exceeds the {MAX_DER_INPUT} byte limit")
    if not der:
        raise DecodeError(f"empty {what}")
    try:
        value: T = spec.load(der, strict=True)
        # asn1crypto parses lazily; force the whole tree now so errors surface here, typed.
        value.native  # noqa: B018
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as exc:
        raise DecodeError(f"malformed {what}: {exc}") from exc
    return value
