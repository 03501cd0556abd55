"""signcore.x509: names, extensions, key identifiers, serials, encodings, CSRs, CRLs, and
hostile input (tampered signatures, malformed DER, off-curve keys).

The hierarchies come from the declared test PKI (``tests.support.pki``); certificates a test
needs on top of it are issued here with fixed validity times.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest
from asn1crypto import core
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signcore import ec
from signcore.algorithms import OID_SM2_CURVE, SignatureAlgorithm
from signcore.errors import DecodeError, InvalidKey, InvalidSignature, UnsupportedAlgorithm
from signcore.keys import load_public_key
from signcore.x509 import (
    CRL,
    Certificate,
    CertificateRequest,
    Extensions,
    RevokedCertificate,
    build_crl,
    build_csr,
    format_name,
    issue_certificate,
    key_identifier,
    load_certificate,
    load_certificates,
    load_crl,
    load_csr,
    parse_name,
)
from tests.support.pki import DOCTOR_SUBJECT, KEY_TYPES, POLICY_OID, URLS, TestPKI, cached_pki

T0 = dt.datetime(2030, 3, 1, 8, 0, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2031, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def _leaf(pki: TestPKI, extensions: Extensions | None = None, subject: str = "CN=测试,C=CN",
          **kwargs: object) -> Certificate:
    """A leaf under ``pki``'s issuing CA for the doctor's key, valid T0..T1 unless overridden."""
    args: dict[str, object] = {
        "subject": subject, "public_key": pki.doctor_key.public_key(),
        "signer": pki.issuing_key, "issuer": pki.issuing, "not_before": T0, "not_after": T1,
        "extensions": extensions, **kwargs,
    }
    return issue_certificate(**args)  # type: ignore[arg-type]


def _rdn_types(name: asn1_x509.Name) -> list[tuple[str, str]]:
    """(attribute type, string type) of each RDN, in encoding order."""
    return [(rdn[0]["type"].native, getattr(rdn[0]["value"], "name", rdn[0]["value"].tag))
            for rdn in name.chosen]


# --------------------------------------------------------------------------------------------
# Names


def test_rfc4514_order_is_reversed_in_the_encoding() -> None:
    name = parse_name(DOCTOR_SUBJECT)
    assert _rdn_types(name) == [
        ("country_name", "printable_string"),
        ("organization_name", "utf8_string"),
        ("organizational_unit_name", "utf8_string"),
        ("common_name", "utf8_string"),
    ]
    assert [rdn[0]["value"].native for rdn in name.chosen] == ["CN", "测试医院", "内科", "张三"]
    # UTF8String holds the UTF-8 bytes; the country is a PrintableString (tag 0x13).
    der = name.dump()
    assert "张三".encode() in der
    assert b"\x13\x02CN" in der
    assert format_name(name) == DOCTOR_SUBJECT


def test_slash_form_is_in_encoding_order() -> None:
    slash = parse_name("/C=CN/O=测试医院/OU=内科/CN=张三")
    assert slash.dump() == parse_name(DOCTOR_SUBJECT).dump()
    assert format_name(slash) == DOCTOR_SUBJECT


def test_attribute_aliases_and_oids() -> None:
    name = parse_name("2.5.4.3=foo,emailAddress=a@b.test,serialNumber=110101199003077777,"
                      "ST=北京,L=海淀,STREET=x路1号,title=主任医师,GN=三,SN=张,DC=test,UID=u1,"
                      "postalCode=100000,organizationIdentifier=NTRCN-1234")
    types = [t for t, _ in _rdn_types(name)]
    assert types[-1] == "common_name"
    assert "email_address" in types and "domain_component" in types
    assert dict(_rdn_types(name))["serial_number"] == "printable_string"
    assert format_name(parse_name(format_name(name))) == format_name(name)
    assert format_name(name).startswith("CN=foo,emailAddress=a@b.test,serialNumber=")


@pytest.mark.parametrize(("text", "values", "formatted"), [
    ("CN=a\\,b,O=x", ["x", "a,b"], "CN=a\\,b,O=x"),
    ("CN=a\\+b", ["a+b"], "CN=a\\+b"),
    ("CN=\\#x", ["#x"], "CN=\\#x"),
    ("CN=x#y", ["x#y"], "CN=x#y"),
    ("CN=x=y", ["x=y"], "CN=x=y"),
    ("CN=a\\\\b", ["a\\b"], "CN=a\\\\b"),
    ("CN=a;b", ["a;b"], "CN=a\\;b"),
    ('CN="q"<>', ['"q"<>'], 'CN=\\"q\\"\\<\\>'),
    ("CN=a/b", ["a/b"], "CN=a/b"),
    ("/CN=a\\/b", ["a/b"], "CN=a/b"),
    ("CN= padded , O = x ", ["x", "padded"], "CN=padded,O=x"),
    ("CN=\\ kept\\ ", [" kept "], "CN=\\ kept\\ "),
    ("CN=\\ ", [" "], "CN=\\ "),
    # RFC 4514 hex pairs, as `openssl x509 -subject -nameopt RFC2253` prints non-ASCII.
    ("CN=\\E5\\BC\\A0\\E4\\B8\\89,C=CN", ["CN", "张三"], "CN=张三,C=CN"),
    ("CN=\\41b", ["Ab"], "CN=Ab"),
    ("CN=a\\09\\0A", ["a\t\n"], "CN=a\\09\\0A"),
    ("CN=张三\\E3\\80\\80", ["张三\u3000"], "CN=张三\\E3\\80\\80"),
])
def test_escaping(text: str, values: list[str], formatted: str) -> None:
    name = parse_name(text)
    assert [rdn[0]["value"].native for rdn in name.chosen] == values
    assert format_name(name) == formatted
    assert parse_name(formatted).dump() == name.dump()


def test_slash_form_has_no_hex_pairs() -> None:
    # OpenSSL's -subj form: a backslash escapes the next character only.
    name = parse_name("/CN=\\E5")
    assert name.native == {"common_name": "E5"}


@pytest.mark.parametrize("text", [
    "", "   ", "CN", "CN=", "CN=  ", "XX=a", "C=china", "C=cn", "C=C", "CN=a\\", "EMAIL=张@x.test",
    "CN=" + "a" * 257, ",", "CN=a,,O=b", "/", "/CN=a/", "CN=\\E5\\BC", "serialNumber=张三",
    "serialNumber=a_b", "CN=a,=b", "3.1=x",
])
def test_bad_names_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_name(text)


_ATTRS = st.sampled_from(["common_name", "organization_name", "organizational_unit_name",
                          "locality_name", "state_or_province_name", "title"])
_VALUES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(st.lists(st.tuples(_ATTRS, _VALUES), min_size=1, max_size=6))
@settings(max_examples=300)
def test_format_then_parse_is_identity(attributes: list[tuple[str, str]]) -> None:
    name = asn1_x509.Name(name="", value=asn1_x509.RDNSequence([
        asn1_x509.RelativeDistinguishedName([asn1_x509.NameTypeAndValue({
            "type": attr, "value": asn1_x509.DirectoryString(name="utf8_string", value=value)})])
        for attr, value in attributes]))
    text = format_name(name)
    assert "\n" not in text and "\r" not in text
    assert parse_name(text).dump() == name.dump()


# --------------------------------------------------------------------------------------------
# Extensions


def test_every_extension_field_round_trips(pki: TestPKI) -> None:
    extra = asn1_x509.Extension({"extn_id": "2.999.3.1", "critical": False,
                                 "extn_value": core.UTF8String("private").dump()})
    wanted = Extensions(
        key_usage=frozenset({"digital_signature", "non_repudiation", "key_encipherment",
                             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                             "encipher_only", "decipher_only"}),
        key_usage_critical=False,
        extended_key_usage=("server_auth", "client_auth", "code_signing", "email_protection",
                            "time_stamping", "ocsp_signing", "2.999.2.1"),
        extended_key_usage_critical=True,
        ca=True, path_length=3,
        dns_names=("a.test", "*.b.test"), emails=("x@y.test",),
        uris=("https://u.test/p?q=1",), ip_addresses=("127.0.0.1", "::1", "2001:db8::5"),
        crl_urls=("http://c1.test/a.crl", "ldap://c2.test/cn=x"),
        ocsp_urls=("http://o.test",), ca_issuers_urls=("http://i.test/a.cer", "http://i.test/b"),
        policies=(POLICY_OID, "2.5.29.32.0"), extra=(extra,),
    )
    cert = load_certificate(_leaf(pki, wanted).der)
    got = cert.extensions
    assert dataclasses.replace(got, extra=()) == dataclasses.replace(wanted, extra=())
    assert [e.dump() for e in got.extra] == [extra.dump()]
    assert cert.critical_extension_names() == {"basic_constraints", "extended_key_usage"}
    assert cert.is_ca
    assert got.has_san()


def test_defaults_and_absent_extensions(pki: TestPKI) -> None:
    cert = _leaf(pki)
    assert cert.extensions == Extensions()  # only SKI/AKI, which are not reported as extensions
    assert not cert.is_ca
    assert cert.critical_extension_names() == set()
    not_ca = _leaf(pki, Extensions(ca=False, path_length=5))
    assert not_ca.extensions.ca is False
    assert not_ca.extensions.path_length is None  # pathLen only on a CA
    assert not_ca.critical_extension_names() == {"basic_constraints"}


def test_declared_pki_extensions(pki: TestPKI) -> None:
    root, issuing = pki.root.extensions, pki.issuing.extensions
    assert (root.ca, root.path_length, root.key_usage) == (True, 1, {"key_cert_sign", "crl_sign"})
    assert (issuing.ca, issuing.path_length) == (True, 0)
    doctor = pki.doctor.extensions
    assert doctor.key_usage == {"digital_signature", "non_repudiation"}
    assert doctor.extended_key_usage == ("email_protection",)
    assert (doctor.crl_urls, doctor.ocsp_urls) == ((URLS["crl"],), (URLS["ocsp"],))
    assert pki.doctor.subject == DOCTOR_SUBJECT
    tsa = pki.tsa
    assert tsa.extensions.extended_key_usage == ("time_stamping",)
    assert "extended_key_usage" in tsa.critical_extension_names()
    assert pki.tls.extensions.dns_names == ("localhost",)
    assert pki.tls.extensions.ip_addresses == ("127.0.0.1",)


@pytest.mark.parametrize("extensions", [
    Extensions(key_usage=frozenset({"sign_everything"})),
    Extensions(ip_addresses=("300.1.1.1",)),
    Extensions(ip_addresses=("localhost",)),
])
def test_bad_extensions_are_refused(extensions: Extensions) -> None:
    pki = cached_pki("sm2")
    with pytest.raises(ValueError):
        _leaf(pki, extensions)


# --------------------------------------------------------------------------------------------
# Key identifiers, serial numbers, validity, encodings


def test_key_identifiers_chain(pki: TestPKI) -> None:
    for cert, key in ((pki.root, pki.root_key), (pki.issuing, pki.issuing_key),
                      (pki.doctor, pki.doctor_key)):
        spki = asn1_keys.PublicKeyInfo.load(key.public_key().to_der())
        expected = hashlib.sha1(bytes(spki["public_key"]), usedforsecurity=False).digest()
        assert key_identifier(key.public_key()) == expected
        assert cert.subject_key_identifier == expected
    assert pki.root.authority_key_identifier == pki.root.subject_key_identifier
    assert pki.issuing.authority_key_identifier == pki.root.subject_key_identifier
    for role in ("doctor", "tsa", "tls", "expired", "revoked"):
        assert pki.certificate(role).authority_key_identifier == pki.issuing.subject_key_identifier
    assert pki.root.is_self_issued and not pki.issuing.is_self_issued


def test_serial_numbers_are_random_positive_and_at_most_20_octets(pki: TestPKI) -> None:
    serials = set()
    for _ in range(20):
        cert = _leaf(pki)
        content = cert.tbs["serial_number"].contents
        assert len(content) <= 20
        assert content[0] < 0x80  # positive
        assert cert.serial_number > 0
        assert cert.serial_number.bit_length() >= 64  # at least 64 random bits (CA/B BR)
        serials.add(cert.serial_number)
    assert len(serials) == 20


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, (1 << 159) - 1])
def test_explicit_serial_number(serial: int) -> None:
    pki = cached_pki("ecdsa-p256")
    cert = load_certificate(_leaf(pki, serial_number=serial).der)
    assert cert.serial_number == serial
    assert len(cert.tbs["serial_number"].contents) <= 20


@pytest.mark.parametrize("serial", [0, -1, 1 << 159])
def test_bad_serial_numbers_are_refused(serial: int) -> None:
    with pytest.raises(ValueError, match="serial"):
        _leaf(cached_pki("ecdsa-p256"), serial_number=serial)


def test_validity_encoding_and_checks() -> None:
    pki = cached_pki("ecdsa-p256")
    cert = _leaf(pki, not_before=dt.datetime(2049, 12, 31, 23, 59, 59, 999, tzinfo=dt.UTC),
                 not_after=dt.datetime(2050, 1, 1, tzinfo=dt.UTC))
    validity = cert.tbs["validity"]
    # RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; no fractions.
    assert (validity["not_before"].name, validity["not_after"].name) == ("utc_time",
                                                                          "general_time")
    assert cert.not_before == dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    assert cert.not_after == dt.datetime(2050, 1, 1, tzinfo=dt.UTC)
    assert cert.is_valid_at(cert.not_before) and cert.is_valid_at(cert.not_after)
    assert not cert.is_valid_at(cert.not_after + dt.timedelta(seconds=1))
    by_days = _leaf(pki, not_after=None, days=30)
    assert by_days.not_after - by_days.not_before == dt.timedelta(days=30)
    with pytest.raises(ValueError, match="naive"):
        _leaf(pki, not_before=dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="later"):
        _leaf(pki, not_before=T1, not_after=T0)
    with pytest.raises(ValueError, match="days"):
        _leaf(pki, not_after=None)


def test_signer_must_match_issuer(pki: TestPKI) -> None:
    with pytest.raises(InvalidKey):
        _leaf(pki, signer=pki.root_key)  # issuer=issuing, key of the root
    with pytest.raises(InvalidKey):
        issue_certificate(subject="CN=self", public_key=pki.doctor_key.public_key(),
                          signer=pki.issuing_key, days=1)  # self-signed with a foreign key
    wrong_type = "rsa2048" if pki.key_type != "rsa2048" else "sm2"
    with pytest.raises(UnsupportedAlgorithm):
        _leaf(pki, signature_algorithm=SignatureAlgorithm.default_for(
            cached_pki(wrong_type).root_key.public_key().key_type))


@pytest.mark.parametrize("algorithm", [SignatureAlgorithm.RSA_PSS_SHA256,
                                       SignatureAlgorithm.RSA_PKCS1_SHA384,
                                       SignatureAlgorithm.RSA_PKCS1_SHA512])
def test_rsa_signature_algorithms(algorithm: SignatureAlgorithm) -> None:
    pki = cached_pki("rsa2048")
    cert = load_certificate(_leaf(pki, signature_algorithm=algorithm).der)
    assert cert.signature_algorithm is algorithm
    cert.verify_signature(pki.issuing.public_key())


def test_default_signature_algorithms() -> None:
    assert cached_pki("sm2").doctor.signature_algorithm is SignatureAlgorithm.SM2_SM3
    assert cached_pki("sm2").doctor.asn1["signature_algorithm"]["algorithm"].dotted == \
        "1.2.156.10197.1.501"
    assert cached_pki("rsa2048").doctor.signature_algorithm is SignatureAlgorithm.RSA_PKCS1_SHA256
    assert cached_pki("ecdsa-p256").doctor.signature_algorithm is SignatureAlgorithm.ECDSA_SHA256


def test_pem_der_round_trips(pki: TestPKI) -> None:
    for cert in (pki.root, pki.doctor):
        assert load_certificate(cert.der) == cert
        assert load_certificate(cert.to_pem()) == cert
        assert load_certificate(cert.to_pem()).der == cert.der
        assert cert.to_pem().startswith(b"-----BEGIN CERTIFICATE-----\n")
    bundle = pki.doctor.to_pem() + b"junk between blocks\n" + pki.issuing.to_pem()
    assert load_certificates(bundle) == [pki.doctor, pki.issuing]
    assert load_certificates(pki.doctor.der) == [pki.doctor]
    with pytest.raises(DecodeError, match="one certificate"):
        load_certificate(bundle)
    assert load_public_key(pki.doctor.public_key().to_pem()) == pki.doctor_key.public_key()
    assert pki.doctor.public_key() == pki.doctor_key.public_key()
    assert pki.doctor.fingerprint() == hashlib.sha256(pki.doctor.der).digest()
    assert len(pki.doctor.fingerprint("sm3")) == 32
    assert hash(load_certificate(pki.doctor.der)) == hash(pki.doctor)
    assert pki.doctor != pki.tsa


# --------------------------------------------------------------------------------------------
# Signatures: tampering


def test_chain_signatures_verify(pki: TestPKI) -> None:
    pki.root.verify_signature(pki.root.public_key())
    pki.issuing.verify_signature(pki.root.public_key())
    pki.doctor.verify_signature(pki.issuing.public_key())
    with pytest.raises(InvalidSignature):
        pki.doctor.verify_signature(pki.root.public_key())
    with pytest.raises(InvalidSignature):
        pki.doctor.verify_signature(cached_pki(_other(pki.key_type)).issuing.public_key())


def _other(key_type: str) -> str:
    return KEY_TYPES[(KEY_TYPES.index(key_type) + 1) % len(KEY_TYPES)]


def _tbs_span(cert: Certificate) -> tuple[int, int]:
    tbs = cert.tbs.dump()
    start = cert.der.index(tbs)
    return start, start + len(tbs)


@pytest.mark.parametrize("key_type", KEY_TYPES)
@given(data=st.data())
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_tampered_tbs_never_verifies(key_type: str, data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    cert = pki.doctor
    start, end = _tbs_span(cert)
    index = data.draw(st.integers(start, end - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    mutated = bytearray(cert.der)
    mutated[index] ^= mask
    try:
        parsed = load_certificate(bytes(mutated))
    except DecodeError:
        return
    with pytest.raises(InvalidSignature):
        parsed.verify_signature(pki.issuing.public_key())


@pytest.mark.parametrize("key_type", KEY_TYPES)
@given(data=st.data())
@settings(max_examples=60)
def test_any_tampered_byte_is_decode_error_or_bad_signature(key_type: str,
                                                            data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    der = pki.tsa.der
    index = data.draw(st.integers(0, len(der) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    mutated = bytearray(der)
    mutated[index] ^= mask
    try:
        parsed = load_certificate(bytes(mutated))
    except DecodeError:
        return
    with pytest.raises(InvalidSignature):
        parsed.verify_signature(pki.issuing.public_key())


def test_swapped_signature_does_not_verify(pki: TestPKI) -> None:
    # A valid signature by the right key, over a different TBS.
    forged = asn1_x509.Certificate({
        "tbs_certificate": pki.doctor.tbs.copy(),
        "signature_algorithm": pki.tsa.asn1["signature_algorithm"].copy(),
        "signature_value": pki.tsa.asn1["signature_value"].copy(),
    })
    with pytest.raises(InvalidSignature):
        load_certificate(forged.dump()).verify_signature(pki.issuing.public_key())


# --------------------------------------------------------------------------------------------
# Malformed input: always DecodeError


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\x30", b"\x30\x00", b"\x30\x80\x00\x00", b"\x30\x84\xff\xff\xff\xff",
    b"\x02\x01\x01", b"not a certificate at all", b"\xff" * 64,
    b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
    b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
    b"-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\nMAA=\n-----END CERTIFICATE-----\n",
])
def test_garbage_certificates(data: bytes) -> None:
    with pytest.raises(DecodeError):
        load_certificate(data)
    with pytest.raises(DecodeError):
        load_csr(data)
    with pytest.raises(DecodeError):
        load_crl(data)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_every_truncation_is_decode_error(key_type: str) -> None:
    der = cached_pki(key_type).doctor.der
    for length in range(len(der)):
        with pytest.raises(DecodeError):
            load_certificate(der[:length])
    with pytest.raises(DecodeError):
        load_certificate(der + b"\x00")
    with pytest.raises(DecodeError):
        load_certificate(der + der)


def test_oversize_input_is_refused_before_parsing() -> None:
    der = cached_pki("sm2").doctor.der
    huge = der + b"\x00" * (16 * 1024 * 1024)
    with pytest.raises(DecodeError, match="limit"):
        load_certificate(huge)
    with pytest.raises(DecodeError, match="limit"):
        load_crl(huge)
    with pytest.raises(DecodeError, match="limit"):
        load_csr(huge)


def test_wrong_structure_types_are_decode_errors() -> None:
    pki = cached_pki("sm2")
    csr = build_csr(pki.doctor_key, DOCTOR_SUBJECT)
    with pytest.raises(DecodeError):
        load_certificate(pki.crl.der)
    with pytest.raises(DecodeError):
        load_certificate(csr.der)
    with pytest.raises(DecodeError):
        load_crl(pki.doctor.der)
    with pytest.raises(DecodeError):
        load_csr(pki.doctor.der)
    with pytest.raises(DecodeError):
        load_certificate(pki.crl.to_pem())  # PEM, but no CERTIFICATE block
    with pytest.raises(DecodeError):
        load_crl(pki.doctor.to_pem())
    with pytest.raises(DecodeError):
        load_csr(pki.doctor.to_pem())


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_random_bytes_are_decode_errors(data: bytes) -> None:
    for loader in (load_certificate, load_csr, load_crl):
        try:
            loader(data)
        except DecodeError:
            continue
        raise AssertionError(f"{loader.__name__} accepted random bytes {data.hex()}")


@pytest.mark.parametrize("key_type", KEY_TYPES)
@given(data=st.data())
@settings(max_examples=100)
def test_mutated_certificates_fail_cleanly_everywhere(key_type: str, data: st.DataObject) -> None:
    """Whatever a mutation does, loading and reading every property raises only signcore's
    own errors (DecodeError, InvalidKey, UnsupportedAlgorithm), never an asn1crypto one."""
    der = bytearray(cached_pki(key_type).doctor.der)
    for _ in range(data.draw(st.integers(1, 3), label="count")):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        cert = load_certificate(bytes(der))
        _ = (cert.subject, cert.issuer, cert.serial_number, cert.not_before, cert.not_after,
             cert.extensions, cert.is_ca, cert.subject_key_identifier,
             cert.authority_key_identifier, cert.critical_extension_names())
        cert.public_key()
        _ = cert.signature_algorithm
    except (DecodeError, InvalidKey, UnsupportedAlgorithm):
        pass


def test_unknown_extension_with_malformed_value_lands_in_extra() -> None:
    """An extension signcore does not know, whose value is not DER: asn1crypto parses such a
    value only on demand, so reading ``extensions`` must not try (it used to leak ValueError)."""
    pki = cached_pki("ecdsa-p256")
    bad = asn1_x509.Extension({"extn_id": "2.999.9.9", "critical": False,
                               "extn_value": b"\x04\x05\x01"})  # OCTET STRING claiming 5 bytes
    cert = load_certificate(_leaf(pki, Extensions(extra=(bad,))).der)
    assert [e["extn_id"].dotted for e in cert.extensions.extra] == ["2.999.9.9"]


def test_distribution_point_without_a_name() -> None:
    """RFC 5280 allows a DistributionPoint with only cRLIssuer; it must not crash the reader."""
    pki = cached_pki("ecdsa-p256")
    dp = asn1_x509.Extension({"extn_id": "crl_distribution_points", "critical": False,
                              "extn_value": asn1_x509.CRLDistributionPoints([{
                                  "crl_issuer": [asn1_x509.GeneralName(
                                      name="uniform_resource_identifier",
                                      value="http://issuer.test/")]}])})
    cert = load_certificate(_leaf(pki, Extensions(extra=(dp,))).der)
    assert cert.extensions.crl_urls == ()


def _with_spki(pki: TestPKI, spki: asn1_keys.PublicKeyInfo) -> bytes:
    """The doctor's certificate with another SubjectPublicKeyInfo, correctly re-signed."""
    tbs = pki.doctor.tbs.copy()
    tbs["subject_public_key_info"] = spki
    signature = pki.issuing_key.sign(tbs.dump())
    return asn1_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": pki.doctor.asn1["signature_algorithm"],
        "signature_value": signature}).dump()


