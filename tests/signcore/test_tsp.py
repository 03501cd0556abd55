"""RFC 3161 time stamps (signcore.tsp): requests, tokens, responses, and what verification reports.

Tokens are made by signcore's TSA half (build_token/build_response) for SM2/SM3, RSA/SHA-256 and
ECDSA TSAs of the declared test PKI; bad tokens that build_token refuses to make are assembled
with signcore.cms.sign and asn1crypto directly.  Every failure of a parseable token must come
back in ``problems``; only undecodable input raises (DecodeError), and a refused request raises
SigncoreError from verify_response.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import pytest
from asn1crypto import cms as acms
from asn1crypto import core, tsp
from asn1crypto import x509 as ax509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signcore import cms, hashes
from signcore import tsp as sc_tsp
from signcore.algorithms import OID_SM3
from signcore.errors import DecodeError, SigncoreError, UnsupportedAlgorithm
from signcore.hashes import HashAlgorithm
from signcore.keys import PrivateKey
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, Extensions
from tests.support import gmssl_oracle
from tests.support.pki import TestPKI, cached_pki, issue_leaf

OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
POLICY = "2.999.7.1"
OTHER_POLICY = "2.999.7.2"
DOCUMENT = "电子病历 EMR-2025-000123: 诊断 上呼吸道感染\n".encode()

#: TSA key type -> the hash its requests use (SM2 with SM3, the others with SHA-256).
TSA_HASH = {"sm2": HashAlgorithm.SM3, "rsa2048": HashAlgorithm.SHA256,
            "ecdsa-p256": HashAlgorithm.SHA256}

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=list(TSA_HASH))
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def gen_time_of(pki: TestPKI) -> dt.datetime:
    """A fixed genTime inside the validity of the PKI's TSA certificate (with fractions)."""
    return pki.now - dt.timedelta(hours=1, microseconds=750000)


def stamp(pki: TestPKI, request: sc_tsp.TimestampRequest, *, serial: int = 4711,
          policy: str = POLICY, gen_time: dt.datetime | None = None,
          accuracy: dt.timedelta | None = dt.timedelta(seconds=1),
          certificate: Certificate | None = None, key: PrivateKey | None = None,
          extra: Sequence[Certificate] | None = None) -> bytes:
    return sc_tsp.build_token(
        hash_algorithm=request.hash_algorithm, message_imprint=request.message_imprint,
        signer=key or pki.tsa_key, certificate=certificate or pki.tsa, serial_number=serial,
        policy=policy, gen_time=gen_time or gen_time_of(pki), accuracy=accuracy,
        nonce=request.nonce,
        extra_certificates=[pki.issuing] if extra is None else extra)


def request_for(pki: TestPKI, data: bytes = DOCUMENT, **kwargs: object) -> sc_tsp.TimestampRequest:
    return sc_tsp.build_request(data=data, hash_algorithm=TSA_HASH[pki.key_type],
                                **kwargs)  # type: ignore[arg-type]


def signed_data(token: bytes) -> acms.SignedData:
    info = acms.ContentInfo.load(token)
    assert info.dump() == token
    assert info["content_type"].dotted == "1.2.840.113549.1.7.2"
    return info["content"]


def tst_info_der(pki: TestPKI, imprint: bytes, hash_oid: str, *, nonce: int | None = None,
                 policy: str = POLICY, **fields: object) -> bytes:
    value: dict[str, object] = {
        "version": "v1", "policy": policy,
        "message_imprint": {"hash_algorithm": {"algorithm": hash_oid},
                            "hashed_message": imprint},
        "serial_number": 99, "gen_time": gen_time_of(pki), **fields}
    if nonce is not None:
        value["nonce"] = nonce
    return bytes(tsp.TSTInfo(value).dump())


