"""Two-phase CMS signing (signcore.cms.prepare / PreparedSignature.finish) and several signers in
one SignedData (signcore.cms.add_signer).

prepare + finish must make what sign / sign_digest make (checked field by field, and byte for
byte for deterministic RSA PKCS#1 v1.5), for every key type and both flavours; the raw digest of
an SM2 preparation is recomputed by gmssl (e = SM3(Z_A || signed attributes)), and every SM2
signature that ends up in a CMS is verified by gmssl too (DESIGN.md section 3).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from typing import Any

import pytest
from asn1crypto import cms as acms

from signcore import cms, hashes, tsp
from signcore.algorithms import OID_GM_DATA, SignatureAlgorithm
from signcore.errors import DecodeError, InvalidKey, InvalidSignature, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.keys import PrivateKey, generate_private_key
from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from signcore.x509 import Certificate, Extensions, issue_certificate
from tests.keysplit.conftest import cosign
from tests.keysplit.conftest import enroll as co_keygen
from tests.support import gmssl_oracle
from tests.support.pki import KEY_TYPES, TestPKI, cached_pki, issue_leaf

FLAVORS = (cms.CMSFlavor.RFC5652, cms.CMSFlavor.GMT0010)
PRESCRIPTION = "电子处方 No.20250607-0042：阿莫西林胶囊 0.5g tid × 3 日\n".encode() + bytes(256)
WHEN = dt.datetime(2025, 6, 7, 8, 9, 10, tzinfo=dt.UTC)
CUSTOM_ID = b"lisi@hospital.medsign.test"
HASHES = {"sm2": HashAlgorithm.SM3, "rsa2048": HashAlgorithm.SHA256,
          "ecdsa-p256": HashAlgorithm.SHA256}


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


@pytest.fixture(params=FLAVORS, ids=lambda f: f.value)
def flavor(request: pytest.FixtureRequest) -> cms.CMSFlavor:
    flavor: cms.CMSFlavor = request.param
    return flavor


@functools.cache
def pharmacist(key_type: str) -> tuple[Certificate, PrivateKey]:
    """A second signer under the same issuing CA (a pharmacist who checks the prescription)."""
    return issue_leaf(cached_pki(key_type), "CN=赵六,OU=药剂科,O=测试医院,C=CN",
                      extensions=Extensions(ca=False, key_usage=frozenset(
                          {"digital_signature", "non_repudiation"})))


def signer_infos(der: bytes) -> list[acms.SignerInfo]:
    info = acms.ContentInfo.load(der)
    assert info.dump() == der
    return list(info["content"]["signer_infos"])


def attrs_as_set(info: acms.SignerInfo) -> bytes:
    encoded = bytes(info["signed_attrs"].dump())
    assert encoded[0] == 0xA0
    return b"\x31" + encoded[1:]


def assert_gmssl_accepts(der: bytes, certificate: Certificate, index: int = 0,
                         signer_id: bytes = gmssl_oracle.DEFAULT_ID) -> None:
    info = signer_infos(der)[index]
    public = certificate.public_key()
    assert isinstance(public, SM2PublicKey)
    assert gmssl_oracle.verify(public, bytes(info["signature"].native), attrs_as_set(info),
                               signer_id)


def sign_prepared(prepared: cms.PreparedSignature, key: PrivateKey) -> bytes:
    """The whole-key stand-in for the phone: the ordinary signer signs to_be_signed."""
    return key.sign(prepared.to_be_signed, prepared.algorithm, signer_id=prepared.signer_id)


def assert_same_cms(ours: bytes, reference: bytes) -> None:
    """Equal but for the signature value (SM2 and ECDSA signatures are randomized)."""
    a, b = acms.ContentInfo.load(ours), acms.ContentInfo.load(reference)
    assert a["content_type"].dump() == b["content_type"].dump()
    sd_a, sd_b = a["content"], b["content"]
    for key in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert sd_a[key].dump() == sd_b[key].dump(), key
    (si_a,), (si_b,) = sd_a["signer_infos"], sd_b["signer_infos"]
    for key in ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm",
                "unsigned_attrs"):
        assert si_a[key].dump() == si_b[key].dump(), key


# ---------------------------------------------------------------------------------------------
# prepare + finish = sign


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_prepare_and_finish_make_what_sign_makes(pki: TestPKI, flavor: cms.CMSFlavor,
                                                 detached: bool) -> None:
    prepared = cms.prepare(PRESCRIPTION, pki.doctor, detached=detached, flavor=flavor,
                           signing_time=WHEN, extra_certificates=pki.chain)
    assert prepared.detached is detached
    assert prepared.flavor is flavor
    assert prepared.algorithm is SignatureAlgorithm.default_for(
        pki.doctor.public_key().key_type)
    assert prepared.content == (None if detached else PRESCRIPTION)
    assert prepared.message_digest == hashes.digest(HASHES[pki.key_type], PRESCRIPTION)
    assert prepared.content_type == flavor.data_oid
    assert prepared.to_be_signed[0] == 0x31  # the SET OF, as RFC 5652 5.4 signs it
    finished = prepared.finish(sign_prepared(prepared, pki.doctor_key))
    reference = cms.sign(PRESCRIPTION, pki.doctor_key, pki.doctor, detached=detached,
                         flavor=flavor, signing_time=WHEN, extra_certificates=pki.chain)
    assert_same_cms(finished, reference)
    if pki.key_type == "rsa2048":
        assert finished == reference  # PKCS#1 v1.5 is deterministic: byte for byte
    (info,) = signer_infos(finished)
    assert attrs_as_set(info) == prepared.to_be_signed
    result = cms.verify(finished, content=PRESCRIPTION if detached else None,
                        trust_roots=[pki.root])
    assert result.valid, result.signers[0].problems
    assert result.detached is detached
    assert result.signers[0].signing_time == WHEN
    assert result.signers[0].signer_certificate == pki.doctor
    if pki.key_type == "sm2":
        assert_gmssl_accepts(finished, pki.doctor)


def test_prepare_from_a_message_digest_makes_what_sign_digest_makes(
        pki: TestPKI, flavor: cms.CMSFlavor) -> None:
    digest = hashes.digest(HASHES[pki.key_type], PRESCRIPTION)
    prepared = cms.prepare(None, pki.doctor, message_digest=digest, flavor=flavor,
                           signing_time=WHEN, extra_certificates=[pki.issuing])
    assert prepared.detached and prepared.content is None
    assert prepared.message_digest == digest
    finished = prepared.finish(sign_prepared(prepared, pki.doctor_key))
    assert_same_cms(finished, cms.sign_digest(digest, pki.doctor_key, pki.doctor, flavor=flavor,
                                              signing_time=WHEN,
                                              extra_certificates=[pki.issuing]))
    assert cms.verify(finished, content=PRESCRIPTION, trust_roots=[pki.root]).valid
    assert not cms.verify(finished, content=PRESCRIPTION + b"!").valid
    if pki.key_type == "sm2":
        assert_gmssl_accepts(finished, pki.doctor)


def test_digest_signed_by_a_raw_digest_signer_finishes(pki: TestPKI,
                                                      flavor: cms.CMSFlavor) -> None:
    prepared = cms.prepare(PRESCRIPTION, pki.doctor, flavor=flavor,
                           extra_certificates=pki.chain)
    digest = prepared.digest()
    public = pki.doctor.public_key()
    if isinstance(public, SM2PublicKey):
        # e = SM3(Z_A || signed attributes), recomputed by gmssl from the certificate's point.
        assert digest == gmssl_oracle.e(public, prepared.to_be_signed)
        key = pki.doctor_key
        assert isinstance(key, SM2PrivateKey)
        signature = gmssl_oracle.CheckedSM2Key(key).sign_digest(digest)
    else:
        assert digest == hashlib.sha256(prepared.to_be_signed).digest()
        signature = pki.doctor_key.sign_digest(digest, prepared.algorithm)
    finished = prepared.finish(signature)
    result = cms.verify(finished, trust_roots=[pki.root])
    assert result.valid, result.signers[0].problems
    assert result.content == PRESCRIPTION
    if pki.key_type == "sm2":
        assert_gmssl_accepts(finished, pki.doctor)


@pytest.mark.parametrize("flavor_", FLAVORS, ids=lambda f: f.value)
def test_sm2_custom_signer_id_enters_the_digest(flavor_: cms.CMSFlavor) -> None:
    pki = cached_pki("sm2")
    prepared = cms.prepare(PRESCRIPTION, pki.doctor, flavor=flavor_, signer_id=CUSTOM_ID)
    public = pki.doctor.public_key()
    assert isinstance(public, SM2PublicKey)
    assert prepared.digest() == gmssl_oracle.e(public, prepared.to_be_signed, CUSTOM_ID)
    assert prepared.digest() != gmssl_oracle.e(public, prepared.to_be_signed)
    key = pki.doctor_key
    assert isinstance(key, SM2PrivateKey)
    with pytest.raises(InvalidSignature):  # signed with the default ID: not this preparation
        prepared.finish(key.sign(prepared.to_be_signed))
    finished = prepared.finish(key.sign_digest(prepared.digest()))
    assert cms.verify(finished, signer_id=CUSTOM_ID).valid
    assert not cms.verify(finished).valid
    assert_gmssl_accepts(finished, pki.doctor, signer_id=CUSTOM_ID)


def test_a_two_party_sm2_key_co_signs_the_digest() -> None:
    """The doctor's key never exists whole: phone and server co-sign ``digest()``."""
    pki = cached_pki("sm2")
    enrollment = co_keygen()
    public = enrollment.share.sm2_public_key()
    certificate = issue_certificate(
        subject="CN=张三 (co-signed),OU=内科,O=测试医院,C=CN", public_key=public,
        signer=pki.issuing_key, issuer=pki.issuing, not_before=pki.now - dt.timedelta(days=1),
        not_after=pki.now + dt.timedelta(days=30),
        extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature",
                                                             "non_repudiation"})))
    prepared = cms.prepare(PRESCRIPTION, certificate, flavor=cms.CMSFlavor.GMT0010,
                           extra_certificates=[pki.issuing])
    stored = json.dumps(prepared.to_dict())  # the server keeps it while the phone works
    signature = cosign(enrollment, [prepared.digest()]).signatures[0]
    finished = cms.PreparedSignature.from_dict(json.loads(stored)).finish(signature)
    result = cms.verify(finished, trust_roots=[pki.root])
    assert result.valid, result.signers[0].problems
    assert_gmssl_accepts(finished, certificate)


