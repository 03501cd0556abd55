"""Fixtures of the SDK suites: the whole appliance (tests.appliance.mobile's ``hospital``: an
SM2 built-in CA, a doctor and a pharmacist, a backend credential) served over real HTTP on a
loopback port by a threaded wsgiref server, and the SDK's clients pointed at it.  The database
fixture runs every integration test on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from typing import Any

import pytest

from medsign_sdk import BackendClient, MemoryStorage, PhoneClient
from tests.appliance.conftest import database, database_url, postgres_cluster  # noqa: F401
from tests.appliance.mobile.conftest import Hospital, holder, hospital  # noqa: F401

PIN = "246810"


class _ThreadingServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclasses.dataclass
class Served:
    hospital: Hospital
    url: str
    backend: BackendClient

    def phone(self, signer_id: int, *, enroll: bool = True, pin: str = PIN) -> PhoneClient:
        """A new phone activated for the signer (and enrolled with ``pin``)."""
        phone = PhoneClient(self.url, MemoryStorage(), device_name="SDK 测试手机")
        code = self.backend.create_activation_code(signer_id)
        phone.activate(code.code)
        if enroll:
            phone.enroll(pin)
        return phone


@pytest.fixture
def served(hospital: Hospital) -> Iterator[Served]:  # noqa: F811
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, hospital.site.appliance.app, server_class=_ThreadingServer,
        handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="medsign-sdk-test-server",
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Served(hospital, url, BackendClient(url, hospital.key_id, hospital.secret))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
