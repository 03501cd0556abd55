"""AcroForm templates (pdfsign/acroform.py): a PDF form's fields typed from the PDF and a
sidecar, filled with Chinese values into appearance streams in the embedded CJK font, recorded
as id@version, signed into its slots in slot order; bad forms, sidecars and values raise
TemplateError (or InvalidPdf/EncryptedPdf) naming the field.  The real tools' view (qpdf,
pdffonts, pdftotext, pdfsig): tests/peers/test_pdf_templates.py."""

from __future__ import annotations

import copy
import functools
import io
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter

import pdfsign
from pdfsign import AcroFormTemplate, EncryptedPdf, InvalidPdf, TemplateError
from tests.pdfsign.forms import SIDECAR, acroform_pdf
from tests.pdfsign.pdfs import encrypted_pdf
from tests.pdfsign.test_templates import VALUES
from tests.support.pki import cached_pki

FORM_VALUES: dict[str, Any] = {
    "patient.name": "张三丰",
    "patient.id": "110101199001011234",
    "diagnosis": "急性上呼吸道感染，伴咽痛、低热三天。\n建议休息，多饮水。",
    "visit_date": "2026-11-26",
    "weight": 63.5,
    "consent": True,
    "dept": "nk",
}


@functools.cache
def form_template() -> AcroFormTemplate:
    template: AcroFormTemplate = AcroFormTemplate.from_pdf(acroform_pdf(), SIDECAR)
    return template


@functools.cache
def filled() -> bytes:
    pdf: bytes = form_template().render(FORM_VALUES)
    return pdf


def _fields(pdf: bytes) -> dict[str, Any]:
    reader = PdfFileReader(io.BytesIO(pdf))
    found = {}
    for ref in reader.root["/AcroForm"]["/Fields"]:
        field = ref.get_object()
        for kid in field.get("/Kids", []):
            found[f"{field['/T']}.{kid.get_object()['/T']}"] = kid.get_object()
        if "/Kids" not in field:
            found[str(field["/T"])] = field
    return found


def test_fields_typed_from_the_form_and_the_sidecar() -> None:
    template = form_template()
    assert template.ref == "consent-form@1"
    assert [(f.name, f.type) for f in template.fields] == [
        ("patient.name", "text"), ("patient.id", "text"), ("visit_date", "date"),
        ("diagnosis", "multiline"), ("weight", "number"), ("consent", "checkbox"),
        ("dept", "choice")]
    name = template.fields[0]
    assert (name.label, name.required) == ("姓名", True)
    assert template.fields[1].field.max_length == 18  # the PDF's /MaxLen
    assert template.fields[-1].field.options == ("nk", "wk")
    assert template.signature_order == ["patient_sig", "doctor_sig"]
    assert [(s.role, s.kind, s.rect, s.page) for s in template.signatures] == [
        ("患者", "handwriting", (300, 100, 450, 160), 0),
        ("医师", "handwriting", (100, 100, 250, 160), 0)]
    bare = AcroFormTemplate.from_pdf(acroform_pdf(), template_id="bare", version=3)
    assert bare.ref == "bare@3"
    assert [s.role for s in bare.signatures] == ["doctor_sig", "patient_sig"]
    assert {f.name: f.type for f in bare.fields}["visit_date"] == "text"


def test_render_sets_values_appearances_and_records_the_template() -> None:
    pdf = filled()
    reader = PdfFileReader(io.BytesIO(pdf))
    info = reader.trailer["/Info"]
    assert str(info["/MedsignTemplate"]) == "consent-form@1"
    assert str(info["/MedsignSignatureOrder"]) == "patient_sig,doctor_sig"
    form = reader.root["/AcroForm"]
    assert "/NeedAppearances" not in form
    fields = _fields(pdf)
    assert str(fields["patient.name"]["/V"]) == "张三丰"
    assert str(fields["visit_date"]["/V"]) == "2026年11月26日"
    assert str(fields["weight"]["/V"]) == "63.5kg"
    assert str(fields["dept"]["/V"]) == "nk"
    assert fields["consent"]["/V"] == "/On" and fields["consent"]["/AS"] == "/On"
    for name in ("patient.name", "diagnosis", "dept", "consent"):
        assert int(fields[name]["/Ff"]) & 1, name  # read-only once filled
    appearance = fields["patient.name"]["/AP"]["/N"]
    font = appearance["/Resources"]["/Font"]["/F1"]
    assert font["/Subtype"] == "/Type0" and "/ToUnicode" in font
    assert "/FontFile2" in font["/DescendantFonts"][0]["/FontDescriptor"]
    assert appearance.data.startswith(b"/Tx BMC")
    assert form["/DR"]["/Font"]["/MedsignCJK"].get_object() == font.get_object()
    assert pdf.startswith(acroform_pdf()[:9])  # one incremental update of the form


def test_optional_fields_left_empty() -> None:
    pdf = form_template().render({"patient.name": "李四"})
    fields = _fields(pdf)
    assert "/V" not in fields["diagnosis"]
    assert fields["consent"]["/V"] == "/Off"
    assert fields["diagnosis"]["/AP"]["/N"].data.count(b"Tj") == 0


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
def test_signed_into_its_slots_in_order(key_type: str) -> None:
    pki = cached_pki(key_type)
    pdf = filled()
    for slot in form_template().signature_order:
        pdf = pdfsign.sign_pdf(pdf, pki.doctor_key, pki.doctor, chain=pki.chain, field=slot)
    reports = pdfsign.validate_pdf(pdf, [pki.root])
    assert [r.field for r in reports] == ["patient_sig", "doctor_sig"]
    assert all(r.ok for r in reports), [r.problems for r in reports]


