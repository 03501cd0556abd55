"""CMS SignedData (signcore.cms): both flavours, attached and detached, SM2/RSA/ECDSA signers.

Structures are checked with asn1crypto directly (not through signcore), every SM2 signature over
signed attributes is cross-checked by gmssl (DESIGN.md section 3), and the verifier is attacked
with tampered content, attributes, certificates and undecodable input: it must report problems in
the result and raise nothing but DecodeError.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Callable

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signcore import cms, hashes
from signcore.algorithms import (
    OID_GM_DATA,
    OID_GM_SIGNED_DATA,
    OID_SM2_SIGN,
    OID_SM2_WITH_SM3,
    OID_SM3,
    KeyType,
    SignatureAlgorithm,
)
from signcore.errors import DecodeError, InvalidKey, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.keys import PrivateKey, generate_private_key
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, Extensions, issue_certificate
from tests.support import gmssl_oracle
from tests.support.pki import KEY_TYPES, TestPKI, cached_pki

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"

FLAVORS = (cms.CMSFlavor.RFC5652, cms.CMSFlavor.GMT0010)
CONTENT = "处方：阿莫西林 0.5g tid × 3 日\n".encode() + bytes(range(256))
CUSTOM_ID = b"zhangsan@hospital.medsign.test"

#: The module docstring's table: (ContentInfo contentType, eContentType) per flavour ...
FLAVOR_OIDS = {
    cms.CMSFlavor.RFC5652: (OID_SIGNED_DATA, OID_DATA),
    cms.CMSFlavor.GMT0010: (OID_GM_SIGNED_DATA, OID_GM_DATA),
}
#: ... and (digestAlgorithm, SignerInfo signatureAlgorithm) per key type and flavour.
ALGORITHM_OIDS = {
    ("sm2", cms.CMSFlavor.RFC5652): (OID_SM3, OID_SM2_WITH_SM3),
    ("sm2", cms.CMSFlavor.GMT0010): (OID_SM3, OID_SM2_SIGN),
    ("rsa2048", cms.CMSFlavor.RFC5652): (OID_SHA256, OID_RSA),
    ("rsa2048", cms.CMSFlavor.GMT0010): (OID_SHA256, OID_RSA),
    ("ecdsa-p256", cms.CMSFlavor.RFC5652): (OID_SHA256, OID_ECDSA_SHA256),
    ("ecdsa-p256", cms.CMSFlavor.GMT0010): (OID_SHA256, OID_ECDSA_SHA256),
}
DEFAULT_ALGORITHMS = {
    "sm2": (SignatureAlgorithm.SM2_SM3, HashAlgorithm.SM3),
    "rsa2048": (SignatureAlgorithm.RSA_PKCS1_SHA256, HashAlgorithm.SHA256),
    "ecdsa-p256": (SignatureAlgorithm.ECDSA_SHA256, HashAlgorithm.SHA256),
}

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


@pytest.fixture(params=FLAVORS, ids=lambda f: f.value)
def flavor(request: pytest.FixtureRequest) -> cms.CMSFlavor:
    flavor: cms.CMSFlavor = request.param
    return flavor


@functools.cache
def impostor_root(key_type: str) -> Certificate:
    """A self-signed CA with the very subject of the real root, but a different key."""
    real = cached_pki(key_type).root
    key = generate_private_key(key_type)
    return issue_certificate(
        subject=real.subject_name, public_key=key.public_key(), signer=key,
        not_before=real.not_before, not_after=real.not_after,
        extensions=Extensions(ca=True, path_length=1,
                              key_usage=frozenset({"key_cert_sign", "crl_sign"})))


@functools.cache
def other_key(key_type: str) -> PrivateKey:
    return generate_private_key(key_type)


@functools.cache
def signed(key_type: str, flavor: cms.CMSFlavor, detached: bool) -> bytes:
    """One CMS per combination, shared by the fuzz tests (signing is not what they test)."""
    pki = cached_pki(key_type)
    return cms.sign(CONTENT, pki.doctor_key, pki.doctor, detached=detached, flavor=flavor,
                    extra_certificates=pki.chain)


def content_info(der: bytes) -> acms.ContentInfo:
    info = acms.ContentInfo.load(der)
    assert info.dump() == der
    return info


def signer_info(der: bytes, index: int = 0) -> acms.SignerInfo:
    return content_info(der)["content"]["signer_infos"][index]


def signed_attributes_as_set(info: acms.SignerInfo) -> bytes:
    """What the signature covers: the DER of the signed attributes with the SET OF tag."""
    encoded = info["signed_attrs"].dump()
    assert encoded[0] == 0xA0
    return b"\x31" + encoded[1:]


def mutate(der: bytes, change: Callable[[acms.ContentInfo], None]) -> bytes:
    """Re-encode ``der`` after ``change`` edited the parsed structure in place."""
    info = content_info(der)
    change(info)
    out = bytes(info.dump())
    assert out != der
    return out


def attribute(info: acms.SignerInfo, name: str) -> acms.CMSAttribute:
    found = [a for a in info["signed_attrs"] if a["type"].native == name]
    assert len(found) == 1, name
    return found[0]


def assert_gmssl_accepts(der: bytes, certificate: Certificate, signer_id: bytes | None = None,
                         *, index: int = 0) -> None:
    """gmssl, a second SM2 implementation, verifies the SignerInfo's signature."""
    info = signer_info(der, index)
    public = certificate.public_key()
    assert isinstance(public, SM2PublicKey)
    message = signed_attributes_as_set(info)
    signature = bytes(info["signature"].native)
    assert gmssl_oracle.verify(public, signature, message, signer_id or gmssl_oracle.DEFAULT_ID)


