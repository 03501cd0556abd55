"""pdfsign appearances: seal images (image XObject with an SMask, scaled into the box),
handwriting as vector paths (pen width from pressure) or a PNG, CJK text lines with an embedded
subset font, the strokes digest in the signed attributes (one-shot and two-phase), and bad input.

The PDFs are read back with pyHanko's reader (the appearance stream of the signed widget);
the peers (qpdf, pdfsig, pdftotext, pdffonts) are in tests/peers/test_pdf_appearance.py.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zlib
from typing import Any

import pytest
from PIL import Image, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader

import pdfsign
from pdfsign import Appearance, InvalidAppearance, Level, Slot, Strokes
from pdfsign.appearance import MAX_IMAGE_BYTES, STROKES_DIGEST_OID
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.tsa import TestTSA
from tests.support import gmssl_oracle
from tests.support.pki import TestPKI, cached_pki

KEY_TYPES = ("sm2", "rsa2048")


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def seal_png(side: int = 160) -> bytes:
    """A red ring on a transparent background, like a scanned seal with its paper removed."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([4, 4, side - 4, side - 4], outline=(200, 0, 0, 255),
                                  width=side // 16)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def signature_strokes() -> Strokes:
    """Two strokes: a light wave and a heavy bar, and a one-point dot."""
    wave = [(0.05 + i / 40, 0.5 + 0.3 * math.sin(i / 4), i * 12, 0.1) for i in range(36)]
    bar = [(0.2 + i / 20, 0.85, 600 + i * 10, 0.9) for i in range(10)]
    return Strokes.from_points(400, 200, [wave, bar, [(0.95, 0.1, 900, 0.5)]])


def _widget(data: bytes, field: str) -> Any:
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    for ref in reader.root["/AcroForm"]["/Fields"]:
        obj = ref.get_object()
        if obj["/T"] == field:
            return obj
    raise AssertionError(f"no field {field}")


def _appearance_stream(data: bytes, field: str) -> tuple[bytes, Any]:
    stream = _widget(data, field)["/AP"]["/N"].get_object()
    return stream.data, stream["/Resources"]


def _sign(pki: TestPKI, appearance: Appearance, field: str = "Signature1",
          pdf: bytes | None = None) -> bytes:
    return pdfsign.sign_pdf(pdf or minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                            field=field, appearance=appearance)


def _only(data: bytes, pki: TestPKI) -> pdfsign.SignatureReport:
    (report,) = pdfsign.validate_pdf(data, [pki.root])
    return report


# --- strokes and their digest -------------------------------------------------------------------


def test_canonical_encoding_is_as_documented() -> None:
    strokes = Strokes.from_points(300, 150, [[(0, 1, 0, 0.5), (0.12345, 0.5, 17.4, 1)],
                                             [(1, 0, 1000, 0)]])
    expected = (b"MEDSIGN-STROKES-1\x00" + struct.pack(">III", 300, 150, 2)
                + struct.pack(">I", 2) + struct.pack(">HHIH", 0, 10000, 0, 5000)
                + struct.pack(">HHIH", 1234, 5000, 17, 10000)
                + struct.pack(">I", 1) + struct.pack(">HHIH", 10000, 0, 1000, 0))
    assert strokes.canonical() == expected
    assert strokes.digest() == gmssl_oracle.sm3(expected)  # SM3 by an independent implementation


def test_normalization_absorbs_noise_below_the_quantum() -> None:
    a = Strokes.from_points(100, 100, [[(0.5, 0.5, 10, 0.5)]])
    b = Strokes.from_points(100, 100, [[(0.500001, 0.499999, 10.2, 0.5000001)]])
    c = Strokes.from_points(100, 100, [[(0.5001, 0.5, 10, 0.5)]])
    assert a.digest() == b.digest() != c.digest()


@pytest.mark.parametrize(("width", "height", "strokes"), [
    (0, 100, [[(0.5, 0.5, 0, 0.5)]]),
    (100, 5000, [[(0.5, 0.5, 0, 0.5)]]),
    (100, 100, []),
    (100, 100, [[]]),
    (100, 100, [[(1.5, 0.5, 0, 0.5)]]),
    (100, 100, [[(0.5, -0.1, 0, 0.5)]]),
    (100, 100, [[(0.5, 0.5, -1, 0.5)]]),
    (100, 100, [[(0.5, 0.5, 0, math.nan)]]),
    (100, 100, [[(True, 0.5, 0, 0.5)]]),
    (100, 100, [[(0.5, 0.5, 0, 0.5)]] * 101),
    (100, 100, [[(0.5, 0.5, 0, 0.5)] * 20_001]),
])
def test_bad_strokes_are_refused(width: int, height: int, strokes: Any) -> None:
    with pytest.raises(InvalidAppearance):
        Strokes.from_points(width, height, strokes)


# --- the seal image -----------------------------------------------------------------------------


