"""X.509 v3 certificates, PKCS#10 requests and CRLs, signed with SM2-with-SM3, RSA or ECDSA.

Built on asn1crypto (``cryptography`` cannot sign with SM2).  Every SM2 signature on a
certificate, request or CRL uses the GM/T 0009 default ID ``1234567812345678``: that is what
GM/T 0015 certificates use and what ``openssl verify -vfyopt distid:1234567812345678`` checks.

Names are written as RFC 4514 strings (``CN=张三,OU=内科,O=某医院,C=CN``: the leftmost attribute
is the last RDN in the encoding) or in OpenSSL's slash form (``/C=CN/O=某医院/CN=张三``, in encoding
order).  Country and serialNumber are PrintableString, everything else UTF8String.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import crl as _crl
from asn1crypto import csr as _csr

from signcore._internal import algids, der
from signcore._internal.asn1 import algos, core, load, x509
from signcore._internal.keybase import PublicKey, Signer
from signcore._internal.pem import is_pem, pem_blocks, pem_encode
from signcore.algorithms import SignatureAlgorithm
from signcore.errors import (
    DecodeError,
    InvalidKey,
    InvalidSignature,
    UnsupportedAlgorithm,
)
from signcore.hashes import sm3
from signcore.keys import public_key_from_info

__all__ = [
    "CRL",
    "Certificate",
    "CertificateRequest",
    "Extensions",
    "RevokedCertificate",
    "UnsignedRequest",
    "build_crl",
    "build_csr",
    "format_name",
    "issue_certificate",
    "load_certificate",
    "load_certificates",
    "load_crl",
    "load_csr",
    "names_equal",
    "parse_name",
    "prepare_csr",
]

# ---------------------------------------------------------------------------------------------
# Names

_ATTRIBUTES = {
    "CN": "common_name",
    "O": "organization_name",
    "OU": "organizational_unit_name",
    "C": "country_name",
    "ST": "state_or_province_name",
    "L": "locality_name",
    "STREET": "street_address",
    "EMAIL": "email_address",
    "EMAILADDRESS": "email_address",
    "E": "email_address",
    "SERIALNUMBER": "serial_number",
    "TITLE": "title",
    "GN": "given_name",
    "GIVENNAME": "given_name",
    "SN": "surname",
    "SURNAME": "surname",
    "DC": "domain_component",
    "UID": "user_id",
    "POSTALCODE": "postal_code",
    "ORGANIZATIONIDENTIFIER": "organization_identifier",
}
_SHORT = {
    "common_name": "CN", "organization_name": "O", "organizational_unit_name": "OU",
    "country_name": "C", "state_or_province_name": "ST", "locality_name": "L",
    "street_address": "STREET", "email_address": "emailAddress", "serial_number": "serialNumber",
    "title": "title", "given_name": "GN", "surname": "SN", "domain_component": "DC",
    "user_id": "UID", "postal_code": "postalCode",
    "organization_identifier": "organizationIdentifier",
}
_PRINTABLE = {"country_name", "serial_number"}
_IA5 = {"email_address", "domain_component"}
_OID_RE = re.compile(r"^[0-2](\.\d+)+$")
_PRINTABLE_RE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
MAX_NAME_VALUE = 256


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split at each ``sep`` not escaped by a backslash; the escapes stay for :func:`_unescape`."""
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        raise ValueError("name ends with a lone backslash")
    parts.append("".join(current))
    return parts


_HEX_PAIRS = re.compile(r"(?:\\[0-9A-Fa-f]{2})+")


