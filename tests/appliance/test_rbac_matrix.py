"""The access matrix: every route registered in the app built by ``appliance.wsgi.build`` (with
its real authenticators) x every method its resource implements x {anonymous, one console
account per role, one application credential per scope}.

Routes are found by walking Falcon's router (``falcon.inspect``), so a route another module
adds later is covered without touching this test.  Each answer is checked twice:

1. against the route's own ``access`` declaration: allowed -> neither 401 nor 403; refused ->
   401 for anonymous, 403 (code ``forbidden``) for an authenticated caller;
2. against the hard rules of DESIGN.md section 8, written here independently of any
   declaration: anonymous reaches only the reviewed public routes below; the audit
   administrator reaches only audit reads and its own session routes; only the security
   administrator manages accounts and application credentials; every method has a declaration.

Requests carry what a real client would send (session cookie and CSRF token, or an HMAC
signature) and the most harmless input: ids that do not exist, ``{}`` bodies.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import pyotp
import pytest
from argon2 import PasswordHasher

from appliance.api.access import (
    AUDIT_ADMIN,
    ROLES,
    SECURITY_ADMIN,
    Access,
    Principal,
    declared_access,
)
from appliance.api.device_signing import sign_request as device_request
from appliance.api.hmac_signing import sign_request
from appliance.config import Config, SecurityConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.services.admins import AdminService
from appliance.services.applications import ALL_SCOPES, ApplicationService
from appliance.services.devices import DeviceService
from appliance.services.signers import ACTIVE, SignerService, validate
from appliance.storage import Database
from appliance.wsgi import build
from signcore.sm2 import SM2PrivateKey

PASSWORD = "matrix password 1"
COOKIE = "__Host-medsign_session"

# Reviewed public operations.  A new public route fails this test until it is added here:
# deny by default means somebody looked at every exception.
PUBLIC_OPERATIONS = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/sys/seal-status"),
    ("POST", "/api/v1/sys/unseal"),
    ("POST", "/api/v1/console/login"),
    # Relying parties check certificates anonymously (RFC 5280 CRLs, RFC 6960 OCSP).
    ("GET", "/crl/{name}"),
    ("GET", "/ca/{name}"),
    ("POST", "/ocsp"),
    # RFC 3161 clients cannot sign their requests (the hospital's network protects /tsa).
    ("POST", "/tsa"),
    ("POST", "/tsa/{algorithm}"),
    # A phone binds itself with a one-time activation code (80 random bits, single use).
    ("POST", "/api/v1/mobile/activate"),
}
# A signer's bound phone reaches the mobile API and nothing else; the mobile API is for phones
# only (activation aside).
MOBILE_PREFIX = "/api/v1/mobile/"
# The audit administrator's own session and identity (besides audit reads).
OWN_SESSION_OPERATIONS = {
    ("POST", "/api/v1/console/login"),
    ("POST", "/api/v1/console/logout"),
    ("GET", "/api/v1/console/me"),
    ("PATCH", "/api/v1/console/me"),
    ("GET", "/api/v1/whoami"),
}
AUDIT_PREFIX = "/api/v1/audit"
# Audit operations other than GET that count as reading the log, each with the reason it was
# accepted.  Keep this short: anything here is something the audit administrator can *do*.
# Routes outside the audit prefix (or writes inside it) the audit administrator may call:
# none.  It reads logs and nothing else (DESIGN.md section 8).
AUDIT_READ_EXCEPTIONS: dict[tuple[str, str], str] = {
    # issue 8: an evidence report is an export of audit entries with their proofs (the tender's
    # 一键取证), sealed by the appliance as its statement; it changes no data.
    ("POST", "/api/v1/evidence"): "exports the audit evidence of a signed document",
    ("GET", "/api/v1/evidence/{report_id}"): "reads an evidence report",
    ("GET", "/api/v1/evidence/{report_id}/pdf"): "reads an evidence report",
    ("POST", "/api/v1/console/sign-requests/{request_id}/evidence"):
        "exports the audit evidence of a sign request (the console's one click)",
}
SECURITY_ADMIN_ONLY = ("/api/v1/console/accounts", "/api/v1/applications", "/api/v1/ca/",
                       "/api/v1/certificates")
_FIELD = re.compile(r"\{(\w+)(?::(\w+)(?:\([^)]*\))?)?\}")


@dataclasses.dataclass(frozen=True)
class Operation:
    method: str
    template: str
    path: str  # a concrete path that routes to the template
    access: Access | None


@dataclasses.dataclass(frozen=True)
class Caller:
    label: str
    principal: Principal | None
    admin_id: int = 0
    key_id: str = ""
    secret: str = ""
    device_id: str = ""
    device_key: SM2PrivateKey | None = None


def _concrete(template: str) -> str:
    def value(match: re.Match[str]) -> str:
        converter = match.group(2)
        if converter == "int":
            return "999999"
        if converter == "uuid":
            return "00000000-0000-4000-8000-000000000000"
        if converter == "dt":
            return "2026-01-01T00:00:00Z"
        return "nonexistent"
    return _FIELD.sub(value, template)


def _operations(app: falcon.App[Any, Any]) -> list[Operation]:
    found = []
    for route in falcon.inspect.inspect_routes(app):
        path = _concrete(route.path)
        routed = app._router.find(path)
        assert routed is not None and routed[3] == route.path, f"cannot reach {route.path}"
        resource = routed[0]
        try:
            access_map = declared_access(resource)
        except TypeError:
            access_map = {}
        for method in sorted(m.method for m in route.methods if not m.internal):
            found.append(Operation(method, route.path, path, access_map.get(method)))
    return found


class Matrix:
    """The app, its callers, and how each caller sends a request."""

    def __init__(self, database: Database) -> None:
        self.keyring = Keyring(new_kek())
        self.holder = KeyHolder(KekStore(database))
        self.holder.adopt(self.keyring)
        security = SecurityConfig(cookie_secure=True)
        self.appliance = build(Config(security=security), database=database,
                               key_holder=self.holder)
        self.client = falcon.testing.TestClient(self.appliance.app)
        fast = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        self.admins = AdminService(database, self.holder, security, hasher=fast)
        self.apps = ApplicationService(database, self.holder, security)
        self.callers = [Caller("anonymous", None)]
        self.callers += [self._account(role) for role in ROLES]
        self.callers += [self._credential(scope) for scope in ALL_SCOPES]
        self.callers.append(self._device(database))

    def _account(self, role: str) -> Caller:
        username = "rbac-" + role.replace("_", "-")
        account, enrolment = self.admins.create(None, username=username, role=role,
                                                password=PASSWORD)
        login = self.client.simulate_post("/api/v1/console/login", json={
            "username": username, "password": PASSWORD,
            "totp": pyotp.TOTP(enrolment.secret).now()})
        assert login.status_code == 200, login.text  # the real login route works for each role
        return Caller(role, Principal(kind="admin", name=username, id=account.id, role=role),
                      admin_id=account.id)

    def _credential(self, scope: str) -> Caller:
        credential, secret = self.apps.create(None, name=f"rbac {scope}", scopes=scope)
        return Caller(f"app[{scope}]", Principal(kind="app", name=credential.key_id,
                                                 id=credential.id, scopes=frozenset({scope})),
                      key_id=credential.key_id, secret=secret)

    def _device(self, database: Database) -> Caller:
        signers = SignerService(database, self.holder)
        record = signers.prepare(self.keyring, validate({
            "kind": "doctor", "name": "矩阵医生", "id_number": "11010519491231002X"}))
        (signer_id,) = signers.insert_many([record], _Cli(), status=ACTIVE)
        assert isinstance(signer_id, int)
        devices = DeviceService(database, self.apps)
        code = devices.issue_activation(_Cli(), signer_id).code
        key = SM2PrivateKey.generate()
        device = devices.activate(code, key.public_key().to_der(), "matrix")
        return Caller("device", Principal(kind="device", name=device.id, id=signer_id),
                      device_id=device.id, device_key=key)

    def send(self, caller: Caller, op: Operation) -> falcon.testing.Result:
        body = b"{}" if op.method in ("POST", "PUT", "PATCH") else b""
        headers = {"Content-Type": "application/json"} if body else {}
        cookies = None
        if caller.admin_id:
            # A fresh session per request: a walked logout or seal must not leak into the next.
            session = self.admins.open_session(caller.admin_id)
            cookies = {COOKIE: session.session_token}
            headers["X-CSRF-Token"] = session.csrf_token
        elif caller.key_id:
            headers.update(sign_request(op.method, op.path, key_id=caller.key_id,
                                        secret=caller.secret, body=body))
        elif caller.device_key is not None:
            headers.update(device_request(op.method, op.path, device_id=caller.device_id,
                                          key=caller.device_key, body=body))
        result = self.client.simulate_request(op.method, op.path, body=body or None,
                                              headers=headers, cookies=cookies)
        self.holder.adopt(self.keyring)  # undo a walked POST /api/v1/sys/seal
        return result


@dataclasses.dataclass(frozen=True)
class _Cli:
    kind: str = "cli"
    name: str = "matrix"
    id: int = 0


@pytest.fixture
def matrix(database: Database) -> Iterator[Matrix]:
    made = Matrix(database)
    yield made
    made.appliance.audit.close()


def _is_audit_read(op: Operation) -> bool:
    if (op.method, op.template) in AUDIT_READ_EXCEPTIONS:
        return True
    return op.template.startswith(AUDIT_PREFIX) and op.method == "GET"


def _expected_by_rules(caller: Caller, op: Operation) -> bool | None:
    """The hard rules' verdict (True allowed, False refused) or None where they are silent."""
    key = (op.method, op.template)
    if key in PUBLIC_OPERATIONS:
        return True
    if caller.principal is None:
        return False
    if caller.label == AUDIT_ADMIN:
        return key in OWN_SESSION_OPERATIONS or _is_audit_read(op)
    if caller.label == "device" or op.template.startswith(MOBILE_PREFIX):
        return caller.label == "device" and op.template.startswith(MOBILE_PREFIX)
    if op.template.startswith(SECURITY_ADMIN_ONLY):
        return caller.label == SECURITY_ADMIN
    return None