# ---------------------------------------------------------------------------------------------
# Storage between requests


def _json_only(value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            _json_only(item)
    elif isinstance(value, list):
        for item in value:
            _json_only(item)
    else:
        assert value is None or isinstance(value, (str, int)), value


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_to_dict_from_dict_round_trip_through_json(pki: TestPKI, flavor: cms.CMSFlavor,
                                                   detached: bool) -> None:
    prepared = cms.prepare(PRESCRIPTION, pki.doctor, detached=detached, flavor=flavor,
                           extra_certificates=pki.chain, signer_id=CUSTOM_ID)
    stored = prepared.to_dict()
    _json_only(stored)
    restored = cms.PreparedSignature.from_dict(json.loads(json.dumps(stored)))
    assert restored == prepared
    assert restored.to_dict() == stored
    assert restored.digest() == prepared.digest()
    finished = restored.finish(sign_prepared(prepared, pki.doctor_key))
    result = cms.verify(finished, content=PRESCRIPTION if detached else None,
                        trust_roots=[pki.root], signer_id=CUSTOM_ID)
    assert result.valid, result.signers[0].problems
    assert set(result.certificates) == {pki.doctor, pki.issuing, pki.root}
    if pki.key_type == "sm2":
        assert_gmssl_accepts(finished, pki.doctor, signer_id=CUSTOM_ID)


def test_from_dict_refuses_what_does_not_fit() -> None:
    pki = cached_pki("sm2")
    stored = cms.prepare(PRESCRIPTION, pki.doctor).to_dict()
    rsa = cached_pki("rsa2048")

    def changed(**values: Any) -> dict[str, Any]:
        return {**stored, **values}

    bad: list[dict[str, Any]] = [
        {k: v for k, v in stored.items() if k != "signed_attributes"},
        changed(format=2),
        changed(flavor="pkcs7"),
        changed(algorithm="sm9"),
        changed(certificate="zz"),
        changed(certificate=stored["certificate"][:-2]),
        changed(extra_certificates="00"),
        changed(signer_id=None),
        changed(signed_attributes="3100"),
        changed(signed_attributes=stored["signed_attributes"] + "00"),
        # the content no longer matches the message-digest attribute
        changed(content=(PRESCRIPTION + b"!").hex()),
        # attributes over a SHA-256 digest with an SM2 (SM3) certificate
        changed(signed_attributes=cms.prepare(PRESCRIPTION, rsa.doctor).to_dict()[
            "signed_attributes"]),
    ]
    for value in bad:
        with pytest.raises(DecodeError):
            cms.PreparedSignature.from_dict(value)
    with pytest.raises(UnsupportedAlgorithm):
        cms.PreparedSignature.from_dict(changed(algorithm="rsa-pkcs1-sha256"))
    # Detaching (dropping the content) keeps a consistent preparation.
    assert cms.PreparedSignature.from_dict(changed(content=None)).detached


# ---------------------------------------------------------------------------------------------
# Refusals


def test_finish_refuses_a_signature_that_does_not_verify(pki: TestPKI) -> None:
    prepared = cms.prepare(PRESCRIPTION, pki.doctor)
    good = sign_prepared(prepared, pki.doctor_key)
    other_key = generate_private_key(pki.key_type)
    other_preparation = cms.prepare(PRESCRIPTION + b"!", pki.doctor)
    wrong = [
        b"",
        b"\x00" * len(good),
        good[:-1] + bytes([good[-1] ^ 1]),
        good + b"\x00",
        sign_prepared(prepared, other_key),  # another key
        sign_prepared(other_preparation, pki.doctor_key),  # other attributes
        pki.doctor_key.sign(prepared.digest(), prepared.algorithm),  # digest signed as data
    ]
    for signature in wrong:
        with pytest.raises(InvalidSignature):
            prepared.finish(signature)
    assert cms.verify(prepared.finish(good)).valid


def test_prepare_refuses_bad_arguments(pki: TestPKI) -> None:
    size = HASHES[pki.key_type].digest_size
    for length in (0, 20, size - 1, size + 1, 48, 64):
        with pytest.raises(ValueError, match="bytes"):
            cms.prepare(None, pki.doctor, message_digest=b"\x01" * length)
    with pytest.raises(ValueError, match="exactly one"):
        cms.prepare(PRESCRIPTION, pki.doctor, message_digest=b"\x01" * size)
    with pytest.raises(ValueError, match="exactly one"):
        cms.prepare(None, pki.doctor)
    other = next(k for k in KEY_TYPES if k != pki.key_type)
    with pytest.raises(UnsupportedAlgorithm):
        cms.prepare(PRESCRIPTION, pki.doctor,
                    signature_algorithm=SignatureAlgorithm.default_for(
                        cached_pki(other).doctor.public_key().key_type))
    with pytest.raises(ValueError):
        cms.prepare(PRESCRIPTION, pki.doctor, flavor="pkcs7")


def test_prepare_refuses_an_sm2_signer_id_too_long() -> None:
    with pytest.raises(InvalidKey):
        cms.prepare(PRESCRIPTION, cached_pki("sm2").doctor, signer_id=b"x" * 8192)


# ---------------------------------------------------------------------------------------------
# Several signers: a doctor signs the prescription, then a pharmacist


def _two_signers(key_type: str, flavor: cms.CMSFlavor, *, first_detached: bool = False,
                 second_detached: bool = False) -> tuple[bytes, bytes, bytes]:
    pki = cached_pki(key_type)
    cert, key = pharmacist(key_type)
    doctor = cms.prepare(PRESCRIPTION, pki.doctor, flavor=flavor, detached=first_detached,
                         extra_certificates=pki.chain)
    first = doctor.finish(sign_prepared(doctor, pki.doctor_key))
    checker = cms.prepare(PRESCRIPTION, cert, flavor=flavor, detached=second_detached,
                          extra_certificates=pki.chain)
    second = checker.finish(sign_prepared(checker, key))
    return first, second, cms.add_signer(first, second)


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
def test_add_signer_makes_one_signed_data_with_both_signers(key_type: str,
                                                            flavor: cms.CMSFlavor) -> None:
    pki = cached_pki(key_type)
    cert, _ = pharmacist(key_type)
    first, second, merged = _two_signers(key_type, flavor)
    result = cms.verify(merged, trust_roots=[pki.root])
    assert result.valid
    assert result.flavor is flavor
    assert result.content == PRESCRIPTION and not result.detached
    assert [s.signer_certificate for s in result.signers] == [pki.doctor, cert]
    assert all(s.integrity and s.trusted and s.valid for s in result.signers)
    # Certificates merged without duplicates, one digest algorithm, SignerInfos kept intact.
    assert sorted(c.der for c in result.certificates) == \
        sorted(c.der for c in (pki.doctor, cert, pki.issuing, pki.root))
    signed_data = acms.ContentInfo.load(merged)["content"]
    assert len(signed_data["digest_algorithms"]) == 1
    assert [i.dump() for i in signer_infos(merged)] == \
        [i.dump() for i in (*signer_infos(first), *signer_infos(second))]
    if key_type == "sm2":
        assert_gmssl_accepts(merged, pki.doctor, 0)
        assert_gmssl_accepts(merged, cert, 1)
    # Each signer's integrity is its own: breaking the pharmacist's signature shows there only.
    # (Byte-patched: re-encoding with asn1crypto would sort the SET OF SignerInfo.)
    signature = bytes(signer_infos(merged)[1]["signature"].native)
    assert merged.count(signature) == 1
    broken = cms.verify(merged.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1])),
                        trust_roots=[pki.root])
    assert not broken.valid
    assert [s.integrity for s in broken.signers] == [True, False]


