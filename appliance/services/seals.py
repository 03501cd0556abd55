"""Seals with server-held keys: the hospital's (and departments') automatic signatures on
batches of documents (tender: 医院印章、科室印章；后台批量盖章), as CMS now, as PDF seals with
pdfsign later.

A seal is a certificate of the ``organization-seal`` profile whose key the appliance holds
(enrolled through the profile's active CA channel, ``appliance.services.channels``).  Managed
seals (``appliance.services.seal_registry``) add a name, an image, a scope and a usage log: a
request naming one (``managed_seal``), or naming/defaulting to a certificate bound to one, is
refused unless the seal is enabled (409) and, for an application, in its scope (403); a PAdES
seal then shows the seal's image (in a template's seal slot, a given box or field), and every
document is in the seal's usage log.  Certificates of no managed seal seal as before.  A
request names the seal by its certificate id or takes the newest valid one; a renewed seal
certificate is followed to its replacement, so integrators keep using the id they know.

Threat model.  Applying a seal is the hospital's signature: only application credentials with
the ``seal`` scope may (deny by default at the API); every batch is in the audit log (category
``signature``) with the seal, the caller and every document's id and digest, so the evidence
report can later prove what was sealed, when, by which system.  The key is unwrapped from the
KEK only in memory.  Documents are hashed here (or, in digest mode, the caller's digest of the
seal's hash algorithm is signed as a detached CMS message-digest); nothing of the content is
stored.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select

import pdfsign
from appliance.custody import KeyHolder
from appliance.errors import ClockUnsynchronized, Conflict, NotFound, ValidationFailed
from appliance.services import pdf_ltv
from appliance.services._time import utc_now as _now
from appliance.services.admins import Actor, actor_label
from appliance.services.ca import CaService, CertificateInfo, ServerKeyStore, certificate_info
from appliance.services.seal_registry import ManagedSeal, SealRegistry, Use
from appliance.services.tsa import TsaService
from appliance.storage import Database, schema
from signcore import cms
from signcore.hashes import HashAlgorithm, digest
from signcore.x509 import Certificate

C = schema.certificates
SEAL_PROFILE = "organization-seal"
MAX_DOCUMENTS = 100
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
FORMATS = ("cms-attached", "cms-detached", "pades")
FLAVOURS = ("rfc5652", "gmt0010")
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


@dataclasses.dataclass(frozen=True)
class Document:
    """One document of a batch: its bytes, or (detached only) its digest."""

    id: str
    content: bytes | None = None
    digest: bytes | None = None
    digest_algorithm: str | None = None


@dataclasses.dataclass(frozen=True)
class SealedDocument:
    id: str
    signature: bytes  # DER ContentInfo(SignedData)
    digest: bytes
    digest_algorithm: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "signature": base64.b64encode(self.signature).decode(),
                "digest": self.digest.hex(), "digest_algorithm": self.digest_algorithm}


class SealService:
    def __init__(self, database: Database, key_holder: KeyHolder, ca: CaService, *,
                 tsa: TsaService | None = None, audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = _now) -> None:
        self._db, self._ca, self._tsa, self._audit, self._clock = database, ca, tsa, audit, clock
        self._keys = ServerKeyStore(database, key_holder)
        self._registry: SealRegistry | None = None  # managed seals (set_registry)

    def seals(self) -> list[CertificateInfo]:
        """The appliance-held seal certificates that can seal now, newest first."""
        now = self._clock()
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(C).where(
                C.c.profile == SEAL_PROFILE, C.c.key_id.is_not(None), C.c.status == "active",
                C.c.not_before <= now, C.c.not_after > now).order_by(C.c.id.desc())).all()
        return [certificate_info(row) for row in rows]

    def _resolve(self, seal_id: int | None) -> tuple[CertificateInfo, str]:
        """The seal certificate to use (a replaced one followed to its replacement) and its
        key id."""
        if seal_id is None:
            found = self.seals()
            if not found:
                raise Conflict("设备尚无可用的机构印章证书（POST /api/v1/ca/enrollments，"
                               "profile organization-seal）")
            seal_id = found[0].id
        row = self._seal_row(seal_id)
        for _ in range(16):  # renewal chains are short; a longer one would be a bug
            if row.replaced_by is None:
                break
            row = self._seal_row(int(row.replaced_by))
        info = certificate_info(row)
        status = info.effective_status(self._clock())
        if status != "active" or info.not_before > self._clock():
            raise Conflict(f"印章证书 {info.id} 当前不可用（{status}）")
        return info, str(row.key_id)

    # -- managed seals (appliance.services.seal_registry)

    def set_registry(self, registry: SealRegistry) -> None:
        """Enforce the managed seals' rules (enabled, scope) and use their images."""
        self._registry = registry

    def _resolve_managed(self, actor: Actor, seal_id: int | None, managed_seal: int | None,
                         ) -> tuple[CertificateInfo, str, tuple[ManagedSeal, bytes | None] | None]:
        """The certificate and key to seal with, and the managed seal they belong to: the one
        named (``managed_seal``), or the one the named/default certificate is bound to."""
        registry = self._registry
        if managed_seal is not None:
            if registry is None:
                raise Conflict("印章管理未启用")
            if seal_id is not None:
                raise ValidationFailed("give seal (a certificate id) or managed_seal, not both")
            managed = registry.authorize(actor, managed_seal)
            assert managed[0].certificate_id is not None
            info, key_id = self._resolve(managed[0].certificate_id)
            return info, key_id, managed
        info, key_id = self._resolve(seal_id)
        bound = (registry.for_certificate(actor, self._lineage(info.id))
                 if registry is not None else None)
        return info, key_id, bound

    def _lineage(self, certificate_id: int) -> list[int]:
        """The certificate and those it replaced (renewals): a managed seal bound to an
        earlier certificate still governs its renewed key."""
        found, current = [certificate_id], [certificate_id]
        with self._db.engine.connect() as conn:
            for _ in range(16):
                current = [int(r.id) for r in conn.execute(
                    select(C.c.id).where(C.c.replaced_by.in_(current)))]
                if not current:
                    break
                found.extend(current)
        return found

    def _record_usage(self, actor: Actor, managed: tuple[ManagedSeal, bytes | None] | None,
                      results: Sequence[SealedDocument], request_id: str, fmt: str) -> None:
        if managed is None or self._registry is None:
            return
        uses = [Use(r.id, r.digest.hex(), r.digest_algorithm, fmt) for r in results]
        self._registry.record_usage(actor, managed[0], uses, request_id)
        if self._audit is not None:
            self._audit("signature", "seal.use", actor_label(actor), f"seal:{managed[0].id}",
                        {"seal": managed[0].name, "request_id": request_id, "format": fmt,
                         "documents": [{"id": u.document_id, "digest": u.digest}
                                       for u in uses]})

    def _seal_row(self, seal_id: int) -> Any:
        row = None
        if 0 < seal_id < 2**63:
            with self._db.engine.connect() as conn:
                row = conn.execute(select(C).where(C.c.id == seal_id)).first()
        if row is None or row.profile != SEAL_PROFILE or row.key_id is None:
            raise NotFound(f"没有编号为 {seal_id} 的印章证书")
        return row

    def apply(self, actor: Actor, documents: Sequence[Document], *, seal_id: int | None = None,
              detached: bool = True, flavour: str = "rfc5652",
              timestamp: bool = False,
              pades: bool = False,
              level: str | None = None, managed_seal: int | None = None,
              placement: Placement | None = None,
              request_id: str | None = None) -> tuple[CertificateInfo, list[SealedDocument]]:
        """Seal every document; all or nothing (a bad document refuses the batch).
        ``timestamp``: add the appliance TSA's time stamp over each signature (RFC 3161
        signatureTimeStampToken), so the time of sealing is proven, not only claimed."""
        if not 0 < len(documents) <= MAX_DOCUMENTS:
            raise ValidationFailed(f"documents: 1 to {MAX_DOCUMENTS} per request")
        if len({d.id for d in documents}) != len(documents):
            raise ValidationFailed("documents: ids must be unique within a request")
        if flavour not in FLAVOURS:
            raise ValidationFailed(f"flavour 应为 {', '.join(FLAVOURS)} 之一")
        pades_level = _pades_level(level, timestamp=timestamp, pades=pades)  # B-LT/B-LTA
        timestamp = timestamp or pades_level.timestamped
        if timestamp and self._tsa is None:
            raise Conflict("时间戳服务未配置")
        info, key_id, managed = self._resolve_managed(actor, seal_id, managed_seal)
        certificate = Certificate.from_stored(info.der)
        hash_algorithm = (HashAlgorithm.SM3 if certificate.public_key().key_type.value == "sm2"
                          else HashAlgorithm.SHA256)
        for document in documents:
            _check(document, detached=detached and not pades, hash_algorithm=hash_algorithm,
                   pdf=pades)
        key = self._keys.load(key_id)
        chain = self._chain(info)
        results = []
        for document in documents:
            if pades:
                assert document.content is not None
                results.append(SealedDocument(
                    document.id, self._seal_pdf(document, key, certificate, chain, pades_level,
                                                look=_look(managed, placement)),
                    digest(hash_algorithm, document.content), hash_algorithm.value))
                continue
            if document.content is not None:
                signature = cms.sign(document.content, key, certificate, detached=detached,
                                     flavor=flavour, extra_certificates=chain)
                value = digest(hash_algorithm, document.content)
            else:
                assert document.digest is not None
                signature = cms.sign_digest(document.digest, key, certificate, flavor=flavour,
                                            extra_certificates=chain)
                value = document.digest
            if timestamp:
                assert self._tsa is not None
                signature = cms.add_signature_timestamp(
                    signature, self._tsa.token_for(cms.signature_value(signature)))
            results.append(SealedDocument(document.id, signature, value, hash_algorithm.value))
        self._record(actor, info, results, detached=detached, flavour=flavour, pades=pades)
        self._record_usage(actor, managed, results, request_id or str(uuid.uuid4()),
                           "pades" if pades else "cms-detached" if detached else "cms-attached")
        return info, results

    def _seal_pdf(self, document: Document, key: Any, certificate: Certificate,
                  chain: Sequence[Certificate], level: pdfsign.Level, *,
                  look: _Look | None = None) -> bytes:
        """A PAdES seal over a PDF (B-T and up with the appliance's TSA; B-LT/B-LTA with the
        built-in CA's OCSP answers in the DSS): an incremental update in a field of its own,
        so earlier signatures stay valid."""
        assert document.content is not None
        tsa = self._tsa
        validation = (pdf_ltv.validation_data(self._ca)
                      if level in (pdfsign.Level.B_LT, pdfsign.Level.B_LTA) else None)
        try:
            return pdfsign.sign_pdf(
                document.content, key, certificate, chain=chain, level=level,
                validation=validation,
                timestamper=tsa.stamp if level.timestamped and tsa else None,
                name=certificate.subject, **_visible(document.content, look))
        except pdfsign.ValidationDataMissing as exc:  # our own chain: not the caller's fault
            raise Conflict(f"无法为 B-LT 取得完整的验证数据：{exc}") from None
        except pdfsign.TimestampFailed as exc:  # the appliance's TSA: not the caller's fault
            _raise_clock_problem(exc)
            raise Conflict(f"时间戳服务不可用：{exc}") from None
        except pdfsign.PdfSignError as exc:
            raise ValidationFailed(f"document {document.id!r}: {exc}") from None

    def _chain(self, info: CertificateInfo) -> list[Certificate]:
        """The CA certificates above a built-in CA's seal (external channels' chains are the
        relying party's to find through AIA)."""
        for authority in self._ca.authorities():
            if authority.id == info.issuer_id:
                return [authority.certificate, authority.root]
        return []

    def _record(self, actor: Actor, info: CertificateInfo, results: Sequence[SealedDocument], *,
                detached: bool, flavour: str, pades: bool) -> None:
        if self._audit is not None:
            fmt = "pades" if pades else "cms-detached" if detached else "cms-attached"
            self._audit("signature", "seal.apply", actor_label(actor),
                        f"{info.channel}/{info.serial_hex}",
                        {"certificate_id": info.id, "count": len(results), "format": fmt,
                         "flavour": flavour,
                         "documents": [{"id": r.id, "digest": r.digest.hex(),
                                        "digest_algorithm": r.digest_algorithm}
                                       for r in results]})