def assert_integrity_failure(result: cms.CMSVerification, *words: str) -> None:
    assert not result.valid
    (signer,) = result.signers
    assert not signer.integrity
    assert not signer.valid
    text = " ".join(signer.problems).lower()
    assert signer.problems
    for word in words:
        assert word in text, signer.problems


# ---------------------------------------------------------------------------------------------
# Round trips and trust


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_sign_and_verify_with_trust_roots(pki: TestPKI, flavor: cms.CMSFlavor,
                                          detached: bool) -> None:
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, detached=detached, flavor=flavor,
                   extra_certificates=pki.chain)
    result = cms.verify(der, content=CONTENT if detached else None, trust_roots=[pki.root])
    assert result.valid
    assert result.flavor is flavor
    assert result.detached is detached
    assert result.content == (None if detached else CONTENT)
    assert result.content_type == FLAVOR_OIDS[flavor][1]
    assert set(result.certificates) == {pki.doctor, pki.issuing, pki.root}
    (signer,) = result.signers
    assert signer.integrity and signer.trusted is True and signer.valid
    assert signer.problems == ()
    assert signer.signer_certificate == pki.doctor
    assert (signer.signature_algorithm, signer.digest_algorithm) == \
        DEFAULT_ALGORITHMS[pki.key_type]
    assert signer.chain is not None
    assert signer.chain.certificates == (pki.doctor, pki.issuing, pki.root)
    assert signer.signing_time is not None
    assert abs(signer.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    if pki.key_type == "sm2":
        assert_gmssl_accepts(der, pki.doctor)


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_without_trust_roots_trust_is_not_evaluated(pki: TestPKI, flavor: cms.CMSFlavor,
                                                    detached: bool) -> None:
    der = signed(pki.key_type, flavor, detached)
    result = cms.verify(der, content=CONTENT if detached else None)
    assert result.valid
    (signer,) = result.signers
    assert signer.integrity and signer.valid
    assert signer.trusted is None
    assert signer.chain is None
    assert signer.problems == ()


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_wrong_root_is_untrusted(pki: TestPKI, flavor: cms.CMSFlavor, detached: bool) -> None:
    der = signed(pki.key_type, flavor, detached)
    content = CONTENT if detached else None
    other = cached_pki(next(k for k in KEY_TYPES if k != pki.key_type)).root
    for roots in ([impostor_root(pki.key_type)], [other], []):
        result = cms.verify(der, content=content, trust_roots=roots)
        assert not result.valid
        (signer,) = result.signers
        assert signer.integrity  # the signature itself is fine ...
        assert signer.trusted is False  # ... but it chains to nothing we trust
        assert not signer.valid
        assert signer.chain is None
        assert any("chain" in p for p in signer.problems), signer.problems


def test_chain_from_intermediates_when_not_embedded(pki: TestPKI) -> None:
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor)
    assert len(content_info(der)["content"]["certificates"]) == 1
    assert not cms.verify(der, trust_roots=[pki.root]).valid
    result = cms.verify(der, trust_roots=[pki.root], intermediates=[pki.issuing])
    assert result.valid
    assert result.signers[0].chain is not None
    assert result.signers[0].chain.root == pki.root


def test_expired_signer_is_trusted_only_in_its_validity_period(pki: TestPKI) -> None:
    der = cms.sign(CONTENT, pki.expired_key, pki.expired, extra_certificates=[pki.issuing])
    now = cms.verify(der, trust_roots=[pki.root])
    assert not now.valid
    assert now.signers[0].integrity and now.signers[0].trusted is False
    assert any("not valid at" in p for p in now.signers[0].problems)
    back_then = cms.verify(der, trust_roots=[pki.root], at=pki.now - dt.timedelta(days=100))
    assert back_then.valid and back_then.signers[0].trusted is True


def test_certificates_argument_supplies_a_missing_signer_certificate(pki: TestPKI) -> None:
    def drop_certificates(info: acms.ContentInfo) -> None:
        info["content"]["certificates"] = None

    der = mutate(cms.sign(CONTENT, pki.doctor_key, pki.doctor), drop_certificates)
    result = cms.verify(der, trust_roots=[pki.root])
    assert_integrity_failure(result, "signer certificate not found")
    assert result.signers[0].trusted is False
    supplied = cms.verify(der, trust_roots=[pki.root], certificates=[pki.doctor],
                          intermediates=[pki.issuing])
    assert supplied.valid
    assert supplied.certificates == ()


def test_pem_input(pki: TestPKI) -> None:
    der = signed(pki.key_type, cms.CMSFlavor.RFC5652, False)
    pem = cms.to_pem(der)
    assert pem.startswith(b"-----BEGIN CMS-----")
    assert cms.verify(pem, trust_roots=[pki.root]).valid
    pkcs7 = pem.replace(b"BEGIN CMS", b"BEGIN PKCS7").replace(b"END CMS", b"END PKCS7")
    assert cms.verify(pkcs7, trust_roots=[pki.root]).valid
    with pytest.raises(DecodeError):
        cms.verify(pki.doctor.to_pem())


