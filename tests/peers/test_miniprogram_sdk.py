"""The WeChat mini-program SDK (sdk/miniprogram, JavaScript on node with sm-crypto) as a real
peer of the appliance.

- its unit tests (``node --test test/``: SM4-GCM, HMAC-SM3, PIN proof and share wrap against
  values produced by keysplit/signcore, the worked example of keysplit/README.md replayed byte
  for byte, handwriting capture, transports) run here so that ``make test`` covers them;
- a device signature made in JavaScript is verified by signcore and by gmssl;
- the JS phone drives a REAL ``medsign serve`` (gunicorn on loopback): activation, co-keygen and
  certificate, one signature, a batch of 20 in one confirmation, a wrong PIN (attempts left),
  auto-sign, rejection, PIN change, QR login, message center, replay.  This side created the
  doctor, the credential and the sign requests (HMAC API) and checks the outcome on the server:
  every request completed and its CMS verifies up to the built-in SM2 CA's root.
- the JS phone views a signed document (``viewDocument`` / ``documentVerification``): a PAdES
  request's PDF before and after it signs, and the validation result, which agrees with
  pdfsign's verdict on the PDF the phone received.

Under CI=true a missing node/npm or a missing ``sdk/miniprogram/node_modules`` (``make
node-deps``) fails the run instead of skipping it.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import pdfsign
from appliance.api.hmac_signing import sign_request
from appliance.services.qr import canonical
from appliance.services.signers import ACTIVE, CliActor, SignerService, validate
from signcore import cms
from signcore.keys import load_public_key
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate
from tests.appliance.serving import Server, clean_env, cli, serving
from tests.pdfsign.pdfs import minimal_pdf
from tests.support import gmssl_oracle
from tests.support.peers import require_tool, run_tool

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "miniprogram"
DOCTOR = {"kind": "doctor", "name": "王医生", "id_number": "11010519491231002X",
          "department": "心内科", "title": "主治医师"}
PRESCRIPTION = "处方 RX-0001：阿莫西林胶囊 0.25g×24 粒\n".encode()
SUMMARY = re.compile(r"^# (tests|suites|pass|fail|skipped|cancelled|todo) (\d+)$", re.MULTILINE)


def _require_node() -> str:
    node = require_tool("node")
    require_tool("npm")
    missing = [name for name in ("sm-crypto", "jsbn")
               if not (SDK / "node_modules" / name / "package.json").is_file()]
    if missing:
        message = (f"sdk/miniprogram/node_modules lacks {', '.join(missing)}: run `make node-deps` "
                   "(npm ci in sdk/miniprogram)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true a missing peer fails the run", pytrace=False)
        pytest.skip(message)
    return node


def _node_test(node: str, target: str, env: dict[str, str],
               timeout: float = 300) -> tuple[dict[str, int], str]:
    """``node --test TARGET`` in sdk/miniprogram; the TAP summary counts and the output."""
    done = run_tool([node, "--test", "--test-reporter=tap", target], cwd=SDK, env=env,
                    timeout=timeout, check=False)
    out = done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")
    counts = {name: int(value) for name, value in SUMMARY.findall(out)}
    assert done.returncode == 0 and counts.get("fail", 1) == 0, out[-6000:]
    return counts, out


def test_sdk_unit_tests() -> None:
    node = _require_node()
    counts, out = _node_test(node, "test/", clean_env())
    # the integration suite skips itself without MEDSIGN_URL (clean_env drops MEDSIGN_*)
    assert counts["pass"] >= 30 and counts["cancelled"] == 0, out[-3000:]
    assert "# SKIP MEDSIGN_URL is not set" in out, out[-3000:]


def test_device_signature_made_in_js_verifies_with_signcore_and_gmssl() -> None:
    node = _require_node()
    script = """
      const sdk = require('./src/index')
      const { toHex, utf8Encode } = sdk.bytes
      const out = []
      for (let i = 0; i < 8; i++) {
        const key = sdk.crypto.generateKeyPair()
        const message = utf8Encode(`POST\\n/api/v1/mobile/sign\\n\\n${i}\\n1764121200\\nn-${i}`)
        const signature = sdk.crypto.sign(key.privateKey, message, { publicKey: key.publicKey })
        out.push({ spki: toHex(sdk.crypto.spki(key.publicKey)), message: toHex(message),
                   signature: toHex(signature) })
      }
      console.log(JSON.stringify(out))
    """
    done = run_tool([node, "-e", script], cwd=SDK, env=clean_env(), timeout=120)
    for item in json.loads(done.stdout):
        public = load_public_key(bytes.fromhex(item["spki"]))
        assert isinstance(public, SM2PublicKey)
        message, signature = bytes.fromhex(item["message"]), bytes.fromhex(item["signature"])
        public.verify(signature, message)  # raises if invalid
        assert gmssl_oracle.verify(public, signature, message)
        assert not gmssl_oracle.verify(public, signature, message + b"x")


# --- against a real server ---------------------------------------------------------------------


class Backend:
    """The hospital backend: MEDSIGN-HMAC-SM3 requests with the application credential."""

    def __init__(self, server: Server, key_id: str, secret: str) -> None:
        self.server, self.key_id, self.secret = server, key_id, secret

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        headers = sign_request(method, path, key_id=self.key_id, secret=self.secret, body=data)
        conn = self.server.connection()
        try:
            conn.request(method, path, body=data or None,
                         headers={"Content-Type": "application/json", "Connection": "close",
                                  **headers})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        assert response.status < 300, (response.status, raw[:2000])
        kind = response.getheader("Content-Type", "")
        return json.loads(raw) if "json" in kind else raw

    def sign_request(self, signer_id: int, title: str, documents: list[dict[str, str]], *,
                     fmt: str = "cms-attached", flavour: str = "rfc5652") -> dict[str, Any]:
        answer: dict[str, Any] = self("POST", "/api/v1/sign-requests", {
            "title": title, "format": fmt, "flavour": flavour, "documents": documents,
            "signers": [{"signer_id": signer_id, "action": "sign"}]})
        return answer


def _install(tmp_path: Path) -> tuple[Path, str, str, str, int]:
    """init --demo, an SM2 CA, a credential, an ACTIVE doctor: (config, ca id, key id, secret,
    doctor id)."""
    config_file = tmp_path / "var" / "medsign.toml"
    initialized = cli("init", "--demo", "--config", config_file)
    assert initialized.code == 0, initialized.err
    ca = cli("ca", "init", "--config", config_file, "--algorithm", "sm2",
             "--organization", "测试医院")
    assert ca.code == 0, ca.err
    ca_id = re.search(r"^created (\S+):", ca.out, re.MULTILINE)
    assert ca_id, ca.out
    pass_file = config_file.parent / "demo-unseal-passphrase"
    app = cli("app", "create", "互联网医院", "--scope", "sign:request", "--scope", "sign:read",
              "--scope", "signer:write", "--config", config_file, "--passphrase-file", pass_file)
    assert app.code == 0, app.err
    key_id = re.search(r"key id: (\S+)", app.out)
    secret = re.search(r"secret \(shown once, base64url\): (\S+)", app.out)
    assert key_id and secret, app.out
    from appliance.cli._operator import _open  # noqa: PLC0415 -- the CLI's own wiring

    _, database, holder = _open(str(config_file), str(pass_file))
    try:
        signers = SignerService(database, holder)
        record = signers.prepare(holder.keyring(), validate(DOCTOR))
        (doctor_id,) = signers.insert_many([record], CliActor("cli:pytest"), status=ACTIVE)
    finally:
        database.dispose()
    assert isinstance(doctor_id, int)
    return config_file, ca_id.group(1), key_id.group(1), secret.group(1), doctor_id


def _documents(contents: list[bytes]) -> list[dict[str, str]]:
    return [{"name": f"rx-{i}.txt", "media_type": "text/plain",
             "content": base64.b64encode(c).decode()} for i, c in enumerate(contents)]


def test_js_phone_against_a_real_server(tmp_path: Path) -> None:
    node = _require_node()
    config_file, ca_id, key_id, secret, doctor_id = _install(tmp_path)
    with serving(config_file, workers=2, threads=2) as server:
        backend = Backend(server, key_id, secret)
        code = backend("POST", f"/api/v1/signers/{doctor_id}/activation-codes", {})["code"]
        contents: dict[str, list[bytes]] = {"单张处方": [PRESCRIPTION]}
        requests = {"单张处方": backend.sign_request(doctor_id, "单张处方",
                                                 _documents([PRESCRIPTION]))}
        for i in range(1, 21):  # the batch: both CMS flavours, attached and detached
            title = f"批量处方 {i:02d}"
            contents[title] = [f"处方 RX-{i:04d}：布洛芬缓释胶囊 0.3g".encode()]
            requests[title] = backend.sign_request(
                doctor_id, title, _documents(contents[title]),
                fmt="cms-detached" if i % 2 else "cms-attached",
                flavour="gmt0010" if i % 3 == 0 else "rfc5652")
        for title in ("免密签名处方", "驳回处方", "新PIN处方"):
            contents[title] = [f"{title}：内容".encode()]
            requests[title] = backend.sign_request(doctor_id, title, _documents(contents[title]))
        result_file = tmp_path / "js-result.json"
        env = clean_env(MEDSIGN_URL=server.url, MEDSIGN_ACTIVATION_CODE=code,
                        MEDSIGN_APP_KEY_ID=key_id, MEDSIGN_APP_SECRET=secret,
                        MEDSIGN_STATE_FILE=str(tmp_path / "phone-state.json"),
                        MEDSIGN_RESULT_FILE=str(result_file))
        counts, out = _node_test(node, "test/integration.test.js", env)
        result = json.loads(result_file.read_text())
        assert (counts["pass"], counts["todo"], counts["skipped"]) == (13, 0, 0), out[-4000:]
        assert result["done"] is True

        # the server side: every signed request is completed and its CMS verifies
        root = Certificate.from_stored(backend("GET", f"/ca/{ca_id}-root.crt"))
        issuing = Certificate.from_stored(backend("GET", f"/ca/{ca_id}.crt"))
        phone_key = bytes.fromhex(result["public_key"])
        signed = [t for t in requests if t not in ("驳回处方",)]
        for title in signed:
            request_id = requests[title]["id"]
            assert backend("GET", f"/api/v1/sign-requests/{request_id}")["status"] == \
                "completed", title
            answer = backend("GET", f"/api/v1/sign-requests/{request_id}/result")
            (document,) = answer["documents"]
            detached = requests[title]["format"] == "cms-detached"
            verified = cms.verify(base64.b64decode(document["signature"]),
                                  content=contents[title][0] if detached else None,
                                  trust_roots=[root], intermediates=[issuing])
            assert verified.valid, (title, verified)
            if not detached:
                assert verified.content == contents[title][0]
            (signer,) = verified.signers
            assert signer.signer_certificate is not None
            public = signer.signer_certificate.public_key()
            assert isinstance(public, SM2PublicKey) and public.encoded_point == phone_key
            assert "王医生" in signer.signer_certificate.subject
            assert signer.signed_attributes is not None  # gmssl agrees with the signature
            signed_attrs = b"\x31" + signer.signed_attributes.dump()[1:]
            assert gmssl_oracle.verify(public, signer.signature, signed_attrs), title
        rejected = backend("GET", f"/api/v1/sign-requests/{requests['驳回处方']['id']}")
        assert rejected["status"] == "rejected"
        assert rejected["signers"][0]["reason"] == "剂量超出说明书范围，请医生确认"
        assert result["auto"]["request"] == requests["免密签名处方"]["id"]
        # QR login: the PC checks the assertion the phone's co-signature made
        qr = backend("GET", f"/api/v1/qr-sessions/{result['qr_session']}")
        assert qr["status"] == "confirmed"
        assertion = qr["assertion"]
        certificate = Certificate.from_stored(base64.b64decode(assertion["certificate"]))
        public = certificate.public_key()
        assert isinstance(public, SM2PublicKey) and public.encoded_point == phone_key
        public.verify(base64.b64decode(assertion["signature"]), canonical(assertion["assertion"]))
        assert assertion["assertion"]["signer_id"] == doctor_id
        assert assertion["assertion"]["device_id"] == result["device_id"]


def test_js_phone_views_signed_documents(tmp_path: Path) -> None:
    """viewDocument / documentVerification of the JS phone (sdk/miniprogram/test/
    document-view.test.js) on a real server: a PAdES request's PDF before and after the phone
    signs it, and its validation result, which must agree with pdfsign's on the PDF the phone
    received, against the built-in CA's root."""
    node = _require_node()
    config_file, ca_id, key_id, secret, doctor_id = _install(tmp_path)
    pdf = minimal_pdf("e-prescription RX-2026-1201")
    with serving(config_file, workers=1, threads=2) as server:
        backend = Backend(server, key_id, secret)
        code = backend("POST", f"/api/v1/signers/{doctor_id}/activation-codes", {})["code"]
        backend.sign_request(doctor_id, "PDF 处方", [{
            "name": "rx-1201.pdf", "media_type": "application/pdf",
            "content": base64.b64encode(pdf).decode()}], fmt="pades")
        result_file = tmp_path / "js-view.json"
        env = clean_env(MEDSIGN_URL=server.url, MEDSIGN_ACTIVATION_CODE=code,
                        MEDSIGN_STATE_FILE=str(tmp_path / "phone-state.json"),
                        MEDSIGN_RESULT_FILE=str(result_file))
        counts, out = _node_test(node, "test/document-view.test.js", env)
        assert (counts["pass"], counts["skipped"]) == (3, 0), out[-4000:]
        root = Certificate.from_stored(backend("GET", f"/ca/{ca_id}-root.crt"))
    result = json.loads(result_file.read_text())
    assert result["done"] is True and base64.b64decode(result["unsigned"]) == pdf
    signed = base64.b64decode(result["signed"])
    assert signed.startswith(pdf) and len(signed) > len(pdf)
    (report,) = pdfsign.validate_pdf(signed, [root])
    (seen,) = result["verification"]["signatures"]
    assert report.ok and seen["ok"] and seen["signer"] == report.signer
    assert "王医生" in report.signer
    assert (seen["field"], seen["level"], seen["coverage"]) == (
        report.field, report.level, report.coverage)


def test_node_dependencies_are_locked() -> None:
    """npm ci installs exactly the committed lock file: both dependencies pinned exactly."""
    package = json.loads((SDK / "package.json").read_text())
    lock = json.loads((SDK / "package-lock.json").read_text())
    assert package["private"] is True and package["scripts"]["test"] == "node --test test/"
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), (name, version)
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "sdk/miniprogram/node_modules/" in ignored
