"""Evidence reports ("一键取证"): for a signed document, every signature verified and the signing
process as the audit log recorded it, proved, rendered in zh-CN, signed by the appliance.

Collecting (by sign-request id, or by an uploaded PDF / CMS found through its digest): each
signature is verified (``VerificationService``), matched to the task that made it (PAdES: the
field ``medsign-step-N``; CMS: the signer certificate of the task, in step order), and its
process gathered from the audit log: the request's creation (and notification), the co-sign
entry (device, IP, session, PIN or auto-sign), the auto-sign authorization, the device binding
(the identity check).  Each entry travels as the leaf data recomputed from its row, with an
inclusion proof against the first checkpoint that covers it and consistency proofs from those
checkpoints to the newest (signed now if the entries are newer than every checkpoint).

Signing: the report is sealed with the organization seal (``SealService``, PAdES B-T with the
appliance's TSA): a report is the hospital's statement, and the seal is already the certificate
hospitals publish for their automatic signatures.  The seal's and the CA's certificates travel in
the report; the verifier prints the root's fingerprint.

Cost on a big log: proofs come from :class:`AuditTree`, a Merkle tree over the rows' leaf
hashes seeded from ``audit_tree_tiles`` (complete subtrees of 1,024+ entries, stored once), so a
proof reads a few thousand tiles and one or two 1,024-row chunks, never the whole log.

Threat model: the database may have been edited.  What the report carries is what the rows say
*now* (leaf data recomputed from their content), while the proofs come from stored leaf hashes
and tiles, and the roots from signed checkpoints: an edited, deleted or reordered row, a wrong
tile or a replaced checkpoint makes a proof fail.  Before signing, the appliance runs the
offline verifier's own checks on the facts (with the audit keys of the database) and compares
every row with its stored leaf hash; whatever fails is named in the report's ``problems`` (the
verdict is then "invalid") and in the API answer — a report is still produced, because the
evidence of a tampered log is itself evidence.  Stored tiles are a cache: wrong ones only make
proofs fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

import pdfsign
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.services import pdf_ltv
from appliance.services._time import utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.audit import AuditLog, Filters, Record, audit_public_keys, records
from appliance.services.ca import CaService
from appliance.services.seals import Document, SealService
from appliance.services.tsa import TsaService
from appliance.services.verification import VerificationService
from appliance.storage import Database, schema
from evidence import SM3, EvidenceError, MerkleTree
from evidence.render import render_pdf
from evidence.report import (
    Consistency,
    DocumentDigest,
    ProvedEntry,
    Report,
    SignatureFacts,
    derive_process,
)
from evidence.verify import verify_facts
from signcore import cms, tsp
from signcore.errors import SigncoreError
from signcore.hashes import sm3
from signcore.x509 import Certificate, load_certificate

E = schema.evidence_reports
TILES = schema.audit_tree_tiles
AL = schema.audit_log
CP = schema.audit_checkpoints
R = schema.sign_requests
DOC = schema.sign_documents
T = schema.sign_tasks
CERTS = schema.certificates
TILE_BITS = 10  # tiles: complete subtrees of 1,024 entries and more
MAX_UPLOAD = 20 * 1024 * 1024
#: Reports are sealed B-LTA: the chains' revocation data in the DSS and a document time stamp,
#: so they stay verifiable after the seal's and the TSA's certificates expire.
LEVEL = "B-LTA"
MAX_REVISIONS = 64  # revisions of an uploaded PDF looked up (each costs a digest of a prefix)
#: The worker re-timestamps a report this long before its newest time stamp's TSA certificate
#: expires.
RETIMESTAMP_DAYS = 90

__all__ = ["AuditTree", "EvidenceService"]


# --- the audit tree with stored tiles ------------------------------------------------------------


class AuditTree:
    """Inclusion and consistency proofs over ``audit_log`` with tiles kept in the database."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._lock = threading.Lock()
        self._tree = MerkleTree(self._leaves, 0, hasher=SM3, chunk_bits=TILE_BITS)
        self._stored: set[tuple[int, int]] = set()

    def _leaves(self, start: int, stop: int) -> list[bytes]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(AL.c.seq, AL.c.leaf_hash)
                                .where(AL.c.seq >= start, AL.c.seq < stop)
                                .order_by(AL.c.seq)).all()
        for expected, row in zip(range(start, stop), rows, strict=False):
            if row.seq != expected:
                raise EvidenceError(f"审计条目 {expected} 缺失（条目被删除或重排）")
        if len(rows) != stop - start:
            raise EvidenceError(f"审计条目 {start + len(rows)} 缺失（条目被删除）")
        return [bytes(row.leaf_hash) for row in rows]

    def _load(self, size: int) -> None:
        """Grow to ``size`` and take the stored tiles inside it (once each)."""
        if size > self._tree.size:
            self._tree.grow(size)
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(TILES).where(TILES.c.start + TILES.c.size <= size)).all()
        fresh = {(int(r.start), int(r.start + r.size)): bytes(r.hash) for r in rows
                 if (int(r.start), int(r.start + r.size)) not in self._stored}
        self._tree.remember(fresh)
        self._stored.update(fresh)

    def proofs(self, size: int, seqs: Mapping[int, int],
               firsts: Iterable[int]) -> tuple[dict[int, list[bytes]], dict[int, list[bytes]]]:
        """Inclusion proofs {seq: proof} (entry ``seq`` in the tree of ``seqs[seq]``) and
        consistency proofs {first: proof} (to ``size``); EvidenceError when rows are missing."""
        with self._lock:
            self._load(size)
            inclusion = {seq: self._tree.inclusion_proof(seq, tree_size)
                         for seq, tree_size in seqs.items()}
            consistency = {first: self._tree.consistency_proof(first, size) for first in firsts}
            return inclusion, consistency

    def build(self, size: int) -> int:
        """Compute (and store) every tile of the first ``size`` entries; how many are new."""
        with self._lock:
            self._load(size)
            self._tree.root(size)
        return self.persist()

    def persist(self) -> int:
        """Store the tiles computed since the last call (another worker may have stored some:
        those are skipped)."""
        with self._lock:
            new = {k: v for k, v in self._tree.known_subtrees().items() if k not in self._stored}
        if not new:
            return 0
        rows = [{"start": a, "size": b - a, "hash": h} for (a, b), h in sorted(new.items())]
        try:
            with self._db.transaction() as conn:
                conn.execute(insert(TILES), rows)
        except IntegrityError:
            for row in rows:
                try:
                    with self._db.transaction() as conn:
                        conn.execute(insert(TILES).values(**row))
                except IntegrityError:
                    continue
        with self._lock:
            self._stored.update(new)
        return len(rows)


