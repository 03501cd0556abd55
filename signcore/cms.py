"""CMS / PKCS#7 SignedData, attached and detached, in the RFC 5652 and GM/T 0010 flavours.

Flavours (what we emit; on input both are accepted in every combination):

============================  ===============================  ================================
field                         ``rfc5652``                      ``gmt0010``
============================  ===============================  ================================
ContentInfo.contentType       id-signedData 1.2.840.113549.1.7.2  1.2.156.10197.6.1.4.2.2
eContentType / content-type   id-data 1.2.840.113549.1.7.1     1.2.156.10197.6.1.4.2.1
digestAlgorithm (SM2)         SM3 1.2.156.10197.1.401          SM3 1.2.156.10197.1.401
signatureAlgorithm (SM2)      SM2-with-SM3 1.2.156.10197.1.501  SM2-1 1.2.156.10197.1.301.1
============================  ===============================  ================================

RSA and ECDSA signers use the RFC 5652/5754 identifiers in both flavours (``rsaEncryption`` with
SHA-256, ``ecdsa-with-SHA256``).  Signed attributes are content-type, message-digest and, unless
turned off, signing-time; SM2 signatures over them use the signer ID (default
``1234567812345678``), as GM/T 0010 requires.  Signer certificates (and any extra chain
certificates) are embedded.

Threat model for verification: everything in the CMS blob is attacker-controlled.  Integrity
(digest and signature) is checked against the embedded or supplied signer certificate, and
trust is a separate result: a chain from that certificate to the caller's roots
(:func:`signcore.path.validate_path`).  A signature is only "valid" when both hold.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from signcore import hashes
from signcore._internal import algids
from signcore._internal.asn1 import cms, core, load
from signcore._internal.keybase import Signer
from signcore._internal.pem import is_pem, pem_blocks, pem_encode
from signcore.algorithms import (
    DEFAULT_SM2_ID,
    OID_GM_DATA,
    OID_GM_SIGNED_DATA,
    SignatureAlgorithm,
)
from signcore.errors import (
    DecodeError,
    InvalidKey,
    InvalidSignature,
    PathValidationError,
    SigncoreError,
    UnsupportedAlgorithm,
)
from signcore.hashes import HashAlgorithm
from signcore.path import ValidatedPath, validate_path
from signcore.x509 import Certificate, names_equal

__all__ = [
    "CMSFlavor",
    "CMSVerification",
    "SignerResult",
    "add_signature_timestamp",
    "load_signed_data",
    "sign",
    "sign_digest",
    "signature_timestamp_token",
    "signature_value",
    "to_pem",
    "verify",
]

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"


class CMSFlavor(enum.Enum):
    RFC5652 = "rfc5652"
    GMT0010 = "gmt0010"

    @property
    def signed_data_oid(self) -> str:
        return OID_GM_SIGNED_DATA if self is CMSFlavor.GMT0010 else OID_SIGNED_DATA

    @property
    def data_oid(self) -> str:
        return OID_GM_DATA if self is CMSFlavor.GMT0010 else OID_DATA


# ---------------------------------------------------------------------------------------------
# Signing


def _attribute(attr_type: str, value: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": attr_type, "values": [value]})


def _signing_time(when: dt.datetime) -> cms.Time:
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    return cms.Time(name="utc_time" if 1950 <= when.year < 2050 else "generalized_time",
                    value=when)


def sign(
    data: bytes,
    signer: Signer,
    certificate: Certificate,
    *,
    detached: bool = False,
    flavor: CMSFlavor | str = CMSFlavor.RFC5652,
    extra_certificates: Sequence[Certificate] = (),
    signing_time: dt.datetime | None = None,
    include_signing_time: bool = True,
    signer_id: bytes = DEFAULT_SM2_ID,
    signature_algorithm: SignatureAlgorithm | None = None,
    content_type: str | None = None,
    extra_signed_attributes: Sequence[cms.CMSAttribute] = (),
) -> bytes:
    """Sign ``data``; return DER ContentInfo(SignedData), ``detached`` or with the content."""
    algorithm = _algorithm(signer, certificate, signature_algorithm)
    options = _SignOptions(CMSFlavor(flavor), algorithm, tuple(extra_certificates), signing_time,
                           include_signing_time, signer_id, content_type,
                           tuple(extra_signed_attributes))
    digest = hashes.digest(algorithm.hash_algorithm, data)
    return _build(digest, None if detached else data, signer, certificate, options)


def sign_digest(
    message_digest: bytes,
    signer: Signer,
    certificate: Certificate,
    *,
    flavor: CMSFlavor | str = CMSFlavor.RFC5652,
    extra_certificates: Sequence[Certificate] = (),
    signing_time: dt.datetime | None = None,
    include_signing_time: bool = True,
    signer_id: bytes = DEFAULT_SM2_ID,
    signature_algorithm: SignatureAlgorithm | None = None,
) -> bytes:
    """Detached CMS over content the caller hashed (SM3 for SM2 keys, SHA-256 for RSA/ECDSA).

    This is how a hospital backend that sends only a document digest gets a standard detached
    signature: the digest becomes the message-digest signed attribute.
    """
    algorithm = _algorithm(signer, certificate, signature_algorithm)
    if len(message_digest) != algorithm.hash_algorithm.digest_size:
        raise ValueError(f"a {algorithm.hash_algorithm.value} digest is "
                         f"{algorithm.hash_algorithm.digest_size} bytes")
    options = _SignOptions(CMSFlavor(flavor), algorithm, tuple(extra_certificates), signing_time,
                           include_signing_time, signer_id)
    return _build(message_digest, None, signer, certificate, options)


def _algorithm(signer: Signer, certificate: Certificate,
               requested: SignatureAlgorithm | None) -> SignatureAlgorithm:
    public = signer.public_key()
    if public != certificate.public_key():
        raise InvalidKey("the signing key does not match the signer certificate")
    return public.resolve_algorithm(requested)


@dataclass(frozen=True)
class _SignOptions:
    flavor: CMSFlavor
    algorithm: SignatureAlgorithm
    extra_certificates: tuple[Certificate, ...]
    signing_time: dt.datetime | None
    include_signing_time: bool
    signer_id: bytes
    content_type: str | None = None
    extra_signed_attributes: tuple[cms.CMSAttribute, ...] = ()


def _build(digest: bytes, content: bytes | None, signer: Signer, certificate: Certificate,
           options: _SignOptions) -> bytes:
    flavor, algorithm = options.flavor, options.algorithm
    econtent_type = options.content_type or flavor.data_oid
    attributes = [
        _attribute("content_type", cms.ContentType(econtent_type)),
        _attribute("message_digest", core.OctetString(digest)),
    ]
    if options.include_signing_time:
        attributes.append(_attribute(
            "signing_time", _signing_time(options.signing_time or dt.datetime.now(dt.UTC))))
    attributes.extend(options.extra_signed_attributes)
    signed_attrs = cms.CMSAttributes(attributes)
    # RFC 5652 section 5.4: the signature covers the DER of the attributes as a SET OF.
    signature = signer.sign(signed_attrs.dump(), algorithm, signer_id=options.signer_id)
    digest_id = algids.digest_algorithm_id(algorithm.hash_algorithm)
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": certificate.issuer_name, "serial_number": certificate.serial_number}),
        "digest_algorithm": digest_id,
        "signed_attrs": signed_attrs,
        "signature_algorithm": algids.signature_algorithm_id(
            algorithm, cms_signer_info=True, gm_flavor=flavor is CMSFlavor.GMT0010),
        "signature": signature,
    })
    encap: dict[str, Any] = {"content_type": econtent_type}
    if content is not None:
        # asn1crypto types some eContent (TSTInfo) by content type; give it what it expects.
        spec = cms.EncapsulatedContentInfo._oid_specs.get(cms.ContentType.map(econtent_type))
        encap["content"] = spec.load(content) if spec is not None else content
    certs = [certificate, *(c for c in options.extra_certificates if c != certificate)]
    signed_data = cms.SignedData({
        "version": "v1" if econtent_type == flavor.data_oid else "v3",
        "digest_algorithms": [digest_id],
        "encap_content_info": encap,
        "certificates": [cms.CertificateChoices(name="certificate", value=c.asn1) for c in certs],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({
        "content_type": flavor.signed_data_oid, "content": signed_data}).dump())


def to_pem(der: bytes) -> bytes:
    return pem_encode("CMS", der)


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class SignerResult:
    """What verification found about one SignerInfo."""

    integrity: bool  # the message digest matches and the signature verifies
    signer_certificate: Certificate | None
    signature_algorithm: SignatureAlgorithm | None
    digest_algorithm: HashAlgorithm | None
    signing_time: dt.datetime | None
    chain: ValidatedPath | None  # set when trust roots were given and a path validated
    trusted: bool | None  # None: no trust roots were given, so trust was not evaluated
    problems: tuple[str, ...] = ()
    signed_attributes: cms.CMSAttributes | None = field(default=None, repr=False)
    unsigned_attributes: cms.CMSAttributes | None = field(default=None, repr=False)
    signature: bytes = field(default=b"", repr=False)

    @property
    def valid(self) -> bool:
        """Integrity holds and, when trust was evaluated, the chain validated."""
        return self.integrity and self.trusted is not False


@dataclass(frozen=True)
class CMSVerification:
    flavor: CMSFlavor
    detached: bool
    content_type: str
    content: bytes | None
    signers: tuple[SignerResult, ...]
    certificates: tuple[Certificate, ...]

    @property
    def valid(self) -> bool:
        return bool(self.signers) and all(s.valid for s in self.signers)


def load_signed_data(data: bytes) -> tuple[CMSFlavor, cms.SignedData]:
    """Parse a ContentInfo(SignedData) of either flavour from DER or PEM."""
    der = data
    if is_pem(data):
        blocks = [d for label, d in pem_blocks(data) if label in ("CMS", "PKCS7")]
        if not blocks:
            raise DecodeError("no CMS or PKCS7 PEM block found")
        der = blocks[0]
    info = load(cms.ContentInfo, der, "CMS ContentInfo")
    oid = info["content_type"].dotted
    if oid == OID_SIGNED_DATA:
        flavor = CMSFlavor.RFC5652
    elif oid == OID_GM_SIGNED_DATA:
        flavor = CMSFlavor.GMT0010
    else:
        raise DecodeError(f"not a SignedData ContentInfo (content type {oid})")
    signed_data = info["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise DecodeError("SignedData content missing")
    return flavor, signed_data


def signature_value(data: bytes, index: int = 0) -> bytes:
    """The signature of SignerInfo ``index``: what an RFC 3161 signature time stamp covers
    (RFC 3161 appendix A: the messageImprint is a hash of this value)."""
    _flavor, signed_data = load_signed_data(data)
    infos = signed_data["signer_infos"]
    if not 0 <= index < len(infos):
        raise DecodeError(f"no SignerInfo {index}")
    return bytes(infos[index]["signature"].native)


def add_signature_timestamp(data: bytes, token: bytes, index: int = 0) -> bytes:
    """The CMS with ``token`` (a time-stamp token over :func:`signature_value`) added as the
    unsigned attribute id-aa-signatureTimeStampToken of SignerInfo ``index``.  Nothing signed
    changes: the signature and the signed attributes keep their bytes."""
    flavor, signed_data = load_signed_data(data)
    infos = signed_data["signer_infos"]
    if not 0 <= index < len(infos):
        raise DecodeError(f"no SignerInfo {index}")
    stamp = load(cms.ContentInfo, token, "time-stamp token")
    info = infos[index]
    kept = [a for a in (info["unsigned_attrs"] or [])
            if a["type"].native != "signature_time_stamp_token"]
    info["unsigned_attrs"] = cms.CMSAttributes(
        [*kept, _attribute("signature_time_stamp_token", stamp)])
    return bytes(cms.ContentInfo({"content_type": flavor.signed_data_oid,
                                  "content": signed_data}).dump(force=False))


def signature_timestamp_token(unsigned_attributes: cms.CMSAttributes | None) -> bytes | None:
    """The DER of the signature time-stamp token among a SignerInfo's unsigned attributes."""
    for attribute in unsigned_attributes or []:
        if attribute["type"].native == "signature_time_stamp_token":
            values = attribute["values"]
            if len(values) != 1:
                raise DecodeError("a signature time-stamp attribute has exactly one token")
            return bytes(values[0].dump())
    return None


