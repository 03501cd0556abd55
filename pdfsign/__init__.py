"""PAdES signing and validation of PDFs with SM2 and RSA keys, through pyHanko.

See ``pdfsign/README.md`` for what works and what is missing.  Layer (DESIGN section 2):
pdfsign imports signcore only.
"""

from __future__ import annotations

from typing import Any

from pdfsign.errors import (
    EncryptedPdf,
    FontNotFound,
    InvalidPdf,
    PdfSignError,
    SigningFailed,
    TemplateError,
    TimestampFailed,
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
from pdfsign.validate import SignatureReport, validate_pdf

__all__ = [
    "MDP",
    "Appearance",
    "CallableTimeStamper",
    "EncryptedPdf",
    "FontNotFound",
    "InvalidPdf",
    "Level",
    "PdfSignError",
    "PreparedPdf",
    "SignatureReport",
    "SignatureSlot",
    "SigncoreSigner",
    "SigningFailed",
    "Slot",
    "Template",
    "TemplateError",
    "TimestampFailed",
    "make_timestamper",
    "open_pdf",
    "prepare_pdf",
    "sign_pdf",
    "validate_pdf",
]


def __getattr__(name: str) -> Any:
    """``Template`` and ``SignatureSlot`` load fontTools and HarfBuzz: only when asked for,
    so signing and validating processes stay small."""
    if name in ("Template", "SignatureSlot"):
        from pdfsign import templates  # noqa: PLC0415

        return getattr(templates, name)
    raise AttributeError(f"module 'pdfsign' has no attribute {name!r}")
