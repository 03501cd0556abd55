"""schemathesis against the appliance's own OpenAPI document: no 5xx, no schema violations.

The app is the real composition root (``appliance.wsgi.build``) on SQLite, initialized with a
2-of-3 Shamir KEK (so a fuzzed unseal attempt is refused at once instead of costing an Argon2id
run) and unsealed.  schemathesis loads ``/api/v1/openapi.json`` from the WSGI app itself and
sends, for every operation, generated valid and invalid requests -- as every kind of caller:
anonymous, an application credential with every scope (each request HMAC-signed), and a
console session of each role (with its CSRF token).  Operations a caller may not call get a
few examples (they must be refused with a documented problem); the others get the full budget.
Public operations are fuzzed once, anonymously.

Checks: ``not_a_server_error`` (no 5xx), ``response_schema_conformance`` (bodies match the
declared schemas), ``status_code_conformance`` and ``content_type_conformance``.

Deterministic enough for CI: hypothesis is derandomized (the examples depend only on the
document), has no example database, and every operation gets at most ``MAX_EXAMPLES`` examples
(``MEDSIGN_FUZZ_EXAMPLES`` overrides; the budget is examples x operations x principals, a
few seconds per operation here).
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import falcon
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from appliance import config as config_module
from appliance.api import device_signing, hmac_signing, openapi, problems
from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, AccessControl
from appliance.custody import KekStore, initialize_kek
from appliance.errors import ApplianceError
from appliance.services.admins import AdminService
from appliance.services.applications import ALL_SCOPES, ApplicationService, decode_secret
from appliance.services.devices import DeviceService
from appliance.services.signers import ACTIVE, SignerService, validate
from appliance.wsgi import Appliance, build
from signcore.sm2 import SM2PrivateKey

MAX_EXAMPLES = int(os.environ.get("MEDSIGN_FUZZ_EXAMPLES", "25"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
]


@schemathesis.serializer("application/ocsp-request", "application/timestamp-query")
def _ocsp_request(_ctx: Any, value: Any) -> bytes:
    """The OCSP responder's and the TSA's body (binary DER): whatever was generated, as bytes
    -- they must answer anything with an OCSP or RFC 3161 response, never a 5xx."""
    return value if isinstance(value, bytes) else str(value).encode()


PRINCIPALS = ("anonymous", "app", "device", "system_admin", "security_admin", "audit_admin",
              "reviewer")
FEW_EXAMPLES = 3  # for an operation the principal may not call: it is refused before anything


class Fuzzed:
    """WSGI wrapper around one appliance: authenticates every request as ``principal`` (signs
    it with the application credential, or sends a fresh console session and its CSRF token),
    and unseals again after a fuzzed request sealed the appliance (POST /api/v1/sys/seal is a
    legitimate operation; a sealed appliance answers 503, which would hide everything else)."""

    def __init__(self, appliance: Appliance, keyring: Any, principal: str) -> None:
        self.appliance, self._keyring, self.principal = appliance, keyring, principal
        config = appliance.config
        self._admins = AdminService(appliance.database, appliance.key_holder, config.security)
        self._cookie = openapi.session_cookie_name(config.security.cookie_secure)
        self._admin_id = 0
        self._key_id, self._secret = "", b""
        if principal == "app":
            apps = ApplicationService(appliance.database, appliance.key_holder, config.security)
            credential, secret = apps.create(None, name="fuzz", scopes=ALL_SCOPES)
            self._key_id, self._secret = credential.key_id, decode_secret(secret)
        elif principal == "device":
            self._device_id, self._device_key = _bound_device(appliance)
        elif principal != "anonymous":
            account, _ = self._admins.create(None, username=f"fuzz-{principal}".replace("_", "-"),
                                             role=principal, password="fuzzing-Passw0rd")
            self._admin_id = account.id

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            if self.principal in ("app", "device"):
                self._sign(environ)
            elif self.principal != "anonymous":
                self._session(environ)
            return self.appliance.app(environ, start_response)
        finally:
            if self.appliance.key_holder.sealed:
                self.appliance.key_holder.adopt(self._keyring)

    def _sign(self, environ: dict[str, Any]) -> None:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO") or "/")
        if not path.isascii():  # as the server decodes it (appliance.api.auth.decoded_path)
            path = path.encode("iso-8859-1").decode("utf-8", "replace")
        timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
        if self.principal == "device":
            message = device_signing.string_to_sign(
                method=environ["REQUEST_METHOD"], decoded_path=path,
                query=environ.get("QUERY_STRING", ""), body=body, timestamp=timestamp,
                nonce=nonce)
            signature = base64.b64encode(self._device_key.sign(message)).decode()
            environ["HTTP_AUTHORIZATION"] = (f"{device_signing.SCHEME} "
                                             f"deviceId={self._device_id}, "
                                             f"signature={signature}")
            environ["HTTP_X_MEDSIGN_TIMESTAMP"] = timestamp
            environ["HTTP_X_MEDSIGN_NONCE"] = nonce
            return
        algorithm = hmac_signing.Algorithm.SM3
        message = hmac_signing.string_to_sign(
            algorithm, method=environ["REQUEST_METHOD"], decoded_path=path,
            query=environ.get("QUERY_STRING", ""), body=body, timestamp=timestamp, nonce=nonce)
        signature = base64.b64encode(
            hmac_signing.compute_signature(algorithm, self._secret, message)).decode()
        environ["HTTP_AUTHORIZATION"] = (f"{algorithm.value} keyId={self._key_id}, "
                                         f"signature={signature}")
        environ["HTTP_X_MEDSIGN_TIMESTAMP"] = timestamp
        environ["HTTP_X_MEDSIGN_NONCE"] = nonce

    def _session(self, environ: dict[str, Any]) -> None:
        try:
            session = self._admins.open_session(self._admin_id)
        except ApplianceError:
            return  # a fuzzed request disabled or deleted this account: anonymous from now
        cookies = [c for c in [environ.get("HTTP_COOKIE", "")] if c]
        environ["HTTP_COOKIE"] = "; ".join([*cookies, f"{self._cookie}={session.session_token}"])
        environ["HTTP_X_CSRF_TOKEN"] = session.csrf_token


@pytest.fixture(scope="module")
def installations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One unsealed installation (and loaded schema) per principal, built on first use: what
    one principal's fuzzing changes never decides what another's sees."""
    built: dict[str, Any] = {}
    appliances: list[Appliance] = []

    def schema_for(principal: str) -> Any:
        if principal not in built:
            data_dir: Path = tmp_path_factory.mktemp(f"fuzz-{principal}")
            appliance = build(config_module.load(env={"MEDSIGN_DATA_DIR": str(data_dir)}))
            appliances.append(appliance)
            keyring, _ = initialize_kek(KekStore(appliance.database), shamir=(2, 3))
            appliance.key_holder.adopt(keyring)
            wrapped = Fuzzed(appliance, keyring, principal)
            built[principal] = schemathesis.openapi.from_wsgi(openapi.OPENAPI_PATH, wrapped)
        return built[principal]

    yield {"schema_for": schema_for}
    for appliance in appliances:
        appliance.audit.close()
        appliance.database.dispose()