def _embedded_certificates(signed_data: cms.SignedData) -> list[Certificate]:
    certs = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            certs.append(Certificate(choice.chosen))
    return certs


def _find_signer(sid: cms.SignerIdentifier, certs: Sequence[Certificate]) -> Certificate | None:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        serial = int(sid.chosen["serial_number"].native)
        return next((c for c in certs
                     if c.serial_number == serial and names_equal(c.issuer_name, issuer)), None)
    ski = bytes(sid.chosen)
    return next((c for c in certs if c.subject_key_identifier == ski), None)


def _attribute_value(attrs: cms.CMSAttributes, name: str) -> Any:
    found = [a for a in attrs if a["type"].native == name]
    if len(found) != 1 or len(found[0]["values"]) != 1:
        return None if not found else _DUPLICATE
    return found[0]["values"][0]


_DUPLICATE = object()


def verify(
    data: bytes,
    *,
    content: bytes | None = None,
    trust_roots: Sequence[Certificate] | None = None,
    intermediates: Sequence[Certificate] = (),
    certificates: Sequence[Certificate] = (),
    at: dt.datetime | None = None,
    signer_id: bytes = DEFAULT_SM2_ID,
    required_eku: str | None = None,
) -> CMSVerification:
    """Verify every SignerInfo of a CMS SignedData (DER or PEM), either flavour.

    ``content`` is required for detached signatures (and must match if given for attached ones).
    ``certificates`` supplies signer certificates that are not embedded.  With ``trust_roots``,
    each signer's chain is validated at ``at`` (default: now); without, ``trusted`` is None.
    Raises DecodeError for input that is not a parseable SignedData; every other problem is
    reported in the result.
    """
    flavor, signed_data = load_signed_data(data)
    encap = signed_data["encap_content_info"]
    econtent_type = encap["content_type"].dotted
    embedded_bytes = _econtent_bytes(encap["content"])
    if embedded_bytes is not None and content is not None and embedded_bytes != content:
        raise DecodeError("the supplied content differs from the content embedded in the CMS")
    signed_content = embedded_bytes if embedded_bytes is not None else content
    if signed_content is None:
        raise DecodeError("detached CMS signature: the signed content must be supplied")
    certs = _embedded_certificates(signed_data)
    pool = (*certs, *certificates)
    context = _VerifyContext(signed_content, econtent_type, pool,
                             tuple(trust_roots) if trust_roots is not None else None,
                             (*intermediates, *pool), at, signer_id, required_eku)
    results = tuple(_verify_signer(info, context) for info in signed_data["signer_infos"])
    return CMSVerification(flavor, embedded_bytes is None, econtent_type, embedded_bytes,
                           results, tuple(certs))


