"""Visible signature appearances: seal images, handwritten signatures and Chinese text lines,
and the handwriting strokes' digest bound into the signed attributes.

An :class:`Appearance` is what a signature field shows:

- ``image``: a seal (or any PNG/JPEG): drawn as an image XObject, its alpha channel as an
  ``/SMask`` (a red seal on a transparent background shows the page through it), scaled into
  the box keeping its aspect ratio;
- ``strokes``: a handwritten signature as the phone captured it (:class:`Strokes`), drawn as
  vector paths (round caps and joins, the pen width following the pressure), or, with
  ``vector=False``, as a PNG image rendered here (the fallback for viewers that draw thin
  paths badly);
- ``lines``: lines of text under the graphic (signer name, title, signing time) in the CJK
  font, subset-embedded with a ToUnicode map (the text can be searched and copied);
  ``%(signer)s`` and ``%(ts)s`` in a line are replaced by the signer's name and the signing
  time;
- otherwise ``text``: pyHanko's Latin text stamp, as before.

Strokes digest.  A handwriting image proves nothing by itself (anyone can copy a picture);
what the signature can do is commit to *how* it was drawn.  :meth:`Strokes.digest` is SM3 over
the canonical encoding of the normalized strokes (:meth:`Strokes.canonical`):

- normalization: x, y and pressure p in [0, 1] become integers ``round(v * 10000)`` (0..10000),
  the time t (ms since the first touch) becomes an integer ``round(t)``;
- encoding (big-endian): the ASCII tag ``MEDSIGN-STROKES-1`` and a zero byte; uint32 pad
  width and height (pixels); uint32 number of strokes; per stroke a uint32 number of points,
  then per point uint16 x, uint16 y, uint32 t, uint16 p.

The digest is the signed attribute :data:`STROKES_DIGEST_OID` (an OID under ``2.25``, from a
random UUID), value ``StrokesDigest ::= SEQUENCE { version INTEGER (1), digestAlgorithm
AlgorithmIdentifier (sm3), digest OCTET STRING }``.  What is drawn is rendered from the
normalized strokes, so the picture and the digest describe the same drawing; an evidence report
recomputes the digest from the stored strokes and compares.

Threat model: images and strokes come from clients (a seal image uploaded by an administrator,
strokes from a phone).  :func:`load_image` refuses anything that is not a PNG or JPEG of
bounded size and pixel count before decoding it (decompression bombs), and decodes it fully so
that a truncated file fails here, not inside the PDF writer.
"""

from __future__ import annotations

import io
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from asn1crypto import algos, cms, core
from PIL import Image, ImageDraw, UnidentifiedImageError
from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.images import pil_image
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign.attributes import CMSAttributeProvider, SignedAttributeProviderSpec
from pyhanko.sign.signers.pdf_cms import (
    CAdESSignedAttributeProviderSpec,
    PdfCMSSignedAttributes,
)
from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
from pyhanko.stamp import BaseStamp, BaseStampStyle, TextStampStyle

import signcore.keys  # noqa: F401  (registers the GM OIDs, sm3 among them, in asn1crypto)
from pdfsign._cidfont import CidFont
from pdfsign.errors import InvalidAppearance, InvalidPdf
from signcore import hashes

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "STROKES_DIGEST_OID",
    "Appearance",
    "SignatureSlotInfo",
    "Strokes",
    "bind_signed_attributes",
    "empty_signature_fields",
    "load_image",
    "signature_order",
    "signature_slots",
    "stamp_style",
    "strokes_digest_of",
]

