"""PAdES signing and validation of PDFs with SM2 and RSA keys, through pyHanko.

See ``pdfsign/README.md`` for what works and what is missing.  Layer (DESIGN section 2):
pdfsign imports signcore only.
"""

from __future__ import annotations

from typing import Any

# Appearances and the strokes digest (pdfsign/appearance.py)
from pdfsign.appearance import (
    STROKES_DIGEST_OID,
    SignatureSlotInfo,
    Strokes,
    empty_signature_fields,
    load_image,
    render_strokes_png,
    signature_order,
    signature_slots,
)
from pdfsign.errors import (
    EncryptedPdf,
    FontNotFound,
    InvalidAppearance,
    InvalidPdf,
    PdfSignError,
    SigningFailed,
    TemplateError,
    TimestampFailed,
    ValidationDataMissing,
)

# B-LT / B-LTA: validation data, document and archive timestamps (pdfsign/ltv.py)
from pdfsign.ltv import (
    RevocationFetcher,
    RevocationInfo,
    ValidationData,
    add_archive_timestamp,
    extend_pdf,
)
from pdfsign.sign import (
    MDP,
    Appearance,
    Level,
    PreparedPdf,
    Slot,
    open_pdf,
    prepare_pdf,
    sign_pdf,
)
from pdfsign.signer import CallableTimeStamper, SigncoreSigner, make_timestamper
from pdfsign.validate import (
    DocumentTimestampReport,
    SignatureReport,
    validate_document_timestamps,
    validate_pdf,
)

__all__ = [
    "MDP",
    "STROKES_DIGEST_OID",
    "AcroFormTemplate",
    "Appearance",
    "CallableTimeStamper",
    "DocumentTimestampReport",
    "EncryptedPdf",
    "FontNotFound",
    "FormField",
    "InvalidAppearance",
    "InvalidPdf",
    "Level",
    "PdfSignError",
    "PreparedPdf",
    "RevocationFetcher",
    "RevocationInfo",
    "SignatureReport",
    "SignatureSlot",
    "SignatureSlotInfo",
    "SigncoreSigner",
    "SigningFailed",
    "Slot",
    "Strokes",
    "Template",
    "TemplateError",
    "TimestampFailed",
    "ValidationData",
    "ValidationDataMissing",
    "add_archive_timestamp",
    "empty_signature_fields",
    "extend_pdf",
    "load_image",
    "make_timestamper",
    "open_pdf",
    "prepare_pdf",
    "render_strokes_png",
    "sign_pdf",
    "signature_order",
    "signature_slots",
    "validate_document_timestamps",
    "validate_pdf",
]


def __getattr__(name: str) -> Any:
    """``Template``, ``SignatureSlot``, ``AcroFormTemplate`` and ``FormField`` load fontTools
    and Pillow: only when asked for, so signing and validating processes stay small."""
    if name in ("Template", "SignatureSlot"):
        from pdfsign import templates  # noqa: PLC0415

        return getattr(templates, name)
    # --- AcroForm templates (pdfsign/acroform.py), loaded lazily like Template
    if name in ("AcroFormTemplate", "FormField"):
        from pdfsign import acroform  # noqa: PLC0415

        return getattr(acroform, name)
    # --- end AcroForm templates
    raise AttributeError(f"module 'pdfsign' has no attribute {name!r}")