def ess_v2(cert: Certificate, *, sm3: bool = False,
           certs: list[dict[str, object]] | None = None) -> acms.CMSAttribute:
    """An ESS signing-certificate-v2 attribute binding ``cert``, built with asn1crypto."""
    if certs is None:
        ident: dict[str, object] = {
            "cert_hash": hashes.sm3(cert.der) if sm3 else hashlib.sha256(cert.der).digest(),
            "issuer_serial": {
                "issuer": [ax509.GeneralName(name="directory_name", value=cert.issuer_name)],
                "serial_number": cert.serial_number},
        }
        if sm3:
            ident["hash_algorithm"] = {"algorithm": OID_SM3}
        certs = [ident]
    return acms.CMSAttribute({"type": "signing_certificate_v2",
                              "values": [{"certs": certs}]})


def hand_made_token(pki: TestPKI, request: sc_tsp.TimestampRequest, *,
                    certificate: Certificate | None = None, key: PrivateKey | None = None,
                    attributes: Sequence[acms.CMSAttribute] | None = None,
                    tst: bytes | None = None) -> bytes:
    """A token signed with cms.sign directly: what build_token would refuse to make."""
    cert = certificate or pki.tsa
    content = tst or tst_info_der(pki, request.message_imprint,
                                  OID_SM3 if request.hash_algorithm is HashAlgorithm.SM3
                                  else OID_SHA256, nonce=request.nonce)
    return cms.sign(content, key or pki.tsa_key, cert, content_type=OID_TST_INFO,
                    include_signing_time=False, extra_certificates=[pki.issuing],
                    extra_signed_attributes=[ess_v2(cert, sm3=pki.key_type == "sm2")]
                    if attributes is None else attributes)


def problems_text(result: sc_tsp.TimestampVerification) -> str:
    return " | ".join(result.problems)


# ---------------------------------------------------------------------------------------------
# Requests


def test_request_defaults_random_nonce_and_cert_req() -> None:
    first = sc_tsp.build_request(data=DOCUMENT)
    second = sc_tsp.build_request(data=DOCUMENT)
    assert first.hash_algorithm is HashAlgorithm.SHA256
    assert first.message_imprint == hashlib.sha256(DOCUMENT).digest()
    assert first.cert_req is True and first.policy is None
    for req in (first, second):
        assert req.nonce is not None and 0 < req.nonce < 2 ** 64
    assert first.nonce != second.nonce
    parsed = tsp.TimeStampReq.load(first.der)
    assert parsed.dump() == first.der
    assert parsed["version"].native == "v1"
    assert parsed["nonce"].native == first.nonce
    assert parsed["cert_req"].native is True
    assert parsed["message_imprint"]["hash_algorithm"]["algorithm"].dotted == OID_SHA256
    assert isinstance(parsed["req_policy"], core.Void)


def test_request_with_sm3_explicit_nonce_policy_and_no_cert_req() -> None:
    req = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SM3, nonce=12345,
                               cert_req=False, policy=POLICY)
    assert req.message_imprint == hashes.sm3(DOCUMENT)
    parsed = tsp.TimeStampReq.load(req.der)
    assert parsed["message_imprint"]["hash_algorithm"]["algorithm"].dotted == OID_SM3
    assert bytes(parsed["message_imprint"]["hashed_message"].native) == hashes.sm3(DOCUMENT)
    assert parsed["nonce"].native == 12345
    assert parsed["req_policy"].dotted == POLICY
    # certReq is BOOLEAN DEFAULT FALSE: DER leaves the default out.
    assert isinstance(parsed["cert_req"], core.Void) or parsed["cert_req"].native is False
    assert b"\x01\x01\x00" not in req.der
    assert (req.nonce, req.cert_req, req.policy) == (12345, False, POLICY)


