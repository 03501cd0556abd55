"""Validate every signature of a PDF (SM2 and RSA) with pyHanko and the SM2-aware validator.

Per signature (:class:`SignatureReport`): integrity (the ``/ByteRange`` digest equals the
message-digest attribute), the cryptographic signature, the signer certificate, whether a chain
to one of the caller's roots exists (with the intermediates given, embedded or in the DSS),
coverage (the whole file, or its revision with later incremental updates), the modification
level of those updates and whether the DocMDP/FieldMDP locks allow them, the signature
timestamp (B-T), revocation and the PAdES level reached.

Times: a signature with a good signature timestamp is validated as of the timestamp's time
(the signer's certificate may have expired since); without one, as of ``moment`` (default:
now).  A signature timestamp's TSA chain is validated as of the earliest good document
timestamp that covers the signature (B-LTA), else as of ``moment``.  Document timestamps form
a chain (:func:`validate_document_timestamps`): each is validated as of the time of the next
good one, the last as of ``moment``.

Revocation: every certificate of the signer's and the signature TSA's chains (below the trust
root) is checked in hard-fail mode as of the signing time, with the revocation data in the
document's DSS and, when the caller gives a ``revocation`` fetcher, what it answers
(``revocation``: ``good``, ``revoked``, ``unknown`` -- some certificate lacks usable data --
or ``not-checked`` when neither source has any data).  A document validates offline when its
own DSS is complete: that is what level ``B-LT`` means here (B-T plus complete, good
revocation data in the DSS); ``B-LTA`` adds a good document timestamp over it.

Threat model: the PDF and everything embedded in it (certificates, timestamp tokens, DSS
contents) is attacker-controlled; only ``trust_roots`` are trusted.  Revocation data is used
only after its signature is checked (pyhanko-certvalidator).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import RevokedError

from pdfsign.appearance import strokes_digest_of
from pdfsign.errors import InvalidPdf, ValidationDataMissing
from pdfsign.ltv import (
    RevocationFetcher,
    RevocationInfo,
    ValidationData,
    collect_revocation,
    document_validation_data,
    signature_certificates,
    signature_paths,
    validation_context,
)
from pdfsign.sign import open_pdf
from signcore.x509 import Certificate, format_name

__all__ = ["DocumentTimestampReport", "SignatureReport", "validate_document_timestamps",
           "validate_pdf"]

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
    level: str  # B-B, B-T, B-LT or B-LTA
    revocation_checked: bool  # revocation of both chains was determined (good or revoked)
    problems: tuple[str, ...]
    revocation: str = "not-checked"  # good, revoked, unknown, not-checked
    archive_timestamp: dt.datetime | None = None  # earliest good document timestamp after it
    # handwriting strokes' SM3 digest from the signed attributes (pdfsign/appearance.py)
    strokes_digest: bytes | None = None

    @property
    def ok(self) -> bool:
        """Everything holds: intact, valid, trusted, modifications allowed, timestamp good,
        nothing revoked."""
        return (self.intact and self.valid and self.trusted
                and self.modifications_allowed is not False and self.timestamp_ok is not False
                and self.revocation != "revoked" and not self.problems)

    @property
    def covers_entire_file(self) -> bool:
        return self.coverage == "entire-file"


@dataclass(frozen=True)
class DocumentTimestampReport:
    """One document timestamp (``/DocTimeStamp``, B-LTA / archive timestamps)."""

    field: str
    time: dt.datetime | None
    tsa: str
    intact: bool
    valid: bool
    trusted: bool
    coverage: str
    checked_at: dt.datetime  # the time its TSA chain was validated as of
    problems: tuple[str, ...]
    revocation: str = "not-checked"  # of the TSA's chain, from the DSS: good, revoked, ...

    @property
    def ok(self) -> bool:
        return (self.intact and self.valid and self.trusted and self.revocation != "revoked"
                and not self.problems)


def _nothing(_cert: Certificate, _issuer: Certificate) -> RevocationInfo:
    """The revocation source of a validation without one: no fetching by URL either."""
    return RevocationInfo()


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


def _claimed_gen_time(signed_data: asn1_cms.SignedData) -> dt.datetime | None:
    """genTime as a token claims it (trusted only once the token validated)."""
    try:
        info = signed_data["encap_content_info"]["content"].parsed
        value = info["gen_time"].native
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, dt.datetime) else None


def _signature_ts_time(embedded: EmbeddedPdfSignature) -> dt.datetime | None:
    for tst in extract_tst_data_iter(embedded.signer_info, signed=False):
        return _claimed_gen_time(tst)
    return None


@dataclass
class _Document:
    """What every signature's validation shares: the reader, the DSS and the caller's data."""

    reader: PdfFileReader
    trust_roots: Sequence[Certificate]
    intermediates: list[asn1_x509.Certificate]
    dss: RevocationInfo
    fetcher: RevocationFetcher | None
    moment: dt.datetime | None

    @classmethod
    def load(cls, data: bytes, trust_roots: Sequence[Certificate],
             intermediates: Sequence[Certificate], fetcher: RevocationFetcher | None,
             moment: dt.datetime | None) -> _Document:
        reader = open_pdf(data)
        try:
            dss_certs, dss = document_validation_data(reader)
        except (PdfError, ValueError, KeyError, TypeError) as exc:
            raise InvalidPdf(f"unreadable document security store: {exc}") from exc
        return cls(reader, trust_roots, [*(c.asn1 for c in intermediates), *dss_certs], dss,
                   fetcher, moment)

    def context(self, moment: dt.datetime | None) -> ValidationContext:
        """Path validation as of ``moment`` without revocation data: revocation is checked
        separately (:func:`_revocation`), as of the right time and with retroactive data
        (pyHanko's soft-fail mode still refuses data that is stale for ``moment``)."""
        data = ValidationData(self.trust_roots, fetcher=_nothing)
        return validation_context(data, self.intermediates, RevocationInfo(), hard=False,
                        moment=moment or self.moment)

    def data(self, with_fetcher: bool) -> ValidationData:
        fetcher = self.fetcher if with_fetcher and self.fetcher is not None else _nothing
        return ValidationData(self.trust_roots, fetcher=fetcher, revocation=self.dss)


async def _revocation(doc: _Document, embedded: EmbeddedPdfSignature,
                      at: dt.datetime | None, with_fetcher: bool) -> str:
    """good / revoked / unknown / not-checked for both chains of ``embedded`` as of ``at``."""
    source = doc.data(with_fetcher)
    try:
        certs = signature_certificates(embedded)
        revocation = collect_revocation(source, certs)
        if not revocation.ocsp_responses and not revocation.crls:
            return "not-checked"
        context = validation_context(source, [*doc.intermediates, *certs], revocation,
                                     moment=at or doc.moment)
        await signature_paths(embedded, context)
    except ValidationDataMissing as exc:
        cause = exc.__cause__
        if isinstance(cause, RevokedError):
            return "revoked"
        return "unknown"  # InsufficientRevinfoError, or no path at all (reported as trust)
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError):
        return "unknown"  # data pyhanko-certvalidator could not use
    return "good"


