"""The CA routes through the whole app: the security administrator creates a hierarchy, issues
from a PEM CSR, lists and revokes; relying parties fetch CRLs, the CA certificate and OCSP
answers anonymously; bad input gets problem documents (or OCSP error answers)."""

from __future__ import annotations

from typing import Any

import falcon.testing

from appliance.api.access import SECURITY_ADMIN
from signcore import ocsp
from signcore.keys import generate_private_key
from signcore.x509 import build_csr, load_certificate, load_crl
from tests.appliance.auth.conftest import Site

SECURE_COOKIE = "__Host-medsign_session"
SUBJECT = {"common_name": "钱七", "organization": "测试医院", "department": "药剂科",
           "title": "主管药师", "unique_id": "U5566778899AABBCC"}


def _security_admin(site: Site) -> dict[str, Any]:
    enrolment = site.create_account("sec", SECURITY_ADMIN)
    result = site.login("sec", enrolment)
    assert result.status_code == 200, result.text
    return {"cookies": {SECURE_COOKIE: result.cookies[SECURE_COOKIE].value},
            "headers": {"X-CSRF-Token": result.json["csrf_token"]}}


def _problem(result: falcon.testing.Result, status: int) -> str:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    return str(result.json["code"])


def test_the_whole_cycle(site: Site) -> None:
    me = _security_admin(site)
    client = site.client
    created = client.simulate_post("/api/v1/ca/authorities",
                                   json={"algorithm": "rsa", "organization": "测试医院"}, **me)
    assert created.status_code == 201, created.text
    ca_id = created.json["id"]
    ca_cert = load_certificate(client.simulate_get(f"/ca/{ca_id}.crt").content)
    csr = build_csr(generate_private_key("rsa2048"), "CN=x").to_pem().decode()
    issued = client.simulate_post("/api/v1/certificates", json={
        "algorithm": "rsa", "profile": "pharmacist-signing", "subject": SUBJECT, "csr": csr},
        **me)
    assert issued.status_code == 201, issued.text
    assert issued.headers["location"] == f"/api/v1/certificates/{issued.json['id']}"
    cert = load_certificate(issued.json["pem"].encode())
    cert.verify_signature(ca_cert.public_key())
    listed = client.simulate_get("/api/v1/certificates", params={"q": "钱七"}, **me)
    assert listed.json["total"] == 1 and listed.json["items"][0]["status"] == "active"
    cert_id = ocsp.CertId.of(cert.serial_number, ca_cert)

    def ocsp_status() -> ocsp.CertStatus:
        answer = client.simulate_post("/ocsp", body=ocsp.build_request([cert_id]).der,
                                      headers={"Content-Type": "application/ocsp-request"})
        assert answer.headers["content-type"] == "application/ocsp-response"
        response = ocsp.load_response(answer.content)
        response.verify(ca_cert)
        single = response.status_of(cert_id)
        assert single is not None
        return single.status

    assert ocsp_status() is ocsp.CertStatus.GOOD
    revoked = client.simulate_post(f"/api/v1/certificates/{issued.json['id']}/revoke",
                                   json={"reason": "key_compromise"}, **me)
    assert revoked.status_code == 200 and revoked.json["status"] == "revoked", revoked.text
    assert ocsp_status() is ocsp.CertStatus.REVOKED
    crl = client.simulate_get(f"/crl/{ca_id}.crl")
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert load_crl(crl.content).is_revoked(cert.serial_number) is not None
    delta = load_crl(client.simulate_get(f"/crl/{ca_id}-delta.crl").content)
    assert delta.is_revoked(cert.serial_number) is not None
    again = client.simulate_post(f"/api/v1/certificates/{issued.json['id']}/revoke",
                                 json={"reason": "superseded"}, **me)
    assert _problem(again, 409) == "conflict"


def test_bad_input(site: Site) -> None:
    me = _security_admin(site)
    client = site.client
    assert client.simulate_post("/api/v1/ca/authorities", json={
        "algorithm": "sm2", "organization": "测试医院"}, **me).status_code == 201
    csr = build_csr(generate_private_key("sm2"), "CN=x").to_pem().decode()
    cases: list[dict[str, Any]] = [
        {"algorithm": "sm2", "profile": "doctor-signing", "subject": SUBJECT, "csr": "bm90"},
        {"algorithm": "sm2", "profile": "doctor-signing", "subject": SUBJECT, "csr": "!!"},
        {"algorithm": "sm2", "profile": "dentist", "subject": SUBJECT, "csr": csr},
        {"algorithm": "sm2", "profile": "doctor-signing", "subject": {"common_name": "x"},
         "csr": csr},
        {"algorithm": "sm2", "profile": "doctor-signing", "subject": {**SUBJECT, "x": 1},
         "csr": csr},
        {"algorithm": "dsa", "profile": "doctor-signing", "subject": SUBJECT, "csr": csr},
        {"algorithm": "sm2", "profile": "doctor-signing", "subject": SUBJECT, "csr": csr,
         "validity_days": 0},
        {"algorithm": "rsa", "profile": "doctor-signing", "subject": SUBJECT, "csr": csr},
    ]
    for body in cases:
        result = client.simulate_post("/api/v1/certificates", json=body, **me)
        assert result.status_code in (400, 409), (body, result.text)
    assert client.simulate_get("/api/v1/certificates", **me).json["total"] == 0
    assert _problem(client.simulate_get("/crl/nothing.crl"), 404) == "not-found"
    assert _problem(client.simulate_get("/crl/sm2-g7.crl"), 404) == "not-found"
    assert _problem(client.simulate_get("/ca/sm2-g1.pem"), 404) == "not-found"
    malformed = client.simulate_post("/ocsp", body=b"junk",
                                     headers={"Content-Type": "application/ocsp-request"})
    assert ocsp.load_response(malformed.content).status == "malformed_request"
    assert client.simulate_post("/ocsp", body=b"junk").status_code == 415
    assert _problem(client.simulate_post("/api/v1/certificates/1/revoke",
                                         json={"reason": "because"}, **me), 400) in (
        "validation-failed",)
    assert _problem(client.simulate_get("/api/v1/certificates/424242", **me), 404)