# ---------------------------------------------------------------------------------------------
# What is emitted


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_emitted_oids_follow_the_flavour_table(pki: TestPKI, flavor: cms.CMSFlavor,
                                               detached: bool) -> None:
    der = signed(pki.key_type, flavor, detached)
    info = content_info(der)
    content_type, data_type = FLAVOR_OIDS[flavor]
    digest_oid, signature_oid = ALGORITHM_OIDS[pki.key_type, flavor]
    assert info["content_type"].dotted == content_type
    signed_data = info["content"]
    assert isinstance(signed_data, acms.SignedData)
    assert signed_data["version"].native == "v1"
    assert [a["algorithm"].dotted for a in signed_data["digest_algorithms"]] == [digest_oid]
    encap = signed_data["encap_content_info"]
    assert encap["content_type"].dotted == data_type
    if detached:
        assert isinstance(encap["content"], core.Void)
    else:
        assert bytes(encap["content"].contents) == CONTENT
    (si,) = signed_data["signer_infos"]
    assert si["version"].native == "v1"
    assert si["sid"].name == "issuer_and_serial_number"
    assert si["sid"].chosen["serial_number"].native == pki.doctor.serial_number
    assert si["sid"].chosen["issuer"] == pki.doctor.issuer_name
    assert si["digest_algorithm"]["algorithm"].dotted == digest_oid
    assert si["signature_algorithm"]["algorithm"].dotted == signature_oid
    if pki.key_type == "sm2":
        # GM/T 0010 and RFC 8998-style SM2 identifiers carry no parameters.
        assert isinstance(si["signature_algorithm"]["parameters"], core.Void)
    # Signed attributes: content-type (the flavour's data OID), message-digest, signing-time.
    names = [a["type"].native for a in si["signed_attrs"]]
    assert sorted(names) == ["content_type", "message_digest", "signing_time"]
    assert attribute(si, "content_type")["values"][0].dotted == data_type
    digest_name = DEFAULT_ALGORITHMS[pki.key_type][1]
    assert attribute(si, "message_digest")["values"][0].native == \
        hashes.digest(digest_name, CONTENT)
    assert isinstance(si["unsigned_attrs"], core.Void)
    # The certificates: the signer's and the chain it was given (a SET OF: DER order).
    certs = [Certificate(c.chosen) for c in signed_data["certificates"]]
    assert sorted(certs, key=lambda c: c.der) == sorted([pki.doctor, pki.issuing, pki.root],
                                                         key=lambda c: c.der)


@pytest.mark.parametrize("flavor_in", FLAVORS, ids=lambda f: f.value)
@pytest.mark.parametrize("oid", [OID_SM2_WITH_SM3, OID_SM2_SIGN], ids=["sm2-with-sm3", "sm2-1"])
def test_both_sm2_signature_oids_accepted_in_both_flavours(flavor_in: cms.CMSFlavor,
                                                           oid: str) -> None:
    pki = cached_pki("sm2")
    for detached in (False, True):
        original = signed("sm2", flavor_in, detached)

        def set_oid(info: acms.ContentInfo, oid: str = oid) -> None:
            info["content"]["signer_infos"][0]["signature_algorithm"] = {"algorithm": oid}

        info = content_info(original)
        set_oid(info)
        der = bytes(info.dump())
        assert signer_info(der)["signature_algorithm"]["algorithm"].dotted == oid
        # The SignerInfo's signature algorithm is outside the signed attributes.
        assert signer_info(der)["signature"].native == signer_info(original)["signature"].native
        result = cms.verify(der, content=CONTENT if detached else None, trust_roots=[pki.root])
        assert result.valid, result.signers[0].problems
        assert result.flavor is flavor_in
        assert result.signers[0].signature_algorithm is SignatureAlgorithm.SM2_SM3


@pytest.mark.parametrize("outer", FLAVORS, ids=lambda f: f.value)
@pytest.mark.parametrize("inner", [OID_DATA, OID_GM_DATA], ids=["id-data", "gm-data"])
def test_every_flavour_combination_verifies(outer: cms.CMSFlavor, inner: str) -> None:
    pki = cached_pki("sm2")
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, flavor=outer, content_type=inner)
    info = content_info(der)
    assert info["content_type"].dotted == FLAVOR_OIDS[outer][0]
    assert info["content"]["encap_content_info"]["content_type"].dotted == inner
    # RFC 5652 5.1: version 3 when eContentType is not the flavour's plain data type.
    expected_version = "v1" if inner == FLAVOR_OIDS[outer][1] else "v3"
    assert info["content"]["version"].native == expected_version
    result = cms.verify(der, trust_roots=[pki.root], intermediates=[pki.issuing])
    assert result.valid
    assert result.content_type == inner
    assert_gmssl_accepts(der, pki.doctor)


def test_content_info_type_swapped_to_the_other_flavour_still_verifies() -> None:
    pki = cached_pki("sm2")
    der = signed("sm2", cms.CMSFlavor.RFC5652, False)
    # The outer type is not signed: swapping it re-labels the flavour, nothing else.
    swapped = bytes(acms.ContentInfo({"content_type": OID_GM_SIGNED_DATA,
                                      "content": content_info(der)["content"]}).dump())
    result = cms.verify(swapped, trust_roots=[pki.root])
    assert result.flavor is cms.CMSFlavor.GMT0010
    assert result.valid


@pytest.mark.parametrize("oid", [OID_ECDSA_SHA256, OID_RSA, "1.2.3.4"])
def test_signature_oid_for_another_algorithm_is_a_problem_not_an_exception(oid: str) -> None:
    pki = cached_pki("sm2")

    def set_oid(info: acms.ContentInfo) -> None:
        info["content"]["signer_infos"][0]["signature_algorithm"] = {"algorithm": oid}

    der = mutate(signed("sm2", cms.CMSFlavor.RFC5652, False), set_oid)
    result = cms.verify(der, trust_roots=[pki.root])
    assert not result.valid
    assert not result.signers[0].integrity
    assert result.signers[0].problems


