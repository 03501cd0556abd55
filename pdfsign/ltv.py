"""PAdES B-LT and B-LTA: validation data in the DSS, document timestamps, archive re-timestamps.

- **B-LT** (:func:`extend_pdf` with ``Level.B_LT``): after a B-T signature, an incremental
  update adds a Document Security Store (ISO 32000-2 12.8.4.3) with the certificates of the
  signer's and of the signature TSA's chains and revocation data (OCSP responses and/or CRLs)
  for every certificate of both chains below the trust roots, plus a ``/VRI`` entry for the
  signature.  The data is checked (pyHanko validates both chains in hard-fail mode with it)
  before it is written: a certificate without usable revocation data, or a revoked one, fails
  the upgrade (:class:`~pdfsign.errors.ValidationDataMissing`).
- **B-LTA** (``Level.B_LTA``): B-LT plus a document timestamp (``/DocTimeStamp``,
  ``ETSI.RFC3161``, pyHanko's ``PdfTimeStamper``) over the whole file, DSS included.
- :func:`add_archive_timestamp`: refresh the DSS with the revocation data of the chain of the
  latest document timestamp's TSA (and of anything else not yet covered), then add a new
  document timestamp: what an archive worker runs before the latest TSA certificate expires
  or its algorithms weaken (DESIGN section 7).

Where revocation data comes from (:class:`ValidationData`): a :data:`RevocationFetcher` the
caller provides (the appliance answers for its built-in CA from its own OCSP responder, without
HTTP, and from its revocation cache for others; tests answer from the test PKI), data given
up front, or, with neither, pyHanko's normal fetching from the URLs the certificates name
(AIA OCSP, CRL distribution points).

Threat model: the input PDF is the caller's own output (signed a moment ago, or archived by
the appliance); everything embedded in it is still checked against the caller's trust roots
before any validation data is added, so a substituted chain fails rather than being made
"long-term".  Revocation data is only trusted after pyHanko checked its signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asn1crypto import cms as asn1_cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import SigningError, extract_certificate_info
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation import DocumentSecurityStore
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError

from pdfsign.errors import SigningFailed, TimestampFailed, ValidationDataMissing
from pdfsign.signer import TimestampSource, make_timestamper
from signcore.certvalidator import SM2_SIGNATURE_VALIDATOR
from signcore.errors import SigncoreError
from signcore.x509 import Certificate

if TYPE_CHECKING:
    from pdfsign.sign import Level  # sign imports this module: only for the annotations

__all__ = [
    "RevocationFetcher",
    "RevocationInfo",
    "ValidationData",
    "add_archive_timestamp",
    "chain_certificates",
    "collect_revocation",
    "document_validation_data",
    "extend_pdf",
    "signature_certificates",
    "signature_paths",
    "validation_context",
]

#: Document timestamps pdfsign adds get this field name prefix (then a sequence number).
ARCHIVE_FIELD_PREFIX = "ArchiveTimestamp"


@dataclass(frozen=True)
class RevocationInfo:
    """Revocation data about one certificate: DER OCSP responses and/or DER CRLs."""

    ocsp_responses: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


#: ``(certificate, issuer) -> RevocationInfo``: the revocation data the caller has for
#: ``certificate`` (issued by ``issuer``).  Raise or return an empty RevocationInfo when there
#: is none; pdfsign then reports the certificate as lacking revocation data.
RevocationFetcher = Callable[[Certificate, Certificate], RevocationInfo]


@dataclass(frozen=True)
class ValidationData:
    """What B-LT validation data is built from: the trust roots the chains must lead to,
    intermediates the PDF may not carry, and the revocation source: ``fetcher`` (called for
    every non-root certificate of the chains), and/or data given up front; with no fetcher,
    pyHanko fetches by the URLs in the certificates (``allow_fetching``)."""

    trust_roots: Sequence[Certificate]
    intermediates: Sequence[Certificate] = ()
    fetcher: RevocationFetcher | None = None
    revocation: RevocationInfo = field(default_factory=RevocationInfo)

    @property
    def fetches_by_url(self) -> bool:
        return self.fetcher is None


def _signed_data_certs(signed_data: asn1_cms.SignedData) -> list[asn1_x509.Certificate]:
    info = extract_certificate_info(signed_data)
    return [info.signer_cert, *info.other_certs]


def signature_certificates(embedded: EmbeddedPdfSignature) -> list[asn1_x509.Certificate]:
    """The certificates a signature carries: its CMS and its signature timestamp tokens."""
    certs = _signed_data_certs(embedded.signed_data)
    if embedded.sig_object_type == "/Sig":
        for signed in (False, True):
            for tst in extract_tst_data_iter(embedded.signer_info, signed=signed):
                certs.extend(_signed_data_certs(tst))
    return certs


def _issuer_of(cert: Certificate, pool: Sequence[Certificate]) -> Certificate | None:
    for candidate in pool:
        if candidate.subject_name == cert.issuer_name and candidate != cert:
            try:
                cert.verify_signature(candidate.public_key())
            except (SigncoreError, ValueError):  # the next candidate may be it
                continue
            return candidate
    return None


def chain_certificates(leaves: Iterable[Certificate], pool: Sequence[Certificate]
                       ) -> list[tuple[Certificate, Certificate]]:
    """Every (certificate, issuer) pair on the chains from ``leaves`` up through ``pool`` to
    a self-issued certificate (which needs no revocation data), without duplicates."""
    pairs: list[tuple[Certificate, Certificate]] = []
    seen: set[Certificate] = set()
    todo = list(leaves)
    while todo:
        cert = todo.pop()
        if cert in seen or cert.is_self_issued:
            continue
        seen.add(cert)
        issuer = _issuer_of(cert, pool)
        if issuer is not None:
            pairs.append((cert, issuer))
            todo.append(issuer)
    return pairs


def collect_revocation(data: ValidationData,
                       certs: Sequence[asn1_x509.Certificate]) -> RevocationInfo:
    """The fetcher's answers for every certificate of the chains of ``certs``."""
    if data.fetcher is None:
        return data.revocation
    wrapped = [Certificate(c) for c in certs]
    pool = [*wrapped, *data.intermediates, *data.trust_roots]
    ocsps, crls = list(data.revocation.ocsp_responses), list(data.revocation.crls)
    for cert, issuer in chain_certificates(wrapped, pool):
        try:
            found = data.fetcher(cert, issuer)
        except Exception:  # noqa: S112  (the caller's source failed: the chain check says which)
            continue
        ocsps.extend(found.ocsp_responses)
        crls.extend(found.crls)
    return RevocationInfo(tuple(dict.fromkeys(ocsps)), tuple(dict.fromkeys(crls)))


