"""PAdES signing and validation of PDFs with SM2 and RSA keys, through pyHanko.

See ``pdfsign/README.md`` for what works and what is missing.  Layer (DESIGN section 2):
pdfsign imports signcore only.
"""

from __future__ import annotations

from pdfsign.errors import EncryptedPdf, InvalidPdf, PdfSignError, SigningFailed, TimestampFailed
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
    "InvalidPdf",
    "Level",
    "PdfSignError",
    "PreparedPdf",
    "SignatureReport",
    "SigncoreSigner",
    "SigningFailed",
    "Slot",
    "TimestampFailed",
    "make_timestamper",
    "open_pdf",
    "prepare_pdf",
    "sign_pdf",
    "validate_pdf",
]
