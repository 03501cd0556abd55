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
    pdf: bytes = Template.sample().render(VALUES)
    return pdf


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


# --- the embedded subset (pdfsign/_fonts.py) ----------------------------------------------------


def _font_program(pdf: bytes) -> tuple[bytes, Any]:
    reader = PdfFileReader(io.BytesIO(pdf))
    font = reader.root["/Pages"]["/Kids"][0]["/Resources"]["/Font"]["/F1"]
    cid_font = font["/DescendantFonts"][0]
    program = cid_font["/FontDescriptor"]["/FontFile2"].data
    return program, font


def test_subset_is_a_truetype_font_with_the_used_glyphs_only() -> None:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # noqa: PLC0415

    from pdfsign._fonts import cjk_face, cjk_font  # noqa: PLC0415

    program, font = _font_program(rendered())
    subset = TTFont(io.BytesIO(program))
    face = cjk_face()
    glyph_count = subset["maxp"].numGlyphs
    assert 50 < glyph_count < 1000 < len(face.metrics)  # a subset, not the 49 000-glyph face
    widths = font["/DescendantFonts"][0]["/W"][1]
    assert len(widths) == glyph_count
    glyf = subset["glyf"]
    for name in subset.getGlyphOrder():  # every outline decodes, components resolve
        glyph = glyf[name]
        glyph.getCoordinates(glyf)
    # each character's CID draws the same outline as the full face's glyph for it
    cmap = font["/ToUnicode"].data.decode()
    cid = next(int(line[1:5], 16) for line in cmap.splitlines()
               if line.endswith("<5F20>"))  # 张
    full = TTFont(io.BytesIO(cjk_font()))
    expected = full["glyf"][full.getBestCmap()[ord("张")]]
    actual = glyf[subset.getGlyphOrder()[cid]]
    assert expected.getCoordinates(full["glyf"])[0] == actual.getCoordinates(glyf)[0]
    assert subset["hmtx"][subset.getGlyphOrder()[cid]][0] == full["hmtx"][
        full.getBestCmap()[ord("张")]][0]


def test_renders_share_nothing_but_the_static_frame() -> None:
    template = Template.sample()
    first = template.render(VALUES)
    values = {**VALUES, "patient_name": "李四", "hospital_name": "上海测试医院"}
    second = template.render(values)
    _, font = _font_program(second)
    cmap = font["/ToUnicode"].data.decode()
    assert "<674E>" in cmap  # 李
    assert "<67D0>" not in cmap  # 某, only in the first render's values
    # the same values make the same document again: its /ID derives from them (the file's
    # /ModDate is the render time, so the bytes may differ by that)
    def document_id(pdf: bytes) -> object:
        return PdfFileReader(io.BytesIO(pdf)).trailer["/ID"]
    assert document_id(template.render(VALUES)) == document_id(first)
    assert document_id(first) != document_id(second)


def test_character_missing_from_the_font() -> None:
    with pytest.raises(TemplateError) as info:
        Template.sample().render({**VALUES, "patient_name": "张\U0001f600"})
    assert info.value.field == "patient_name"
    assert "U+1F600" in str(info.value)


# --- image fields -------------------------------------------------------------------------------


def _image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    from PIL import Image  # noqa: PLC0415

    colour: Any = {"RGBA": (200, 30, 30, 128), "RGB": (200, 30, 30)}.get(mode, 90)
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format=fmt)
    return out.getvalue()


def _b64(data: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(data).decode()


def image_spec() -> dict[str, Any]:
    return {"id": "photo-card", "version": 1, "page": "A5",
            "fields": [{"name": "name", "type": "text", "label": "姓名", "x": 30, "y": 500},
                       {"name": "photo", "type": "image", "label": "照片", "x": 300, "y": 400,
                        "width": 60, "height": 80, "required": True}]}


def _page_contents(pdf: bytes) -> tuple[Any, bytes]:
    reader = PdfFileReader(io.BytesIO(pdf))
    page = reader.root["/Pages"]["/Kids"][0]
    return page, page["/Contents"].data


@pytest.mark.parametrize(("fmt", "mode", "filter_", "smask"), [
    ("PNG", "RGBA", "/FlateDecode", True), ("JPEG", "RGB", "/DCTDecode", False),
    ("PNG", "L", "/FlateDecode", False)])
def test_image_field_fitted_keeping_aspect_ratio(fmt: str, mode: str, filter_: str,
                                                 smask: bool) -> None:
    data = _image_bytes(fmt, (200, 100), mode)  # 2:1 into a 60x80 box: 60 x 30, centred
    value = _b64(data) if fmt == "JPEG" else f"data:image/png;base64,{_b64(data)}"
    pdf = Template.from_spec(image_spec()).render({"name": "张三", "photo": value})
    page, contents = _page_contents(pdf)
    image = page["/Resources"]["/XObject"]["/Im1"]
    assert (image["/Width"], image["/Height"], image["/Filter"]) == (200, 100, filter_)
    assert ("/SMask" in image) == smask
    if fmt == "JPEG":
        assert image.encoded_data == data  # embedded as it is
    assert b"q 60.000 0 0 30.000 300.00 425.00 cm /Im1 Do Q" in contents


BAD_IMAGES: dict[str, tuple[Any, str]] = {
    "not base64": ("@@@not base64@@@", "base64"),
    "a number": (42, "expected a base64"),
    "not an image": (_b64(b"%PDF-1.7\n" + b"x" * 100), "PNG or JPEG"),
    "gif": (_b64(_image_bytes("GIF", (10, 10), "P")), "PNG or JPEG"),
    "too wide": (_b64(_image_bytes("PNG", (5000, 2), "L")), "too large"),
    "truncated png": (_b64(_image_bytes("PNG", (64, 64))[:60]), "PNG or JPEG"),
    "too many bytes": (_b64(b"\x89PNG" + b"\0" * (2 * 1024 * 1024 + 1)), "larger than"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_values(case: str) -> None:
    value, message = BAD_IMAGES[case]
    with pytest.raises(TemplateError) as info:
        Template.from_spec(image_spec()).render({"name": "张三", "photo": value})
    assert info.value.field == "photo"
    assert message in str(info.value)


def test_image_field_spec_needs_a_box_on_the_page() -> None:
    spec = image_spec()
    del spec["fields"][1]["height"]
    with pytest.raises(TemplateError, match="height is required"):
        Template.from_spec(spec)
    spec = image_spec()
    spec["fields"][1]["y"] = 550
    with pytest.raises(TemplateError, match="top edge"):
        Template.from_spec(spec)
    spec = image_spec()
    spec["fields"][1]["required"] = False
    pdf = Template.from_spec(spec).render({"name": "张三"})
    page, _ = _page_contents(pdf)
    assert "/XObject" not in page["/Resources"]