#: The signed attribute carrying :meth:`Strokes.digest` (2.25 + a random UUID, ITU-T X.667).
STROKES_DIGEST_OID = "2.25.316791077572231644928147102523399468761"
_ATTRIBUTE_NAME = "medsign_strokes_digest"
#: Image files larger than this are refused before decoding.
MAX_IMAGE_BYTES = 2 * 1024 * 1024
#: Images with more pixels than this are refused before decoding (a 2048 x 2048 seal scan).
MAX_IMAGE_PIXELS = 2048 * 2048
MAX_STROKES = 100
MAX_POINTS = 20_000
MAX_PAD_SIDE = 4096
_QUANTUM = 10_000
_MAX_T = 2**32 - 1
_TAG = b"MEDSIGN-STROKES-1\x00"
_PNG_WIDTH = 600  # pixels of a strokes PNG (vector=False)
_SUPERSAMPLE = 4
_MARGIN = 2.0
_LEADING = 1.2
_MAX_FONT_SIZE = 9.0
_MAX_LINES = 4
_MAX_LINE_LENGTH = 64

Point = tuple[int, int, int, int]  # normalized x, y (0..10000, y down), t (ms), p (0..10000)


# --- strokes ------------------------------------------------------------------------------------


def _quantize(value: float, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidAppearance(f"{where}: a number from 0 to 1")
    return round(value * _QUANTUM)


def _milliseconds(value: float, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not 0 <= value <= _MAX_T:
        raise InvalidAppearance(f"{where}: milliseconds from 0 to {_MAX_T}")
    return round(value)


@dataclass(frozen=True)
class Strokes:
    """A handwritten signature: the pad's size in pixels and its strokes, each a sequence of
    normalized points (see the module docstring).  Build one with :meth:`from_points`."""

    width: int
    height: int
    strokes: tuple[tuple[Point, ...], ...]

    @classmethod
    def from_points(cls, width: int, height: int,
                    strokes: Iterable[Iterable[tuple[float, float, float, float]]]) -> Strokes:
        """From points ``(x, y, t, p)``: x and y in [0, 1] of the pad (y downwards), t in ms,
        pressure p in [0, 1].  Raises :class:`InvalidAppearance`."""
        for name, side in (("width", width), ("height", height)):
            if isinstance(side, bool) or not isinstance(side, int) or \
                    not 0 < side <= MAX_PAD_SIDE:
                raise InvalidAppearance(f"strokes {name}: 1 to {MAX_PAD_SIDE} pixels")
        parsed: list[tuple[Point, ...]] = []
        total = 0
        for i, stroke in enumerate(strokes):
            points = tuple((_quantize(x, f"strokes[{i}].x"), _quantize(y, f"strokes[{i}].y"),
                            _milliseconds(t, f"strokes[{i}].t"), _quantize(p, f"strokes[{i}].p"))
                           for x, y, t, p in stroke)
            total += len(points)
            if not points or total > MAX_POINTS:
                raise InvalidAppearance(f"strokes: 1 or more points a stroke, {MAX_POINTS} "
                                        "in all")
            parsed.append(points)
        if not 0 < len(parsed) <= MAX_STROKES:
            raise InvalidAppearance(f"strokes: 1 to {MAX_STROKES} strokes")
        return cls(width, height, tuple(parsed))

    def canonical(self) -> bytes:
        """The canonical encoding the digest is computed over (module docstring)."""
        out = [_TAG, struct.pack(">III", self.width, self.height, len(self.strokes))]
        for stroke in self.strokes:
            out.append(struct.pack(">I", len(stroke)))
            out.extend(struct.pack(">HHIH", x, y, t, p) for x, y, t, p in stroke)
        return b"".join(out)

    def digest(self) -> bytes:
        """SM3 of :meth:`canonical`: what the signed attribute carries."""
        return hashes.digest(hashes.HashAlgorithm.SM3, self.canonical())


def _pen(pressure: int, pad_width: float) -> float:
    """Pen width in the units of a drawing ``pad_width`` wide: 1.5 to 5 px of a 600 px pad
    (the same as the stored handwriting PNG)."""
    return (1.5 + 3.5 * pressure / _QUANTUM) * pad_width / 600


def render_strokes_png(strokes: Strokes, width: int = _PNG_WIDTH) -> Image.Image:
    """Black ink on a transparent background (mode LA), anti-aliased by supersampling."""
    height = max(1, round(width * strokes.height / strokes.width))
    sx, sy = width * _SUPERSAMPLE, height * _SUPERSAMPLE
    big = Image.new("LA", (sx, sy), (0, 0))
    pen = ImageDraw.Draw(big)
    for stroke in strokes.strokes:
        for (x0, y0, _t0, p0), (x1, y1, _t1, p1) in itertools.pairwise(stroke):
            line = _pen((p0 + p1) // 2, sx)
            pen.line([(x0 * sx / _QUANTUM, y0 * sy / _QUANTUM),
                      (x1 * sx / _QUANTUM, y1 * sy / _QUANTUM)], fill=(0, 255),
                     width=max(1, round(line)))
        for x, y, _t, p in stroke:  # round caps and joins, and single-point dots
            r = _pen(p, sx) / 2
            cx, cy = x * sx / _QUANTUM, y * sy / _QUANTUM
            pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(0, 255))
    return big.resize((width, height), Image.Resampling.LANCZOS)


# --- images -------------------------------------------------------------------------------------


def load_image(data: bytes) -> Image.Image:
    """Decode a PNG or JPEG (size and pixel count bounded before decoding) into an RGB(A) or
    L(A) image; :class:`InvalidAppearance` for anything else, truncated or too big."""
    if not isinstance(data, bytes | bytearray | memoryview) or not data:
        raise InvalidAppearance("the image is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidAppearance(f"the image is over {MAX_IMAGE_BYTES} bytes")
    try:
        image = Image.open(io.BytesIO(bytes(data)), formats=("PNG", "JPEG"))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InvalidAppearance(f"the image has over {MAX_IMAGE_PIXELS} pixels")
        image.load()
    except InvalidAppearance:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as exc:
        raise InvalidAppearance(f"not a readable PNG or JPEG image: {exc}") from None
    return _normalized_mode(image)


def _normalized_mode(image: Image.Image) -> Image.Image:
    """RGB(A) or L(A): what pyHanko embeds (a palette's transparency becomes an alpha
    channel, 16-bit and CMYK become 8-bit RGB)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
    if grey:
        return image.convert("LA" if has_alpha else "L")
    return image.convert("RGBA" if has_alpha else "RGB")


# --- the appearance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Appearance:
    """A visible signature (module docstring).  ``box``: the rectangle (PDF user-space points,
    ``x1, y1, x2, y2``) on page ``page`` (0-based) of a field created for the signature; an
    existing field (a template slot) keeps its own rectangle and ``box`` may be ``None``.

    ``text`` is the Latin-only pyHanko stamp used when there is no image, strokes or lines;
    ``%(signer)s`` and ``%(ts)s`` are filled in by pyHanko."""

    box: tuple[int, int, int, int] | None = None
    page: int = 0
    text: str = "Signed by: %(signer)s\nTime: %(ts)s"
    image: bytes | None = None
    strokes: Strokes | None = None
    vector: bool = True
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image is not None and self.strokes is not None:
            raise InvalidAppearance("an appearance shows an image or strokes, not both")
        if len(self.lines) > _MAX_LINES or any(
                not isinstance(line, str) or len(line) > _MAX_LINE_LENGTH or "\n" in line
                for line in self.lines):
            raise InvalidAppearance(f"lines: at most {_MAX_LINES} lines of "
                                    f"{_MAX_LINE_LENGTH} characters")

    @property
    def custom(self) -> bool:
        """Drawn here (image, strokes or CJK lines) rather than by pyHanko's text stamp."""
        return self.image is not None or self.strokes is not None or bool(self.lines)


def stamp_style(appearance: Appearance) -> BaseStampStyle:
    """The pyHanko stamp style that draws ``appearance``."""
    if not appearance.custom:
        return TextStampStyle(stamp_text=appearance.text)
    image = load_image(appearance.image) if appearance.image is not None else None
    return _MedsignStampStyle(border_width=0, appearance=appearance, image=image,
                              timestamp_format="%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class _MedsignStampStyle(TextStampStyle):
    # TextStampStyle (not BaseStampStyle): pyHanko then passes the signing time as %(ts)s.
    appearance: Appearance = Appearance()
    image: Image.Image | None = None

    def create_stamp(  # type: ignore[override]
            self, writer: BasePdfFileWriter, box: layout.BoxConstraints,
            text_params: dict[str, Any]) -> _MedsignStamp:
        return _MedsignStamp(writer, self, box, text_params)


def _interpolate(line: str, params: dict[str, Any]) -> str:
    # Only the two known place-holders: a literal "%" in a title must survive.
    return (line.replace("%(signer)s", str(params.get("signer", "")))
            .replace("%(ts)s", str(params.get("ts", ""))))


class _MedsignStamp(BaseStamp):
    """Graphic on top, text lines below, inside the field's rectangle."""

    FONT = "/MedsignF1"
    IMAGE = "/MedsignIm1"

    def __init__(self, writer: BasePdfFileWriter, style: _MedsignStampStyle,
                 box: layout.BoxConstraints, text_params: dict[str, Any]) -> None:
        if not (box and box.width_defined and box.height_defined):
            raise layout.LayoutError("a medsign appearance needs the field's rectangle")
        super().__init__(writer=writer, style=style, box=box)
        self._appearance = style.appearance
        self._image = style.image
        self._lines = [_interpolate(line, text_params) for line in style.appearance.lines]

    def _render_inner_content(self) -> list[bytes]:
        width, height = float(self.box.width), float(self.box.height)
        ops: list[bytes] = []
        text_height = 0.0
        if self._lines:
            ops_text, text_height = self._text(width, height)
            ops.append(ops_text)
        area = (_MARGIN, _MARGIN + text_height, width - 2 * _MARGIN,
                height - 2 * _MARGIN - text_height)
        if area[2] > 0 and area[3] > 0:
            ops.extend(self._graphic(*area))
        return ops

    def _graphic(self, x: float, y: float, w: float, h: float) -> Iterator[bytes]:
        strokes = self._appearance.strokes
        if strokes is not None and self._appearance.vector:
            yield _vector_strokes(strokes, *_fit((strokes.width, strokes.height), (x, y, w, h)))
            return
        image = self._image if strokes is None else render_strokes_png(strokes)
        if image is None:
            return
        self.set_resource(ResourceType.XOBJECT, generic.NameObject(self.IMAGE),
                          pil_image(image, self._ensure_writer))
        left, bottom, iw, ih = _fit((image.width, image.height), (x, y, w, h))
        yield b"q %.3f 0 0 %.3f %.3f %.3f cm %s Do Q" % (iw, ih, left, bottom,
                                                           self.IMAGE.encode())

    def _text(self, width: float, height: float) -> tuple[bytes, float]:
        """The text lines, centred, at one size that fits the width and at most 40% of the
        height (or 100% when there is no graphic); and the height they take."""
        font = _appearance_font()
        encoded = [(font.encode(line), font.width(line)) for line in self._lines]
        share = 0.4 if (self._image is not None or self._appearance.strokes is not None) else 1
        widest = max((w for _hex, w in encoded), default=0) or 1
        size = min(_MAX_FONT_SIZE, (width - 2 * _MARGIN) / widest,
                   (height * share - _MARGIN) / (len(encoded) * _LEADING))
        size = max(size, 1.0)
        self.set_resource(ResourceType.FONT, generic.NameObject(self.FONT),
                          font.resource(self._ensure_writer))
        ops = [b"q 0 g"]
        for i, (hex_cids, line_width) in enumerate(reversed(encoded)):  # bottom line first
            x = (width - line_width * size) / 2
            baseline = _MARGIN + size * 0.25 + i * size * _LEADING
            ops.append(b"BT %s %.2f Tf 1 0 0 1 %.2f %.2f Tm <%s> Tj ET"
                       % (self.FONT.encode(), size, x, baseline, hex_cids))
        ops.append(b"Q")
        return b" ".join(ops), len(encoded) * size * _LEADING + _MARGIN


def _appearance_font() -> CidFont:
    """The CJK font of one appearance's text lines (subset-embedded, extractable)."""
    from pdfsign._fonts import cjk_face  # noqa: PLC0415  (the font file only when needed)

    return CidFont(cjk_face(), _missing_glyph)


def _missing_glyph(char: str, _where: str | None) -> InvalidAppearance:
    return InvalidAppearance(f"the character {char!r} (U+{ord(char):04X}) is not in the CJK font")




def _fit(source: tuple[float, float],
         area: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """``source`` (width, height) scaled into ``area`` (x, y, width, height) keeping its aspect
    ratio, centred: (left, bottom, width, height)."""
    (src_w, src_h), (x, y, w, h) = source, area
    scale = min(w / src_w, h / src_h)
    fw, fh = src_w * scale, src_h * scale
    return x + (w - fw) / 2, y + (h - fh) / 2, fw, fh


def _vector_strokes(strokes: Strokes, left: float, bottom: float, w: float, h: float) -> bytes:
    """Each stroke as line segments, consecutive segments of the same (0.05 pt) pen width in
    one path; a one-point stroke as a zero-length segment (a dot, with round caps)."""
    def at(x: int, y: int) -> bytes:
        return b"%.2f %.2f" % (left + x * w / _QUANTUM, bottom + (1 - y / _QUANTUM) * h)

    ops = [b"q 0 G 1 J 1 j"]
    for stroke in strokes.strokes:
        pairs = list(itertools.pairwise(stroke)) or [(stroke[0], stroke[0])]
        current: float | None = None
        for (x0, y0, _t0, p0), (x1, y1, _t1, p1) in pairs:
            pen = round(_pen((p0 + p1) // 2, w) * 20) / 20
            if pen != current:
                if current is not None:
                    ops.append(b"S")
                ops.append(b"%.2f w %s m" % (max(pen, 0.05), at(x0, y0)))
                current = pen
            ops.append(b"%s l" % at(x1, y1))
        ops.append(b"S")
    ops.append(b"Q")
    return b" ".join(ops)


# --- the strokes digest attribute ---------------------------------------------------------------


class StrokesDigest(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, type]]] = [
        ("version", core.Integer), ("digest_algorithm", algos.DigestAlgorithm),
        ("digest", core.OctetString)]


class _SetOfStrokesDigest(core.SetOf):  # type: ignore[misc]
    _child_spec = StrokesDigest


def _register() -> None:
    cms.CMSAttributeType._map[STROKES_DIGEST_OID] = _ATTRIBUTE_NAME
    reverse = cms.CMSAttributeType._reverse_map
    if reverse is not None:  # built already: keep it in step
        reverse[_ATTRIBUTE_NAME] = STROKES_DIGEST_OID
    cms.CMSAttribute._oid_specs[_ATTRIBUTE_NAME] = _SetOfStrokesDigest


_register()


class _StrokesDigestProvider(CMSAttributeProvider):
    attribute_type = _ATTRIBUTE_NAME

    def __init__(self, digest: bytes) -> None:
        self._digest = digest

    async def build_attr_value(self, dry_run: bool = False) -> StrokesDigest:
        return StrokesDigest({"version": 1, "digest_algorithm": {"algorithm": "sm3"},
                              "digest": self._digest})

    async def get_attribute(self, dry_run: bool = False) -> cms.CMSAttribute:
        value = await self.build_attr_value(dry_run=dry_run)
        return cms.CMSAttribute({"type": STROKES_DIGEST_OID, "values": [value]})


class _WithExtraAttributes(SignedAttributeProviderSpec):
    """pyHanko's PAdES signed attributes (signing-certificate-v2), plus ours."""

    def __init__(self, signing_cert: Any, extra: Sequence[CMSAttributeProvider]) -> None:
        self._inner = CAdESSignedAttributeProviderSpec(
            attr_settings=PdfCMSSignedAttributes(), signing_cert=signing_cert, is_pades=True,
            timestamper=None)
        self._extra = tuple(extra)

    def signed_attr_providers(self, data_digest: bytes,
                              digest_algorithm: str) -> Iterator[CMSAttributeProvider]:
        yield from self._inner.signed_attr_providers(data_digest, digest_algorithm)
        yield from self._extra


def bind_signed_attributes(signer: PyHankoSigner, appearance: Appearance | None) -> None:
    """Put the strokes' digest of ``appearance`` (if it has strokes) into the signed attributes
    ``signer`` makes, for one-shot and two-phase signing alike."""
    if appearance is None or appearance.strokes is None:
        return
    signer.signed_attr_prov_spec = _WithExtraAttributes(
        signer.signing_cert, [_StrokesDigestProvider(appearance.strokes.digest())])


def strokes_digest_of(signer_info: cms.SignerInfo) -> bytes | None:
    """The strokes digest a SignerInfo's signed attributes carry, or ``None``."""
    attrs = signer_info["signed_attrs"]
    if not attrs:
        return None
    for attr in attrs:
        if attr["type"].dotted == STROKES_DIGEST_OID:
            values = attr["values"]
            if len(values) == 1:
                return bytes(values[0]["digest"].native)
    return None


@dataclass(frozen=True)
class SignatureSlotInfo:
    """An empty signature field of a PDF: its name, page (0-based) and rectangle (``None``
    for an invisible one)."""

    name: str
    page: int
    box: tuple[int, int, int, int] | None


#: Pages looked at to find a widget's page (hospital documents are short).
_MAX_PAGES = 500


def signature_slots(data: bytes) -> list[SignatureSlotInfo]:
    """The PDF's empty signature fields (slots an appearance can go into), in document order.
    :class:`~pdfsign.errors.InvalidPdf` when ``data`` is not a PDF."""
    from pyhanko.sign.fields import enumerate_sig_fields  # noqa: PLC0415

    from pdfsign.sign import open_pdf  # noqa: PLC0415  (sign imports this module)

    reader = open_pdf(data)
    try:
        found = []
        for name, _value, ref in enumerate_sig_fields(reader, filled_status=False):
            widget = ref.get_object()
            rect = [round(float(v)) for v in widget.get("/Rect") or []]
            box = (min(rect[0], rect[2]), min(rect[1], rect[3]), max(rect[0], rect[2]),
                   max(rect[1], rect[3])) if len(rect) == 4 else None
            if box is not None and (box[0] == box[2] or box[1] == box[3]):
                box = None
            page = _page_of(reader, widget.raw_get("/P")) if "/P" in widget else 0
            found.append(SignatureSlotInfo(str(name), page, box))
        return found
    except (PdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InvalidPdf(f"unreadable signature fields: {exc}") from exc


def _page_of(reader: Any, page_ref: Any) -> int:
    count = min(int(reader.root["/Pages"].get("/Count", 0)), _MAX_PAGES)
    for index in range(count):
        ref, _resources = reader.find_page_for_modification(index)
        if getattr(ref, "idnum", None) == getattr(page_ref, "idnum", -1):
            return index
    return 0


def empty_signature_fields(data: bytes) -> list[str]:
    """The names of the PDF's empty signature fields, in document order."""
    return [slot.name for slot in signature_slots(data)]


def signature_order(data: bytes) -> list[str]:
    """A template's signature slots in signing order (``/MedsignSignatureOrder`` of the
    document information, :mod:`pdfsign.templates`); ``[]`` for any other PDF."""
    from pdfsign.sign import open_pdf  # noqa: PLC0415

    reader = open_pdf(data)
    try:
        info = reader.trailer["/Info"] if "/Info" in reader.trailer else None  # noqa: SIM401
        value = info.get("/MedsignSignatureOrder") if info is not None else None
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidPdf(f"unreadable document information: {exc}") from exc
    return [name for name in str(value).split(",") if name] if value is not None else []
