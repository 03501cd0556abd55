"""PDF form templates: a layout spec (a JSON-compatible dict; YAML loads to the same) rendered
into a one-page PDF with Chinese text, subset-embedded CJK font and empty signature fields.

A spec (coordinates are PDF points, origin at the bottom left of the page, ``y`` is a text
baseline)::

    {"id": "e-prescription", "version": 1, "page": "A5",
     "title": {"text": "门诊电子处方", "size": 16},          # or a string; centred at the top
     "texts": [{"text": "费别：自费", "x": 30, "y": 500, "size": 9, "align": "left"}],
     "fields": [
       {"name": "patient_name", "type": "text", "label": "姓名", "x": 30, "y": 480,
        "width": 80, "required": true, "max_length": 20},
       {"name": "notes", "type": "multiline", "x": 30, "y": 300, "width": 300, "height": 40},
       {"name": "date", "type": "date", "format": "%Y年%m月%d日", ...},
       {"name": "age", "type": "number", "min": 0, "max": 150, "decimals": 0, "unit": "岁"},
       {"name": "urgent", "type": "checkbox", "label": "急诊", ...},
       {"name": "sex", "type": "choice", "options": ["男", "女"], ...},
       {"name": "photo", "type": "image", "label": "照片", "x": 330, "y": 420, "width": 60,
        "height": 80},                                       # the box (x, y)-(x+w, y+h)
       {"name": "drugs", "type": "table", "x": 30, "y": 400, "max_rows": 5, "row_height": 18,
        "columns": [{"name": "name", "label": "药品名称", "width": 120, "required": true},
                    {"name": "quantity", "label": "数量", "width": 40, "type": "number"}]}],
     "signatures": [{"name": "doctor", "role": "医师", "order": 1, "kind": "handwriting",
                     "rect": [300, 60, 390, 100]}]}

Every field takes ``name``, ``type``, ``x``, ``y``, and optionally ``label`` (drawn before the
value), ``size`` (font size, default 10), ``required`` (default false) and ``width`` (of the
value; the value must fit).  Values (``render(values)``) are checked against the fields:
text/multiline/choice take strings, date an ISO ``YYYY-MM-DD`` string or a ``datetime.date``,
number an int or float, checkbox a bool, table a list of row objects, image a PNG or JPEG as
base64 text (a ``data:image/png;base64,`` prefix is allowed) or bytes, at most 2 MiB and 4096
pixels a side, drawn as large as fits its box with the aspect ratio kept
(``pdfsign/_images.py``).  Any problem raises :class:`~pdfsign.errors.TemplateError` naming
the field.

The PDF's document information dictionary records ``/MedsignTemplate (id@version)`` and the
signature slots in signing order (``/MedsignSignatureOrder``); each slot is an empty signature
field that :func:`pdfsign.sign_pdf` / :func:`pdfsign.prepare_pdf` sign into by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import BasePdfFileWriter, PageObject, PdfFileWriter
from pyhanko.sign import fields as pdf_fields

from pdfsign._cidfont import CidFont
from pdfsign._cidfont import dictionary as _dictionary
from pdfsign._cidfont import number as _num
from pdfsign._cidfont import stream as _stream
from pdfsign._fonts import FontFace, cjk_face
from pdfsign._images import PdfImage, decode_image
from pdfsign.errors import TemplateError
from pdfsign.sign import Slot

__all__ = [
    "FIELD_TYPES",
    "PAGE_SIZES",
    "SIGNATURE_KINDS",
    "Column",
    "Field",
    "SignatureSlot",
    "Template",
    "TextBlock",
]

#: Page sizes in points (portrait).
PAGE_SIZES: dict[str, tuple[float, float]] = {"A4": (595.0, 842.0), "A5": (420.0, 595.0)}
FIELD_TYPES = ("text", "multiline", "date", "number", "checkbox", "choice", "table", "image")
COLUMN_TYPES = ("text", "number")
SIGNATURE_KINDS = ("seal", "handwriting")
ALIGNMENTS = ("left", "center", "right")

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DEFAULT_SIZE = 10.0
_DEFAULT_MAX_LENGTH = {"text": 200, "multiline": 2000, "choice": 200}
_LEADING = 1.4
_MAX_SPEC_ITEMS = 500


# --- spec reading -------------------------------------------------------------------------------

_MISSING: Any = object()


class _Reader:
    """Typed access to one object of the spec, with its path for error messages."""

    def __init__(self, data: object, where: str, known: Sequence[str]) -> None:
        if not isinstance(data, Mapping):
            raise TemplateError(f"{where}: expected an object", where)
        self.data = data
        self.where = where
        for key in data:
            if key not in known:
                raise TemplateError(f"{where}: unknown key {key!r}", where)

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise TemplateError(f"{self._path(key)} is required", self._path(key))
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise TemplateError(f"{self._path(key)}: a boolean is not allowed here",
                                self._path(key))
        if not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise TemplateError(f"{self._path(key)}: expected {names}", self._path(key))
        return value

    def number(self, key: str, default: Any = _MISSING, *, positive: bool = False) -> Any:
        value = self.get(key, (int, float), default)
        if value is None:
            return None
        if not math.isfinite(value) or (positive and value <= 0) or value < 0:
            raise TemplateError(f"{self._path(key)}: expected a finite "
                                f"{'positive' if positive else 'non-negative'} number",
                                self._path(key))
        return float(value)

    def name(self, key: str = "name") -> str:
        value = self.get(key, str)
        if not _NAME.match(value):
            raise TemplateError(f"{self._path(key)}: {value!r} is not a valid name "
                                "(letters, digits, underscore; 64 at most)", self._path(key))
        return str(value)


def _items(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TemplateError(f"{where}: expected a list", where)
    if len(value) > _MAX_SPEC_ITEMS:
        raise TemplateError(f"{where}: more than {_MAX_SPEC_ITEMS} entries", where)
    return value


# --- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextBlock:
    text: str
    x: float
    y: float
    size: float = _DEFAULT_SIZE
    align: str = "left"


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    width: float
    type: str = "text"
    required: bool = False
    max_length: int = 100
    decimals: int | None = None


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    x: float
    y: float
    label: str | None = None
    size: float = _DEFAULT_SIZE
    required: bool = False
    width: float | None = None
    height: float | None = None
    max_length: int | None = None
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None
    unit: str = ""
    date_format: str = "%Y-%m-%d"
    columns: tuple[Column, ...] = ()
    max_rows: int = 0
    row_height: float = 0.0


@dataclass(frozen=True)
class SignatureSlot:
    """An empty signature field: ``name`` is the PDF field name signers sign into."""

    name: str
    role: str
    order: int
    kind: str
    rect: tuple[int, int, int, int]
    page: int = 0

    def slot(self) -> Slot:
        """The slot as :class:`pdfsign.Slot` (for :func:`pdfsign.sign_pdf`'s ``slots``)."""
        return Slot(name=self.name, box=self.rect, page=self.page)


_COMMON = ("name", "type", "x", "y", "label", "size", "required", "width")
_KEYS: dict[str, tuple[str, ...]] = {
    "text": (*_COMMON, "max_length"),
    "multiline": (*_COMMON, "max_length", "height"),
    "date": (*_COMMON, "format"),
    "number": (*_COMMON, "min", "max", "decimals", "unit"),
    "checkbox": _COMMON,
    "choice": (*_COMMON, "options"),
    "table": (*_COMMON, "columns", "max_rows", "row_height"),
    "image": (*_COMMON, "height"),
}


def _column(data: object, where: str) -> Column:
    r = _Reader(data, where, ("name", "label", "width", "type", "required", "max_length",
                              "decimals"))
    kind = r.get("type", str, "text")
    if kind not in COLUMN_TYPES:
        raise TemplateError(f"{where}.type: unknown column type {kind!r} "
                            f"(one of {', '.join(COLUMN_TYPES)})", where)
    decimals = r.get("decimals", int, None)
    if decimals is not None and not 0 <= decimals <= 6:
        raise TemplateError(f"{where}.decimals: 0 to 6", where)
    return Column(name=r.name(), label=r.get("label", str, ""),
                  width=r.number("width", positive=True), type=kind,
                  required=r.get("required", bool, False),
                  max_length=r.get("max_length", int, 100), decimals=decimals)


def _field(data: object, where: str, page: tuple[float, float]) -> Field:
    if not isinstance(data, Mapping):
        raise TemplateError(f"{where}: expected an object", where)
    kind = data.get("type")
    name = data.get("name")
    label = f"{where} ({name})" if isinstance(name, str) else where
    if not isinstance(kind, str) or kind not in FIELD_TYPES:
        raise TemplateError(f"{label}: unknown field type {kind!r} "
                            f"(one of {', '.join(FIELD_TYPES)})", str(name or where))
    r = _Reader(data, label, _KEYS[kind])
    x, y = r.number("x"), r.number("y")
    if x > page[0] or y > page[1]:
        raise TemplateError(f"{label}: position ({x:g}, {y:g}) is outside the page", name)
    width = r.number("width", None, positive=True)
    if width is not None and x + width > page[0]:
        raise TemplateError(f"{label}: extends beyond the right edge of the page", name)
    max_length = r.get("max_length", int, _DEFAULT_MAX_LENGTH.get(kind))
    if max_length is not None and max_length < 1:
        raise TemplateError(f"{label}.max_length: at least 1", name)
    size = r.number("size", _DEFAULT_SIZE, positive=True)
    if kind in ("multiline", "image") and r.get("height", (int, float), None) is None:
        raise TemplateError(f"{label}.height is required", name)
    if kind == "image":
        _check_image_box(r, label, name, page)
    return Field(
        name=r.name(), type=kind, x=x, y=y, label=r.get("label", str, None), size=size,
        required=r.get("required", bool, False), width=width,
        height=r.number("height", None, positive=True), max_length=max_length,
        unit=r.get("unit", str, ""), **_choice_keys(r, kind, label, name),
        **_number_keys(r, kind, label, name),
        **_table_keys(r, kind, label, name, size=size, page=page))


def _check_image_box(r: _Reader, label: str, name: Any, page: tuple[float, float]) -> None:
    """An image field is the box (x, y)-(x + width, y + height): it must be on the page."""
    if r.get("width", (int, float), None) is None:
        raise TemplateError(f"{label}.width is required", name)
    if r.number("y") + r.number("height", positive=True) > page[1]:
        raise TemplateError(f"{label}: extends beyond the top edge of the page", name)


def _choice_keys(r: _Reader, kind: str, label: str, name: Any) -> dict[str, Any]:
    if kind != "choice":
        return {}
    raw = _items(r.get("options", list), f"{label}.options")
    if not raw or not all(isinstance(o, str) and o for o in raw):
        raise TemplateError(f"{label}.options: a non-empty list of non-empty strings", name)
    return {"options": tuple(raw)}


def _number_keys(r: _Reader, kind: str, label: str, name: Any) -> dict[str, Any]:
    decimals = r.get("decimals", int, None)
    if decimals is not None and not 0 <= decimals <= 6:
        raise TemplateError(f"{label}.decimals: 0 to 6", name)
    minimum = r.get("min", (int, float), None)
    maximum = r.get("max", (int, float), None)
    if minimum is not None and maximum is not None and minimum > maximum:
        raise TemplateError(f"{label}: min is larger than max", name)
    date_format = r.get("format", str, "%Y-%m-%d")
    if kind == "date":
        try:
            dt.date(2000, 1, 2).strftime(date_format)
        except ValueError as exc:
            raise TemplateError(f"{label}.format: {exc}", name) from exc
    return {"decimals": decimals, "minimum": minimum, "maximum": maximum,
            "date_format": date_format}


def _table_keys(r: _Reader, kind: str, label: str, name: Any, *, size: float,
                page: tuple[float, float]) -> dict[str, Any]:
    if kind != "table":
        return {}
    raw_columns = _items(r.get("columns", list), f"{label}.columns")
    if not raw_columns:
        raise TemplateError(f"{label}.columns: at least one column", name)
    columns = tuple(_column(c, f"{label}.columns[{i}]") for i, c in enumerate(raw_columns))
    if len({c.name for c in columns}) != len(columns):
        raise TemplateError(f"{label}.columns: duplicate column names", name)
    max_rows = r.get("max_rows", int)
    if not 1 <= max_rows <= 100:
        raise TemplateError(f"{label}.max_rows: 1 to 100", name)
    row_height = r.number("row_height", size * 1.8, positive=True)
    if r.number("x") + sum(c.width for c in columns) > page[0]:
        raise TemplateError(f"{label}: the table is wider than the page", name)
    if r.number("y") - row_height * (max_rows + 1) < 0:
        raise TemplateError(f"{label}: the table runs off the bottom of the page", name)
    return {"columns": columns, "max_rows": max_rows, "row_height": row_height}


def _signature(data: object, where: str, page: tuple[float, float]) -> SignatureSlot:
    r = _Reader(data, where, ("name", "role", "order", "kind", "rect", "page"))
    kind = r.get("kind", str)
    if kind not in SIGNATURE_KINDS:
        raise TemplateError(f"{where}.kind: {kind!r} is not one of "
                            f"{', '.join(SIGNATURE_KINDS)}", where)
    rect = r.get("rect", list)
    if (len(rect) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                  and math.isfinite(v) for v in rect)):
        raise TemplateError(f"{where}.rect: four numbers [x1, y1, x2, y2]", where)
    x1, y1, x2, y2 = (round(v) for v in rect)
    if not (0 <= x1 < x2 <= page[0] and 0 <= y1 < y2 <= page[1]):
        raise TemplateError(f"{where}.rect: not a rectangle inside the page", where)
    if r.get("page", int, 0) != 0:
        raise TemplateError(f"{where}.page: templates have one page (0)", where)
    order = r.get("order", int)
    if order < 1:
        raise TemplateError(f"{where}.order: at least 1", where)
    return SignatureSlot(name=r.name(), role=r.get("role", str), order=order, kind=kind,
                         rect=(x1, y1, x2, y2))


