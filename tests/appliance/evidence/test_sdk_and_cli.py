"""The one call in the SDK and the offline verifier on the command line: the Python SDK's
BackendClient builds a report over real HTTP (wsgiref on loopback), the console's one click
builds another, and the installed ``medsign evidence verify`` checks them with no database and
no network — exit 0, 1 for a wrong document or an untrusted root, 2 for bad input."""

from __future__ import annotations

import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from medsign_sdk import BackendClient
from tests.appliance.auth.conftest import PASSWORD
from tests.appliance.evidence.test_evidence import _signature, _signed_prescription
from tests.appliance.mobile.conftest import Hospital
from tests.appliance.serving import cli_process
from tests.support.pki import cached_pki, write_pem


class _Server(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def url(hospital: Hospital) -> Iterator[str]:
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, hospital.site.appliance.app,
                                               server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sdk_report_verified_by_the_cli(hospital: Hospital, url: str, tmp_path: Path) -> None:
    request, _grant = _signed_prescription(hospital)
    backend = BackendClient(url, hospital.key_id, hospital.secret)
    report = backend.evidence(request["id"])
    assert report.valid and report.sign_request_id == request["id"], report.problems
    pdf, document = tmp_path / "report.pdf", tmp_path / "rx.p7m"
    pdf.write_bytes(backend.evidence_pdf(report.id))
    document.write_bytes(_signature(hospital, request))
    root = write_pem(tmp_path / "root.pem", hospital.ca.active_authority("sm2").root)
    ok = cli_process("evidence", "verify", pdf, "--document", document, "--trust", root)
    assert ok.code == 0, ok.out + ok.err
    assert f"证据报告 {report.id}：有效" in ok.out
    assert hospital.ca.active_authority("sm2").root.fingerprint("sha256").hex() in ok.out
    as_json = cli_process("evidence", "verify", pdf, "--json")
    assert as_json.code == 0 and '"valid": true' in as_json.out
    wrong = cli_process("evidence", "verify", pdf, "--document", root)
    assert wrong.code == 1 and "document-digest" in wrong.out
    stranger = write_pem(tmp_path / "other.pem", cached_pki("sm2").root)
    untrusted = cli_process("evidence", "verify", pdf, "--trust", stranger)
    assert untrusted.code == 1 and "report-signer-trusted" in untrusted.out
    for argv in (("evidence", "verify", root), ("evidence", "verify", tmp_path / "none.pdf"),
                 ("evidence", "verify", pdf, "--trust", document)):
        bad = cli_process(*argv)
        assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1, bad


def test_the_console_one_click(hospital: Hospital) -> None:
    request, _grant = _signed_prescription(hospital)
    enrolment = hospital.site.create_account("auditor", "audit_admin")
    login = hospital.site.client.simulate_post("/api/v1/console/login", json={
        "username": "auditor", "password": PASSWORD,
        "totp": pyotp.TOTP(enrolment.secret).now()})
    assert login.status_code == 200, login.text
    cookies = {c.name: c.value for c in login.cookies.values()}
    answer = hospital.site.client.simulate_post(
        f"/api/v1/console/sign-requests/{request['id']}/evidence", cookies=cookies,
        headers={"X-CSRF-Token": login.json["csrf_token"]}, json={})
    assert answer.status_code == 201, answer.text
    assert answer.json["verdict"] == "valid" and answer.json["sign_request_id"] == request["id"]
