"""Validate every signature of a PDF (SM2 and RSA) with pyHanko and the SM2-aware validator.

Per signature (:class:`SignatureReport`): integrity (the ``/ByteRange`` digest equals the
message-digest attribute), the cryptographic signature, the signer certificate, whether a chain
to one of the caller's roots exists (with the intermediates given or embedded), coverage (the
whole file, or its revision with later incremental updates), the modification level of those
updates and whether the DocMDP/FieldMDP locks allow them, and the signature timestamp (B-T).

Threat model: the PDF and everything embedded in it (certificates, timestamp tokens) is
attacker-controlled; only ``trust_roots`` are trusted.  Revocation is not checked yet (no CRL or
OCSP fetching: the report says ``revocation_checked=False``); B-LT data in the DSS is not used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from pdfsign.errors import InvalidPdf
from pdfsign.sign import open_pdf
from signcore.certvalidator import SM2_SIGNATURE_VALIDATOR
from signcore.x509 import Certificate, format_name

__all__ = ["SignatureReport", "validate_pdf"]

#: Signatures looked at in one document (a hospital document has a handful).
MAX_SIGNATURES = 64


@dataclass(frozen=True)
class SignatureReport:
    """The validation result of one signature (see the module docstring)."""

    field: str
    signer: str  # subject DN of the signer certificate ("" when none was found)
    certificate: bytes | None  # DER
    algorithm: str  # signature mechanism, as asn1crypto names it (sm2sign_with_sm3, ...)
    digest_algorithm: str
    intact: bool  # the document digest matches the signed message digest
    valid: bool  # the signature over the signed attributes verifies
    trusted: bool  # a valid chain to a trust root (and acceptable key usage)
    coverage: str  # entire-file, entire-revision, contiguous-block-from-start, unclear
    modification_level: str | None  # none, lta-updates, form-filling, annotations, other
    modifications_allowed: bool | None  # DocMDP/FieldMDP accept the later updates
    certification: int | None  # DocMDP permission when this is a certifying signature
    signing_time: dt.datetime | None  # as the signer claims it (/M)
    timestamp: dt.datetime | None  # genTime of the signature timestamp (B-T)
    timestamp_ok: bool | None  # the timestamp token is intact, valid and trusted
    level: str  # B-B or B-T
    revocation_checked: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Everything holds: intact, valid, trusted, modifications allowed, timestamp good."""
        return (self.intact and self.valid and self.trusted
                and self.modifications_allowed is not False and self.timestamp_ok is not False
                and not self.problems)

    @property
    def covers_entire_file(self) -> bool:
        return self.coverage == "entire-file"


def _context(trust_roots: Sequence[Certificate], intermediates: Sequence[Certificate],
             moment: dt.datetime | None) -> ValidationContext:
    return ValidationContext(
        trust_roots=[c.asn1 for c in trust_roots],
        other_certs=[c.asn1 for c in intermediates],
        allow_fetching=False, revocation_mode="soft-fail",
        signature_validator=SM2_SIGNATURE_VALIDATOR, moment=moment)


def _name(value: Any) -> str:
    return str(value.name.lower().replace("_", "-")) if value is not None else "unclear"


def _report(field: str, status: PdfSignatureStatus, problems: list[str]) -> SignatureReport:
    cert = status.signing_cert
    ts = status.timestamp_validity
    level = status.modification_level
    if not status.intact:
        problems.append("the document digest does not match the signed digest")
    if not status.valid:
        problems.append("the signature does not verify")
    if status.trust_problem_indic is not None:
        problems.append(f"certificate: {status.trust_problem_indic}")
    if status.docmdp_ok is False:
        problems.append("modifications after signing are not allowed by the signature's locks")
    if ts is not None and not (ts.intact and ts.valid and ts.trusted):
        problems.append("the signature timestamp is not valid or not trusted")
    return SignatureReport(
        field=field,
        signer=format_name(cert.subject) if cert is not None else "",
        certificate=bytes(cert.dump()) if cert is not None else None,
        algorithm=str(status.pkcs7_signature_mechanism),
        digest_algorithm=str(status.md_algorithm),
        intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        coverage=_name(status.coverage),
        modification_level=_name(level) if level is not None else None,
        modifications_allowed=status.docmdp_ok,
        certification=None,
        signing_time=status.signer_reported_dt,
        timestamp=ts.timestamp if ts is not None else None,
        timestamp_ok=(bool(ts.intact and ts.valid and ts.trusted) if ts is not None else None),
        level="B-T" if ts is not None else "B-B",
        revocation_checked=False,
        problems=tuple(problems),
    )


def _failed(field: str, message: str) -> SignatureReport:
    return SignatureReport(
        field=field, signer="", certificate=None, algorithm="", digest_algorithm="",
        intact=False, valid=False, trusted=False, coverage="unclear", modification_level=None,
        modifications_allowed=None, certification=None, signing_time=None, timestamp=None,
        timestamp_ok=None, level="B-B", revocation_checked=False, problems=(message,))


def validate_pdf(
    data: bytes,
    trust_roots: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    *,
    moment: dt.datetime | None = None,
) -> list[SignatureReport]:
    """Validate every signature of ``data`` (in document order); an unsigned PDF gives ``[]``.

    Raises :class:`~pdfsign.errors.InvalidPdf` (or ``EncryptedPdf``) when ``data`` is not a
    readable PDF; a signature that cannot be parsed is reported as failed, not raised.
    """
    reader = open_pdf(data)
    try:
        signatures = list(reader.embedded_regular_signatures)
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidPdf(f"unreadable signature fields: {exc}") from exc
    if len(signatures) > MAX_SIGNATURES:
        raise InvalidPdf(f"more than {MAX_SIGNATURES} signatures")

    async def run() -> list[SignatureReport]:
        reports = []
        for sig in signatures:
            field = str(sig.field_name)
            try:
                status = await async_validate_pdf_signature(
                    sig, signer_validation_context=_context(trust_roots, intermediates, moment),
                    ts_validation_context=_context(trust_roots, intermediates, moment))
            except (SignatureValidationError, PdfError, ValueError, KeyError,
                    TypeError) as exc:
                reports.append(_failed(field, f"cannot validate: {exc}"))
                continue
            report = _report(field, status, [])
            docmdp = sig.docmdp_level
            if docmdp is not None:
                report = _with_certification(report, int(docmdp.value))
            reports.append(report)
        return reports

    return asyncio.run(run())


def _with_certification(report: SignatureReport, level: int) -> SignatureReport:
    return replace(report, certification=level)
