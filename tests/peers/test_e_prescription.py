"""The e-prescription flow end to end on a REAL ``medsign serve`` (gunicorn on loopback), with
both SDKs as the clients nobody on the server side wrote:

the hospital backend (the Python SDK's BackendClient) binds two phones and posts a prescription
(doctor signs, pharmacist reviews) with a callback URL → the doctor's phone (the WeChat
mini-program SDK, JavaScript on node) activates, co-generates its key and co-signs → the
pharmacist's phone (the Python SDK's PhoneClient) does the same and approves → the backend's
webhook endpoint receives ``sign_request.completed`` (HMAC-SM3 checked with the SDK's
``verify_webhook``) → the backend fetches the CMS: OpenSSL parses it (two SignerInfos), and
both SM2 signatures verify with signcore (up to the built-in CA's root) and with gmssl.

(The split-RSA variant, checked by ``openssl cms -verify``, is in
tests/appliance/mobile/test_flows.py: the SDKs' phones are SM2.)
"""

from __future__ import annotations

import contextlib
import http.server
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance.services.signers import ACTIVE, CliActor, SignerService, validate
from medsign_sdk import (
    BackendClient,
    Document,
    JsonFileStorage,
    PhoneClient,
    SignerStep,
    WebhookError,
)
from medsign_sdk.models import WebhookEvent
from signcore import cms
from signcore.sm2 import SM2PublicKey
from signcore.x509 import load_certificate
from tests.appliance.serving import clean_env, serving
from tests.peers.test_miniprogram_sdk import SDK, _install, _require_node
from tests.support import gmssl_oracle
from tests.support.loopback_http import serve_loopback
from tests.support.peers import run_tool

pytestmark = pytest.mark.peer

PHARMACIST = {"kind": "pharmacist", "name": "李药师", "id_number": "110105198001010016",
              "department": "药剂科", "title": "主管药师"}
PRESCRIPTION = ("处方 RX-2026-0815：阿莫西林胶囊 0.25g×24 粒，每次 0.5g，每日三次；"
                "张某某，男，42 岁\n")
PIN = "246810"

DOCTOR_JS = r"""
const sdk = require('./src/index')
const phone = new sdk.PhoneClient({ baseUrl: process.env.MEDSIGN_URL,
  transport: sdk.fetchTransport(), storage: sdk.fileStorage(process.env.MEDSIGN_STATE_FILE),
  deviceName: '医生的手机' })
;(async () => {
  await phone.activate(process.env.MEDSIGN_ACTIVATION_CODE)
  const enrolled = await phone.enroll(process.env.MEDSIGN_PIN)
  let tasks = []
  for (let i = 0; i < 50 && tasks.length === 0; i++) {
    tasks = await phone.tasks()
    if (tasks.length === 0) await new Promise((r) => setTimeout(r, 100))
  }
  const answer = await phone.sign(tasks.map((t) => t.id), { pin: process.env.MEDSIGN_PIN })
  console.log(JSON.stringify({ certificate: enrolled.certificate, tasks: answer.tasks }))
})().catch((e) => { console.error(e); process.exit(1) })
"""


class WebhookEndpoint:
    """The hospital backend's webhook URL: keeps what it received, after the SDK checked it.
    Serves from construction until :meth:`stop`."""

    def __init__(self, backend: BackendClient) -> None:
        self.events: list[WebhookEvent] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = backend.verify_webhook(dict(self.headers.items()), body)
                except WebhookError:
                    self.send_response(401)
                else:
                    endpoint.events.append(event)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._serving = contextlib.ExitStack()
        self.url = f"{self._serving.enter_context(serve_loopback(Handler))}/medsign/events"

    def stop(self) -> None:
        self._serving.close()

    def wait(self, timeout: float = 30.0) -> list[WebhookEvent]:
        deadline = time.monotonic() + timeout
        while not self.events and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.events


