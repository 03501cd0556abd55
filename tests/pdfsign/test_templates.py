"""pdfsign templates: the sample e-prescription rendered with Chinese values, signed into its
slots in order (SM2 and RSA) and validated; bad specs and bad values raise TemplateError naming
the field.  (Text extraction, font embedding and ``qpdf --check`` by the real tools:
tests/peers/test_pdf_templates.py.)"""

from __future__ import annotations

import copy
import functools
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyhanko.pdf_utils.reader import PdfFileReader

import pdfsign
from pdfsign import Template, TemplateError
from tests.support.pki import cached_pki

SAMPLE = Path(pdfsign.__file__).parent / "templates" / "e-prescription.json"

VALUES: dict[str, Any] = {
    "hospital_name": "北京市测试人民医院",
    "prescription_no": "RX-2026-0815",
    "date": "2026-11-26",
    "patient_name": "张某某",
    "sex": "男",
    "age": 42,
    "department": "呼吸内科",
    "urgent": True,
    "diagnosis": "急性上呼吸道感染，伴咽痛、低热三天。",
    "drugs": [
        {"name": "阿莫西林胶囊", "specification": "0.25g×24粒", "dose": "0.5g",
         "usage": "口服 每日三次", "quantity": "2盒"},
        {"name": "布洛芬缓释胶囊", "specification": "0.3g×20粒", "dose": "0.3g",
         "usage": "口服 必要时", "quantity": "1盒"},
    ],
    "amount": 56.8,
}


def sample_spec() -> dict[str, Any]:
    spec = json.loads(SAMPLE.read_text(encoding="utf-8"))
    assert isinstance(spec, dict)
    return spec


@functools.cache
def rendered() -> bytes:
    """The sample rendered once per process (a render subsets the CJK font: about a second)."""
    return Template.sample().render(VALUES)


def test_sample_loads() -> None:
    template = Template.sample()
    assert template.ref == "e-prescription@1"
    assert template.page_size == "A5"
    assert template.signature_order == ["doctor", "pharmacist", "hospital_seal"]
    assert [s.kind for s in template.signatures] == ["handwriting", "handwriting", "seal"]
    assert {f.type for f in template.fields} >= {"text", "multiline", "date", "number",
                                                 "checkbox", "choice", "table"}
    assert Template.load(SAMPLE) == template


def test_yaml_spec_loads_to_the_same_template() -> None:
    text = yaml.safe_dump(sample_spec(), allow_unicode=True)
    assert Template.from_yaml(text) == Template.from_spec(sample_spec())


def test_render_records_template_fonts_and_slots() -> None:
    pdf = rendered()
    assert pdf.startswith(b"%PDF-")
    reader = PdfFileReader(io.BytesIO(pdf))
    info = reader.trailer["/Info"]
    assert str(info["/MedsignTemplate"]) == "e-prescription@1"
    assert str(info["/MedsignSignatureOrder"]) == "doctor,pharmacist,hospital_seal"
    assert str(info["/Title"]) == "门诊电子处方"
    page = reader.root["/Pages"]["/Kids"][0]
    assert [float(v) for v in page["/MediaBox"]] == [0, 0, 420, 595]
    font = page["/Resources"]["/Font"]["/F1"]
    assert font["/Subtype"] == "/Type0" and "/ToUnicode" in font
    descriptor = font["/DescendantFonts"][0]["/FontDescriptor"]
    assert "/FontFile2" in descriptor or "/FontFile3" in descriptor
    assert str(descriptor["/FontName"])[7:8] == "+"  # a subset tag: ABCDEF+Name
    fields = {str(f.get_object()["/T"]): f.get_object()
              for f in reader.root["/AcroForm"]["/Fields"]}
    assert set(fields) == {"doctor", "pharmacist", "hospital_seal"}
    assert all(f["/FT"] == "/Sig" and "/V" not in f for f in fields.values())
    assert [int(v) for v in fields["hospital_seal"]["/Rect"]] == [300, 125, 400, 228]


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
def test_signed_into_slots_in_order(key_type: str) -> None:
    pki = cached_pki(key_type)
    pdf = rendered()
    for slot in Template.sample().signature_order:
        pdf = pdfsign.sign_pdf(pdf, pki.doctor_key, pki.doctor, chain=pki.chain, field=slot)
    reports = pdfsign.validate_pdf(pdf, [pki.root])
    assert [r.field for r in reports] == ["doctor", "pharmacist", "hospital_seal"]
    for report in reports:
        assert report.ok, report.problems
        assert report.intact and report.valid and report.trusted
    assert reports[-1].covers_entire_file


