"""Why ``pdffonts`` prints "Internal Error: xref num N not found but needed, try to
reconstruct" on a signed e-prescription -- and that the file is not broken.

Cause (found here, issue 7 item 5): a *visible* signature (a template's signature slot has a
box) gets pyHanko's default appearance stream, whose ``/Resources /Font`` holds the Courier
font dictionary *directly* (not as an indirect object).  That is valid PDF (ISO 32000-1
7.8.3: resource dictionaries map names to font dictionaries; nothing requires them indirect)
and qpdf finds no error.  poppler (22.12, ``GfxFontDict``) gives a font that has no object
number a made-up reference -- generation 100000, number = an FNV hash of the font dictionary --
and ``pdffonts`` then looks that number up in the cross-reference table, which prints the
internal error.  The number is the hash of the dictionary, hence the same on every run whatever
the keys, and the same with one, two or three signatures.  Not our incremental writer: an
invisible signature (no appearance) never shows it, and moving the very same font dictionaries
into indirect objects (an incremental update made here) makes pdffonts quiet, with the signed
bytes untouched.

So it is poppler's quirk with direct font dictionaries, triggered by pyHanko's default
appearance (reproduced here with pyHanko's ``TextStampStyle`` directly).  The appearances
deliverable (pdfsign/appearance.py), which replaces that default, should write its font
dictionaries as indirect objects to keep pdffonts quiet.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.fields import SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.stamp import TextStampStyle

import pdfsign
from pdfsign import Template
from pdfsign.signer import SigncoreSigner
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.test_templates import rendered
from tests.support.peers import require_tool, run_tool
from tests.support.pki import cached_pki

pytestmark = pytest.mark.peer

POPPLER_MESSAGE = b"not found but needed, try to reconstruct"


def _pdffonts(data: bytes, tmp_path: Path, name: str) -> tuple[str, bytes]:
    path = tmp_path / name
    path.write_bytes(data)
    result = run_tool([require_tool("pdffonts"), path])
    return result.stdout.decode(), result.stderr


def _qpdf_clean(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "check.pdf"
    path.write_bytes(data)
    result = run_tool([require_tool("qpdf"), "--check", path])
    assert b"No syntax or stream encoding errors found" in result.stdout, result.stdout


def _signed_prescription(signatures: int) -> bytes:
    """The e-prescription signed into its slots with pyHanko's default text appearance
    (``TextStampStyle``), as pdfsign did when the symptom was reported -- through pyHanko
    directly, so that this diagnosis does not change when pdfsign's appearances do."""
    pki = cached_pki("sm2")
    pdf = rendered()
    for slot in Template.sample().signature_order[:signatures]:
        signer = PdfSigner(
            PdfSignatureMetadata(field_name=slot, md_algorithm="sm3",
                                 subfilter=SigSeedSubFilter.PADES),
            signer=SigncoreSigner(pki.doctor, key=pki.doctor_key, chain=pki.chain),
            stamp_style=TextStampStyle())
        out = signer.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False))
        pdf = out.getvalue()
    return pdf


def _indirect_appearance_fonts(data: bytes) -> tuple[bytes, int]:
    """The same document with every direct font dictionary of the signature appearances moved
    into an indirect object (an incremental update; the signed revisions are untouched)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    moved = 0
    for _name, _value, ref in enumerate_sig_fields(writer.prev, filled_status=True):
        appearance = ref.get_object()["/AP"].raw_get("/N")
        fonts = appearance.get_object()["/Resources"]["/Font"]
        for key in list(fonts):
            font = fonts.raw_get(key)
            if not isinstance(font, generic.IndirectObject):
                fonts[key] = writer.add_object(font)
                moved += 1
        writer.mark_update(appearance)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue(), moved


@pytest.mark.parametrize("signatures", [1, 3])
def test_the_message_comes_from_direct_font_dicts_in_appearances(signatures: int,
                                                                 tmp_path: Path) -> None:
    _unsigned_fonts, unsigned_err = _pdffonts(rendered(), tmp_path, "rx.pdf")
    assert POPPLER_MESSAGE not in unsigned_err, unsigned_err

    signed = _signed_prescription(signatures)
    fonts, err = _pdffonts(signed, tmp_path, "rx-signed.pdf")
    assert POPPLER_MESSAGE in err, err  # the symptom reported
    # the appearance fonts have no object number ("[none]": direct dictionaries)
    direct = [line for line in fonts.splitlines() if line.startswith("Courier")]
    assert len(direct) == signatures and all(line.endswith("[none]") for line in direct), fonts
    _qpdf_clean(signed, tmp_path)  # and the file is fine

    fixed, moved = _indirect_appearance_fonts(signed)
    assert moved == signatures and fixed.startswith(signed)
    fonts, err = _pdffonts(fixed, tmp_path, "rx-indirect.pdf")
    assert POPPLER_MESSAGE not in err, err
    assert not any(line.endswith("[none]") for line in fonts.splitlines()[2:]), fonts
    _qpdf_clean(fixed, tmp_path)
    reports = pdfsign.validate_pdf(fixed, [cached_pki("sm2").root])
    assert len(reports) == signatures and all(r.intact and r.valid for r in reports)


def test_invisible_signatures_never_show_it(tmp_path: Path) -> None:
    pki = cached_pki("sm2")
    pdf = minimal_pdf()
    for field in ("doctor", "pharmacist", "seal"):
        pdf = pdfsign.sign_pdf(pdf, pki.doctor_key, pki.doctor, chain=pki.chain, field=field)
    _fonts, err = _pdffonts(pdf, tmp_path, "invisible.pdf")
    assert POPPLER_MESSAGE not in err, err