def _unescape(raw: str, hex_pairs: bool) -> str:
    """Drop unescaped surrounding whitespace, then resolve ``\\c`` escapes and (RFC 4514 form,
    as ``openssl -nameopt RFC2253`` prints non-ASCII) ``\\XX`` UTF-8 hex pairs."""
    raw = raw.lstrip()
    end = len(raw)
    while end and raw[end - 1].isspace():
        before = raw[:end - 1]
        if (len(before) - len(before.rstrip("\\"))) % 2:
            break  # an odd run of backslashes escapes this space
        end -= 1
    raw = raw[:end]
    out, i = [], 0
    while i < len(raw):
        match = _HEX_PAIRS.match(raw, i) if hex_pairs else None
        if match:
            try:
                out.append(bytes.fromhex(match.group().replace("\\", "")).decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError("hex escapes in a name must encode UTF-8") from None
            i = match.end()
        elif raw[i] == "\\":
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def _attribute(key: str, raw_value: str, hex_pairs: bool) -> x509.NameTypeAndValue:
    key = key.strip()
    value = _unescape(raw_value, hex_pairs)
    type_name = key if _OID_RE.match(key) else _ATTRIBUTES.get(key.upper())
    if type_name is None:
        raise ValueError(f"unknown name attribute {key!r}")
    if not value or len(value) > MAX_NAME_VALUE:
        raise ValueError(f"name attribute {key} must have 1 to {MAX_NAME_VALUE} characters")
    if type_name == "country_name" and not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError("C must be a two-letter country code")
    encoded: Any
    if type_name in _IA5:
        if not value.isascii():
            raise ValueError(f"{key} must be ASCII")
        encoded = value
    elif type_name in _PRINTABLE:
        if not _PRINTABLE_RE.fullmatch(value):
            raise ValueError(f"{key} must be a PrintableString: A-Z a-z 0-9 space '()+,-./:=?")
        encoded = x509.DirectoryString(name="printable_string", value=value)
    elif _OID_RE.match(type_name):
        encoded = core.UTF8String(value)
    else:
        encoded = x509.DirectoryString(name="utf8_string", value=value)
    return x509.NameTypeAndValue({"type": type_name, "value": encoded})


def parse_name(text: str) -> x509.Name:
    """Parse ``CN=...,O=...`` (RFC 4514 order) or ``/C=CN/O=.../CN=...`` (encoding order)."""
    if not text.strip():
        raise ValueError("empty name")
    text = text.lstrip()  # trailing spaces may be escaped: each value strips its own
    slash_form = text.startswith("/")
    if slash_form:
        parts = _split_unescaped(text[1:], "/")
    else:
        parts = list(reversed(_split_unescaped(text, ",")))
    rdns = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"name component {part!r} lacks '='")
        rdns.append(x509.RelativeDistinguishedName([_attribute(key, value, not slash_form)]))
    return x509.Name(name="", value=x509.RDNSequence(rdns))


def names_equal(a: x509.Name, b: x509.Name) -> bool:
    """RFC 5280 section 7.1 name comparison (case and space folding).  asn1crypto raises
    ValueError when stringprep meets a hostile string (an unassigned code point); then only
    identical encodings match."""
    try:
        return bool(a == b)
    except ValueError:
        return bool(a.dump() == b.dump())


