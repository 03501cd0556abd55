"""An AcroForm PDF built field by field (like a form made in a PDF editor), for the AcroForm
template tests: hierarchical names, a multiline field, a check box with its own appearances, a
combo box with (export, display) options, a date typed by sidecar, two signature fields; the
form's default appearance uses a non-embedded Helvetica, as editors write it."""

from __future__ import annotations

import io
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

__all__ = ["SIDECAR", "acroform_pdf"]

SIDECAR: dict[str, Any] = {
    "id": "consent-form",
    "description": "知情同意书",
    "fields": {
        "patient.name": {"label": "姓名", "required": True, "order": 1},
        "visit_date": {"type": "date", "format": "%Y年%m月%d日", "order": 2},
        "weight": {"type": "number", "min": 0, "max": 500, "decimals": 1, "unit": "kg"},
    },
    "signatures": {
        "doctor_sig": {"role": "医师", "order": 2},
        "patient_sig": {"role": "患者", "kind": "handwriting", "order": 1},
    },
}


def _d(**entries: Any) -> generic.DictionaryObject:
    result = generic.DictionaryObject()  # type: ignore[no-untyped-call]
    for key, value in entries.items():
        result[generic.NameObject("/" + key)] = value
    return result


def _n(value: int) -> generic.NumberObject:
    return generic.NumberObject(value)  # type: ignore[no-untyped-call]


def _name(value: str) -> generic.NameObject:
    return generic.NameObject(value)


def _text(value: str) -> generic.TextStringObject:
    return generic.TextStringObject(value)


def _rect(x1: int, y1: int, x2: int, y2: int) -> generic.ArrayObject:
    return generic.ArrayObject([_n(x1), _n(y1), _n(x2), _n(y2)])


def _form_xobject(writer: PdfFileWriter, content: bytes, w: int, h: int) -> Any:
    stream = generic.StreamObject(_d(Type=_name("/XObject"), Subtype=_name("/Form"),
                                     BBox=_rect(0, 0, w, h)), stream_data=content)
    return writer.add_object(stream)


def acroform_pdf(*, radio: bool = False, signed_slot: bool = False) -> bytes:
    """The form as bytes; ``radio`` adds a radio button group (unsupported), ``signed_slot``
    gives a signature field a value (a form signed already)."""
    writer = PdfFileWriter(stream_xrefs=False)  # type: ignore[no-untyped-call]
    content = generic.StreamObject(stream_data=b"q 0.5 w 40 40 515 762 re S Q")
    page = PageObject(contents=writer.add_object(content),  # type: ignore[no-untyped-call]
                      media_box=(0, 0, 595, 842), resources=_d())
    page_ref = writer.insert_page(page)  # type: ignore[no-untyped-call]
    annots = generic.ArrayObject()
    fields = generic.ArrayObject()

    def widget(rect: generic.ArrayObject, **entries: Any) -> Any:
        ref = writer.add_object(_d(Type=_name("/Annot"), Subtype=_name("/Widget"), Rect=rect,
                                   P=page_ref, F=_n(4), **entries))
        annots.append(ref)
        return ref

    patient = writer.add_object(_d(T=_text("patient")))
    name = widget(_rect(100, 760, 300, 780), T=_text("name"), FT=_name("/Tx"), Parent=patient)
    ident = widget(_rect(100, 730, 300, 750), T=_text("id"), FT=_name("/Tx"), Parent=patient,
                   MaxLen=_n(18))
    kids = generic.ArrayObject([name, ident])
    patient.get_object()[_name("/Kids")] = kids  # type: ignore[no-untyped-call]
    fields.append(patient)
    fields.append(widget(_rect(100, 600, 500, 700), T=_text("diagnosis"), FT=_name("/Tx"),
                         Ff=_n(1 << 12), DA=_text("/Helv 10 Tf 0 g")))
    fields.append(widget(_rect(100, 570, 250, 590), T=_text("visit_date"), FT=_name("/Tx")))
    fields.append(widget(_rect(300, 570, 400, 590), T=_text("weight"), FT=_name("/Tx"),
                         Q=_n(2)))
    on = _form_xobject(writer, b"q 0 G 1 w 2 2 m 12 12 l S 2 12 m 12 2 l S Q", 14, 14)
    off = _form_xobject(writer, b"", 14, 14)
    fields.append(widget(_rect(100, 540, 114, 554), T=_text("consent"), FT=_name("/Btn"),
                         V=_name("/Off"), AS=_name("/Off"),
                         AP=_d(N=_d(On=on, Off=off))))
    options = generic.ArrayObject([generic.ArrayObject([_text("nk"), _text("内科")]),
                                   generic.ArrayObject([_text("wk"), _text("外科")])])
    fields.append(widget(_rect(300, 540, 400, 556), T=_text("dept"), FT=_name("/Ch"),
                         Ff=_n(1 << 17), Opt=options))
    if radio:
        fields.append(widget(_rect(450, 540, 464, 554), T=_text("sex"), FT=_name("/Btn"),
                             Ff=_n(1 << 15)))
    sig_value = {"V": _d(Type=_name("/Sig"))} if signed_slot else {}
    fields.append(widget(_rect(100, 100, 250, 160), T=_text("doctor_sig"), FT=_name("/Sig"),
                         **sig_value))
    fields.append(widget(_rect(300, 100, 450, 160), T=_text("patient_sig"), FT=_name("/Sig")))
    page_dict = page_ref.get_object()
    page_dict[_name("/Annots")] = annots
    helv = writer.add_object(_d(Type=_name("/Font"), Subtype=_name("/Type1"),
                                BaseFont=_name("/Helvetica")))
    writer.root[_name("/AcroForm")] = writer.add_object(_d(
        Fields=fields, DA=_text("/Helv 0 Tf 0 g"), DR=_d(Font=_d(Helv=helv)),
        NeedAppearances=generic.BooleanObject(True)))  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()
