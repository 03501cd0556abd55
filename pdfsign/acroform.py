"""AcroForm templates: an uploaded PDF form whose fields become typed template fields, filled
with values into a PDF that shows them in the embedded CJK font.

The form's terminal fields map to types by their PDF field type: text (``/Tx``) is ``text``, or
``multiline`` with the multiline flag; a check box (``/Btn``) is ``checkbox``; a choice
(``/Ch``) is ``choice`` with the ``/Opt`` export values as options; a signature field
(``/Sig``) is a :class:`~pdfsign.templates.SignatureSlot` (role = its name, handwriting, in
document order).  Radio buttons, push buttons and already-signed fields are refused.  A sidecar
(a JSON-compatible dict; YAML loads to the same) overrides any of that::

    {"id": "consent", "description": "...",
     "fields": {"patient.name": {"label": "姓名", "required": true, "order": 1},
                "birth": {"type": "date", "format": "%Y年%m月%d日"},
                "weight": {"type": "number", "min": 0, "decimals": 1, "unit": "kg"}},
     "signatures": {"doctor": {"role": "医师", "kind": "handwriting", "order": 1}}}

A text field may become ``text``, ``multiline``, ``date`` or ``number``; the other keys are those
of a layout spec's fields (``pdfsign/templates.py``).  :meth:`AcroFormTemplate.render` checks
the values exactly like a layout template (:class:`~pdfsign.errors.TemplateError` naming the
field), sets each field's ``/V``, draws every text and choice widget's appearance stream with
the CJK font (subset-embedded, with a ToUnicode map: viewers show Chinese whatever fonts they
have, and the text can be extracted), marks the fields read-only, drops ``/NeedAppearances`` and
any XFA (which viewers would show instead of the fields), and records ``/MedsignTemplate
(id@version)`` and the signature order in the document information, in one incremental update.

Threat model: the form is uploaded by a security administrator, but parsed as hostile input --
size-limited (:data:`MAX_FORM_BYTES`), encrypted or corrupt files refused
(:func:`pdfsign.open_pdf`), field trees walked with a depth and count limit.  Values come from
applications and are checked against the field types before anything is written.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from pdfsign._cidfont import CidFont
from pdfsign._cidfont import dictionary as _dictionary
from pdfsign._cidfont import number as _num
from pdfsign._cidfont import stream as _stream
from pdfsign._fonts import cjk_face
from pdfsign.errors import InvalidPdf, TemplateError
from pdfsign.sign import open_pdf
from pdfsign.templates import (
    SIGNATURE_KINDS,
    Field,
    SignatureSlot,
    SlottedTemplate,
    Template,
    _number_keys,
    _Reader,
    _slot_names,
    _string,
    _template_font,
    _wrap_text,
    stable_document_id,
)

__all__ = ["MAX_FORM_BYTES", "AcroFormTemplate", "FormField"]

#: The largest AcroForm PDF accepted as a template.
MAX_FORM_BYTES = 5 * 1024 * 1024
_MAX_FIELDS = 500
_MAX_DEPTH = 16
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_FONT_NAME = "/MedsignCJK"
_READ_ONLY, _REQUIRED = 1 << 0, 1 << 1
_MULTILINE, _RADIO, _PUSHBUTTON = 1 << 12, 1 << 15, 1 << 16
_TYPES_BY_PDF_TYPE = {"/Tx": ("text", "multiline", "date", "number"), "/Btn": ("checkbox",),
                      "/Ch": ("choice",)}
_FIELD_KEYS = ("type", "label", "required", "order", "max_length", "min", "max", "decimals",
               "unit", "format")


@dataclass(frozen=True)
class FormField:
    """One fillable field of the form: ``name`` is its fully qualified PDF name (the key of
    its value); ``field`` carries the type and the checks shared with layout templates."""

    name: str
    field: Field
    order: int
    display: tuple[tuple[str, str], ...] = ()  # choice: (export value, text shown)

    @property
    def type(self) -> str:
        return self.field.type

    @property
    def label(self) -> str | None:
        return self.field.label

    @property
    def required(self) -> bool:
        return self.field.required


@dataclass(frozen=True)
class _Terminal:
    """A terminal field found in the form: its name, PDF type, flags, dictionary, widgets."""

    name: str
    pdf_type: str
    flags: int
    ref: generic.IndirectObject | None
    field: generic.DictionaryObject
    widgets: tuple[tuple[generic.IndirectObject | None, generic.DictionaryObject], ...]
    da: str


# --- reading the form ---------------------------------------------------------------------------


def _inherited(node: generic.DictionaryObject, key: str, parent: Any) -> Any:
    return node.get(key, parent)


def _walk(reader: PdfFileReader) -> list[_Terminal]:
    """The terminal fields of the form, in document order."""
    root = reader.root
    if "/AcroForm" not in root or "/Fields" not in root["/AcroForm"]:
        raise TemplateError("the PDF has no AcroForm fields", "pdf")
    form = root["/AcroForm"]
    found: list[_Terminal] = []
    default_da = str(form.get("/DA", ""))
    stack: list[tuple[Any, str, Any, Any, str, int]] = [
        (ref, "", None, None, default_da, 0) for ref in reversed(list(_refs(form["/Fields"])))]
    while stack:
        ref, prefix, ft, ff, da, depth = stack.pop()
        node = _deref(ref)
        if not isinstance(node, generic.DictionaryObject) or depth > _MAX_DEPTH:
            raise TemplateError("the form's field tree is malformed or too deep", "pdf")
        part = str(node.get("/T", ""))
        name = f"{prefix}.{part}" if prefix and part else prefix or part
        ft, ff = _inherited(node, "/FT", ft), _inherited(node, "/Ff", ff)
        da = str(_inherited(node, "/DA", da))
        kids = list(_refs(node.get("/Kids", generic.ArrayObject())))
        field_kids = [k for k in kids if "/T" in _deref(k)]
        if field_kids:
            stack.extend((k, name, ft, ff, da, depth + 1) for k in reversed(field_kids))
            continue
        widgets = tuple((k if isinstance(k, generic.IndirectObject) else None, _deref(k))
                        for k in kids) or ((ref if isinstance(ref, generic.IndirectObject)
                                            else None, node),)
        found.append(_Terminal(name, str(ft or ""), int(ff or 0),
                               ref if isinstance(ref, generic.IndirectObject) else None,
                               node, widgets, da))
        if len(found) > _MAX_FIELDS:
            raise TemplateError(f"the form has more than {_MAX_FIELDS} fields", "pdf")
    return found


def _refs(array: Any) -> Iterator[Any]:
    array = _deref(array)
    if not isinstance(array, generic.ArrayObject):
        raise TemplateError("the form's field tree is malformed", "pdf")
    for i in range(len(array)):
        yield array.raw_get(i)


def _deref(value: Any) -> Any:
    if isinstance(value, generic.IndirectObject):
        return value.get_object()  # type: ignore[no-untyped-call]
    return value


def _float(value: float) -> generic.FloatObject:
    return generic.FloatObject(value)  # type: ignore[no-untyped-call]


def _rect(widget: generic.DictionaryObject, name: str) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = (float(v) for v in widget["/Rect"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"{name}: the field's widget has no valid /Rect", name) from exc
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _pages_of_annotations(reader: PdfFileReader) -> dict[int, int]:
    """Annotation object number -> page index."""
    pages: dict[int, int] = {}
    for index, (page_ref, _) in enumerate(_page_refs(reader)):
        annots = _deref(_deref(page_ref).get("/Annots", generic.ArrayObject()))
        for i in range(len(annots)):
            raw = annots.raw_get(i)
            if isinstance(raw, generic.IndirectObject):
                pages[raw.idnum] = index
    return pages


def _page_refs(reader: PdfFileReader) -> list[tuple[generic.IndirectObject, int]]:
    found: list[tuple[generic.IndirectObject, int]] = []
    stack = [(reader.root.raw_get("/Pages"), 0)]
    while stack:
        ref, depth = stack.pop()
        node = _deref(ref)
        if depth > _MAX_DEPTH:
            raise InvalidPdf("the page tree is too deep")
        if node.get("/Type") == "/Pages":
            kids = node["/Kids"]
            stack.extend((kids.raw_get(i), depth + 1) for i in reversed(range(len(kids))))
        elif isinstance(ref, generic.IndirectObject):
            found.append((ref, len(found)))
    return found


# --- the sidecar --------------------------------------------------------------------------------


def _sidecar(data: Mapping[str, Any] | None) -> _Reader:
    return _Reader(data or {}, "", ("id", "version", "description", "fields", "signatures"))


def _typed_field(term: _Terminal, order: int, override: Any) -> FormField:
    name = term.name
    where = f"fields[{name!r}]"
    r = _Reader(override if override is not None else {}, where, _FIELD_KEYS)
    allowed = _TYPES_BY_PDF_TYPE[term.pdf_type]
    default = ("multiline" if term.flags & _MULTILINE else allowed[0])
    kind = r.get("type", str, default)
    if kind not in allowed:
        raise TemplateError(f"{where}.type: {kind!r} is not a type a {term.pdf_type[1:]} "
                            f"field can have (one of {', '.join(allowed)})", name)
    options, display = _options(term) if kind == "choice" else ((), ())
    max_length = r.get("max_length", int, None)
    if max_length is None and "/MaxLen" in term.field:
        max_length = int(term.field["/MaxLen"])
    if max_length is not None and max_length < 1:
        raise TemplateError(f"{where}.max_length: at least 1", name)
    field = Field(name=name, type=kind, x=0, y=0, label=r.get("label", str, None),
                  required=r.get("required", bool, bool(term.flags & _REQUIRED)),
                  max_length=max_length or (2000 if kind == "multiline" else 200),
                  options=options, unit=r.get("unit", str, ""),
                  **_number_keys(r, kind, where, name))
    return FormField(name=name, field=field, order=r.get("order", int, order), display=display)


def _options(term: _Terminal) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    pairs = []
    for raw in _deref(term.field.get("/Opt", generic.ArrayObject())):
        option = _deref(raw)
        if isinstance(option, generic.ArrayObject) and len(option) == 2:
            pairs.append((str(option[0]), str(option[1])))
        else:
            pairs.append((str(option), str(option)))
    if not pairs:
        raise TemplateError(f"{term.name}: a choice field without options (/Opt)", term.name)
    return tuple(p[0] for p in pairs), tuple(pairs)


def _slot(term: _Terminal, order: int, override: Any, pages: dict[int, int]) -> SignatureSlot:
    name = term.name
    where = f"signatures[{name!r}]"
    r = _Reader(override if override is not None else {}, where, ("role", "kind", "order"))
    if "/V" in term.field:
        raise TemplateError(f"{name}: the signature field is signed already", name)
    kind = r.get("kind", str, "handwriting")
    if kind not in SIGNATURE_KINDS:
        raise TemplateError(f"{where}.kind: {kind!r} is not one of "
                            f"{', '.join(SIGNATURE_KINDS)}", name)
    widget_ref, widget = term.widgets[0]
    x1, y1, x2, y2 = _rect(widget, name)
    page = pages.get(widget_ref.idnum, 0) if widget_ref is not None else 0
    return SignatureSlot(name=name, role=r.get("role", str, name),
                         order=r.get("order", int, order), kind=kind,
                         rect=(round(x1), round(y1), round(x2), round(y2)), page=page)


# --- the template -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcroFormTemplate(SlottedTemplate):
    """An AcroForm PDF with typed fields and signature slots; :meth:`render` fills it in."""

    id: str
    version: int
    pdf: bytes
    fields: tuple[FormField, ...]
    signatures: tuple[SignatureSlot, ...]
    description: str | None = None

    @classmethod
    def from_pdf(cls, pdf: bytes, sidecar: Mapping[str, Any] | None = None, *,
                 template_id: str | None = None, version: int | None = None) -> AcroFormTemplate:
        """Read the form in ``pdf`` (see the module docstring); ``template_id``/``version``
        win over the sidecar's.  Raise :class:`TemplateError`, or :class:`InvalidPdf` /
        :class:`EncryptedPdf` for a file that is no readable unencrypted PDF."""
        if len(pdf) > MAX_FORM_BYTES:
            raise InvalidPdf(f"the form is {len(pdf)} bytes, more than the {MAX_FORM_BYTES} "
                             "byte limit")
        reader = open_pdf(pdf)
        r = _sidecar(sidecar)
        template_id = template_id or r.get("id", str, None)
        if not isinstance(template_id, str) or not _ID.match(template_id):
            raise TemplateError(f"id: {template_id!r} is not a valid template id "
                                "(lower-case letters, digits, . _ -)", "id")
        version = version if version is not None else r.get("version", int, 1)
        if version < 1:
            raise TemplateError("version: at least 1", "version")
        try:
            terminals = _walk(reader)
            pages = _pages_of_annotations(reader)
        except TemplateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise TemplateError(f"the form's fields cannot be read: {exc}", "pdf") from exc
        fields, slots = _classify(terminals, r, pages)
        return cls(id=template_id, version=version, pdf=bytes(pdf), fields=fields,
                   signatures=slots, description=r.get("description", str, None))

    def render(self, values: Mapping[str, Any], *,
               slot_names: Sequence[str] | None = None) -> bytes:
        """The filled-in form; raise :class:`TemplateError` (naming the field) on bad values.
        ``slot_names`` renames the signature fields, in signing order (a sign request's steps
        sign into ``medsign-step-N``); a signature field inside a field hierarchy keeps its
        name (its full name would still carry the parent's)."""
        texts = self._check(values)
        names = _slot_names(self.signature_order, slot_names)
        reader = open_pdf(self.pdf)
        writer = IncrementalPdfFileWriter(io.BytesIO(self.pdf), prev=reader)
        terminals = {t.name: t for t in _walk(reader)}
        font = _template_font(cjk_face())
        pending = [_Appearance.plan(terminals[f.name], f, texts.get(f.name), font)
                   for f in self.fields if f.type != "checkbox"]
        font_ref = font.resource(writer)
        for appearance in pending:
            appearance.write(writer, font_ref)
        for field in self.fields:
            if field.type == "checkbox":
                _set_checkbox(writer, terminals[field.name], bool(values.get(field.name)))
        names = _rename_slots(writer, terminals, self.signature_order, names)
        self._update_form(writer, reader, font_ref, names)
        stable_document_id(writer, self.ref, values, names, keep_first=True)
        out = io.BytesIO()
        writer.write(out)  # type: ignore[no-untyped-call]
        return out.getvalue()

    def _check(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The text each field shows, checked like a layout template's values."""
        if not isinstance(values, Mapping):
            raise TemplateError("values: expected an object")
        known = {f.name: f for f in self.fields}
        for key in values:
            if key not in known:
                raise TemplateError(f"{key!r} is not a field of template {self.ref}", str(key))
        texts: dict[str, str] = {}
        for form_field in self.fields:
            field, value = form_field.field, values.get(form_field.name)
            if value is None:
                if field.required:
                    raise TemplateError(f"{field.name}: a value is required", field.name)
                continue
            if field.type == "checkbox":
                if not isinstance(value, bool):
                    raise TemplateError(f"{field.name}: expected true or false, got "
                                        f"{type(value).__name__}", field.name)
            elif field.type == "multiline":
                texts[field.name] = _string(value, field.name, field.max_length, newlines=True)
            else:
                texts[field.name] = Template._display(field, value)
        return texts

    def _update_form(self, writer: IncrementalPdfFileWriter, reader: PdfFileReader,
                     font_ref: generic.IndirectObject, slot_names: Sequence[str]) -> None:
        root = writer.root
        raw_form = root.raw_get("/AcroForm")
        form = _deref(raw_form)
        for key in ("/NeedAppearances", "/XFA"):
            if key in form:
                del form[key]
        resources = _deref(form.get("/DR")) if "/DR" in form else _dictionary({})
        fonts = _deref(resources.get("/Font")) if "/Font" in resources else _dictionary({})
        fonts[generic.NameObject(_FONT_NAME)] = font_ref
        resources[generic.NameObject("/Font")] = fonts
        form[generic.NameObject("/DR")] = resources
        if isinstance(raw_form, generic.IndirectObject):
            writer.mark_update(raw_form)
        writer.update_root()  # type: ignore[no-untyped-call]
        info = _dictionary({})
        old = reader.trailer.raw_get("/Info") if "/Info" in reader.trailer else None
        if old is not None:
            for key, value in _deref(old).items():
                info[generic.NameObject(key)] = value
        info[generic.NameObject("/MedsignTemplate")] = generic.TextStringObject(self.ref)
        info[generic.NameObject("/MedsignSignatureOrder")] = generic.TextStringObject(
            ",".join(slot_names))
        writer.set_info(info)


def _rename_slots(writer: IncrementalPdfFileWriter, terminals: Mapping[str, _Terminal],
                  own: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Give top-level signature fields their wanted names; the names the slots end up with."""
    names = []
    existing = set(terminals)
    for old, new in zip(own, wanted, strict=True):
        term = terminals[old]
        if new == old or "/Parent" in term.field or term.ref is None or new in existing:
            names.append(old)
            continue
        term.field[generic.NameObject("/T")] = generic.TextStringObject(new)
        writer.mark_update(term.ref)
        names.append(new)
    return names


def _overrides(r: _Reader, key: str, names: list[str]) -> _Reader:
    """The sidecar's ``fields`` or ``signatures`` object; every key must name such a field."""
    data = r.get(key, dict, {})
    for name in data:
        if name not in names:
            raise TemplateError(f"{key}: {name!r} is not a "
                                f"{'signature ' if key == 'signatures' else ''}field of the form "
                                f"(fields: {', '.join(names)})", str(name))
    return _Reader(data, key, names)


def _classify(terminals: list[_Terminal], r: _Reader,
              pages: dict[int, int]) -> tuple[tuple[FormField, ...], tuple[SignatureSlot, ...]]:
    overrides = _overrides(r, "fields", [t.name for t in terminals if t.pdf_type != "/Sig"])
    sig_overrides = _overrides(r, "signatures",
                               [t.name for t in terminals if t.pdf_type == "/Sig"])
    fields: list[FormField] = []
    slots: list[SignatureSlot] = []
    for term in terminals:
        if term.pdf_type == "/Sig":
            slots.append(_slot(term, len(slots) + 1, sig_overrides.data.get(term.name), pages))
            continue
        if term.pdf_type not in _TYPES_BY_PDF_TYPE or (
                term.pdf_type == "/Btn" and term.flags & (_RADIO | _PUSHBUTTON)):
            what = ("a radio button" if term.flags & _RADIO else "a push button"
                    if term.flags & _PUSHBUTTON else f"of unknown type {term.pdf_type!r}")
            raise TemplateError(f"{term.name}: the field is {what}, which templates do not "
                                "support (text, check box, choice and signature fields)",
                                term.name)
        if term.name in overrides.data and overrides.data[term.name] is None:
            raise TemplateError(f"fields[{term.name!r}]: expected an object", term.name)
        fields.append(_typed_field(term, len(fields) + 1, overrides.data.get(term.name)))
    if len({s.order for s in slots}) != len(slots):
        raise TemplateError("signatures: two slots have the same order", "signatures")
    fields.sort(key=lambda f: f.order)
    return tuple(fields), tuple(sorted(slots, key=lambda s: s.order))


# --- appearances --------------------------------------------------------------------------------


_DA_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s+Tf")
_AUTO_SIZE, _MIN_SIZE, _PADDING = 10.0, 4.0, 2.0


@dataclass
class _Appearance:
    """The appearance of one text or choice field's widgets, planned before the font subset
    is final (every widget's glyphs go into the one subset) and written after."""

    terminal: _Terminal
    text: str | None
    ops: list[tuple[generic.IndirectObject | None, generic.DictionaryObject, bytes, float,
                    float]]
    size: float

    @classmethod
    def plan(cls, terminal: _Terminal, field: FormField, text: str | None,
             font: CidFont) -> _Appearance:
        shown = text
        if text is not None and field.type == "choice":
            shown = dict(field.display).get(text, text)
        match = _DA_SIZE.search(terminal.da)
        fixed = float(match.group(1)) if match and float(match.group(1)) > 0 else None
        ops = []
        size = fixed or _AUTO_SIZE
        quadding = int(terminal.field.get("/Q", 0))
        for ref, widget in terminal.widgets:
            x1, y1, x2, y2 = _rect(widget, field.name)
            w, h = x2 - x1, y2 - y1
            content, size = _draw(font, field, shown or "", w, h, fixed=fixed,
                                  quadding=quadding)
            ops.append((ref, widget, content, w, h))
        return cls(terminal, text, ops, size)

    def write(self, writer: IncrementalPdfFileWriter, font_ref: generic.IndirectObject) -> None:
        field = self.terminal.field
        if self.text is not None:
            field[generic.NameObject("/V")] = generic.TextStringObject(self.text)
        field[generic.NameObject("/DA")] = generic.TextStringObject(
            f"{_FONT_NAME} {self.size:g} Tf 0 g")
        field[generic.NameObject("/Ff")] = _num(self.terminal.flags | _READ_ONLY)
        for ref, widget, content, w, h in self.ops:
            resources = _dictionary({"/Font": _dictionary({"/F1": font_ref})})
            stream = _stream(content, {
                "/Type": generic.NameObject("/XObject"), "/Subtype": generic.NameObject("/Form"),
                "/BBox": generic.ArrayObject([_num(0), _num(0), _float(w),
                                              _float(h)]),
                "/Resources": resources})
            widget[generic.NameObject("/AP")] = _dictionary({"/N": writer.add_object(stream)})
            if ref is not None:
                writer.mark_update(ref)
        if self.terminal.ref is not None:
            writer.mark_update(self.terminal.ref)


def _draw(font: CidFont, field: FormField, text: str, w: float, h: float, *,
          fixed: float | None, quadding: int) -> tuple[bytes, float]:
    """A widget's appearance content (``/Tx BMC ... EMC``) and the font size used."""
    name, inner = field.name, w - 2 * _PADDING
    if field.type == "multiline":
        size = fixed or min(_AUTO_SIZE, max(_MIN_SIZE, h - 2 * _PADDING))
        lines = _wrap_text(font, text, inner, size, name) if text else []
        if len(lines) * size * 1.2 > h - _PADDING + 0.01:
            raise TemplateError(f"{name}: too long: {len(lines)} lines at {size:g} pt do not "
                                f"fit the field ({h:g} pt high)", name)
        top = h - _PADDING - size * 0.9
        placed = [(line, top - i * size * 1.2) for i, line in enumerate(lines)]
    else:
        size = fixed or min(12.0, max(_MIN_SIZE, (h - 2 * _PADDING) * 0.8))
        width = font.width(text, size, name)
        if width > inner and fixed is None:
            size = max(_MIN_SIZE, size * inner / width)
            width = font.width(text, size, name)
        if width > inner + 0.01:
            raise TemplateError(f"{name}: too long to fit the field ({w:g} pt wide)", name)
        placed = [(text, (h - size * 0.7) / 2)] if text else []
    body = []
    for line, y in placed:
        offset = (inner - font.width(line, size, name)) * {1: 0.5, 2: 1.0}.get(quadding, 0.0)
        body.append(b"BT /F1 %g Tf 0 g 1 0 0 1 %.2f %.2f Tm <%s> Tj ET"
                    % (size, _PADDING + offset, y, font.encode(line, name)))
    clip = b"%.2f %.2f %.2f %.2f re W n" % (1, 1, max(w - 2, 0), max(h - 2, 0))
    return b"/Tx BMC q " + clip + b"\n" + b"\n".join(body) + b"\nQ EMC", size


def _set_checkbox(writer: IncrementalPdfFileWriter, terminal: _Terminal, checked: bool) -> None:
    field = terminal.field
    on = "/Off"
    for ref, widget in terminal.widgets:
        states = _checkbox_states(writer, widget)
        on = next((s for s in states if s != "/Off"), "/Yes")
        widget[generic.NameObject("/AS")] = generic.NameObject(on if checked else "/Off")
        if ref is not None:
            writer.mark_update(ref)
    field[generic.NameObject("/V")] = generic.NameObject(on if checked else "/Off")
    field[generic.NameObject("/Ff")] = _num(terminal.flags | _READ_ONLY)
    if terminal.ref is not None:
        writer.mark_update(terminal.ref)


def _checkbox_states(writer: IncrementalPdfFileWriter,
                     widget: generic.DictionaryObject) -> list[str]:
    """The widget's appearance states; a widget without them gets a drawn cross and a blank."""
    normal = _deref(_deref(widget.get("/AP", _dictionary({}))).get("/N"))
    if isinstance(normal, generic.DictionaryObject) and not isinstance(
            normal, generic.StreamObject) and len(normal):
        return [str(k) for k in normal]
    x1, y1, x2, y2 = _rect(widget, "checkbox")
    w, h = x2 - x1, y2 - y1
    box = generic.ArrayObject([_num(0), _num(0), _float(w), _float(h)])

    def form(content: bytes) -> generic.IndirectObject:
        return writer.add_object(_stream(content, {
            "/Type": generic.NameObject("/XObject"), "/Subtype": generic.NameObject("/Form"),
            "/BBox": box}))

    cross = (b"q 0 G 1 w %.2f %.2f m %.2f %.2f l S %.2f %.2f m %.2f %.2f l S Q"
             % (2, 2, w - 2, h - 2, 2, h - 2, w - 2, 2))
    widget[generic.NameObject("/AP")] = _dictionary({"/N": _dictionary({
        "/Yes": form(cross), "/Off": form(b"")})})
    return ["/Yes", "/Off"]
