"""RFC 6960 OCSP against the real ``openssl ocsp``.

- OpenSSL reads signcore's requests (``-reqin -req_text``) and signcore parses OpenSSL's
  (``-reqout``), nonce included.
- ``openssl ocsp -respin`` verifies signcore's RSA and ECDSA responses (signed by the issuing CA,
  or by a delegated responder carrying the OCSPSigning EKU) and reports good / revoked; it
  refuses a response signed by a stranger.
- An OpenSSL responder (``openssl ocsp -index``, answering a request file) produces responses
  that signcore verifies and reads.
- SM2: OpenSSL 3.0 cannot pass the SM2 signer ID to OCSP verification, so the response's
  signature is checked with ``openssl pkeyutl -rawin -digest sm3 -pkeyopt distid:...`` over the
  ResponseData bytes (as for SM2 CRLs in test_openssl_x509.py).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from asn1crypto import ocsp as aocsp

from signcore import ocsp
from signcore.x509 import Certificate, Extensions
from tests.support.peers import run_tool
from tests.support.pki import PkiFiles, TestPKI, cached_pki, issue_leaf, write_pem

pytestmark = pytest.mark.peer

HOUR = dt.timedelta(hours=1)
DISTID = "distid:1234567812345678"


@pytest.fixture(params=["rsa2048", "ecdsa-p256"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> PkiFiles:
    return PkiFiles(cached_pki(request.param), tmp_path)


def _response(pki: TestPKI, *, nonce: bytes | None = None, responder: Certificate | None = None,
              key: object = None, certs: tuple[Certificate, ...] = ()) -> bytes:
    now = dt.datetime.now(dt.UTC)
    statuses = [
        ocsp.SingleStatus(ocsp.CertId.of(pki.doctor.serial_number, pki.issuing),
                          ocsp.CertStatus.GOOD, now - HOUR, now + HOUR),
        ocsp.SingleStatus(ocsp.CertId.of(pki.revoked.serial_number, pki.issuing),
                          ocsp.CertStatus.REVOKED, now - HOUR, now + HOUR,
                          revocation_time=now - 2 * HOUR, revocation_reason="key_compromise"),
    ]
    return ocsp.build_response(statuses, responder=responder or pki.issuing,
                               signer=key or pki.issuing_key,  # type: ignore[arg-type]
                               nonce=nonce, certs=certs)


def _check(openssl: str, f: PkiFiles, response: Path, *extra: str,
           check: bool = True) -> str:
    proc = run_tool([openssl, "ocsp", "-respin", response, "-issuer", f.issuing,
                     "-verify_other", f.issuing, "-CAfile", f.root, "-no_nonce",
                     "-cert", f.cert_file("doctor"), "-cert", f.cert_file("revoked"), *extra],
                    check=check)
    return (proc.stdout + proc.stderr).decode()


def test_openssl_reads_our_request(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    request = ocsp.build_request([ocsp.CertId.of(pki.doctor.serial_number, pki.issuing)])
    text = run_tool([openssl_bin, "ocsp", "-reqin", files.path("req.der", request.der),
                     "-req_text"]).stdout.decode()
    assert f"Serial Number: {pki.doctor.serial_number:X}" in text, text  # 20 octets, no 0 pad
    assert request.nonce is not None and request.nonce.hex().upper() in text


def test_we_read_an_openssl_request(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    out = files.path("openssl-req.der")
    run_tool([openssl_bin, "ocsp", "-issuer", files.issuing, "-cert", files.cert_file("doctor"),
              "-reqout", out])
    request = ocsp.load_request(out.read_bytes())
    assert request.cert_ids == (ocsp.CertId.of(pki.doctor.serial_number, pki.issuing),)
    assert request.nonce is not None


def test_openssl_verifies_our_responses(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    text = _check(openssl_bin, files, files.path("resp.der", _response(pki)))
    assert "Response verify OK" in text, text
    assert re.search(r"doctor\.pem: good", text) and re.search(r"revoked\.pem: revoked", text)
    assert "Reason: keyCompromise" in text, text


def test_openssl_verifies_a_delegated_responder(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    responder, key = issue_leaf(pki, "CN=OCSP 响应器,O=测试医院,C=CN", extensions=Extensions(
        ca=False, key_usage=frozenset({"digital_signature"}),
        extended_key_usage=("ocsp_signing",)))
    der = _response(pki, responder=responder, key=key, certs=(responder,))
    text = _check(openssl_bin, files, files.path("delegated.der", der))
    assert "Response verify OK" in text, text


def test_openssl_refuses_a_stranger(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    stranger = cached_pki("rsa2048" if pki.key_type != "rsa2048" else "ecdsa-p256")
    der = _response(pki, responder=stranger.issuing, key=stranger.issuing_key,
                    certs=(stranger.issuing,))
    text = _check(openssl_bin, files, files.path("stranger.der", der), check=False)
    assert "Response verify OK" not in text and "Verify Failure" in text, text


def test_we_verify_an_openssl_responder(openssl_bin: str, files: PkiFiles) -> None:
    pki = files.pki
    # OpenSSL's CA database: V (valid) and R (revoked) lines, tab-separated.
    stamp = (dt.datetime.now(dt.UTC) + 30 * 24 * HOUR).strftime("%y%m%d%H%M%SZ")
    revoked_at = (dt.datetime.now(dt.UTC) - HOUR).strftime("%y%m%d%H%M%SZ")
    index = files.path("index.txt", (
        f"V\t{stamp}\t\t{pki.doctor.serial_number:X}\tunknown\t/CN=doctor\n"
        f"R\t{stamp}\t{revoked_at},keyCompromise\t{pki.revoked.serial_number:X}\tunknown"
        f"\t/CN=revoked\n").encode())
    ids = [ocsp.CertId.of(pki.doctor.serial_number, pki.issuing),
           ocsp.CertId.of(pki.revoked.serial_number, pki.issuing),
           ocsp.CertId.of(424242, pki.issuing)]
    request = ocsp.build_request(ids)
    out = files.path("openssl-resp.der")
    run_tool([openssl_bin, "ocsp", "-index", index, "-CA", files.issuing,
              "-rsigner", files.issuing, "-rkey", files.key_file("issuing"),
              "-reqin", files.path("q.der", request.der), "-respout", out, "-nmin", "60"])
    response = ocsp.load_response(out.read_bytes())
    assert response.verify(pki.issuing) == pki.issuing
    assert response.nonce == request.nonce
    states = [response.status_of(i) for i in ids]
    assert [s.status if s else None for s in states] == [
        ocsp.CertStatus.GOOD, ocsp.CertStatus.REVOKED, ocsp.CertStatus.UNKNOWN]
    assert states[1] is not None and states[1].revocation_reason == "key_compromise"


def test_our_sm2_response_verifies_with_pkeyutl(openssl_bin: str, tmp_path: Path) -> None:
    pki = cached_pki("sm2")
    der = _response(pki, nonce=b"sm2-nonce-123456")
    basic = aocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
    write_pem(tmp_path / "pub.pem", pki.issuing.public_key())
    (tmp_path / "tbs.der").write_bytes(basic["tbs_response_data"].dump())
    (tmp_path / "sig.der").write_bytes(bytes(basic["signature"]))

    def verified(key_pem: Path) -> bool:
        proc = run_tool([openssl_bin, "pkeyutl", "-verify", "-pubin", "-inkey", key_pem,
                         "-rawin", "-digest", "sm3", "-pkeyopt", DISTID, "-in",
                         tmp_path / "tbs.der", "-sigfile", tmp_path / "sig.der"], check=False)
        return proc.returncode == 0 and b"Signature Verified Successfully" in proc.stdout

    assert verified(tmp_path / "pub.pem")
    assert not verified(write_pem(tmp_path / "root.pem", pki.root.public_key()))
    assert ocsp.load_response(der).verify(pki.issuing) == pki.issuing