@pytest.mark.parametrize(("first_detached", "second_detached"),
                         [(True, False), (False, True), (True, True)],
                         ids=["detached+attached", "attached+detached", "both-detached"])
def test_add_signer_keeps_the_content_if_either_has_it(first_detached: bool,
                                                       second_detached: bool) -> None:
    pki = cached_pki("sm2")
    _, _, merged = _two_signers("sm2", cms.CMSFlavor.RFC5652, first_detached=first_detached,
                                second_detached=second_detached)
    both_detached = first_detached and second_detached
    result = cms.verify(merged, content=PRESCRIPTION if both_detached else None,
                        trust_roots=[pki.root])
    assert result.valid and len(result.signers) == 2
    assert result.detached is both_detached
    assert result.content == (None if both_detached else PRESCRIPTION)


def test_signers_keep_their_order_and_index() -> None:
    """SignerInfos stay in the order they were added (the doctor first, then the pharmacist),
    whatever their encodings, and a time stamp added to one signer moves nobody."""
    pki = cached_pki("rsa2048")
    cert, key = pharmacist("rsa2048")
    doctor = cms.sign(PRESCRIPTION, pki.doctor_key, pki.doctor, signing_time=WHEN)
    checker = cms.sign(PRESCRIPTION, key, cert, signing_time=WHEN)
    for first, second, certs in ((doctor, checker, [pki.doctor, cert]),
                                 (checker, doctor, [cert, pki.doctor])):
        merged = cms.add_signer(first, second)
        assert [s.signer_certificate for s in cms.verify(merged).signers] == certs
        values = [cms.signature_value(merged, i) for i in (0, 1)]
        assert values == [cms.signature_value(first), cms.signature_value(second)]
        token = tsp.build_token(hash_algorithm=HashAlgorithm.SHA256,
                                message_imprint=hashlib.sha256(values[0]).digest(),
                                signer=pki.tsa_key, certificate=pki.tsa, serial_number=11,
                                policy="2.999.1")
        stamped = cms.add_signature_timestamp(merged, token, 0)
        result = cms.verify(stamped, trust_roots=[pki.root], intermediates=[pki.issuing])
        assert result.valid
        assert [s.signer_certificate for s in result.signers] == certs
        assert cms.signature_timestamp_token(result.signers[0].unsigned_attributes) == token
        assert result.signers[1].unsigned_attributes is None
        assert [cms.signature_value(stamped, i) for i in (0, 1)] == values