def test_request_without_nonce_and_from_digest() -> None:
    digest = hashlib.sha384(DOCUMENT).digest()
    req = sc_tsp.build_request(digest=digest, hash_algorithm=HashAlgorithm.SHA384, nonce=False)
    assert req.nonce is None
    assert isinstance(tsp.TimeStampReq.load(req.der)["nonce"], core.Void)
    assert req.message_imprint == digest
    assert sc_tsp.build_request(data=DOCUMENT, nonce=7).message_imprint == \
        sc_tsp.build_request(digest=hashlib.sha256(DOCUMENT).digest(), nonce=7).message_imprint


def test_request_argument_errors() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        sc_tsp.build_request()
    with pytest.raises(ValueError, match="exactly one"):
        sc_tsp.build_request(data=b"x", digest=b"\x00" * 32)
    with pytest.raises(ValueError, match="bytes"):
        sc_tsp.build_request(digest=b"\x00" * 31)
    with pytest.raises(ValueError, match="bytes"):
        sc_tsp.build_request(digest=b"\x00" * 32, hash_algorithm=HashAlgorithm.SHA512)


@pytest.mark.parametrize("hash_algorithm", list(HashAlgorithm))
@pytest.mark.parametrize("nonce", [True, False, 1, 2 ** 64 - 1])
@pytest.mark.parametrize("cert_req", [True, False])
@pytest.mark.parametrize("policy", [None, POLICY])
def test_load_request_round_trip(hash_algorithm: HashAlgorithm, nonce: bool | int,
                                 cert_req: bool, policy: str | None) -> None:
    req = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=hash_algorithm, nonce=nonce,
                               cert_req=cert_req, policy=policy)
    assert sc_tsp.load_request(req.der) == req


def test_load_request_refuses_malformed_requests() -> None:
    good = tsp.TimeStampReq.load(sc_tsp.build_request(data=DOCUMENT).der)
    with pytest.raises(DecodeError):
        sc_tsp.load_request(b"")
    with pytest.raises(DecodeError):
        sc_tsp.load_request(good.dump()[:-1])
    with pytest.raises(DecodeError):
        sc_tsp.load_request(good.dump() + b"\x00")
    short = tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x00" * 20}})
    with pytest.raises(DecodeError, match="length"):
        sc_tsp.load_request(short.dump())
    v2 = tsp.TimeStampReq.load(good.dump())
    v2["version"] = 2
    with pytest.raises(DecodeError, match="version"):
        sc_tsp.load_request(v2.dump())
    md5 = tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "md5"}, "hashed_message": b"\x00" * 16}})
    with pytest.raises(UnsupportedAlgorithm):
        sc_tsp.load_request(md5.dump())


@FUZZ
@given(garbage=st.binary(max_size=512))
def test_load_request_of_garbage_is_a_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        sc_tsp.load_request(garbage)


# ---------------------------------------------------------------------------------------------
# Issuing and verifying


def test_token_response_and_verification(pki: TestPKI) -> None:
    req = request_for(pki, policy=POLICY)
    token = stamp(pki, req, serial=2 ** 100 + 5)
    response = sc_tsp.build_response(token)
    result = sc_tsp.verify_response(response, req, trust_roots=[pki.root])
    assert result.valid, result.problems
    assert result.trusted is True and result.problems == ()
    assert result.tsa_certificate == pki.tsa
    assert result.chain is not None
    assert result.chain.certificates == (pki.tsa, pki.issuing, pki.root)
    info = result.info
    assert info.policy == POLICY
    assert info.hash_algorithm is TSA_HASH[pki.key_type]
    assert info.message_imprint == hashes.digest(TSA_HASH[pki.key_type], DOCUMENT)
    assert info.serial_number == 2 ** 100 + 5
    assert info.gen_time == gen_time_of(pki)
    assert info.gen_time.microsecond == 250000
    assert info.accuracy == dt.timedelta(seconds=1)
    assert info.ordering is False
    assert info.nonce == req.nonce
    assert info.tsa_name is None
    assert sc_tsp.parse_token(token) == info
    parsed = sc_tsp.load_response(response)
    assert parsed.granted and parsed.status == "granted"
    assert parsed.token == token
    assert parsed.failure_info == () and parsed.status_text is None


