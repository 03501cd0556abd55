"""Images that templates place in ``image`` fields: a PNG or JPEG given as base64 (or bytes),
checked and turned into a PDF image XObject.

Threat model: the image comes from the application filling the template, i.e. from outside.
A decompression bomb (a small file declaring a huge canvas) is refused from its header, before
any pixel is decoded; so are files over :data:`MAX_IMAGE_BYTES`, formats other than PNG/JPEG and
files Pillow cannot decode.  JPEGs in grey or RGB are embedded as they are (DCTDecode, no
re-encoding); everything else is decoded to RGB (plus an alpha soft mask) and Flate-compressed.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zlib
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pdfsign.errors import TemplateError

__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIDE", "PdfImage", "decode_image"]

#: The largest image file accepted (decoded from base64).
MAX_IMAGE_BYTES = 2 * 1024 * 1024
#: The largest width or height, and the largest width x height, in pixels.
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = 8_000_000

_DATA_URL = re.compile(r"^data:image/(png|jpeg|jpg);base64,", re.IGNORECASE)


@dataclass(frozen=True)
class PdfImage:
    """An image ready to embed: pixel size, colour space, filter, encoded samples and an
    optional alpha mask (8-bit grey, Flate)."""

    width: int
    height: int
    color_space: str  # /DeviceRGB or /DeviceGray
    filter: str  # /DCTDecode or /FlateDecode
    data: bytes
    alpha: bytes | None = None


def _raw(value: object, where: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise TemplateError(f"{where}: expected a base64 PNG or JPEG image, got "
                            f"{type(value).__name__}", where)
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 64:
        raise TemplateError(f"{where}: the image is larger than {MAX_IMAGE_BYTES} bytes", where)
    text = _DATA_URL.sub("", value.strip())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TemplateError(f"{where}: not valid base64 ({exc})", where) from exc


def decode_image(value: object, where: str) -> PdfImage:
    """Check ``value`` (base64 text, optionally a ``data:image/...;base64,`` URL, or bytes) and
    make it embeddable; raise :class:`TemplateError` naming ``where``."""
    data = _raw(value, where)
    if len(data) > MAX_IMAGE_BYTES:
        raise TemplateError(f"{where}: the image is larger than {MAX_IMAGE_BYTES} bytes", where)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            width, height = image.size
            if (width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE
                    or width * height > MAX_IMAGE_PIXELS):
                raise TemplateError(f"{where}: {width}x{height} pixels is too large (at most "
                                    f"{MAX_IMAGE_SIDE} a side, {MAX_IMAGE_PIXELS} in all)", where)
            if width < 1 or height < 1:
                raise TemplateError(f"{where}: an empty image", where)
            image.load()
            return _embeddable(image, data)
    except TemplateError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        raise TemplateError(f"{where}: not a readable PNG or JPEG image ({exc})", where) from exc


def _embeddable(image: Image.Image, data: bytes) -> PdfImage:
    width, height = image.size
    if image.format == "JPEG" and image.mode in ("L", "RGB"):
        space = "/DeviceGray" if image.mode == "L" else "/DeviceRGB"
        return PdfImage(width, height, space, "/DCTDecode", data)
    alpha = None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                            and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = zlib.compress(rgba.getchannel("A").tobytes(), 6)
        rgb = rgba.convert("RGB")
    elif image.mode in ("L", "1", "I;16", "I"):
        grey = image.convert("L")
        return PdfImage(width, height, "/DeviceGray", "/FlateDecode",
                        zlib.compress(grey.tobytes(), 6))
    else:
        rgb = image.convert("RGB")
    return PdfImage(width, height, "/DeviceRGB", "/FlateDecode",
                    zlib.compress(rgb.tobytes(), 6), alpha)
