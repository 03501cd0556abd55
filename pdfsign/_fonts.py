"""The CJK font templates render with: found at run time in Debian's font packages (no font
files ship with the project), one face extracted from a TrueType collection, cached per process.

:func:`cjk_font` is that face as a stand-alone font file (fontTools' ``TTFont`` and pyHanko's
``GlyphAccumulator`` refuse a ``.ttc``), without the layout tables (GSUB/GPOS/GDEF): Chinese and
Latin form text needs no shaping features.  :func:`cjk_face` parses the font file (its first
face) once per process for templates, which map characters to glyphs through its ``cmap`` (no
shaping) and embed a subset built by :meth:`FontFace.subset` -- a few milliseconds where
fontTools' subsetter, which decompiles and recompiles the whole 49 000-glyph face, took a
second per document.  Only TrueType outlines (``glyf``) are supported, which every font in the
search list has.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from pathlib import Path

from fontTools.ttLib import TTCollection, TTFont, TTLibError  # type: ignore[import-untyped]

from pdfsign.errors import FontNotFound

__all__ = ["CJK_FONT_CANDIDATES", "FONT_ENV", "FontFace", "cjk_face", "cjk_font", "cjk_font_path"]

#: Environment variable naming a font file to use instead of the search list.
FONT_ENV = "MEDSIGN_CJK_FONT"

#: Searched in order; the first that exists is used.
CJK_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # Debian fonts-arphic-uming
)

_DROPPED_TABLES = ("GSUB", "GPOS", "GDEF", "FFTM", "DSIG")


def cjk_font_path() -> Path:
    """The font file to use, or :class:`FontNotFound` naming what was searched."""
    override = os.environ.get(FONT_ENV)
    candidates = (override,) if override else CJK_FONT_CANDIDATES
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FontNotFound(
        "no CJK font found (searched: " + ", ".join(str(c) for c in candidates)
        + "); install the Debian package fonts-wqy-microhei or set " + FONT_ENV)


@functools.cache
def _load(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        font = (TTCollection(str(path), lazy=True).fonts[0] if head == b"ttcf"
                else TTFont(str(path), lazy=True))
        for tag in _DROPPED_TABLES:
            if tag in font:
                del font[tag]
        out = io.BytesIO()
        font.save(out)
    except (OSError, TTLibError, IndexError) as exc:
        raise FontNotFound(f"cannot read the CJK font {path}: {exc}") from exc
    return out.getvalue()


def cjk_font() -> bytes:
    """The CJK font (one face, TrueType or CFF outlines) as bytes."""
    return _load(cjk_font_path())


# --- fast subset embedding ----------------------------------------------------------------------
#
# fontTools' subsetter (what pyHanko's GlyphAccumulator runs) decompiles and recompiles the whole
# font for every document: about a second for a 49 000-glyph CJK face.  A TrueType font needs far
# less: the face is parsed once per process (cmap, metrics, raw glyph table), and a subset is the
# used glyphs' raw outlines copied into a new glyf/loca/hmtx with renumbered glyph ids
# (composite glyphs get their component ids rewritten), plus the glyph-independent tables.

_KEPT_TABLES = ("cvt ", "fpgm", "prep", "gasp", "OS/2", "name")
_COMPOSITE_MORE = 0x0020
_COMPOSITE_WORDS = 0x0001
_COMPOSITE_SCALE = 0x0008
_COMPOSITE_XY_SCALE = 0x0040
_COMPOSITE_2X2 = 0x0080


def _checksum(data: bytes) -> int:
    padded = data + b"\0" * (-len(data) % 4)
    total: int = sum(struct.unpack(f">{len(padded) // 4}I", padded))
    return total & 0xFFFFFFFF


def _table_directory(data: bytes, start: int = 0) -> dict[str, bytes]:
    """The tables of the face whose offset table is at ``start`` (0, or a collection's face
    offset: table offsets are from the start of the file either way)."""
    count = struct.unpack_from(">H", data, start + 4)[0]
    tables = {}
    for i in range(count):
        tag, _, offset, length = struct.unpack_from(">4sIII", data, start + 12 + 16 * i)
        tables[tag.decode("latin-1")] = data[offset:offset + length]
    return tables


def _metrics(tables: dict[str, bytes], count: int) -> list[tuple[int, int]]:
    """(advance, left side bearing) of every glyph, from the raw hhea and hmtx tables."""
    long_count = struct.unpack_from(">H", tables["hhea"], 34)[0]
    hmtx = tables["hmtx"]
    pairs = list(struct.iter_unpack(">Hh", hmtx[:4 * long_count]))
    last = pairs[-1][0]
    rest = struct.unpack_from(f">{count - long_count}h", hmtx, 4 * long_count)
    return pairs + [(last, lsb) for lsb in rest]


def _components(glyph: bytes) -> list[tuple[int, int]]:
    """A composite glyph's components: (offset of the glyph index in ``glyph``, glyph id)."""
    found = []
    pos = 10
    while True:
        flags, gid = struct.unpack_from(">HH", glyph, pos)
        found.append((pos + 2, gid))
        pos += 4 + (4 if flags & _COMPOSITE_WORDS else 2)
        pos += (2 if flags & _COMPOSITE_SCALE else 4 if flags & _COMPOSITE_XY_SCALE
                else 8 if flags & _COMPOSITE_2X2 else 0)
        if not flags & _COMPOSITE_MORE:
            return found