def _escape(value: str) -> str:
    """RFC 4514 section 2.4, plus hex pairs for whitespace other than a space and for
    non-printable characters (a CN cannot break a log line, and :func:`parse_name` gets back
    exactly this value: it strips unescaped surrounding whitespace)."""
    out = []
    for index, char in enumerate(value):
        if char in ',+"\\<>;' or (char == " " and index in (0, len(value) - 1)) or (
                char == "#" and index == 0):
            out.append("\\" + char)
        elif (char.isspace() and char != " ") or not char.isprintable():
            out.append("".join(f"\\{octet:02X}" for octet in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def format_name(name: x509.Name) -> str:
    """RFC 4514 string of a Name (last RDN first), with readable short names."""
    parts = []
    for rdn in reversed(list(name.chosen)):
        values = []
        for atv in rdn:
            type_name = atv["type"].native
            short = _SHORT.get(type_name, atv["type"].dotted)
            native = atv["value"].native
            values.append(f"{short}={_escape(str(native))}")
        parts.append("+".join(values))
    return ",".join(parts)


def _as_name(value: x509.Name | str) -> x509.Name:
    return parse_name(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------
# Extensions


@dataclass(frozen=True)
class Extensions:
    """The v3 extensions a certificate or request carries, in plain Python terms.

    ``key_usage`` takes asn1crypto's names: ``digital_signature``, ``non_repudiation``,
    ``key_encipherment``, ``data_encipherment``, ``key_agreement``, ``key_cert_sign``,
    ``crl_sign``.  ``extended_key_usage`` takes names (``server_auth``, ``client_auth``,
    ``code_signing``, ``email_protection``, ``time_stamping``, ``ocsp_signing``) or dotted OIDs.
    """

    key_usage: frozenset[str] = frozenset()
    key_usage_critical: bool = True
    extended_key_usage: tuple[str, ...] = ()
    extended_key_usage_critical: bool = False
    ca: bool | None = None  # None: no basicConstraints extension
    path_length: int | None = None
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()
    freshest_crl_urls: tuple[str, ...] = ()  # where delta CRLs are (RFC 5280 4.2.1.15)
    ocsp_urls: tuple[str, ...] = ()
    ca_issuers_urls: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    extra: tuple[x509.Extension, ...] = field(default=())

    def has_san(self) -> bool:
        return bool(self.dns_names or self.emails or self.uris or self.ip_addresses)


_KEY_USAGES = {
    "digital_signature", "non_repudiation", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
}


def _ext(extn_id: str, value: Any, critical: bool = False) -> x509.Extension:
    return x509.Extension({"extn_id": extn_id, "critical": critical, "extn_value": value})


def _san(ext: Extensions) -> x509.GeneralNames:
    names = [x509.GeneralName(name="dns_name", value=v) for v in ext.dns_names]
    names += [x509.GeneralName(name="rfc822_name", value=v) for v in ext.emails]
    names += [x509.GeneralName(name="uniform_resource_identifier", value=v) for v in ext.uris]
    for value in ext.ip_addresses:
        ipaddress.ip_address(value)  # validates; asn1crypto would accept nonsense
        names.append(x509.GeneralName(name="ip_address", value=value))
    return x509.GeneralNames(names)


def _distribution_points(urls: Iterable[str]) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([{"distribution_point": x509.DistributionPointName(
        name="full_name",
        value=[x509.GeneralName(name="uniform_resource_identifier", value=url)])}
        for url in urls])


def _extension_list(ext: Extensions) -> list[x509.Extension]:
    out = []
    if ext.ca is not None:
        bc: dict[str, Any] = {"ca": ext.ca}
        if ext.ca and ext.path_length is not None:
            bc["path_len_constraint"] = ext.path_length
        out.append(_ext("basic_constraints", x509.BasicConstraints(bc), critical=True))
    if ext.key_usage:
        unknown = set(ext.key_usage) - _KEY_USAGES
        if unknown:
            raise ValueError(f"unknown key usage {sorted(unknown)}")
        out.append(_ext("key_usage", x509.KeyUsage(set(ext.key_usage)), ext.key_usage_critical))
    if ext.extended_key_usage:
        out.append(_ext("extended_key_usage", x509.ExtKeyUsageSyntax(list(ext.extended_key_usage)),
                        ext.extended_key_usage_critical))
    if ext.has_san():
        out.append(_ext("subject_alt_name", _san(ext)))
    if ext.crl_urls:
        out.append(_ext("crl_distribution_points", _distribution_points(ext.crl_urls)))
    if ext.freshest_crl_urls:
        out.append(_ext("freshest_crl", _distribution_points(ext.freshest_crl_urls)))
    access = [{"access_method": "ocsp", "access_location": x509.GeneralName(
        name="uniform_resource_identifier", value=url)} for url in ext.ocsp_urls]
    access += [{"access_method": "ca_issuers", "access_location": x509.GeneralName(
        name="uniform_resource_identifier", value=url)} for url in ext.ca_issuers_urls]
    if access:
        out.append(_ext("authority_information_access", x509.AuthorityInfoAccessSyntax(access)))
    if ext.policies:
        out.append(_ext("certificate_policies", x509.CertificatePolicies(
            [{"policy_identifier": oid} for oid in ext.policies])))
    out.extend(ext.extra)
    return out


def _parse_extensions(extensions: Iterable[x509.Extension]) -> Extensions:
    """Read the extensions we know back into :class:`Extensions` (others land in ``extra``)."""
    try:
        return _read_extensions(extensions)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # asn1crypto parses an unknown extension's value only on demand: malformed is DecodeError.
        raise DecodeError(f"malformed extension: {exc}") from exc


def _read_extensions(extensions: Iterable[x509.Extension]) -> Extensions:
    values: dict[str, Any] = {}
    extra = []
    for extension in extensions:
        name = extension["extn_id"].native
        critical = bool(extension["critical"].native)
        if name not in _PARSED_EXTENSIONS:
            if name not in ("key_identifier", "authority_key_identifier"):
                extra.append(extension)
            continue
        value = extension["extn_value"].parsed
        if name == "basic_constraints":
            values["ca"] = bool(value["ca"].native)
            values["path_length"] = value["path_len_constraint"].native
        elif name == "key_usage":
            values["key_usage"] = frozenset(value.native)
            values["key_usage_critical"] = critical
        elif name == "extended_key_usage":
            values["extended_key_usage"] = tuple(
                oid.native if oid.native != oid.dotted else oid.dotted for oid in value)
            values["extended_key_usage_critical"] = critical
        elif name == "subject_alt_name":
            values.update(_read_san(value))
        elif name == "crl_distribution_points":
            values["crl_urls"] = tuple(_uris_of_crl_dp(value))
        elif name == "freshest_crl":
            values["freshest_crl_urls"] = tuple(_uris_of_crl_dp(value))
        elif name == "authority_information_access":
            values["ocsp_urls"] = tuple(
                a["access_location"].native for a in value
                if a["access_method"].native == "ocsp")
            values["ca_issuers_urls"] = tuple(
                a["access_location"].native for a in value
                if a["access_method"].native == "ca_issuers")
        elif name == "certificate_policies":
            values["policies"] = tuple(p["policy_identifier"].dotted for p in value)
    return Extensions(extra=tuple(extra), **values)


_PARSED_EXTENSIONS = {
    "basic_constraints", "key_usage", "extended_key_usage", "subject_alt_name",
    "crl_distribution_points", "authority_information_access", "certificate_policies",
    "freshest_crl",
}


def _read_san(value: x509.GeneralNames) -> dict[str, tuple[str, ...]]:
    kinds = {"dns_name": "dns_names", "rfc822_name": "emails",
             "uniform_resource_identifier": "uris", "ip_address": "ip_addresses"}
    out: dict[str, list[str]] = {v: [] for v in kinds.values()}
    for general_name in value:
        target = kinds.get(general_name.name)
        if target:
            out[target].append(str(general_name.native))
    return {k: tuple(v) for k, v in out.items()}


def _uris_of_crl_dp(value: x509.CRLDistributionPoints) -> list[str]:
    urls = []
    for point in value:
        name = point["distribution_point"]
        if isinstance(name, x509.DistributionPointName) and name.name == "full_name":
            urls += [g.native for g in name.chosen if g.name == "uniform_resource_identifier"]
    return urls


def key_identifier(public_key: PublicKey) -> bytes:
    """RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value."""
    info = load(x509.PublicKeyInfo, public_key.to_der(), "SubjectPublicKeyInfo")
    return hashlib.sha1(bytes(info["public_key"]), usedforsecurity=False).digest()


# ---------------------------------------------------------------------------------------------
# Signed objects


def _sign(tbs: core.Asn1Value, signer: Signer, algorithm: SignatureAlgorithm | None
          ) -> tuple[algos.SignedDigestAlgorithm, bytes]:
    algorithm = signer.public_key().resolve_algorithm(algorithm)
    signature = signer.sign(tbs.dump(), algorithm)
    return algids.signature_algorithm_id(algorithm), signature


def _sign_and_wrap(tbs: core.Asn1Value, signer: Signer,
                   algorithm: SignatureAlgorithm | None) -> bytes:
    """``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` (certificates, CRLs):
    the TBS is encoded once and those very bytes are signed and shipped (see
    :mod:`signcore._internal.der` for why the outer layers are not built with asn1crypto)."""
    algorithm = signer.public_key().resolve_algorithm(algorithm)
    tbs_der = tbs.dump()
    signature = signer.sign(tbs_der, algorithm)
    return der.sequence(tbs_der, algids.signature_algorithm_id(algorithm).dump(),
                        der.bit_string(signature))


def verify_signed_bytes(tbs: bytes, algorithm_id: Any, signature: bytes,
                        public_key: PublicKey) -> None:
    """Verify an X.509-style signature (certificate, CRL, CSR, OCSP); raise InvalidSignature."""
    try:
        algorithm = algids.signature_algorithm_from_id(algorithm_id)
        algorithm.require_key_type(public_key.key_type)
    except UnsupportedAlgorithm as exc:
        raise InvalidSignature(str(exc)) from exc
    public_key.verify(signature, tbs, algorithm)


def _signature_bits(value: core.OctetBitString) -> bytes:
    """The signature octets; a BIT STRING with unused bits is refused (asn1crypto would drop
    them silently, making the encoding malleable)."""
    contents = value.contents
    if not contents or contents[0] != 0:
        raise InvalidSignature("the signature BIT STRING has unused bits")
    return bytes(contents[1:])


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _time(value: dt.datetime) -> x509.Time:
    # RFC 5280 section 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
    name = "utc_time" if value.year < 2050 else "general_time"
    return x509.Time(name=name, value=_utc(value))


class Certificate:
    """A parsed X.509 certificate (immutable).  Equality is on the DER encoding."""

    def __init__(self, asn1_cert: x509.Certificate) -> None:
        self._asn1 = asn1_cert
        self._der: bytes = asn1_cert.dump()
        self._public_key: PublicKey | None = None

    @classmethod
    def from_stored(cls, der: bytes) -> Certificate:
        """A certificate this system encoded and stored itself (its own database): parsed
        lazily, without the strict whole-tree check :func:`load_certificate` gives untrusted
        input (which costs four times a signature)."""
        return cls(x509.Certificate.load(der))

    @property
    def asn1(self) -> x509.Certificate:
        return self._asn1

    @property
    def der(self) -> bytes:
        return self._der

    def to_pem(self) -> bytes:
        return pem_encode("CERTIFICATE", self._der)

    @property
    def tbs(self) -> x509.TbsCertificate:
        return self._asn1["tbs_certificate"]

    @property
    def subject(self) -> str:
        return format_name(self.tbs["subject"])

    @property
    def issuer(self) -> str:
        return format_name(self.tbs["issuer"])

    @property
    def subject_name(self) -> x509.Name:
        return self.tbs["subject"]

    @property
    def issuer_name(self) -> x509.Name:
        return self.tbs["issuer"]

    @property
    def serial_number(self) -> int:
        return int(self.tbs["serial_number"].native)

    @property
    def not_before(self) -> dt.datetime:
        return self.tbs["validity"]["not_before"].native  # type: ignore[no-any-return]

    @property
    def not_after(self) -> dt.datetime:
        return self.tbs["validity"]["not_after"].native  # type: ignore[no-any-return]

    @property
    def signature_algorithm(self) -> SignatureAlgorithm:
        return algids.signature_algorithm_from_id(self._asn1["signature_algorithm"])

    def public_key(self) -> PublicKey:
        if self._public_key is None:
            self._public_key = public_key_from_info(self.tbs["subject_public_key_info"])
        return self._public_key

    @property
    def extensions(self) -> Extensions:
        return _parse_extensions(self.tbs["extensions"])

    @property
    def is_ca(self) -> bool:
        return bool(self._asn1.ca)

    @property
    def subject_key_identifier(self) -> bytes | None:
        value = self._asn1.key_identifier
        return bytes(value) if value is not None else None

    @property
    def authority_key_identifier(self) -> bytes | None:
        value = self._asn1.authority_key_identifier
        return bytes(value) if value is not None else None

    @property
    def is_self_issued(self) -> bool:
        return names_equal(self.tbs["subject"], self.tbs["issuer"])

    def critical_extension_names(self) -> set[str]:
        return set(self._asn1.critical_extensions)

    def fingerprint(self, algorithm: str = "sha256") -> bytes:
        if algorithm == "sm3":
            return sm3(self._der)
        return hashlib.new(algorithm, self._der).digest()

    def verify_signature(self, issuer_public_key: PublicKey) -> None:
        """Raise InvalidSignature unless ``issuer_public_key`` signed this certificate."""
        verify_signed_bytes(self.tbs.dump(), self._asn1["signature_algorithm"],
                            _signature_bits(self._asn1["signature_value"]), issuer_public_key)

    def is_valid_at(self, when: dt.datetime) -> bool:
        return self.not_before <= when <= self.not_after

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Certificate) and other._der == self._der

    def __hash__(self) -> int:
        return hash(self._der)

    def __repr__(self) -> str:
        return f"<Certificate subject={self.subject!r} serial={self.serial_number:x}>"


def load_certificate(data: bytes) -> Certificate:
    """One certificate from PEM or DER."""
    certs = load_certificates(data)
    if len(certs) != 1:
        raise DecodeError(f"expected one certificate, found {len(certs)}")
    return certs[0]


def load_certificates(data: bytes) -> list[Certificate]:
    """Every certificate in a PEM bundle, or the single certificate of a DER input."""
    if is_pem(data):
        ders = [der for label, der in pem_blocks(data)
                if label in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE")]
        if not ders:
            raise DecodeError("no CERTIFICATE block found")
    else:
        ders = [data]
    return [Certificate(load(x509.Certificate, der, "certificate")) for der in ders]


def _random_serial() -> int:
    # 159 random bits: positive, at most 20 octets, unpredictable (CA/B BR 7.1, RFC 5280 4.1.2.2).
    return secrets.randbits(159) | (1 << 158)


def issue_certificate(
    *,
    subject: x509.Name | str,
    public_key: PublicKey,
    signer: Signer,
    issuer: Certificate | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int | None = None,
    serial_number: int | None = None,
    extensions: Extensions | None = None,
    signature_algorithm: SignatureAlgorithm | None = None,
) -> Certificate:
    """Issue (sign) a v3 certificate.

    ``issuer=None`` makes it self-signed (``signer`` must then hold the subject's own key).
    Validity is ``not_before`` (default: now) to ``not_after`` or ``not_before + days``.
    Subject and authority key identifiers are added automatically.
    """
    subject_name = _as_name(subject)
    start = _utc(not_before or dt.datetime.now(dt.UTC))
    if not_after is None:
        if days is None or days <= 0:
            raise ValueError("give not_after or a positive number of days")
        end = start + dt.timedelta(days=days)
    else:
        end = _utc(not_after)
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    serial = serial_number if serial_number is not None else _random_serial()
    if not 0 < serial < 1 << 159:
        raise ValueError("serial numbers must be positive and at most 20 octets")
    ext = extensions or Extensions()
    if issuer is None:
        if signer.public_key() != public_key:
            raise InvalidKey("a self-signed certificate must be signed by the subject's own key")
        issuer_name, authority_ki = subject_name, key_identifier(public_key)
    else:
        if signer.public_key() != issuer.public_key():
            raise InvalidKey("the signing key does not belong to the issuer certificate")
        issuer_name = issuer.subject_name
        authority_ki = issuer.subject_key_identifier or key_identifier(issuer.public_key())
    ext_list = _extension_list(ext)
    ext_list.append(_ext("key_identifier", core.OctetString(key_identifier(public_key))))
    ext_list.append(_ext("authority_key_identifier",
                         x509.AuthorityKeyIdentifier({"key_identifier": authority_ki})))
    algorithm = signer.public_key().resolve_algorithm(signature_algorithm)
    tbs = x509.TbsCertificate({
        "version": "v3",
        "serial_number": serial,
        "signature": algids.signature_algorithm_id(algorithm),
        "issuer": issuer_name,
        "validity": {"not_before": _time(start), "not_after": _time(end)},
        "subject": subject_name,
        "subject_public_key_info": load(x509.PublicKeyInfo, public_key.to_der(), "public key"),
        "extensions": ext_list,
    })
    return Certificate(x509.Certificate.load(_sign_and_wrap(tbs, signer, algorithm)))


# ---------------------------------------------------------------------------------------------
# PKCS#10 certificate requests


class CertificateRequest:
    """A parsed PKCS#10 request."""

    def __init__(self, asn1_req: _csr.CertificationRequest) -> None:
        self._asn1 = asn1_req
        self._der: bytes = asn1_req.dump()

    @property
    def asn1(self) -> _csr.CertificationRequest:
        return self._asn1

    @property
    def der(self) -> bytes:
        return self._der

    def to_pem(self) -> bytes:
        return pem_encode("CERTIFICATE REQUEST", self._der)

    @property
    def subject_name(self) -> x509.Name:
        return self._asn1["certification_request_info"]["subject"]

    @property
    def subject(self) -> str:
        return format_name(self.subject_name)

    def public_key(self) -> PublicKey:
        return public_key_from_info(
            self._asn1["certification_request_info"]["subject_pk_info"])

    @property
    def extensions(self) -> Extensions:
        found: list[x509.Extension] = []
        for attribute in self._asn1["certification_request_info"]["attributes"]:
            if attribute["type"].native == "extension_request":
                for ext_set in attribute["values"]:
                    found.extend(ext_set)
        return _parse_extensions(found)

    def verify(self) -> None:
        """Check the proof of possession: raise InvalidSignature unless self-signed correctly."""
        verify_signed_bytes(self._asn1["certification_request_info"].dump(),
                            self._asn1["signature_algorithm"],
                            _signature_bits(self._asn1["signature"]), self.public_key())


@dataclass(frozen=True)
class UnsignedRequest:
    """A PKCS#10 request waiting for its proof-of-possession signature.

    For signers that cannot sign synchronously (a phone co-signing over the network): sign
    :attr:`to_be_signed` (for SM2: ``e = SM3(Z || to_be_signed)`` with the default ID) and
    pass the signature to :meth:`finish`.
    """

    info: _csr.CertificationRequestInfo
    public_key: PublicKey
    algorithm: SignatureAlgorithm

    @property
    def to_be_signed(self) -> bytes:
        return bytes(self.info.dump())

    def finish(self, signature: bytes) -> CertificateRequest:
        """Assemble the request; InvalidSignature if ``signature`` does not prove possession."""
        request = CertificateRequest(_csr.CertificationRequest({
            "certification_request_info": self.info,
            "signature_algorithm": algids.signature_algorithm_id(self.algorithm),
            "signature": signature,
        }))
        request.verify()
        return request


def prepare_csr(
    public_key: PublicKey,
    subject: x509.Name | str,
    extensions: Extensions | None = None,
    signature_algorithm: SignatureAlgorithm | None = None,
) -> UnsignedRequest:
    """The CertificationRequestInfo of a request for ``public_key``, to be signed separately."""
    attributes = []
    if extensions is not None:
        requested = _extension_list(extensions)
        if requested:
            attributes.append({"type": "extension_request", "values": [requested]})
    info = _csr.CertificationRequestInfo({
        "version": "v1",
        "subject": _as_name(subject),
        "subject_pk_info": load(x509.PublicKeyInfo, public_key.to_der(), "public key"),
        "attributes": attributes,
    })
    return UnsignedRequest(info, public_key, public_key.resolve_algorithm(signature_algorithm))


def build_csr(
    signer: Signer,
    subject: x509.Name | str,
    extensions: Extensions | None = None,
    signature_algorithm: SignatureAlgorithm | None = None,
) -> CertificateRequest:
    """A PKCS#10 request signed by ``signer`` (a private key or a two-party co-signer)."""
    unsigned = prepare_csr(signer.public_key(), subject, extensions, signature_algorithm)
    return unsigned.finish(signer.sign(unsigned.to_be_signed, unsigned.algorithm))


def load_csr(data: bytes) -> CertificateRequest:
    der = data
    if is_pem(data):
        blocks = [d for label, d in pem_blocks(data)
                  if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")]
        if not blocks:
            raise DecodeError("no CERTIFICATE REQUEST block found")
        der = blocks[0]
    return CertificateRequest(load(_csr.CertificationRequest, der, "certificate request"))


# ---------------------------------------------------------------------------------------------
# CRLs


@dataclass(frozen=True)
class RevokedCertificate:
    serial_number: int
    revocation_date: dt.datetime
    reason: str | None = None  # asn1crypto CRLReason names: key_compromise, superseded, ...


class CRL:
    """A parsed certificate revocation list."""

    def __init__(self, asn1_crl: _crl.CertificateList) -> None:
        self._asn1 = asn1_crl
        self._der: bytes = asn1_crl.dump()
        self._revoked: dict[int, RevokedCertificate] | None = None

    @property
    def asn1(self) -> _crl.CertificateList:
        return self._asn1

    @property
    def der(self) -> bytes:
        return self._der

    def to_pem(self) -> bytes:
        return pem_encode("X509 CRL", self._der)

    @property
    def issuer(self) -> str:
        return format_name(self._asn1["tbs_cert_list"]["issuer"])

    @property
    def issuer_name(self) -> x509.Name:
        return self._asn1["tbs_cert_list"]["issuer"]

    @property
    def this_update(self) -> dt.datetime:
        return self._asn1["tbs_cert_list"]["this_update"].native  # type: ignore[no-any-return]

    @property
    def next_update(self) -> dt.datetime | None:
        return self._asn1["tbs_cert_list"]["next_update"].native  # type: ignore[no-any-return]

    @property
    def crl_number(self) -> int | None:
        value = self._asn1.crl_number_value
        return int(value.native) if value is not None else None

    @property
    def delta_crl_indicator(self) -> int | None:
        value = self._asn1.delta_crl_indicator_value
        return int(value.native) if value is not None else None

    def revoked(self) -> dict[int, RevokedCertificate]:
        if self._revoked is None:
            entries = {}
            for entry in self._asn1["tbs_cert_list"]["revoked_certificates"]:
                reason = entry.crl_reason_value
                serial = int(entry["user_certificate"].native)
                entries[serial] = RevokedCertificate(
                    serial, entry["revocation_date"].native,
                    reason.native if reason is not None else None)
            self._revoked = entries
        return self._revoked

    def is_revoked(self, serial_number: int) -> RevokedCertificate | None:
        return self.revoked().get(serial_number)

    def verify_signature(self, issuer_public_key: PublicKey) -> None:
        verify_signed_bytes(self._asn1["tbs_cert_list"].dump(),
                            self._asn1["signature_algorithm"],
                            _signature_bits(self._asn1["signature"]), issuer_public_key)


def build_crl(
    *,
    issuer: Certificate,
    signer: Signer,
    revoked: Sequence[RevokedCertificate] = (),
    crl_number: int,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    validity: dt.timedelta = dt.timedelta(days=1),
    delta_base: int | None = None,
    freshest_crl_urls: Sequence[str] = (),
    signature_algorithm: SignatureAlgorithm | None = None,
) -> CRL:
    """A v2 CRL (``delta_base`` set: a delta CRL over the base CRL with that number).  A full
    CRL names where its delta CRLs are with ``freshest_crl_urls`` (relying parties such as
    OpenSSL consult deltas only when the certificate or the base CRL says so)."""
    if signer.public_key() != issuer.public_key():
        raise InvalidKey("the signing key does not belong to the CRL issuer")
    start = _utc(this_update or dt.datetime.now(dt.UTC))
    end = _utc(next_update) if next_update else start + validity
    entries = []
    for item in sorted(revoked, key=lambda r: r.serial_number):
        entry: dict[str, Any] = {"user_certificate": item.serial_number,
                                 "revocation_date": _time(item.revocation_date)}
        if item.reason:
            entry["crl_entry_extensions"] = [{"extn_id": "crl_reason",
                                              "extn_value": item.reason}]
        entries.append(entry)
    authority_ki = issuer.subject_key_identifier or key_identifier(issuer.public_key())
    crl_extensions: list[dict[str, Any]] = [
        {"extn_id": "crl_number", "extn_value": crl_number},
        {"extn_id": "authority_key_identifier",
         "extn_value": x509.AuthorityKeyIdentifier({"key_identifier": authority_ki})},
    ]
    if delta_base is not None:
        crl_extensions.append({"extn_id": "delta_crl_indicator", "extn_value": delta_base,
                               "critical": True})
    elif freshest_crl_urls:
        crl_extensions.append({"extn_id": "freshest_crl",
                               "extn_value": _distribution_points(freshest_crl_urls)})
    algorithm = signer.public_key().resolve_algorithm(signature_algorithm)
    tbs = _crl.TbsCertList({
        "version": "v2",
        "signature": algids.signature_algorithm_id(algorithm),
        "issuer": issuer.subject_name,
        "this_update": _time(start),
        "next_update": _time(end),
        "revoked_certificates": entries or None,
        "crl_extensions": crl_extensions,
    })
    return CRL(_crl.CertificateList.load(_sign_and_wrap(tbs, signer, algorithm)))


def load_crl(data: bytes) -> CRL:
    der = data
    if is_pem(data):
        blocks = [d for label, d in pem_blocks(data) if label == "X509 CRL"]
        if not blocks:
            raise DecodeError("no X509 CRL block found")
        der = blocks[0]
    return CRL(load(_crl.CertificateList, der, "CRL"))

