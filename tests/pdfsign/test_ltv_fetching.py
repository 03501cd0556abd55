"""B-LT with pyHanko's own fetching (no fetcher given): the revocation data is fetched from
the URLs the certificates name -- an OCSP responder and a CRL distribution point served on
loopback here (signcore's responder half and CRL builder with the hierarchy's keys) -- and
ends up in the DSS, from which the document then validates offline."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.server
from collections.abc import Iterator

import pytest

import pdfsign
from pdfsign import Level, ValidationData
from signcore import ocsp
from signcore.keys import PrivateKey, generate_private_key
from signcore.x509 import Certificate, Extensions, build_crl, issue_certificate
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.tsa import TestTSA
from tests.support.loopback_http import serve_loopback
from tests.support.pki import TestPKI, cached_pki

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)


@dataclasses.dataclass
class _Responder:
    """What the loopback server answers for: the issuing CA's leaves (OCSP) and the root's CRL."""

    pki: TestPKI | None = None
    ocsp_requests: int = 0
    crl_requests: int = 0

    def ocsp(self, body: bytes) -> bytes:
        assert self.pki is not None
        self.ocsp_requests += 1
        request = ocsp.load_request(body)
        now = dt.datetime.now(dt.UTC)
        statuses = [ocsp.SingleStatus(cert_id, ocsp.CertStatus.GOOD, now - _HOUR, now + _DAY)
                    for cert_id in request.cert_ids]
        return ocsp.build_response(statuses, responder=self.pki.issuing,
                                   signer=self.pki.issuing_key, nonce=request.nonce)

    def crl(self) -> bytes:
        assert self.pki is not None
        self.crl_requests += 1
        now = dt.datetime.now(dt.UTC)
        return build_crl(issuer=self.pki.root, signer=self.pki.root_key, crl_number=1,
                         this_update=now - _HOUR, next_update=now + _DAY).der


@contextlib.contextmanager
def _serving(responder: _Responder) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bytes, media_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(responder.ocsp(body), "application/ocsp-response")

        def do_GET(self) -> None:
            self._answer(responder.crl(), "application/pkix-crl")

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_loopback(Handler) as url:
        yield url


def _hierarchy(key_type: str, base: str) -> TestPKI:
    """Root, issuing CA (CRL at ``base``/root.crl) and doctor and TSA certificates (OCSP at
    ``base``/ocsp), with fresh keys, in the shape of the declared test PKI."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    keys: dict[str, PrivateKey] = {r: generate_private_key(key_type)
                                   for r in ("root", "issuing", "doctor", "tsa")}
    ca_usage = frozenset({"key_cert_sign", "crl_sign"})
    root = issue_certificate(subject="CN=loopback root,O=测试医院,C=CN",
                             public_key=keys["root"].public_key(), signer=keys["root"],
                             not_before=now - _DAY, not_after=now + 400 * _DAY,
                             extensions=Extensions(ca=True, path_length=1, key_usage=ca_usage))
    issuing = issue_certificate(
        subject="CN=loopback issuing CA,O=测试医院,C=CN", public_key=keys["issuing"].public_key(),
        signer=keys["root"], issuer=root, not_before=now - _DAY, not_after=now + 300 * _DAY,
        extensions=Extensions(ca=True, path_length=0, key_usage=ca_usage,
                              crl_urls=(f"{base}/root.crl",)))

    def leaf(role: str, subject: str, extensions: Extensions) -> Certificate:
        return issue_certificate(subject=subject, public_key=keys[role].public_key(),
                                 signer=keys["issuing"], issuer=issuing,
                                 not_before=now - _DAY, not_after=now + 200 * _DAY,
                                 extensions=extensions)

    doctor = leaf("doctor", "CN=张三,O=测试医院,C=CN", Extensions(
        ca=False, key_usage=frozenset({"digital_signature", "non_repudiation"}),
        ocsp_urls=(f"{base}/ocsp",)))
    tsa = leaf("tsa", "CN=loopback TSA,O=测试医院,C=CN", Extensions(
        ca=False, key_usage=frozenset({"digital_signature"}),
        extended_key_usage=("time_stamping",), extended_key_usage_critical=True,
        ocsp_urls=(f"{base}/ocsp",)))
    return dataclasses.replace(
        cached_pki(key_type), now=now, root=root, root_key=keys["root"], issuing=issuing,
        issuing_key=keys["issuing"], doctor=doctor, doctor_key=keys["doctor"], tsa=tsa,
        tsa_key=keys["tsa"])


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
def test_b_lt_with_pyhanko_fetching_by_url(key_type: str) -> None:
    responder = _Responder()
    with _serving(responder) as base:
        pki = responder.pki = _hierarchy(key_type, base)
        signed = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                                  level=Level.B_LT, timestamper=TestTSA(pki),
                                  validation=ValidationData([pki.root]))  # no fetcher: URLs
    assert responder.ocsp_requests >= 2 and responder.crl_requests >= 1
    (report,) = pdfsign.validate_pdf(signed, [pki.root])  # the server is gone: DSS only
    assert report.ok and report.level == "B-LT" and report.revocation == "good", report
