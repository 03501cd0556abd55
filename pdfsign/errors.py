"""pdfsign's exceptions: one base class, so that the API layer maps every one to a 4xx."""

from __future__ import annotations

__all__ = [
    "EncryptedPdf",
    "InvalidPdf",
    "PdfSignError",
    "SigningFailed",
    "TimestampFailed",
]


class PdfSignError(Exception):
    """Base class of every error pdfsign raises on purpose."""


class InvalidPdf(PdfSignError, ValueError):
    """The input is not a PDF pdfsign can read (not a PDF at all, truncated, corrupt xref...)."""


class EncryptedPdf(InvalidPdf):
    """The PDF is encrypted: pdfsign neither decrypts nor signs encrypted documents."""


class SigningFailed(PdfSignError):
    """The document could not be signed (a bad key/certificate pair, a wrong signature value
    given to :meth:`pdfsign.PreparedPdf.finish`, a field that cannot be used...)."""


class TimestampFailed(SigningFailed):
    """The time-stamping authority did not answer with a usable token (B-T)."""
