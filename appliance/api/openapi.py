"""The OpenAPI 3.1 document at ``GET /api/v1/openapi.json`` (public), built from the running app.

Every route registered in the Falcon app appears with every method its resource implements:
the document is generated from the app's router, never written by hand, so it cannot miss a
route.  What a route *means* comes from the resource:

The declaration convention
--------------------------
A resource class declares, next to its ``access`` map, an ``openapi`` map from HTTP method to an
OpenAPI Operation Object fragment (plain dicts; the helpers below keep them short)::

    from appliance.api import openapi as oa

    class Collection:
        access = {"GET": READ, "POST": WRITE}
        openapi = {
            "GET": {
                "summary": "List signers",
                "parameters": [oa.query("status", {"enum": ["draft", "active"]})],
                "responses": {"200": oa.response("One page of signers", {"type": "object"})},
            },
            "POST": {
                "summary": "Create a draft signer",
                "requestBody": oa.body({"type": "object", "properties": {...},
                                        "required": [...], "additionalProperties": False}),
                "responses": {"201": oa.response("The new signer", SIGNER_SCHEMA)},
            },
        }
        openapi_schemas = {"Signer": SIGNER_SCHEMA}  # optional: named schemas, $ref-able as
                                                     # {"$ref": "#/components/schemas/Signer"}

Schemas are JSON Schema 2020-12 (OpenAPI 3.1 dialect).  Declare what the resource really
answers: the schemathesis run (tests/appliance/test_schemathesis.py) checks every response
against it.  The generator adds, per operation, unless declared:

- ``operationId`` (``<module>.<Class>.<method>``), ``tags`` (the module), ``summary`` (the first
  line of the responder's or the class's docstring);
- path parameters from the URI template, typed by its converter (``{id:int}`` -> integer);
- ``security`` and ``x-medsign-access`` from the ``access`` map (public; console roles, as role
  names of the ``consoleSession`` scheme; application scopes, of ``applicationHmac``);
- error responses as RFC 9457 problem documents: ``4XX`` always, ``503`` (sealed) for
  non-public operations.

A resource without a declaration (or without one for a method) is still listed, with a
generic description marked ``x-medsign-undocumented: true``: a JSON object body for POST, PUT
and PATCH and any response.  ``tests/appliance/test_openapi.py`` reports such resources.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import falcon

from appliance.api.access import PUBLIC, Access, declared_access

__all__ = [
    "PROBLEM",
    "OpenApiDocument",
    "Route",
    "body",
    "build_document",
    "path_param",
    "query",
    "response",
    "routes",
    "undocumented",
]

OPENAPI_PATH = "/api/v1/openapi.json"
OPENAPI_VERSION = "3.1.0"
PROBLEM_JSON = "application/problem+json"
PROBLEM = {"$ref": "#/components/schemas/Problem"}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FIELD = re.compile(r"\{(\w+)(?::(\w+)(?:\((.*?)\))?)?\}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem document; `code` is stable, `detail` is for people.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


# ---------------------------------------------------------------------------------------------
# Helpers for declarations


def body(schema: Mapping[str, Any], *, required: bool = True, description: str = "",
         media_type: str = "application/json") -> dict[str, Any]:
    """A Request Body Object with one media type."""
    out: dict[str, Any] = {"required": required,
                           "content": {media_type: {"schema": dict(schema)}}}
    if description:
        out["description"] = description
    return out


def response(description: str, schema: Mapping[str, Any] | None = None, *,
             media_type: str = "application/json",
             headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Response Object (no content when ``schema`` is None)."""
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = {media_type: {"schema": dict(schema)}}
    if headers:
        out["headers"] = dict(headers)
    return out


def problem(description: str) -> dict[str, Any]:
    """An error Response Object: a problem document."""
    return response(description, PROBLEM, media_type=PROBLEM_JSON)


def query(name: str, schema: Mapping[str, Any], *, required: bool = False,
          description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "required": required,
                           "schema": dict(schema)}
    if description:
        out["description"] = description
    return out