def validation_context(data: ValidationData, extra: Sequence[asn1_x509.Certificate],
                       revocation: RevocationInfo, *, hard: bool = True,
                       moment: dt.datetime | None = None) -> ValidationContext:
    """Hard-fail (every certificate needs good revocation data) unless ``hard`` is False;
    revocation data issued after ``moment`` counts (it is usually fetched after signing)."""
    return ValidationContext(
        trust_roots=[c.asn1 for c in data.trust_roots],
        other_certs=[*(c.asn1 for c in data.intermediates), *extra],
        allow_fetching=data.fetches_by_url, moment=moment,
        ocsps=[asn1_ocsp.OCSPResponse.load(der) for der in revocation.ocsp_responses],
        crls=[asn1_crl.CertificateList.load(der) for der in revocation.crls],
        revocation_mode="hard-fail" if hard else "soft-fail",
        retroactive_revinfo=True,
        signature_validator=SM2_SIGNATURE_VALIDATOR)


async def _validate_chain(cert: asn1_x509.Certificate, others: Sequence[asn1_x509.Certificate],
                          context: ValidationContext) -> list[object]:
    validator = CertificateValidator(cert, intermediate_certs=list(others),
                                     validation_context=context)
    try:
        path = await validator.async_validate_usage(key_usage=set())  # type: ignore[no-untyped-call]
    except (PathBuildingError, PathValidationError, ValidationError) as exc:
        subject = cert.subject.human_friendly
        raise ValidationDataMissing(f"no complete, good validation data for {subject}: "
                                    f"{exc}") from exc
    return [path]


