"""Long-term validity: reports are sealed B-LTA (validation data in the DSS, a document time
stamp), and the archive pass re-timestamps a report whose newest time stamp was made by a
TSA certificate about to expire -- here a real short-lived one (2 days) -- once a newer TSA
certificate exists; the report still verifies offline, now with two archive time stamps."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from appliance.services.ca import ServerKeyStore
from appliance.services.channels import ChannelService
from appliance.services.evidence import EvidenceService, newest_timestamp_expiry
from appliance.services.seals import SealService
from appliance.services.tsa import TsaService
from appliance.services.verification import VerificationService
from appliance.storage import Database, schema
from evidence.verify import verify_report
from signcore.keys import generate_private_key
from signcore.x509 import build_csr
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.evidence.conftest import TSA
from tests.appliance.evidence.test_evidence import _pdf, _report, _signed_prescription
from tests.appliance.mobile.conftest import Hospital

E = schema.evidence_reports


def _short_lived_tsa(hospital: Hospital, database: Database, days: int) -> dt.datetime:
    """A TSA certificate of ``days`` from the built-in CA, its key held by the appliance (the
    newest TSA certificate, so the TSA uses it); its notAfter."""
    appliance = hospital.site.appliance
    key = generate_private_key("sm2")
    csr = build_csr(key, "CN=测试医院短期时间戳,O=测试医院,C=CN")
    info = hospital.ca.issue(Actor(), algorithm="sm2", profile="tsa", subject=TSA,
                             csr_der=csr.der, validity_days=days)
    key_id = ServerKeyStore(database, appliance.key_holder).store(key, purpose="cert-tsa")
    with database.transaction() as conn:
        conn.execute(update(schema.certificates).where(schema.certificates.c.id == info.id)
                     .values(key_id=key_id))
    return info.not_after


def test_a_report_is_re_timestamped_before_its_tsa_expires(hospital: Hospital,
                                                           database: Database) -> None:
    appliance = hospital.site.appliance
    short = _short_lived_tsa(hospital, database, 2)
    request, _grant = _signed_prescription(hospital)
    answer = _report(hospital, {"sign_request_id": request["id"]})
    pdf = _pdf(hospital, answer)
    verdict = verify_report(pdf)
    assert verdict.ok, verdict.failures
    assert [c.name for c in verdict.checks if c.name.startswith("archive-timestamp ")]
    assert newest_timestamp_expiry(pdf) == short
    tsa = TsaService(database, appliance.key_holder, hospital.ca, appliance.config.tsa,
                     audit=appliance.audit)
    service = EvidenceService(database, appliance.audit,
                              SealService(database, appliance.key_holder, hospital.ca, tsa=tsa),
                              hospital.ca, VerificationService(hospital.ca), tsa=tsa)
    # Only the short-lived TSA certificate: re-stamping would not help; nothing changes.
    done, failed = service.retimestamp_due(within_days=30)
    assert done == 0 and len(failed) == 1 and "TSA" in failed[0]
    assert service.pdf(Actor(), answer["id"]) == pdf
    # A new TSA certificate: the report gets an archive time stamp by it.
    ChannelService(database, appliance.key_holder, hospital.ca).enroll_server_key(
        Actor(), profile="tsa", subject=TSA, algorithm="sm2")
    assert service.retimestamp_due(within_days=30) == (1, [])
    stamped = service.pdf(Actor(), answer["id"])
    assert stamped.startswith(pdf) and stamped != pdf  # an incremental update
    later = verify_report(stamped)
    assert later.ok, later.failures
    assert len([c for c in later.checks if c.name.startswith("archive-timestamp ")]) == 2
    expiry = newest_timestamp_expiry(stamped)
    assert expiry is not None and expiry > short + dt.timedelta(days=300)
    with database.engine.connect() as conn:
        row = conn.execute(select(E).where(E.c.id == answer["id"])).one()
    assert row.retimestamped_at is not None
    assert service.retimestamp_due(within_days=30) == (0, [])  # not due any more
    assert any(e.action == "evidence.retimestamp" and e.subject == answer["id"]
               for e in appliance.audit.search().entries)
