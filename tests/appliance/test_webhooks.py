"""Webhooks (both engines): the outbox commits with the change it reports; events are POSTed
to a real loopback receiver that checks the HMAC-SM3 signature independently (gmssl's SM3);
failures are retried with growing delays until delivered or given up (alerted); a delivery
whose worker died is sent again after its claim expires, with the same event id."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.errors import ValidationFailed
from appliance.services import webhooks
from appliance.services.applications import ApplicationService, decode_secret
from appliance.services.webhooks import WebhookService, check_url
from appliance.storage import Database, schema
from tests.appliance.auth.conftest import SECURITY
from tests.support.loopback_http import loopback_url, serve_loopback_server
from tests.support.vendor_ca import gm_hmac_sm3


class Receiver:
    """A hospital backend's webhook endpoint: answers ``statuses`` in turn (then 200) and keeps
    what it received, after checking the signature with the secret it holds.  Serves from
    construction until :meth:`stop` (``server`` stays public: mobile/test_flows.py shuts it
    down early)."""

    def __init__(self, secret: bytes) -> None:
        self.secret, self.statuses, self.received = secret, [], []  # type: ignore[var-annotated]
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers["X-Medsign-Signature"]
                signature = base64.b64decode(header.split("signature=", 1)[1])
                message = (f"{self.headers['X-Medsign-Timestamp']}\n"
                           f"{self.headers['X-Medsign-Event-Id']}\n").encode() + body
                valid = signature == gm_hmac_sm3(receiver.secret, message)
                receiver.received.append((self.headers["X-Medsign-Event-Id"],
                                          json.loads(body), valid))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._serving = contextlib.ExitStack()
        self.server = self._serving.enter_context(serve_loopback_server(Handler))
        self.url = f"{loopback_url(self.server)}/hooks/medsign"

    def stop(self) -> None:
        self._serving.close()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def setup(database: Database) -> Iterator[tuple[WebhookService, Receiver, Clock, int, list[Any]]]:
    holder = KeyHolder(KekStore(database))
    holder.adopt(Keyring(new_kek()))
    apps = ApplicationService(database, holder, SECURITY)
    credential, secret = apps.create(None, name="HIS", scopes="sign:request")
    receiver = Receiver(decode_secret(secret))
    clock, alerts = Clock(), []
    service = WebhookService(database, apps, clock=clock,
                             audit=lambda *entry: alerts.append(entry))
    yield service, receiver, clock, credential.id, alerts
    receiver.stop()


def _enqueue(database: Database, service: WebhookService, app_id: int, url: str,
             n: int = 1) -> str:
    with database.transaction() as conn:
        return service.enqueue(conn, application_id=app_id, url=url,
                               event_type="sign_request.completed",
                               data={"sign_request": f"sr-{n}", "status": "completed"})


def test_delivered_signed(database: Database, setup: Any) -> None:
    service, receiver, _clock, app_id, _alerts = setup
    event_id = _enqueue(database, service, app_id, receiver.url)
    assert service.deliver_due() == (1, 0)
    [(received_id, body, valid)] = receiver.received
    assert received_id == event_id and valid and body["data"]["sign_request"] == "sr-1"
    assert service.deliver_due() == (0, 0)  # delivered once
    assert service.deliveries(app_id)[0]["status"] == "delivered"


def test_rolled_back_changes_send_nothing(database: Database, setup: Any) -> None:
    service, receiver, _clock, app_id, _alerts = setup
    with pytest.raises(RuntimeError), database.transaction() as conn:
        service.enqueue(conn, application_id=app_id, url=receiver.url, event_type="x", data={})
        raise RuntimeError("the change failed")
    assert service.deliver_due() == (0, 0) and receiver.received == []


def test_retries_with_backoff_then_delivered(database: Database, setup: Any) -> None:
    service, receiver, clock, app_id, _alerts = setup
    receiver.statuses = [500, 503]
    event_id = _enqueue(database, service, app_id, receiver.url)
    assert service.deliver_due() == (0, 1)
    assert service.deliver_due() == (0, 0)  # not due yet
    clock.now += webhooks.FIRST_RETRY
    assert service.deliver_due() == (0, 1)
    clock.now += webhooks.FIRST_RETRY  # the second delay is twice the first
    assert service.deliver_due() == (0, 0)
    clock.now += webhooks.FIRST_RETRY
    assert service.deliver_due() == (1, 0)
    assert [r[0] for r in receiver.received] == [event_id] * 3  # one event id for all tries


def test_gives_up_and_alerts(database: Database, setup: Any) -> None:
    service, _receiver, clock, app_id, alerts = setup
    _enqueue(database, service, app_id, "http://127.0.0.1:9/nobody-listens")
    for _ in range(webhooks.MAX_ATTEMPTS):
        service.deliver_due()
        clock.now += webhooks.MAX_RETRY
    assert service.deliveries(app_id)[0]["status"] == "failed"
    assert [a[1] for a in alerts] == ["webhook.failed"]


def test_a_dead_worker_s_claim_expires(database: Database, setup: Any) -> None:
    service, receiver, clock, app_id, _alerts = setup
    event_id = _enqueue(database, service, app_id, receiver.url)
    assert len(service._claim(10)) == 1  # claimed, then the worker died before posting
    assert service.deliver_due() == (0, 0)
    clock.now += dt.timedelta(seconds=webhooks.CLAIM_SECONDS)
    assert service.deliver_due() == (1, 0)
    assert receiver.received[0][0] == event_id
    with database.engine.connect() as conn:
        attempts = conn.execute(select(schema.webhook_deliveries.c.attempts)).scalar()
    assert attempts == 2


def test_urls_are_checked() -> None:
    for bad in ("ftp://x/y", "http:///nohost", "http://user:pw@host/x", "https://h/x#frag"):
        with pytest.raises(ValidationFailed):
            check_url(bad)
    assert check_url("https://his.hospital.local/hooks") == "https://his.hospital.local/hooks"