def _add_pharmacist(config_file: Path) -> int:
    from appliance.cli._operator import _open  # noqa: PLC0415 -- the CLI's own wiring

    _, database, holder = _open(str(config_file),
                                str(config_file.parent / "demo-unseal-passphrase"))
    try:
        signers = SignerService(database, holder)
        record = signers.prepare(holder.keyring(), validate(PHARMACIST))
        (pharmacist_id,) = signers.insert_many([record], CliActor("cli:pytest"), status=ACTIVE)
    finally:
        database.dispose()
    assert isinstance(pharmacist_id, int)
    return pharmacist_id


def test_e_prescription_js_doctor_python_pharmacist(tmp_path: Path, openssl_bin: str) -> None:
    node = _require_node()
    config_file, ca_id, key_id, secret, doctor_id = _install(tmp_path)
    pharmacist_id = _add_pharmacist(config_file)
    with serving(config_file, workers=2, threads=4) as server:
        backend = BackendClient(server.url, key_id, secret)
        hooks = WebhookEndpoint(backend)
        doctor_code = backend.create_activation_code(doctor_id).code
        pharmacist_code = backend.create_activation_code(pharmacist_id).code
        request = backend.create_sign_request(
            [Document("rx-0815.txt", content=PRESCRIPTION.encode(), media_type="text/plain")],
            [SignerStep(doctor_id, "sign"), SignerStep(pharmacist_id, "review")],
            title="门诊处方 RX-2026-0815", format="cms-attached", callback_url=hooks.url)
        # the doctor's phone: the mini-program SDK on node
        done = run_tool([node, "-e", DOCTOR_JS], cwd=SDK, timeout=300, env=clean_env(
            MEDSIGN_URL=server.url, MEDSIGN_ACTIVATION_CODE=doctor_code, MEDSIGN_PIN=PIN,
            MEDSIGN_STATE_FILE=str(tmp_path / "doctor-phone.json")))
        doctor = json.loads(done.stdout)
        assert [t["status"] for t in doctor["tasks"]] == ["signed"]
        # the pharmacist's phone: the Python SDK
        pharmacist = PhoneClient(server.url, JsonFileStorage(tmp_path / "pharmacist.json"))
        pharmacist.activate(pharmacist_code)
        pharmacist.enroll(PIN)
        (review,) = pharmacist.tasks()
        assert review.action == "review" and review.request_id == request.id
        assert pharmacist.document(review.id, 0).content == PRESCRIPTION.encode()
        pharmacist.sign([review.id], pin=PIN)
        # the backend: the webhook, then the result
        events = hooks.wait()
        hooks.stop()
        assert [(e.type, e.data["sign_request_id"]) for e in events] == [
            ("sign_request.completed", request.id)]
        result = backend.get_result(request.id)
        der = result.documents[0].signature
        assert der is not None
        root = load_certificate(urllib.request.urlopen(  # noqa: S310 -- loopback
            f"{server.url}/ca/{ca_id}-root.crt", timeout=10).read())
    signed = tmp_path / "rx-0815.p7m"
    signed.write_bytes(der)
    printed = run_tool([openssl_bin, "cms", "-cmsout", "-print", "-inform", "DER",
                        "-in", signed]).stdout.decode()
    assert printed.count("signatureAlgorithm:") == 2, printed
    verified = cms.verify(der, trust_roots=[root])
    assert verified.valid and verified.content == PRESCRIPTION.encode(), verified
    names = []
    for signer in verified.signers:  # and gmssl agrees on both SM2 signatures
        assert signer.signer_certificate is not None and signer.signed_attributes is not None
        public = signer.signer_certificate.public_key()
        assert isinstance(public, SM2PublicKey)
        attributes = b"\x31" + signer.signed_attributes.dump()[1:]  # [0] IMPLICIT -> SET OF
        assert gmssl_oracle.verify(public, signer.signature, attributes)
        names.append(signer.signer_certificate.subject)
    assert "王医生" in names[0] and "李药师" in names[1]