def test_seal_image_is_an_image_xobject_with_smask(pki: TestPKI) -> None:
    signed = _sign(pki, Appearance((72, 600, 222, 700), image=seal_png()))
    assert _only(signed, pki).ok
    content, resources = _appearance_stream(signed, "Signature1")
    names = list(resources["/XObject"])
    assert len(names) == 1
    image = resources["/XObject"][names[0]].get_object()
    assert (image["/Subtype"], image["/Width"], image["/Height"]) == ("/Image", 160, 160)
    assert image["/ColorSpace"] == "/DeviceRGB"
    smask = image["/SMask"].get_object()
    assert (smask["/Width"], smask["/ColorSpace"]) == (160, "/DeviceGray")
    alpha = smask.data
    assert alpha[0] == 0 and 255 in alpha  # transparent corner, opaque ring
    # painted once, scaled into the 150 x 100 box keeping the square shape (minus margins)
    match = re.search(rb"q ([\d.]+) 0 0 ([\d.]+) ([\d.]+) ([\d.]+) cm " + names[0].encode()
                      + rb" Do Q", content)
    assert match, content
    w, h, x, _y = (float(g) for g in match.groups())
    assert w == h == pytest.approx(96.0)
    assert x == pytest.approx((150 - 96) / 2)


def test_seal_with_lines_embeds_a_subset_cjk_font(pki: TestPKI) -> None:
    lines = ("测试医院", "%(signer)s", "医务处 %(ts)s")
    signed = _sign(pki, Appearance((72, 600, 272, 700), image=seal_png(), lines=lines))
    assert _only(signed, pki).ok
    content, resources = _appearance_stream(signed, "Signature1")
    (font_name,) = list(resources["/Font"])
    font = resources["/Font"][font_name].get_object()
    assert font["/Subtype"] == "/Type0" and font["/Encoding"] == "/Identity-H"
    assert re.fullmatch(r"/[A-Z]{6}\+.*", str(font["/BaseFont"]))  # a subset tag
    cid_font = font["/DescendantFonts"][0].get_object()
    assert "/FontFile2" in cid_font["/FontDescriptor"] or "/FontFile3" in \
        cid_font["/FontDescriptor"]
    to_unicode = font["/ToUnicode"].get_object().data
    for char in "测试医院":
        assert b"<%04X>" % ord(char) in to_unicode.upper(), char
    assert content.count(b" Tj") + content.count(b"TJ") >= 3
    assert b"%(signer)s" not in content
    # widths in 1/1000 em: a CJK glyph is one em wide
    w_array = list(cid_font["/W"])  # cid [w1 w2 ...] cid [...]
    widths = [int(w) for chunk in w_array[1::2] for w in chunk]
    assert 1000 in widths and max(widths) < 1100


# --- handwriting --------------------------------------------------------------------------------


def test_handwriting_is_drawn_as_vector_paths(pki: TestPKI) -> None:
    strokes = signature_strokes()
    signed = _sign(pki, Appearance((300, 600, 500, 700), strokes=strokes,
                                   lines=("张三", "主治医师")))
    report = _only(signed, pki)
    assert report.ok and report.strokes_digest == strokes.digest()
    content, resources = _appearance_stream(signed, "Signature1")
    assert "/XObject" not in resources  # no image: paths
    widths = {float(w) for w in re.findall(rb"([\d.]+) w ", content)}
    assert len(widths) == 3  # light wave, heavy bar, the dot
    assert max(widths) > 2 * min(widths)  # pressure 0.9 against 0.1
    assert content.count(b" l") >= 35 + 9 + 1
    assert b"1 J 1 j" in content  # round caps: the one-point stroke is a dot


def test_handwriting_png_fallback(pki: TestPKI) -> None:
    signed = _sign(pki, Appearance((300, 600, 500, 700), strokes=signature_strokes(),
                                   vector=False))
    assert _only(signed, pki).strokes_digest == signature_strokes().digest()
    content, resources = _appearance_stream(signed, "Signature1")
    (name,) = list(resources["/XObject"])
    image = resources["/XObject"][name].get_object()
    assert image["/ColorSpace"] == "/DeviceGray" and "/SMask" in image
    assert (image["/Width"], image["/Height"]) == (600, 300)
    assert b" m " not in content


def test_handwriting_in_an_existing_slot(pki: TestPKI) -> None:
    first = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                             field="doctor", slots=[Slot("pharmacist", box=(300, 100, 450, 160))])
    signed = _sign(pki, Appearance(strokes=signature_strokes(), lines=("李四",)),
                   field="pharmacist", pdf=first)
    reports = pdfsign.validate_pdf(signed, [pki.root])
    assert [r.ok for r in reports] == [True, True]
    assert [r.strokes_digest for r in reports] == [None, signature_strokes().digest()]
    content, _resources = _appearance_stream(signed, "pharmacist")
    assert b" w " in content and b"Tf" in content