def _spec_with(change: Any) -> dict[str, Any]:
    spec = sample_spec()
    change(spec)
    return spec


def _field(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in spec["fields"] if f["name"] == name)


BAD_SPECS = {
    "unknown type": (lambda s: _field(s, "age").update(type="slider"), "age", "slider"),
    "unknown key": (lambda s: _field(s, "age").update(colour="red"), "age", "colour"),
    "duplicate": (lambda s: _field(s, "sex").update(name="age"), "age", "more than one"),
    "bad kind": (lambda s: s["signatures"][0].update(kind="stamp"), "signatures[0]",
                 "stamp"),
    "rect off page": (lambda s: s["signatures"][2].update(rect=[300, 125, 500, 228]),
                      "signatures[2]", "inside the page"),
    "same order": (lambda s: s["signatures"][1].update(order=1), "signatures", "order"),
    "no options": (lambda s: _field(s, "sex").update(options=[]), "sex", "options"),
    "bad column type": (lambda s: _field(s, "drugs")["columns"][0].update(type="image"),
                        "drugs", "image"),
    "bad page": (lambda s: s.update(page="Letter"), "page", "Letter"),
    "bad version": (lambda s: s.update(version="1"), "version", "int"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec(case: str) -> None:
    change, field, text = BAD_SPECS[case]
    with pytest.raises(TemplateError) as info:
        Template.from_spec(_spec_with(change))
    assert info.value.field is not None and field in info.value.field
    assert text in str(info.value)
    assert isinstance(info.value, pdfsign.PdfSignError)


def test_bad_spec_text() -> None:
    with pytest.raises(TemplateError, match="JSON"):
        Template.from_json("{not json")
    with pytest.raises(TemplateError, match="YAML"):
        Template.from_yaml("a: [")
    with pytest.raises(TemplateError, match="expected an object"):
        Template.from_yaml("- a list")


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "wrong type": ({"age": "42"}, "age"),
    "bool for number": ({"age": True}, "age"),
    "not whole": ({"age": 42.5}, "age"),
    "out of range": ({"age": 151}, "age"),
    "missing required": ({"patient_name": None}, "patient_name"),
    "too long": ({"patient_name": "张" * 21}, "patient_name"),
    "does not fit": ({"department": "心" * 20}, "department"),
    "line break": ({"patient_name": "张\n三"}, "patient_name"),
    "bad date": ({"date": "2026-02-30"}, "date"),
    "date format": ({"date": "26/11/2026"}, "date"),
    "not an option": ({"sex": "未知"}, "sex"),
    "checkbox": ({"urgent": "yes"}, "urgent"),
    "multiline too long": ({"diagnosis": "诊" * 100}, "diagnosis"),
    "unknown field": ({"colour": "red"}, "colour"),
    "no rows": ({"drugs": []}, "drugs"),
    "too many rows": ({"drugs": [{"name": "药", "quantity": "1"}] * 7}, "drugs"),
    "missing cell": ({"drugs": [{"name": "药"}]}, "drugs[1].quantity"),
    "unknown column": ({"drugs": [{"name": "药", "quantity": "1", "price": 2}]},
                       "drugs[1].price"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values(case: str) -> None:
    change, field = BAD_VALUES[case]
    values = copy.deepcopy(VALUES)
    values.update(change)
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(TemplateError) as info:
        Template.sample().render(values)
    assert info.value.field == field
    assert field in str(info.value)


def test_optional_fields_may_be_left_out() -> None:
    values = {k: v for k, v in VALUES.items() if k not in ("urgent", "amount")}
    spec = sample_spec()
    spec["signatures"] = []
    pdf = Template.from_spec(spec).render(values)
    reader = PdfFileReader(io.BytesIO(pdf))
    assert "/AcroForm" not in reader.root or not reader.root["/AcroForm"]["/Fields"]
