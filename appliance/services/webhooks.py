"""Webhooks to the hospital's systems: events (a sign request completed, a seal was applied,
...) delivered at least once, signed, retried with backoff.

Outbox: :meth:`WebhookService.enqueue` writes the event in the same database transaction as
the change it reports (pass that transaction's connection), so an acknowledged change always
has its event and a rolled-back one never does.  :meth:`WebhookService.deliver_due` (run by
``medsign worker`` and after enqueueing) claims due events with a lease (``CLAIM_SECONDS``),
POSTs them, and marks them delivered on any 2xx; otherwise it retries after 30 s, 1 min,
2 min, ... up to 6 h between attempts, and gives up after ``MAX_ATTEMPTS`` with an alert in the
audit log.  A worker that dies mid-delivery leaves the claim to expire, and the event is sent
again: receivers de-duplicate by ``X-Medsign-Event-Id``.

Request to the receiver::

    POST <url>
    Content-Type: application/json
    X-Medsign-Event-Id: <uuid>            (the same on every retry)
    X-Medsign-Event-Type: <type>
    X-Medsign-Timestamp: <unix seconds>
    X-Medsign-Signature: MEDSIGN-HMAC-SM3 keyId=<application key id>, signature=<base64>

    {"id": <uuid>, "type": <type>, "created_at": <ISO time>, "data": {...}}

``signature`` is HMAC-SM3, under the application credential's secret (the one the backend
already holds to call the API), over ``timestamp + "\\n" + event id + "\\n" + body``.

Threat model: the receiver must check the signature and the timestamp (a recent one; the same
event id again is a retry, not a new event).  Webhook URLs are set by the hospital's own
systems with their credential; only http(s) URLs with a host are accepted.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from appliance.errors import NotFound, Sealed, ValidationFailed
from appliance.services._time import utc_now
from appliance.services.applications import ApplicationService
from appliance.storage import Database, schema
from signcore.hashes import HashAlgorithm, hmac

LOG = logging.getLogger("medsign.webhooks")
W = schema.webhook_deliveries
CLAIM_SECONDS = 120
FIRST_RETRY = dt.timedelta(seconds=30)
MAX_RETRY = dt.timedelta(hours=6)
MAX_ATTEMPTS = 15  # about two days of retries
TIMEOUT_SECONDS = 10.0
MAX_URL = 2048
AuditHook = Callable[[str, str, str, str, dict[str, Any]], object]
Poster = Callable[[str, bytes, dict[str, str]], int]  # url, body, headers -> HTTP status


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if len(url) > MAX_URL or parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.username or parts.password or parts.fragment:
        raise ValidationFailed("webhook URL: an http(s) URL with a host, no user "
                               "information, no fragment")
    return url


def post_json(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST over http.client with a timeout; the HTTP status (OSError when unreachable)."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=TIMEOUT_SECONDS)
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname or "", parts.port,
                                        timeout=TIMEOUT_SECONDS))
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from None
    finally:
        connection.close()


def signature_headers(*, key_id: str, secret: bytes, event_id: str, event_type: str,
                      body: bytes, timestamp: int) -> dict[str, str]:
    message = f"{timestamp}\n{event_id}\n".encode() + body
    signature = base64.b64encode(hmac(HashAlgorithm.SM3, secret, message)).decode()
    return {"Content-Type": "application/json", "X-Medsign-Event-Id": event_id,
            "X-Medsign-Event-Type": event_type, "X-Medsign-Timestamp": str(timestamp),
            "X-Medsign-Signature": f"MEDSIGN-HMAC-SM3 keyId={key_id}, signature={signature}"}


class Dispatcher:
    """Delivers webhooks right after a change enqueued them, from a short-lived background
    thread of the serving process: :meth:`nudge` starts one if none runs; it delivers what
    is due, waits ``linger`` seconds for another nudge, and ends.  Retries later than that are
    ``medsign worker``'s (every pass delivers what is due)."""

    def __init__(self, service: WebhookService, linger: float = 2.0) -> None:
        self._service, self._linger = service, linger
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False

    def nudge(self) -> None:
        self._wake.set()
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="medsign-webhooks", daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                self._service.deliver_due()
                if not self._wake.wait(self._linger):
                    with self._lock:
                        if not self._wake.is_set():
                            self._running = False
                            return
        except Exception:  # the worker's next pass retries
            LOG.exception("webhook delivery failed")
            with self._lock:
                self._running = False