def _bound_device(appliance: Appliance) -> tuple[str, SM2PrivateKey]:
    """An active doctor with a bound phone (no key yet: fuzzing reaches every refusal)."""
    config = appliance.config
    signers = SignerService(appliance.database, appliance.key_holder)
    record = signers.prepare(appliance.key_holder.keyring(), validate({
        "kind": "doctor", "name": "模糊医生", "id_number": "11010519491231002X"}))
    (signer_id,) = signers.insert_many([record], _Cli(), status=ACTIVE)
    apps = ApplicationService(appliance.database, appliance.key_holder, config.security)
    devices = DeviceService(appliance.database, apps)
    code = devices.issue_activation(_Cli(), int(signer_id)).code  # type: ignore[arg-type]
    key = SM2PrivateKey.generate()
    return devices.activate(code, key.public_key().to_der(), "fuzz").id, key


class _Cli:
    kind, name, id = "cli", "fuzz", 0


def _may_call(principal: str, access: dict[str, Any]) -> bool:
    if access.get("public"):
        return True
    if principal == "device":
        return bool(access.get("device"))
    if principal == "app":
        return bool(access.get("scopes"))
    return principal in access.get("roles", [])


def _cases() -> list[tuple[str, str, str, GenerationMode, int]]:
    """(principal, METHOD, path, mode, examples) for every documented operation, read at
    collection time from the document of a throwaway appliance."""
    with tempfile.TemporaryDirectory() as data_dir:
        appliance = build(config_module.load(env={"MEDSIGN_DATA_DIR": data_dir}))
        try:
            document = openapi.build_document(appliance.app)
        finally:
            appliance.audit.close()
            appliance.database.dispose()
    cases = []
    for principal in PRINCIPALS:
        for method, path, op in openapi.iter_operations(document):
            if op["x-medsign-access"].get("public") and principal != "anonymous":
                continue  # who calls a public operation changes nothing: fuzzed once
            if not _may_call(principal, op["x-medsign-access"]):
                cases.append((principal, method, path, GenerationMode.POSITIVE, FEW_EXAMPLES))
                continue
            cases.append((principal, method, path, GenerationMode.POSITIVE, MAX_EXAMPLES))
            if op.get("parameters") or op.get("requestBody"):  # else nothing to break
                cases.append((principal, method, path, GenerationMode.NEGATIVE, MAX_EXAMPLES))
    return cases


