"""Evidence reports through the whole app (both engines): an e-prescription signed by a doctor
(PIN) and a pharmacist (auto-sign authorization) gives a valid report showing both processes,
which the offline verifier accepts; tampering with the database's audit rows or checkpoints
before a report is made is named by the appliance's own check and by the offline verifier."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from appliance.storage import Database, schema
from evidence import Checkpoint, checkpoint
from evidence.verify import verify_report
from signcore import cms
from signcore.sm2 import SM2PrivateKey
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.phone import ApiError
from tests.appliance.mobile.test_flows import PRESCRIPTION, _prescription
from tests.pdfsign.pdfs import minimal_pdf
from tests.support.pki import cached_pki

AL = schema.audit_log


def _stranger() -> tuple[Any, Any]:
    pki = cached_pki("sm2")
    return pki.doctor_key, pki.doctor


def _signed_prescription(hospital: Hospital) -> tuple[dict[str, Any], dict[str, Any]]:
    """The doctor signs with the PIN; the pharmacist under an auto-sign authorization."""
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    grant = pharmacist.grant_auto_sign(30, 5)
    request = _prescription(hospital)
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]], auto=True)
    return request, grant


def _report(hospital: Hospital, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = hospital.backend("POST", "/api/v1/evidence", body).json
    return answer


def _pdf(hospital: Hospital, answer: dict[str, Any]) -> bytes:
    return bytes(hospital.backend("GET", answer["links"]["pdf"]).content)


def _signature(hospital: Hospital, request: dict[str, Any]) -> bytes:
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    return base64.b64decode(result["documents"][0]["signature"])


def test_an_e_prescription_report_shows_both_processes(hospital: Hospital) -> None:
    request, grant = _signed_prescription(hospital)
    answer = _report(hospital, {"sign_request_id": request["id"]})
    assert answer["verdict"] == "valid", answer["problems"]
    doctor, pharmacist = (s["process"] for s in answer["signatures"])
    assert "张医生" in answer["signatures"][0]["signer"]
    assert "李药师" in answer["signatures"][1]["signer"]
    assert doctor["confirmation"] == "pin" and doctor["auto_sign"] is None
    assert pharmacist["confirmation"] == "auto-sign"
    assert pharmacist["auto_sign"]["id"] == grant["id"]
    assert pharmacist["auto_sign"]["minutes"] == 30
    assert doctor["signer_id"] == hospital.doctor_id and doctor["step"] == 0
    assert pharmacist["signer_id"] == hospital.pharmacist_id and pharmacist["step"] == 1
    for process in (doctor, pharmacist):
        assert process["device_id"].startswith("dv_") and process["ip"]
        assert process["identity_check"]["passed"] is True
        assert process["sign_request_id"] == request["id"] and process["notified"]
    assert doctor["device_id"] != pharmacist["device_id"]
    # the PDF, verified offline, says the same; the document is the signed CMS
    pdf = _pdf(hospital, answer)
    signed = _signature(hospital, request)
    verdict = verify_report(pdf, document=signed)
    assert verdict.ok, verdict.failures
    assert verdict.report is not None and verdict.report.to_json() == answer["facts"]
    root = hospital.ca.active_authority("sm2").root
    assert verdict.root_fingerprint == root.fingerprint("sha256").hex()
    assert verify_report(pdf, trust=[root]).ok
    # GET gives the same facts; the generation itself is audited
    again = hospital.backend("GET", answer["links"]["self"]).json
    assert again["facts"] == answer["facts"]
    entries = hospital.site.appliance.audit.search()
    assert any(e.action == "evidence.generate" and e.subject == answer["id"]
               for e in entries.entries)


def test_an_uploaded_document_finds_its_request(hospital: Hospital) -> None:
    request, _grant = _signed_prescription(hospital)
    signed = _signature(hospital, request)
    answer = _report(hospital, {"document": base64.b64encode(signed).decode(),
                                "name": "rx.p7m"})
    assert answer["sign_request_id"] == request["id"] and answer["verdict"] == "valid"
    assert answer["document"]["name"] == "rx.p7m"
    assert verify_report(_pdf(hospital, answer), document=signed).ok
    # the same content with a broken signature value: found, and reported invalid
    broken = _report(hospital, {"document": base64.b64encode(signed[:-1] + b"\x00").decode()})
    assert broken["sign_request_id"] == request["id"] and broken["verdict"] == "invalid"
    assert [s["valid"] for s in broken["signatures"]] == [True, False]
    # a document the appliance never registered: no process evidence, named
    other = cms.sign(PRESCRIPTION + b"!", *_stranger())
    answer = _report(hospital, {"document": base64.b64encode(other).decode()})
    assert answer["sign_request_id"] is None and answer["verdict"] == "invalid"
    assert any("找不到对应的签名任务" in p for p in answer["problems"]), answer["problems"]


def test_an_uploaded_signed_pdf_finds_its_request(hospital: Hospital) -> None:
    """PAdES: each signer's signature is an incremental update of the registered PDF; the
    upload is found through the digest of its first revision, each field matched to its step."""
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    grant = pharmacist.grant_auto_sign(30, 5)
    pdf = minimal_pdf("e-prescription RX-2026-0815")
    request = _prescription(hospital, fmt="pades", documents=[
        {"name": "rx-0815.pdf", "content": base64.b64encode(pdf).decode()}])
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]], auto=True)
    signed = _signature(hospital, request)
    answer = _report(hospital, {"document": base64.b64encode(signed).decode()})
    assert answer["sign_request_id"] == request["id"], answer["problems"]
    assert answer["verdict"] == "valid", answer["problems"]
    assert [s["field"] for s in answer["signatures"]] == ["medsign-step-1", "medsign-step-2"]
    assert answer["signatures"][1]["process"]["auto_sign"]["id"] == grant["id"]
    verdict = verify_report(_pdf(hospital, answer), document=signed)
    assert verdict.ok, verdict.failures


def test_bad_requests_change_nothing(hospital: Hospital) -> None:
    for body, status in (({}, 400), ({"sign_request_id": "0" * 36, "document": "AA=="}, 400),
                         ({"sign_request_id": "0" * 36}, 404), ({"document": "%%"}, 400),
                         ({"sign_request_id": "0" * 36, "document_index": -1}, 400),
                         ({"bogus": 1}, 400)):
        with pytest.raises(ApiError) as refused:
            _report(hospital, body)
        assert refused.value.status == status, (body, refused.value.problem)
    with pytest.raises(ApiError) as missing:
        hospital.backend("GET", "/api/v1/evidence/ev_AAAAAAAAAAAAAAAA")
    assert missing.value.status == 404


def _cosign_seqs(database: Database, request_id: str) -> list[int]:
    with database.engine.connect() as conn:
        return list(conn.execute(select(AL.c.seq).where(
            AL.c.subject == request_id, AL.c.action == "sign-request.cosign")
            .order_by(AL.c.seq)).scalars())


def _tampered_report(hospital: Hospital, request: dict[str, Any]) -> tuple[dict[str, Any],
                                                                         dict[str, str]]:
    answer = _report(hospital, {"sign_request_id": request["id"]})
    verdict = verify_report(_pdf(hospital, answer))
    assert verdict.report is not None  # the report itself is intact: it names the damage
    assert {"report-signature", "report-timestamp"} <= {c.name for c in verdict.checks
                                                         if c.ok}
    return answer, {c.name: c.detail for c in verdict.failures}


def test_an_edited_audit_row_is_named(hospital: Hospital, database: Database) -> None:
    request, _grant = _signed_prescription(hospital)
    first = _report(hospital, {"sign_request_id": request["id"]})  # tiles exist from here on
    assert first["verdict"] == "valid"
    seq = _cosign_seqs(database, request["id"])[0]
    with database.transaction() as conn:
        details = conn.execute(select(AL.c.details).where(AL.c.seq == seq)).scalar_one()
        edited = json.dumps(json.loads(details), separators=(",", ":"), sort_keys=True,
                            ensure_ascii=False).replace('"confirmation":"pin"',
                                                        '"confirmation":"pjn"')
        assert edited != details
        conn.execute(update(AL).where(AL.c.seq == seq).values(details=edited))
    answer, failed = _tampered_report(hospital, request)
    assert answer["verdict"] == "invalid"
    assert any(f"#{seq}" in p and "改动" in p for p in answer["problems"]), answer["problems"]
    assert f"inclusion #{seq}" in failed and "collection" in failed


def test_a_deleted_audit_row_is_named(hospital: Hospital, database: Database) -> None:
    request, _grant = _signed_prescription(hospital)
    seq = _cosign_seqs(database, request["id"])[1]
    hospital.site.appliance.audit.checkpoint()  # the cadence signed a tree head over it
    with database.transaction() as conn:
        conn.execute(delete(AL).where(AL.c.seq == seq))
    answer, failed = _tampered_report(hospital, request)
    assert answer["verdict"] == "invalid"
    assert any(f"{seq}" in p and "缺失" in p for p in answer["problems"]), answer["problems"]
    assert "facts signature 2" in failed and "没有签署过程" in failed["facts signature 2"]


def test_reordered_audit_rows_are_named(hospital: Hospital, database: Database) -> None:
    request, _grant = _signed_prescription(hospital)
    a, b = _cosign_seqs(database, request["id"])
    with database.transaction() as conn:  # swap the two rows' positions
        conn.execute(update(AL).where(AL.c.seq == a).values(seq=-1))
        conn.execute(update(AL).where(AL.c.seq == b).values(seq=a))
        conn.execute(update(AL).where(AL.c.seq == -1).values(seq=b))
    answer, failed = _tampered_report(hospital, request)
    assert answer["verdict"] == "invalid"
    assert {f"inclusion #{a}", f"inclusion #{b}"} <= set(failed), failed


def test_a_replaced_checkpoint_is_named(hospital: Hospital, database: Database) -> None:
    request, _grant = _signed_prescription(hospital)
    audit = hospital.site.appliance.audit
    record = audit.checkpoint()
    forged = checkpoint.sign(Checkpoint(audit.config.origin, record.tree_size, record.root_hash),
                             SM2PrivateKey.generate(), audit.config.origin)
    with database.transaction() as conn:
        conn.execute(update(schema.audit_checkpoints)
                     .where(schema.audit_checkpoints.c.tree_size == record.tree_size)
                     .values(note=forged))
    answer, failed = _tampered_report(hospital, request)
    assert answer["verdict"] == "invalid"
    name = f"checkpoint {record.tree_size}"
    assert name in failed and "签名无效" in failed[name]
    assert any(f"树头 {record.tree_size}" in p for p in answer["problems"])