def test_signer_identified_by_subject_key_identifier(pki: TestPKI) -> None:
    ski = pki.doctor.subject_key_identifier
    assert ski is not None

    def use_ski(info: acms.ContentInfo) -> None:
        si = info["content"]["signer_infos"][0]
        si["version"] = "v3"
        si["sid"] = acms.SignerIdentifier(name="subject_key_identifier", value=ski)

    der = mutate(signed(pki.key_type, cms.CMSFlavor.RFC5652, False), use_ski)
    result = cms.verify(der, trust_roots=[pki.root])
    assert result.valid
    assert result.signers[0].signer_certificate == pki.doctor


# ---------------------------------------------------------------------------------------------
# Signing time, sign_digest, signer ID, keys


def test_explicit_signing_time_round_trip() -> None:
    pki = cached_pki("sm2")
    beijing = dt.timezone(dt.timedelta(hours=8))
    when = dt.datetime(2024, 5, 6, 15, 8, 9, 654321, tzinfo=beijing)
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, signing_time=when)
    value = attribute(signer_info(der), "signing_time")["values"][0]
    assert value.name == "utc_time"  # RFC 5652 11.3: UTCTime for 1950..2049
    result = cms.verify(der)
    assert result.valid
    # Whole seconds, in UTC.
    assert result.signers[0].signing_time == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert_gmssl_accepts(der, pki.doctor)


def test_signing_time_after_2049_is_generalized_time() -> None:
    pki = cached_pki("ecdsa-p256")
    when = dt.datetime(2051, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, signing_time=when)
    assert attribute(signer_info(der), "signing_time")["values"][0].name == "generalized_time"
    assert cms.verify(der).signers[0].signing_time == when


def test_signing_time_can_be_left_out(pki: TestPKI) -> None:
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, include_signing_time=False)
    names = sorted(a["type"].native for a in signer_info(der)["signed_attrs"])
    assert names == ["content_type", "message_digest"]
    result = cms.verify(der)
    assert result.valid
    assert result.signers[0].signing_time is None


def test_sign_digest_equals_detached_sign(pki: TestPKI, flavor: cms.CMSFlavor) -> None:
    when = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    digest = hashes.digest(DEFAULT_ALGORITHMS[pki.key_type][1], CONTENT)
    from_digest = cms.sign_digest(digest, pki.doctor_key, pki.doctor, flavor=flavor,
                                  signing_time=when, extra_certificates=[pki.issuing])
    from_content = cms.sign(CONTENT, pki.doctor_key, pki.doctor, detached=True, flavor=flavor,
                            signing_time=when, extra_certificates=[pki.issuing])
    a, b = content_info(from_digest), content_info(from_content)
    si_a, si_b = a["content"]["signer_infos"][0], b["content"]["signer_infos"][0]
    assert si_a["signed_attrs"].dump() == si_b["signed_attrs"].dump()
    for key in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert si_a[key].dump() == si_b[key].dump(), key
    for key in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert a["content"][key].dump() == b["content"][key].dump(), key
    if pki.key_type == "rsa2048":
        assert from_digest == from_content  # PKCS#1 v1.5 is deterministic
    for der in (from_digest, from_content):
        result = cms.verify(der, content=CONTENT, trust_roots=[pki.root])
        assert result.valid and result.detached
        assert_integrity_failure(cms.verify(der, content=CONTENT + b"."), "message digest")
    if pki.key_type == "sm2":
        assert_gmssl_accepts(from_digest, pki.doctor)


def test_sign_digest_refuses_a_digest_of_the_wrong_length(pki: TestPKI) -> None:
    with pytest.raises(ValueError, match="bytes"):
        cms.sign_digest(b"\x00" * 20, pki.doctor_key, pki.doctor)
    with pytest.raises(ValueError, match="bytes"):
        cms.sign_digest(b"\x00" * 48, pki.doctor_key, pki.doctor)


def test_custom_sm2_signer_id(flavor: cms.CMSFlavor) -> None:
    pki = cached_pki("sm2")
    der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, flavor=flavor, signer_id=CUSTOM_ID)
    assert cms.verify(der, signer_id=CUSTOM_ID, trust_roots=[pki.root],
                      intermediates=[pki.issuing]).valid
    assert_integrity_failure(cms.verify(der), "signature")
    assert_integrity_failure(cms.verify(der, signer_id=b"1234567812345679"))
    assert_gmssl_accepts(der, pki.doctor, CUSTOM_ID)
    message = signed_attributes_as_set(signer_info(der))
    signature = bytes(signer_info(der)["signature"].native)
    public = pki.doctor.public_key()
    assert isinstance(public, SM2PublicKey)
    assert not gmssl_oracle.verify(public, signature, message)  # not with the default ID
    # And the default-ID signature does not verify under the custom ID.
    default = signed("sm2", flavor, False)
    assert_integrity_failure(cms.verify(default, signer_id=CUSTOM_ID))