def _check(caller: Caller, op: Operation, allowed: bool, result: falcon.testing.Result,
           failures: list[str]) -> None:
    status = result.status_code
    where = f"{caller.label:>20} {op.method:6} {op.template}"
    if status >= 500 and status != 503:
        failures.append(f"{where}: {status} {result.text[:200]}")
    if allowed:
        if status in (401, 403):
            failures.append(f"{where}: allowed, got {status} {result.text[:200]}")
        return
    expected = 401 if caller.principal is None else 403
    if status != expected:
        failures.append(f"{where}: refused, expected {expected}, got {status}")
    elif result.headers.get("content-type") != "application/problem+json":
        failures.append(f"{where}: refusal is not a problem document")
    elif result.json.get("code") != ("unauthorized" if expected == 401 else "forbidden"):
        failures.append(f"{where}: refusal code {result.json.get('code')}")


def test_every_route_declares_access_for_every_method(matrix: Matrix) -> None:
    operations = _operations(matrix.appliance.app)
    missing = [f"{op.method} {op.template}" for op in operations if op.access is None]
    assert missing == []
    public = {(op.method, op.template) for op in operations if op.access and op.access.public}
    assert public <= PUBLIC_OPERATIONS, (
        f"unreviewed public operations: {sorted(public - PUBLIC_OPERATIONS)}")
    walked = {(op.method, op.template) for op in operations}
    for expected in [("POST", "/api/v1/console/login"), ("GET", "/api/v1/whoami"),
                     ("DELETE", "/api/v1/console/accounts/{admin_id:int(min=1, "
                                "max=9223372036854775807)}"),
                     ("PATCH", "/api/v1/applications/{app_id:int(min=1, "
                               "max=9223372036854775807)}"),
                     ("POST", "/api/v1/sys/seal")]:
        assert expected in walked


