"""Phones view signed documents (both engines): the doctor's and the pharmacist's phones fetch a
PAdES document as it is now -- unsigned, signed by the doctor, then by both -- and its
validation result (the same JSON as POST /api/v1/verify), checked here against pdfsign; a CMS
request's document verifies as CMS; another signer's task, an unknown task or document are
404s; a raw request is a 409."""

from __future__ import annotations

import base64
from typing import Any

import pytest

import pdfsign
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.phone import ApiError, TestPhone
from tests.appliance.mobile.test_flows import PRESCRIPTION, _prescription
from tests.pdfsign.pdfs import minimal_pdf


def _view(phone: TestPhone, task_id: str, index: int = 0) -> tuple[bytes, dict[str, Any]]:
    base = f"/api/v1/mobile/tasks/{task_id}/documents/{index}"
    document: bytes = phone.call("GET", f"{base}/current")
    verification: dict[str, Any] = phone.call("GET", f"{base}/verification")
    return document, verification


def test_a_pades_document_as_it_is_signed(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    pdf = minimal_pdf("e-prescription RX-2026-0901")
    _prescription(hospital, fmt="pades", documents=[
        {"name": "rx-0901.pdf", "content": base64.b64encode(pdf).decode()}])
    doctor_task = doctor.tasks()[0]["id"]

    document, result = _view(doctor, doctor_task)
    assert document == pdf
    assert result == {"format": "pdf", "valid": False, "signatures": [],
                      "document_timestamps": []}

    doctor.sign([doctor_task])
    pharmacist_task = pharmacist.tasks()[0]["id"]
    document, result = _view(pharmacist, pharmacist_task)  # what the pharmacist reviews
    assert document.startswith(pdf) and len(document) > len(pdf)
    (signature,) = result["signatures"]
    assert result["valid"] and signature["ok"] and signature["trusted"], result
    assert "张医生" in signature["signer"] and signature["field"] == "medsign-step-1"
    assert signature["level"] == "B-B" and signature["coverage"] == "entire-file"
    assert signature["algorithm"] == "sm2sign_with_sm3"
    # the same verdicts as pdfsign's, against the built-in CA's root
    (report,) = pdfsign.validate_pdf(document, [hospital.ca.active_authority("sm2").root])
    assert report.ok and report.signer == signature["signer"]

    pharmacist.sign([pharmacist_task])
    document_after, result = _view(doctor, doctor_task)  # the doctor sees the final document
    assert document_after.startswith(document)
    assert [s["field"] for s in result["signatures"]] == ["medsign-step-1", "medsign-step-2"]
    assert result["valid"] and all(s["ok"] for s in result["signatures"])
    assert result["signatures"][0]["coverage"] == "entire-revision"
    assert result["signatures"][0]["modification_level"] == "form-filling"


def test_only_the_signer_s_own_tasks(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    _prescription(hospital, fmt="pades", documents=[
        {"name": "rx.pdf", "content": base64.b64encode(minimal_pdf()).decode()}])
    task = doctor.tasks()[0]["id"]
    for phone, path in ((pharmacist, f"/api/v1/mobile/tasks/{task}/documents/0/verification"),
                        (pharmacist, f"/api/v1/mobile/tasks/{task}/documents/0/current"),
                        (doctor, "/api/v1/mobile/tasks/tk_unknown/documents/0/verification"),
                        (doctor, f"/api/v1/mobile/tasks/{task}/documents/7/verification")):
        with pytest.raises(ApiError) as refused:
            phone.call("GET", path)
        assert refused.value.status == 404, path
    anonymous = hospital.site.client.simulate_get(
        f"/api/v1/mobile/tasks/{task}/documents/0/verification")
    assert anonymous.status_code == 401


def test_cms_and_raw_requests(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    _prescription(hospital, fmt="cms-attached", review=False)
    task = doctor.tasks()[0]["id"]
    document, result = _view(doctor, task)
    assert document == PRESCRIPTION
    assert result == {"format": "cms", "valid": False, "signers": []}
    doctor.sign([task])
    _document, result = _view(doctor, task)
    assert result["format"] == "cms" and result["valid"], result
    assert "张医生" in result["signers"][0]["signer"]["subject"]

    _prescription(hospital, fmt="raw", review=False)
    raw_task = doctor.tasks()[0]["id"]
    with pytest.raises(ApiError) as refused:
        doctor.call("GET", f"/api/v1/mobile/tasks/{raw_task}/documents/0/verification")
    assert refused.value.status == 409 and refused.value.problem["code"] == "conflict"