async def _timestamp_reports(doc: _Document, embedded: list[EmbeddedPdfSignature],
                             ) -> list[tuple[DocumentTimestampReport, int]]:
    """Every document timestamp, each validated as of the next good one (the last: now)."""
    stamps = sorted(embedded, key=lambda s: int(s.signed_revision))
    reports: list[tuple[DocumentTimestampReport, int]] = []
    at: dt.datetime | None = None
    for stamp in reversed(stamps):
        report = await _timestamp_report(doc, stamp, at)
        reports.append((report, int(stamp.signed_revision)))
        at = report.time if report.ok else None
    reports.reverse()
    return reports


async def _timestamp_report(doc: _Document, stamp: EmbeddedPdfSignature,
                            at: dt.datetime | None) -> DocumentTimestampReport:
    field = str(stamp.field_name)
    checked_at = at or doc.moment or dt.datetime.now(dt.UTC)
    try:
        status = await async_validate_pdf_timestamp(stamp, validation_context=doc.context(at))
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return DocumentTimestampReport(field, None, "", False, False, False, "unclear",
                                       checked_at, (f"cannot validate: {exc}",))
    problems = []
    if not (status.intact and status.valid):
        problems.append("the document timestamp does not verify")
    if not status.trusted:
        problems.append(f"TSA certificate: {status.trust_problem_indic}")
    revocation = await _revocation(doc, stamp, checked_at, with_fetcher=False)
    if revocation == "revoked":
        problems.append("the TSA's certificate chain is revoked")
    cert = status.signing_cert
    return DocumentTimestampReport(
        field=field, time=status.timestamp,
        tsa=format_name(cert.subject) if cert is not None else "",
        intact=bool(status.intact), valid=bool(status.valid), trusted=bool(status.trusted),
        coverage=_name(status.coverage), checked_at=checked_at, problems=tuple(problems),
        revocation=revocation)


