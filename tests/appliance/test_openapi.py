"""The OpenAPI 3.1 document at /api/v1/openapi.json against the app that serves it.

- it is public, valid OpenAPI 3.1 (schemathesis's own validator: the official 3.1 meta-schema)
  and every embedded schema is valid JSON Schema 2020-12;
- every route registered in the app appears, with exactly the methods its resource implements
  (listed independently through ``falcon.inspect``), and every operation's access (security,
  ``x-medsign-access``) is the resource's ``access`` declaration;
- resources without an ``openapi`` declaration are listed as a report (a warning), not a
  failure, until every owner has declared theirs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import falcon
import falcon.inspect
import falcon.testing
import jsonschema_rs
import pytest
import schemathesis

from appliance import config as config_module
from appliance.api import openapi
from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, Access, declared_access, roles, scopes
from appliance.wsgi import Appliance, build


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    data_dir = tmp_path_factory.mktemp("openapi")
    built = build(config_module.load(env={"MEDSIGN_DATA_DIR": str(data_dir)}))
    yield built
    built.database.dispose()


@pytest.fixture(scope="module")
def document(appliance: Appliance) -> dict[str, Any]:
    client = falcon.testing.TestClient(appliance.app)
    result = client.simulate_get(openapi.OPENAPI_PATH)  # no credentials: the document is public
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = result.json
    return doc


def _template_to_path(template: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", template)


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document
    ids = [op["operationId"] for _, _, op in openapi.iter_operations(document)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def _schemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON Schema embedded in the document (under a "schema" key, or a component)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield f"{where}/schema", value
            else:
                yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{where}/{index}")


def test_every_embedded_schema_is_valid_json_schema(document: dict[str, Any]) -> None:
    found = list(_schemas(document["paths"]))
    found += [(f"components/{name}", schema)
              for name, schema in document["components"]["schemas"].items()]
    assert len(found) > 10
    for where, schema in found:
        if "$ref" in schema and len(schema) == 1:
            continue
        assert jsonschema_rs.meta.is_valid(schema), f"{where}: {schema}"


def test_every_route_appears_with_its_methods(appliance: Appliance,
                                              document: dict[str, Any]) -> None:
    listed = {}
    for route in falcon.inspect.inspect_routes(appliance.app):
        methods = {m.method for m in route.methods if not m.internal} - {"OPTIONS"}
        listed[_template_to_path(route.path)] = methods
    documented = {path: {m.upper() for m in item} for path, item in document["paths"].items()}
    assert documented == listed
    assert openapi.OPENAPI_PATH in documented and "/healthz" in documented


def test_every_operation_carries_the_access_declaration(appliance: Appliance,
                                                        document: dict[str, Any]) -> None:
    resources = {route.path: route.resource for route in openapi.app_routes(appliance.app)}
    for method, path, op in openapi.iter_operations(document):
        rule = declared_access(resources[path])[method]
        access = op["x-medsign-access"]
        assert access == {"public": rule.public, "roles": sorted(rule.roles),
                          "scopes": sorted(rule.scopes), "device": rule.device}, (method, path)
        if rule.public:
            assert op["security"] == [], (method, path)
            continue
        schemes = {name: sorted(names) for alt in op["security"] for name, names in alt.items()}
        assert schemes.get("consoleSession", []) == sorted(rule.roles), (method, path)
        assert schemes.get("applicationHmac", []) == sorted(rule.scopes), (method, path)
        assert "503" in op["responses"] and "4XX" in op["responses"]
        for scheme in schemes:
            assert scheme in document["components"]["securitySchemes"]


def test_errors_are_documented_as_problems(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for method, path, op in openapi.iter_operations(document):
        content = op["responses"]["4XX"]["content"]
        assert content == {"application/problem+json": {"schema": openapi.PROBLEM}}, (method,
                                                                                       path)


def test_report_resources_without_a_declaration(appliance: Appliance) -> None:
    """A report, not a failure: the owners add ``openapi`` maps (see appliance/api/openapi.py)."""
    missing = openapi.undocumented(openapi.app_routes(appliance.app))
    if missing:
        warnings.warn("operations without an openapi declaration "
                      f"({len(missing)}):\n  " + "\n  ".join(missing), stacklevel=1)
    # The system routes and the document itself are declared.
    for path in ("/healthz", "/metrics", "/api/v1/sys/unseal", openapi.OPENAPI_PATH):
        assert not any(f" {path} " in line for line in missing), missing


# ---------------------------------------------------------------------------------------------
# The generator on a small app of its own


class Declared:
    """Things."""

    access: ClassVar[dict[str, Access]] = {"GET": PUBLIC, "POST": roles("security_admin")}
    openapi: ClassVar[dict[str, Any]] = {
        "POST": {"summary": "Make a thing", "requestBody": oa.body({"type": "object"}),
                 "responses": {"201": oa.response("Made", {"type": "object"})}}}

    def on_get(self, _req: falcon.Request, resp: falcon.Response, thing_id: int) -> None:
        """Read one thing."""
        resp.media = {"id": thing_id}

    def on_post(self, _req: falcon.Request, resp: falcon.Response, thing_id: int) -> None:
        resp.status = falcon.HTTP_201


class Bare:
    access: ClassVar[dict[str, Access]] = {"PUT": scopes("thing:write")}

    def on_put(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = {}


def test_generator_on_a_small_app() -> None:
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App()
    app.add_route("/things/{thing_id:int(min=1)}", Declared())
    app.add_route("/bare/{name}", Bare())
    doc = openapi.build_document(app, session_cookie="c")
    schemathesis.openapi.from_dict(doc).validate()
    assert set(doc["paths"]) == {"/things/{thing_id}", "/bare/{name}"}
    get = doc["paths"]["/things/{thing_id}"]["get"]
    assert get["summary"] == "Read one thing"  # the responder's docstring
    assert get["x-medsign-undocumented"] is True and get["security"] == []
    assert get["parameters"] == [{"name": "thing_id", "in": "path", "required": True,
                                  "schema": {"type": "integer", "minimum": 1}}]
    post = doc["paths"]["/things/{thing_id}"]["post"]
    assert "x-medsign-undocumented" not in post
    assert post["security"] == [{"consoleSession": ["security_admin"]}]
    assert set(post["responses"]) == {"201", "4XX", "503"}
    put = doc["paths"]["/bare/{name}"]["put"]
    assert put["security"] == [{"applicationHmac": ["thing:write"]}]
    assert put["requestBody"]["required"] is False  # the generic description
    assert put["operationId"] == "test_openapi.Bare.put"
    assert openapi.undocumented(openapi.app_routes(app)) == [
        "PUT /bare/{name} (Bare)", "GET /things/{thing_id} (Declared)"]


def test_session_cookie_name_follows_the_configuration(tmp_path: Path) -> None:
    for secure, name in ((True, "__Host-medsign_session"), (False, "medsign_session")):
        env = {"MEDSIGN_DATA_DIR": str(tmp_path / str(secure)),
               "MEDSIGN_SECURITY_COOKIE_SECURE": str(secure).lower()}
        built = build(config_module.load(env=env))
        try:
            doc = falcon.testing.TestClient(built.app).simulate_get(openapi.OPENAPI_PATH).json
        finally:
            built.database.dispose()
        assert doc["components"]["securitySchemes"]["consoleSession"]["name"] == name
