"""Sign requests from the hospital's systems and the tasks they give signers.

The backend (scope ``sign:request``) posts documents (bytes, or an SM3 digest for detached
CMS), a format and an ordered list of signers — an e-prescription: the doctor signs, then a
pharmacist reviews (approves with a signature, or rejects with a reason).  Each signer gets a
task when the previous step is done; the phone lists its tasks, opens one co-sign session for
one task or a batch, and the finished signatures are assembled into one CMS per document
holding every signer so far (parallel SignerInfos), or raw SM2 signatures.  Status changes
reach the backend as webhooks (outbox, appliance.services.webhooks).

Threat model.
- The server binds every co-signature to a registered digest: the digests of a session are
  computed here, from the documents (or the digests) the backend sent, with signed attributes
  built here; the phone only answers them.  A task can only be signed by its signer's bound
  phone, while its request is pending and its step is the current one.
- A replayed or concurrent finish cannot sign twice: the session is compare-and-swapped, and
  each task moves from ``pending`` only once (checked in the closing transaction).
- Auto-sign ("免密签名") sessions skip the PIN only inside an authorization of this device
  (window and count, counted in the closing transaction); each task signed so records the
  authorization, and so does the audit entry.
- Idempotency: a repeated ``Idempotency-Key`` with the same request returns the first
  result; with a different request it is refused (409), so a retried POST never creates two.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, insert, select, update

import pdfsign
from appliance.errors import ApplianceError, Conflict, NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.audit import AuditLog, Entry
from appliance.services.cosign_sessions import StoredSession
from appliance.services.signer_keys import AfterCommit, SignerKey, SignerKeyService
from appliance.services.webhooks import WebhookService, check_url
from appliance.storage import Database, schema
from keysplit.messages import MAX_ITEMS
from signcore import cms
from signcore.hashes import HashAlgorithm, digest, sm3
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate

R = schema.sign_requests
DOC = schema.sign_documents
T = schema.sign_tasks
G = schema.auto_sign_grants
M = schema.mobile_messages
SG = schema.signers
FORMATS = ("cms-attached", "cms-detached", "raw", "pades")
FLAVOURS = ("rfc5652", "gmt0010")
ACTIONS = ("sign", "review")
MAX_DOCUMENTS = 200
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
MAX_STEPS = 10
DEFAULT_EXPIRY = dt.timedelta(hours=24)
MAX_EXPIRY = dt.timedelta(days=30)
MAX_AUTO_SIGN = dt.timedelta(hours=24)
MAX_AUTO_SIGN_COUNT = 1000
MAX_REASON = 500
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]

# The statements of the signing path, built once: building one costs about four times what
# executing it does (SQLAlchemy's coercions and cache key), and a co-signature runs some
# thirty of them.  ``expanding`` parameters take a list.
_REQUEST = select(R).where(R.c.id == bindparam("request_id"))
_REQUEST_DOCS = select(DOC.c.idx, DOC.c.name, DOC.c.media_type, DOC.c.size, DOC.c.digest,
                       DOC.c.digest_algorithm, DOC.c.request_id).where(
    DOC.c.request_id.in_(bindparam("request_ids", expanding=True))).order_by(
    DOC.c.request_id, DOC.c.idx)
_REQUEST_TASKS = select(T).where(T.c.request_id == bindparam("request_id")).order_by(T.c.step)
_SIGNERS_STATUS = select(SG.c.id, SG.c.status).where(
    SG.c.id.in_(bindparam("signer_ids", expanding=True)))
_DUE_OF_SIGNER = select(R.c.id).join(T, T.c.request_id == R.c.id).where(
    T.c.signer_id == bindparam("signer_id"), R.c.status == "pending",
    R.c.expires_at <= bindparam("now"))
_TASK_VIEW = select(T, R.c.title, R.c.format, R.c.expires_at, R.c.created_at).join(
    R, R.c.id == T.c.request_id)
_TASKS_OF_SIGNER = _TASK_VIEW.where(T.c.signer_id == bindparam("signer_id")).order_by(
    R.c.created_at, T.c.id).limit(500)
_TASKS_OF_SIGNER_BY_STATUS = _TASK_VIEW.where(
    T.c.signer_id == bindparam("signer_id"), T.c.status == bindparam("status")).order_by(
    R.c.created_at, T.c.id).limit(500)
_TASKS_TO_SIGN = select(T, R.c.format, R.c.flavour, R.c.pades_level,
                        R.c.status.label("r_status"), R.c.expires_at).join(
    R, R.c.id == T.c.request_id).where(T.c.id.in_(bindparam("task_ids", expanding=True)))
_DOCUMENTS_OF = select(DOC).where(
    DOC.c.request_id.in_(bindparam("request_ids", expanding=True))).order_by(
    DOC.c.request_id, DOC.c.idx)
_TASK_SIGNED = update(T).where(T.c.id == bindparam("task_id"), T.c.status == "pending")
_TASK_PLACE = select(T.c.request_id, T.c.step).where(T.c.id == bindparam("task_id"))
_DOC_WHERE = (DOC.c.request_id == bindparam("doc_request"), DOC.c.idx == bindparam("doc_idx"))
_DOC_SIGNATURE = select(DOC.c.signature).where(*_DOC_WHERE)
_SET_DOC_SIGNATURE = update(DOC).where(*_DOC_WHERE).values(signature=bindparam("signed"))
_STEP_TASK = select(T).where(T.c.request_id == bindparam("request_id"),
                             T.c.step == bindparam("step"))
_TASK_PENDING = update(T).where(T.c.id == bindparam("task_id")).values(status="pending")
_REQUEST_TOUCHED = update(R).where(R.c.id == bindparam("request_id"))
_INSERT_MESSAGE = insert(M)
_GRANTS_OF_SIGNER = select(G).where(G.c.signer_id == bindparam("signer_id")).order_by(
    G.c.created_at.desc()).limit(50)
#: (signer id, step, signing time, the PDF) -> the visible appearance of a PAdES signature
AppearanceSource = Callable[[int, int, dt.datetime, bytes], "pdfsign.Appearance | None"]


class IdempotencyConflict(Conflict):
    code, title = "idempotency-conflict", "幂等键已用于另一个请求"


class NotPending(Conflict):
    code, title = "not-pending", "签名请求不在待签状态"


@dataclasses.dataclass(frozen=True)
class NewDocument:
    name: str
    media_type: str
    content: bytes | None
    digest: bytes  # SM3 of the content, or the digest the caller sent
    digest_algorithm: str = "sm3"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _text(item: Mapping[str, Any], name: str, where: str, max_length: int,
          default: str = "") -> str:
    value = item.get(name, default)
    if not isinstance(value, str) or len(value) > max_length or not value.isprintable():
        raise ValidationFailed(f"{where}.{name}: at most {max_length} printable characters")
    return value


@dataclasses.dataclass(frozen=True)
class CurrentDocument:
    """A document as it is now (:meth:`SignRequestService.current_document`)."""

    format: str  # the request's: pades, cms-attached, cms-detached, raw
    name: str
    media_type: str
    content: bytes | None  # None: only its digest was registered
    signature: bytes | None  # the signed PDF (pades) or the CMS so far; None: unsigned

    @property
    def viewable(self) -> bytes | None:
        """What the phone shows: the signed PDF for pades, else the content."""
        if self.format == "pades" and self.signature is not None:
            return self.signature
        return self.content


def parse_documents(items: Any, fmt: str) -> list[NewDocument]:
    if not isinstance(items, list) or not 0 < len(items) <= MAX_DOCUMENTS:
        raise ValidationFailed(f"documents: 1 to {MAX_DOCUMENTS} documents")
    found = []
    for index, item in enumerate(items):
        where = f"documents[{index}]"
        if not isinstance(item, dict) or set(item) - {"name", "media_type", "content", "digest",
                                                      "digest_algorithm"}:
            raise ValidationFailed(f"{where}: an object with name and content (base64), or "
                                   f"digest and digest_algorithm")
        name = _text(item, "name", where, 200)
        media_type = _text(item, "media_type", where, 100,
                           "application/pdf" if fmt == "pades" else "application/octet-stream")
        content, digest, algorithm = _payload(item, where, fmt)
        if fmt == "pades":
            _check_pdf(content, where)
        found.append(NewDocument(name, media_type, content, digest, algorithm))
    return found


def _payload(item: Mapping[str, Any], where: str,
             fmt: str) -> tuple[bytes | None, bytes, str]:
    content = item.get("content")
    if content is not None:
        if not isinstance(content, str) or len(content) > MAX_DOCUMENT_BYTES * 4 // 3 + 4:
            raise ValidationFailed(f"{where}.content: base64, at most {MAX_DOCUMENT_BYTES} "
                                   f"bytes decoded")
        try:
            data = base64.b64decode(content, validate=True)
        except ValueError:
            raise ValidationFailed(f"{where}.content is not base64") from None
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValidationFailed(f"{where}.content: at most {MAX_DOCUMENT_BYTES} bytes")
        return data, sm3(data), "sm3"
    if fmt != "cms-detached":
        raise ValidationFailed(f"{where}: format {fmt} needs the document's content")
    digest, algorithm = item.get("digest"), item.get("digest_algorithm")
    if algorithm not in ("sm3", "sha256") or not isinstance(digest, str) or len(digest) != 64:
        raise ValidationFailed(f"{where}: content, or a 64-hex-digit digest with "
                               f"digest_algorithm sm3 (SM2 signers) or sha256 (RSA signers)")
    try:
        return None, bytes.fromhex(digest), algorithm
    except ValueError:
        raise ValidationFailed(f"{where}.digest is not hex") from None


def _check_pdf(content: bytes | None, where: str) -> None:
    """A PAdES document must be a readable, unencrypted PDF (refused now, not at signing)."""
    try:
        pdfsign.open_pdf(content or b"")
    except pdfsign.EncryptedPdf:
        raise ValidationFailed(f"{where}: an encrypted PDF cannot be signed") from None
    except pdfsign.PdfSignError as exc:
        raise ValidationFailed(f"{where}: not a readable PDF ({exc})") from None


def _steps(items: Any) -> list[tuple[int, str]]:
    if not isinstance(items, list) or not 0 < len(items) <= MAX_STEPS:
        raise ValidationFailed(f"signers: 1 to {MAX_STEPS} signers in signing order")
    steps = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) - {"signer_id", "action"}:
            raise ValidationFailed(f"signers[{index}]: an object with signer_id and action")
        signer_id, action = item.get("signer_id"), item.get("action", "sign")
        if not isinstance(signer_id, int) or isinstance(signer_id, bool) or \
                not 0 < signer_id < 2**63:
            raise ValidationFailed(f"signers[{index}].signer_id must be a signer's id")
        if action not in ACTIONS:
            raise ValidationFailed(f"signers[{index}].action 应为 sign 或 review")
        steps.append((signer_id, action))
    return steps


def _task_json(row: Row[Any], docs: Sequence[Row[Any]]) -> dict[str, Any]:
    """A task as the phone's task list shows it, with its documents' descriptions."""
    return {"id": row.id, "request_id": row.request_id, "title": row.title,
            "action": row.action, "status": row.status, "step": row.step,
            "format": row.format, "created_at": _iso(row.created_at),
            "expires_at": _iso(row.expires_at), "reason": row.reason,
            "auto_sign_id": row.auto_sign_id, "finished_at": _iso(row.finished_at),
            "documents": [{"index": d.idx, "name": d.name, "media_type": d.media_type,
                           "size": d.size, "sm3": bytes(d.digest).hex(),
                           "preview": d.size is not None} for d in docs]}


def _iso(value: dt.datetime | None) -> str | None:
    return aware(value).isoformat() if value is not None else None


class SignRequestService:
    def __init__(self, database: Database, keys: SignerKeyService, webhooks: WebhookService, *,
                 audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now,
                 on_event: Callable[[], None] = lambda: None) -> None:
        self._db, self._keys, self._webhooks = database, keys, webhooks
        self._audit, self._clock, self._on_event = audit, clock, on_event
        keys.register_finisher("sign", self._finish, before=self._finish_items)
        # issue 7: the visible signature of a PAdES step (HandwritingService.appearance)
        self._appearance_for: AppearanceSource = lambda _signer, _step, _when, _pdf: None
        # PAdES above B-B: the appliance's TSA (TimeStampReq DER -> TimeStampResp DER) and
        # its validation data for B-LT / B-LTA (set_timestamping)
        self._stamp: Callable[[bytes], bytes] | None = None
        self._validation: Callable[[], pdfsign.ValidationData] | None = None

    def set_timestamping(self, stamp: Callable[[bytes], bytes],
                         validation: Callable[[], pdfsign.ValidationData]) -> None:
        """The TSA and the validation data that PAdES levels B-T, B-LT and B-LTA need."""
        self._stamp, self._validation = stamp, validation

    def set_appearances(self, source: AppearanceSource) -> None:
        """Where PAdES signatures get their visible appearance (the signer's handwriting,
        whose strokes digest is then in the signed attributes)."""
        self._appearance_for = source

    # -- the backend's side

    def create(self, actor: Actor, body: Mapping[str, Any], idempotency_key: str | None, *,
               identity: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Register a request; (its JSON, whether it was created now).  A retry with the same
        ``idempotency_key`` must carry the same ``identity`` (default: the body itself) —
        callers that build the body (a rendered template, whose PDF carries the render time)
        name what the client asked for instead."""
        fmt = body.get("format", "cms-detached")
        flavour = body.get("flavour", "rfc5652")
        if fmt not in FORMATS:
            raise ValidationFailed(f"format 应为 {', '.join(FORMATS)} 之一")
        if flavour not in FLAVOURS:
            raise ValidationFailed(f"flavour 应为 {', '.join(FLAVOURS)} 之一")
        documents = parse_documents(body.get("documents"), fmt)
        steps = _steps(body.get("signers"))
        title = _text(body, "title", "body", 200)
        callback = body.get("callback_url")
        if callback is not None:
            if not isinstance(callback, str):
                raise ValidationFailed("callback_url must be a URL")
            check_url(callback)
        expires_in = body.get("expires_in", int(DEFAULT_EXPIRY.total_seconds()))
        if not isinstance(expires_in, int) or isinstance(expires_in, bool) or \
                not 60 <= expires_in <= MAX_EXPIRY.total_seconds():
            raise ValidationFailed("expires_in: 60 seconds to 30 days")
        if idempotency_key is not None and not (
                0 < len(idempotency_key) <= 128 and idempotency_key.isascii()
                and idempotency_key.isprintable()):
            raise ValidationFailed("Idempotency-Key: 1 to 128 printable ASCII characters")
        level = self._pades_level(body.get("level"), fmt)
        fingerprint = sm3(_canonical(dict(body if identity is None else identity))).hex()
        now = self._clock()
        request_id = str(uuid.uuid4())
        with self._db.transaction() as conn:
            if idempotency_key is not None:
                earlier = conn.execute(select(R.c.id, R.c.fingerprint).where(
                    R.c.application_id == actor.id,
                    R.c.idempotency_key == idempotency_key)).first()
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise IdempotencyConflict("该 Idempotency-Key 已用于内容不同的请求")
                    return self._json(conn, earlier.id), False
            self._check_signers(conn, steps)
            conn.execute(insert(R), {
                "id": request_id, "application_id": actor.id,
                "idempotency_key": idempotency_key, "fingerprint": fingerprint, "title": title,
                "format": fmt, "flavour": flavour, "pades_level": level, "status": "pending",
                "callback_url": callback, "expires_at": now + dt.timedelta(seconds=expires_in),
                "created_at": now, "updated_at": now})
            conn.execute(insert(DOC), [
                {"request_id": request_id, "idx": i, "name": d.name, "media_type": d.media_type,
                 "content": d.content, "size": len(d.content) if d.content is not None else None,
                 "digest_algorithm": d.digest_algorithm, "digest": d.digest,
                 "signature": None}
                for i, d in enumerate(documents)])
            conn.execute(insert(T), [
                {"id": "tk_" + secrets.token_urlsafe(15), "request_id": request_id, "step": i,
                 "signer_id": signer_id, "action": action,
                 "status": "pending" if i == 0 else "waiting", "reason": ""}
                for i, (signer_id, action) in enumerate(steps)])
            self._notify_step(conn, request_id, 0, title, now)
            created = self._json(conn, request_id)
            logged = self._record_within(conn, [Entry(
                "signature", "sign-request.create", actor_label(actor), request_id,
                {"documents": [{"name": d.name, "sm3": d.digest.hex()} for d in documents],
                 "format": fmt, "flavour": flavour,
                 "signers": [{"signer_id": s, "action": a} for s, a in steps],
                 "notified": [{"signer_id": steps[0][0], "step": 0}]})])
        logged()
        return created, True

    def _pades_level(self, value: Any, fmt: str) -> str | None:
        """The PAdES level a request asks for (pades only; default B-B)."""
        if fmt != "pades":
            if value is not None:
                raise ValidationFailed("level 仅适用于 format pades")
            return None
        if value is None:
            return pdfsign.Level.B_B.value
        try:
            level = pdfsign.Level(value)
        except ValueError:
            raise ValidationFailed("level 应为 B-B、B-T、B-LT、B-LTA 之一") from None
        if level.timestamped and self._stamp is None:
            raise ValidationFailed(f"level {level.value} 需要时间戳服务，本设备未配置")
        return level.value

    def _check_signers(self, conn: Connection, steps: Sequence[tuple[int, str]]) -> None:
        ids = {s for s, _ in steps}
        rows = conn.execute(_SIGNERS_STATUS, {"signer_ids": sorted(ids)}).all()
        active = {r.id for r in rows if r.status == "active"}
        missing = sorted(ids - active)
        if missing:
            raise ValidationFailed(f"签名人 {', '.join(map(str, missing))} 不存在或未启用")

    def get(self, actor: Actor, request_id: str) -> dict[str, Any]:
        self._expire_if_due(request_id)
        with self._db.engine.connect() as conn:
            self._owned(conn, actor, request_id)
            return self._json(conn, request_id)

    def result(self, actor: Actor, request_id: str) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            row = self._owned(conn, actor, request_id)
            if row.status != "completed":
                raise NotPending(f"签名请求状态为 {row.status}，尚无完整签名结果")
            docs = conn.execute(select(DOC).where(DOC.c.request_id == request_id)
                                .order_by(DOC.c.idx)).all()
            tasks = conn.execute(select(T).where(T.c.request_id == request_id)
                                 .order_by(T.c.step)).all()
        if row.format == "raw":
            return {"id": request_id, "format": "raw", "documents": [
                {"index": d.idx, "name": d.name, "signatures": [
                    {"step": t.step, "signer_id": t.signer_id,
                     "certificate_id": t.certificate_id,
                     "signature": json.loads(t.signatures or "{}").get(str(d.idx))}
                    for t in tasks]} for d in docs]}
        return {"id": request_id, "format": row.format, "flavour": row.flavour, "documents": [
            {"index": d.idx, "name": d.name,
             "signature": base64.b64encode(bytes(d.signature)).decode()} for d in docs]}

    def cancel(self, actor: Actor, request_id: str) -> dict[str, Any]:
        with self._db.transaction() as conn:
            row = self._owned(conn, actor, request_id)
            if row.status != "pending":
                raise NotPending(f"签名请求状态为 {row.status}，不能撤销")
            self._close(conn, row, "cancelled", {})
            answer = self._json(conn, request_id)
        self._record("signature", "sign-request.cancel", actor, request_id, {})
        self._on_event()
        return answer

    def expire_due(self) -> int:
        """Expire every pending request past its expiry (the worker; reads do it too)."""
        with self._db.engine.connect() as conn:
            ids = [r.id for r in conn.execute(select(R.c.id).where(
                R.c.status == "pending", R.c.expires_at <= self._clock())).all()]
        return sum(self._expire_if_due(i) for i in ids)

    def _expire_if_due(self, request_id: str) -> bool:
        now = self._clock()
        with self._db.engine.connect() as conn:
            row = conn.execute(select(R).where(R.c.id == request_id)).first()
        if row is None or row.status != "pending" or aware(row.expires_at) > now:
            return False
        with self._db.transaction() as conn:
            row = conn.execute(select(R).where(R.c.id == request_id)).one()
            if row.status != "pending":
                return False
            self._close(conn, row, "expired", {})
        self._on_event()
        return True

    def _owned(self, conn: Connection, actor: Actor, request_id: str) -> Row[Any]:
        row = conn.execute(select(R).where(R.c.id == request_id)).first()
        if row is None or row.application_id != actor.id:
            raise NotFound("没有这个签名请求")
        return row

    def _json(self, conn: Connection, request_id: str) -> dict[str, Any]:
        row = conn.execute(_REQUEST, {"request_id": request_id}).one()
        docs = conn.execute(_REQUEST_DOCS, {"request_ids": [request_id]}).all()
        tasks = conn.execute(_REQUEST_TASKS, {"request_id": request_id}).all()
        return {
            "id": row.id, "status": row.status, "title": row.title, "format": row.format,
            "flavour": row.flavour, "idempotency_key": row.idempotency_key,
            **({"level": row.pades_level or "B-B"} if row.format == "pades" else {}),
            "callback_url": row.callback_url, "created_at": _iso(row.created_at),
            "expires_at": _iso(row.expires_at), "finished_at": _iso(row.finished_at),
            "documents": [{"index": d.idx, "name": d.name, "media_type": d.media_type,
                           "size": d.size, "digest": bytes(d.digest).hex(),
                           "digest_algorithm": d.digest_algorithm} for d in docs],
            "signers": [{"step": t.step, "task_id": t.id, "signer_id": t.signer_id,
                         "action": t.action, "status": t.status, "reason": t.reason,
                         "certificate_id": t.certificate_id, "auto_sign_id": t.auto_sign_id,
                         "finished_at": _iso(t.finished_at)} for t in tasks],
        }

    def _close(self, conn: Connection, row: Row[Any], status: str,
               extra: Mapping[str, Any]) -> None:
        """End a pending request: its open tasks are cancelled, the backend is told."""
        now = self._clock()
        conn.execute(update(R).where(R.c.id == row.id).values(
            status=status, finished_at=now, updated_at=now))
        conn.execute(update(T).where(T.c.request_id == row.id,
                                     T.c.status.in_(("waiting", "pending")))
                     .values(status="cancelled" if status != "expired" else "expired",
                             finished_at=now))
        if row.callback_url:
            self._webhooks.enqueue(conn, application_id=int(row.application_id),
                                   url=row.callback_url, event_type=f"sign_request.{status}",
                                   data={"sign_request_id": row.id, "status": status,
                                         "idempotency_key": row.idempotency_key, **extra})

    # -- the phone's side

    def tasks(self, signer_id: int, status: str | None = "pending") -> list[dict[str, Any]]:
        with self._db.engine.connect() as conn:
            due = [r.id for r in conn.execute(_DUE_OF_SIGNER, {
                "signer_id": signer_id, "now": self._clock()}).all()]
        for request_id in due:
            self._expire_if_due(request_id)
        with self._db.engine.connect() as conn:
            if status is None:
                rows = conn.execute(_TASKS_OF_SIGNER, {"signer_id": signer_id}).all()
            else:
                rows = conn.execute(_TASKS_OF_SIGNER_BY_STATUS, {"signer_id": signer_id,
                                                                 "status": status}).all()
            docs = self._documents_by_request(conn, [r.request_id for r in rows])
        return [_task_json(r, docs.get(r.request_id, [])) for r in rows]

    def task(self, signer_id: int, task_id: str) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            row = conn.execute(_TASK_VIEW.where(T.c.id == task_id)).first()
            if row is None or row.signer_id != signer_id:
                raise NotFound("没有这个签名任务")
            docs = self._documents_by_request(conn, [row.request_id])
        return _task_json(row, docs.get(row.request_id, []))

    @staticmethod
    def _documents_by_request(conn: Connection, request_ids: Iterable[str],
                              statement: Select[Any] = _REQUEST_DOCS) -> dict[str, list[Any]]:
        """The documents of these requests in index order, read in one query: their
        descriptions without the content, or with ``_DOCUMENTS_OF`` whole rows."""
        found: dict[str, list[Any]] = {}
        wanted = sorted(set(request_ids))
        if wanted:
            for doc in conn.execute(statement, {"request_ids": wanted}):
                found.setdefault(doc.request_id, []).append(doc)
        return found

    def document(self, signer_id: int, task_id: str, index: int) -> tuple[str, bytes]:
        """A document of one of the signer's tasks, to show before signing."""
        with self._db.engine.connect() as conn:
            task = conn.execute(select(T).where(T.c.id == task_id)).first()
            if task is None or task.signer_id != signer_id:
                raise NotFound("没有这个签名任务")
            doc = conn.execute(select(DOC).where(DOC.c.request_id == task.request_id,
                                                 DOC.c.idx == index)).first()
        if doc is None or doc.content is None:
            raise NotFound("没有这个文档，或只登记了摘要")
        return doc.media_type, bytes(doc.content)

    # -- the phone's view of a document as it is now (issue 7: phones view signed documents)

    def current_document(self, signer_id: int, task_id: str, index: int) -> CurrentDocument:
        """A document of one of the signer's tasks as it is now: the PDF with the signatures
        made so far (pades), or the content and the CMS signature so far (cms-*)."""
        with self._db.engine.connect() as conn:
            task = conn.execute(select(T.c.signer_id, T.c.request_id, R.c.format)
                                .join(R, R.c.id == T.c.request_id)
                                .where(T.c.id == task_id)).first()
            if task is None or task.signer_id != signer_id:
                raise NotFound("没有这个签名任务")
            doc = conn.execute(select(DOC).where(DOC.c.request_id == task.request_id,
                                                 DOC.c.idx == index)).first()
        if doc is None:
            raise NotFound("没有这个文档")
        return CurrentDocument(
            str(task.format), doc.name, doc.media_type,
            bytes(doc.content) if doc.content is not None else None,
            bytes(doc.signature) if doc.signature is not None else None)

    def start_signing(self, device: Actor, task_ids: Sequence[str], *,
                      auto_sign: bool = False, ip: str | None = None) -> dict[str, Any]:
        """Open one co-sign session for the documents of these tasks (one confirmation)."""
        if not 0 < len(task_ids) <= MAX_ITEMS or len(set(task_ids)) != len(task_ids):
            raise ValidationFailed(f"tasks: 1 to {MAX_ITEMS} different task ids")
        signer_id = device.id
        key = self._keys.active_key(signer_id, device.name)
        certificate, chain, info = self._keys.signing_material(key)
        now = self._clock()
        with self._db.engine.connect() as conn:
            rows = conn.execute(_TASKS_TO_SIGN, {"task_ids": list(task_ids)}).all()
            found = {r.id: r for r in rows if r.signer_id == signer_id}
            unknown = [t for t in task_ids if t not in found]
            if unknown:
                raise NotFound(f"没有签名任务 {', '.join(unknown[:5])}")
            for row in found.values():
                if row.status != "pending" or row.r_status != "pending" or \
                        aware(row.expires_at) <= now:
                    raise NotPending(f"签名任务 {row.id} 当前不可签（{row.status}）")
            by_request = self._documents_by_request(
                conn, (r.request_id for r in found.values()), _DOCUMENTS_OF)
        docs = {t: by_request.get(found[t].request_id, []) for t in task_ids}
        items, digests = self._prepare(task_ids, found, docs, (certificate, chain), now)
        if len(digests) > MAX_ITEMS:
            raise ValidationFailed(f"一次最多签署 {MAX_ITEMS} 份文档")
        grant = self._usable_grant(device, len(task_ids)) if auto_sign else None
        shown = [_shown(i, d) for i, d in zip(items, digests, strict=True)]
        context: dict[str, Any] = {"tasks": list(task_ids), "items": items, "auto_sign": grant,
                                   "ip": ip}  # the phone's address, for the evidence report
        renewal = self._keys.renewal_item(key, info)
        if renewal is not None and len(digests) < MAX_ITEMS:
            # The certificate is due: its renewal's proof of possession rides along.
            context["renewal"] = renewal[0]
            digests.append(renewal[1])
            shown.append({"purpose": "certificate-renewal", "digest": renewal[1].hex()})
        opened = self._keys.open_cosign(key=key, kind="sign", digests=digests,
                                        require_pin=grant is None, context=context)
        return {**opened, "items": shown}

    def _prepare(self, task_ids: Sequence[str], tasks: Mapping[str, Row[Any]],
                 docs: Mapping[str, Sequence[Row[Any]]],
                 certificates: tuple[Certificate, list[Certificate]],
                 now: dt.datetime) -> tuple[list[dict[str, Any]], list[bytes]]:
        """The signed attributes (CMS) or the messages (raw) for every document, and the
        digests e the phone co-signs."""
        certificate, chain = certificates
        public = certificate.public_key()
        wanted = "sm3" if isinstance(public, SM2PublicKey) else "sha256"
        items, digests = [], []
        for task_id in task_ids:
            task = tasks[task_id]
            for doc in docs[task_id]:
                if task.format == "raw":
                    items.append({"task": task_id, "doc": doc.idx, "prepared": None})
                    digests.append(public.digest(bytes(doc.content))
                                   if isinstance(public, SM2PublicKey)
                                   else digest(HashAlgorithm.SHA256, bytes(doc.content)))
                    continue
                if task.format == "pades":
                    item, digest_e = _prepare_pades(task, doc, certificate, chain,
                                                    appearance_for=self._appearance_for,
                                                    now=now)
                    items.append(item)
                    digests.append(digest_e)
                    continue
                content = bytes(doc.content) if doc.content is not None else None
                if content is None and doc.digest_algorithm != wanted:
                    raise NotPending(f"文档 {doc.name or doc.idx} 只登记了 "
                                     f"{doc.digest_algorithm} 摘要，与签名人的 "
                                     f"{'SM2' if wanted == 'sm3' else 'RSA'} 密钥不符")
                prepared = cms.prepare(
                    content if content is not None else None, certificate,
                    message_digest=None if content is not None else bytes(doc.digest),
                    detached=task.format == "cms-detached", flavor=task.flavour,
                    signing_time=now, extra_certificates=chain)
                items.append({"task": task_id, "doc": doc.idx, "prepared": prepared.to_dict(),
                              "signed_attributes": base64.b64encode(
                                  prepared.to_be_signed).decode()})
                digests.append(prepared.digest())
        return items, digests

    def _finish_items(self, session: StoredSession, _key: SignerKey,
                      signatures: Sequence[bytes]) -> dict[int, bytes]:
        """The finished signatures of a session's items (by item index), made before the
        closing transaction, which only stores them: that transaction holds the database's
        write lock (SQLite: everyone's), and a batch of 200 CMS signatures takes ~0.3 s to
        assemble.  CMS: the SignedData with this signer (assembling verifies the signature
        against the certificate).  PAdES: the signed PDF — embedding the signature, the
        signature time stamp (B-T), the DSS (B-LT) and the document time stamp (B-LTA) read
        the database and call the TSA."""
        finished: dict[int, bytes] = {}
        for index, (item, signature) in enumerate(zip(session.context["items"], signatures,
                                                      strict=False)):
            if item.get("pdf") is not None:
                finished[index] = self._signed_pdf(item, signature)
            elif item.get("prepared") is not None:
                finished[index] = cms.PreparedSignature.from_dict(item["prepared"]).finish(
                    signature)
        return finished

    def _signed_pdf(self, item: Mapping[str, Any], signature: bytes) -> bytes:
        level = pdfsign.Level(item.get("level", pdfsign.Level.B_B.value))
        refusals: list[ApplianceError] = []

        def stamp(query: bytes) -> bytes:
            assert self._stamp is not None
            try:
                return self._stamp(query)
            except ApplianceError as exc:  # the clock: pyHanko would only say "failed"
                refusals.append(exc)
                raise
        if level.timestamped and self._stamp is None:
            raise PadesLevelUnavailableError("本设备未配置时间戳服务")
        try:
            pdf = pdfsign.PreparedPdf.from_dict(item["pdf"]).finish(
                signature, timestamper=stamp if level.timestamped else None)
            if level in (pdfsign.Level.B_LT, pdfsign.Level.B_LTA):
                assert self._validation is not None
                pdf = pdfsign.extend_pdf(pdf, level, validation=self._validation(),
                                         timestamper=stamp)
        except pdfsign.TimestampFailed as exc:
            raise (refusals[0] if refusals else PadesLevelUnavailableError(str(exc))) from None
        except pdfsign.ValidationDataMissing as exc:
            raise PadesLevelUnavailableError(f"吊销信息暂不可用：{exc}") from None
        return pdf

    def _finish(self, conn: Connection, session: StoredSession, key: SignerKey,
                signatures: Sequence[bytes], prepared: Any = None, /
                ) -> tuple[dict[str, Any], AfterCommit]:
        """Close a sign session: assemble the signatures, move the tasks, advance requests."""
        now = self._clock()
        context = session.context
        grant = context.get("auto_sign")
        task_ids: list[str] = context["tasks"]
        if grant is not None:
            self._count_auto_sign(conn, grant, len(task_ids), now)
        raw: dict[str, dict[str, str]] = {t: {} for t in task_ids}
        documents = len(context["items"])
        made: Mapping[int, bytes] = prepared or {}
        for index, (item, signature) in enumerate(zip(context["items"], signatures[:documents],
                                                      strict=True)):
            raw[item["task"]][str(item["doc"])] = base64.b64encode(signature).decode()
            if item.get("prepared") is not None or item.get("pdf") is not None:
                self._add_signature(conn, item, signature, made.get(index))
        requests: dict[str, int] = {}
        task_requests: dict[str, str] = {}
        task_steps: dict[str, int] = {}
        for task_id in task_ids:
            changed = conn.execute(_TASK_SIGNED, {
                "task_id": task_id, "status": "signed", "device_id": session.device_id,
                "certificate_id": key.certificate_id, "auto_sign_id": grant,
                "finished_at": now, "signatures": json.dumps(raw[task_id])}).rowcount
            if changed != 1:
                raise NotPending(f"签名任务 {task_id} 已不在待签状态")
            task = conn.execute(_TASK_PLACE, {"task_id": task_id}).one()
            requests[task.request_id] = int(task.step)
            task_requests[task_id] = task.request_id
            task_steps[task_id] = int(task.step)
        advanced = {r: self._advance(conn, r, step, now) for r, step in requests.items()}
        events = any(event for _status, event in advanced.values())
        finished = {r: status for r, (status, _event) in advanced.items()}
        entries = _cosign_audit(session, key, grant, items=context["items"],
                                digests=self._digests(session), task_requests=task_requests,
                                task_steps=task_steps, ip=context.get("ip"))

        logged = self._record_within(conn, [
            Entry("signature", "sign-request.cosign", actor_label(_Device(session.device_id)),
                  subject, details) for subject, details in entries])

        def after_commit() -> None:
            logged()
            if events:  # webhooks to deliver now
                self._on_event()
            if context.get("renewal") is not None:
                self._keys.complete_renewal(key, context["renewal"], signatures[documents],
                                            session.device_id)

        return {"tasks": [{"id": t, "status": "signed"} for t in task_ids],
                "requests": [{"id": r, "status": s} for r, s in finished.items()]}, after_commit

    @staticmethod
    def _digests(session: StoredSession) -> list[bytes]:
        return [bytes.fromhex(d) for d in session.state.get("digests", [])]

    def _add_signature(self, conn: Connection, item: Mapping[str, Any],
                       signature: bytes, made: bytes | None = None) -> None:
        """Store an item's signature; ``made``: what :meth:`_finish_items` made of it."""
        if item.get("pdf") is not None:  # PAdES: the signed PDF replaces the previous one
            signed_pdf = made if made is not None else self._signed_pdf(item, signature)
            task = conn.execute(_TASK_PLACE, {"task_id": item["task"]}).one()
            conn.execute(_SET_DOC_SIGNATURE, {"doc_request": task.request_id,
                                              "doc_idx": item["doc"], "signed": signed_pdf})
            return
        signed = made if made is not None else cms.PreparedSignature.from_dict(
            item["prepared"]).finish(signature)
        task = conn.execute(_TASK_PLACE, {"task_id": item["task"]}).one()
        where = {"doc_request": task.request_id, "doc_idx": item["doc"]}
        existing = conn.execute(_DOC_SIGNATURE, where).one().signature
        combined = signed if existing is None else cms.add_signer(bytes(existing), signed)
        conn.execute(_SET_DOC_SIGNATURE, {**where, "signed": combined})

    def _advance(self, conn: Connection, request_id: str, step: int,
                 now: dt.datetime) -> tuple[str, bool]:
        """After a step was signed: the next step's task becomes pending, or the request is
        completed.  The request's status, and whether a webhook event was enqueued."""
        row = conn.execute(_REQUEST, {"request_id": request_id}).one()
        following = conn.execute(_STEP_TASK, {"request_id": request_id,
                                              "step": step + 1}).first()
        if following is not None:
            conn.execute(_TASK_PENDING, {"task_id": following.id})
            conn.execute(_REQUEST_TOUCHED, {"request_id": request_id, "updated_at": now})
            self._notify(conn, following, row.title, now)
            return "pending", False
        conn.execute(_REQUEST_TOUCHED, {"request_id": request_id, "status": "completed",
                                        "finished_at": now, "updated_at": now})
        if row.callback_url:
            self._webhooks.enqueue(conn, application_id=int(row.application_id),
                                   url=row.callback_url, event_type="sign_request.completed",
                                   data={"sign_request_id": request_id, "status": "completed",
                                         "idempotency_key": row.idempotency_key})
            return "completed", True
        return "completed", False

    def reject(self, device: Actor, task_id: str, reason: str) -> dict[str, Any]:
        """The signer declines (a pharmacist rejects a prescription): the request ends."""
        if not isinstance(reason, str) or not 0 < len(reason.strip()) <= MAX_REASON:
            raise ValidationFailed(f"reason: 1 to {MAX_REASON} characters")
        now = self._clock()
        with self._db.transaction() as conn:
            task = conn.execute(select(T).where(T.c.id == task_id)).first()
            if task is None or task.signer_id != device.id:
                raise NotFound("没有这个签名任务")
            request = conn.execute(select(R).where(R.c.id == task.request_id)).one()
            if task.status != "pending" or request.status != "pending":
                raise NotPending(f"签名任务当前不可驳回（{task.status}）")
            conn.execute(update(T).where(T.c.id == task_id).values(
                status="rejected", reason=reason.strip(), device_id=device.name,
                finished_at=now))
            self._close(conn, request, "rejected",
                        {"reason": reason.strip(), "step": task.step,
                         "signer_id": task.signer_id})
        self._record("signature", "sign-request.reject", device, task.request_id,
                     {"task_id": task_id, "reason": reason.strip()})
        self._on_event()
        return self.task(device.id, task_id)

    # -- auto-sign authorizations

    def grant_auto_sign(self, device: Actor, *, minutes: int, max_count: int,
                        pin_proof: bytes) -> dict[str, Any]:
        """Authorize PIN-less co-signing for a window and a count.  The PIN is checked here,
        and the answer carries the unwrap key the phone keeps for the window (so a phone that
        restarted can still use it)."""
        if not isinstance(minutes, int) or isinstance(minutes, bool) or \
                not 0 < minutes <= MAX_AUTO_SIGN.total_seconds() // 60:
            raise ValidationFailed("minutes: 1 to 1440")
        if not isinstance(max_count, int) or isinstance(max_count, bool) or \
                not 0 < max_count <= MAX_AUTO_SIGN_COUNT:
            raise ValidationFailed(f"max_count: 1 to {MAX_AUTO_SIGN_COUNT}")
        key = self._keys.active_key(device.id, device.name)
        unwrap = self._keys.check_pin(key, pin_proof)
        now = self._clock()
        grant_id = "as_" + secrets.token_urlsafe(15)
        with self._db.transaction() as conn:
            conn.execute(insert(G).values(
                id=grant_id, signer_id=device.id, device_id=device.name, not_before=now,
                not_after=now + dt.timedelta(minutes=minutes), max_count=max_count,
                used_count=0, status="active", created_at=now))
            conn.execute(insert(M).values(
                signer_id=device.id, kind="auto-sign", title="已开启免密签名",
                body=f"{minutes} 分钟内最多 {max_count} 个签名任务", created_at=now))
        self._record("signature", "auto-sign.grant", device, f"signer:{device.id}",
                     {"id": grant_id, "minutes": minutes, "max_count": max_count})
        return {**self._grant(grant_id), "unwrap": unwrap.hex()}

    def revoke_auto_sign(self, device: Actor, grant_id: str) -> dict[str, Any]:
        with self._db.transaction() as conn:
            row = conn.execute(select(G).where(G.c.id == grant_id)).first()
            if row is None or row.signer_id != device.id:
                raise NotFound("没有这个免密签名授权")
            conn.execute(update(G).where(G.c.id == grant_id, G.c.status == "active")
                         .values(status="revoked", revoked_at=self._clock()))
        self._record("signature", "auto-sign.revoke", device, f"signer:{device.id}",
                     {"id": grant_id})
        return self._grant(grant_id)

    def auto_sign_grants(self, signer_id: int) -> list[dict[str, Any]]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(_GRANTS_OF_SIGNER, {"signer_id": signer_id}).all()
        return [self._grant_json(r) for r in rows]

    def _grant(self, grant_id: str) -> dict[str, Any]:
        with self._db.engine.connect() as conn:
            return self._grant_json(conn.execute(select(G).where(G.c.id == grant_id)).one())

    def _grant_json(self, row: Row[Any]) -> dict[str, Any]:
        now = self._clock()
        status = row.status
        if status == "active" and (aware(row.not_after) <= now or row.used_count >= row.max_count):
            status = "ended"
        return {"id": row.id, "device_id": row.device_id, "status": status,
                "not_before": _iso(row.not_before), "not_after": _iso(row.not_after),
                "max_count": row.max_count, "used_count": row.used_count,
                "created_at": _iso(row.created_at), "revoked_at": _iso(row.revoked_at)}

    def _usable_grant(self, device: Actor, count: int) -> str:
        now = self._clock()
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(G).where(G.c.signer_id == device.id,
                                                G.c.device_id == device.name,
                                                G.c.status == "active")).all()
        for row in rows:
            if aware(row.not_before) <= now < aware(row.not_after) and \
                    row.used_count + count <= row.max_count:
                return str(row.id)
        raise NotPending("没有可用的免密签名授权（已过期、次数已用完或已撤销），请输入 PIN 签名",
                         )

    def _count_auto_sign(self, conn: Connection, grant_id: str, count: int,
                         now: dt.datetime) -> None:
        changed = conn.execute(update(G).where(
            G.c.id == grant_id, G.c.status == "active", G.c.not_after > now,
            G.c.used_count + count <= G.c.max_count).values(
                used_count=G.c.used_count + count)).rowcount
        if changed != 1:
            raise NotPending("免密签名授权已结束（时间或次数），请输入 PIN 重新签名")

    # -- the message center

    def _notify_step(self, conn: Connection, request_id: str, step: int, title: str,
                     now: dt.datetime) -> None:
        task = conn.execute(_STEP_TASK, {"request_id": request_id, "step": step}).first()
        if task is not None:
            self._notify(conn, task, title, now)

    @staticmethod
    def _notify(conn: Connection, task: Row[Any], title: str, now: dt.datetime) -> None:
        """The message-center entry telling a task's signer it is their turn."""
        label = "待审核" if task.action == "review" else "待签名"
        conn.execute(_INSERT_MESSAGE, {"signer_id": task.signer_id, "kind": "task",
                                       "title": f"{label}：{title or '签名请求'}", "body": "",
                                       "task_id": task.id, "created_at": now})

    def messages(self, signer_id: int, *, unread_only: bool = False,
                 limit: int = 50) -> list[dict[str, Any]]:
        query = select(M).where(M.c.signer_id == signer_id)
        if unread_only:
            query = query.where(M.c.read_at.is_(None))
        with self._db.engine.connect() as conn:
            rows = conn.execute(query.order_by(M.c.id.desc()).limit(limit)).all()
        return [{"id": r.id, "kind": r.kind, "title": r.title, "body": r.body,
                 "task_id": r.task_id, "created_at": _iso(r.created_at),
                 "read_at": _iso(r.read_at)} for r in rows]

    def mark_read(self, signer_id: int, message_id: int) -> None:
        with self._db.transaction() as conn:
            changed = conn.execute(update(M).where(M.c.id == message_id,
                                                   M.c.signer_id == signer_id,
                                                   M.c.read_at.is_(None))
                                   .values(read_at=self._clock())).rowcount
            if not changed and conn.execute(select(M.c.id).where(
                    M.c.id == message_id, M.c.signer_id == signer_id)).first() is None:
                raise NotFound("没有这条消息")

    def _record(self, category: str, action: str, actor: Actor, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), subject, dict(details))

    def _record_within(self, conn: Connection, entries: Sequence[Entry]) -> AfterCommit:
        """Audit entries of a change, written in its transaction when the hook is the audit
        log itself (they commit with the change, without a commit of their own); any other
        hook gets them after the commit, through what this returns."""
        if isinstance(self._audit, AuditLog):
            self._audit.append_within(conn, entries)
            return lambda: None
        hook = self._audit

        def later() -> None:
            if hook is not None:
                for entry in entries:
                    hook(entry.category, entry.action, entry.actor, entry.subject,
                         dict(entry.details))
        return later


