"""A signer's handwriting in PAdES sign requests, end to end (both engines): the doctor's phone
stores a handwritten signature; in an e-prescription PDF the doctor's field then shows it as
vector paths with the name, title and signing time (extractable by pdftotext), and the strokes'
SM3 digest is a signed attribute of the co-signature (recomputed here from the points the
phone sent); the pharmacist, who has no handwriting, signs invisibly as before.  In a
template's PDF the signature covers the signer's slot (the step-th of its signing order)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from pyhanko.pdf_utils.reader import PdfFileReader

import pdfsign
from appliance.services.handwriting import step_box
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.mobile.test_flows import _prescription
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.test_templates import rendered
from tests.support.peers import require_tool, run_tool

POINTS = [[{"x": 0.1 + i / 100, "y": 0.5 + 0.2 * (i % 7) / 7, "t": i * 16, "p": 0.3 + i / 200}
           for i in range(60)], [{"x": 0.9, "y": 0.9, "t": 2000, "p": 0.5}]]


def _widget(pdf: bytes, field: str) -> tuple[list[float], bytes]:
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    for ref in reader.root["/AcroForm"]["/Fields"]:
        widget = ref.get_object()
        if widget["/T"] == field:
            rect = [float(v) for v in widget["/Rect"]]
            appearance = widget.get("/AP")
            data = appearance["/N"].get_object().data if appearance else b""
            return rect, data
    raise AssertionError(field)


def test_the_doctor_s_handwriting_is_the_visible_signature(hospital: Hospital,
                                                            tmp_path: Path) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    pharmacist = hospital.phone_for(hospital.pharmacist_id)
    doctor.call("POST", "/api/v1/mobile/handwriting",
                {"width": 375, "height": 200, "strokes": POINTS})
    pdf = minimal_pdf("e-prescription RX-2026-0816")
    request = _prescription(hospital, fmt="pades", documents=[
        {"name": "rx-0816.pdf", "content": base64.b64encode(pdf).decode()}])
    doctor.sign([doctor.tasks()[0]["id"]])
    pharmacist.sign([pharmacist.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = base64.b64decode(result["documents"][0]["signature"])

    reports = pdfsign.validate_pdf(signed, [hospital.ca.active_authority("sm2").root])
    assert [r.field for r in reports] == ["medsign-step-1", "medsign-step-2"]
    assert all(r.ok for r in reports), reports
    expected = pdfsign.Strokes.from_points(
        375, 200, [[(p["x"], p["y"], p["t"], p["p"]) for p in stroke] for stroke in POINTS])
    assert reports[0].strokes_digest == expected.digest()
    assert reports[1].strokes_digest is None

    rect, content = _widget(signed, "medsign-step-1")
    assert rect == [float(v) for v in step_box(0)]
    assert len(set(re.findall(rb"([\d.]+) w ", content))) > 1  # pen width follows pressure
    assert b" l " in content and b"Tf" in content
    rect, content = _widget(signed, "medsign-step-2")
    assert rect[2] - rect[0] == 0  # no handwriting: invisible, as before

    path = tmp_path / "rx.pdf"
    path.write_bytes(signed)
    text = run_tool([require_tool("pdftotext"), "-enc", "UTF-8", path, "-"]).stdout.decode()
    assert "张医生 主治医师" in text, text
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d", text), text
    checked = run_tool([require_tool("qpdf"), "--check", path], check=False)
    assert checked.returncode == 0, checked.stdout


def test_in_a_template_the_handwriting_covers_the_signer_s_slot(hospital: Hospital) -> None:
    doctor = hospital.phone_for(hospital.doctor_id)
    doctor.call("POST", "/api/v1/mobile/handwriting",
                {"width": 375, "height": 200, "strokes": POINTS})
    rx = rendered()  # the e-prescription template: slots doctor, pharmacist, hospital_seal
    (slot,) = [s for s in pdfsign.signature_slots(rx) if s.name == "doctor"]
    request = _prescription(hospital, fmt="pades", review=False, documents=[
        {"name": "rx.pdf", "content": base64.b64encode(rx).decode()}])
    doctor.sign([doctor.tasks()[0]["id"]])
    result = hospital.backend("GET", f"/api/v1/sign-requests/{request['id']}/result").json
    signed = base64.b64decode(result["documents"][0]["signature"])
    (report,) = pdfsign.validate_pdf(signed, [hospital.ca.active_authority("sm2").root])
    assert report.ok and report.field == "medsign-step-1" and report.strokes_digest
    rect, content = _widget(signed, "medsign-step-1")
    assert slot.box is not None and rect == [float(v) for v in slot.box]
    assert b" l " in content