def _text_block(data: object, where: str, page: tuple[float, float]) -> TextBlock:
    r = _Reader(data, where, ("text", "x", "y", "size", "align"))
    align = r.get("align", str, "left")
    if align not in ALIGNMENTS:
        raise TemplateError(f"{where}.align: one of {', '.join(ALIGNMENTS)}", where)
    x, y = r.number("x"), r.number("y")
    if x > page[0] or y > page[1]:
        raise TemplateError(f"{where}: position outside the page", where)
    return TextBlock(text=r.get("text", str), x=x, y=y,
                     size=r.number("size", _DEFAULT_SIZE, positive=True), align=align)


# --- rendering ----------------------------------------------------------------------------------


def _missing_glyph(char: str, where: str | None) -> TemplateError:
    return TemplateError(f"{where or 'text'}: the character {char!r} (U+{ord(char):04X}) is "
                         "not in the font", where)


def _template_font(face: FontFace) -> CidFont:
    """The CJK font of one document (or one filled form): a missing glyph names the field."""
    return CidFont(face, _missing_glyph)


def _image_xobject(writer: BasePdfFileWriter, image: PdfImage) -> generic.StreamObject:
    entries: dict[str, generic.PdfObject] = {
        "/Type": generic.NameObject("/XObject"), "/Subtype": generic.NameObject("/Image"),
        "/Width": _num(image.width), "/Height": _num(image.height),
        "/ColorSpace": generic.NameObject(image.color_space),
        "/BitsPerComponent": _num(8), "/Filter": generic.NameObject(image.filter)}
    if image.alpha is not None:
        mask = generic.StreamObject(_dictionary({
            "/Type": generic.NameObject("/XObject"), "/Subtype": generic.NameObject("/Image"),
            "/Width": _num(image.width), "/Height": _num(image.height),
            "/ColorSpace": generic.NameObject("/DeviceGray"), "/BitsPerComponent": _num(8),
            "/Filter": generic.NameObject("/FlateDecode")}), encoded_data=image.alpha)
        entries["/SMask"] = writer.add_object(mask)
    return generic.StreamObject(_dictionary(entries), encoded_data=image.data)