AUDIT_DIGESTS_PER_ENTRY = 100


def _cosign_audit(session: StoredSession, key: SignerKey, grant: str | None, *,
                  items: Sequence[Mapping[str, Any]], digests: Sequence[bytes],
                  task_requests: Mapping[str, str], task_steps: Mapping[str, int] | None = None,
                  ip: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The audit entries of one finished co-sign session: one per task (subject: its sign
    request), each with the digests e co-signed for its documents (at most
    AUDIT_DIGESTS_PER_ENTRY per entry: a long request takes several parts), the device, key,
    certificate and auto-sign authorization, and the session that ties a batch together; for
    the evidence report also the step, the phone's IP and how the signer confirmed (the PIN,
    checked by the co-sign round, or the auto-sign authorization instead)."""
    per_task: dict[str, list[tuple[int, str]]] = {}
    for item, digest_e in zip(items, digests, strict=False):
        per_task.setdefault(item["task"], []).append((int(item["doc"]), digest_e.hex()))
    entries = []
    for task_id, documents in per_task.items():
        parts = [documents[i:i + AUDIT_DIGESTS_PER_ENTRY]
                 for i in range(0, len(documents), AUDIT_DIGESTS_PER_ENTRY)]
        for number, part in enumerate(parts, 1):
            details: dict[str, Any] = {
                "task_id": task_id, "signer_id": key.signer_id,
                "device_id": session.device_id, "key_id": key.id,
                "certificate_id": key.certificate_id, "auto_sign_id": grant,
                "session": session.id, "tasks_in_session": len(per_task),
                "step": (task_steps or {}).get(task_id), "ip": ip,
                "confirmation": "auto-sign" if grant else "pin",
                "documents": [{"index": i, "e": e} for i, e in part]}
            if len(parts) > 1:
                details["part"] = f"{number}/{len(parts)}"
            entries.append((task_requests[task_id], details))
    return entries


def _prepare_pades(task: Row[Any], doc: Row[Any], certificate: Certificate,
                   chain: Sequence[Certificate], *, appearance_for: AppearanceSource,
                   now: dt.datetime) -> tuple[dict[str, Any], bytes]:
    """The next PAdES signature of a document: over the PDF as the previous signers left it
    (an incremental update each), in a field named after the step."""
    base = bytes(doc.signature) if doc.signature is not None else bytes(doc.content)
    try:
        appearance = appearance_for(int(task.signer_id), int(task.step), now, base)
        # B-T and above: room for the timestamp token, asked for when the signature exists
        level = pdfsign.Level(task.pades_level or pdfsign.Level.B_B.value)
        prepared = pdfsign.prepare_pdf(base, certificate, chain=chain,
                                       field=f"medsign-step-{task.step + 1}",
                                       appearance=appearance, level=level)
    except pdfsign.PdfSignError as exc:
        raise NotPending(f"文档 {doc.name or doc.idx} 无法签署：{exc}") from None
    item = {"task": task.id, "doc": doc.idx, "prepared": None, "pdf": prepared.to_dict(),
            "level": level.value,
            "signed_attributes": base64.b64encode(prepared.to_be_signed).decode()}
    return item, prepared.digest()


def _shown(item: Mapping[str, Any], digest_e: bytes) -> dict[str, Any]:
    """What the phone is told about one digest it co-signs: for CMS also the signed
    attributes, so it can recompute e = SM3(Z || attributes) and check that their message
    digest is the hash of the document it showed."""
    shown = {"task_id": item["task"], "document": item["doc"], "digest": digest_e.hex()}
    if item.get("signed_attributes") is not None:
        shown["signed_attributes"] = item["signed_attributes"]
    return shown


class PadesLevelUnavailableError(ApplianceError):
    """A PAdES level above B-B could not be reached now (time stamp or revocation data): the
    phone sends the same message again later; nothing was stored."""

    code, status, title = "pades-level-unavailable", 503, "时间戳或吊销信息暂不可用，请稍后重试"


@dataclasses.dataclass(frozen=True)
class _Device:
    name: str
    kind: str = "device"
    id: int = 0