def test_off_curve_sm2_point_parses_but_public_key_is_invalid() -> None:
    pki = cached_pki("sm2")
    point = bytes(asn1_keys.PublicKeyInfo.load(pki.doctor_key.public_key().to_der())["public_key"])
    assert len(point) == 65 and point[0] == 4
    y = int.from_bytes(point[33:], "big")
    off_curve = point[:33] + ((y + 1) % ec.P).to_bytes(32, "big")
    spki = asn1_keys.PublicKeyInfo({
        "algorithm": {"algorithm": "ec", "parameters": asn1_keys.ECDomainParameters(
            name="named", value=OID_SM2_CURVE)},
        "public_key": off_curve,
    })
    cert = load_certificate(_with_spki(pki, spki))
    assert cert.subject == DOCTOR_SUBJECT
    cert.verify_signature(pki.issuing.public_key())  # the CA really signed this
    with pytest.raises(InvalidKey):
        cert.public_key()
    with pytest.raises(InvalidKey):
        cert.public_key()  # still refused on a second call (no half-built cache)


def test_unsupported_key_type_in_certificate() -> None:
    pki = cached_pki("rsa2048")
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert = load_certificate(_with_spki(pki, asn1_keys.PublicKeyInfo.load(raw)))
    with pytest.raises(UnsupportedAlgorithm):
        cert.public_key()