class WebhookService:
    def __init__(self, database: Database, applications: ApplicationService, *,
                 audit: AuditHook | None = None, post: Poster = post_json,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._db, self._apps, self._audit = database, applications, audit
        self._post, self._clock = post, clock

    def enqueue(self, conn: Connection, *, application_id: int, url: str, event_type: str,
                data: Mapping[str, Any]) -> str:
        """Record an event in the caller's transaction; its id."""
        event_id = str(uuid.uuid4())
        now = self._clock()
        payload = json.dumps({"id": event_id, "type": event_type, "created_at": now.isoformat(),
                              "data": dict(data)}, ensure_ascii=False, sort_keys=True,
                             separators=(",", ":"))
        conn.execute(insert(W).values(
            event_id=event_id, application_id=application_id, url=check_url(url),
            event_type=event_type, payload=payload, status="pending", attempts=0,
            next_attempt_at=now, created_at=now))
        return event_id

    def _claim(self, limit: int) -> list[Any]:
        now = self._clock()
        with self._db.transaction() as conn:
            query = select(W).where(W.c.status == "pending", W.c.next_attempt_at <= now) \
                .order_by(W.c.next_attempt_at, W.c.id).limit(limit)
            if self._db.kind == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                conn.execute(update(W).where(W.c.id.in_([r.id for r in rows])).values(
                    attempts=W.c.attempts + 1,
                    next_attempt_at=now + dt.timedelta(seconds=CLAIM_SECONDS)))
        return list(rows)

    def deliver_due(self, limit: int = 50) -> tuple[int, int]:
        """Deliver what is due: (delivered, failed this round)."""
        delivered = failed = 0
        for row in self._claim(limit):
            error = self._send(row)
            if error is None:
                delivered += 1
                self._finish(row.id, status="delivered", delivered_at=self._clock(),
                             last_error=None)
            else:
                failed += 1
                self._retry_later(row, error)
        return delivered, failed

    def _send(self, row: Any) -> str | None:
        try:
            credential, secret = self._apps.secret_of(int(row.application_id))
        except (NotFound, Sealed) as exc:  # sealed, or the credential is gone: retry later
            return f"cannot sign: {exc}"
        body = row.payload.encode()
        headers = signature_headers(key_id=credential.key_id, secret=secret,
                                    event_id=row.event_id, event_type=row.event_type,
                                    body=body, timestamp=int(time.time()))
        try:
            status = self._post(row.url, body, headers)
        except OSError as exc:
            return f"unreachable: {exc}"
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _retry_later(self, row: Any, error: str) -> None:
        attempts = int(row.attempts) + 1
        if attempts >= MAX_ATTEMPTS:
            self._finish(row.id, status="failed", last_error=error)
            if self._audit is not None:
                self._audit("system", "webhook.failed", "webhooks", row.event_id,
                            {"url": row.url, "event_type": row.event_type, "error": error,
                             "attempts": attempts})
            return
        delay = min(FIRST_RETRY * 2 ** (attempts - 1), MAX_RETRY)
        self._finish(row.id, status="pending", next_attempt_at=self._clock() + delay,
                     last_error=error)

    def _finish(self, row_id: int, **values: Any) -> None:
        with self._db.transaction() as conn:
            conn.execute(update(W).where(W.c.id == row_id).values(**values))

    def deliveries(self, application_id: int, limit: int = 100) -> list[dict[str, Any]]:
        with self._db.engine.connect() as conn:
            rows = conn.execute(select(W).where(W.c.application_id == application_id)
                                .order_by(W.c.id.desc()).limit(limit)).all()
        return [{"event_id": r.event_id, "type": r.event_type, "status": r.status,
                 "attempts": r.attempts, "last_error": r.last_error} for r in rows]
