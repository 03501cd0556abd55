"""QR login and QR signing from a simulated PC (the hospital's credential) and phone (both
engines): the PC gets an assertion it can verify itself, or the signatures; sessions are
single use and expire."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from typing import Any

import pytest
from sqlalchemy import update

from appliance.services.qr import canonical
from appliance.storage import Database, schema
from signcore import cms
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.phone import ApiError, TestPhone
from tests.appliance.mobile.test_flows import PRESCRIPTION


def _open(hospital: Hospital, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = hospital.backend("POST", "/api/v1/qr-sessions", body).json
    return answer


def _confirm(phone: TestPhone, session_id: str) -> dict[str, Any]:
    phone.call("POST", f"/api/v1/mobile/qr/{session_id}/scan")
    opened = phone.call("POST", f"/api/v1/mobile/qr/{session_id}/confirm")
    return phone.cosign(opened)


def test_qr_login(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    session = _open(hospital, {"purpose": "login"})
    assert session["status"] == "waiting" and session["uri"].endswith(session["id"])
    svg = hospital.backend("GET", f"/api/v1/qr-sessions/{session['id']}/qr").content
    assert svg.lstrip().startswith(b"<svg")
    png = hospital.backend("GET", f"/api/v1/qr-sessions/{session['id']}/qr?format=png").content
    assert png.startswith(b"\x89PNG")
    polled: list[dict[str, Any]] = []
    poller = threading.Thread(target=lambda: polled.append(hospital.backend(
        "GET", f"/api/v1/qr-sessions/{session['id']}?wait=20").json))
    poller.start()
    _confirm(doctor, session["id"])
    poller.join()
    final = hospital.backend("GET", f"/api/v1/qr-sessions/{session['id']}").json
    assert final["status"] == "confirmed" and polled[0]["status"] in ("scanned", "confirmed")
    assertion = final["assertion"]
    # the PC checks the assertion itself: the signature, the certificate's chain, the challenge
    certificate = Certificate.from_stored(base64.b64decode(assertion["certificate"]))
    public = certificate.public_key()
    assert isinstance(public, SM2PublicKey)
    public.verify(base64.b64decode(assertion["signature"]), canonical(assertion["assertion"]))
    assert assertion["assertion"]["session"] == session["id"]
    assert assertion["assertion"]["signer_id"] == hospital.doctor_id
    # single use: no second scan
    with pytest.raises(ApiError) as again:
        doctor.call("POST", f"/api/v1/mobile/qr/{session['id']}/scan")
    assert again.value.status == 409


def test_qr_sign(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    session = _open(hospital, {"purpose": "sign", "title": "电子病历签名", "format": "cms-attached",
                               "documents": [{"name": "emr.txt",
                                              "content": base64.b64encode(PRESCRIPTION).decode()}]})
    scanned = doctor.call("POST", f"/api/v1/mobile/qr/{session['id']}/scan")
    assert scanned["purpose"] == "sign" and scanned["documents"][0]["name"] == "emr.txt"
    opened = doctor.call("POST", f"/api/v1/mobile/qr/{session['id']}/confirm")
    doctor.cosign(opened)
    final = hospital.backend("GET", f"/api/v1/qr-sessions/{session['id']}").json
    assert final["status"] == "confirmed"
    result = hospital.backend("GET",
                              f"/api/v1/sign-requests/{final['sign_request_id']}/result").json
    authority = hospital.ca.active_authority("sm2")
    verified = cms.verify(base64.b64decode(result["documents"][0]["signature"]),
                          trust_roots=[authority.root], intermediates=[authority.certificate])
    assert verified.valid and verified.content == PRESCRIPTION


def test_qr_sessions_expire_and_belong_to_one_phone(hospital: Hospital,
                                                     database: Database) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    session = _open(hospital, {"purpose": "login"})
    doctor.call("POST", f"/api/v1/mobile/qr/{session['id']}/scan")
    with pytest.raises(ApiError) as taken:
        pharmacist.call("POST", f"/api/v1/mobile/qr/{session['id']}/scan")
    assert taken.value.status == 409
    with pytest.raises(ApiError) as foreign:
        pharmacist.call("POST", f"/api/v1/mobile/qr/{session['id']}/confirm")
    assert foreign.value.status == 404
    expired = _open(hospital, {"purpose": "login"})
    with database.transaction() as conn:
        conn.execute(update(schema.qr_sessions).where(schema.qr_sessions.c.id == expired["id"])
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert hospital.backend("GET", f"/api/v1/qr-sessions/{expired['id']}").json[
        "status"] == "expired"
    with pytest.raises(ApiError) as late:
        doctor.call("POST", f"/api/v1/mobile/qr/{expired['id']}/scan")
    assert late.value.status == 409
    assert json.loads(json.dumps(session))["purpose"] == "login"
