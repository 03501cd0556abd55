"""The CJK font templates render with: found at run time in Debian's font packages (no font
files ship with the project), one face extracted from a TrueType collection, cached per process.

pyHanko's :class:`~pyhanko.pdf_utils.font.opentype.GlyphAccumulator` reads a single-face font
(fontTools' ``TTFont`` refuses a ``.ttc``), so the first face of a collection is saved as a
stand-alone TrueType/OpenType font.  The layout tables (GSUB/GPOS/GDEF) are dropped from that
copy: Chinese and Latin form text needs no shaping features, and decompiling them for every
subset costs most of a render.  pyHanko subset-embeds the glyphs a document uses.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

from fontTools.ttLib import TTCollection, TTFont, TTLibError  # type: ignore[import-untyped]

from pdfsign.errors import FontNotFound

__all__ = ["CJK_FONT_CANDIDATES", "FONT_ENV", "cjk_font", "cjk_font_path"]

#: Environment variable naming a font file to use instead of the search list.
FONT_ENV = "MEDSIGN_CJK_FONT"

#: Searched in order; the first that exists is used.
CJK_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian fonts-wqy-zenhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian fonts-noto-cjk
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