async def _validate_signature(doc: _Document, embedded: EmbeddedPdfSignature,
                              archive_time: dt.datetime | None) -> SignatureReport:
    field = str(embedded.field_name)
    claimed = _signature_ts_time(embedded)
    try:
        status = await async_validate_pdf_signature(
            embedded, signer_validation_context=doc.context(claimed),
            ts_validation_context=doc.context(archive_time))
        ts = status.timestamp_validity
        if claimed is not None and not (ts is not None and ts.intact and ts.valid
                                        and ts.trusted):
            # The timestamp does not prove the time: the signer is checked as of now.
            claimed = None
            status = await async_validate_pdf_signature(
                embedded, signer_validation_context=doc.context(None),
                ts_validation_context=doc.context(archive_time))
    except (SignatureValidationError, PdfError, ValueError, KeyError, TypeError) as exc:
        return _failed(field, f"cannot validate: {exc}")
    report = _report(field, status, [])
    report = replace(report, strokes_digest=strokes_digest_of(embedded.signer_info))
    docmdp = embedded.docmdp_level
    if docmdp is not None:
        report = replace(report, certification=int(docmdp.value))
    return await _with_revocation(doc, embedded, report, claimed, archive_time)


async def _with_revocation(doc: _Document, embedded: EmbeddedPdfSignature,
                           report: SignatureReport, at: dt.datetime | None,
                           archive_time: dt.datetime | None) -> SignatureReport:
    from_document = await _revocation(doc, embedded, at, with_fetcher=False)
    revocation = from_document
    if from_document in ("unknown", "not-checked") and doc.fetcher is not None:
        revocation = await _revocation(doc, embedded, at, with_fetcher=True)
    problems = list(report.problems)
    if revocation == "revoked":
        problems.append("a certificate of the signer's or the TSA's chain is revoked")
    level = report.level
    if level == "B-T" and report.timestamp_ok and from_document == "good":
        level = "B-LTA" if archive_time is not None else "B-LT"
    return replace(report, revocation=revocation, level=level, problems=tuple(problems),
                   revocation_checked=revocation in ("good", "revoked"),
                   archive_timestamp=archive_time)


def _embedded(reader: PdfFileReader, *, stamps: bool = False) -> list[EmbeddedPdfSignature]:
    """The document's signatures (or, with ``stamps``, its document timestamps), bounded."""
    what = "document timestamps" if stamps else "signatures"
    try:
        found = list(reader.embedded_timestamp_signatures if stamps
                     else reader.embedded_regular_signatures)
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        raise InvalidPdf(f"unreadable {what}: {exc}") from exc
    if len(found) > MAX_SIGNATURES:
        raise InvalidPdf(f"more than {MAX_SIGNATURES} {what}")
    return found


def validate_pdf(
    data: bytes,
    trust_roots: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    *,
    moment: dt.datetime | None = None,
    revocation: RevocationFetcher | None = None,
) -> list[SignatureReport]:
    """Validate every signature of ``data`` (in document order); an unsigned PDF gives ``[]``.

    ``revocation``: the caller's revocation source, asked when the document's own DSS does
    not settle a certificate's status (see the module docstring).  Raises
    :class:`~pdfsign.errors.InvalidPdf` (or ``EncryptedPdf``) when ``data`` is not a readable
    PDF; a signature that cannot be parsed is reported as failed, not raised.
    """
    doc = _Document.load(data, trust_roots, intermediates, revocation, moment)
    signatures = _embedded(doc.reader)
    embedded_stamps = _embedded(doc.reader, stamps=True)

    async def run() -> list[SignatureReport]:
        stamps = await _timestamp_reports(doc, embedded_stamps)
        reports = []
        for sig in signatures:
            revision = int(sig.signed_revision)
            later = [r.time for r, rev in stamps if rev > revision and r.ok and r.time]
            reports.append(await _validate_signature(doc, sig, min(later) if later else None))
        return reports

    return asyncio.run(run())


def validate_document_timestamps(
    data: bytes,
    trust_roots: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    *,
    moment: dt.datetime | None = None,
) -> list[DocumentTimestampReport]:
    """Every document timestamp of ``data`` (oldest first), validated along the chain (each as
    of the next good one's time, the last as of ``moment``, default now)."""
    doc = _Document.load(data, trust_roots, intermediates, None, moment)
    embedded_stamps = _embedded(doc.reader, stamps=True)

    async def run() -> list[DocumentTimestampReport]:
        return [report for report, _rev in await _timestamp_reports(doc, embedded_stamps)]

    return asyncio.run(run())