def test_unknown_signature_algorithm_is_invalid_signature() -> None:
    pki = cached_pki("rsa2048")
    cert = asn1_x509.Certificate({
        "tbs_certificate": pki.doctor.tbs.copy(),
        "signature_algorithm": {"algorithm": "1.3.101.112"},  # Ed25519
        "signature_value": pki.doctor.asn1["signature_value"].copy(),
    })
    parsed = load_certificate(cert.dump())
    with pytest.raises(UnsupportedAlgorithm):
        _ = parsed.signature_algorithm
    with pytest.raises(InvalidSignature):
        parsed.verify_signature(pki.issuing.public_key())


# --------------------------------------------------------------------------------------------
# CSRs


_CSR_EXTENSIONS = Extensions(key_usage=frozenset({"digital_signature", "non_repudiation"}),
                             extended_key_usage=("email_protection",),
                             emails=("zhangsan@hospital.medsign.test",), dns_names=("a.test",))


def test_csr_round_trip(pki: TestPKI) -> None:
    csr = build_csr(pki.doctor_key, DOCTOR_SUBJECT, _CSR_EXTENSIONS)
    for loaded in (load_csr(csr.der), load_csr(csr.to_pem())):
        assert isinstance(loaded, CertificateRequest)
        assert loaded.der == csr.der
        assert loaded.subject == DOCTOR_SUBJECT
        assert loaded.public_key() == pki.doctor_key.public_key()
        assert loaded.extensions == _CSR_EXTENSIONS
        loaded.verify()
    assert csr.to_pem().startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")
    assert build_csr(pki.doctor_key, "CN=x").extensions == Extensions()
    assert build_csr(pki.doctor_key, "CN=x", Extensions()).asn1[
        "certification_request_info"]["attributes"].native == []