def test_token_structure(pki: TestPKI) -> None:
    token = stamp(pki, request_for(pki))
    sd = signed_data(token)
    assert sd["version"].native == "v3"  # eContentType is not id-data
    assert sd["encap_content_info"]["content_type"].dotted == OID_TST_INFO
    (si,) = sd["signer_infos"]
    names = sorted(a["type"].native for a in si["signed_attrs"])
    assert names == ["content_type", "message_digest", "signing_certificate_v2"]
    ess = next(a for a in si["signed_attrs"] if a["type"].native == "signing_certificate_v2")
    (ident,) = ess["values"][0]["certs"]
    expected_hash = (hashes.sm3(pki.tsa.der) if pki.key_type == "sm2"
                     else hashlib.sha256(pki.tsa.der).digest())
    assert bytes(ident["cert_hash"].native) == expected_hash
    assert ident["issuer_serial"]["serial_number"].native == pki.tsa.serial_number
    assert ident["hash_algorithm"]["algorithm"].native == (
        "sm3" if pki.key_type == "sm2" else "sha256")
    certs = {Certificate(c.chosen) for c in sd["certificates"]}
    assert certs == {pki.tsa, pki.issuing}
    if pki.key_type == "sm2":
        public = pki.tsa.public_key()
        assert isinstance(public, SM2PublicKey)
        message = b"\x31" + si["signed_attrs"].dump()[1:]
        assert gmssl_oracle.verify(public, bytes(si["signature"].native), message)


def test_verify_token_with_data_digest_or_request(pki: TestPKI) -> None:
    req = request_for(pki)
    token = stamp(pki, req)
    digest = hashes.digest(TSA_HASH[pki.key_type], DOCUMENT)
    for kwargs in ({"data": DOCUMENT}, {"digest": digest}, {"request": req}):
        with_roots = sc_tsp.verify_token(token, trust_roots=[pki.root], **kwargs)
        assert with_roots.valid, (kwargs, with_roots.problems)
        assert with_roots.trusted is True
        without = sc_tsp.verify_token(token, **kwargs)
        assert without.valid and without.trusted is None and without.chain is None


def test_tsa_chain_through_supplied_intermediates(pki: TestPKI) -> None:
    req = request_for(pki)
    token = stamp(pki, req, extra=[])
    lonely = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root])
    assert not lonely.valid and lonely.trusted is False
    assert "chain" in problems_text(lonely)
    helped = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root],
                                 intermediates=[pki.issuing])
    assert helped.valid, helped.problems


@pytest.mark.parametrize("accuracy", [None, dt.timedelta(milliseconds=250),
                                      dt.timedelta(seconds=3, milliseconds=5)])
def test_accuracy_round_trip(accuracy: dt.timedelta | None) -> None:
    pki = cached_pki("sm2")
    token = stamp(pki, request_for(pki), accuracy=accuracy)
    assert sc_tsp.parse_token(token).accuracy == accuracy
    tst = tsp.TSTInfo.load(bytes(signed_data(token)["encap_content_info"]["content"].contents))
    assert isinstance(tst["accuracy"], core.Void) == (accuracy is None)


def test_hand_made_tst_info_fields_are_parsed() -> None:
    """Fields build_token never writes: micros, ordering, a TSA name."""
    pki = cached_pki("rsa2048")
    req = request_for(pki)
    tst = tst_info_der(pki, req.message_imprint, OID_SHA256, nonce=req.nonce,
                       accuracy={"seconds": 1, "millis": 2, "micros": 3}, ordering=True,
                       tsa=ax509.GeneralName(name="directory_name",
                                             value=pki.tsa.subject_name))
    token = hand_made_token(pki, req, tst=tst)
    info = sc_tsp.parse_token(token)
    assert info.accuracy == dt.timedelta(seconds=1, milliseconds=2, microseconds=3)
    assert info.ordering is True
    assert info.tsa_name is not None and "medsign test TSA RSA" in info.tsa_name
    assert info.serial_number == 99
    assert info.gen_time == gen_time_of(pki)
    result = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root])
    assert result.valid, result.problems


