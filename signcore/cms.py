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

A signature whose key is split between phone and server cannot be one call: :func:`prepare`
builds the signed attributes and returns a :class:`PreparedSignature` (storable as JSON with
``to_dict``) that tells what to co-sign (``to_be_signed``, or ``digest()`` = ``e`` for SM2), and
its ``finish`` checks the signature and assembles the CMS.  :func:`sign` and :func:`sign_digest`
run the same code in one go.  :func:`add_signer` merges a second signer's SignedData over the
same content (a pharmacist countersigning a doctor's prescription) into one SignedData.

Threat model for verification: everything in the CMS blob is attacker-controlled.  Integrity
(digest and signature) is checked against the embedded or supplied signer certificate, and
trust is a separate result: a chain from that certificate to the caller's roots
(:func:`signcore.path.validate_path`).  A signature is only "valid" when both hold.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from signcore import hashes
from signcore._internal import algids
from signcore._internal.asn1 import cms, core, load
from signcore._internal.der import header, read_tlv, tlv
from signcore._internal.keybase import Signer
from signcore._internal.pem import is_pem, pem_blocks, pem_encode
from signcore.algorithms import (
    DEFAULT_SM2_ID,
    OID_GM_DATA,
    OID_GM_SIGNED_DATA,
    KeyType,
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
from signcore.sm2 import MAX_ID_BYTES, SM2PublicKey
from signcore.x509 import Certificate, load_certificate, names_equal

__all__ = [
    "CMSFlavor",
    "CMSVerification",
    "PreparedSignature",
    "SignerResult",
    "add_signature_timestamp",
    "add_signer",
    "load_signed_data",
    "prepare",
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


def _now() -> dt.datetime:
    """The signing time when none is given (a function, so that tests can fix it)."""
    return dt.datetime.now(dt.UTC)


def _signing_second(when: dt.datetime) -> dt.datetime:
    """``when`` in UTC, whole seconds (a naive value is taken as local time)."""
    return when.astimezone(dt.UTC).replace(microsecond=0)


def _signing_time(when: dt.datetime) -> cms.Time:
    when = _signing_second(when)
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
    return _sign_prepared(_prepare(digest, None if detached else data, certificate, options),
                          signer, certificate, options)


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
    _check_digest_length(message_digest, algorithm)
    options = _SignOptions(CMSFlavor(flavor), algorithm, tuple(extra_certificates), signing_time,
                           include_signing_time, signer_id)
    return _sign_prepared(_prepare(message_digest, None, certificate, options),
                          signer, certificate, options)


def _algorithm(signer: Signer, certificate: Certificate,
               requested: SignatureAlgorithm | None) -> SignatureAlgorithm:
    public = signer.public_key()
    if public != certificate.public_key():
        raise InvalidKey("the signing key does not match the signer certificate")
    return public.resolve_algorithm(requested)


def _check_digest_length(message_digest: bytes, algorithm: SignatureAlgorithm) -> None:
    if len(message_digest) != algorithm.hash_algorithm.digest_size:
        raise ValueError(f"a {algorithm.hash_algorithm.value} digest is "
                         f"{algorithm.hash_algorithm.digest_size} bytes")


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


def _sign_prepared(prepared: PreparedSignature, signer: Signer, certificate: Certificate,
                   options: _SignOptions) -> bytes:
    """One-shot signing: the signer signs the prepared attributes at once.  The signature is not
    re-verified (the signer holds the certificate's key; a co-signer checks its own output)."""
    signature = signer.sign(prepared.to_be_signed, prepared.algorithm,
                            signer_id=prepared.signer_id)
    return _assemble(prepared, signature, _embedded(certificate, options.extra_certificates))


def _embedded(certificate: Certificate,
              extra_certificates: Sequence[Certificate]) -> tuple[Certificate, ...]:
    """The certificates to embed: the signer's first, then the extra ones (without it)."""
    return (certificate, *(c for c in extra_certificates if c != certificate))


def _prepare(digest: bytes, content: bytes | None, certificate: Certificate,
             options: _SignOptions) -> PreparedSignature:
    """Build the signed attributes over ``digest``: the one code path of every CMS we sign.

    The DER is written directly (:func:`_reference_prepare` is the asn1crypto construction it
    reproduces byte for byte): content-type (cached per type), message-digest, signing-time,
    then any extra attributes as asn1crypto encodes them."""
    flavor = options.flavor
    attributes = [_content_type_parts(options.content_type or flavor.data_oid)[2],
                  tlv(0x30, _ATTR_MESSAGE_DIGEST + tlv(0x31, tlv(0x04, digest)))]
    if options.include_signing_time:
        attributes.append(_signing_time_attribute(options.signing_time or _now()))
    if options.extra_signed_attributes:
        # As asn1crypto adds them to the SET OF (it would convert, say, a dict).
        extra = cms.CMSAttributes(list(options.extra_signed_attributes))
        attributes.extend(bytes(a.dump()) for a in extra)
    # RFC 5652 section 5.4: the signature covers the DER of the attributes as a SET OF, whose
    # elements DER orders by their encodings (asn1crypto's SetOf: plain byte order, as here).
    signed_attrs = tlv(0x31, b"".join(sorted(attributes)))
    certs = _embedded(certificate, options.extra_certificates)
    return PreparedSignature(
        flavor=flavor, algorithm=options.algorithm, certificate=certificate.der,
        extra_certificates=tuple(c.der for c in certs[1:]), signed_attributes=signed_attrs,
        content=content, signer_id=options.signer_id)


def _assemble(prepared: PreparedSignature, signature: bytes,
              certs: Sequence[Certificate]) -> bytes:
    """The DER ContentInfo(SignedData) of ``prepared`` with ``signature``; ``certs``: the signer
    certificate first, then the extra certificates.

    Written directly from cached parts (:func:`_reference_assemble` is the asn1crypto
    construction it reproduces byte for byte, and what runs for signed attributes that are not
    plain DER with one content-type attribute: only a hand-made PreparedSignature has those)."""
    found = _signed_content_type(prepared.signed_attributes)
    if found is None:
        return _reference_assemble(prepared, signature, certs)
    econtent_type, econtent_oid, attrs_content = found
    flavor, algorithm, content = prepared.flavor, prepared.algorithm, prepared.content
    digest_id = _digest_algorithm_der(algorithm.hash_algorithm)
    signer_info = tlv(0x30, b"".join((
        _V1, _signer_identifier_der(certs[0]), digest_id, tlv(0xA0, attrs_content),
        _signature_algorithm_der(algorithm, flavor is CMSFlavor.GMT0010),
        tlv(0x04, signature))))
    # EncapsulatedContentInfo: eContentType, then [0] EXPLICIT OCTET STRING eContent.  Large
    # content is copied once, by the final join; everything around it is headers.
    if content is None:
        encap_head, econtent = econtent_oid, b""
    else:
        # asn1crypto types some eContent (TSTInfo) by content type, and encodes what it parsed.
        spec = cms.EncapsulatedContentInfo._oid_specs.get(cms.ContentType.map(econtent_type))
        econtent = content if spec is None else bytes(spec.load(content).dump())
        octets = header(0x04, len(econtent))
        encap_head = econtent_oid + header(0xA0, len(octets) + len(econtent)) + octets
    encap_size = len(encap_head) + len(econtent)
    before = b"".join((
        _V1 if econtent_type == flavor.data_oid else _V3, tlv(0x31, digest_id),
        header(0x30, encap_size), encap_head))
    after = _certificate_set_der(tuple(certs)) + tlv(0x31, signer_info)
    signed_size = len(before) + len(econtent) + len(after)
    signed_head = header(0x30, signed_size)
    outer_oid = _content_type_parts(flavor.signed_data_oid)[1]
    explicit_size = len(signed_head) + signed_size
    inner_size = len(outer_oid) + len(header(0xA0, explicit_size)) + explicit_size
    return b"".join((header(0x30, inner_size), outer_oid, header(0xA0, explicit_size),
                     signed_head, before, econtent, after))


# Parts written once with asn1crypto, then reused.
_V1 = b"\x02\x01\x01"  # INTEGER 1: CMSVersion v1
_V3 = b"\x02\x01\x03"
_ATTR_CONTENT_TYPE = bytes(cms.CMSAttributeType("content_type").dump())
_ATTR_MESSAGE_DIGEST = bytes(cms.CMSAttributeType("message_digest").dump())
_ATTR_SIGNING_TIME = bytes(cms.CMSAttributeType("signing_time").dump())
# The contents of an OBJECT IDENTIFIER in which every subidentifier is minimally encoded.
_CANONICAL_OID = re.compile(rb"(?:[\x81-\xff][\x80-\xff]*[\x00-\x7f]|[\x00-\x7f])+")


@functools.lru_cache(maxsize=64)
def _content_type_parts(content_type: str) -> tuple[str, bytes, bytes]:
    """``(dotted, OID DER, content-type attribute DER)`` of a content type (dotted or name)."""
    value = cms.ContentType(content_type)
    return (str(value.dotted), bytes(value.dump()),
            bytes(_attribute("content_type", value).dump()))


@functools.lru_cache(maxsize=64)
def _oid_dotted(encoded: bytes) -> str:
    return str(cms.ContentType.load(encoded, strict=True).dotted)


def _signing_time_attribute(when: dt.datetime) -> bytes:
    """The signing-time attribute DER: the :func:`_signing_time` choice, formatted as
    asn1crypto's UTCTime and GeneralizedTime format it (``strftime``, no fraction)."""
    when = _signing_second(when)
    if 1950 <= when.year < 2050:
        value = tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    else:
        value = tlv(0x18, (when.strftime("%Y%m%d%H%M%S") + "Z").encode("ascii"))
    return tlv(0x30, _ATTR_SIGNING_TIME + tlv(0x31, value))


@functools.cache
def _digest_algorithm_der(algorithm: HashAlgorithm) -> bytes:
    return bytes(algids.digest_algorithm_id(algorithm).dump())


@functools.cache
def _signature_algorithm_der(algorithm: SignatureAlgorithm, gm_flavor: bool) -> bytes:
    return bytes(algids.signature_algorithm_id(
        algorithm, cms_signer_info=True, gm_flavor=gm_flavor).dump())


@functools.lru_cache(maxsize=256)
def _signer_identifier_der(certificate: Certificate) -> bytes:
    """The SignerIdentifier (issuerAndSerialNumber) of a certificate (keyed by its DER)."""
    return bytes(cms.SignerIdentifier(name="issuer_and_serial_number", value={
        "issuer": certificate.issuer_name, "serial_number": certificate.serial_number}).dump())


@functools.lru_cache(maxsize=64)
def _certificate_set_der(certs: tuple[Certificate, ...]) -> bytes:
    """``certificates [0] IMPLICIT CertificateSet``: a SET OF, so in the order of the encodings
    (as asn1crypto sorts it), duplicates kept."""
    return tlv(0xA0, b"".join(sorted(c.der for c in certs)))


def _signed_content_type(attrs: bytes) -> tuple[str, bytes, bytes] | None:
    """``(eContentType dotted, its DER, content of the SET)`` from DER signed attributes that
    hold exactly one content-type attribute of one value; None when they are anything else
    (not DER at the levels read here, an OID not minimally encoded, no or several content
    types), which :func:`_reference_assemble` then handles as it always did."""
    try:
        start, stop = _expect(attrs, 0, len(attrs), 0x31)
        if stop != len(attrs):
            raise ValueError("trailing bytes")
        content, found = attrs[start:stop], None
        while start < stop:
            body, end = _expect(attrs, start, stop, 0x30)  # Attribute ::= SEQUENCE {
            kind, values = _expect(attrs, body, end, 0x06)  # attrType OBJECT IDENTIFIER,
            if not _CANONICAL_OID.fullmatch(attrs, kind, values):
                raise ValueError("attribute type not minimally encoded")
            first, last = _expect(attrs, values, end, 0x31)  # attrValues SET OF }
            if last != end:
                raise ValueError("trailing bytes in an attribute")
            if attrs[body:values] == _ATTR_CONTENT_TYPE:
                oid, oid_end = _expect(attrs, first, last, 0x06)
                if found is not None or oid_end != last or not _CANONICAL_OID.fullmatch(
                        attrs, oid, oid_end):
                    raise ValueError("not one content type")
                found = attrs[first:last]
            start = end
        if found is None:
            raise ValueError("no content type")
        dotted = _oid_dotted(found)
        return dotted, _content_type_parts(dotted)[1], content
    except ValueError:
        return None


def _expect(data: bytes, offset: int, end: int, tag: int) -> tuple[int, int]:
    """The content bounds of the DER TLV with ``tag`` at ``data[offset:end]``, or ValueError."""
    found = read_tlv(data, offset, end)
    if found is None or found[0] != tag:
        raise ValueError(f"not a DER TLV of tag {tag:#x}")
    return found[1], found[2]


def _reference_prepare(digest: bytes, content: bytes | None, certificate: Certificate,
                       options: _SignOptions) -> PreparedSignature:
    """:func:`_prepare` built with asn1crypto: what the direct DER must equal (and the test's
    reference)."""
    flavor = options.flavor
    econtent_type = options.content_type or flavor.data_oid
    attributes = [
        _attribute("content_type", cms.ContentType(econtent_type)),
        _attribute("message_digest", core.OctetString(digest)),
    ]
    if options.include_signing_time:
        attributes.append(_attribute(
            "signing_time", _signing_time(options.signing_time or _now())))
    attributes.extend(options.extra_signed_attributes)
    # RFC 5652 section 5.4: the signature covers the DER of the attributes as a SET OF.
    signed_attrs = bytes(cms.CMSAttributes(attributes).dump())
    certs = _embedded(certificate, options.extra_certificates)
    return PreparedSignature(
        flavor=flavor, algorithm=options.algorithm, certificate=certificate.der,
        extra_certificates=tuple(c.der for c in certs[1:]), signed_attributes=signed_attrs,
        content=content, signer_id=options.signer_id)


def _reference_assemble(prepared: PreparedSignature, signature: bytes,
                        certs: Sequence[Certificate]) -> bytes:
    """:func:`_assemble` built with asn1crypto (its fallback, and the test's reference)."""
    flavor, algorithm, content = prepared.flavor, prepared.algorithm, prepared.content
    certificate = certs[0]
    signed_attrs = cms.CMSAttributes.load(prepared.signed_attributes)
    econtent_type = _attribute_value(signed_attrs, "content_type").dotted
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
    signed_data = cms.SignedData({
        "version": "v1" if econtent_type == flavor.data_oid else "v3",
        "digest_algorithms": [digest_id],
        "encap_content_info": encap,
        "certificates": [cms.CertificateChoices(name="certificate", value=c.asn1) for c in certs],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({
        "content_type": flavor.signed_data_oid, "content": signed_data}).dump())


# ---------------------------------------------------------------------------------------------
# Two-phase signing (split keys)


def prepare(
    data: bytes | None,
    certificate: Certificate,
    *,
    message_digest: bytes | None = None,
    detached: bool = False,
    flavor: CMSFlavor | str = CMSFlavor.RFC5652,
    extra_certificates: Sequence[Certificate] = (),
    signing_time: dt.datetime | None = None,
    include_signing_time: bool = True,
    signer_id: bytes = DEFAULT_SM2_ID,
    signature_algorithm: SignatureAlgorithm | None = None,
) -> PreparedSignature:
    """The first phase of a CMS signature whose key is not at hand (a two-party SM2 key).

    Give either the content ``data`` (attached unless ``detached``) or its ``message_digest``
    (SM3 for SM2 certificates, SHA-256 for RSA/ECDSA; the CMS is then detached).  The result
    holds the signed attributes: sign :attr:`PreparedSignature.to_be_signed` (or, with a raw
    digest signer, :meth:`PreparedSignature.digest`), keep it meanwhile with
    :meth:`PreparedSignature.to_dict`, and pass the signature to
    :meth:`PreparedSignature.finish`.  The output equals what :func:`sign` /
    :func:`sign_digest` make with the same arguments.
    """
    if (data is None) == (message_digest is None):
        raise ValueError("give exactly one of data and message_digest")
    algorithm = certificate.public_key().resolve_algorithm(signature_algorithm)
    if algorithm.key_type is KeyType.SM2 and len(signer_id) > MAX_ID_BYTES:
        raise InvalidKey(f"SM2 signer ID longer than {MAX_ID_BYTES} bytes")
    options = _SignOptions(CMSFlavor(flavor), algorithm, tuple(extra_certificates), signing_time,
                           include_signing_time, signer_id)
    if message_digest is not None:
        _check_digest_length(message_digest, algorithm)
        return _prepare(message_digest, None, certificate, options)
    assert data is not None
    digest = hashes.digest(algorithm.hash_algorithm, data)
    return _prepare(digest, None if detached else data, certificate, options)


_PREPARED_FORMAT = 1


@dataclass(frozen=True)
class PreparedSignature:
    """A CMS signature waiting for its signature value (see :func:`prepare`).

    Everything is kept as bytes (DER), so the object can be stored (:meth:`to_dict`) between
    the request that prepared it and the one that brings the co-signature.
    """

    flavor: CMSFlavor
    algorithm: SignatureAlgorithm
    certificate: bytes  # the signer certificate, DER
    extra_certificates: tuple[bytes, ...]  # DER, embedded after the signer certificate
    signed_attributes: bytes  # DER of the SET OF signed attributes
    content: bytes | None  # None: detached
    signer_id: bytes = DEFAULT_SM2_ID

    @property
    def to_be_signed(self) -> bytes:
        """What an ordinary signer signs (``signer.sign(to_be_signed, algorithm,
        signer_id=...)``): the DER of the signed attributes as a SET OF (RFC 5652 5.4)."""
        return self.signed_attributes

    @property
    def detached(self) -> bool:
        return self.content is None

    @property
    def content_type(self) -> str:
        """The eContentType (the content-type signed attribute), dotted."""
        attrs = cms.CMSAttributes.load(self.signed_attributes)
        return str(_attribute_value(attrs, "content_type").dotted)

    @property
    def message_digest(self) -> bytes:
        """The message-digest signed attribute: the hash of the content."""
        attrs = cms.CMSAttributes.load(self.signed_attributes)
        return bytes(_attribute_value(attrs, "message_digest").native)

    @functools.cached_property
    def _certificates(self) -> tuple[Certificate, ...]:
        return tuple(Certificate.from_stored(der)
                     for der in (self.certificate, *self.extra_certificates))

    @property
    def signer_certificate(self) -> Certificate:
        return self._certificates[0]

    def digest(self) -> bytes:
        """What a raw-digest signer signs (``sign_digest``): for SM2, ``e = SM3(Z_A ||
        to_be_signed)`` with Z_A from the certificate's key and :attr:`signer_id`; for RSA and
        ECDSA, the algorithm's hash of :attr:`to_be_signed`."""
        public = self.signer_certificate.public_key()
        if isinstance(public, SM2PublicKey):
            return public.digest(self.signed_attributes, self.signer_id)
        return hashes.digest(self.algorithm.hash_algorithm, self.signed_attributes)

    def finish(self, signature: bytes) -> bytes:
        """The DER ContentInfo(SignedData) carrying ``signature``.

        Raises InvalidSignature unless ``signature`` verifies with the signer certificate's key
        over the signed attributes (a wrong share, a wrong digest or a corrupted value never
        becomes a CMS).
        """
        public = self.signer_certificate.public_key()
        try:
            public.verify(signature, self.signed_attributes, self.algorithm,
                          signer_id=self.signer_id)
        except (ValueError, TypeError) as exc:  # pyca on values that are not signatures at all
            raise InvalidSignature(f"the signature does not verify: {exc}") from None
        return _assemble(self, signature, self._certificates)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (strings, lists and None only); :meth:`from_dict` reads it back."""
        return {
            "format": _PREPARED_FORMAT,
            "flavor": self.flavor.value,
            "algorithm": self.algorithm.value,
            "certificate": self.certificate.hex(),
            "extra_certificates": [der.hex() for der in self.extra_certificates],
            "signed_attributes": self.signed_attributes.hex(),
            "content": self.content.hex() if self.content is not None else None,
            "signer_id": self.signer_id.hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreparedSignature:
        """Read back :meth:`to_dict`.  Everything is re-checked: DecodeError for malformed
        values or signed attributes that do not fit the certificate or the content,
        UnsupportedAlgorithm for an algorithm the certificate's key cannot use."""
        try:
            if data["format"] != _PREPARED_FORMAT:
                raise DecodeError(f"unknown prepared-signature format {data['format']!r}")
            flavor = CMSFlavor(data["flavor"])
            algorithm = SignatureAlgorithm(data["algorithm"])
            certificate = _stored_certificate(_unhex(data["certificate"]))
            extras = [_stored_certificate(_unhex(h)) for h in _list(data["extra_certificates"])]
            signed_attributes = _unhex(data["signed_attributes"])
            content = None if data["content"] is None else _unhex(data["content"])
            signer_id = _unhex(data["signer_id"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SigncoreError):
                raise
            raise DecodeError(f"not a stored prepared signature: {exc!r}") from None
        certificate.public_key().resolve_algorithm(algorithm)
        attrs = load(cms.CMSAttributes, signed_attributes, "signed attributes")
        content_type = _attribute_value(attrs, "content_type")
        message_digest = _attribute_value(attrs, "message_digest")
        if content_type in (None, _DUPLICATE) or message_digest in (None, _DUPLICATE):
            raise DecodeError("the signed attributes need one content-type and one "
                              "message-digest")
        digest = bytes(message_digest.native)
        if len(digest) != algorithm.hash_algorithm.digest_size:
            raise DecodeError("the message-digest attribute does not fit the algorithm")
        if content is not None and not hashes.constant_time_equal(
                digest, hashes.digest(algorithm.hash_algorithm, content)):
            raise DecodeError("the message-digest attribute does not match the content")
        return cls(flavor, algorithm, certificate.der, tuple(c.der for c in extras),
                   signed_attributes, content, signer_id)


@functools.lru_cache(maxsize=512)
def _stored_certificate(der: bytes) -> Certificate:
    """A certificate of a stored prepared signature, strictly parsed once per DER: a server
    finishing many co-signatures sees the same few signer and CA certificates again."""
    return load_certificate(der)


def _unhex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected a hex string, got {type(value).__name__}")
    return bytes.fromhex(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------------
# Several signers


def add_signer(existing: bytes, other: bytes) -> bytes:
    """One SignedData with the SignerInfos of ``existing`` followed by those of ``other``.

    Both must be SignedData (DER or PEM) of the same flavour over the same content: the same
    eContentType, and equal content when both carry it (the result keeps the content if either
    has it), and message-digest attributes that agree with that content (or, when both are
    detached, with each other).  Digest algorithms, certificates and CRLs are merged without
    duplicates; every SignerInfo keeps its bytes (signed and unsigned attributes included), so
    the signatures and their time stamps still verify.  This is how a pharmacist countersigns
    the prescription a doctor signed.  Raises DecodeError for input that is not SignedData and
    ValueError for SignedData that cannot be merged.
    """
    flavor, first = load_signed_data(existing)
    other_flavor, second = load_signed_data(other)
    if flavor is not other_flavor:
        raise ValueError(f"cannot merge a {flavor.value} SignedData with a "
                         f"{other_flavor.value} one")
    encaps = first["encap_content_info"], second["encap_content_info"]
    content_type = encaps[0]["content_type"].dotted
    if encaps[1]["content_type"].dotted != content_type:
        raise ValueError("the two SignedData have different content types")
    contents = _econtent_bytes(encaps[0]["content"]), _econtent_bytes(encaps[1]["content"])
    if None not in contents and contents[0] != contents[1]:
        raise ValueError("the two SignedData carry different content")
    content = contents[0] if contents[0] is not None else contents[1]
    infos = [*first["signer_infos"], *second["signer_infos"]]
    if not len(second["signer_infos"]):
        raise ValueError("the SignedData to add has no SignerInfo")
    known = {bytes(i.dump()) for i in first["signer_infos"]}
    if any(bytes(i.dump()) in known for i in second["signer_infos"]):
        raise ValueError("that signature is already in the SignedData")
    _check_same_content(infos, content)
    merged: dict[str, Any] = {
        "version": max(int(first["version"]), int(second["version"])),
        "digest_algorithms": _union(first["digest_algorithms"], second["digest_algorithms"]),
        "encap_content_info": encaps[0] if contents[0] is not None or content is None
        else encaps[1],
        "signer_infos": _in_order(infos),
    }
    for name in ("certificates", "crls"):
        values = _union(first[name] or [], second[name] or [])
        if values:
            merged[name] = values
    return bytes(cms.ContentInfo({"content_type": flavor.signed_data_oid,
                                  "content": cms.SignedData(merged)}).dump(force=False))


def _in_order(infos: Sequence[cms.SignerInfo]) -> cms.SignerInfos:
    """SignerInfos in the order given.  asn1crypto would sort a SET OF by encoding (DER); CMS
    allows BER outside the signed attributes (RFC 5652 section 2), and keeping the order keeps
    each signer's index (:func:`signature_value`, :func:`add_signature_timestamp`) stable."""
    return load(cms.SignerInfos, tlv(0x31, b"".join(bytes(i.dump()) for i in infos)),
                "SignerInfos")


def _union(first: Any, second: Any) -> list[Any]:
    """The elements of ``first`` then those of ``second`` not already there (by DER)."""
    seen: set[bytes] = set()
    out = []
    for value in (*first, *second):
        der = bytes(value.dump())
        if der not in seen:
            seen.add(der)
            out.append(value)
    return out


def _check_same_content(infos: Sequence[cms.SignerInfo], content: bytes | None) -> None:
    """ValueError unless every message-digest attribute is the hash of ``content`` (or, with
    no content at hand, equal to the others of the same digest algorithm)."""
    expected: dict[HashAlgorithm, bytes] = {}
    for info in infos:
        attrs = info["signed_attrs"]
        if not attrs:
            continue  # a signature directly over the content: nothing to compare here
        try:
            algorithm = algids.hash_from_digest_id(info["digest_algorithm"])
        except UnsupportedAlgorithm:
            continue  # verify() reports it
        value = _attribute_value(attrs, "message_digest")
        if value is None or value is _DUPLICATE:
            continue  # verify() reports it
        digest = bytes(value.native)
        if algorithm not in expected:
            expected[algorithm] = (hashes.digest(algorithm, content) if content is not None
                                   else digest)
        if not hashes.constant_time_equal(digest, expected[algorithm]):
            raise ValueError("the two SignedData sign different content")


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
    load(cms.ContentInfo, token, "time-stamp token")  # a well-formed token, or DecodeError
    # Written from the parts' own encodings: placing the parsed token into a freshly built
    # attribute makes asn1crypto copy and re-encode it (seconds for an RSA token), and would
    # re-sort the SET OF SignerInfo (changing the signers' indexes).
    info = infos[index]
    stamp = tlv(0x30, bytes(cms.CMSAttributeType("signature_time_stamp_token").dump())
                + tlv(0x31, token))
    kept = [bytes(a.dump()) for a in (info["unsigned_attrs"] or [])
            if a["type"].native != "signature_time_stamp_token"]
    signed_part = b"".join(bytes(info[name].dump()) for name in (
        "version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature"))
    stamped = tlv(0x30, signed_part + tlv(0xA1, b"".join(sorted([*kept, stamp]))))  # DER SET
    encoded = [stamped if i == index else bytes(other.dump()) for i, other in enumerate(infos)]
    signed_data["signer_infos"] = load(cms.SignerInfos, tlv(0x31, b"".join(encoded)),
                                       "SignerInfos")
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