class _Canvas:
    """A content stream drawn with one CJK font (a subset-embedded ``CidFont``)."""

    FONT = "/F1"

    def __init__(self, font: CidFont, ops: list[bytes] | None = None) -> None:
        self.font = font
        self.ops: list[bytes] = list(ops or [])
        self.images: list[PdfImage] = []

    def width(self, text: str, size: float, where: str | None = None) -> float:
        """The advance width of ``text`` at ``size`` (sum of the characters' advances)."""
        return self.font.width(text, size, where)

    def text(self, text: str, x: float, y: float, size: float, *, align: str = "left",
             where: str | None = None) -> None:
        if not text:
            return
        encoded = self.font.encode(text, where)
        if align != "left":
            width = self.width(text, size, where)
            x -= width if align == "right" else width / 2
        self.ops.append(b"BT %s %g Tf 1 0 0 1 %.2f %.2f Tm <%s> Tj ET" % (
            self.FONT.encode(), size, x, y, encoded))

    def line(self, x1: float, y1: float, x2: float, y2: float, *, width: float = 0.5,
             grey: float = 0.0) -> None:
        self.ops.append(b"q %g G %g w %.2f %.2f m %.2f %.2f l S Q"
                        % (grey, width, x1, y1, x2, y2))

    def rect(self, x: float, y: float, w: float, h: float, width: float = 0.5) -> None:
        self.ops.append(b"q %g w %.2f %.2f %.2f %.2f re S Q" % (width, x, y, w, h))

    def image(self, image: PdfImage, x: float, y: float, w: float, h: float) -> None:
        """``image`` scaled to ``w`` x ``h`` with its lower left corner at (x, y)."""
        self.images.append(image)
        self.ops.append(b"q %.3f 0 0 %.3f %.2f %.2f cm /Im%d Do Q"
                        % (w, h, x, y, len(self.images)))

    def image_resources(self, writer: PdfFileWriter) -> generic.DictionaryObject:
        return _dictionary({f"/Im{i}": writer.add_object(_image_xobject(writer, image))
                            for i, image in enumerate(self.images, start=1)})

    def copy(self) -> _Canvas:
        copied = _Canvas(self.font.copy(), self.ops)
        copied.images = list(self.images)
        return copied

    def stream(self) -> generic.StreamObject:
        return _stream(b"\n".join(self.ops), {})