def test_three_signers_and_mixed_algorithms() -> None:
    sm2, rsa = cached_pki("sm2"), cached_pki("rsa2048")
    _, _, merged = _two_signers("sm2", cms.CMSFlavor.RFC5652)
    third = cms.sign(PRESCRIPTION, rsa.doctor_key, rsa.doctor, detached=True,
                     extra_certificates=rsa.chain)
    all_three = cms.add_signer(merged, third)
    result = cms.verify(all_three, trust_roots=[sm2.root, rsa.root])
    assert result.valid and len(result.signers) == 3
    assert [s.digest_algorithm for s in result.signers] == \
        [HashAlgorithm.SM3, HashAlgorithm.SM3, HashAlgorithm.SHA256]
    digest_oids = [a["algorithm"].native for a in
                   acms.ContentInfo.load(all_three)["content"]["digest_algorithms"]]
    assert digest_oids == ["sm3", "sha256"]


def test_add_signer_refuses_what_does_not_belong_together() -> None:
    pki = cached_pki("sm2")
    cert, key = pharmacist("sm2")
    doctor = cms.sign(PRESCRIPTION, pki.doctor_key, pki.doctor)
    doctor_detached = cms.sign(PRESCRIPTION, pki.doctor_key, pki.doctor, detached=True)
    other_text = PRESCRIPTION.replace(b"0.5g", b"5.0g")
    other_flavour = cms.sign(PRESCRIPTION, key, cert, flavor=cms.CMSFlavor.GMT0010)
    other_type = cms.sign(PRESCRIPTION, key, cert, content_type=OID_GM_DATA)
    cases = [
        (doctor, cms.sign(other_text, key, cert), "different content"),
        (doctor, cms.sign(other_text, key, cert, detached=True), "different content"),
        (doctor_detached, cms.sign(other_text, key, cert), "different content"),
        (doctor, other_flavour, "gmt0010"),
        (doctor_detached, other_flavour, "gmt0010"),
        (doctor, other_type, "content types"),
        (doctor_detached, other_type, "content types"),
        (doctor, doctor, "already"),
    ]
    for existing, other, message in cases:
        with pytest.raises(ValueError, match=message):
            cms.add_signer(existing, other)
    with pytest.raises(ValueError, match="different content"):
        cms.add_signer(doctor_detached, cms.sign(other_text, key, cert, detached=True))
    with pytest.raises(DecodeError):
        cms.add_signer(doctor, b"\x30\x03\x02\x01\x01")
    with pytest.raises(DecodeError):
        cms.add_signer(pki.doctor.der, doctor)
    # PEM is accepted as input; the result is DER.
    merged = cms.add_signer(cms.to_pem(doctor), cms.to_pem(cms.sign(PRESCRIPTION, key, cert)))
    assert cms.verify(merged, trust_roots=[pki.root], intermediates=[pki.issuing]).valid