def _raise_clock_problem(exc: BaseException) -> None:
    """An unsynchronized clock under a failed time stamp is a 503 (clock-unsynchronized)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ClockUnsynchronized):
            raise cause
        cause = cause.__cause__


def _pades_level(level: str | None, *, timestamp: bool, pades: bool) -> pdfsign.Level:
    """The PAdES level asked for (``level``: B-B, B-T, B-LT, B-LTA; default B-T with
    ``timestamp``, else B-B)."""
    if level is None:
        return pdfsign.Level.B_T if timestamp else pdfsign.Level.B_B
    if not pades:
        raise ValidationFailed("level 仅适用于 format pades")
    try:
        chosen = pdfsign.Level(level)
    except ValueError:
        raise ValidationFailed("level 应为 B-B、B-T、B-LT、B-LTA 之一") from None
    if timestamp and chosen is pdfsign.Level.B_B:
        raise ValidationFailed("timestamp 与 level B-B 矛盾")
    return chosen


def _check(document: Document, *, detached: bool, hash_algorithm: HashAlgorithm,
           pdf: bool = False) -> None:
    where = f"document {document.id!r}"
    if (document.content is None) == (document.digest is None):
        raise ValidationFailed(f"{where}: give exactly one of content or digest")
    if document.content is not None and len(document.content) > MAX_DOCUMENT_BYTES:
        raise ValidationFailed(f"{where}: content over {MAX_DOCUMENT_BYTES} bytes")
    if pdf:
        if document.content is None:
            raise ValidationFailed(f"{where}: a PDF seal needs the PDF itself")
        try:
            pdfsign.open_pdf(document.content)
        except pdfsign.PdfSignError as exc:
            raise ValidationFailed(f"{where}: not a readable, unencrypted PDF ({exc})") from None
    if document.digest is not None:
        if not detached:
            raise ValidationFailed(f"{where}: a digest can only be sealed as cms-detached")
        if document.digest_algorithm != hash_algorithm.value:
            raise ValidationFailed(f"{where}: this seal signs {hash_algorithm.value} digests")
        if len(document.digest) != hash_algorithm.digest_size:
            raise ValidationFailed(f"{where}: a {hash_algorithm.value} digest is "
                                   f"{hash_algorithm.digest_size} bytes")


def documents_from_json(items: Any) -> list[Document]:
    """The ``documents`` array of a request: [{id, content (base64)} | {id, digest (hex),
    digest_algorithm}]."""
    if not isinstance(items, list):
        raise ValidationFailed("documents must be an array")
    found = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"id", "content", "digest",
                                                      "digest_algorithm"}:
            raise ValidationFailed(f"documents[{index}]: an object with id and content, or id, "
                                   f"digest and digest_algorithm")
        doc_id = item.get("id")
        if not isinstance(doc_id, str) or not 0 < len(doc_id) <= 64 or not doc_id.isprintable():
            raise ValidationFailed(f"documents[{index}].id: 1 to 64 printable characters")
        found.append(Document(doc_id, *_payload(item, index)))
    return found


def _payload(item: Mapping[str, Any], index: int) -> tuple[bytes | None, bytes | None,
                                                           str | None]:
    content, digest_hex, algorithm = item.get("content"), item.get("digest"), \
        item.get("digest_algorithm")
    if content is not None:
        if not isinstance(content, str) or len(content) > MAX_DOCUMENT_BYTES * 4 // 3 + 4:
            raise ValidationFailed(f"documents[{index}].content: base64, at most "
                                   f"{MAX_DOCUMENT_BYTES} bytes decoded")
        try:
            return base64.b64decode(content, validate=True), None, None
        except ValueError:
            raise ValidationFailed(f"documents[{index}].content is not base64") from None
    if not isinstance(digest_hex, str) or not isinstance(algorithm, str) or \
            len(digest_hex) > 128:
        raise ValidationFailed(f"documents[{index}]: content, or digest with digest_algorithm")
    try:
        return None, bytes.fromhex(digest_hex), algorithm.lower()
    except ValueError:
        raise ValidationFailed(f"documents[{index}].digest is not hex") from None


# --- where a PAdES seal goes and what it shows (managed seals) ----------------------------------


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a PDF seal goes: an existing empty signature field (a template's seal slot), or
    a new field with a box (PDF points ``x1, y1, x2, y2``) on ``page``.  Neither: the PDF's
    first empty field whose name ends in ``seal`` (templates name it so), else invisible."""

    field: str | None = None
    box: tuple[int, int, int, int] | None = None
    page: int = 0