def test_access_matrix(matrix: Matrix) -> None:
    operations = _operations(matrix.appliance.app)
    failures: list[str] = []
    checked = 0
    for op in operations:
        assert op.access is not None, f"{op.method} {op.template} declares no access"
        for caller in matrix.callers:
            declared = op.access.allows(caller.principal)
            ruled = _expected_by_rules(caller, op)
            if ruled is not None and ruled != declared:
                failures.append(f"{caller.label:>20} {op.method:6} {op.template}: the "
                                f"declaration {'allows' if declared else 'refuses'}, the "
                                f"rules say {'allowed' if ruled else 'refused'}")
            _check(caller, op, declared, matrix.send(caller, op), failures)
            checked += 1
    assert failures == [], "\n" + "\n".join(failures)
    assert checked == len(operations) * len(matrix.callers)


def test_audit_admin_is_refused_everywhere_else(matrix: Matrix) -> None:
    """The rule on its own, straight from the answers: 403 on everything that is not public,
    an audit read or its own session."""
    auditor = next(c for c in matrix.callers if c.label == AUDIT_ADMIN)
    reached = []
    for op in _operations(matrix.appliance.app):
        key = (op.method, op.template)
        if key in PUBLIC_OPERATIONS or key in OWN_SESSION_OPERATIONS or _is_audit_read(op):
            continue
        status = matrix.send(auditor, op).status_code
        if status != 403:
            reached.append(f"{op.method} {op.template}: {status}")
    assert reached == []


def test_anonymous_is_refused_everywhere_but_public_routes(matrix: Matrix) -> None:
    anonymous = matrix.callers[0]
    reached = []
    for op in _operations(matrix.appliance.app):
        if (op.method, op.template) in PUBLIC_OPERATIONS:
            continue
        status = matrix.send(anonymous, op).status_code
        if status != 401:
            reached.append(f"{op.method} {op.template}: {status}")
    assert reached == []