def test_key_that_does_not_match_the_certificate_is_refused(pki: TestPKI) -> None:
    with pytest.raises(InvalidKey):
        cms.sign(CONTENT, pki.tls_key, pki.doctor)
    with pytest.raises(InvalidKey):
        cms.sign_digest(b"\x00" * 32, pki.tls_key, pki.doctor)
    other = cached_pki(next(k for k in KEY_TYPES if k != pki.key_type))
    with pytest.raises(InvalidKey):
        cms.sign(CONTENT, other.doctor_key, pki.doctor, detached=True)


def test_signature_algorithm_of_another_key_type_is_refused(pki: TestPKI) -> None:
    wrong = next(a for a in SignatureAlgorithm
                 if a.key_type is not pki.doctor.public_key().key_type)
    with pytest.raises(UnsupportedAlgorithm):
        cms.sign(CONTENT, pki.doctor_key, pki.doctor, signature_algorithm=wrong)


def test_rsa_signature_algorithm_choice_is_verifiable() -> None:
    pki = cached_pki("rsa2048")
    for algorithm, digest_oid in ((SignatureAlgorithm.RSA_PKCS1_SHA384, "2.16.840.1.101.3.4.2.2"),
                                  (SignatureAlgorithm.RSA_PKCS1_SHA512, "2.16.840.1.101.3.4.2.3"),
                                  (SignatureAlgorithm.RSA_PSS_SHA256, OID_SHA256)):
        der = cms.sign(CONTENT, pki.doctor_key, pki.doctor, signature_algorithm=algorithm)
        assert signer_info(der)["digest_algorithm"]["algorithm"].dotted == digest_oid
        result = cms.verify(der, trust_roots=[pki.root], intermediates=[pki.issuing])
        assert result.valid, result.signers[0].problems
        assert result.signers[0].signature_algorithm is algorithm


# ---------------------------------------------------------------------------------------------
# Tampering (hypothesis): never valid, never an exception other than DecodeError


def verify_or_decode_error(der: bytes, *, content: bytes | None = None,
                           trust_roots: list[Certificate] | None = None,
                           ) -> cms.CMSVerification | None:
    try:
        return cms.verify(der, content=content, trust_roots=trust_roots)
    except DecodeError:
        return None


@FUZZ
@given(key_type=st.sampled_from(KEY_TYPES), flavor=st.sampled_from(FLAVORS),
       data=st.data())