@dataclasses.dataclass(frozen=True)
class _Look:
    image: bytes | None
    lines: tuple[str, ...]
    placement: Placement


def _look(managed: tuple[ManagedSeal, bytes | None] | None,
          placement: Placement | None) -> _Look | None:
    if managed is None and placement is None:
        return None
    image = managed[1] if managed is not None else None
    return _Look(image, (), placement or Placement())


def _visible(pdf: bytes, look: _Look | None) -> dict[str, Any]:
    """``field`` and ``appearance`` arguments of :func:`pdfsign.sign_pdf` for a seal."""
    fresh = f"medsign-seal-{uuid.uuid4().hex[:8]}"
    if look is None:
        return {"field": fresh}
    placement = look.placement
    empty = pdfsign.empty_signature_fields(pdf)
    field = placement.field
    if field is not None and field not in empty:
        raise ValidationFailed(f"field: 文档中没有名为 {field} 的空签名域")
    if field is None and placement.box is None:
        field = next((name for name in empty if name.lower().endswith("seal")), None)
    if look.image is None and placement.box is None:
        return {"field": field or fresh}
    appearance = pdfsign.Appearance(box=placement.box, page=placement.page, image=look.image,
                                    lines=look.lines)
    if field is None and placement.box is None:
        return {"field": fresh}  # nowhere to show it: invisible, as before
    return {"field": field or fresh, "appearance": appearance}