def test_strokes_digest_in_two_phase_signing(pki: TestPKI) -> None:
    strokes = signature_strokes()
    prepared = pdfsign.prepare_pdf(minimal_pdf(), pki.doctor, chain=pki.chain, level=Level.B_T,
                                   appearance=Appearance((72, 600, 272, 700), strokes=strokes,
                                                         lines=("王五",)))
    state = pdfsign.PreparedPdf.from_dict(prepared.to_dict())
    signed = state.finish(pki.doctor_key.sign_digest(state.digest()), timestamper=TestTSA(pki))
    report = _only(signed, pki)
    assert report.ok and report.level == "B-T"
    assert report.strokes_digest == strokes.digest()


def test_no_strokes_no_attribute(pki: TestPKI) -> None:
    signed = _sign(pki, Appearance((72, 600, 272, 700), image=seal_png()))
    assert _only(signed, pki).strokes_digest is None
    assert STROKES_DIGEST_OID.encode() not in signed


def test_a_changed_strokes_digest_breaks_the_signature(pki: TestPKI) -> None:
    strokes = signature_strokes()
    signed = _sign(pki, Appearance((72, 600, 272, 700), strokes=strokes))
    assert _only(signed, pki).ok
    other = Strokes.from_points(400, 200, [[(0.5, 0.5, 0, 0.5)]]).digest()
    needle = strokes.digest().hex().encode()
    if needle not in signed:  # the /Contents hex string may be upper case
        needle, other_hex = needle.upper(), other.hex().upper().encode()
    else:
        other_hex = other.hex().encode()
    assert signed.count(needle) == 1
    forged = signed.replace(needle, other_hex)
    report = _only(forged, pki)
    assert report.strokes_digest == other
    assert not report.valid and not report.ok


# --- bad input ----------------------------------------------------------------------------------


def _huge_pixels() -> bytes:
    out = io.BytesIO()
    Image.new("L", (3000, 3000)).save(out, format="PNG")  # small file, 9 megapixels
    return out.getvalue()


def _png_with_bad_crc() -> bytes:
    data = bytearray(seal_png())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("image", [
    b"", b"not an image", b"%PDF-1.7\n", seal_png()[:200], _png_with_bad_crc(),
    b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_IMAGE_BYTES + 1), _huge_pixels(),
    b"GIF89a" + zlib.compress(b"x" * 100),
], ids=["empty", "text", "pdf", "truncated", "bad-crc", "too-big", "too-many-pixels", "gif"])
def test_bad_images_are_refused(image: bytes) -> None:
    pki = cached_pki("sm2")
    with pytest.raises(InvalidAppearance):
        _sign(pki, Appearance((72, 600, 272, 700), image=image))
    with pytest.raises(InvalidAppearance):
        pdfsign.load_image(image)


def test_bad_appearances_are_refused() -> None:
    with pytest.raises(InvalidAppearance):
        Appearance(image=seal_png(), strokes=signature_strokes())
    with pytest.raises(InvalidAppearance):
        Appearance(lines=("a",) * 5)
    with pytest.raises(InvalidAppearance):
        Appearance(lines=("x" * 65,))
    with pytest.raises(InvalidAppearance):
        Appearance(lines=("two\nlines",))


def test_palette_and_grey_images_are_embedded() -> None:
    pki = cached_pki("sm2")
    palette = Image.open(io.BytesIO(seal_png())).convert("P")
    palette.info["transparency"] = 0
    for image in (palette, Image.new("L", (50, 20), 128), Image.new("RGB", (10, 10))):
        out = io.BytesIO()
        image.save(out, format="PNG")
        assert _only(_sign(pki, Appearance((72, 600, 272, 700), image=out.getvalue())),
                     pki).ok


def test_latin_text_appearance_unchanged(pki: TestPKI) -> None:
    signed = _sign(pki, Appearance((72, 600, 300, 680)))
    content, _resources = _appearance_stream(signed, "Signature1")
    assert _only(signed, pki).ok
    assert b"Tf" in content and b"/MedsignF1" not in content  # pyHanko's text stamp


def test_signature_slots_and_order_of_a_template() -> None:
    from tests.pdfsign.test_templates import rendered  # noqa: PLC0415  (renders: slow)

    rx = rendered()
    assert pdfsign.signature_order(rx) == ["doctor", "pharmacist", "hospital_seal"]
    slots = {s.name: s for s in pdfsign.signature_slots(rx)}
    assert slots["hospital_seal"].box == (300, 125, 400, 228) and slots["doctor"].page == 0
    pki = cached_pki("sm2")
    signed = _sign(pki, Appearance(image=seal_png()), field="hospital_seal", pdf=rx)
    assert [s.name for s in pdfsign.signature_slots(signed)] == ["doctor", "pharmacist"]
    assert pdfsign.signature_order(minimal_pdf()) == [] == pdfsign.signature_slots(minimal_pdf())
    with pytest.raises(pdfsign.InvalidPdf):
        pdfsign.signature_slots(b"not a pdf")
