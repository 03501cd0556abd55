"""pdfsign's exceptions: one base class, so that the API layer maps every one to a 4xx."""

from __future__ import annotations

__all__ = [
    "EncryptedPdf",
    "FontNotFound",
    "InvalidPdf",
    "PdfSignError",
    "SigningFailed",
    "TemplateError",
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


class TemplateError(PdfSignError, ValueError):
    """A form template's layout spec is invalid, or values given to render it do not match its
    fields (wrong type, missing, too long, bad date, not one of the options...).  The message
    names the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        #: The field (or spec key) the error is about, when there is one.
        self.field = field


class FontNotFound(RuntimeError):
    """No usable CJK font is installed: a deployment problem (a 5xx), not bad input, hence not
    a :class:`PdfSignError`."""