def test_gen_time_precision_and_default() -> None:
    pki = cached_pki("ecdsa-p256")
    req = request_for(pki)
    for when in (dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                 dt.datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
                 dt.datetime(2025, 1, 2, 11, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))):
        assert sc_tsp.parse_token(stamp(pki, req, gen_time=when)).gen_time == when
    before = dt.datetime.now(dt.UTC)
    token = sc_tsp.build_token(hash_algorithm=req.hash_algorithm,
                               message_imprint=req.message_imprint, signer=pki.tsa_key,
                               certificate=pki.tsa, serial_number=1, policy=POLICY)
    gen_time = sc_tsp.parse_token(token).gen_time
    assert before - dt.timedelta(seconds=1) <= gen_time <= dt.datetime.now(dt.UTC)


def test_build_token_argument_errors() -> None:
    pki = cached_pki("sm2")
    with pytest.raises(ValueError, match="length"):
        sc_tsp.build_token(hash_algorithm=HashAlgorithm.SM3, message_imprint=b"\x00" * 20,
                           signer=pki.tsa_key, certificate=pki.tsa, serial_number=1,
                           policy=POLICY)


# ---------------------------------------------------------------------------------------------
# Failures are reported, not raised


def test_wrong_data_or_digest(pki: TestPKI) -> None:
    token = stamp(pki, request_for(pki))
    for kwargs in ({"data": DOCUMENT + b" "}, {"digest": b"\x00" * 32},
                   {"digest": b"\x00" * 5}):
        result = sc_tsp.verify_token(token, trust_roots=[pki.root], **kwargs)
        assert not result.valid
        assert result.trusted is True
        assert "message imprint" in problems_text(result)


def test_wrong_nonce(pki: TestPKI) -> None:
    req = request_for(pki, nonce=1001)
    token = stamp(pki, req)
    assert sc_tsp.verify_token(token, request=req).valid
    for other in (request_for(pki, nonce=1002), request_for(pki, nonce=False)):
        result = sc_tsp.verify_token(token, request=other, trust_roots=[pki.root])
        assert not result.valid
        assert "nonce" in problems_text(result)
    # A token without the nonce the request asked for.
    no_nonce = stamp(pki, request_for(pki, nonce=False))
    result = sc_tsp.verify_response(sc_tsp.build_response(no_nonce), req)
    assert not result.valid and "nonce" in problems_text(result)


def test_wrong_policy(pki: TestPKI) -> None:
    req = request_for(pki, policy=OTHER_POLICY)
    result = sc_tsp.verify_token(stamp(pki, req, policy=POLICY), request=req)
    assert not result.valid
    assert "policy" in problems_text(result)
    # A request that names no policy accepts the TSA's.
    unspecified = request_for(pki)
    assert sc_tsp.verify_token(stamp(pki, unspecified, policy=OTHER_POLICY),
                               request=unspecified).valid


def test_hash_algorithm_other_than_requested() -> None:
    pki = cached_pki("rsa2048")
    req = request_for(pki)
    sha512 = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SHA512,
                                  nonce=req.nonce)
    token = stamp(pki, sha512)
    result = sc_tsp.verify_token(token, request=req)
    assert not result.valid
    assert "hash algorithm" in problems_text(result)
    assert sc_tsp.verify_token(token, data=DOCUMENT).valid  # hashed with the token's algorithm