CASES = _cases()


def fuzz(schema: Any, method: str, path: str, mode: GenerationMode,
         max_examples: int = MAX_EXAMPLES) -> None:
    """Fuzz one operation; raises on the first failed check (after hypothesis shrinks it)."""
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.parametrize("case", CASES, ids=[f"{who} {m} {p} {g.value}"
                                             for who, m, p, g, _ in CASES])
def test_fuzz(installations: dict[str, Any],
              case: tuple[str, str, str, GenerationMode, int]) -> None:
    principal, method, path, mode, examples = case
    fuzz(installations["schema_for"](principal), method, path, mode, examples)


# ---------------------------------------------------------------------------------------------
# The harness fails where it should


class _Broken:
    access: ClassVar[dict[str, Any]] = {"GET": PUBLIC, "POST": PUBLIC}
    openapi: ClassVar[dict[str, Any]] = {
        "GET": {"responses": {"200": oa.response("A count", {
            "type": "object", "required": ["count"],
            "properties": {"count": {"type": "integer"}}})}},
        "POST": {"requestBody": oa.body({"type": "object", "properties": {
            "n": {"type": "integer"}}}),
            "responses": {"200": oa.response("OK", {"type": "object"})}},
    }

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"count": "three"}  # not an integer: a schema violation

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.get_media()
        resp.media = {"half": 10 // body["n"]}  # n = 0 (or no n) -> an unhandled error, 500


@pytest.fixture(scope="module")
def broken_schema() -> Any:
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(
        middleware=[AccessControl([])])
    problems.install(app)
    app.add_route("/broken", _Broken())
    app.add_route(openapi.OPENAPI_PATH, openapi.OpenApiDocument(app))
    return schemathesis.openapi.from_wsgi(openapi.OPENAPI_PATH, app)


def _failures(schema: Any, method: str, mode: GenerationMode) -> list[str]:
    with pytest.raises(FailureGroup) as found:
        fuzz(schema, method, "/broken", mode, max_examples=10)
    return sorted(type(failure).__name__ for failure in found.value.exceptions)


def test_harness_reports_a_schema_violation(broken_schema: Any) -> None:
    assert _failures(broken_schema, "GET", GenerationMode.POSITIVE) == ["JsonSchemaError"]


def test_harness_reports_a_server_error(broken_schema: Any) -> None:
    assert "ServerError" in _failures(broken_schema, "POST", GenerationMode.POSITIVE)
