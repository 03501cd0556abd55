"""Signing flows end to end through the API (both engines): a phone is activated, co-generates
its key and gets a certificate; the backend asks for an e-prescription signed by the doctor and
reviewed by the pharmacist; the result is one CMS per document with both signers, which
signcore and gmssl verify; refusals change nothing."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select, update

import pdfsign
from appliance.api.device_signing import sign_request
from appliance.api.hmac_signing import sign_request as hmac_request
from appliance.services.applications import decode_secret
from appliance.services.webhooks import WebhookService
from appliance.storage import Database, schema
from keysplit import messages
from keysplit.phone import PhoneCosigner
from signcore import cms
from signcore.hashes import sm3
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, load_certificate
from tests.appliance.ca.test_ca_service import Actor
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.phone import ApiError, TestPhone
from tests.appliance.test_webhooks import Receiver
from tests.pdfsign.pdfs import minimal_pdf
from tests.support import gmssl_oracle
from tests.support.peers import require_tool, run_tool
from tests.support.pki import write_pem

PRESCRIPTION = "处方 RX-2026-0001：阿莫西林胶囊 0.25g×24 粒，每次 0.5g，每日三次\n".encode()


def _prescription(hospital: Hospital, *, fmt: str = "cms-attached", flavour: str = "rfc5652",
                  documents: list[dict[str, Any]] | None = None, key: str | None = None,
                  review: bool = True) -> dict[str, Any]:
    signers = [{"signer_id": hospital.doctor_id, "action": "sign"}]
    if review:
        signers.append({"signer_id": hospital.pharmacist_id, "action": "review"})
    body = {"title": "门诊处方 RX-2026-0001", "format": fmt, "flavour": flavour,
            "documents": documents or [{"name": "rx-0001.txt", "media_type": "text/plain",
                                        "content": base64.b64encode(PRESCRIPTION).decode()}],
            "signers": signers}
    headers = {"Idempotency-Key": key} if key else None
    answer: dict[str, Any] = hospital.backend("POST", "/api/v1/sign-requests", body,
                                              headers).json
    return answer


def test_activation_keygen_and_enrollment(hospital: Hospital) -> None:
    phone = hospital.phone_for(hospital.doctor_id, enroll=False)
    done = phone.enroll()
    certificate = Certificate.from_stored(
        hospital.ca.get(done["certificate"]["id"]).der)
    assert phone.share is not None
    assert certificate.public_key().encoded_point == phone.share.public_key  # type: ignore[attr-defined]
    assert "张医生" in certificate.subject
    me = phone.call("GET", "/api/v1/mobile/me")
    assert me["certificate"]["id"] == done["certificate"]["id"]
    detail = phone.call("GET", "/api/v1/mobile/certificate")  # CA证书管理 in the app
    assert detail["certificate"]["serial"] == done["certificate"]["serial"]
    assert detail["certificate"]["status"] == "active" and not detail["renewal"]["due"]
    chain = [load_certificate(pem.encode()) for pem in detail["chain"]]
    assert chain[-1] == hospital.ca.active_authority("sm2").root and len(chain) == 2
    assert me["pin"] == {"attempts_left": 10, "locked": False}
    assert [k["status"] for k in me["keys"]] == ["active"]
    # the code was for one use
    with pytest.raises(ApiError) as used:
        TestPhone(hospital.site.client).activate("0000-0000-0000-0000")
    assert used.value.status == 400 and used.value.problem["code"] == "activation-failed"


def test_e_prescription_doctor_then_pharmacist(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    request = _prescription(hospital, key="rx-0001")
    assert request["status"] == "pending"
    assert [s["status"] for s in request["signers"]] == ["pending", "waiting"]
    assert pharmacist.tasks() == []
    (task,) = doctor.tasks()
    assert task["request_id"] == request["id"] and task["action"] == "sign"
    preview = doctor.call("GET", f"/api/v1/mobile/tasks/{task['id']}/documents/0")
    assert preview == PRESCRIPTION
    opened = doctor.call("POST", "/api/v1/mobile/sign", {"tasks": [task["id"]]})
    # the phone can check what it signs: e = SM3(Z || signed attributes), whose message
    # digest is the SM3 of the document it showed
    (item,) = opened["items"]
    attributes = base64.b64decode(item["signed_attributes"])
    assert doctor.share is not None
    public = SM2PublicKey.from_point(doctor.share.public_key)
    assert public.digest(attributes).hex() == item["digest"]
    assert sm3(PRESCRIPTION) in attributes
    signed = doctor.cosign(opened)
    assert signed["tasks"] == [{"id": task["id"], "status": "signed"}]
    (review,) = pharmacist.tasks()
    assert review["action"] == "review"
    messages = pharmacist.call("GET", "/api/v1/mobile/messages")["items"]
    assert messages[0]["task_id"] == review["id"] and "待审核" in messages[0]["title"]
    pharmacist.sign([review["id"]])
    status = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}").json
    assert status["status"] == "completed"
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    der = base64.b64decode(result["documents"][0]["signature"])
    authority = hospital.ca.active_authority("sm2")
    verified = cms.verify(der, trust_roots=[authority.root],
                          intermediates=[authority.certificate])
    assert verified.valid and len(verified.signers) == 2, verified
    assert verified.content == PRESCRIPTION
    for signer in verified.signers:  # gmssl agrees on both SM2 signatures
        assert signer.signer_certificate is not None and signer.signed_attributes is not None
        public = signer.signer_certificate.public_key()
        assert isinstance(public, SM2PublicKey)
        signed = b"\x31" + signer.signed_attributes.dump()[1:]  # [0] IMPLICIT -> SET OF
        assert gmssl_oracle.verify(public, signer.signature, signed)
    # the same Idempotency-Key and body: the same request, not a new one
    again = _prescription(hospital, key="rx-0001")
    assert again["id"] == request["id"] and again["status"] == "completed"


def test_rejection_ends_the_request(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    request = _prescription(hospital)
    doctor.sign([doctor.tasks()[0]["id"]])
    (review,) = pharmacist.tasks()
    pharmacist.call("POST", f"/api/v1/mobile/tasks/{review['id']}/reject",
                    {"reason": "剂量超出说明书范围，请医生确认"})
    status = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}").json
    assert status["status"] == "rejected"
    assert status["signers"][1]["reason"] == "剂量超出说明书范围，请医生确认"
    with pytest.raises(ApiError) as refused:
        hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result")
    assert refused.value.status == 409


def test_batch_of_documents_in_one_confirmation(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    contents = [f"处方 RX-{i:04d}".encode() for i in range(40)]
    for i in range(0, 40, 10):  # 4 requests of 10 documents, detached, digests for half
        docs = [{"name": f"rx-{j}", "content": base64.b64encode(contents[j]).decode()}
                if j % 2 else
                {"name": f"rx-{j}", "digest": _sm3(contents[j]), "digest_algorithm": "sm3"}
                for j in range(i, i + 10)]
        _prescription(hospital, fmt="cms-detached", flavour="gmt0010", documents=docs,
                      review=False)
    tasks = doctor.tasks()
    assert len(tasks) == 4
    # each task lists its own request's documents, in order (read for all tasks at once)
    assert sorted([d["name"] for d in t["documents"]] for t in tasks) == [
        [f"rx-{j}" for j in range(i, i + 10)] for i in range(0, 40, 10)]
    assert all([d["index"] for d in t["documents"]] == list(range(10)) for t in tasks)
    answer = doctor.sign([t["id"] for t in tasks])
    assert len(answer["signatures"]) == 40
    authority = hospital.ca.active_authority("sm2")
    for task in tasks:
        result = hospital.backend("GET",
                                  f"/api/v1/sign-requests/{task['request_id']}/result").json
        for document in result["documents"]:
            index = int(document["name"].split("-")[1])
            verified = cms.verify(base64.b64decode(document["signature"]),
                                  content=contents[index], trust_roots=[authority.root],
                                  intermediates=[authority.certificate])
            assert verified.valid, verified


def test_someone_else_s_task_and_wrong_pin(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    _prescription(hospital)
    (task,) = doctor.tasks()
    with pytest.raises(ApiError) as foreign:
        pharmacist.sign([task["id"]])
    assert foreign.value.status == 404
    with pytest.raises(ApiError) as wrong:
        doctor.sign([task["id"]], pin="000000")
    assert wrong.value.status == 403 and wrong.value.problem["attempts_left"] == 9
    assert doctor.tasks()[0]["status"] == "pending"
    doctor.sign([task["id"]])  # the right PIN resets the counter
    assert doctor.call("GET", "/api/v1/mobile/me")["pin"]["attempts_left"] == 10


def test_pin_lockout(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, review=False)
    (task,) = doctor.tasks()
    for attempt in range(10):
        with pytest.raises(ApiError) as wrong:
            doctor.sign([task["id"]], pin="000000")
        assert wrong.value.status == (423 if attempt == 9 else 403)
    with pytest.raises(ApiError) as locked:
        doctor.sign([task["id"]])
    assert locked.value.status == 423 and locked.value.problem["code"] == "pin-locked"


def test_pin_change(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    doctor.change_pin("135790")
    _prescription(hospital, review=False)
    doctor.sign([doctor.tasks()[0]["id"]])


def test_auto_sign_window_and_count(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    for _ in range(3):
        _prescription(hospital, review=False)
    tasks = doctor.tasks()
    doctor.sign([tasks[0]["id"]])  # with the PIN: the phone keeps the unwrap key
    with pytest.raises(ApiError) as no_grant:
        doctor.sign([tasks[1]["id"]], auto=True)
    assert no_grant.value.status == 409
    with pytest.raises(ApiError) as wrong_pin:
        doctor.grant_auto_sign(30, 1, pin="000000")
    assert wrong_pin.value.status == 403
    doctor.unwrap = None  # a restarted phone: the grant itself gives the unwrap key
    grant = doctor.grant_auto_sign(30, 1)
    doctor.sign([tasks[1]["id"]], auto=True)
    with pytest.raises(ApiError) as used_up:
        doctor.sign([tasks[2]["id"]], auto=True)
    assert used_up.value.status == 409
    signed = doctor.tasks("signed")
    assert {t["auto_sign_id"] for t in signed} == {None, grant["id"]}
    listed = doctor.call("GET", "/api/v1/mobile/auto-sign")["items"]
    assert listed[0]["used_count"] == 1 and listed[0]["status"] == "ended"


def test_replayed_device_request_is_refused(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    assert doctor.device_id is not None
    headers = sign_request("GET", "/api/v1/mobile/me", device_id=doctor.device_id,
                           key=doctor.device_key)
    first = hospital.site.client.simulate_get("/api/v1/mobile/me", headers=headers)
    assert first.status_code == 200
    again = hospital.site.client.simulate_get("/api/v1/mobile/me", headers=headers)
    assert again.status_code == 401 and again.json["code"] == "replay"
    other = TestPhone(hospital.site.client)
    forged = sign_request("GET", "/api/v1/mobile/me", device_id=doctor.device_id,
                          key=other.device_key)
    assert hospital.site.client.simulate_get(
        "/api/v1/mobile/me", headers=forged).json["code"] == "device-signature-invalid"


def _sm3(data: bytes) -> str:
    return sm3(data).hex()



def test_webhooks_reach_the_backend_even_when_it_was_down(hospital: Hospital,
                                                          database: Database) -> None:
    receiver = Receiver(decode_secret(hospital.secret))
    receiver.statuses = [503]  # the backend is down for the first delivery
    doctor = hospital.phone_for(hospital.doctor_id)
    body = {"title": "处方", "format": "cms-detached",
            "documents": [{"name": "rx", "content": base64.b64encode(PRESCRIPTION).decode()}],
            "signers": [{"signer_id": hospital.doctor_id}], "callback_url": receiver.url}
    request = hospital.backend("POST", "/api/v1/sign-requests", body).json
    doctor.sign([doctor.tasks()[0]["id"]])
    webhooks = WebhookService(database, hospital.site.apps)
    deadline = time.monotonic() + 60
    while not receiver.received and time.monotonic() < deadline:  # the server's dispatcher
        time.sleep(0.05)
    assert receiver.received, "the first delivery was not attempted"
    with database.transaction() as conn:  # the retry is due now rather than in 30 s
        conn.execute(update(schema.webhook_deliveries).values(
            next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    webhooks.deliver_due()
    (first_id, _, _), (event_id, event, valid) = receiver.received[:2]
    assert valid and event_id == first_id  # the same event, de-duplicable by its id
    assert event["type"] == "sign_request.completed"
    assert event["data"]["sign_request_id"] == request["id"]
    receiver.server.shutdown()


def test_rsa_e_prescription_openssl_verifies(hospital: Hospital, tmp_path: Path,
                                             openssl_bin: str) -> None:
    """Split-RSA keys (d = d1 + d2 mod λ(n)) for both signers: one attached CMS with two RSA
    signers that `openssl cms -verify` accepts."""
    hospital.ca.initialize(Actor(), "rsa", "测试医院")
    doctor = hospital.phone_for(hospital.doctor_id, enroll=False)
    pharmacist = hospital.phone_for(hospital.pharmacist_id, enroll=False)
    for phone in (doctor, pharmacist):
        done = phone.enroll_rsa()
        assert done["certificate"]["key_type"] == "rsa"
    request = _prescription(hospital)
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = tmp_path / "rx.p7m"
    signed.write_bytes(base64.b64decode(result["documents"][0]["signature"]))
    authority = hospital.ca.active_authority("rsa")
    roots = write_pem(tmp_path / "root.pem", authority.root)
    out = run_tool([openssl_bin, "cms", "-verify", "-inform", "DER", "-in", signed,
                    "-CAfile", roots, "-purpose", "any"])
    assert out.stdout == PRESCRIPTION, out.stderr
    printed = run_tool([openssl_bin, "cms", "-cmsout", "-print", "-inform", "DER",
                        "-in", signed]).stdout.decode()
    assert printed.count("signatureAlgorithm:") == 2


def test_renewal_through_the_phone(hospital: Hospital, database: Database) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    before = doctor.call("GET", "/api/v1/mobile/me")["certificate"]
    opened = doctor.call("POST", "/api/v1/mobile/keys/renew")
    renewed = doctor.cosign(opened)["certificate"]
    assert renewed["id"] != before["id"]
    with database.engine.connect() as conn:
        replaced_by = conn.execute(select(schema.certificates.c.replaced_by).where(
            schema.certificates.c.id == before["id"])).scalar_one()
    assert replaced_by == renewed["id"]
    me = doctor.call("GET", "/api/v1/mobile/me")
    assert me["certificate"]["id"] == renewed["id"] and len(me["keys"]) == 1
    _prescription(hospital, review=False)
    doctor.sign([doctor.tasks()[0]["id"]])  # the same key signs with the new certificate


def test_handwriting_is_rendered_and_kept(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id, enroll=False)
    with pytest.raises(ApiError) as none:
        doctor.call("GET", "/api/v1/mobile/handwriting")
    assert none.value.status == 404
    strokes = [[{"x": 0.1 + i / 100, "y": 0.5 + 0.2 * (i % 7) / 7, "t": i * 16, "p": 0.6}
                for i in range(60)], [{"x": 0.9, "y": 0.9, "t": 2000, "p": 0.5}]]
    stored = doctor.call("POST", "/api/v1/mobile/handwriting",
                         {"width": 375, "height": 200, "strokes": strokes})
    assert stored["points"] == 61
    png = doctor.call("GET", "/api/v1/mobile/handwriting")
    image = Image.open(io.BytesIO(png))
    assert image.mode == "LA" and image.size == (600, 320)
    assert image.getextrema()[1][1] == 255  # some ink
    assert image.getpixel((10, 10))[1] == 0  # transparent background
    svg = hospital.backend("GET", f"/api/v1/signers/{hospital.doctor_id}/handwriting"
                                  "?format=svg").content
    assert svg.startswith(b"<svg") and svg.count(b"<line") == 59 and b"<circle" in svg
    for bad in ({"width": 0, "height": 10, "strokes": strokes},
                {"width": 10, "height": 10, "strokes": [[{"x": 2, "y": 0}]]},
                {"width": 10, "height": 10, "strokes": []}):
        with pytest.raises(ApiError) as refused:
            doctor.call("POST", "/api/v1/mobile/handwriting", bad)
        assert refused.value.status == 400


def test_a_due_certificate_is_renewed_at_the_next_signature(hospital: Hospital,
                                                            database: Database) -> None:
    """Silent renewal of a split key: the proof of possession rides along with the doctor's
    next signatures; nothing to do beyond the usual PIN."""
    doctor = hospital.phone_for(hospital.doctor_id)
    before = doctor.call("GET", "/api/v1/mobile/me")["certificate"]
    with database.transaction() as conn:  # due in 10 days (renewal starts 30 days ahead)
        conn.execute(update(schema.certificates).where(schema.certificates.c.id == before["id"])
                     .values(not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10)))
    _prescription(hospital, review=False)
    opened = doctor.call("POST", "/api/v1/mobile/sign", {"tasks": [doctor.tasks()[0]["id"]]})
    assert opened["items"][-1]["purpose"] == "certificate-renewal"
    doctor.cosign(opened)
    after = doctor.call("GET", "/api/v1/mobile/me")["certificate"]
    assert after["id"] != before["id"] and after["serial"] != before["serial"]
    with database.engine.connect() as conn:
        replaced_by = conn.execute(select(schema.certificates.c.replaced_by).where(
            schema.certificates.c.id == before["id"])).scalar_one()
    assert replaced_by == after["id"]
    titles = [m["title"] for m in doctor.call("GET", "/api/v1/mobile/messages")["items"]]
    assert "签名证书已更新" in titles and "签名证书已签发" in titles
    _prescription(hospital, review=False)  # not due any more: no renewal item
    opened = doctor.call("POST", "/api/v1/mobile/sign", {"tasks": [doctor.tasks()[0]["id"]]})
    assert all("purpose" not in item for item in opened["items"])


def test_a_lost_phone_and_a_revoked_certificate_cannot_sign(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, review=False)
    (task,) = doctor.tasks()
    certificate_id = doctor.call("GET", "/api/v1/mobile/me")["certificate"]["id"]
    devices = hospital.backend("GET", f"/api/v1/signers/{hospital.doctor_id}/devices").json
    assert [d["id"] for d in devices["items"]] == [doctor.device_id]
    revoked = hospital.backend(
        "POST", f"/api/v1/signers/{hospital.doctor_id}/devices/{doctor.device_id}/revoke",
        {"reason": "key_compromise"}).json
    assert revoked["device"]["status"] == "revoked" and len(revoked["revoked_keys"]) == 1
    assert hospital.ca.get(certificate_id).status == "revoked"
    with pytest.raises(ApiError) as refused:
        doctor.sign([task["id"]])
    assert refused.value.status == 401 and refused.value.problem["code"] == "device-revoked"
    # a new phone: a new key and certificate, and the task can be signed again
    replacement = hospital.phone_for(hospital.doctor_id)
    replacement.sign([task["id"]])


def test_a_certificate_revoked_by_the_security_officer_cannot_sign(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, review=False)
    certificate_id = doctor.call("GET", "/api/v1/mobile/me")["certificate"]["id"]
    hospital.ca.revoke(Actor(), certificate_id, "key_compromise")
    with pytest.raises(ApiError) as refused:
        doctor.sign([doctor.tasks()[0]["id"]])
    assert refused.value.status == 409 and refused.value.problem["code"] == "no-signing-key"


def test_a_lost_answer_is_answered_again(hospital: Hospital) -> None:
    """The phone sends the same message bytes again (its connection dropped after the server
    acted): it gets the same answer, and nothing happens twice."""
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, review=False)
    opened = doctor.call("POST", "/api/v1/mobile/sign", {"tasks": [doctor.tasks()[0]["id"]]})
    assert doctor.share is not None
    cosigner = PhoneCosigner(doctor.share, pin=doctor.pin)
    commit = cosigner.commit(messages.decode(json.dumps(opened["message"]),
                                             messages.CosignOffer))
    first = doctor.send(opened["session"], commit)
    again = doctor.send(opened["session"], commit)
    assert again == first
    result = cosigner.finish(messages.decode(json.dumps(first["message"]),
                                             messages.CosignResponse))
    assert isinstance(result, messages.CosignResult)
    done = doctor.send(opened["session"], result)
    assert doctor.send(opened["session"], result) == done
    assert doctor.call("GET", "/api/v1/mobile/me")["pin"]["attempts_left"] == 10
    assert [t["status"] for t in doctor.tasks("signed")] == ["signed"]


def test_two_hundred_prescriptions_in_one_confirmation(hospital: Hospital) -> None:
    """The doctor after a clinic: 200 prescriptions (200 requests), one PIN, one session."""
    doctor = hospital.phone_for(hospital.doctor_id)
    contents = {}
    for i in range(200):
        content = f"处方 RX-{i:04d}：布洛芬缓释胶囊 0.3g×20 粒".encode()
        request = hospital.backend("POST", "/api/v1/sign-requests", {
            "format": "cms-detached", "documents": [{"name": f"rx-{i}", "digest": _sm3(content),
                                                     "digest_algorithm": "sm3"}],
            "signers": [{"signer_id": hospital.doctor_id}]}).json
        contents[request["id"]] = content
    tasks = doctor.tasks()
    assert len(tasks) == 200
    answer = doctor.sign([t["id"] for t in tasks])
    assert len(answer["signatures"]) == 200 and len(answer["tasks"]) == 200
    authority = hospital.ca.active_authority("sm2")
    for request_id in list(contents)[::40]:  # a sample: every one is a verifiable CMS
        result = hospital.backend("GET", f"/api/v1/sign-requests/{request_id}/result").json
        verified = cms.verify(base64.b64decode(result["documents"][0]["signature"]),
                              content=contents[request_id], trust_roots=[authority.root])
        assert verified.valid, verified


def test_auto_sign_stops_at_the_end_of_its_window(hospital: Hospital,
                                                  database: Database) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    for _ in range(2):
        _prescription(hospital, review=False)
    tasks = doctor.tasks()
    grant = doctor.grant_auto_sign(30, 10)
    doctor.sign([tasks[0]["id"]], auto=True)
    with database.transaction() as conn:  # the window ends
        conn.execute(update(schema.auto_sign_grants)
                     .where(schema.auto_sign_grants.c.id == grant["id"])
                     .values(not_after=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    with pytest.raises(ApiError) as ended:
        doctor.sign([tasks[1]["id"]], auto=True)
    assert ended.value.status == 409
    listed = doctor.call("GET", "/api/v1/mobile/auto-sign")["items"]
    assert listed[0]["status"] == "ended" and listed[0]["used_count"] == 1
    doctor.sign([tasks[1]["id"]])  # with the PIN it still works


def test_an_expired_cosign_session_is_refused(hospital: Hospital, database: Database) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, review=False)
    (task,) = doctor.tasks()
    opened = doctor.call("POST", "/api/v1/mobile/sign", {"tasks": [task["id"]]})
    with database.transaction() as conn:
        conn.execute(update(schema.cosign_sessions)
                     .where(schema.cosign_sessions.c.id == opened["session"])
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    with pytest.raises(ApiError) as expired:
        doctor.cosign(opened)
    assert expired.value.status == 409 and expired.value.problem["code"] == "session-expired"
    assert doctor.tasks()[0]["status"] == "pending"
    doctor.sign([task["id"]])  # a new session works


def test_oversize_and_malformed_requests_change_nothing(hospital: Hospital,
                                                        database: Database) -> None:
    big = base64.b64encode(b"x" * (5 * 1024 * 1024 + 1)).decode()
    bad_bodies = [
        {"documents": [{"name": "big", "content": big}],
         "signers": [{"signer_id": hospital.doctor_id}]},
        {"documents": [{"name": "rx", "content": "not base64!"}],
         "signers": [{"signer_id": hospital.doctor_id}]},
        {"documents": [{"name": "rx", "digest": "00" * 32, "digest_algorithm": "md5"}],
         "format": "cms-detached", "signers": [{"signer_id": hospital.doctor_id}]},
        {"documents": [{"name": "rx", "content": "eA=="}], "signers": [{"signer_id": 999999}]},
        {"documents": [{"name": "rx", "content": "eA=="}], "format": "pdf",
         "signers": [{"signer_id": hospital.doctor_id}]},
        {"documents": [], "signers": [{"signer_id": hospital.doctor_id}]},
    ]
    for body in bad_bodies:
        with pytest.raises(ApiError) as refused:
            hospital.backend("POST", "/api/v1/sign-requests", body)
        assert refused.value.status in (400, 413), refused.value.problem
        assert refused.value.problem["code"] in ("validation-failed", "payload-too-large")
    with database.engine.connect() as conn:
        assert conn.execute(select(schema.sign_requests.c.id)).first() is None
        assert conn.execute(select(schema.sign_tasks.c.id)).first() is None


def test_pades_e_prescription_doctor_then_pharmacist(hospital: Hospital, tmp_path: Path) -> None:
    """format pades: each signer's co-signature is an incremental PAdES signature over the PDF
    as the previous signer left it; both validate to the root, qpdf finds nothing wrong."""
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    pdf = minimal_pdf("e-prescription RX-2026-0815")
    request = _prescription(hospital, fmt="pades", documents=[
        {"name": "rx-0815.pdf", "content": base64.b64encode(pdf).decode()}])
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = base64.b64decode(result["documents"][0]["signature"])
    assert signed.startswith(pdf)  # incremental updates: the original bytes are untouched
    authority = hospital.ca.active_authority("sm2")
    reports = pdfsign.validate_pdf(signed, [authority.root])
    assert [r.field for r in reports] == ["medsign-step-1", "medsign-step-2"]
    assert all(r.ok for r in reports), reports
    assert "张医生" in reports[0].signer and "李药师" in reports[1].signer
    (tmp_path / "rx.pdf").write_bytes(signed)
    checked = run_tool([require_tool("qpdf"), "--check", tmp_path / "rx.pdf"], check=False)
    assert checked.returncode == 0, checked.stdout
    with pytest.raises(ApiError) as not_pdf:
        _prescription(hospital, fmt="pades", documents=[
            {"name": "x.pdf", "content": base64.b64encode(b"not a pdf").decode()}])
    assert not_pdf.value.status == 400


def test_the_signed_pdf_verifies_through_the_api(hospital: Hospital, database: Database) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pdf = minimal_pdf("consent form 0042")
    request = _prescription(hospital, fmt="pades", review=False, documents=[
        {"name": "consent.pdf", "content": base64.b64encode(pdf).decode()}])
    doctor.sign([doctor.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = result["documents"][0]["signature"]
    verifier, secret = hospital.site.apps.create(None, name="LIS", scopes="verify")
    body = json.dumps({"format": "pdf", "signature": signed}).encode()
    headers = {"Content-Type": "application/json",
               **hmac_request("POST", "/api/v1/verify", key_id=verifier.key_id, secret=secret,
                              body=body)}
    answer = hospital.site.client.simulate_post("/api/v1/verify", body=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json["valid"] and answer.json["signatures"][0]["trusted"]
    tampered = bytearray(base64.b64decode(signed))
    tampered[pdf.index(b"0042")] ^= 1
    body = json.dumps({"format": "pdf",
                       "signature": base64.b64encode(bytes(tampered)).decode()}).encode()
    headers = {"Content-Type": "application/json",
               **hmac_request("POST", "/api/v1/verify", key_id=verifier.key_id, secret=secret,
                              body=body)}
    answer = hospital.site.client.simulate_post("/api/v1/verify", body=body, headers=headers)
    assert answer.status_code == 200 and not answer.json["valid"]
    assert not answer.json["signatures"][0]["intact"]
