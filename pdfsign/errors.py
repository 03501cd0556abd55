"""pdfsign's exceptions: one base class, so that the API layer maps every one to a 4xx."""

from __future__ import annotations

__all__ = [
    "EncryptedPdf",
    "FontNotFound",
    "InvalidAppearance",
    "InvalidPdf",
    "PdfSignError",
    "SigningFailed",
    "TemplateError",
    "TimestampFailed",
    "ValidationDataMissing",
]


class PdfSignError(Exception):
    """Base class of every error pdfsign raises on purpose."""


class InvalidPdf(PdfSignError, ValueError):
    """The input is not a PDF pdfsign can read (not a PDF at all, truncated, corrupt xref...)."""


class InvalidAppearance(PdfSignError, ValueError):
    """A signature appearance cannot be drawn: an image that is not a readable PNG/JPEG or is
    too big, handwriting strokes out of range, too many or too long text lines."""


class EncryptedPdf(InvalidPdf):
    """The PDF is encrypted: pdfsign neither decrypts nor signs encrypted documents."""


class SigningFailed(PdfSignError):
    """The document could not be signed (a bad key/certificate pair, a wrong signature value
    given to :meth:`pdfsign.PreparedPdf.finish`, a field that cannot be used...)."""


class TimestampFailed(SigningFailed):
    """The time-stamping authority did not answer with a usable token (B-T)."""


class ValidationDataMissing(SigningFailed):
    """B-LT/B-LTA: a certificate of the signer's or a TSA's chain has no usable revocation
    data (or is revoked, or the chain does not reach the trust roots), so the document cannot
    be made long-term verifiable.  The message names the certificate."""


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
