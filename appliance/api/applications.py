"""Application credential routes (security administrators) and ``/api/v1/whoami``, the probe a
signed request can call to check its credential (and that the benchmark uses for the HMAC round
trip).  A secret appears in exactly one answer: the one that created or rotated it."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api.access import ROLES, SECURITY_ADMIN, either, roles, scopes
from appliance.api.console import optional_bool, principal
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.applications import ALL_SCOPES, ApplicationService

MANAGER = roles(SECURITY_ADMIN)
ID = "{app_id:int(min=1, max=9223372036854775807)}"


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
