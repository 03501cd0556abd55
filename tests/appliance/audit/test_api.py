"""The audit API on both engines, through Falcon's test client with a header authenticator
standing in for the session and HMAC authenticators."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from appliance.api import problems
from appliance.api.access import (
    AUDIT_ADMIN,
    REVIEWER,
    ROLES,
    SECURITY_ADMIN,
    SYSTEM_ADMIN,
    AccessControl,
    Principal,
)
from appliance.api.audit import routes
from appliance.config import Config
from appliance.custody import KeyHolder
from appliance.services.audit import AuditLog, Entry
from appliance.storage import Database
from appliance.wsgi import build
from evidence import SM3, checkpoint, verify_consistency, verify_inclusion
from signcore.keys import load_public_key
from signcore.sm2 import SM2PublicKey
from tests.appliance.audit.conftest import ORIGIN


class HeaderAuthenticator:
    """``X-Test-Role: <role>`` signs in a console account; ``app`` an application."""

    def authenticate(self, req: falcon.Request) -> Principal | None:
        role = req.get_header("X-Test-Role")
        if role is None:
            return None
        if role == "app":
            return Principal(kind="app", name="his-backend", id=7,
                             scopes=frozenset({"signer:read", "signer:write", "audit:read"}))
        return Principal(kind="admin", name=f"{role}-user", id=3, role=role)


@pytest.fixture
def client(audit: AuditLog) -> Iterator[falcon.testing.TestClient]:
    app = falcon.App(middleware=[AccessControl([HeaderAuthenticator()])])
    problems.install(app)
    for path, resource in routes(audit).items():
        app.add_route(path, resource)
    yield falcon.testing.TestClient(app)


def _as(role: str | None) -> dict[str, str]:
    return {"X-Test-Role": role} if role else {}


def _get(client: falcon.testing.TestClient, path: str, role: str | None = AUDIT_ADMIN,
         **params: Any) -> falcon.testing.Result:
    return client.simulate_get(path, headers=_as(role),
                               params={k: str(v) for k, v in params.items()})


def _fill(audit: AuditLog) -> None:
    audit.append_many([
        Entry("login", "admin.login", "admin:alice", "", {"ip_hmac": audit.pii("10.1.2.3")}),
        Entry("data", "signer.create", "admin:alice", "signer:1", {"id_number_hmac": "ab"}),
        Entry("signature", "sign.cosign", "signer:1", "doc:9"),
        Entry("system", "config.change", "admin:root", "server"),
    ])


# --- who may call what ---------------------------------------------------------------------------

CALLS = [
    ("GET", "/api/v1/audit/entries", {AUDIT_ADMIN}),
    ("GET", "/api/v1/audit/entries/0", {AUDIT_ADMIN}),
    ("GET", "/api/v1/audit/export", {AUDIT_ADMIN}),
    ("GET", "/api/v1/audit/checkpoints/latest", {AUDIT_ADMIN}),
    ("POST", "/api/v1/audit/checkpoints", {SYSTEM_ADMIN, SECURITY_ADMIN}),
    ("GET", "/api/v1/audit/public-key", {AUDIT_ADMIN}),
    ("GET", "/api/v1/audit/proofs/inclusion?seq=0&tree_size=1", {AUDIT_ADMIN}),
    ("GET", "/api/v1/audit/proofs/consistency?first=1&second=2", {AUDIT_ADMIN}),
]


@pytest.mark.parametrize(("method", "path", "allowed"), CALLS)
def test_only_the_declared_roles_get_through(client: falcon.testing.TestClient, audit: AuditLog,
                                             method: str, path: str, allowed: set[str]) -> None:
    _fill(audit)
    audit.checkpoint()
    for role in (*ROLES, "app", None):
        route, _, query = path.partition("?")
        result = client.simulate_request(method, route, headers=_as(role), query_string=query)
        if role is None:
            assert result.status_code == 401, (role, result.text)
        elif role in allowed:
            assert result.status_code in (200, 201), (role, result.text)
        else:
            assert result.status_code == 403, (role, result.text)
            assert result.json["code"] == "forbidden"


def test_no_operation_changes_or_deletes_entries(client: falcon.testing.TestClient,
                                                 audit: AuditLog) -> None:
    _fill(audit)
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        for path in ("/api/v1/audit/entries", "/api/v1/audit/entries/0"):
            result = client.simulate_request(method, path, headers=_as(AUDIT_ADMIN))
            assert result.status_code in (403, 405), (method, path)
    assert audit.size() == 4


# --- search --------------------------------------------------------------------------------------


def test_search(client: falcon.testing.TestClient, audit: AuditLog) -> None:
    _fill(audit)
    page = _get(client, "/api/v1/audit/entries").json
    assert [e["seq"] for e in page["items"]] == [3, 2, 1, 0] and page["total"] == 4
    first = page["items"][-1]
    assert first["category"] == "login" and len(first["details"]["ip_hmac"]) == 64
    assert "10.1.2.3" not in json.dumps(page)
    assert base64.b64decode(first["leaf_hash"]) == audit.entry(0).leaf_hash
    assert [e["seq"] for e in _get(client, "/api/v1/audit/entries", actor="admin:alice",
                                   order="oldest").json["items"]] == [0, 1]
    assert _get(client, "/api/v1/audit/entries", category="signature").json["total"] == 1
    paged = _get(client, "/api/v1/audit/entries", limit=1, offset=1).json
    assert [e["seq"] for e in paged["items"]] == [2] and paged["limit"] == 1
    assert _get(client, "/api/v1/audit/entries", since="2000-01-01T00:00:00",
                until="2000-01-02T00:00:00Z").json["total"] == 0
    assert _get(client, "/api/v1/audit/entries/2").json["action"] == "sign.cosign"
    assert _get(client, "/api/v1/audit/entries/99").json["code"] == "not-found"
    assert _get(client, f"/api/v1/audit/entries/{2**64}").status_code == 404  # no such route


@pytest.mark.parametrize("params", [
    {"category": "nope"}, {"limit": 0}, {"limit": 501}, {"limit": "x"}, {"offset": -1},
    {"since": "yesterday"}, {"since": "2030-01-01", "until": "2020-01-01"},
    {"order": "sideways"}, {"actor": "a" * 129}, {"action": ""}, {"actor": "a\x00b"},
    {"subject": "x\ny"}, {"since": "0001-01-01T00:00:00+14:00"},
])
def test_bad_search_parameters_are_400(client: falcon.testing.TestClient,
                                       params: dict[str, Any]) -> None:
    result = _get(client, "/api/v1/audit/entries", **params)
    assert result.status_code == 400, result.text
    assert result.json["code"] == "validation-failed"
    assert result.headers["content-type"] == "application/problem+json"


# --- export --------------------------------------------------------------------------------------


def test_csv_export_is_a_download_and_is_audited(client: falcon.testing.TestClient,
                                                 audit: AuditLog) -> None:
    _fill(audit)
    result = _get(client, "/api/v1/audit/export", format="csv", category="data")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/csv")
    assert "attachment" in result.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(result.text)))
    assert [r[0] for r in rows] == ["seq", "1"]
    logged = audit.entry(4)
    assert (logged.category, logged.action, logged.actor) == (
        "system", "audit.export", f"admin:{AUDIT_ADMIN}-user")
    assert json.loads(logged.details) == {"format": "csv", "filters": {"category": "data"}}


def test_json_export(client: falcon.testing.TestClient, audit: AuditLog) -> None:
    _fill(audit)
    audit.checkpoint()
    result = _get(client, "/api/v1/audit/export", format="json")
    doc = result.json
    assert result.headers["content-type"] == "application/json"
    assert [e["seq"] for e in doc["entries"]] == [0, 1, 2, 3, 4]  # 4: this export itself
    assert doc["latest_checkpoint"]["tree_size"] == 4
    bad = _get(client, "/api/v1/audit/export", format="xml")
    assert bad.status_code == 400 and bad.json["code"] == "validation-failed"


# --- checkpoints and proofs, checked the way an outside verifier would ---------------------------


def _public_key(client: falcon.testing.TestClient) -> SM2PublicKey:
    body = _get(client, "/api/v1/audit/public-key").json
    key = load_public_key(base64.b64decode(body["public_key"]))
    assert isinstance(key, SM2PublicKey)
    assert body["origin"] == ORIGIN
    assert bytes.fromhex(body["key_id"]) == checkpoint.key_id(ORIGIN, key)
    return key


def test_checkpoints_on_demand(client: falcon.testing.TestClient, audit: AuditLog) -> None:
    assert _get(client, "/api/v1/audit/checkpoints/latest").status_code == 404
    assert _get(client, "/api/v1/audit/public-key").status_code == 404
    _fill(audit)
    made = client.simulate_post("/api/v1/audit/checkpoints", headers=_as(SYSTEM_ADMIN))
    assert made.status_code == 201
    assert made.json["tree_size"] == 5  # the request's own entry is covered
    assert audit.entry(4).action == "audit.checkpoint"
    latest = _get(client, "/api/v1/audit/checkpoints/latest").json
    assert latest == made.json
    signed = checkpoint.verify(latest["note"], _public_key(client), ORIGIN)
    assert base64.b64encode(signed.root_hash).decode() == latest["root_hash"]


def test_a_sealed_appliance_cannot_sign(client: falcon.testing.TestClient, audit: AuditLog,
                                        holder: KeyHolder) -> None:
    holder.seal()
    result = client.simulate_post("/api/v1/audit/checkpoints", headers=_as(SYSTEM_ADMIN))
    assert result.status_code == 503 and result.json["code"] == "sealed"


def test_proofs_verify_offline_against_the_signed_checkpoints(
        client: falcon.testing.TestClient, audit: AuditLog) -> None:
    audit.append_many([Entry("data", f"e{i}") for i in range(11)])
    old = client.simulate_post("/api/v1/audit/checkpoints", headers=_as(SYSTEM_ADMIN)).json
    audit.append_many([Entry("data", f"f{i}") for i in range(6)])
    new = client.simulate_post("/api/v1/audit/checkpoints", headers=_as(SYSTEM_ADMIN)).json
    key = _public_key(client)
    first = checkpoint.verify(old["note"], key, ORIGIN)
    second = checkpoint.verify(new["note"], key, ORIGIN)
    for seq in (0, 5, first.size - 1):
        body = _get(client, "/api/v1/audit/proofs/inclusion", seq=seq, tree_size=first.size).json
        entry = body["entry"]
        leaf = base64.b64decode(body["leaf_hash"])
        assert entry["seq"] == seq and base64.b64decode(entry["leaf_hash"]) == leaf
        verify_inclusion(SM3, index=seq, size=first.size, leaf_hash=leaf,
                         proof=[base64.b64decode(h) for h in body["proof"]],
                         root=first.root_hash)
    default = _get(client, "/api/v1/audit/proofs/inclusion", seq=3).json
    assert default["tree_size"] == second.size  # the newest checkpoint
    body = _get(client, "/api/v1/audit/proofs/consistency", first=first.size).json
    assert body["second"] == second.size
    verify_consistency(SM3, size1=first.size, size2=second.size,
                       proof=[base64.b64decode(h) for h in body["proof"]],
                       root1=first.root_hash, root2=second.root_hash)


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/api/v1/audit/proofs/inclusion", {}, 400),
    ("/api/v1/audit/proofs/inclusion", {"seq": "x"}, 400),
    ("/api/v1/audit/proofs/inclusion", {"seq": 3, "tree_size": 3}, 400),
    ("/api/v1/audit/proofs/inclusion", {"seq": 1, "tree_size": 99}, 404),
    ("/api/v1/audit/proofs/inclusion", {"seq": 10**17}, 400),
    ("/api/v1/audit/proofs/consistency", {}, 400),
    ("/api/v1/audit/proofs/consistency", {"first": 3, "second": 2}, 400),
    ("/api/v1/audit/proofs/consistency", {"first": 1, "second": 99}, 404),
])
def test_bad_proof_requests(client: falcon.testing.TestClient, audit: AuditLog, path: str,
                            params: dict[str, Any], status: int) -> None:
    _fill(audit)
    result = _get(client, path, **params)
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"


def test_roles_named_in_the_matrix_exist() -> None:
    assert {SECURITY_ADMIN, REVIEWER} <= set(ROLES)


def test_the_composition_root_wires_the_audit_log(database: Database, holder: KeyHolder) -> None:
    """``appliance.wsgi.build`` routes the audit API, documents it in OpenAPI, and hands the
    signer service the log as its audit sink."""
    built = build(Config(), database=database, key_holder=holder,
                  authenticators=[HeaderAuthenticator()])
    client = falcon.testing.TestClient(built.app)
    try:
        built.audit.append("system", "boot")
        page = _get(client, "/api/v1/audit/entries").json
        assert [e["action"] for e in page["items"]] == ["boot"]
        document = client.simulate_get("/api/v1/openapi.json").json
        paths = document["paths"]
        for path in routes(built.audit):
            template = path.split("{")[0] + "{seq}" if "{" in path else path
            assert template in paths, path
            for operation in paths[template].values():
                if isinstance(operation, dict) and "responses" in operation:
                    assert not operation.get("x-medsign-undocumented"), path
    finally:
        built.audit.close()
