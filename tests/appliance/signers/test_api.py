"""``/api/v1/signers`` through the composition root with falcon.testing, on both engines.

A tiny authenticator stands in for the session and HMAC ones: the ``X-Test-Principal`` header
names a role (``admin:reviewer``) or an application's scopes (``app:signer:read``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest

from appliance.api.access import AUDIT_ADMIN, REVIEWER, SECURITY_ADMIN, SYSTEM_ADMIN, Principal
from appliance.config import Config
from appliance.custody import KeyHolder
from appliance.services import imports
from appliance.storage import Database
from appliance.wsgi import build
from tests.appliance.signers.conftest import ADMIN_IDS, dump_database, signer_data

SAMPLE = Path(__file__).with_name("data") / "signers.csv"


class HeaderAuthenticator:
    """``X-Test-Principal: admin:<role>`` or ``app:<scope> <scope>...``."""

    def authenticate(self, req: falcon.Request) -> Principal | None:
        value = req.get_header("X-Test-Principal")
        if not value:
            return None
        kind, _, rest = value.partition(":")
        if kind == "admin":
            return Principal(kind="admin", name=rest, id=ADMIN_IDS[rest], role=rest)
        return Principal(kind="app", name="his", id=9, scopes=frozenset(rest.split()))


SECURITY = {"X-Test-Principal": f"admin:{SECURITY_ADMIN}"}
REVIEW = {"X-Test-Principal": f"admin:{REVIEWER}"}


@pytest.fixture
def client(database: Database, holder: KeyHolder, admins: dict[str, Principal],
           tmp_path: Path) -> Iterator[falcon.testing.TestClient]:
    appliance = build(Config(data_dir=str(tmp_path)), database=database, key_holder=holder,
                      authenticators=[HeaderAuthenticator()])
    yield falcon.testing.TestClient(appliance.app)


def _create(client: falcon.testing.TestClient, n: int, **overrides: object) -> dict[str, Any]:
    result = client.simulate_post("/api/v1/signers", json=signer_data(n, **overrides),
                                  headers=SECURITY)
    assert result.status_code == 201, result.text
    body: dict[str, Any] = result.json
    return body


def test_create_read_edit_submit_review(client: falcon.testing.TestClient) -> None:
    data = signer_data(1)
    result = client.simulate_post("/api/v1/signers", json=data, headers=SECURITY)
    assert result.status_code == 201
    signer = result.json
    assert result.headers["location"] == f"/api/v1/signers/{signer['id']}"
    assert signer["status"] == "draft" and signer["phone_masked"] == "139****0001"
    id_number = str(data["id_number"])
    assert signer["id_number_masked"] == id_number[:6] + "********" + id_number[-4:]
    assert id_number not in result.text and str(data["phone"]) not in result.text
    path = f"/api/v1/signers/{signer['id']}"
    assert client.simulate_get(path, headers=REVIEW).json == signer
    edited = client.simulate_patch(path, json={"department": "急诊科", "version": 1},
                                   headers=SECURITY)
    assert edited.status_code == 200 and edited.json["version"] == 2
    stale = client.simulate_patch(path, json={"department": "外科", "version": 1},
                                  headers=SECURITY)
    assert stale.status_code == 409 and stale.json["code"] == "conflict"
    submitted = client.simulate_post(path + "/submit", headers=SECURITY)
    assert submitted.json["status"] == "pending_review"
    review = client.simulate_post("/api/v1/signers/review", headers=REVIEW, json=[
        {"id": signer["id"], "decision": "approve", "note": "资料齐全"},
        {"id": 424242, "decision": "reject", "note": "x"}])
    assert review.status_code == 200
    assert review.json == {"results": [
        {"id": signer["id"], "ok": True, "status": "active"},
        {"id": 424242, "ok": False, "code": "not-found", "detail": "签署人 424242 不存在"}],
        "succeeded": 1, "failed": 1}
    disabled = client.simulate_post(path + "/disable", json={"reason": "调离"}, headers=SECURITY)
    assert disabled.json["status"] == "disabled"
    assert client.simulate_post(path + "/enable", headers=SECURITY).json["status"] == "active"
    again = client.simulate_post(path + "/enable", headers=SECURITY)
    assert again.status_code == 409 and again.headers["content-type"] == \
        "application/problem+json"


def test_validation_problem_names_the_fields(client: falcon.testing.TestClient) -> None:
    result = client.simulate_post("/api/v1/signers", headers=SECURITY, json=signer_data(
        1, id_number="110105194912310021", phone="1234", kind="dentist", name="名" * 70))
    assert result.status_code == 400
    problem = result.json
    assert result.headers["content-type"] == "application/problem+json"
    assert problem["code"] == "validation-failed" and problem["status"] == 400
    assert [e["field"] for e in problem["errors"]] == ["kind", "name", "id_number", "phone"]
    assert "身份证号校验位错误" in problem["detail"]
    unknown = client.simulate_post("/api/v1/signers", headers=SECURITY,
                                   json={**signer_data(1), "password": "x"})
    assert unknown.status_code == 400 and "password" in unknown.json["detail"]
    not_json = client.simulate_post("/api/v1/signers", headers={
        **SECURITY, "Content-Type": "application/json"}, body=b"{")
    assert not_json.status_code == 400


def test_duplicates_and_missing_records(client: falcon.testing.TestClient) -> None:
    first = _create(client, 1)
    duplicate = client.simulate_post("/api/v1/signers", json=signer_data(1), headers=SECURITY)
    assert duplicate.status_code == 409
    assert duplicate.json["signer_id"] == first["id"] and duplicate.json["field"] == "id_number"
    assert client.simulate_get("/api/v1/signers/999999", headers=SECURITY).status_code == 404
    assert client.simulate_get("/api/v1/signers/abc", headers=SECURITY).status_code == 404


def test_list_filters_and_paging(client: falcon.testing.TestClient) -> None:
    for n in range(7):
        _create(client, n, kind="nurse" if n % 2 else "doctor", department=f"科{n % 3}")
    listing = client.simulate_get("/api/v1/signers", params={"limit": 3, "offset": 3},
                                  headers=REVIEW)
    assert listing.json["total"] == 7 and len(listing.json["items"]) == 3
    nurses = client.simulate_get("/api/v1/signers", params={"kind": "nurse"}, headers=SECURITY)
    assert nurses.json["total"] == 3
    dept = client.simulate_get("/api/v1/signers", params={"department": "科0", "status": "draft"},
                               headers=SECURITY)
    assert dept.json["total"] == 3
    for params in ({"status": "gone"}, {"kind": "vet"}, {"limit": 0}, {"limit": 500},
                   {"offset": -1}, {"limit": "x"}):
        assert client.simulate_get("/api/v1/signers", params=params,
                                   headers=SECURITY).status_code == 400, params


def test_lookup_keeps_numbers_out_of_urls(client: falcon.testing.TestClient) -> None:
    signer = _create(client, 3)
    found = client.simulate_post("/api/v1/signers/lookup", headers=SECURITY,
                                 json={"id_number": signer_data(3)["id_number"]})
    assert found.json["id"] == signer["id"]
    missing = client.simulate_post("/api/v1/signers/lookup", headers=SECURITY,
                                   json={"phone": "13311112222"})
    assert missing.status_code == 404


@pytest.mark.parametrize("body", [
    {"id": 1, "decision": "approve"}, [], [{"id": "1", "decision": "approve"}],
    [{"id": 1, "decision": "maybe"}], [{"id": 1, "decision": "approve", "extra": 1}],
    [{"id": 1, "decision": "reject", "note": "x" * 501}], [1],
    [{"id": True, "decision": "approve"}],
])
def test_malformed_review_batches(client: falcon.testing.TestClient, body: object) -> None:
    result = client.simulate_post("/api/v1/signers/review", json=body, headers=REVIEW)
    assert result.status_code == 400 and result.json["code"] == "validation-failed"


def _multipart(data: bytes, filename: str, field: str = "file") -> tuple[bytes, str]:
    boundary = "medsign-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_import_multipart_raw_and_csv_report(client: falcon.testing.TestClient) -> None:
    body, content_type = _multipart(SAMPLE.read_bytes(), "医护人员.csv")
    dry = client.simulate_post("/api/v1/signers/import", body=body, params={"dry_run": "true"},
                               headers={**SECURITY, "Content-Type": content_type})
    assert dry.status_code == 200, dry.text
    assert (dry.json["dry_run"], dry.json["created"], dry.json["failed"]) == (True, 4, 4)
    report = client.simulate_post("/api/v1/signers/import", body=body,
                                  headers={**SECURITY, "Content-Type": content_type})
    assert report.json["created"] == 4
    assert [e["row"] for e in report.json["errors"]] == [4, 5, 7, 9]
    again = client.simulate_post("/api/v1/signers/import", body=SAMPLE.read_bytes(), headers={
        **SECURITY, "Content-Type": "text/csv", "Accept": "text/csv"})
    assert again.status_code == 200
    assert again.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(again.content.decode("utf-8-sig"))))
    assert rows[0] == ["行号", "姓名", "列", "错误原因"]
    assert rows[-1] == ["合计", "数据行 8", "成功 0", "失败 8"]
    listing = client.simulate_get("/api/v1/signers", params={"status": "pending_review"},
                                  headers=REVIEW)
    assert listing.json["total"] == 4


def test_import_refusals(client: falcon.testing.TestClient,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {**SECURITY, "Content-Type": "text/csv"}
    post = client.simulate_post
    wrong = post("/api/v1/signers/import", body=b"a,b\n1,2\n", headers=headers)
    assert wrong.status_code == 400 and wrong.json["code"] == "import-refused"
    empty = post("/api/v1/signers/import", body=b"", headers=headers)
    assert empty.status_code == 400
    as_json = post("/api/v1/signers/import", json={"file": "x"}, headers=SECURITY)
    assert as_json.status_code == 415
    body, content_type = _multipart(b"x", "a.csv", field="upload")
    no_file = post("/api/v1/signers/import", body=body,
                   headers={**SECURITY, "Content-Type": content_type})
    assert no_file.status_code == 400
    broken = post("/api/v1/signers/import", body=b"--x\r\ngarbage",
                  headers={**SECURITY, "Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status_code == 400
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 64)
    big = post("/api/v1/signers/import", body=SAMPLE.read_bytes(), headers=headers)
    assert big.status_code == 413 and big.json["code"] == "payload-too-large"


def test_sealed_appliance_answers_503(client: falcon.testing.TestClient,
                                      holder: KeyHolder) -> None:
    holder.seal()
    result = client.simulate_get("/api/v1/signers", headers=SECURITY)
    assert result.status_code == 503 and result.json["code"] == "sealed"


# --------------------------------------------------------------------------- access matrix

CALLERS: dict[str, dict[str, str]] = {
    "anonymous": {},
    SYSTEM_ADMIN: {"X-Test-Principal": f"admin:{SYSTEM_ADMIN}"},
    SECURITY_ADMIN: SECURITY,
    AUDIT_ADMIN: {"X-Test-Principal": f"admin:{AUDIT_ADMIN}"},
    REVIEWER: REVIEW,
    "app:signer:read": {"X-Test-Principal": "app:signer:read"},
    "app:signer:write": {"X-Test-Principal": "app:signer:write"},
    "app:other": {"X-Test-Principal": "app:sign:cosign"},
}
READERS = {SECURITY_ADMIN, REVIEWER, "app:signer:read"}
WRITERS = {SECURITY_ADMIN, "app:signer:write"}
ROUTES: list[tuple[str, str, set[str]]] = [
    ("GET", "/api/v1/signers", READERS),
    ("POST", "/api/v1/signers", WRITERS),
    ("POST", "/api/v1/signers/lookup", READERS),
    ("POST", "/api/v1/signers/review", {REVIEWER}),
    ("POST", "/api/v1/signers/import", {SECURITY_ADMIN}),
    ("GET", "/api/v1/signers/{id}", READERS),
    ("PATCH", "/api/v1/signers/{id}", WRITERS),
    ("DELETE", "/api/v1/signers/{id}", {SECURITY_ADMIN}),
    ("POST", "/api/v1/signers/{id}/submit", WRITERS),
    ("POST", "/api/v1/signers/{id}/disable", {SECURITY_ADMIN}),
    ("POST", "/api/v1/signers/{id}/enable", {SECURITY_ADMIN}),
]


def test_every_route_for_every_caller(client: falcon.testing.TestClient) -> None:
    """Allowed callers get past access control (any answer but 401/403); everyone else gets
    401 (anonymous) or 403, and nothing changes."""
    signer = _create(client, 1)
    for method, template, allowed in ROUTES:
        path = template.replace("{id}", str(signer["id"]))
        for caller, headers in CALLERS.items():
            result = client.simulate_request(method, path, headers={
                **headers, "Content-Type": "application/octet-stream"}, body=b"")
            if caller in allowed:
                assert result.status_code not in (401, 403), (method, path, caller)
            else:
                expected = 401 if caller == "anonymous" else 403
                assert result.status_code == expected, (method, path, caller, result.text)
    for method in ("PUT", "DELETE"):
        assert client.simulate_request(method, "/api/v1/signers",
                                       headers=SECURITY).status_code in (403, 405)


def test_input_the_database_would_choke_on(client: falcon.testing.TestClient) -> None:
    """NUL characters (PostgreSQL refuses them in text) and ids beyond BIGINT are 4xx."""
    signer = _create(client, 1)
    path = f"/api/v1/signers/{signer['id']}"
    client.simulate_post(path + "/submit", headers=SECURITY)
    for params in ({"department": "外\x00科"}, {"name": "\x00"}):
        listing = client.simulate_get("/api/v1/signers", params=params, headers=SECURITY)
        assert listing.status_code == 400, params
    review = client.simulate_post("/api/v1/signers/review", headers=REVIEW, json=[
        {"id": signer["id"], "decision": "reject", "note": "a\x00b"}])
    assert review.json["results"][0]["code"] == "validation-failed"
    huge = client.simulate_post("/api/v1/signers/review", headers=REVIEW, json=[
        {"id": 2**64, "decision": "approve"}])
    assert huge.status_code == 400
    assert client.simulate_get(f"/api/v1/signers/{2**64}", headers=SECURITY).status_code == 404
    reason = client.simulate_post(path + "/disable", json={"reason": "\x00"}, headers=SECURITY)
    assert reason.status_code == 400
    edit = client.simulate_patch(path, json={"department": "外\x00科"}, headers=SECURITY)
    assert edit.status_code == 400 and edit.json["errors"][0]["field"] == "department"


def test_no_personal_data_in_clear_after_api_use(client: falcon.testing.TestClient,
                                                 database: Database) -> None:
    """Create, edit, review and import through the API, then read every row of every table
    (the audit log included, once it is wired): no ID number or phone in clear."""
    signer = _create(client, 1)
    client.simulate_patch(f"/api/v1/signers/{signer['id']}", json={"phone": "13512345678"},
                          headers=SECURITY)
    client.simulate_post(f"/api/v1/signers/{signer['id']}/submit", headers=SECURITY)
    client.simulate_post("/api/v1/signers/review", headers=REVIEW,
                         json=[{"id": signer["id"], "decision": "approve"}])
    client.simulate_post("/api/v1/signers/import", body=SAMPLE.read_bytes(),
                         headers={**SECURITY, "Content-Type": "text/csv"})
    sample = SAMPLE.read_text(encoding="utf-8").splitlines()[1:]
    secrets = {str(signer_data(1)["id_number"]), str(signer_data(1)["phone"]), "13512345678"}
    secrets |= {cell for line in sample for cell in line.split(",")[1:3] if len(cell) >= 11}
    dump = dump_database(database)
    for secret in secrets:
        assert secret.encode() not in dump, secret