async def _signed_data_paths(signed_data: asn1_cms.SignedData,
                             context: ValidationContext) -> list[object]:
    info = extract_certificate_info(signed_data)
    return await _validate_chain(info.signer_cert, info.other_certs, context)


async def signature_paths(embedded: EmbeddedPdfSignature,
                           context: ValidationContext) -> list[object]:
    paths = await _signed_data_paths(embedded.signed_data, context)
    if embedded.sig_object_type == "/Sig":
        for signed in (False, True):
            for tst in extract_tst_data_iter(embedded.signer_info, signed=signed):
                paths.extend(await _signed_data_paths(tst, context))
    return paths


def _reader(data: bytes) -> PdfFileReader:
    from pdfsign.sign import open_pdf  # noqa: PLC0415  (sign imports this module)

    return open_pdf(data)


def _write_dss(data: bytes, embedded: EmbeddedPdfSignature | None, paths: list[object],
               context: ValidationContext) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
    vri = embedded.pkcs7_content.hex().encode("ascii") if embedded is not None else None
    DocumentSecurityStore.supply_dss_in_writer(
        writer, vri, paths=paths, validation_context=context, embed_roots=True)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def _add_dss(data: bytes, embedded: EmbeddedPdfSignature | None, data_source: ValidationData
             ) -> bytes:
    certs = signature_certificates(embedded) if embedded is not None else []
    revocation = collect_revocation(data_source, certs)
    context = validation_context(data_source, certs, revocation)

    async def run() -> list[object]:
        return await signature_paths(embedded, context) if embedded is not None else []

    paths = asyncio.run(run())
    return _write_dss(data, embedded, paths, context)


def _last_signature(reader: PdfFileReader) -> EmbeddedPdfSignature:
    signatures = list(reader.embedded_regular_signatures)
    if not signatures:
        raise SigningFailed("the PDF has no signature to add validation data for")
    last: EmbeddedPdfSignature = signatures[-1]
    return last


def _md_of(embedded: EmbeddedPdfSignature) -> str:
    return str(embedded.md_algorithm)


def _archive_field(reader: PdfFileReader) -> str:
    taken = {str(ts.field_name) for ts in reader.embedded_timestamp_signatures}
    number = len(taken) + 1
    while f"{ARCHIVE_FIELD_PREFIX}{number}" in taken:
        number += 1
    return f"{ARCHIVE_FIELD_PREFIX}{number}"


def _document_timestamp(data: bytes, timestamper: TimeStamper, md_algorithm: str) -> bytes:
    reader = _reader(data)
    writer = IncrementalPdfFileWriter.from_reader(reader)
    stamper = PdfTimeStamper(timestamper, field_name=_archive_field(reader))

    async def run() -> bytes:
        output = await stamper.async_timestamp_pdf(writer, md_algorithm)
        assert isinstance(output, io.BytesIO)
        return output.getvalue()

    try:
        return asyncio.run(run())
    except TimestampRequestError as exc:
        raise TimestampFailed(f"the document timestamp failed: {exc}") from exc


def extend_pdf(data: bytes, level: Level, *, validation: ValidationData,
               timestamper: TimestampSource | None = None) -> bytes:
    """Take a PDF whose last signature is B-T to ``level`` (``Level.B_LT``: DSS with the
    validation data of that signature; ``Level.B_LTA``: then a document timestamp, which
    needs ``timestamper``).  Raises :class:`ValidationDataMissing` when the chains cannot be
    completed with good revocation data, :class:`TimestampFailed`, :class:`InvalidPdf`."""
    from pdfsign.sign import Level  # noqa: PLC0415  (sign imports this module)

    if level not in (Level.B_LT, Level.B_LTA):
        raise ValueError(f"extend_pdf makes B-LT or B-LTA, not {level}")
    if level is Level.B_LTA and timestamper is None:
        raise ValueError("B-LTA needs a timestamper for the document timestamp")
    reader = _reader(data)
    embedded = _last_signature(reader)
    if not any(True for s in (False, True)
               for _ in extract_tst_data_iter(embedded.signer_info, signed=s)):
        raise SigningFailed("B-LT needs a signature timestamp (sign at B-T first)")
    md = _md_of(embedded)
    try:
        out = _add_dss(data, embedded, validation)
    except (SignatureValidationError, PdfError, ValueError) as exc:
        if isinstance(exc, ValidationDataMissing):
            raise
        raise SigningFailed(f"adding validation data failed: {exc}") from exc
    if level is Level.B_LTA:
        assert timestamper is not None
        out = _document_timestamp(out, make_timestamper(timestamper), md)
    return out


