"""QR login and QR signing for PC software (扫码授权认证 / 扫码授权电子签名).

The PC (through the hospital's application credential) opens a session and shows its QR code;
the signer's bound phone scans it, sees what is asked, and confirms:

- ``login``: the phone co-signs an assertion the server wrote — the session id, its random
  challenge, the signer, the certificate, the time — and the PC receives the assertion, the
  SM2 signature and the certificate: it can check them itself (the signature verifies with the
  certificate, the certificate chains to the hospital's CA), as well as trust the appliance's
  word.
- ``sign``: the documents the PC registered become a sign request for the signer who scanned;
  the phone co-signs it at once, and the PC receives the signatures.

Threat model: a session is single use — one phone can scan it (a second scan is refused), it
is confirmed once (the co-sign session and the state change are compare-and-swapped) and it
expires (2 minutes for login, 10 for signing).  The challenge is 32 random bytes chosen here,
so an assertion cannot be replayed into another session.  Only the application that opened a
session can read it.  The QR code carries only the session id: scanning it without a bound
phone gives nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import segno
from sqlalchemy import Connection, Row, insert, select, update

from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.services._time import aware, utc_now
from appliance.services.admins import Actor, actor_label
from appliance.services.cosign_sessions import StoredSession
from appliance.services.sign_requests import (
    FLAVOURS,
    FORMATS,
    SignRequestService,
    parse_documents,
)
from appliance.services.signer_keys import AfterCommit, SignerKey, SignerKeyService
from appliance.storage import Database, schema

Q = schema.qr_sessions
SG = schema.signers
PURPOSES = ("login", "sign")
LIFETIME = {"login": dt.timedelta(minutes=2), "sign": dt.timedelta(minutes=10)}
MAX_WAIT_SECONDS = 25
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]


class QrSessionGone(Conflict):
    code, title = "qr-session-gone", "二维码已失效"


def canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def qr_image(uri: str, kind: str) -> tuple[str, bytes]:
    """The QR code of ``uri`` as (media type, bytes): SVG or PNG."""
    code = segno.make(uri, error="m")
    out = io.BytesIO()
    if kind == "png":
        code.save(out, kind="png", scale=6, border=2)
        return "image/png", out.getvalue()
    code.save(out, kind="svg", scale=6, border=2, xmldecl=False)
    return "image/svg+xml", out.getvalue()


class _App:
    """The application that opened a QR session, as the actor of the sign request it makes."""

    kind = "app"

    def __init__(self, application_id: int) -> None:
        self.id, self.name = application_id, f"qr:{application_id}"


class QrService:
    def __init__(self, database: Database, keys: SignerKeyService,
                 requests: SignRequestService, *, audit: AuditHook | None = None,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._keys, self._requests = database, keys, requests
        self._audit, self._clock = audit, clock
        keys.register_finisher("qr-login", self._finish_login)

    # -- the PC's side

    def create(self, actor: Actor, purpose: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if purpose not in PURPOSES:
            raise ValidationFailed("purpose 应为 login 或 sign")
        payload: dict[str, Any] = {}
        if purpose == "sign":
            fmt, flavour = body.get("format", "cms-detached"), body.get("flavour", "rfc5652")
            if fmt not in FORMATS or flavour not in FLAVOURS:
                raise ValidationFailed("format/flavour 取值无效")
            parse_documents(body.get("documents"), fmt)  # refused now, not at the scan
            title = body.get("title", "")
            if not isinstance(title, str) or len(title) > 200:
                raise ValidationFailed("title: at most 200 characters")
            payload = {"title": title, "format": fmt, "flavour": flavour,
                       "documents": body["documents"]}
        now = self._clock()
        session_id = str(uuid.uuid4())
        with self._db.transaction() as conn:
            conn.execute(insert(Q).values(
                id=session_id, application_id=actor.id, purpose=purpose,
                challenge=os.urandom(32), payload=json.dumps(payload), status="waiting",
                expires_at=now + LIFETIME[purpose], created_at=now))
            answer = self._json(conn, session_id)
        self._record("login" if purpose == "login" else "signature", "qr.create", actor,
                     session_id, {"purpose": purpose})
        return answer

    def get(self, actor: Actor, session_id: str, wait: int = 0) -> dict[str, Any]:
        """The session's state; with ``wait``, block up to that many seconds for a change
        (long poll: the PC asks again with the status it has seen)."""
        deadline = time.monotonic() + min(max(wait, 0), MAX_WAIT_SECONDS)
        seen = None
        while True:
            with self._db.engine.connect() as conn:
                row = self._owned(conn, actor, session_id)
                answer = self._json(conn, session_id)
            if seen is None:
                seen = answer["status"]
            if answer["status"] != seen or answer["status"] in ("confirmed", "cancelled",
                                                                 "expired", "rejected") \
                    or time.monotonic() >= deadline:
                return answer
            del row
            time.sleep(0.2)

    def image(self, actor: Actor, session_id: str, kind: str) -> tuple[str, bytes]:
        with self._db.engine.connect() as conn:
            self._owned(conn, actor, session_id)
        return qr_image(self.uri(session_id), kind)

    @staticmethod
    def uri(session_id: str) -> str:
        return f"medsign://qr?session={session_id}"

    def _owned(self, conn: Connection, actor: Actor, session_id: str) -> Row[Any]:
        row = conn.execute(select(Q).where(Q.c.id == session_id)).first()
        if row is None or row.application_id != actor.id:
            raise NotFound("没有这个扫码会话")
        return row

    def _json(self, conn: Connection, session_id: str) -> dict[str, Any]:
        row = conn.execute(select(Q).where(Q.c.id == session_id)).one()
        status = row.status
        if status in ("waiting", "scanned") and aware(row.expires_at) <= self._clock() and \
                row.sign_request_id is None:
            status = "expired"
        answer: dict[str, Any] = {
            "id": row.id, "purpose": row.purpose, "status": status, "uri": self.uri(row.id),
            "expires_at": aware(row.expires_at).isoformat(), "signer_id": row.signer_id,
            "sign_request_id": row.sign_request_id}
        if row.result:
            answer["assertion"] = json.loads(row.result)
        if row.sign_request_id is not None:
            request = conn.execute(select(schema.sign_requests.c.status).where(
                schema.sign_requests.c.id == row.sign_request_id)).one()
            answer["sign_request_status"] = request.status
            if request.status == "completed":
                answer["status"] = "confirmed"
            elif request.status in ("rejected", "cancelled", "expired"):
                answer["status"] = request.status
        return answer

    # -- the phone's side

    def scan(self, device: Actor, session_id: str) -> dict[str, Any]:
        """The phone read the QR code: it is this phone's session now; what is asked."""
        now = self._clock()
        with self._db.transaction() as conn:
            row = conn.execute(select(Q).where(Q.c.id == session_id)).first()
            if row is None:
                raise NotFound("没有这个扫码会话")
            if row.status != "waiting" or aware(row.expires_at) <= now:
                raise QrSessionGone("二维码已被扫描、已使用或已过期，请在电脑上刷新二维码")
            conn.execute(update(Q).where(Q.c.id == session_id, Q.c.status == "waiting")
                         .values(status="scanned", signer_id=device.id, device_id=device.name,
                                 scanned_at=now))
            app = conn.execute(select(schema.applications.c.name).where(
                schema.applications.c.id == row.application_id)).one()
        payload = json.loads(row.payload)
        self._record("login", "qr.scan", device, session_id, {"purpose": row.purpose})
        return {"id": session_id, "purpose": row.purpose, "application": app.name,
                "title": payload.get("title", ""),
                "documents": [{"name": d.get("name", ""), "media_type": d.get("media_type")}
                              for d in payload.get("documents", [])],
                "expires_at": aware(row.expires_at).isoformat()}

    def confirm(self, device: Actor, session_id: str) -> dict[str, Any]:
        """The signer agreed: the co-sign session that proves it (login: over the assertion;
        sign: over the documents, as a sign request of this signer)."""
        row = self._scanned_by(device, session_id)
        key = self._keys.active_key(device.id, device.name)
        if row.purpose == "sign":
            return self._confirm_sign(device, row)
        certificate = self._keys.certificate(key)
        now = self._clock()
        assertion = {"v": 1, "type": "medsign.qr-login", "session": session_id,
                     "challenge": bytes(row.challenge).hex(), "signer_id": device.id,
                     "device_id": device.name,
                     "certificate_serial": f"{certificate.serial_number:x}",
                     "issued_at": now.isoformat()}
        public = certificate.public_key()
        digest = public.digest(canonical(assertion))  # type: ignore[attr-defined]
        return self._keys.open_cosign(
            key=key, kind="qr-login", digests=[digest], require_pin=True,
            context={"qr": session_id, "assertion": assertion,
                     "certificate": base64.b64encode(certificate.der).decode()})

    def _confirm_sign(self, device: Actor, row: Row[Any]) -> dict[str, Any]:
        payload = json.loads(row.payload)
        created, _ = self._requests.create(
            _App(int(row.application_id)),
            {**payload, "signers": [{"signer_id": device.id, "action": "sign"}],
             "expires_in": 600}, f"qr:{row.id}")
        with self._db.transaction() as conn:
            changed = conn.execute(update(Q).where(Q.c.id == row.id, Q.c.status == "scanned",
                                                   Q.c.sign_request_id.is_(None))
                                   .values(sign_request_id=created["id"])).rowcount
        if changed != 1 and created["id"] != row.sign_request_id:
            raise QrSessionGone("该二维码已确认过")
        task_id = created["signers"][0]["task_id"]
        return self._requests.start_signing(device, [task_id])

    def _scanned_by(self, device: Actor, session_id: str) -> Row[Any]:
        with self._db.engine.connect() as conn:
            row = conn.execute(select(Q).where(Q.c.id == session_id)).first()
        if row is None or row.device_id != device.name:
            raise NotFound("没有这个扫码会话")
        if row.status != "scanned" or aware(row.expires_at) <= self._clock():
            raise QrSessionGone("二维码已使用或已过期，请在电脑上刷新二维码")
        return row

    def _finish_login(self, conn: Connection, session: StoredSession, key: SignerKey,
                      signatures: Sequence[bytes], _prepared: Any = None
                      ) -> tuple[dict[str, Any], AfterCommit]:
        qr_id = session.context["qr"]
        # (no second connection here: on SQLite it would wait for this transaction)
        result = {"assertion": session.context["assertion"],
                  "signature": base64.b64encode(signatures[0]).decode(),
                  "certificate": session.context["certificate"]}
        changed = conn.execute(update(Q).where(Q.c.id == qr_id, Q.c.status == "scanned")
                               .values(status="confirmed", result=json.dumps(result),
                                       confirmed_at=self._clock())).rowcount
        if changed != 1:
            raise QrSessionGone("该二维码已确认过或已失效")

        def after_commit() -> None:
            self._record("login", "qr.login", _DeviceActor(session.device_id), qr_id,
                         {"signer_id": key.signer_id, "certificate_id": key.certificate_id})

        return {"qr": {"id": qr_id, "status": "confirmed"}}, after_commit

    def _record(self, category: str, action: str, actor: Actor, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), subject, dict(details))


class _DeviceActor:
    kind = "device"
    id = 0

    def __init__(self, name: str) -> None:
        self.name = name