@pytest.mark.parametrize("case", ["no-eku", "eku-not-critical", "eku-not-only-timestamping"])
def test_tsa_certificate_without_critical_timestamping_eku(pki: TestPKI, case: str) -> None:
    if case == "no-eku":
        cert, key = pki.doctor, pki.doctor_key  # emailProtection, not critical
    else:
        ekus = (("time_stamping",) if case == "eku-not-critical"
                else ("time_stamping", "email_protection"))
        cert, key = issue_leaf(pki, "CN=not quite a TSA,O=测试医院,C=CN", extensions=Extensions(
            ca=False, key_usage=frozenset({"digital_signature"}), extended_key_usage=ekus,
            extended_key_usage_critical=case != "eku-not-critical"))
    req = request_for(pki)
    with pytest.raises(UnsupportedAlgorithm, match=r"(?i)timestamping|extended key usage"):
        stamp(pki, req, certificate=cert, key=key)
    token = hand_made_token(pki, req, certificate=cert, key=key)
    result = sc_tsp.verify_token(token, request=req)
    assert not result.valid
    assert result.trusted is None
    assert "extended key usage" in problems_text(result)
    assert result.tsa_certificate == cert
    with_roots = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root])
    assert not with_roots.valid
    if case == "no-eku":
        assert with_roots.trusted is False  # the chain needs the timeStamping EKU too
        assert "time_stamping" in problems_text(with_roots)


def test_missing_ess_attribute(pki: TestPKI) -> None:
    req = request_for(pki)
    token = hand_made_token(pki, req, attributes=[])
    result = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root])
    assert not result.valid
    assert result.trusted is True
    assert "ESS" in problems_text(result)


def test_ess_hash_of_another_certificate(pki: TestPKI) -> None:
    req = request_for(pki)
    wrong = [ess_v2(pki.doctor, sm3=pki.key_type == "sm2")]
    result = sc_tsp.verify_token(hand_made_token(pki, req, attributes=wrong), request=req,
                                 trust_roots=[pki.root])
    assert not result.valid
    assert "does not match the TSA certificate" in problems_text(result)
    # The right hash with another serial number in issuerSerial.
    ident = {"cert_hash": (hashes.sm3(pki.tsa.der) if pki.key_type == "sm2"
                           else hashlib.sha256(pki.tsa.der).digest()),
             "issuer_serial": {"issuer": [ax509.GeneralName(name="directory_name",
                                                            value=pki.tsa.issuer_name)],
                               "serial_number": pki.tsa.serial_number + 1}}
    if pki.key_type == "sm2":
        ident["hash_algorithm"] = {"algorithm": OID_SM3}
    result = sc_tsp.verify_token(
        hand_made_token(pki, req, attributes=[ess_v2(pki.tsa, certs=[ident])]), request=req)
    assert not result.valid
    assert "serial" in problems_text(result)


def test_ess_v1_signing_certificate_is_understood() -> None:
    pki = cached_pki("rsa2048")
    req = request_for(pki)

    def ess_v1(cert: Certificate) -> acms.CMSAttribute:
        return acms.CMSAttribute({"type": "signing_certificate", "values": [
            {"certs": [{"cert_hash": hashlib.sha1(cert.der).digest()}]}]})  # noqa: S324

    good = hand_made_token(pki, req, attributes=[ess_v1(pki.tsa)])
    assert sc_tsp.verify_token(good, request=req, trust_roots=[pki.root]).valid
    bad = hand_made_token(pki, req, attributes=[ess_v1(pki.doctor)])
    result = sc_tsp.verify_token(bad, request=req, trust_roots=[pki.root])
    assert not result.valid and "ESS" in problems_text(result)


def test_ess_attribute_without_certificates_is_a_problem() -> None:
    pki = cached_pki("sm2")
    req = request_for(pki)
    token = hand_made_token(pki, req, attributes=[ess_v2(pki.tsa, certs=[])])
    result = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root])
    assert not result.valid
    assert "ESS" in problems_text(result)