# --- what one signature is, before the facts -----------------------------------------------------


@dataclasses.dataclass
class _Found:
    """One signature of the document and the task (if any) that made it."""

    kind: str
    field: str
    signer: str
    certificate: bytes | None
    algorithm: str
    signing_time: str | None
    timestamp: str | None
    valid: bool
    checks: dict[str, Any]
    task: Any = None  # the sign_tasks row
    problems: list[str] = dataclasses.field(default_factory=list)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class EvidenceService:
    def __init__(self, database: Database, audit: AuditLog, seals: SealService, ca: CaService,
                 verification: VerificationService, *, tsa: TsaService | None = None,
                 name: str = "medsign 签名服务器",
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._audit, self._seals, self._ca = database, audit, seals, ca
        self._tsa = tsa
        self._verification, self._name, self._clock = verification, name, clock
        self.tree = AuditTree(database)

    # --- the API's side ---

    def for_sign_request(self, actor: Actor, request_id: str,
                         document: int = 0) -> dict[str, Any]:
        """A report on document ``document`` of a sign request, as it was signed."""
        with self._db.engine.connect() as conn:
            request = conn.execute(select(R).where(R.c.id == request_id)).first()
            doc = conn.execute(select(DOC).where(DOC.c.request_id == request_id,
                                                 DOC.c.idx == document)).first()
        if request is None or (actor.kind == "app" and request.application_id != actor.id):
            raise NotFound("没有这个签名请求")
        if doc is None:
            raise NotFound(f"签名请求没有第 {document} 份文档")
        if doc.signature is None or request.format == "raw":
            raise Conflict("该文档还没有可取证的签名（尚未签署，或为 raw 签名）")
        content = bytes(doc.content) if doc.content is not None else None
        return self._generate(actor, bytes(doc.signature), content=content,
                              request=request, name=doc.name or f"document-{document}")

    def for_upload(self, actor: Actor, data: bytes, *, content: bytes | None = None,
                   name: str = "") -> dict[str, Any]:
        """A report on an uploaded signed PDF, or a CMS (with ``content`` when detached):
        its sign request is found through the digest of the document as first registered."""
        if not data or len(data) > MAX_UPLOAD:
            raise ValidationFailed(f"document: 1 to {MAX_UPLOAD} bytes")
        request, artifact_name = self._find_request(data, content)
        if request is not None and actor.kind == "app" and request.application_id != actor.id:
            request = None  # another application's request: no process evidence for this one
        return self._generate(actor, data, content=content, request=request,
                              name=name or artifact_name)

    def get(self, actor: Actor, report_id: str) -> dict[str, Any]:
        row = self._row(actor, report_id)
        return _summary(row.id, json.loads(row.facts), row.created_at)

    def pdf(self, actor: Actor, report_id: str) -> bytes:
        return bytes(self._row(actor, report_id).pdf)

    def _row(self, actor: Actor, report_id: str) -> Any:
        """A stored report; an application sees only the reports it made."""
        with self._db.engine.connect() as conn:
            row = conn.execute(select(E).where(E.c.id == report_id)).first()
        if row is None or (actor.kind == "app" and row.created_by != actor_label(actor)):
            raise NotFound("没有这份证据报告")
        return row

    # --- long-term validity ---

    def retimestamp_due(self, *, within_days: int = RETIMESTAMP_DAYS, limit: int = 100
                        ) -> tuple[int, list[str]]:
        """Add an archive time stamp (validation data of the last time stamp's TSA chain in
        the DSS, then a new document time stamp) to every stored report whose newest time
        stamp's TSA certificate expires within ``within_days``; (how many, what failed)."""
        if self._tsa is None:
            return 0, []
        horizon = self._clock() + dt.timedelta(days=within_days)
        with self._db.engine.connect() as conn:
            due = list(conn.execute(select(E.c.id).where(
                (E.c.timestamp_expires_at.is_(None)) | (E.c.timestamp_expires_at < horizon))
                .order_by(E.c.timestamp_expires_at).limit(limit)).scalars())
        done, failed = 0, []
        for report_id in due:
            try:
                self._retimestamp(report_id, horizon)
                done += 1
            except (pdfsign.PdfSignError, Conflict) as exc:
                failed.append(f"{report_id}: {exc}")
        return done, failed

    def _retimestamp(self, report_id: str, horizon: dt.datetime) -> None:
        assert self._tsa is not None
        with self._db.engine.connect() as conn:
            pdf = bytes(conn.execute(select(E.c.pdf).where(E.c.id == report_id)).scalar_one())
        stamped = pdfsign.add_archive_timestamp(pdf, self._tsa.stamp,
                                                pdf_ltv.validation_data(self._ca))
        expiry = newest_timestamp_expiry(stamped)
        if expiry is None or expiry <= horizon:
            raise Conflict("时间戳服务的证书也即将过期：请先更新 TSA 证书")
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(update(E).where(E.c.id == report_id).values(
                pdf=stamped, timestamp_expires_at=expiry, retimestamped_at=now))
        self._audit.append("signature", "evidence.retimestamp", "system:worker", report_id,
                           {"report_sm3": sm3(stamped).hex(),
                            "timestamp_expires_at": expiry.isoformat()})

    # --- finding the request of an uploaded document ---

    def _find_request(self, data: bytes, content: bytes | None) -> tuple[Any, str]:
        candidates: list[bytes] = []
        if data.startswith(b"%PDF-"):
            # The signed PDF starts with the document as registered (incremental updates):
            # every prefix that ends a revision is a candidate.
            end = 0
            while (end := data.find(b"%%EOF", end)) >= 0 and len(candidates) < MAX_REVISIONS:
                end += 5
                cut = end + (2 if data[end:end + 2] == b"\r\n" else 1
                             if data[end:end + 1] in (b"\n", b"\r") else 0)
                candidates.append(sm3(data[:cut]))
                candidates.append(sm3(data[:end]))
        elif content is not None:
            candidates.append(sm3(content))
        else:
            try:
                attached = cms.verify(data).content
            except SigncoreError:
                attached = None
            if attached:
                candidates.append(sm3(attached))
        if not candidates:
            return None, ""
        with self._db.engine.connect() as conn:
            docs = conn.execute(select(DOC).where(DOC.c.digest.in_(candidates),
                                                  DOC.c.digest_algorithm == "sm3")
                                .order_by(DOC.c.request_id).limit(50)).all()
            if not docs:
                return None, ""
            # The same document may have been sent twice: the one signed into these bytes.
            doc = next((d for d in docs if d.signature is not None
                        and bytes(d.signature) == data), docs[0])
            request = conn.execute(select(R).where(R.c.id == doc.request_id)).first()
        return request, doc.name

    # --- generation ---

    def _generate(self, actor: Actor, artifact: bytes, *, content: bytes | None, request: Any,
                  name: str) -> dict[str, Any]:
        found = self._signatures(artifact, content, request)
        report = self._collect(artifact, found, request, name)
        pdf = self._sign(actor, render_pdf(report))
        now = self._clock()
        facts = report.to_json()
        with self._db.transaction() as conn:
            conn.execute(insert(E).values(
                id=report.report_id, sign_request_id=report.sign_request_id,
                document_sm3=report.document.sm3, verdict=report.verdict,
                facts=json.dumps(facts, ensure_ascii=False, sort_keys=True), pdf=pdf,
                created_by=actor_label(actor), created_at=now,
                timestamp_expires_at=newest_timestamp_expiry(pdf)))
        self._audit.append("signature", "evidence.generate", actor_label(actor),
                           report.report_id,
                           {"sign_request_id": report.sign_request_id,
                            "document_sm3": report.document.sm3, "verdict": report.verdict,
                            "report_sm3": sm3(pdf).hex(), "problems": len(report.problems)})
        self.tree.persist()
        return _summary(report.report_id, facts, now)

    def _sign(self, actor: Actor, pdf: bytes) -> bytes:
        try:
            _info, [sealed] = self._seals.apply(actor, [Document("evidence-report", pdf)],
                                                pades=True, timestamp=True, level=LEVEL)
        except Conflict as exc:
            raise Conflict(f"无法签署证据报告：{exc}") from None
        return sealed.signature

    def _signatures(self, artifact: bytes, content: bytes | None,
                    request: Any) -> list[_Found]:
        tasks = self._signed_tasks(request)
        if artifact.startswith(b"%PDF-"):
            found = self._pdf_signatures(artifact)
            by_field = {f"medsign-step-{t.step + 1}": t for t in tasks}
            for item in found:
                item.task = by_field.get(item.field)
        else:
            found = self._cms_signatures(artifact, content)
            for item, task in zip(found, tasks, strict=False):
                item.task = task
        for item in found:
            if item.task is not None and item.certificate is not None and \
                    self._task_certificate(item.task) not in (None, item.certificate):
                item.problems.append("签名证书与签名任务登记的证书不同")
                item.task = None
        return found

    def _signed_tasks(self, request: Any) -> list[Any]:
        if request is None:
            return []
        with self._db.engine.connect() as conn:
            return list(conn.execute(select(T).where(T.c.request_id == request.id,
                                                     T.c.status == "signed")
                                     .order_by(T.c.step)).all())

    def _task_certificate(self, task: Any) -> bytes | None:
        if task.certificate_id is None:
            return None
        with self._db.engine.connect() as conn:
            row = conn.execute(select(CERTS.c.der).where(CERTS.c.id == task.certificate_id)
                               ).first()
        if row is None:
            return None
        try:
            return Certificate.from_stored(bytes(row.der)).der
        except (SigncoreError, ValueError):
            return None

    def _pdf_signatures(self, data: bytes) -> list[_Found]:
        result = self._verification.verify_pdf(data)
        anchors, others = self._ca.trusted_certificates()
        reports = {r.field: r for r in pdfsign.validate_pdf(data, anchors, others)}
        found = []
        for sig in result["signatures"]:
            report = reports.get(sig["field"])
            checks = {k: sig[k] for k in ("intact", "valid", "trusted", "coverage",
                                          "modification_level", "modifications_allowed",
                                          "timestamp_ok", "level", "problems")}
            found.append(_Found(
                "pdf", sig["field"], sig["signer"],
                report.certificate if report is not None else None, sig["algorithm"],
                sig["signing_time"], sig["timestamp"], bool(sig["ok"]), checks))
        return found

    def _cms_signatures(self, data: bytes, content: bytes | None) -> list[_Found]:
        """Every SignerInfo: integrity, and the chain to the appliance's anchors as of the
        signing moment (a trusted signature time stamp's time, else the latest claimed signing
        time).  One validation for all signers (a 10-signer prescription costs one pass);
        revocation comes from the CA's records in :meth:`_status`."""
        anchors, others = self._ca.trusted_certificates()
        try:
            parsed = cms.verify(data, content=content)
        except SigncoreError as exc:
            raise ValidationFailed(f"不是可解析的 CMS SignedData：{exc}") from None
        stamps = [self._cms_timestamp(s, anchors, others) for s in parsed.signers]
        moments = [t["time"] if t and t["valid"] else
                   s.signing_time.isoformat() if s.signing_time else None
                   for s, t in zip(parsed.signers, stamps, strict=True)]
        known = [dt.datetime.fromisoformat(m) for m in moments if m]
        checked = cms.verify(data, content=content, trust_roots=anchors, intermediates=others,
                             at=max(known) if known else None).signers
        found = []
        for index, (signer, trusted, stamp) in enumerate(zip(parsed.signers, checked, stamps,
                                                             strict=True)):
            cert = signer.signer_certificate
            checks = {"integrity": signer.integrity, "trusted": bool(trusted.trusted),
                      "checked_at": moments[index],
                      "timestamp_ok": stamp["valid"] if stamp else None,
                      "problems": list(dict.fromkeys([*signer.problems, *trusted.problems]))}
            algorithm = signer.signature_algorithm.value if signer.signature_algorithm else ""
            found.append(_Found(
                "cms", f"signer-{index + 1}", cert.subject if cert else "",
                cert.der if cert else None, algorithm,
                signer.signing_time.isoformat() if signer.signing_time else None,
                stamp["time"] if stamp else None,
                bool(signer.integrity and trusted.trusted and (not stamp or stamp["valid"])),
                checks))
        return found

    @staticmethod
    def _cms_timestamp(signer: cms.SignerResult, anchors: Sequence[Certificate],
                       others: Sequence[Certificate]) -> dict[str, Any] | None:
        try:
            token = cms.signature_timestamp_token(signer.unsigned_attributes)
            if token is None:
                return None
            checked = tsp.verify_token(token, data=signer.signature, trust_roots=anchors,
                                       intermediates=others)
        except SigncoreError as exc:
            return {"valid": False, "time": None, "problems": [str(exc)]}
        return {"valid": checked.valid, "time": checked.info.gen_time.isoformat(),
                "problems": list(checked.problems)}

    # --- the audit evidence ---

    def _process_entries(self, request: Any, task: Any) -> list[Record]:
        """The audit records of one task's process, in log order."""
        rid, signer = request.id, f"signer:{task.signer_id}"
        chosen: dict[int, Record] = {}
        for record in _matching(self._db, "sign-request.create", rid):
            chosen[record.seq] = record
        cosign = [r for r in _matching(self._db, "sign-request.cosign", rid)
                  if _details(r).get("task_id") == task.id]
        chosen.update((r.seq, r) for r in cosign)
        if task.auto_sign_id:
            chosen.update((r.seq, r) for r in _matching(self._db, "auto-sign.grant", signer)
                          if _details(r).get("id") == task.auto_sign_id)
        before = min((r.seq for r in cosign), default=None)
        binds = [r for r in _matching(self._db, "device.bind", signer)
                 if _details(r).get("device_id") == task.device_id
                 and (before is None or r.seq < before)]
        if binds:
            chosen[binds[-1].seq] = binds[-1]
        return [chosen[s] for s in sorted(chosen)]

    def _collect(self, artifact: bytes, found: Sequence[_Found], request: Any,
                 name: str) -> Report:
        problems: list[str] = []
        cited: dict[int, Record] = {}
        per_signature: list[list[int]] = []
        for item in found:
            rows = self._process_entries(request, item.task) if item.task is not None else []
            if item.task is None:
                problems.append(f"签名 {item.field} 找不到对应的签名任务，没有签署过程证据")
            problems.extend(f"签名 {item.field}：{p}" for p in item.problems)
            cited.update((r.seq, r) for r in rows)
            per_signature.append([r.seq for r in rows])
        entries, checkpoints, consistency, found_problems = self._prove(cited)
        problems += found_problems
        signatures = []
        for index, (item, seqs) in enumerate(zip(found, per_signature, strict=True)):
            records = [_record_json(cited[s]) for s in seqs]
            status = self._status(item)
            signatures.append(SignatureFacts(
                index=index, kind=item.kind, field=item.field, signer=item.signer,
                certificate=item.certificate, algorithm=item.algorithm,
                signing_time=item.signing_time, timestamp=item.timestamp,
                valid=item.valid and status["at_signing"] != "revoked",
                checks=item.checks, certificate_status=status,
                process=derive_process(records), entries=tuple(seqs)))
        anchors, others = self._ca.trusted_certificates()
        report = Report(
            report_id="ev_" + secrets.token_urlsafe(12),
            generated_at=self._clock().astimezone(dt.UTC).isoformat(),
            appliance={"name": self._name, "origin": self._audit.config.origin,
                       "node_id": self._audit.config.node_id},
            document=DocumentDigest(name, len(artifact), hashlib.sha256(artifact).hexdigest(),
                                    sm3(artifact).hex()),
            sign_request_id=request.id if request is not None else None,
            signatures=tuple(signatures), entries=entries, checkpoints=checkpoints,
            consistency=consistency,
            log_keys=tuple(k.to_der() for k in audit_public_keys(self._db)),
            certificates=tuple(c.der for c in [*anchors, *others]))
        if not found:
            problems.append("文档中没有签名")
        # The offline verifier's own checks, with the keys the database holds.
        problems += [c.detail for c in verify_facts(report) if not c.ok]
        return dataclasses.replace(report, problems=tuple(dict.fromkeys(problems)))

    def _prove(self, cited: Mapping[int, Record]) -> tuple[
            tuple[ProvedEntry, ...], tuple[str, ...], tuple[Consistency, ...], list[str]]:
        problems = []
        for seq, record in sorted(cited.items()):
            if SM3.leaf(record.leaf_data()) != record.leaf_hash:
                problems.append(f"审计条目 #{seq} 的内容与其叶子哈希不符（条目被改动）")
        if not cited:
            return (), (), (), problems
        newest = self._audit.latest_checkpoint()
        if newest is None or newest.tree_size <= max(cited):
            newest = self._audit.checkpoint()
        sizes = {seq: self._covering(seq) for seq in cited}
        notes = {size: self._note(size) for size in {*sizes.values(), newest.tree_size}}
        try:
            inclusion, links = self.tree.proofs(
                newest.tree_size, sizes, [s for s in notes if s != newest.tree_size])
        except EvidenceError as exc:
            problems.append(str(exc))
            inclusion, links = {seq: [] for seq in cited}, {}
        entries = tuple(ProvedEntry(seq, cited[seq].leaf_data().decode("utf-8"), sizes[seq],
                                    tuple(inclusion[seq])) for seq in sorted(cited))
        consistency = tuple(Consistency(first, newest.tree_size, tuple(proof))
                            for first, proof in sorted(links.items()))
        return entries, tuple(notes[s] for s in sorted(notes)), consistency, problems

    def _covering(self, seq: int) -> int:
        """The size of the first checkpoint that covers entry ``seq``."""
        with self._db.engine.connect() as conn:
            size = conn.execute(select(func.min(CP.c.tree_size)).where(CP.c.tree_size > seq)
                                ).scalar()
        if size is None:
            raise EvidenceError(f"没有覆盖审计条目 {seq} 的签名树头")
        return int(size)

    def _note(self, size: int) -> str:
        record = self._audit.checkpoint_at(size)
        if record is None:
            raise NotFound(f"没有大小为 {size} 的签名树头")
        return record.note

    def _status(self, item: _Found) -> dict[str, Any]:
        """The signer certificate's status when it signed (as the validation found it) and
        now: from the built-in CA's own records when it issued the certificate (authoritative
        and cheap), else by validating the chain as of now."""
        at_signing = "good" if item.checks.get("trusted") else "unknown"
        if item.checks.get("revocation") == "revoked":
            at_signing = "revoked"
        if item.certificate is None:
            return {"at_signing": at_signing, "now": "unknown"}
        try:
            certificate = load_certificate(item.certificate)
        except (SigncoreError, ValueError):
            return {"at_signing": at_signing, "now": "unknown"}
        now = self._clock()
        with self._db.engine.connect() as conn:
            row = conn.execute(select(CERTS.c.status, CERTS.c.revoked_at, CERTS.c.der).where(
                CERTS.c.serial_hex == f"{certificate.serial_number:x}")).first()
        if row is not None and Certificate.from_stored(bytes(row.der)).der == certificate.der:
            revoked = row.status == "revoked" or row.revoked_at is not None
            source = "ca-records"
            signed = item.checks.get("checked_at") or item.timestamp or item.signing_time
            if revoked and row.revoked_at is not None and signed and \
                    _aware(row.revoked_at) <= dt.datetime.fromisoformat(signed):
                at_signing = "revoked"
        else:
            revoked = self._verification.chain(certificate, None).revocation == "revoked"
            source = "validation"
        state = ("revoked" if revoked else "expired" if certificate.not_after <= now else
                 "good" if item.checks.get("trusted") or row is not None else "unknown")
        return {"at_signing": at_signing, "now": state, "source": source,
                "not_after": certificate.not_after.isoformat()}


def newest_timestamp_expiry(pdf: bytes) -> dt.datetime | None:
    """When the TSA certificate of the newest time stamp of a PDF expires: its last document
    time stamp, else the signature time stamp of its last signature."""
    try:
        reader = pdfsign.open_pdf(pdf)
        stamps = list(reader.embedded_timestamp_signatures)
        if stamps:
            cert = stamps[-1].signer_cert
        else:
            signature = list(reader.embedded_regular_signatures)[-1]
            tokens = [t for signed in (False, True)
                      for t in extract_tst_data_iter(signature.signer_info, signed=signed)]
            if not tokens:
                return None
            cert = extract_certificate_info(tokens[-1]).signer_cert
        value = cert["tbs_certificate"]["validity"]["not_after"].native
    except (pdfsign.PdfSignError, IndexError, KeyError, ValueError, TypeError):
        return None
    return value if isinstance(value, dt.datetime) else None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _matching(database: Database, action: str, subject: str) -> list[Record]:
    return list(records(database, Filters(action=action, subject=subject)))


def _details(record: Record) -> dict[str, Any]:
    value = json.loads(record.details)
    return value if isinstance(value, dict) else {}


def _record_json(record: Record) -> dict[str, Any]:
    """A record as :func:`evidence.report.derive_process` reads leaf data."""
    fields: dict[str, Any] = json.loads(record.leaf_data())
    return {**fields, "details": _details(record)}


def _summary(report_id: str, facts: Mapping[str, Any], created: dt.datetime) -> dict[str, Any]:
    return {"id": report_id, "verdict": facts["verdict"],
            "sign_request_id": facts.get("sign_request_id"), "document": facts["document"],
            "problems": facts.get("problems", []),
            "signatures": [{"index": s["index"], "field": s["field"], "signer": s["signer"],
                            "valid": s["valid"], "process": s["process"]}
                           for s in facts["signatures"]],
            "created_at": _iso(created if created.tzinfo else created.replace(tzinfo=dt.UTC)),
            "links": {"self": f"/api/v1/evidence/{report_id}",
                      "pdf": f"/api/v1/evidence/{report_id}/pdf"},
            "facts": dict(facts)}
