"""schemathesis against the appliance's own OpenAPI document: no 5xx, no schema violations.

The app is the real composition root (``appliance.wsgi.build``) on SQLite, initialized with a
2-of-3 Shamir KEK (so a fuzzed unseal attempt is refused at once instead of costing an Argon2id
run) and unsealed.  schemathesis loads ``/api/v1/openapi.json`` from the WSGI app itself and
sends, for every operation, generated valid and invalid requests.

Checks: ``not_a_server_error`` (no 5xx), ``response_schema_conformance`` (bodies match the
declared schemas), ``status_code_conformance`` and ``content_type_conformance``.

Deterministic enough for CI: hypothesis is derandomized (the examples depend only on the
document), has no example database, and every operation gets at most ``MAX_EXAMPLES`` examples
(``MEDSIGN_FUZZ_EXAMPLES`` overrides; the budget is examples x operations x principals, a
few seconds per operation here).
"""

from __future__ import annotations

import os
import tempfile
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
from appliance.api import openapi, problems
from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, AccessControl
from appliance.custody import KekStore, initialize_kek
from appliance.wsgi import Appliance, build

MAX_EXAMPLES = int(os.environ.get("MEDSIGN_FUZZ_EXAMPLES", "25"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
]


class KeepUnsealed:
    """WSGI wrapper: after every request, unseal again if a fuzzed request sealed the appliance
    (POST /api/v1/sys/seal is a legitimate operation; a sealed appliance answers 503)."""

    def __init__(self, appliance: Appliance, keyring: Any) -> None:
        self._appliance, self._keyring = appliance, keyring

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return self._appliance.app(environ, start_response)
        finally:
            if self._appliance.key_holder.sealed:
                self._appliance.key_holder.adopt(self._keyring)


@pytest.fixture(scope="module")
def unsealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Appliance, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    built = build(config_module.load(env={"MEDSIGN_DATA_DIR": str(data_dir)}))
    keyring, _ = initialize_kek(KekStore(built.database), shamir=(2, 3))
    built.key_holder.adopt(keyring)
    yield built, keyring
    built.database.dispose()


@pytest.fixture(scope="module")
def api_schema(unsealed: tuple[Appliance, Any]) -> Any:
    built, keyring = unsealed
    return schemathesis.openapi.from_wsgi(openapi.OPENAPI_PATH, KeepUnsealed(built, keyring))


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(METHOD, path, mode) of every documented operation, read at collection time from the
    document of a throwaway appliance (every test below then fuzzes one operation)."""
    with tempfile.TemporaryDirectory() as data_dir:
        built = build(config_module.load(env={"MEDSIGN_DATA_DIR": data_dir}))
        try:
            document = openapi.build_document(built.app)
        finally:
            built.database.dispose()
    cases = []
    for method, path, op in openapi.iter_operations(document):
        cases.append((method, path, GenerationMode.POSITIVE))
        if op.get("parameters") or op.get("requestBody"):  # else there is nothing to break
            cases.append((method, path, GenerationMode.NEGATIVE))
    return cases


OPERATIONS = _operations()


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


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS,
                         ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS])
def test_anonymous(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    fuzz(api_schema, method, path, mode)


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