class FontFace:
    """A TrueType face parsed once: character map, metrics, raw tables; :meth:`subset` builds the
    font program of a document's glyphs."""

    def __init__(self, data: bytes) -> None:
        """``data``: a TrueType font or collection (its first face).  Only the small tables
        are decompiled (by fontTools); glyph names are never read (a CJK ``post`` table is
        half a megabyte of them)."""
        collection = data[:4] == b"ttcf"
        start = struct.unpack_from(">I", data, 12)[0] if collection else 0
        font = TTFont(io.BytesIO(data), lazy=True, fontNumber=0 if collection else -1)
        if "glyf" not in font:
            raise FontNotFound("the CJK font has no TrueType outlines (glyf): use a TrueType "
                               "font such as fonts-wqy-microhei")
        self.tables = _table_directory(data, start)
        count = struct.unpack_from(">H", self.tables["maxp"], 4)[0]
        font.setGlyphOrder([f"g{i}" for i in range(count)])  # ids, not names, from the cmap
        head, hhea, os2 = font["head"], font["hhea"], font["OS/2"]
        self.units_per_em = int(head.unitsPerEm)
        self.cmap: dict[int, int] = {
            code: int(name[1:]) for code, name in font.getBestCmap().items()}
        self.metrics = _metrics(self.tables, count)
        raw_loca = self.tables["loca"]
        if head.indexToLocFormat:
            self.loca = list(struct.unpack(f">{len(raw_loca) // 4}I", raw_loca))
        else:
            self.loca = [2 * v for v in struct.unpack(f">{len(raw_loca) // 2}H", raw_loca)]
        self.name = str(font["name"].getDebugName(6) or "CJKFont").replace(" ", "")
        scale = 1000 / self.units_per_em
        self.bbox = tuple(round(v * scale) for v in (head.xMin, head.yMin, head.xMax,
                                                     head.yMax))
        self.ascent = round(hhea.ascent * scale)
        self.descent = round(hhea.descent * scale)
        self.cap_height = round(getattr(os2, "sCapHeight", 0) * scale or self.ascent)

    def glyph(self, char: str) -> int | None:
        """The glyph id of ``char``, or None when the font does not have it."""
        return self.cmap.get(ord(char))

    def advance(self, gid: int) -> float:
        """The advance width of glyph ``gid`` in thousandths of the font size."""
        return self.metrics[gid][0] * 1000 / self.units_per_em

    def _outline(self, gid: int) -> bytes:
        return self.tables["glyf"][self.loca[gid]:self.loca[gid + 1]]

    def closure(self, gids: list[int]) -> list[int]:
        """``gids`` followed by the components of their composite glyphs not yet in it."""
        order = list(gids)
        seen = set(order)
        for gid in order:  # grows while iterating: components of components
            outline = self._outline(gid)
            if len(outline) >= 10 and struct.unpack_from(">h", outline)[0] < 0:
                for _, component in _components(outline):
                    if component not in seen:
                        seen.add(component)
                        order.append(component)
        return order

    def subset(self, gids: list[int]) -> bytes:
        """A TrueType font holding glyphs ``gids`` (the first should be 0, .notdef) renumbered
        0, 1, 2...; the caller includes every component (:meth:`closure`)."""
        new_id = {gid: i for i, gid in enumerate(gids)}
        glyf = bytearray()
        loca = [0]
        for gid in gids:
            outline = bytearray(self._outline(gid))
            if len(outline) >= 10 and struct.unpack_from(">h", outline)[0] < 0:
                for pos, component in _components(bytes(outline)):
                    struct.pack_into(">H", outline, pos, new_id[component])
            glyf += outline + b"\0" * (-len(outline) % 4)
            loca.append(len(glyf))
        count = len(gids)
        head = bytearray(self.tables["head"])
        struct.pack_into(">I", head, 8, 0)  # checkSumAdjustment, set below
        struct.pack_into(">h", head, 50, 1)  # long loca offsets
        hhea = bytearray(self.tables["hhea"])
        struct.pack_into(">H", hhea, 34, count)
        maxp = bytearray(self.tables["maxp"])
        struct.pack_into(">H", maxp, 4, count)
        post = bytearray(self.tables["post"][:32])
        struct.pack_into(">I", post, 0, 0x00030000)  # format 3: no glyph names
        tables = {
            "glyf": bytes(glyf), "head": bytes(head), "hhea": bytes(hhea),
            "hmtx": b"".join(struct.pack(">Hh", *self.metrics[g]) for g in gids),
            "loca": struct.pack(f">{count + 1}I", *loca), "maxp": bytes(maxp),
            "post": bytes(post),
            **{tag: self.tables[tag] for tag in _KEPT_TABLES if tag in self.tables},
        }
        return _sfnt(tables)