def test_chain_to_wrong_root(pki: TestPKI) -> None:
    req = request_for(pki)
    token = stamp(pki, req)
    other = cached_pki("sm2" if pki.key_type != "sm2" else "rsa2048")
    result = sc_tsp.verify_token(token, request=req, trust_roots=[other.root])
    assert result.trusted is False
    assert not result.valid
    assert result.chain is None
    assert "chain" in problems_text(result)
    response = sc_tsp.verify_response(sc_tsp.build_response(token), req,
                                      trust_roots=[other.root])
    assert response.trusted is False and not response.valid


def test_tsa_chain_is_validated_at_gen_time() -> None:
    pki = cached_pki("ecdsa-p256")
    cert, key = issue_leaf(
        pki, "CN=retired TSA,O=测试医院,C=CN",
        not_before=pki.now - dt.timedelta(days=300), not_after=pki.now - dt.timedelta(days=30),
        extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature"}),
                              extended_key_usage=("time_stamping",),
                              extended_key_usage_critical=True))
    req = request_for(pki)
    then = pki.now - dt.timedelta(days=100)
    token = stamp(pki, req, certificate=cert, key=key, gen_time=then)
    assert sc_tsp.verify_token(token, request=req, trust_roots=[pki.root]).valid
    now = sc_tsp.verify_token(token, request=req, trust_roots=[pki.root], at=pki.now)
    assert now.trusted is False and "not valid at" in problems_text(now)
    late = stamp(pki, req, certificate=cert, key=key, gen_time=pki.now)
    assert sc_tsp.verify_token(late, request=req, trust_roots=[pki.root]).trusted is False


@FUZZ
@given(key_type=st.sampled_from(list(TSA_HASH)), data=st.data())
def test_tampered_token_is_a_problem_or_decode_error(key_type: str, data: st.DataObject) -> None:
    pki = cached_pki(key_type)
    req = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=TSA_HASH[key_type], nonce=77)
    token = _fixed_token(key_type)
    si = signed_data(token)["signer_infos"][0]
    tst = bytes(signed_data(token)["encap_content_info"]["content"].contents)
    region = data.draw(st.sampled_from([tst, si["signed_attrs"].dump(),
                                        si["signature"].dump()]), label="region")
    start = token.index(region)
    index = data.draw(st.integers(0, len(region) - 1), label="index")
    tampered = bytearray(token)
    tampered[start + index] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        result = sc_tsp.verify_token(bytes(tampered), request=req, trust_roots=[pki.root])
    except (DecodeError, UnsupportedAlgorithm):  # unparseable, or an unknown imprint hash OID
        return
    assert not result.valid
    assert result.problems


_TOKENS: dict[str, bytes] = {}
_RESPONSES: dict[str, bytes] = {}


def _fixed_token(key_type: str) -> bytes:
    if key_type not in _TOKENS:
        pki = cached_pki(key_type)
        req = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=TSA_HASH[key_type], nonce=77)
        _TOKENS[key_type] = stamp(pki, req, gen_time=pki.now)
    return _TOKENS[key_type]


def test_token_with_two_signers_is_a_problem() -> None:
    pki = cached_pki("sm2")
    req = request_for(pki)
    info = acms.ContentInfo.load(stamp(pki, req))
    si = info["content"]["signer_infos"][0]
    info["content"]["signer_infos"] = [si, si.copy()]
    result = sc_tsp.verify_token(bytes(info.dump()), request=req, trust_roots=[pki.root])
    assert not result.valid
    assert "exactly one signer" in problems_text(result)


def test_tokens_that_are_no_tokens_are_decode_errors() -> None:
    pki = cached_pki("sm2")
    req = request_for(pki)
    signed_document = cms.sign(DOCUMENT, pki.doctor_key, pki.doctor)
    with pytest.raises(DecodeError, match="TSTInfo"):
        sc_tsp.verify_token(signed_document, request=req)
    detached = cms.sign(tst_info_der(pki, req.message_imprint, OID_SM3), pki.tsa_key, pki.tsa,
                        content_type=OID_TST_INFO, detached=True)
    with pytest.raises(DecodeError, match="no TSTInfo"):
        sc_tsp.parse_token(detached)
    with pytest.raises(DecodeError):
        sc_tsp.verify_token(b"\x30\x00", data=DOCUMENT)