def add_archive_timestamp(data: bytes, timestamper: TimestampSource,
                          validation: ValidationData) -> bytes:
    """Re-timestamp an archived PDF: validation data for the latest document timestamp (its
    TSA's chain; for a B-LT document without one, the last signature's) goes into the DSS,
    then a new document timestamp covers everything.  Raises like :func:`extend_pdf`."""
    reader = _reader(data)
    stamps = list(reader.embedded_timestamp_signatures)
    target: EmbeddedPdfSignature = stamps[-1] if stamps else _last_signature(reader)
    md = _md_of(target)
    try:
        out = _add_dss(data, target, validation)
    except (SignatureValidationError, PdfError, ValueError, SigningError) as exc:
        if isinstance(exc, ValidationDataMissing):
            raise
        raise SigningFailed(f"adding validation data failed: {exc}") from exc
    return _document_timestamp(out, make_timestamper(timestamper), md)


#: Entries read from one DSS array (a hospital document's DSS has a few dozen).
MAX_DSS_ENTRIES = 1000


def _dss_streams(dss: object, key: str) -> list[bytes]:
    """The decoded streams of one DSS array; anything that is not a readable stream is
    skipped (the DSS is attacker-controlled: a bad entry only means less data)."""
    if not isinstance(dss, generic.DictionaryObject):
        return []
    array = dss.get(key)
    if not isinstance(array, generic.ArrayObject):
        return []
    found = []
    for ref in list(array)[:MAX_DSS_ENTRIES]:
        try:
            stream = ref.get_object() if isinstance(ref, generic.IndirectObject) else ref  # type: ignore[no-untyped-call]
            if isinstance(stream, generic.StreamObject):
                found.append(bytes(stream.data))
        except (PdfError, ValueError, KeyError, TypeError):
            continue
    return found


def _usable_certificate(der: bytes) -> asn1_x509.Certificate | None:
    try:
        cert = asn1_x509.Certificate.load(der)
        cert.native  # noqa: B018  (parse it all now, not inside pyHanko later)
    except (ValueError, TypeError, KeyError):
        return None
    return cert


def _usable_ocsp(der: bytes) -> bool:
    try:
        response = asn1_ocsp.OCSPResponse.load(der)
        response.native  # noqa: B018
        return bool(response["response_status"].native == "successful"
                    and response["response_bytes"].native is not None)
    except (ValueError, TypeError, KeyError):
        return False


def _usable_crl(der: bytes) -> bool:
    try:
        asn1_crl.CertificateList.load(der).native  # noqa: B018
    except (ValueError, TypeError, KeyError):
        return False
    return True


def document_validation_data(reader: PdfFileReader) -> tuple[list[asn1_x509.Certificate],
                                                             RevocationInfo]:
    """The certificates, OCSP responses and CRLs in a PDF's DSS (empty when it has none).
    Entries that do not parse are left out: they could only have made validation fail."""
    try:
        dss = reader.root.get("/DSS")
        dss = dss.get_object() if isinstance(dss, generic.IndirectObject) else dss  # type: ignore[no-untyped-call]
    except (PdfError, ValueError, KeyError, TypeError):
        return [], RevocationInfo()
    certs = [c for c in map(_usable_certificate, _dss_streams(dss, "/Certs")) if c is not None]
    ocsps = tuple(der for der in _dss_streams(dss, "/OCSPs") if _usable_ocsp(der))
    crls = tuple(der for der in _dss_streams(dss, "/CRLs") if _usable_crl(der))
    return certs, RevocationInfo(ocsps, crls)