def test_modified_detached_content_is_detected(key_type: str, flavor: cms.CMSFlavor,
                                               data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    der = signed(key_type, flavor, True)
    index = data.draw(st.integers(0, len(CONTENT) - 1), label="index")
    xor = data.draw(st.integers(1, 255), label="xor")
    modified = bytearray(CONTENT)
    modified[index] ^= xor
    for content in (bytes(modified), CONTENT[:index], CONTENT + bytes([xor])):
        result = cms.verify(der, content=content, trust_roots=[pki.root])
        assert_integrity_failure(result, "message digest")
        assert result.signers[0].trusted is True  # trust is separate from integrity


@FUZZ
@given(key_type=st.sampled_from(KEY_TYPES), flavor=st.sampled_from(FLAVORS),
       data=st.data())
def test_modified_attached_content_is_detected(key_type: str, flavor: cms.CMSFlavor,
                                               data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    der = signed(key_type, flavor, False)
    start = der.index(CONTENT)
    index = data.draw(st.integers(0, len(CONTENT) - 1), label="index")
    tampered = bytearray(der)
    tampered[start + index] ^= data.draw(st.integers(1, 255), label="xor")
    result = cms.verify(bytes(tampered), trust_roots=[pki.root])
    assert_integrity_failure(result, "message digest")


@FUZZ
@given(key_type=st.sampled_from(KEY_TYPES), flavor=st.sampled_from(FLAVORS),
       detached=st.booleans(), region=st.sampled_from(["signed_attrs", "signature"]),
       data=st.data())
def test_modified_signed_attribute_or_signature_byte_is_detected(
        key_type: str, flavor: cms.CMSFlavor, detached: bool, region: str,
        data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    der = signed(key_type, flavor, detached)
    encoded = signer_info(der)[region].dump()
    start = der.index(encoded)
    index = data.draw(st.integers(0, len(encoded) - 1), label="index")
    tampered = bytearray(der)
    tampered[start + index] ^= data.draw(st.integers(1, 255), label="xor")
    result = verify_or_decode_error(bytes(tampered), content=CONTENT if detached else None,
                                    trust_roots=[pki.root])
    if result is not None:
        assert not result.valid
        assert all(not s.integrity for s in result.signers)


@pytest.mark.parametrize("how", ["other-cert-same-issuer", "same-issuer-and-serial-other-key"])
def test_swapped_signer_certificate_is_detected(pki: TestPKI, flavor: cms.CMSFlavor,
                                                how: str) -> None:
    if how == "other-cert-same-issuer":
        replacement = pki.tls
    else:
        # The same name, issuer and serial as the doctor's, so the SignerIdentifier still
        # matches, issued by the real issuing CA (so it even chains) -- but another key.
        replacement = issue_certificate(
            subject=pki.doctor.subject_name, public_key=other_key(pki.key_type).public_key(),
            signer=pki.issuing_key, issuer=pki.issuing, not_before=pki.doctor.not_before,
            not_after=pki.doctor.not_after, serial_number=pki.doctor.serial_number,
            extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature"})))
    der = signed(pki.key_type, flavor, False)

    def swap(info: acms.ContentInfo) -> None:
        info["content"]["certificates"] = [
            acms.CertificateChoices(name="certificate", value=replacement.asn1),
            pki.issuing.asn1, pki.root.asn1]

    result = cms.verify(mutate(der, swap), trust_roots=[pki.root])
    assert_integrity_failure(result)
    if how == "other-cert-same-issuer":
        assert result.signers[0].signer_certificate is None
        assert result.signers[0].trusted is False
    else:
        assert result.signers[0].signer_certificate == replacement
        assert result.signers[0].trusted is True  # it chains, but it did not sign


# ---------------------------------------------------------------------------------------------
# Undecodable input: DecodeError and nothing else


def test_detached_without_content_is_a_decode_error(pki: TestPKI) -> None:
    with pytest.raises(DecodeError, match="content must be supplied"):
        cms.verify(signed(pki.key_type, cms.CMSFlavor.GMT0010, True))


def test_attached_with_different_supplied_content_is_a_decode_error(pki: TestPKI) -> None:
    der = signed(pki.key_type, cms.CMSFlavor.RFC5652, False)
    with pytest.raises(DecodeError, match="differs"):
        cms.verify(der, content=CONTENT + b"x")
    assert cms.verify(der, content=CONTENT).valid


@FUZZ
@given(garbage=st.binary(max_size=4096))
def test_garbage_is_a_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        cms.verify(garbage, content=b"x")
    with pytest.raises(DecodeError):
        cms.load_signed_data(garbage)


@FUZZ
@given(key_type=st.sampled_from(KEY_TYPES), flavor=st.sampled_from(FLAVORS),
       detached=st.booleans(), data=st.data())
def test_truncated_or_extended_input_is_a_decode_error(key_type: str, flavor: cms.CMSFlavor,
                                                       detached: bool,
                                                       data: st.DataObject) -> None:
    der = signed(key_type, flavor, detached)
    cut = data.draw(st.integers(0, len(der) - 1), label="cut")
    with pytest.raises(DecodeError):
        cms.verify(der[:cut], content=CONTENT)
    extra = data.draw(st.binary(min_size=1, max_size=16), label="extra")
    with pytest.raises(DecodeError):
        cms.verify(der + extra, content=CONTENT)


@FUZZ
@given(key_type=st.sampled_from(KEY_TYPES), data=st.data())
def test_any_byte_flip_is_invalid_or_a_decode_error(key_type: str, data: st.DataObject) -> None:
    """Anywhere in the blob: the result is invalid, unchanged in meaning, or DecodeError."""
    pki = cached_pki(key_type)
    der = signed(key_type, cms.CMSFlavor.RFC5652, False)
    index = data.draw(st.integers(0, len(der) - 1), label="index")
    tampered = bytearray(der)
    tampered[index] ^= data.draw(st.integers(1, 255), label="xor")
    result = verify_or_decode_error(bytes(tampered), trust_roots=[pki.root])
    if result is not None and result.valid:
        # Only bytes nothing depends on may change without effect: the copy of the root (the
        # trusted one is the caller's), the SignedData/SignerInfo version numbers, the
        # unsigned digestAlgorithms set, a letter's case in the sid's issuer name (names
        # compare case-insensitively, RFC 5280 7.1) and the unused-bits octet of a
        # certificate's signature BIT STRING (asn1crypto ignores it).  The content, the signed
        # attributes and the signature are all covered.
        covered = [CONTENT, signer_info(der)["signed_attrs"].dump(),
                   signer_info(der)["signature"].dump()]
        for part in covered:
            start = der.index(part)
            assert not start <= index < start + len(part), (index, part[:16])


def test_oversize_input_is_a_decode_error() -> None:
    huge = b"\x30\x84\x01\x00\x00\x01" + bytes(16 * 1024 * 1024 + 1)
    with pytest.raises(DecodeError, match="limit"):
        cms.verify(huge, content=b"x")


def test_empty_input_and_other_content_types_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        cms.verify(b"")
    data_info = acms.ContentInfo({"content_type": "data",
                                  "content": core.OctetString(b"x")}).dump()
    with pytest.raises(DecodeError, match="not a SignedData"):
        cms.verify(data_info)
    with pytest.raises(DecodeError):
        cms.verify(cached_pki("sm2").doctor.der)


# ---------------------------------------------------------------------------------------------
# Structures sign() does not make, but verify() must handle


def _digest_id(oid: str) -> dict[str, str]:
    return {"algorithm": oid}


def test_two_signer_infos_are_both_reported() -> None:
    sm2, rsa = cached_pki("sm2"), cached_pki("rsa2048")
    first = content_info(cms.sign(CONTENT, sm2.doctor_key, sm2.doctor,
                                  extra_certificates=[sm2.issuing]))
    second = content_info(cms.sign(CONTENT, rsa.doctor_key, rsa.doctor,
                                   extra_certificates=[rsa.issuing]))
    sd1, sd2 = first["content"], second["content"]
    merged = acms.ContentInfo({
        "content_type": "signed_data",
        "content": acms.SignedData({
            "version": "v1",
            "digest_algorithms": [_digest_id(OID_SM3), _digest_id(OID_SHA256)],
            "encap_content_info": sd1["encap_content_info"],
            "certificates": [*sd1["certificates"], *sd2["certificates"]],
            "signer_infos": [sd1["signer_infos"][0], sd2["signer_infos"][0]],
        }),
    }).dump()
    result = cms.verify(merged, trust_roots=[sm2.root, rsa.root])
    assert result.valid
    assert len(result.signers) == 2
    assert [s.signer_certificate for s in result.signers] == [sm2.doctor, rsa.doctor]
    assert [s.digest_algorithm for s in result.signers] == [HashAlgorithm.SM3,
                                                           HashAlgorithm.SHA256]
    assert all(s.valid and s.trusted for s in result.signers)
    assert_gmssl_accepts(merged, sm2.doctor, index=0)
    # Each signer's trust is its own.
    only_sm2 = cms.verify(merged, trust_roots=[sm2.root])
    assert not only_sm2.valid
    assert [s.trusted for s in only_sm2.signers] == [True, False]
    assert [s.integrity for s in only_sm2.signers] == [True, True]

    # One bad signature spoils the whole, and is reported against its signer only.
    def break_second(info: acms.ContentInfo) -> None:
        sig = bytearray(info["content"]["signer_infos"][1]["signature"].native)
        sig[-1] ^= 1
        info["content"]["signer_infos"][1]["signature"] = bytes(sig)

    broken = cms.verify(mutate(merged, break_second), trust_roots=[sm2.root, rsa.root])
    assert not broken.valid
    assert [s.integrity for s in broken.signers] == [True, False]
    assert broken.signers[0].valid and not broken.signers[1].valid


def test_no_signer_infos_is_not_valid() -> None:
    pki = cached_pki("ecdsa-p256")

    def drop_signers(info: acms.ContentInfo) -> None:
        info["content"]["signer_infos"] = []

    result = cms.verify(mutate(signed("ecdsa-p256", cms.CMSFlavor.RFC5652, False),
                               drop_signers), trust_roots=[pki.root])
    assert result.signers == ()
    assert not result.valid


def _without_signed_attributes(pki: TestPKI, content: bytes, *, detached: bool,
                               econtent_type: str = OID_DATA,
                               key: PrivateKey | None = None) -> bytes:
    """SignerInfo whose signature is directly over the content (RFC 5652 5.4, no attributes),
    built by hand with asn1crypto."""
    key_type = pki.doctor.public_key().key_type
    digest_oid, signature_oid = ALGORITHM_OIDS[pki.key_type, cms.CMSFlavor.RFC5652]
    signature = (key or pki.doctor_key).sign(content)
    signature_algorithm: dict[str, object] = {"algorithm": signature_oid}
    if key_type is KeyType.RSA:
        signature_algorithm["parameters"] = core.Null()
    encap: dict[str, object] = {"content_type": econtent_type}
    if not detached:
        encap["content"] = content
    return bytes(acms.ContentInfo({
        "content_type": "signed_data",
        "content": acms.SignedData({
            "version": "v1" if econtent_type == OID_DATA else "v3",
            "digest_algorithms": [_digest_id(digest_oid)],
            "encap_content_info": encap,
            "certificates": [pki.doctor.asn1],
            "signer_infos": [acms.SignerInfo({
                "version": "v1",
                "sid": acms.SignerIdentifier(name="issuer_and_serial_number", value={
                    "issuer": pki.doctor.issuer_name,
                    "serial_number": pki.doctor.serial_number}),
                "digest_algorithm": _digest_id(digest_oid),
                "signature_algorithm": signature_algorithm,
                "signature": signature,
            })],
        }),
    }).dump())


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_signature_without_signed_attributes_verifies(pki: TestPKI, detached: bool) -> None:
    der = _without_signed_attributes(pki, CONTENT, detached=detached)
    assert isinstance(signer_info(der)["signed_attrs"], core.Void)
    result = cms.verify(der, content=CONTENT if detached else None, trust_roots=[pki.root],
                        intermediates=[pki.issuing])
    assert result.valid, result.signers[0].problems
    signer = result.signers[0]
    assert signer.signing_time is None
    assert signer.signed_attributes is None
    if pki.key_type == "sm2":
        public = pki.doctor.public_key()
        assert isinstance(public, SM2PublicKey)
        assert gmssl_oracle.verify(public, bytes(signer_info(der)["signature"].native), CONTENT)
    if detached:
        assert_integrity_failure(cms.verify(der, content=CONTENT[1:]), "signature")
    # Signed by a key other than the certificate's.
    forged = _without_signed_attributes(pki, CONTENT, detached=detached, key=pki.tls_key)
    assert_integrity_failure(cms.verify(forged, content=CONTENT if detached else None))


def test_signed_attributes_are_required_for_non_data_content() -> None:
    pki = cached_pki("sm2")
    # RFC 5652 5.3: signedAttrs MUST be present when eContentType is not id-data.
    der = _without_signed_attributes(pki, CONTENT, detached=False, econtent_type="2.999.7.9")
    assert_integrity_failure(cms.verify(der), "signed attributes are required")


def _with_attributes(der: bytes, change: Callable[[list[acms.CMSAttribute]], None],
                     key: PrivateKey) -> bytes:
    """Replace the signed attributes by ``change(attributes)`` and sign them again properly."""
    info = content_info(der)
    si = info["content"]["signer_infos"][0]
    attrs = list(si["signed_attrs"])
    change(attrs)
    new = acms.CMSAttributes(attrs)
    si["signed_attrs"] = new
    si["signature"] = key.sign(new.dump())
    return bytes(info.dump())


@pytest.mark.parametrize("change", ["drop-content-type", "drop-message-digest",
                                    "duplicate-signing-time", "wrong-content-type"])
def test_properly_signed_but_malformed_attributes_are_problems(change: str) -> None:
    pki = cached_pki("ecdsa-p256")
    der = signed("ecdsa-p256", cms.CMSFlavor.RFC5652, False)

    def edit(attrs: list[acms.CMSAttribute]) -> None:
        by_name = {a["type"].native: a for a in attrs}
        if change == "drop-content-type":
            attrs.remove(by_name["content_type"])
        elif change == "drop-message-digest":
            attrs.remove(by_name["message_digest"])
        elif change == "duplicate-signing-time":
            attrs.append(acms.CMSAttribute({"type": "signing_time", "values": [
                acms.Time(name="utc_time", value=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))]}))
        else:
            attrs.remove(by_name["content_type"])
            attrs.append(acms.CMSAttribute({"type": "content_type",
                                            "values": [OID_TST_INFO]}))

    word = {"drop-content-type": "content-type", "drop-message-digest": "message-digest",
            "duplicate-signing-time": "signing-time",
            "wrong-content-type": "content-type"}[change]
    result = cms.verify(_with_attributes(der, edit, pki.doctor_key), trust_roots=[pki.root])
    assert_integrity_failure(result, word)


def test_random_content_round_trip_sizes() -> None:
    pki = cached_pki("sm2")
    for size in (0, 1, 1000, 70_000):
        content = secrets.token_bytes(size)
        der = cms.sign(content, pki.doctor_key, pki.doctor, flavor=cms.CMSFlavor.GMT0010)
        result = cms.verify(der)
        assert result.valid and result.content == content


def test_version_1_signed_data_with_another_content_type() -> None:
    """The SignedData version is not signed, and pre-RFC 5652 producers write v1 for any content
    type: the eContent OCTET STRING must still be found (asn1crypto types it as ANY then)."""
    pki = cached_pki("sm2")
    der = cms.sign(b"hello", pki.doctor_key, pki.doctor, content_type="2.999.7.9")
    assert content_info(der)["content"]["version"].native == "v3"

    def to_v1(info: acms.ContentInfo) -> None:
        info["content"]["version"] = "v1"

    v1 = mutate(der, to_v1)
    result = cms.verify(v1, trust_roots=[pki.root], intermediates=[pki.issuing])
    assert result.valid, result.signers[0].problems
    assert result.content == b"hello"
    assert result.content_type == "2.999.7.9"
    # eContent that is not an OCTET STRING (here an INTEGER) is undecodable, not "modified".
    wrapped = b"\xa0\x07\x04\x05hello"
    assert v1.count(wrapped) == 1
    with pytest.raises(DecodeError, match="OCTET STRING"):
        cms.verify(v1.replace(wrapped, b"\xa0\x07\x02\x05hello"))


def test_names_asn1crypto_cannot_prepare_are_problems_not_exceptions() -> None:
    """RFC 5280 name comparison runs stringprep, and asn1crypto raises ValueError for an
    unassigned code point (found by the byte-flip fuzzing): verification must still answer."""
    key = generate_private_key("ecdsa-p256")
    hostile = issue_certificate(
        subject="CN=\u0378 hostile CA,O=测试医院,C=CN", public_key=key.public_key(), signer=key,
        days=30, extensions=Extensions(ca=True, key_usage=frozenset({"key_cert_sign"})))
    leaf_key = generate_private_key("ecdsa-p256")
    leaf = issue_certificate(subject="CN=leaf", public_key=leaf_key.public_key(), signer=key,
                             issuer=hostile, days=10)
    der = cms.sign(CONTENT, leaf_key, leaf, extra_certificates=[hostile])
    untrusted = cms.verify(der)
    assert untrusted.valid  # the signer is found by its issuer name's exact encoding
    assert untrusted.signers[0].signer_certificate == leaf
    unrelated = cms.verify(der, trust_roots=[cached_pki("ecdsa-p256").root])
    assert unrelated.signers[0].integrity
    assert unrelated.signers[0].trusted is False
    assert any("chain" in p for p in unrelated.signers[0].problems)
    # Trusting that root by its exact certificate works: names match by encoding.
    trusted = cms.verify(der, trust_roots=[hostile])
    assert trusted.valid, trusted.signers[0].problems
    assert trusted.signers[0].chain is not None
    assert trusted.signers[0].chain.root == hostile


def test_signature_time_stamp_as_unsigned_attribute() -> None:
    """RFC 3161 appendix A: a token over the signature value, added without touching
    anything signed; the CMS still verifies and the token comes back out."""
    from signcore import tsp  # noqa: PLC0415
    from signcore.hashes import HashAlgorithm, digest  # noqa: PLC0415
    from tests.support.pki import cached_pki  # noqa: PLC0415

    pki = cached_pki("sm2")
    signed = cms.sign(b"doc", pki.doctor_key, pki.doctor)
    value = cms.signature_value(signed)
    token = tsp.build_token(hash_algorithm=HashAlgorithm.SM3,
                            message_imprint=digest(HashAlgorithm.SM3, value),
                            signer=pki.tsa_key, certificate=pki.tsa, serial_number=7,
                            policy="2.999.1")
    stamped = cms.add_signature_timestamp(signed, token)
    assert cms.signature_value(stamped) == value
    result = cms.verify(stamped, trust_roots=[pki.root], intermediates=[pki.issuing])
    assert result.valid
    assert cms.signature_timestamp_token(result.signers[0].unsigned_attributes) == token
    assert tsp.verify_token(token, data=value, trust_roots=[pki.root],
                            intermediates=[pki.issuing]).valid
    again = cms.add_signature_timestamp(stamped, token)  # replaces, never duplicates
    attrs = cms.verify(again).signers[0].unsigned_attributes
    assert attrs is not None and len(attrs) == 1