def _wrap(canvas: _Canvas, text: str, width: float, size: float, where: str) -> list[str]:
    return _wrap_text(canvas.font, text, width, size, where)


def _wrap_text(font: CidFont, text: str, width: float, size: float, where: str) -> list[str]:
    """``text`` broken into lines at most ``width`` wide (at any character: Chinese has no
    spaces between words)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, line_width = "", 0.0
        for char in paragraph:
            advance = font.width(char, size, where)
            if line and line_width + advance > width:
                lines.append(line)
                line, line_width = "", 0.0
            line += char
            line_width += advance
        lines.append(line)
    return lines


def _number(value: Any, where: str, *, decimals: int | None, minimum: float | None = None,
            maximum: float | None = None) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TemplateError(f"{where}: expected a number, got {type(value).__name__}", where)
    if not math.isfinite(value):
        raise TemplateError(f"{where}: not a finite number", where)
    if minimum is not None and value < minimum:
        raise TemplateError(f"{where}: {value} is less than the minimum {minimum}", where)
    if maximum is not None and value > maximum:
        raise TemplateError(f"{where}: {value} is more than the maximum {maximum}", where)
    if decimals == 0 and value != int(value):
        raise TemplateError(f"{where}: expected a whole number, got {value}", where)
    if decimals is not None:
        return f"{value:.{decimals}f}"
    return str(value)


def _string(value: Any, where: str, max_length: int | None, *, newlines: bool = False) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"{where}: expected a string, got {type(value).__name__}", where)
    if max_length is not None and len(value) > max_length:
        raise TemplateError(f"{where}: {len(value)} characters, at most {max_length}", where)
    if not newlines and ("\n" in value or "\r" in value):
        raise TemplateError(f"{where}: line breaks are only allowed in multiline fields", where)
    if any(ord(c) < 0x20 and c not in "\n\t" for c in value):
        raise TemplateError(f"{where}: control characters are not allowed", where)
    return value.replace("\t", " ").replace("\r", "")


class SlottedTemplate:
    """What every kind of template has (a layout spec, an AcroForm PDF): an identity recorded
    in each PDF it makes, and signature slots in signing order."""

    id: str
    version: int
    signatures: tuple[SignatureSlot, ...]

    @property
    def ref(self) -> str:
        """``id@version``: what every generated PDF records."""
        return f"{self.id}@{self.version}"

    @property
    def signature_order(self) -> list[str]:
        """The signature slots' field names in signing order."""
        return [s.name for s in self.signatures]


