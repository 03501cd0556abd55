"""PAdES signing: one-shot with a server key (:func:`sign_pdf`) and two-phase for split keys
(:func:`prepare_pdf` -> :class:`PreparedPdf` -> :meth:`PreparedPdf.finish`).

Every signature is an incremental update (earlier signatures stay valid), subfilter
``ETSI.CAdES.detached`` (PAdES baseline): B-B, or B-T with a signature timestamp from an
RFC 3161 TSA.  Options:

- ``field``: the signature field; an existing empty field of that name is used (a signature
  slot of the template), otherwise an invisible one, or a visible one with ``appearance``
  (text, a seal image or handwriting: :mod:`pdfsign.appearance`), is created.
- ``certify``: the first signature may certify the document (DocMDP) with a permission level:
  ``NO_CHANGES`` (1), ``FILL_FORMS`` (2: later signatures in fields and form filling allowed),
  ``ANNOTATE`` (3).
- ``lock``: a FieldMDP lock put on the field created for this signature (``"all"``: every
  field of the form is locked once it is signed; or a list of field names).
- ``slots``: empty signature fields to add in the same revision (the pharmacist's and the seal's
  slots of an e-prescription, created with the doctor's certifying signature), each with its
  own lock.

Split keys: :func:`prepare_pdf` writes the document with the reserved ``/Contents`` and computes
the CMS signed attributes over its ``/ByteRange`` digest; the :class:`PreparedPdf` holds the
prepared bytes and that state (``to_dict`` / ``from_dict``: JSON).  What the co-sign protocol
signs is :meth:`PreparedPdf.digest` -- for SM2, ``e = SM3(Z || signed attributes DER)`` exactly
as ``signcore.cms.PreparedSignature.digest()`` -- and :meth:`PreparedPdf.finish` checks the
signature against the certificate and embeds it (with a timestamp for B-T).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from asn1crypto import cms as asn1_cms
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTBSDocument
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

# Appearances (seal images, handwriting, CJK lines; strokes digest): pdfsign/appearance.py
from pdfsign.appearance import Appearance, bind_signed_attributes, stamp_style
from pdfsign.errors import EncryptedPdf, InvalidPdf, SigningFailed, TimestampFailed
from pdfsign.ltv import ValidationData, extend_pdf
from pdfsign.signer import (
    SigncoreSigner,
    TimestampSource,
    algorithm_for,
    digest_name,
    make_timestamper,
)
from signcore import hashes
from signcore.algorithms import DEFAULT_SM2_ID, SignatureAlgorithm
from signcore.errors import SigncoreError
from signcore.keys import Signer, SM2PublicKey
from signcore.x509 import Certificate

__all__ = [
    "MAX_PDF_BYTES",
    "MDP",
    "Appearance",
    "Level",
    "PreparedPdf",
    "Slot",
    "open_pdf",
    "prepare_pdf",
    "sign_pdf",
]

#: PDFs larger than this are refused before parsing.
MAX_PDF_BYTES = 256 * 1024 * 1024
#: Room kept for a signature timestamp token in a two-phase B-T signature (DER bytes).
TIMESTAMP_ROOM = 12 * 1024


class Level(enum.Enum):
    B_B = "B-B"
    B_T = "B-T"
    # B-LT / B-LTA (pdfsign/ltv.py): B-T, then the DSS (and a document timestamp).
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B


class MDP(enum.Enum):
    """DocMDP permission of a certifying signature (ISO 32000-1 table 254)."""

    NO_CHANGES = 1
    FILL_FORMS = 2
    ANNOTATE = 3

    @property
    def pyhanko(self) -> pdf_fields.MDPPerm:
        return pdf_fields.MDPPerm(self.value)


Lock = Literal["all"] | Sequence[str]


@dataclass(frozen=True)
class Slot:
    """An empty signature field to create (a later signer's place)."""

    name: str
    box: tuple[int, int, int, int] | None = None
    page: int = 0
    lock: Lock | None = None


def _field_mdp(lock: Lock | None) -> pdf_fields.FieldMDPSpec | None:
    if lock is None:
        return None
    if lock == "all":
        return pdf_fields.FieldMDPSpec(action=pdf_fields.FieldMDPAction.ALL)
    return pdf_fields.FieldMDPSpec(action=pdf_fields.FieldMDPAction.INCLUDE,
                                   fields=list(lock))


def open_pdf(data: bytes) -> PdfFileReader:
    """Parse ``data`` as a PDF, or raise :class:`InvalidPdf` / :class:`EncryptedPdf`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidPdf("a PDF is bytes")
    data = bytes(data)
    if len(data) > MAX_PDF_BYTES:
        raise InvalidPdf(f"PDF of {len(data)} bytes exceeds the {MAX_PDF_BYTES} byte limit")
    if b"%PDF-" not in data[:1024]:
        raise InvalidPdf("not a PDF (no %PDF- header)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            raise EncryptedPdf("the PDF is encrypted")
        # Touch what signing and validation need, so that a corrupt file fails here.
        reader.root  # noqa: B018
        _ = reader.root["/Pages"]
    except InvalidPdf:
        raise
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError,
            RecursionError) as exc:
        raise InvalidPdf(f"corrupt or unreadable PDF: {exc}") from exc
    return reader


def _writer(data: bytes) -> IncrementalPdfFileWriter:
    reader = open_pdf(data)
    return IncrementalPdfFileWriter(io.BytesIO(bytes(data)), prev=reader)


def _existing_fields(writer: IncrementalPdfFileWriter) -> set[str]:
    names = set()
    for name, _value, _ref in pdf_fields.enumerate_sig_fields(writer.prev, filled_status=None):
        names.add(str(name))
    return names


def _add_slots(writer: IncrementalPdfFileWriter, slots: Sequence[Slot]) -> None:
    existing = _existing_fields(writer)
    for slot in slots:
        if slot.name in existing:
            raise SigningFailed(f"signature field {slot.name!r} exists already")
        pdf_fields.append_signature_field(writer, pdf_fields.SigFieldSpec(
            sig_field_name=slot.name, box=slot.box, on_page=slot.page,
            field_mdp_spec=_field_mdp(slot.lock)))


def _pdf_signer(
    pyhanko_signer: SigncoreSigner, writer: IncrementalPdfFileWriter, *, field_name: str,
    appearance: Appearance | None, certify: MDP | None, lock: Lock | None,
    reason: str | None, location: str | None, name: str | None,
    timestamper: TimestampSource | None,
) -> PdfSigner:
    existing = _existing_fields(writer)
    new_field = None
    if field_name not in existing:
        new_field = pdf_fields.SigFieldSpec(
            sig_field_name=field_name,
            box=appearance.box if appearance else None,
            on_page=appearance.page if appearance else 0,
            field_mdp_spec=_field_mdp(lock))
    elif lock is not None:
        raise SigningFailed("a lock is set when the field is created; field "
                            f"{field_name!r} exists already")
    meta = PdfSignatureMetadata(
        field_name=field_name, md_algorithm=pyhanko_signer.md_algorithm,
        subfilter=pdf_fields.SigSeedSubFilter.PADES, certify=certify is not None,
        docmdp_permissions=(certify or MDP.FILL_FORMS).pyhanko,
        reason=reason, location=location, name=name)
    style = stamp_style(appearance) if appearance else None
    bind_signed_attributes(pyhanko_signer, appearance)
    return PdfSigner(meta, signer=pyhanko_signer,
                     timestamper=make_timestamper(timestamper) if timestamper else None,
                     stamp_style=style, new_field_spec=new_field)


def _reserved_bytes(certificates: Sequence[Certificate], level: Level) -> int:
    """Room for the CMS in /Contents (hex, so twice the DER): the embedded certificates, 2 KiB
    for the SignerInfo with its signed attributes and signature, and a timestamp token."""
    return 2 * (sum(len(c.der) for c in certificates) + 2048
                + (TIMESTAMP_ROOM if level.timestamped else 0))


def _check_level(level: Level, timestamper: TimestampSource | None) -> None:
    if level.timestamped and timestamper is None:
        raise ValueError(f"{level.value} needs a timestamper (a TSA URL or callable)")
    if level is Level.B_B and timestamper is not None:
        raise ValueError("B-B takes no timestamper (use level=Level.B_T)")


def sign_pdf(
    data: bytes,
    key: Signer,
    certificate: Certificate,
    *,
    chain: Sequence[Certificate] = (),
    level: Level = Level.B_B,
    timestamper: TimestampSource | None = None,
    field: str = "Signature1",
    appearance: Appearance | None = None,
    certify: MDP | None = None,
    lock: Lock | None = None,
    slots: Sequence[Slot] = (),
    reason: str | None = None,
    location: str | None = None,
    name: str | None = None,
    signer_id: bytes = DEFAULT_SM2_ID,
    validation: ValidationData | None = None,
) -> bytes:
    """Sign ``data`` (a PDF) with a key at hand; return the signed PDF (an incremental update).

    ``chain``: CA certificates to embed (issuing CA first).  B-LT and B-LTA need
    ``validation`` (trust roots and the revocation source, :class:`pdfsign.ltv.ValidationData`).
    Raises :class:`InvalidPdf`, :class:`EncryptedPdf`, :class:`SigningFailed` (B-LT:
    :class:`ValidationDataMissing`) or :class:`TimestampFailed`.
    """
    _check_level(level, timestamper)
    if level in (Level.B_LT, Level.B_LTA) and validation is None:
        raise ValueError(f"{level.value} needs validation data (trust roots, revocation source)")
    if key.public_key() != certificate.public_key():
        raise SigningFailed("the signing key does not match the signer certificate")
    writer = _writer(data)
    _add_slots(writer, slots)
    pyhanko_signer = SigncoreSigner(certificate, key=key, chain=chain, signer_id=signer_id)
    signer = _pdf_signer(pyhanko_signer, writer, field_name=field, appearance=appearance,
                         certify=certify, lock=lock, reason=reason, location=location,
                         name=name, timestamper=timestamper)
    try:
        # A computed reservation: without one, pyHanko sizes /Contents by building and
        # serializing a whole dummy signature first, a third of the time a signature takes.
        output = asyncio.run(signer.async_sign_pdf(
            writer, bytes_reserved=_reserved_bytes((certificate, *chain), level)))
    except TimestampRequestError as exc:
        raise TimestampFailed(f"time-stamping failed: {exc}") from exc
    except (SigningError, PdfError, SigncoreError) as exc:
        raise SigningFailed(f"signing failed: {exc}") from exc
    assert isinstance(output, io.BytesIO)
    if level in (Level.B_LT, Level.B_LTA):
        assert validation is not None
        return extend_pdf(output.getvalue(), level, validation=validation,
                          timestamper=timestamper)
    return output.getvalue()


# ---------------------------------------------------------------------------------------------
# Two-phase signing (split keys)

_FORMAT = 1


@dataclass(frozen=True)
class PreparedPdf:
    """A PDF signature waiting for its signature value (see :func:`prepare_pdf`)."""

    pdf: bytes  # the document with the signature dictionary and a zeroed /Contents
    document_digest: bytes  # hash of the /ByteRange
    reserved_start: int  # offsets of the /Contents hex string, '<' to after '>'
    reserved_end: int
    signed_attributes: bytes  # DER SET OF: what the signature covers
    certificate: bytes  # signer certificate DER
    chain: tuple[bytes, ...] = ()
    signer_id: bytes = DEFAULT_SM2_ID
    timestamp_room: bool = False  # B-T: /Contents has room for a timestamp token
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def signer_certificate(self) -> Certificate:
        cert = self._cache.get("cert")
        if cert is None:
            cert = self._cache["cert"] = Certificate.from_stored(self.certificate)
        assert isinstance(cert, Certificate)
        return cert

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return algorithm_for(self.signer_certificate)

    @property
    def to_be_signed(self) -> bytes:
        """What an ordinary signer signs: the DER of the signed attributes (RFC 5652 5.4)."""
        return self.signed_attributes

    def digest(self) -> bytes:
        """What a raw-digest signer (the co-sign protocol) signs: for SM2
        ``e = SM3(Z_A || signed attributes)`` with Z_A from the certificate and
        :attr:`signer_id`; for RSA/ECDSA, SHA-256 of the signed attributes."""
        public = self.signer_certificate.public_key()
        if isinstance(public, SM2PublicKey):
            return public.digest(self.signed_attributes, self.signer_id)
        return hashes.digest(self.algorithm.hash_algorithm, self.signed_attributes)

    def finish(self, signature: bytes, *, timestamper: TimestampSource | None = None) -> bytes:
        """Embed ``signature`` (DER ``SEQUENCE {r, s}`` for SM2, the RSA block for RSA) and
        return the signed PDF.  The signature is checked against the certificate first
        (:class:`SigningFailed` if it does not verify).  ``timestamper``: required when the
        document was prepared for B-T, refused otherwise."""
        if self.timestamp_room != (timestamper is not None):
            raise ValueError("prepared for B-T: give a timestamper" if self.timestamp_room
                             else "prepared for B-B: no timestamper")
        public = self.signer_certificate.public_key()
        try:
            public.verify_digest(bytes(signature), self.digest(), self.algorithm)
        except (SigncoreError, ValueError) as exc:
            raise SigningFailed(f"the signature does not verify: {exc}") from exc
        chain = [Certificate.from_stored(der) for der in self.chain]
        signer = SigncoreSigner(self.signer_certificate, chain=chain, signer_id=self.signer_id,
                                signature=bytes(signature))
        output = io.BytesIO(self.pdf)
        digest = PreparedByteRangeDigest(self.document_digest, self.reserved_start,
                                         self.reserved_end)

        async def run() -> None:
            signed = await signer.async_sign_prescribed_attributes(
                signer.md_algorithm, asn1_cms.CMSAttributes.load(self.signed_attributes),
                timestamper=make_timestamper(timestamper) if timestamper else None)
            await PdfTBSDocument.async_finish_signing(output, digest, signed)

        try:
            asyncio.run(run())
        except TimestampRequestError as exc:
            raise TimestampFailed(f"time-stamping failed: {exc}") from exc
        except (SigningError, PdfError) as exc:
            raise SigningFailed(f"signing failed: {exc}") from exc
        return output.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (bytes as base64)."""
        b64 = base64.b64encode
        return {
            "format": _FORMAT,
            "pdf": b64(self.pdf).decode(),
            "document_digest": self.document_digest.hex(),
            "reserved_start": self.reserved_start,
            "reserved_end": self.reserved_end,
            "signed_attributes": b64(self.signed_attributes).decode(),
            "certificate": b64(self.certificate).decode(),
            "chain": [b64(c).decode() for c in self.chain],
            "signer_id": self.signer_id.hex(),
            "timestamp_room": self.timestamp_room,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PreparedPdf:
        if state.get("format") != _FORMAT:
            raise ValueError(f"unknown prepared PDF format {state.get('format')!r}")
        try:
            unb64 = base64.b64decode
            return cls(
                pdf=unb64(state["pdf"], validate=True),
                document_digest=bytes.fromhex(state["document_digest"]),
                reserved_start=int(state["reserved_start"]),
                reserved_end=int(state["reserved_end"]),
                signed_attributes=unb64(state["signed_attributes"], validate=True),
                certificate=unb64(state["certificate"], validate=True),
                chain=tuple(unb64(c, validate=True) for c in state["chain"]),
                signer_id=bytes.fromhex(state["signer_id"]),
                timestamp_room=bool(state["timestamp_room"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed prepared PDF state: {exc}") from exc


def prepare_pdf(
    data: bytes,
    certificate: Certificate,
    *,
    chain: Sequence[Certificate] = (),
    level: Level = Level.B_B,
    field: str = "Signature1",
    appearance: Appearance | None = None,
    certify: MDP | None = None,
    lock: Lock | None = None,
    slots: Sequence[Slot] = (),
    reason: str | None = None,
    location: str | None = None,
    name: str | None = None,
    signer_id: bytes = DEFAULT_SM2_ID,
) -> PreparedPdf:
    """The first phase of a PDF signature whose key is not at hand (see the module docstring).

    B-T: the timestamp is requested in :meth:`PreparedPdf.finish` (it covers the signature
    value); room for it is reserved here.
    """
    writer = _writer(data)
    _add_slots(writer, slots)
    placeholder = SigncoreSigner(certificate, chain=chain, signer_id=signer_id)
    signer = _pdf_signer(placeholder, writer, field_name=field, appearance=appearance,
                         certify=certify, lock=lock, reason=reason, location=location,
                         name=name, timestamper=None)
    md = digest_name(placeholder.algorithm)
    reserve = _reserved_bytes((certificate, *chain), level)

    async def run() -> tuple[PreparedByteRangeDigest, bytes, bytes]:
        prepared, _tbs, output = await signer.async_digest_doc_for_signing(
            writer, bytes_reserved=reserve)
        attrs = await placeholder.signed_attrs(
            prepared.document_digest, md, attr_settings=PdfCMSSignedAttributes(),
            use_pades=True)
        assert isinstance(output, io.BytesIO)
        return prepared, output.getvalue(), bytes(attrs.dump())

    try:
        prepared, pdf, attrs = asyncio.run(run())
    except (SigningError, PdfError, SigncoreError) as exc:
        raise SigningFailed(f"preparing the signature failed: {exc}") from exc
    return PreparedPdf(
        pdf=pdf, document_digest=bytes(prepared.document_digest),
        reserved_start=prepared.reserved_region_start,
        reserved_end=prepared.reserved_region_end, signed_attributes=attrs,
        certificate=certificate.der, chain=tuple(c.der for c in chain),
        signer_id=bytes(signer_id), timestamp_room=level.timestamped)