def no_form_pdf() -> bytes:
    writer = PdfFileWriter(stream_xrefs=False)  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


BAD_FORMS: dict[str, tuple[Any, type[Exception], str]] = {
    "not a pdf": (lambda: b"GIF89a" + b"\0" * 100, InvalidPdf, "not a PDF"),
    "truncated": (lambda: acroform_pdf()[:300], InvalidPdf, "PDF"),
    "encrypted": (encrypted_pdf, EncryptedPdf, "encrypted"),
    "too big": (lambda: acroform_pdf() + b"%" * (10 * 1024 * 1024), InvalidPdf, "limit"),
    "radio": (lambda: acroform_pdf(radio=True), TemplateError, "radio"),
    "signed slot": (lambda: acroform_pdf(signed_slot=True), TemplateError, "signed already"),
    "no form": (no_form_pdf, TemplateError, "no AcroForm"),
}


@pytest.mark.parametrize("case", sorted(BAD_FORMS))
def test_bad_forms(case: str) -> None:
    make, error, message = BAD_FORMS[case]
    with pytest.raises(error) as info:
        AcroFormTemplate.from_pdf(make(), {"id": "x"})
    assert message in str(info.value)
    assert isinstance(info.value, pdfsign.PdfSignError)


def _sidecar_with(path: str, key: str, value: Any) -> dict[str, Any]:
    sidecar = copy.deepcopy(SIDECAR)
    sidecar[path].setdefault(key, {}).update(value) if isinstance(value, dict) else (
        sidecar[path].update({key: value}))
    return sidecar


BAD_SIDECARS: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown type": (_sidecar_with("fields", "weight", {"type": "slider"}), "weight", "slider"),
    "type for the wrong field": (_sidecar_with("fields", "consent", {"type": "text"}),
                                 "consent", "Btn"),
    "unknown field": (_sidecar_with("fields", "nonexistent", {"label": "x"}), "nonexistent",
                      "not a field of the form"),
    "signature as field": (_sidecar_with("fields", "doctor_sig", {"label": "x"}),
                           "doctor_sig", "not a field"),
    "unknown key": (_sidecar_with("fields", "weight", {"colour": "red"}), "weight", "colour"),
    "bad kind": (_sidecar_with("signatures", "doctor_sig", {"kind": "stamp"}), "doctor_sig",
                 "stamp"),
    "same order": (_sidecar_with("signatures", "doctor_sig", {"order": 1}), "signatures",
                   "order"),
    "bad id": ({**SIDECAR, "id": "Not An Id"}, "id", "template id"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIDECARS))
def test_bad_sidecars(case: str) -> None:
    sidecar, field, message = BAD_SIDECARS[case]
    with pytest.raises(TemplateError) as info:
        AcroFormTemplate.from_pdf(acroform_pdf(), sidecar)
    assert info.value.field is not None and field in info.value.field, info.value.field
    assert message in str(info.value)


BAD_FORM_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "missing required": ({"patient.name": None}, "patient.name"),
    "wrong type": ({"weight": "63"}, "weight"),
    "out of range": ({"weight": 501}, "weight"),
    "bad date": ({"visit_date": "2026-02-30"}, "visit_date"),
    "not an option": ({"dept": "内科"}, "dept"),
    "checkbox": ({"consent": "yes"}, "consent"),
    "max length": ({"patient.id": "1" * 19}, "patient.id"),
    "does not fit": ({"visit_date": None, "weight": 1.5, "patient.name": "张" * 60},
                     "patient.name"),
    "multiline overflow": ({"diagnosis": "诊断" * 400}, "diagnosis"),
    "unknown field": ({"colour": "red"}, "colour"),
    "not in the font": ({"patient.name": "张\U0001f600"}, "patient.name"),
}


@pytest.mark.parametrize("case", sorted(BAD_FORM_VALUES))
def test_bad_values(case: str) -> None:
    change, field = BAD_FORM_VALUES[case]
    values = {k: v for k, v in {**FORM_VALUES, **change}.items() if v is not None}
    with pytest.raises(TemplateError) as info:
        form_template().render(values)
    assert info.value.field == field
    assert field in str(info.value)


def test_slot_names_rename_the_signature_fields_in_order() -> None:
    names = ["medsign-step-1", "medsign-step-2"]
    pdf = form_template().render(FORM_VALUES, slot_names=names)
    reader = PdfFileReader(io.BytesIO(pdf))
    assert str(reader.trailer["/Info"]["/MedsignSignatureOrder"]) == ",".join(names)
    fields = _fields(pdf)
    assert [int(v) for v in fields["medsign-step-1"]["/Rect"]] == [300, 100, 450, 160]  # patient
    assert "patient_sig" not in fields and "doctor_sig" not in fields
    layout = pdfsign.Template.sample().render(
        VALUES, slot_names=["medsign-step-1"])
    info = PdfFileReader(io.BytesIO(layout)).trailer["/Info"]
    assert str(info["/MedsignSignatureOrder"]) == "medsign-step-1,pharmacist,hospital_seal"
    with pytest.raises(TemplateError, match="slot_names"):
        form_template().render(FORM_VALUES, slot_names=["a", "a"])
