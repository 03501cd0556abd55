"""The sample e-prescription template rendered with Chinese values, checked by poppler and qpdf:
``pdftotext`` gets the Chinese text back out (through the embedded font's ToUnicode CMap),
``pdffonts`` shows every font embedded and subset, ``qpdf --check`` finds no error -- for the
rendered PDF and for it signed into its three slots.  The same for an AcroForm template filled
with Chinese values (the text is in the widgets' appearance streams) and signed into its slots
(``pdfsig`` checks the signatures), and for a layout template with an image field
(``pdfimages`` lists the image and its alpha mask)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import pdfsign
from pdfsign import Template
from tests.pdfsign.test_acroform import FORM_VALUES, filled, form_template
from tests.pdfsign.test_templates import VALUES, image_spec, rendered
from tests.support.peers import require_tool, run_tool
from tests.support.pki import cached_pki

pytestmark = pytest.mark.peer


def _write(tmp_path: Path, data: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _signed() -> bytes:
    pki = cached_pki("sm2")
    pdf = rendered()
    for slot in Template.sample().signature_order:
        pdf = pdfsign.sign_pdf(pdf, pki.doctor_key, pki.doctor, chain=pki.chain, field=slot)
    return pdf


def test_chinese_text_is_extractable(tmp_path: Path) -> None:
    pdftotext = require_tool("pdftotext")
    path = _write(tmp_path, rendered(), "rx.pdf")
    text = run_tool([pdftotext, "-enc", "UTF-8", path, "-"]).stdout.decode("utf-8")
    for expected in ("门诊电子处方", VALUES["hospital_name"], VALUES["patient_name"],
                     VALUES["department"], VALUES["diagnosis"], "阿莫西林胶囊", "0.25g×24粒",
                     "口服 每日三次", "布洛芬缓释胶囊", "2026年11月26日", "42岁", "56.80元",
                     "临床诊断", "药品名称", "医师签名", "医院盖章"):
        assert expected in text, (expected, text)


def _qpdf_clean(path: Path) -> None:
    result = run_tool([require_tool("qpdf"), "--check", path], check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"No syntax or stream encoding errors" in result.stdout


def test_fonts_embedded_and_qpdf_clean(tmp_path: Path) -> None:
    path = _write(tmp_path, rendered(), "rx.pdf")
    lines = run_tool([require_tool("pdffonts"), path]).stdout.decode().splitlines()
    fonts = lines[2:]
    assert fonts, lines
    for line in fonts:
        # name type encoding emb sub uni object ID: the last five columns are fixed
        emb, sub, uni = line.split()[-5:-2]
        assert (emb, sub, uni) == ("yes", "yes", "yes"), line
    _qpdf_clean(path)


def test_signed_into_slots_qpdf_clean(tmp_path: Path) -> None:
    # (pyHanko's default appearance in the signed slots adds a non-embedded Courier: the
    # appearances deliverable replaces it; only the template's own font is checked here.)
    _qpdf_clean(_write(tmp_path, _signed(), "rx-signed.pdf"))


def _fonts_embedded(path: Path) -> None:
    lines = run_tool([require_tool("pdffonts"), path]).stdout.decode().splitlines()
    assert lines[2:], lines
    for line in lines[2:]:
        emb, sub, uni = line.split()[-5:-2]
        assert (emb, sub, uni) == ("yes", "yes", "yes"), line


def test_acroform_filled_text_extractable_fonts_embedded_qpdf_clean(tmp_path: Path) -> None:
    path = _write(tmp_path, filled(), "form.pdf")
    text = run_tool([require_tool("pdftotext"), "-enc", "UTF-8", path, "-"]).stdout.decode()
    for expected in (FORM_VALUES["patient.name"], FORM_VALUES["patient.id"], "急性上呼吸道感染",
                     "建议休息", "2026年11月26日", "63.5kg", "内科"):
        assert expected in text, (expected, text)
    _fonts_embedded(path)
    _qpdf_clean(path)


def test_acroform_signed_into_slots_pdfsig_and_qpdf(tmp_path: Path) -> None:
    pki = cached_pki("rsa2048")
    pdf = filled()
    for slot in form_template().signature_order:
        pdf = pdfsign.sign_pdf(pdf, pki.doctor_key, pki.doctor, chain=pki.chain, field=slot)
    path = _write(tmp_path, pdf, "form-signed.pdf")
    _qpdf_clean(path)
    out = run_tool([require_tool("pdfsig"), path], check=False).stdout.decode()
    assert out.count("Signature Validation: Signature is Valid.") == 2, out
    assert "patient_sig" in out and "doctor_sig" in out, out


def test_image_field_pdfimages_and_qpdf(tmp_path: Path) -> None:
    import base64  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    png = io.BytesIO()
    Image.new("RGBA", (120, 60), (10, 120, 200, 160)).save(png, format="PNG")
    pdf = Template.from_spec(image_spec()).render(
        {"name": "张三", "photo": base64.b64encode(png.getvalue()).decode()})
    path = _write(tmp_path, pdf, "photo.pdf")
    _qpdf_clean(path)
    _fonts_embedded(path)
    listing = run_tool([require_tool("pdfimages"), "-list", path]).stdout.decode().splitlines()
    kinds = sorted((row.split()[2], row.split()[3], row.split()[4]) for row in listing[2:])
    assert kinds == [("image", "120", "60"), ("smask", "120", "60")], listing