@dataclass(frozen=True)
class Template(SlottedTemplate):
    """A validated layout spec; :meth:`render` fills it with values."""

    id: str
    version: int
    page_size: str
    title: TextBlock | None
    texts: tuple[TextBlock, ...]
    fields: tuple[Field, ...]
    signatures: tuple[SignatureSlot, ...]

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Template:
        """Validate ``spec`` (see the module docstring); raise :class:`TemplateError`."""
        r = _Reader(spec, "", ("id", "version", "page", "title", "texts", "fields",
                               "signatures", "description"))
        template_id = r.get("id", str)
        if not _ID.match(template_id):
            raise TemplateError(f"id: {template_id!r} is not a valid template id "
                                "(lower-case letters, digits, . _ -)", "id")
        version = r.get("version", int)
        if version < 1:
            raise TemplateError("version: at least 1", "version")
        page_size = r.get("page", str, "A4")
        if page_size not in PAGE_SIZES:
            raise TemplateError(f"page: {page_size!r} is not one of {', '.join(PAGE_SIZES)}",
                                "page")
        page = PAGE_SIZES[page_size]
        raw_title = r.get("title", (str, dict), None)
        title = None
        if isinstance(raw_title, str):
            title = TextBlock(raw_title, page[0] / 2, page[1] - 50, 16, "center")
        elif raw_title is not None:
            t = _Reader(raw_title, "title", ("text", "size", "y"))
            size = t.number("size", 16, positive=True)
            title = TextBlock(t.get("text", str), page[0] / 2,
                              t.number("y", page[1] - 30 - size), size, "center")
        texts = tuple(_text_block(t, f"texts[{i}]", page)
                      for i, t in enumerate(_items(r.get("texts", list, []), "texts")))
        fields = tuple(_field(f, f"fields[{i}]", page)
                       for i, f in enumerate(_items(r.get("fields", list, []), "fields")))
        signatures = tuple(sorted(
            (_signature(s, f"signatures[{i}]", page)
             for i, s in enumerate(_items(r.get("signatures", list, []), "signatures"))),
            key=lambda s: s.order))
        names = [f.name for f in fields] + [s.name for s in signatures]
        for name in names:
            if names.count(name) > 1:
                raise TemplateError(f"{name!r} is used by more than one field or slot", name)
        orders = [s.order for s in signatures]
        if len(set(orders)) != len(orders):
            raise TemplateError("signatures: two slots have the same order", "signatures")
        return cls(id=template_id, version=version, page_size=page_size, title=title,
                   texts=texts, fields=fields, signatures=signatures)

    @classmethod
    def from_json(cls, text: str | bytes) -> Template:
        try:
            spec = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TemplateError(f"not valid JSON: {exc}") from exc
        return cls.from_spec(spec)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Template:
        try:
            spec = yaml.safe_load(text)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise TemplateError(f"not valid YAML: {exc}") from exc
        return cls.from_spec(spec)

    @classmethod
    def load(cls, path: str | Path) -> Template:
        """A template from a ``.json``, ``.yaml`` or ``.yml`` file."""
        path = Path(path)
        data = path.read_bytes()
        if path.suffix.lower() in (".yaml", ".yml"):
            return cls.from_yaml(data)
        return cls.from_json(data)

    @classmethod
    def sample(cls, name: str = "e-prescription") -> Template:
        """A template shipped with pdfsign (``pdfsign/templates/<name>.json``)."""
        if not _ID.match(name):
            raise TemplateError(f"no sample template {name!r}")
        path = Path(__file__).parent / "templates" / f"{name}.json"
        if not path.is_file():
            raise TemplateError(f"no sample template {name!r}")
        return cls.load(path)

    # --- rendering ----------------------------------------------------------------------------

    def render(self, values: Mapping[str, Any], *,
               slot_names: Sequence[str] | None = None) -> bytes:
        """The filled-in PDF; raise :class:`TemplateError` (naming the field) on bad values.
        ``slot_names`` renames the signature slots' PDF fields, in signing order (a sign
        request's steps sign into ``medsign-step-N``)."""
        if not isinstance(values, Mapping):
            raise TemplateError("values: expected an object")
        known = {f.name for f in self.fields}
        for key in values:
            if key not in known:
                raise TemplateError(f"{key!r} is not a field of template {self.ref}", str(key))
        width, height = PAGE_SIZES[self.page_size]
        writer = PdfFileWriter(stream_xrefs=False)  # type: ignore[no-untyped-call]
        canvas = self._frame().copy()
        for field in self.fields:
            value = values.get(field.name)
            if value is None and field.required:
                raise TemplateError(f"{field.name}: a value is required", field.name)
            self._value(canvas, field, value)
        fonts = generic.DictionaryObject()  # type: ignore[no-untyped-call]
        fonts[generic.NameObject(_Canvas.FONT)] = canvas.font.resource(writer)
        resources = generic.DictionaryObject()  # type: ignore[no-untyped-call]
        resources[generic.NameObject("/Font")] = fonts
        if canvas.images:
            resources[generic.NameObject("/XObject")] = canvas.image_resources(writer)
        contents = writer.add_object(canvas.stream())
        page = PageObject(contents=contents,  # type: ignore[no-untyped-call]
                          media_box=(0, 0, width, height), resources=resources)
        writer.insert_page(page)  # type: ignore[no-untyped-call]
        names = _slot_names(self.signature_order, slot_names)
        for slot, name in zip(self.signatures, names, strict=True):
            pdf_fields.append_signature_field(writer, pdf_fields.SigFieldSpec(
                sig_field_name=name, box=slot.rect, on_page=0))
        writer.set_info(self._info(names))
        stable_document_id(writer, self.ref, values, names)
        out = io.BytesIO()
        writer.write(out)  # type: ignore[no-untyped-call]
        return out.getvalue()

    def _info(self, slot_names: Sequence[str]) -> generic.DictionaryObject:
        info = _dictionary({
            "/MedsignTemplate": generic.TextStringObject(self.ref),
            "/MedsignSignatureOrder": generic.TextStringObject(",".join(slot_names)),
            "/Creator": generic.TextStringObject("medsign pdfsign")})
        if self.title:
            info[generic.NameObject("/Title")] = generic.TextStringObject(self.title.text)
        return info

    def _frame(self) -> _Canvas:
        """What every document of this template shows whatever the values (title, texts,
        labels, lines, table grids), drawn once and kept: a render copies it and adds values."""
        cached: _Canvas | None = self.__dict__.get("_frame_canvas")
        if cached is None:
            cached = _Canvas(_template_font(cjk_face()))
            if self.title:
                self._block(cached, self.title)
            for block in self.texts:
                self._block(cached, block)
            for field in self.fields:
                self._field_frame(cached, field)
            self.__dict__["_frame_canvas"] = cached  # frozen: bypass __setattr__, a cache
        return cached

    @staticmethod
    def _block(canvas: _Canvas, block: TextBlock) -> None:
        for i, line in enumerate(block.text.split("\n")):
            canvas.text(line, block.x, block.y - i * block.size * _LEADING, block.size,
                        align=block.align)

    @staticmethod
    def _value_x(canvas: _Canvas, field: Field) -> float:
        """Where a field's value starts: after its label (checkboxes put the label after)."""
        if field.label and field.type != "checkbox":
            return field.x + canvas.width(field.label + "：", field.size)
        return field.x

    def _field_frame(self, canvas: _Canvas, field: Field) -> None:
        size = field.size
        if field.type == "checkbox":
            box = size
            canvas.rect(field.x, field.y - size * 0.15, box, box)
            if field.label:
                canvas.text(field.label, field.x + box + 3, field.y, size)
            return
        if field.label and field.type == "image":
            assert field.height is not None
            canvas.text(field.label, field.x, field.y + field.height + size * 0.4, size)
        elif field.label:
            canvas.text(field.label + "：", field.x, field.y, size)
        if field.type == "table":
            _table_grid(canvas, field)
        elif field.type == "image":
            return
        elif field.type != "multiline" and field.width is not None:
            x = self._value_x(canvas, field)
            canvas.line(x, field.y - size * 0.3, x + field.width, field.y - size * 0.3,
                        grey=0.4)

    def _value(self, canvas: _Canvas, field: Field, value: Any) -> None:
        if field.type == "image":
            if value is not None:
                _fit_image(canvas, field, decode_image(value, field.name))
            return
        x, size = self._value_x(canvas, field), field.size
        if field.type == "table":
            _table_rows(canvas, field, value)
            return
        if field.type == "checkbox":
            _checkbox_mark(canvas, field, value)
            return
        if field.type == "multiline":
            text = "" if value is None else _string(value, field.name, field.max_length,
                                                    newlines=True)
            assert field.height is not None
            wrap_width = field.width or (PAGE_SIZES[self.page_size][0] - x - 20)
            lines = _wrap(canvas, text, wrap_width, size, field.name) if text else []
            max_lines = max(1, int(field.height // (size * _LEADING)))
            if len(lines) > max_lines:
                raise TemplateError(f"{field.name}: too long: {len(lines)} lines, the field "
                                    f"holds {max_lines}", field.name)
            for i, line in enumerate(lines):
                canvas.text(line, x, field.y - i * size * _LEADING, size, where=field.name)
            return
        text = "" if value is None else self._display(field, value)
        if field.width is not None and canvas.width(text, size, field.name) > field.width:
            raise TemplateError(f"{field.name}: too long to fit the field "
                                f"({field.width:g} pt wide)", field.name)
        canvas.text(text, x + 2, field.y, size, where=field.name)

    @staticmethod
    def _display(field: Field, value: Any) -> str:
        name = field.name
        if field.type == "text":
            return _string(value, name, field.max_length)
        if field.type == "choice":
            text = _string(value, name, field.max_length)
            if text not in field.options:
                raise TemplateError(f"{name}: {text!r} is not one of the options "
                                    f"{', '.join(field.options)}", name)
            return text
        if field.type == "number":
            return _number(value, name, decimals=field.decimals, minimum=field.minimum,
                           maximum=field.maximum) + field.unit
        if field.type == "date":
            if isinstance(value, dt.datetime) or not isinstance(value, str | dt.date):
                raise TemplateError(f"{name}: expected a date (YYYY-MM-DD)", name)
            if isinstance(value, str):
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise TemplateError(f"{name}: {value!r} is not a date (YYYY-MM-DD)", name)
                try:
                    value = dt.date.fromisoformat(value)
                except ValueError as exc:
                    raise TemplateError(f"{name}: {value!r} is not a date: {exc}",
                                        name) from exc
            return str(value.strftime(field.date_format))
        raise AssertionError(field.type)  # pragma: no cover


def _fit_image(canvas: _Canvas, field: Field, image: PdfImage) -> None:
    """``image`` as large as fits the field's box, aspect ratio kept, centred."""
    assert field.width is not None and field.height is not None
    scale = min(field.width / image.width, field.height / image.height)
    w, h = image.width * scale, image.height * scale
    canvas.image(image, field.x + (field.width - w) / 2, field.y + (field.height - h) / 2, w, h)


def stable_document_id(writer: BasePdfFileWriter, ref: str, values: Mapping[str, Any],
                       slot_names: Sequence[str], *, keep_first: bool = False) -> None:
    """Derive the trailer ``/ID`` from what the document is made of instead of pyHanko's random
    bytes: the same template, values and slots give the same document identifier (the file
    differs only by its ``/ModDate``, the render time).  ``keep_first``: an incremental update
    keeps the original's first part (ISO 32000 14.4)."""
    material = json.dumps({"template": ref, "values": values, "slots": list(slot_names)},
                          sort_keys=True, ensure_ascii=False, default=str).encode()
    digest = hashlib.sha256(material).digest()
    document_id = writer.trailer_view["/ID"]  # the writer's own array, set in place
    if not keep_first:
        document_id[0] = generic.ByteStringObject(digest[:16])
    document_id[1] = generic.ByteStringObject(digest[16:])


def _slot_names(own: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The slots' field names: ``wanted`` (in order) where given, else their own; distinct."""
    names = list(wanted or [])[:len(own)] + list(own[len(wanted or []):])
    if len(set(names)) != len(names) or not all(
            isinstance(n, str) and 0 < len(n) <= 64 and n.isprintable() and "." not in n
            for n in names):
        raise TemplateError("slot_names: distinct field names without dots", "slot_names")
    return names


def _checkbox_mark(canvas: _Canvas, field: Field, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise TemplateError(f"{field.name}: expected true or false, got "
                            f"{type(value).__name__}", field.name)
    if value:
        box = field.size
        x, y = field.x, field.y - field.size * 0.15
        canvas.line(x + 2, y + 2, x + box - 2, y + box - 2, width=1)
        canvas.line(x + 2, y + box - 2, x + box - 2, y + 2, width=1)


def _table_edges(field: Field) -> list[float]:
    edges = [field.x]
    for column in field.columns:
        edges.append(edges[-1] + column.width)
    return edges


def _table_baseline(field: Field, row: int) -> float:
    rh, size = field.row_height, field.size
    return field.y - (row + 1) * rh + (rh - size) / 2 + size * 0.15


def _table_grid(canvas: _Canvas, field: Field) -> None:
    rh, top = field.row_height, field.y
    edges = _table_edges(field)
    for i in range(field.max_rows + 2):
        canvas.line(field.x, top - i * rh, edges[-1], top - i * rh)
    bottom = top - (field.max_rows + 1) * rh
    for edge in edges:
        canvas.line(edge, top, edge, bottom)
    for column, left in zip(field.columns, edges, strict=False):
        canvas.text(column.label, left + 3, _table_baseline(field, 0), field.size)


def _table_rows(canvas: _Canvas, field: Field, value: Any) -> None:
    rows = [] if value is None else value
    if not isinstance(rows, list):
        raise TemplateError(f"{field.name}: expected a list of rows", field.name)
    if field.required and not rows:
        raise TemplateError(f"{field.name}: at least one row is required", field.name)
    if len(rows) > field.max_rows:
        raise TemplateError(f"{field.name}: {len(rows)} rows, at most {field.max_rows}",
                            field.name)
    edges = _table_edges(field)
    for number, row in enumerate(rows, start=1):
        for text, left, where in _row_cells(canvas, field, edges, row,
                                            f"{field.name}[{number}]"):
            canvas.text(text, left + 3, _table_baseline(field, number), field.size,
                        where=where)


def _row_cells(canvas: _Canvas, field: Field, edges: list[float], row: Any,
               where: str) -> list[tuple[str, float, str]]:
    """One table row's cells, checked: (text, left edge of the column, where)."""
    if not isinstance(row, Mapping):
        raise TemplateError(f"{where}: expected an object", where)
    names = {c.name for c in field.columns}
    for key in row:
        if key not in names:
            raise TemplateError(f"{where}.{key}: unknown column", f"{where}.{key}")
    cells = []
    for column, left in zip(field.columns, edges, strict=False):
        cell = row.get(column.name)
        cell_where = f"{where}.{column.name}"
        if cell is None:
            if column.required:
                raise TemplateError(f"{cell_where}: a value is required", cell_where)
            continue
        text = (_number(cell, cell_where, decimals=column.decimals) if column.type == "number"
                else _string(cell, cell_where, column.max_length))
        if canvas.width(text, field.size, cell_where) > column.width - 6:
            raise TemplateError(f"{cell_where}: too long to fit the column "
                                f"({column.width:g} pt wide)", cell_where)
        cells.append((text, left, cell_where))
    return cells