def _sfnt(tables: dict[str, bytes]) -> bytes:
    """An sfnt file from its tables (sorted directory, 4-byte aligned, head checksum set)."""
    tags = sorted(tables)
    count = len(tags)
    power = 1 << (count.bit_length() - 1)
    header = struct.pack(">IHHHH", 0x00010000, count, power * 16, power.bit_length() - 1,
                         count * 16 - power * 16)
    offset = 12 + 16 * count
    directory = bytearray()
    body = bytearray()
    for tag in tags:
        data = tables[tag]
        directory += struct.pack(">4sIII", tag.encode("latin-1"), _checksum(data),
                                 offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    font = bytearray(header + directory + body)
    head_offset = offset + sum(len(tables[t]) + (-len(tables[t]) % 4)
                               for t in tags[:tags.index("head")])
    struct.pack_into(">I", font, head_offset + 8, (0xB1B0AFBA - _checksum(bytes(font)))
                     & 0xFFFFFFFF)
    return bytes(font)


@functools.cache
def _face(path: Path) -> FontFace:
    try:
        return FontFace(path.read_bytes())
    except (OSError, TTLibError, KeyError, IndexError, struct.error) as exc:
        raise FontNotFound(f"cannot read the CJK font {path}: {exc}") from exc


def cjk_face() -> FontFace:
    """The CJK font parsed (once per process) for :meth:`FontFace.subset` embedding."""
    return _face(cjk_font_path())