def test_tampered_csr_fails_verification(pki: TestPKI) -> None:
    csr = build_csr(pki.doctor_key, DOCTOR_SUBJECT, _CSR_EXTENSIONS)
    # Same structure, another subject: a proof of possession for a name it never signed.
    info = csr.asn1["certification_request_info"].copy()
    info["subject"] = parse_name("CN=李四,O=测试医院,C=CN")
    forged = csr.asn1.copy()
    forged["certification_request_info"] = info
    with pytest.raises(InvalidSignature):
        load_csr(forged.dump()).verify()
    # Another key in the request, signature by the original key.
    info = csr.asn1["certification_request_info"].copy()
    info["subject_pk_info"] = asn1_keys.PublicKeyInfo.load(pki.tsa_key.public_key().to_der())
    forged = csr.asn1.copy()
    forged["certification_request_info"] = info
    with pytest.raises(InvalidSignature):
        load_csr(forged.dump()).verify()


@pytest.mark.parametrize("key_type", KEY_TYPES)
@given(data=st.data())
@settings(max_examples=40)
def test_csr_byte_flips_never_verify(key_type: str, data: st.DataObject) -> None:
    csr = build_csr_cached(key_type)
    der = bytearray(csr.der)
    der[data.draw(st.integers(0, len(der) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        loaded = load_csr(bytes(der))
        loaded.verify()
    except (DecodeError, InvalidSignature, InvalidKey, UnsupportedAlgorithm):
        return
    raise AssertionError("a tampered CSR verified")


_CSR_CACHE: dict[str, CertificateRequest] = {}


def build_csr_cached(key_type: str) -> CertificateRequest:
    if key_type not in _CSR_CACHE:
        _CSR_CACHE[key_type] = build_csr(cached_pki(key_type).doctor_key, DOCTOR_SUBJECT,
                                         _CSR_EXTENSIONS)
    return _CSR_CACHE[key_type]


def test_csr_with_explicit_algorithm() -> None:
    key = cached_pki("rsa2048").doctor_key
    csr = build_csr(key, "CN=pss", signature_algorithm=SignatureAlgorithm.RSA_PSS_SHA256)
    load_csr(csr.der).verify()
    assert csr.asn1["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    with pytest.raises(UnsupportedAlgorithm):
        build_csr(key, "CN=x", signature_algorithm=SignatureAlgorithm.SM2_SM3)


# --------------------------------------------------------------------------------------------
# CRLs


def test_declared_crl(pki: TestPKI) -> None:
    crl = load_crl(pki.crl.to_pem())
    assert isinstance(crl, CRL)
    assert crl.der == pki.crl.der
    assert crl.crl_number == 1
    assert crl.delta_crl_indicator is None
    assert crl.issuer == pki.issuing.subject
    assert crl.issuer_name == pki.issuing.subject_name
    assert crl.this_update == pki.now - dt.timedelta(hours=1)
    assert crl.next_update == pki.now + dt.timedelta(days=7)
    entry = crl.is_revoked(pki.revoked.serial_number)
    assert entry == RevokedCertificate(pki.revoked.serial_number,
                                       pki.now - dt.timedelta(hours=2), "key_compromise")
    assert crl.is_revoked(pki.doctor.serial_number) is None
    assert list(crl.revoked()) == [pki.revoked.serial_number]
    crl.verify_signature(pki.issuing.public_key())
    with pytest.raises(InvalidSignature):
        crl.verify_signature(pki.root.public_key())
    aki = crl.asn1.authority_key_identifier
    assert aki is not None and bytes(aki) == pki.issuing.subject_key_identifier
    assert crl.to_pem().startswith(b"-----BEGIN X509 CRL-----\n")


def test_crl_build_options(pki: TestPKI) -> None:
    revoked = [
        RevokedCertificate(300, T0, "superseded"),
        RevokedCertificate(5, T0 - dt.timedelta(days=1)),
        RevokedCertificate((1 << 159) - 1, T0, "cessation_of_operation"),
    ]
    crl = load_crl(build_crl(issuer=pki.issuing, signer=pki.issuing_key, revoked=revoked,
                             crl_number=42, this_update=T0, validity=dt.timedelta(hours=6),
                             delta_base=40).der)
    assert crl.crl_number == 42
    assert crl.delta_crl_indicator == 40
    assert crl.this_update == T0 and crl.next_update == T0 + dt.timedelta(hours=6)
    assert list(crl.revoked()) == [5, 300, (1 << 159) - 1]  # sorted by serial
    assert crl.is_revoked(5) == RevokedCertificate(5, T0 - dt.timedelta(days=1), None)
    assert crl.is_revoked(300).reason == "superseded"  # type: ignore[union-attr]
    delta = [e for e in crl.asn1["tbs_cert_list"]["crl_extensions"]
             if e["extn_id"].native == "delta_crl_indicator"]
    assert delta[0]["critical"].native is True
    crl.verify_signature(pki.issuing.public_key())

    empty = load_crl(build_crl(issuer=pki.root, signer=pki.root_key, crl_number=1,
                               this_update=T0, next_update=T1).der)
    assert empty.revoked() == {} and empty.is_revoked(5) is None
    assert empty.next_update == T1
    empty.verify_signature(pki.root.public_key())
    with pytest.raises(InvalidKey):
        build_crl(issuer=pki.issuing, signer=pki.root_key, crl_number=1)


@pytest.mark.parametrize("key_type", KEY_TYPES)
@given(data=st.data())
@settings(max_examples=40)
def test_crl_byte_flips_never_verify(key_type: str, data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    der = bytearray(pki.crl.der)
    der[data.draw(st.integers(0, len(der) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        crl = load_crl(bytes(der))
    except DecodeError:
        return
    assume(bytes(der) != pki.crl.der)
    with pytest.raises(InvalidSignature):
        crl.verify_signature(pki.issuing.public_key())


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_signature_bit_string_with_unused_bits_is_refused(key_type: str) -> None:
    """asn1crypto drops the unused-bits octet of a BIT STRING; a certificate whose signature
    claims unused bits must not verify (the encoding would otherwise be malleable)."""
    pki = cached_pki(key_type)
    der = pki.doctor.der
    signature = bytes(pki.doctor.asn1["signature_value"].contents)
    assert signature[0] == 0
    tampered = load_certificate(der.replace(signature, b"\x01" + signature[1:]))
    pki.doctor.verify_signature(pki.issuing.public_key())
    with pytest.raises(InvalidSignature, match="unused bits"):
        tampered.verify_signature(pki.issuing.public_key())