def _econtent_bytes(embedded: Any) -> bytes | None:
    """The eContent octets of an EncapsulatedContentInfo, or None when detached."""
    if isinstance(embedded, core.Void):
        return None
    if isinstance(embedded, core.Any):
        # asn1crypto parses SignedData v1 with PKCS#7's ContentInfo, whose content is an ANY for
        # types it does not know; CMS wraps eContent in an OCTET STRING all the same (RFC 5652
        # 5.2), and the digest covers its octets, not the tag and length around them.
        try:
            return bytes(core.OctetString.load(embedded.dump(), strict=True, explicit=0).native)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"eContent is not an OCTET STRING: {exc}") from exc
    # .contents, not .native: asn1crypto parses known eContent types (TSTInfo) into dicts.
    return bytes(embedded.contents)


@dataclass(frozen=True)
class _VerifyContext:
    content: bytes
    econtent_type: str
    pool: tuple[Certificate, ...]
    trust_roots: tuple[Certificate, ...] | None
    intermediates: tuple[Certificate, ...]
    at: dt.datetime | None
    signer_id: bytes
    required_eku: str | None


def _verify_signer(info: cms.SignerInfo, ctx: _VerifyContext) -> SignerResult:
    problems: list[str] = []
    cert = _find_signer(info["sid"], ctx.pool)
    signed_attrs = info["signed_attrs"]
    has_attrs = bool(signed_attrs)
    signing_time = None
    digest_alg = algorithm = None
    integrity = False
    try:
        digest_alg = algids.hash_from_digest_id(info["digest_algorithm"])
        algorithm = algids.signature_algorithm_from_id(info["signature_algorithm"], digest_alg)
        if algorithm.hash_algorithm is not digest_alg:
            raise UnsupportedAlgorithm("signature and digest algorithms disagree")
        if cert is None:
            raise InvalidSignature("signer certificate not found")
        if has_attrs:
            signing_time = _check_attributes(signed_attrs, ctx.content, ctx.econtent_type,
                                             digest_alg)
            to_verify = signed_attrs.dump(force=False)
            to_verify = b"\x31" + to_verify[1:]  # [0] IMPLICIT -> SET OF (RFC 5652 5.4)
        else:
            if ctx.econtent_type not in (OID_DATA, OID_GM_DATA):
                raise InvalidSignature("signed attributes are required for this content type")
            to_verify = ctx.content
        _verify_signature(cert, algorithm, bytes(info["signature"]), to_verify, ctx.signer_id)
        integrity = True
    except (InvalidSignature, UnsupportedAlgorithm, InvalidKey) as exc:
        problems.append(str(exc))
    chain, trusted = None, None
    if ctx.trust_roots is not None and cert is not None:
        try:
            chain = validate_path(cert, trust_roots=ctx.trust_roots,
                                  intermediates=ctx.intermediates, at=ctx.at,
                                  required_eku=ctx.required_eku)
            trusted = True
        # ValueError: asn1crypto's name comparison refuses hostile strings while paths are built.
        except (PathValidationError, SigncoreError, ValueError) as exc:
            trusted = False
            problems.append(f"certificate chain: {exc}")
    elif ctx.trust_roots is not None:
        trusted = False
    return SignerResult(integrity, cert, algorithm, digest_alg, signing_time, chain, trusted,
                        tuple(problems), signed_attrs if has_attrs else None,
                        info["unsigned_attrs"] or None, bytes(info["signature"]))


