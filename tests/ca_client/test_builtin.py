"""The built-in CA: hierarchies, issuance by profile, refusals that store nothing, revocation,
CRLs (full and delta) and OCSP answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import pytest
from asn1crypto import core

from ca_client import (
    PROFILES,
    AlreadyRevoked,
    BuiltinCa,
    CaUrls,
    Hierarchy,
    IssuerUnusable,
    MemoryRepository,
    OcspResponder,
    RequestRejected,
    SubjectInfo,
    UnknownCertificate,
    generate_hierarchy,
)
from ca_client.profiles import OID_IDENTIFY_CODE
from signcore import ocsp
from signcore.keys import generate_private_key
from signcore.path import validate_path
from signcore.x509 import CertificateRequest, build_csr, load_csr

URLS = CaUrls(crl="http://ca.example.test/crl/sm2-1.crl", ocsp="http://ca.example.test/ocsp",
              ca_issuers="http://ca.example.test/ca/sm2-1.crt")
DOCTOR = SubjectInfo(common_name="张三", organization="测试医院", department="内科",
                     title="主治医师", unique_id="U1A2B3C4D5E6F708")
KEY_SPECS = {"sm2": "sm2", "rsa": "rsa2048"}


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


@functools.cache
def _hierarchy(algorithm: str) -> Hierarchy:
    return generate_hierarchy(algorithm, "测试医院")


@dataclasses.dataclass
class Ca:
    hierarchy: Hierarchy
    repository: MemoryRepository
    clock: Clock
    ca: BuiltinCa

    def csr(self, key_spec: str | None = None, subject: str = "CN=x") -> CertificateRequest:
        key = generate_private_key(key_spec or KEY_SPECS[self.hierarchy.algorithm])
        return build_csr(key, subject)


@pytest.fixture(params=["sm2", "rsa"])
def ca(request: pytest.FixtureRequest) -> Ca:
    hierarchy = _hierarchy(request.param)
    repository, clock = MemoryRepository(), Clock()
    built = BuiltinCa(f"{request.param}-1", hierarchy.issuing, hierarchy.issuing_key, repository,
                      chain=[hierarchy.root], urls=URLS, clock=clock)
    return Ca(hierarchy, repository, clock, built)


def test_hierarchy_shape(ca: Ca) -> None:
    h = ca.hierarchy
    assert h.root.is_self_issued and h.root.is_ca and h.issuing.is_ca
    assert h.root.extensions.path_length == 1 and h.issuing.extensions.path_length == 0
    h.issuing.verify_signature(h.root.public_key())
    assert "根 CA" in h.root.subject and "签发 CA" in h.issuing.subject


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_issues_a_valid_certificate(ca: Ca, name: str) -> None:
    chosen = PROFILES[name]
    subject = DOCTOR if chosen.person else dataclasses.replace(
        DOCTOR, common_name="medsign.hospital.test", unique_id="",
        dns_names=("medsign.hospital.test",) if chosen.dns_names_allowed else ())
    record = ca.ca.issue(name, subject, csr=ca.csr())
    cert = record.certificate
    assert ca.repository.find_issued(ca.ca.ca_id, cert.serial_number) == record
    validate_path(cert, trust_roots=[ca.hierarchy.root], intermediates=[ca.hierarchy.issuing],
                  required_eku=chosen.extended_key_usage[0] if chosen.extended_key_usage
                  else None)
    assert cert.extensions.key_usage == chosen.key_usage
    assert cert.extensions.crl_urls == (URLS.crl,) and cert.extensions.ocsp_urls == (URLS.ocsp,)
    assert cert.not_before <= ca.clock.now <= cert.not_after
    assert cert.not_after - cert.not_before <= dt.timedelta(days=chosen.validity_days, minutes=5)
    if chosen.person:
        assert "CN=张三" in cert.subject and "OU=内科" in cert.subject
        identify = [e for e in cert.extensions.extra if e["extn_id"].dotted == OID_IDENTIFY_CODE]
        assert core.UTF8String.load(identify[0]["extn_value"].native).native == DOCTOR.unique_id


def test_validity_never_outlives_the_issuing_ca(ca: Ca) -> None:
    ca.clock.now = ca.hierarchy.issuing.not_after - dt.timedelta(days=30)
    cert = ca.ca.issue("doctor-signing", DOCTOR, csr=ca.csr()).certificate
    assert cert.not_after == ca.hierarchy.issuing.not_after


def test_refusals_store_nothing(ca: Ca) -> None:
    other = "rsa2048" if ca.hierarchy.algorithm == "sm2" else "sm2"
    good = ca.csr()
    tampered = bytearray(good.der)
    tampered[-3] ^= 1
    cases = [
        (lambda: ca.ca.issue("doctor-signing", DOCTOR, csr=ca.csr(other)), "cannot be certified"),
        (lambda: ca.ca.issue("dentist", DOCTOR, csr=good), "unknown certificate profile"),
        (lambda: ca.ca.issue("doctor-signing", dataclasses.replace(DOCTOR, unique_id=""),
                             csr=good), "unique identifier"),
        (lambda: ca.ca.issue("doctor-signing", dataclasses.replace(
            DOCTOR, dns_names=("x.test",)), csr=good), "DNS"),
        (lambda: ca.ca.issue("doctor-signing", dataclasses.replace(DOCTOR, common_name=" "),
                             csr=good), "common name"),
        (lambda: ca.ca.issue("doctor-signing", dataclasses.replace(DOCTOR, title="\x07"),
                             csr=good), "control"),
        (lambda: ca.ca.issue("doctor-signing", DOCTOR, csr=good, validity_days=10_000),
         "validity"),
        (lambda: ca.ca.issue("doctor-signing", DOCTOR), "exactly one"),
    ]
    for attempt, message in cases:
        with pytest.raises(RequestRejected, match=message):
            attempt()  # type: ignore[no-untyped-call]
    try:
        bad = load_csr(bytes(tampered))
    except ValueError:
        pass  # the flipped byte broke the DER itself: refused even earlier
    else:
        with pytest.raises(RequestRejected, match="proof of possession"):
            ca.ca.issue("doctor-signing", DOCTOR, csr=bad)
    ca.clock.now = ca.hierarchy.issuing.not_after + dt.timedelta(days=1)
    with pytest.raises(IssuerUnusable):
        ca.ca.issue("doctor-signing", DOCTOR, csr=good)
    assert ca.repository.revoked(ca.ca.ca_id) == []
    assert not ca.repository._issued


def test_revocation_crl_and_delta(ca: Ca) -> None:
    first = ca.ca.issue("doctor-signing", DOCTOR, csr=ca.csr()).certificate
    second = ca.ca.issue("nurse-signing", DOCTOR, csr=ca.csr()).certificate
    ca.ca.revoke(first.serial_number, "key_compromise")
    with pytest.raises(AlreadyRevoked):
        ca.ca.revoke(first.serial_number, "superseded")
    with pytest.raises(UnknownCertificate):
        ca.ca.revoke(12345)
    with pytest.raises(RequestRejected, match="reason"):
        ca.ca.revoke(second.serial_number, "because")
    base = ca.ca.crl(1)
    base.verify_signature(ca.hierarchy.issuing.public_key())
    assert base.crl_number == 1 and base.delta_crl_indicator is None
    revoked = base.is_revoked(first.serial_number)
    assert revoked is not None and revoked.reason == "key_compromise"
    assert base.is_revoked(second.serial_number) is None
    ca.clock.now += dt.timedelta(minutes=10)
    ca.ca.revoke(second.serial_number, "superseded")
    delta = ca.ca.crl(2, delta_of=(1, base.this_update + dt.timedelta(seconds=1)))
    assert delta.delta_crl_indicator == 1 and delta.crl_number == 2
    assert set(delta.revoked()) == {second.serial_number}
    assert set(ca.ca.crl(3).revoked()) == {first.serial_number, second.serial_number}


def test_ocsp_answers(ca: Ca) -> None:
    good = ca.ca.issue("doctor-signing", DOCTOR, csr=ca.csr()).certificate
    bad = ca.ca.issue("doctor-signing", DOCTOR, csr=ca.csr()).certificate
    ca.ca.revoke(bad.serial_number, "key_compromise")
    issuing = ca.hierarchy.issuing
    ids = [ocsp.CertId.of(c, issuing) for c in (good.serial_number, bad.serial_number, 7)]
    responder = OcspResponder([ca.ca])
    request = ocsp.build_request(ids)
    response = ocsp.load_response(responder.respond(request.der))
    assert response.verify(issuing) == issuing and response.nonce == request.nonce
    assert [response.status_of(i).status for i in ids] == [  # type: ignore[union-attr]
        ocsp.CertStatus.GOOD, ocsp.CertStatus.REVOKED, ocsp.CertStatus.UNKNOWN]
    stranger = _hierarchy("rsa" if ca.hierarchy.algorithm == "sm2" else "sm2").issuing
    foreign = ocsp.build_request([ocsp.CertId.of(good.serial_number, stranger)])
    assert ocsp.load_response(responder.respond(foreign.der)).status == "unauthorized"
    mixed = ocsp.build_request([ids[0], ocsp.CertId.of(1, stranger)])
    assert ocsp.load_response(responder.respond(mixed.der)).status == "unauthorized"
    assert ocsp.load_response(responder.respond(b"\x30\x00")).status == "malformed_request"


def test_unknown_algorithm_and_organization() -> None:
    with pytest.raises(RequestRejected, match="algorithm"):
        generate_hierarchy("dsa", "测试医院")
    with pytest.raises(RequestRejected, match="organization"):
        generate_hierarchy("sm2", " ")