# ---------------------------------------------------------------------------------------------
# Responses


@pytest.mark.parametrize("text", ["unsupported hash algorithm", None])
def test_rejection_response(text: str | None) -> None:
    der = sc_tsp.build_response(status="rejection", failure_info=["bad_alg"], status_text=text)
    parsed = sc_tsp.load_response(der)
    assert parsed.status == "rejection"
    assert not parsed.granted
    assert parsed.failure_info == ("bad_alg",)
    assert parsed.status_text == text
    assert parsed.token is None
    # RFC 3161 2.4.2: a rejection is a SEQUENCE with the status only (asn1crypto's own
    # TimeStampResp wrongly requires the token, so read the status by hand).
    raw = core.Sequence.load(der)
    assert len(raw) == 1
    status = tsp.PKIStatusInfo.load(raw[0].dump())
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {"bad_alg"}
    req = sc_tsp.build_request(data=DOCUMENT)
    with pytest.raises(SigncoreError, match="bad_alg") as refused:
        sc_tsp.verify_response(der, req)
    if text:
        assert text in str(refused.value)  # the failure code and the TSA's text, both


def test_other_refusals() -> None:
    req = sc_tsp.build_request(data=DOCUMENT)
    waiting = sc_tsp.build_response(status="waiting")
    assert sc_tsp.load_response(waiting).status == "waiting"
    with pytest.raises(SigncoreError, match="waiting"):
        sc_tsp.verify_response(waiting, req)
    several = sc_tsp.build_response(status="rejection",
                                    failure_info=["unaccepted_policy", "bad_request"])
    assert sc_tsp.load_response(several).failure_info == ("bad_request", "unaccepted_policy")
    with pytest.raises(SigncoreError, match="unaccepted_policy"):
        sc_tsp.verify_response(several, req)


def test_granted_response_without_token_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no token"):
        sc_tsp.load_response(sc_tsp.build_response(None))


@FUZZ
@given(garbage=st.binary(max_size=1024))
def test_load_response_of_garbage_is_a_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        sc_tsp.load_response(garbage)


@FUZZ
@given(key_type=st.sampled_from(list(TSA_HASH)), data=st.data())
def test_truncated_response_is_a_decode_error(key_type: str, data: st.DataObject) -> None:
    response = _RESPONSES.get(key_type) or _RESPONSES.setdefault(
        key_type, sc_tsp.build_response(_fixed_token(key_type)))
    cut = data.draw(st.integers(0, len(response) - 1), label="cut")
    with pytest.raises(DecodeError):
        sc_tsp.load_response(response[:cut])
    with pytest.raises(DecodeError):
        sc_tsp.load_response(response + b"\x00")


def test_token_with_an_unsupported_imprint_hash_is_refused() -> None:
    """A SHA-1 imprint (legacy TSAs) cannot be checked: UnsupportedAlgorithm, not 'valid'."""
    pki = cached_pki("rsa2048")
    req = request_for(pki)
    sha1 = hashlib.sha1(DOCUMENT).digest()  # noqa: S324
    token = hand_made_token(pki, req, tst=tst_info_der(pki, sha1, "1.3.14.3.2.26"))
    with pytest.raises(UnsupportedAlgorithm):
        sc_tsp.verify_token(token, data=DOCUMENT)


def test_a_token_is_verified_against_something() -> None:
    pki = cached_pki("sm2")
    req = sc_tsp.build_request(data=DOCUMENT, hash_algorithm=HashAlgorithm.SM3)
    token = stamp(pki, req)
    with pytest.raises(ValueError, match="data, its digest or the request"):
        sc_tsp.verify_token(token, trust_roots=[pki.root])
