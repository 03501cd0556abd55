"""The built-in CA on the appliance (both engines): hierarchies under the KEK, issuance from a
CSR, revocation reflected at once in the published CRLs and in OCSP, refusals that store
nothing, and who may do what."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from appliance.custody import KeyHolder
from appliance.errors import Conflict, Forbidden, NotFound, Sealed, ValidationFailed
from appliance.services.ca import CaService
from appliance.storage import Database, schema
from ca_client import SubjectInfo
from signcore import ocsp
from signcore.keys import generate_private_key
from signcore.path import validate_path
from signcore.x509 import build_csr, load_certificate, load_crl

DOCTOR = SubjectInfo(common_name="赵六", organization="测试医院", department="心内科",
                     title="副主任医师", unique_id="U9988776655443322")
BASE = "https://ca.hospital.test"


@dataclasses.dataclass
class Actor:
    id: int = 1
    name: str = "sec"
    role: str = "security_admin"
    kind: str = "admin"


@pytest.fixture
def service(database: Database, holder: KeyHolder) -> Iterator[CaService]:
    yield CaService(database, holder, public_url=BASE)


def _csr(key_spec: str) -> bytes:
    return build_csr(generate_private_key(key_spec), "CN=ignored").der


@pytest.mark.parametrize(("algorithm", "key_spec"), [("sm2", "sm2"), ("rsa", "rsa2048")])
def test_issue_revoke_publish(service: CaService, algorithm: str, key_spec: str) -> None:
    authority = service.initialize(Actor(), algorithm, "测试医院")
    assert authority.id == f"{algorithm}-g1" and authority.status == "active"
    info = service.issue(Actor(), algorithm=algorithm, profile="doctor-signing", subject=DOCTOR,
                         csr_der=_csr(key_spec))
    cert = load_certificate(info.der)
    validate_path(cert, trust_roots=[authority.root], intermediates=[authority.certificate])
    assert cert.extensions.crl_urls == (f"{BASE}/crl/{authority.id}.crl",)
    assert cert.extensions.freshest_crl_urls == (f"{BASE}/crl/{authority.id}-delta.crl",)
    assert cert.extensions.ocsp_urls == (f"{BASE}/ocsp",)
    assert info.created_by == "admin:sec" or info.created_by.endswith("sec")

    def status() -> ocsp.CertStatus:
        cert_id = ocsp.CertId.of(cert.serial_number, authority.certificate)
        response = ocsp.load_response(service.ocsp(ocsp.build_request([cert_id]).der))
        response.verify(authority.certificate)
        single = response.status_of(cert_id)
        assert single is not None
        return single.status

    assert status() is ocsp.CertStatus.GOOD
    before = load_crl(service.crl(authority.id))
    before.verify_signature(authority.certificate.public_key())
    assert before.is_revoked(cert.serial_number) is None
    revoked = service.revoke(Actor(), info.id, "key_compromise")
    assert revoked.to_json()["status"] == "revoked"
    assert status() is ocsp.CertStatus.REVOKED
    full = load_crl(service.crl(authority.id))
    delta = load_crl(service.crl(authority.id, delta=True))
    assert full.is_revoked(cert.serial_number) is not None
    assert delta.is_revoked(cert.serial_number) is not None
    assert delta.delta_crl_indicator is not None and full.crl_number is not None
    assert delta.crl_number is not None and delta.crl_number > full.crl_number > (
        before.crl_number or 0)
    with pytest.raises(Conflict, match="已于"):
        service.revoke(Actor(), info.id, "superseded")
    items, total = service.search(status="revoked")
    assert total == 1 and items[0].id == info.id
    assert service.search(query=info.serial_hex[:10])[1] == 1
    assert service.search(query="赵六")[1] == 1 and service.search(query="nobody")[1] == 0


def test_refusals_store_nothing(service: CaService, database: Database) -> None:
    with pytest.raises(Conflict, match="尚未创建"):
        service.issue(Actor(), algorithm="sm2", profile="doctor-signing", subject=DOCTOR,
                      csr_der=_csr("sm2"))
    service.initialize(Actor(), "sm2", "测试医院")
    bad = [
        dict(profile="doctor-signing", subject=DOCTOR, csr_der=_csr("rsa2048")),
        dict(profile="dentist", subject=DOCTOR, csr_der=_csr("sm2")),
        dict(profile="doctor-signing", subject=dataclasses.replace(DOCTOR, unique_id=""),
             csr_der=_csr("sm2")),
        dict(profile="doctor-signing", subject=DOCTOR, csr_der=b"\x30\x03\x02\x01\x00"),
    ]
    for kwargs in bad:
        with pytest.raises(ValidationFailed):
            service.issue(Actor(), algorithm="sm2", **kwargs)  # type: ignore[arg-type]
    with database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.certificates)).scalar() == 0
    with pytest.raises(ValidationFailed):
        service.initialize(Actor(), "dsa", "测试医院")
    with pytest.raises(NotFound):
        service.revoke(Actor(), 999, "superseded")
    with pytest.raises(NotFound):
        service.crl("sm2-g9")


def test_only_the_security_administrator(service: CaService) -> None:
    for role in ("system_admin", "audit_admin", "reviewer"):
        with pytest.raises(Forbidden):
            service.initialize(Actor(role=role), "sm2", "测试医院")
    service.initialize(None, "sm2", "测试医院")  # the operator's CLI
    with pytest.raises(Forbidden):
        service.issue(Actor(role="reviewer"), algorithm="sm2", profile="doctor-signing",
                      subject=DOCTOR, csr_der=_csr("sm2"))


def test_a_new_generation_retires_the_old_one_which_still_answers(service: CaService) -> None:
    first = service.initialize(Actor(), "sm2", "测试医院")
    old = service.issue(Actor(), algorithm="sm2", profile="nurse-signing", subject=DOCTOR,
                        csr_der=_csr("sm2"))
    second = service.initialize(Actor(), "sm2", "测试医院")
    assert second.id == "sm2-g2"
    assert [a.status for a in service.authorities()] == ["retired", "active"]
    new = service.issue(Actor(), algorithm="sm2", profile="nurse-signing", subject=DOCTOR,
                        csr_der=_csr("sm2"))
    assert (old.issuer_id, new.issuer_id) == (first.id, second.id)
    service.revoke(Actor(), old.id, "superseded")  # the retired CA still revokes and answers
    cert = load_certificate(old.der)
    cert_id = ocsp.CertId.of(cert.serial_number, first.certificate)
    response = ocsp.load_response(service.ocsp(ocsp.build_request([cert_id]).der))
    assert response.verify(first.certificate) == first.certificate
    assert response.status_of(cert_id).status is ocsp.CertStatus.REVOKED  # type: ignore[union-attr]


def test_sealed_serves_the_published_crl_and_refuses_to_sign(service: CaService,
                                                             holder: KeyHolder) -> None:
    authority = service.initialize(Actor(), "rsa", "测试医院")
    published = service.crl(authority.id)
    holder.seal()
    assert service.crl(authority.id) == published  # relying parties still get it
    with pytest.raises(Sealed):
        service.ocsp(b"\x30\x00")


def test_crl_is_republished_when_old(service: CaService, database: Database) -> None:
    clock_now = [dt.datetime.now(dt.UTC).replace(microsecond=0)]
    service._clock = lambda: clock_now[0]  # type: ignore[method-assign]
    authority = service.initialize(Actor(), "sm2", "测试医院")
    first = load_crl(service.crl(authority.id))
    assert load_crl(service.crl(authority.id)).crl_number == first.crl_number  # cached
    clock_now[0] += dt.timedelta(hours=2)
    later = load_crl(service.crl(authority.id))
    assert (later.crl_number or 0) > (first.crl_number or 0)
    assert later.this_update == clock_now[0]
