"""PhoneClient.view_document / document_verification over real HTTP against the whole
appliance (both engines): the pharmacist's phone fetches the e-prescription PDF as the doctor
signed it and its validation result; after the pharmacist signs, the doctor's phone sees both
signatures; the signed PDF verifies with pdfsign against the built-in CA; another signer's task
is the SDK's NotFound."""

from __future__ import annotations

import pytest

import pdfsign
from medsign_sdk import Document, NotFound, SignerStep
from tests.pdfsign.pdfs import minimal_pdf
from tests.sdk.python.conftest import PIN, Served


def test_phones_view_a_signed_pdf_and_its_validation(served: Served) -> None:
    hospital, backend = served.hospital, served.backend
    doctor = served.phone(hospital.doctor_id)
    pharmacist = served.phone(hospital.pharmacist_id)
    pdf = minimal_pdf("e-prescription RX-2026-0911")
    backend.create_sign_request(
        [Document("rx-0911.pdf", content=pdf, media_type="application/pdf")],
        [SignerStep(hospital.doctor_id), SignerStep(hospital.pharmacist_id, "review")],
        title="门诊处方 RX-2026-0911", format="pades")
    (task,) = doctor.tasks()

    unsigned = doctor.view_document(task.id, 0)
    assert unsigned.content == pdf and unsigned.media_type == "application/pdf"
    assert not unsigned.signed and not unsigned.valid and unsigned.signatures == []

    doctor.sign([task.id], pin=PIN)
    (review,) = pharmacist.tasks()
    view = pharmacist.view_document(review.id, 0)
    assert view.signed and view.content.startswith(pdf) and view.valid
    (signature,) = view.signatures
    assert signature["ok"] and signature["field"] == "medsign-step-1"
    assert signature["level"] == "B-B" and signature["revocation"] == "good"
    with pytest.raises(NotFound):
        doctor.document_verification(review.id, 0)

    pharmacist.sign([review.id], pin=PIN)
    final = doctor.view_document(task.id, 0)
    assert [s["field"] for s in final.signatures] == ["medsign-step-1", "medsign-step-2"]
    assert final.valid and final.verification == doctor.document_verification(task.id, 0)
    reports = pdfsign.validate_pdf(final.content, [hospital.ca.active_authority("sm2").root])
    assert [r.ok for r in reports] == [True, True]