def _check_attributes(attrs: cms.CMSAttributes, content: bytes, econtent_type: str,
                      digest_alg: HashAlgorithm) -> dt.datetime | None:
    content_type = _attribute_value(attrs, "content_type")
    if content_type is None or content_type is _DUPLICATE:
        raise InvalidSignature("content-type signed attribute missing or repeated")
    if content_type.dotted != econtent_type:
        raise InvalidSignature("content-type signed attribute does not match eContentType")
    message_digest = _attribute_value(attrs, "message_digest")
    if message_digest is None or message_digest is _DUPLICATE:
        raise InvalidSignature("message-digest signed attribute missing or repeated")
    expected = hashes.digest(digest_alg, content)
    if not hashes.constant_time_equal(bytes(message_digest.native), expected):
        raise InvalidSignature("message digest mismatch: the content was modified")
    signing_time = _attribute_value(attrs, "signing_time")
    if signing_time is _DUPLICATE:
        raise InvalidSignature("signing-time signed attribute repeated")
    return signing_time.native if signing_time is not None else None


def _verify_signature(cert: Certificate, algorithm: SignatureAlgorithm, signature: bytes,
                      signed_bytes: bytes, signer_id: bytes) -> None:
    public = cert.public_key()
    if public.key_type is not algorithm.key_type:
        raise InvalidSignature(
            f"a {public.key_type.value} certificate cannot carry a {algorithm.value} signature")
    public.verify(signature, signed_bytes, algorithm, signer_id=signer_id)
