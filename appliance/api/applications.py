"""Application credential routes (security administrators) and ``/api/v1/whoami``, the probe a
signed request can call to check its credential (and that the benchmark uses for the HMAC round
trip).  A secret appears in exactly one answer: the one that created or rotated it."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import ROLES, SECURITY_ADMIN, either, roles, scopes
from appliance.api.console import optional_bool, principal
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.applications import ALL_SCOPES, STATUSES, ApplicationService

MANAGER = roles(SECURITY_ADMIN)
ID = "{app_id:int(min=1, max=9223372036854775807)}"

CREDENTIAL: dict[str, Any] = {
    "type": "object",
    "description": "An application credential (the secret is never listed).",
    "required": ["id", "name", "key_id", "scopes", "status", "created_at", "created_by"],
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "key_id": {"type": "string", "pattern": "^app_[0-9a-f]{16}$"},
        "scopes": {"type": "array", "items": {"enum": list(ALL_SCOPES)}},
        "status": {"enum": list(STATUSES)},
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": {"type": ["string", "null"]},
    },
}
CREDENTIAL_REF = {"$ref": "#/components/schemas/ApplicationCredential"}
SCHEMAS = {"ApplicationCredential": CREDENTIAL}
_SCOPES_IN = {"description": "space-separated string or list; known: " + " ".join(ALL_SCOPES),
              "anyOf": [{"type": "string", "maxLength": 512},
                        {"type": "array", "items": {"enum": list(ALL_SCOPES)}}]}
_NAME = {"type": "string", "minLength": 1, "maxLength": 128}
_SECRET = {"type": "string", "description": "base64url of the 32-byte secret, shown once"}


def _scopes(body: dict[str, Any], *, required: bool) -> str | list[str] | None:
    value = body.get("scopes")
    if value is None and not required:
        return None
    if isinstance(value, str) or (isinstance(value, list)
                                  and all(isinstance(v, str) for v in value)):
        return value
    raise ValidationFailed('scopes must be a space-separated string or a list of strings')


class Applications:
    """GET: every credential (no secrets).  POST {"name", "scopes"}: a new credential; the
    answer has its ``key_id`` and ``secret`` (base64url of 32 bytes), shown this once."""

    access = {"GET": MANAGER, "POST": MANAGER}
    openapi = {
        "GET": {"summary": "Every application credential",
                "responses": {"200": oa.response("The credentials", {
                    "type": "object", "required": ["applications", "known_scopes"],
                    "properties": {"applications": {"type": "array", "items": CREDENTIAL_REF},
                                   "known_scopes": {"type": "array",
                                                    "items": {"type": "string"}}}})}},
        "POST": {
            "summary": "Create a credential; its secret is in this answer only",
            "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                    "required": ["name", "scopes"],
                                    "properties": {"name": _NAME, "scopes": _SCOPES_IN}}),
            "responses": {"201": oa.response("Created", {
                "type": "object", "required": ["application", "secret"],
                "properties": {"application": CREDENTIAL_REF, "secret": _SECRET}})},
        },
    }
    openapi_schemas = SCHEMAS

    def __init__(self, applications: ApplicationService) -> None:
        self._apps = applications

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"applications": [c.to_json() for c in self._apps.list_credentials()],
                      "known_scopes": list(ALL_SCOPES)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"name", "scopes"}, required={"name", "scopes"})
        scope_list = _scopes(body, required=True)
        assert scope_list is not None
        credential, secret = self._apps.create(
            principal(req), name=required_str(body, "name", 128), scopes=scope_list)
        resp.status = falcon.HTTP_201
        resp.media = {"application": credential.to_json(), "secret": secret}


class Application:
    """GET one credential; PATCH {"name", "scopes", "status", "rotate_secret"} (any subset);
    with ``rotate_secret`` the answer carries the new secret, shown this once."""

    access = {"GET": MANAGER, "PATCH": MANAGER}
    openapi = {
        "GET": {"summary": "One application credential",
                "responses": {"200": oa.response("The credential", {
                    "type": "object", "required": ["application"],
                    "properties": {"application": CREDENTIAL_REF}})}},
        "PATCH": {
            "summary": "Rename, change scopes, disable/enable or rotate the secret",
            "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                    "properties": {"name": _NAME, "scopes": _SCOPES_IN,
                                                   "status": {"enum": list(STATUSES)},
                                                   "rotate_secret": {"type": "boolean"}}},
                                   required=False),
            "responses": {"200": oa.response("Changed; a rotated secret is shown once", {
                "type": "object", "required": ["application", "secret"],
                "properties": {"application": CREDENTIAL_REF,
                               "secret": {"anyOf": [_SECRET, {"type": "null"}]}}})},
        },
    }
    openapi_schemas = SCHEMAS

    def __init__(self, applications: ApplicationService) -> None:
        self._apps = applications

    def on_get(self, _req: falcon.Request, resp: falcon.Response, app_id: int) -> None:
        resp.media = {"application": self._apps.get(app_id).to_json()}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, app_id: int) -> None:
        body = json_body(req, allowed={"name", "scopes", "status", "rotate_secret"})
        credential, secret = self._apps.update(
            principal(req), app_id, name=optional_str(body, "name", 128),
            scopes=_scopes(body, required=False), status=optional_str(body, "status", 16),
            rotate_secret=optional_bool(body, "rotate_secret"))
        resp.media = {"application": credential.to_json(), "secret": secret}


class WhoAmI:
    """Who the request authenticated as: any application scope, any console role."""

    access = {"GET": either(roles(*ROLES), scopes(*ALL_SCOPES))}
    openapi = {"GET": {
        "summary": "Who this request authenticated as (a probe for signed requests)",
        "responses": {"200": oa.response("The caller", {
            "type": "object", "required": ["kind", "name", "id", "role", "scopes"],
            "properties": {"kind": {"enum": ["admin", "app"]}, "name": {"type": "string"},
                           "id": {"type": "integer"}, "role": {"type": ["string", "null"]},
                           "scopes": {"type": "array", "items": {"type": "string"}}}})},
    }}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        who = principal(req)
        resp.media = {"kind": who.kind, "name": who.name, "id": who.id, "role": who.role,
                      "scopes": sorted(who.scopes)}


def routes(applications: ApplicationService) -> dict[str, Any]:
    return {
        "/api/v1/applications": Applications(applications),
        f"/api/v1/applications/{ID}": Application(applications),
        "/api/v1/whoami": WhoAmI(),
    }