def path_param(name: str, schema: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": dict(schema)}
    if description:
        out["description"] = description
    return out


# ---------------------------------------------------------------------------------------------
# Reading the app


@dataclass(frozen=True)
class Route:
    """One routed resource: its URI template, the resource and the methods it implements."""

    template: str
    resource: object
    methods: tuple[str, ...]

    @property
    def path(self) -> str:
        """The OpenAPI path (converters dropped: ``{id:int}`` -> ``{id}``)."""
        return _FIELD.sub(lambda m: "{" + m.group(1) + "}", self.template)


def _implemented(resource: object, responder: Any) -> bool:
    return getattr(responder, "__self__", None) is resource


def app_routes(app: falcon.App[Any, Any]) -> list[Route]:
    """Every route of a Falcon app (CompiledRouter), sorted by path."""
    router = app._router
    roots = getattr(router, "_roots", None)
    if roots is None:
        raise TypeError(f"cannot list the routes of a {type(router).__name__}")
    found: list[Route] = []

    def walk(nodes: list[Any]) -> None:
        for node in nodes:
            if node.resource is not None and node.method_map:
                methods = tuple(sorted(
                    method for method, responder in node.method_map.items()
                    if _implemented(node.resource, responder)))
                found.append(Route(node.uri_template, node.resource, methods))
            walk(node.children)

    walk(roots)
    return sorted(found, key=lambda r: r.path)


def undocumented(routes_: list[Route]) -> list[str]:
    """``"METHOD path (Class)"`` for every operation without an ``openapi`` declaration."""
    missing = []
    for route in routes_:
        declared = getattr(route.resource, "openapi", None) or {}
        for method in route.methods:
            if method == "OPTIONS" and method not in declared:
                continue
            if method not in declared:
                missing.append(f"{method} {route.path} ({type(route.resource).__name__})")
    return missing


# ---------------------------------------------------------------------------------------------
# Building the document


def _converter_schema(converter: str | None, args: str | None) -> dict[str, Any]:
    if converter == "int":
        schema: dict[str, Any] = {"type": "integer"}
        for name, value in re.findall(r"(min|max)\s*=\s*(-?\d+)", args or ""):
            schema["minimum" if name == "min" else "maximum"] = int(value)
        return schema
    if converter == "float":
        return {"type": "number"}
    if converter == "uuid":
        return {"type": "string", "format": "uuid"}
    if converter == "dt":
        return {"type": "string"}
    return {"type": "string", "pattern": "^[^/]+$"}


def _path_parameters(template: str) -> list[dict[str, Any]]:
    return [path_param(m.group(1), _converter_schema(m.group(2), m.group(3)))
            for m in _FIELD.finditer(template)]


def _access_of(resource: object, method: str) -> Access | None:
    try:
        return declared_access(resource).get(method)
    except TypeError:
        return None


def _security(rule: Access | None) -> tuple[list[dict[str, list[str]]], dict[str, Any]]:
    if rule is None:
        return [], {"public": False, "roles": [], "scopes": [], "device": False,
                    "declared": False}
    extension = {"public": rule.public, "roles": sorted(rule.roles),
                 "scopes": sorted(rule.scopes), "device": rule.device}
    if rule.public:
        return [], extension
    alternatives: list[dict[str, list[str]]] = []
    if rule.roles:
        alternatives.append({"consoleSession": sorted(rule.roles)})
    if rule.scopes:
        alternatives.append({"applicationHmac": sorted(rule.scopes)})
    if rule.device:
        alternatives.append({"deviceSignature": []})
    return alternatives, extension


def _describe_access(extension: Mapping[str, Any]) -> str:
    if extension.get("public"):
        return "Access: public."
    parts = []
    if extension["roles"]:
        parts.append("console roles " + ", ".join(extension["roles"]))
    if extension["scopes"]:
        parts.append("application scopes " + ", ".join(extension["scopes"]))
    if extension.get("device"):
        parts.append("a signer's bound device")
    return "Access: " + (" or ".join(parts) if parts else "nobody (deny by default)") + "."


def _first_line(text: str | None) -> str:
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip().rstrip(".")
    return ""


def _operation(route: Route, method: str, used_ids: set[str]) -> dict[str, Any]:
    resource = route.resource
    cls = type(resource)
    module = cls.__module__.rsplit(".", 1)[-1]
    declared_map = getattr(resource, "openapi", None) or {}
    declared = declared_map.get(method)
    op: dict[str, Any] = copy.deepcopy(dict(declared)) if declared else {}
    if declared is None:
        op["x-medsign-undocumented"] = True
    responder = getattr(resource, f"on_{method.lower()}", None)
    op.setdefault("summary", _first_line(getattr(responder, "__doc__", None))
                  or _first_line(cls.__doc__) or f"{method} {route.path}")
    operation_id = op.get("operationId") or f"{module}.{cls.__name__}.{method.lower()}"
    while operation_id in used_ids:
        operation_id += "_"
    used_ids.add(operation_id)
    op["operationId"] = operation_id
    op.setdefault("tags", [module])
    rule = PUBLIC if method == "OPTIONS" else _access_of(resource, method)
    security, extension = _security(rule)
    op.setdefault("security", security)
    op["x-medsign-access"] = extension
    access_line = _describe_access(extension)
    op["description"] = (op["description"].rstrip() + "\n\n" + access_line
                         if op.get("description") else access_line)
    declared_params = {(p.get("name"), p.get("in")) for p in op.get("parameters", [])
                       if isinstance(p, Mapping)}
    path_params = [p for p in _path_parameters(route.template)
                   if (p["name"], "path") not in declared_params]
    if path_params or op.get("parameters"):
        op["parameters"] = path_params + list(op.get("parameters", []))
    if declared is None and method in _BODY_METHODS:
        op["requestBody"] = body({"type": "object"}, required=False,
                                 description="undocumented: a JSON object")
    responses: dict[str, Any] = dict(op.get("responses") or {})
    if declared is None:
        responses.setdefault("default", {"description": "undocumented"})
    if not responses:
        responses["default"] = {"description": "undocumented"}
    responses.setdefault("4XX", problem("Refused: a problem document with a stable `code`"))
    if not extension.get("public"):
        responses.setdefault("503", problem("The appliance is sealed (code `sealed`)"))
    op["responses"] = responses
    return op


def _components(routes_: list[Route], session_cookie: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    for route in routes_:
        for name, schema in (getattr(route.resource, "openapi_schemas", None) or {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"two different schemas are both named {name!r}")
            schemas[name] = schema
    return {
        "schemas": schemas,
        "securitySchemes": {
            "applicationHmac": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "Application credential: `Authorization: MEDSIGN-HMAC-SM3 "
                               "keyId=..., signature=...` (or MEDSIGN-HMAC-SHA256) with "
                               "`X-Medsign-Timestamp` and `X-Medsign-Nonce`; the string to "
                               "sign is specified in appliance/api/hmac_signing.py.",
            },
            "deviceSignature": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "A signer's bound phone: `Authorization: MEDSIGN-DEVICE-SM2 "
                               "deviceId=..., signature=...` with `X-Medsign-Timestamp` and "
                               "`X-Medsign-Nonce`; an SM2 signature (device key, default "
                               "signer ID) over the same string to sign as applicationHmac "
                               "with SM3 (appliance/api/device_signing.py).",
            },
            "consoleSession": {
                "type": "apiKey", "in": "cookie", "name": session_cookie,
                "description": "Console session (password + TOTP at POST "
                               "/api/v1/console/login); state-changing requests also send "
                               "the CSRF token in `X-CSRF-Token`.",
            },
        },
    }


def _version() -> str:
    try:
        return importlib.metadata.version("medsign")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0"


def build_document(app: falcon.App[Any, Any], *,
                   session_cookie: str = "medsign_session") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route registered in ``app``."""
    routes_ = app_routes(app)
    used_ids: set[str] = set()
    paths: dict[str, Any] = {}
    for route in routes_:
        item = paths.setdefault(route.path, {})
        for method in route.methods:
            if method == "OPTIONS" and "OPTIONS" not in (
                    getattr(route.resource, "openapi", None) or {}):
                continue  # Falcon's CORS-style default responder on every route
            item[method.lower()] = _operation(route, method, used_ids)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "medsign appliance API",
            "version": _version(),
            "description": "Hospital signing and CA appliance.  Errors are RFC 9457 problem "
                           "documents (`application/problem+json`) with a stable `code`. "
                           "Applications sign every request (scheme `applicationHmac`); "
                           "console accounts use a session cookie and a CSRF header.",
        },
        "paths": paths,
        "components": _components(routes_, session_cookie),
    }


def iter_operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of a document."""
    for path, item in document["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


# ---------------------------------------------------------------------------------------------
# The resource


class OpenApiDocument:
    """``GET /api/v1/openapi.json``: built on first use (every route is registered by then)."""

    access = {"GET": PUBLIC}
    openapi = {
        "GET": {
            "summary": "This API's OpenAPI 3.1 document",
            "responses": {"200": response("The OpenAPI document", {
                "type": "object", "required": ["openapi", "info", "paths"],
                "properties": {"openapi": {"type": "string", "pattern": "^3\\.1\\."}}})},
        },
    }

    def __init__(self, app: falcon.App[Any, Any], *,
                 session_cookie: str = "medsign_session") -> None:
        self._app = app
        self._session_cookie = session_cookie
        self._lock = threading.Lock()
        self._text: str | None = None

    def text(self) -> str:
        with self._lock:
            if self._text is None:
                self._text = json.dumps(build_document(self._app,
                                                       session_cookie=self._session_cookie),
                                        ensure_ascii=False, sort_keys=False)
            return self._text

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self.text()


def session_cookie_name(cookie_secure: bool) -> str:
    """The console session cookie's name (as ``appliance.api.auth.SessionCookie`` sets it)."""
    return "__Host-medsign_session" if cookie_secure else "medsign_session"


def routes(app: falcon.App[Any, Any], *, cookie_secure: bool = True) -> dict[str, Any]:
    return {OPENAPI_PATH: OpenApiDocument(app,
                                          session_cookie=session_cookie_name(cookie_secure))}
