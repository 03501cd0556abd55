"""Console session and account routes: login, logout, me, and account management.

Access: login is public; logout and ``/me`` are for every console role (the audit
administrator included: they are its own session); account management is for security
administrators only.  The services re-check every rule (no self role change, only a security
administrator manages accounts), so a wrong declaration here would still not grant anything.
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api.access import PUBLIC, ROLES, SECURITY_ADMIN, Principal, roles
from appliance.api.auth import SessionCookie, session_expiry
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.admins import MAX_PASSWORD, AdminService, csrf_token_for

ANY_ROLE = roles(*ROLES)
MANAGER = roles(SECURITY_ADMIN)
ID = "{admin_id:int(min=1, max=9223372036854775807)}"


def optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{name} must be true or false")
    return value


def principal(req: falcon.Request) -> Principal:
    who: Principal = req.context.principal
    return who


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


class Login:
    """POST {"username", "password", "totp"}: sets the session cookie; returns the account and
    the CSRF token to send as ``X-CSRF-Token`` on every state-changing request."""

    access = {"POST": PUBLIC}

    def __init__(self, admins: AdminService, cookie: SessionCookie) -> None:
        self._admins, self._cookie = admins, cookie

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"username", "password", "totp"},
                         required={"username", "password", "totp"})
        result = self._admins.login(required_str(body, "username", 64),
                                    required_str(body, "password", MAX_PASSWORD),
                                    required_str(body, "totp", 16), ip=req.remote_addr)
        self._cookie.set(resp, result.session_token)
        resp.media = {"account": result.account.to_json(), "csrf_token": result.csrf_token,
                      "expires_at": _iso(result.expires_at)}


class Logout:
    access = {"POST": ANY_ROLE}

    def __init__(self, admins: AdminService, cookie: SessionCookie) -> None:
        self._admins, self._cookie = admins, cookie

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._admins.logout(req.context.session_token)
        self._cookie.clear(resp)
        resp.media = {"logged_out": True}


class Me:
    """GET: the signed-in account and its CSRF token.  PATCH {"current_password",
    "new_password"}: change one's own password (other sessions end)."""

    access = {"GET": ANY_ROLE, "PATCH": ANY_ROLE}

    def __init__(self, admins: AdminService) -> None:
        self._admins = admins

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        account = self._admins.get(principal(req).id)
        resp.media = {"account": account.to_json(),
                      "csrf_token": csrf_token_for(req.context.session_token),
                      "expires_at": _iso(session_expiry(req))}

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"current_password", "new_password"},
                         required={"current_password", "new_password"})
        account = self._admins.change_password(
            principal(req).id, required_str(body, "current_password", MAX_PASSWORD),
            required_str(body, "new_password", MAX_PASSWORD),
            keep_session=req.context.session.id)
        resp.media = {"account": account.to_json()}


class Accounts:
    """GET: every account.  POST {"username", "role", "password", "display_name"?}: a new
    account; the answer carries its TOTP seed and otpauth:// URI, shown this once."""

    access = {"GET": MANAGER, "POST": MANAGER}

    def __init__(self, admins: AdminService) -> None:
        self._admins = admins

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"accounts": [a.to_json() for a in self._admins.list_accounts()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"username", "role", "password", "display_name"},
                         required={"username", "role", "password"})
        account, enrolment = self._admins.create(
            principal(req), username=required_str(body, "username", 64),
            role=required_str(body, "role", 32),
            password=required_str(body, "password", MAX_PASSWORD),
            display_name=optional_str(body, "display_name", 128) or "")
        resp.status = falcon.HTTP_201
        resp.media = {"account": account.to_json(), "totp": enrolment.to_json()}


class Account:
    """GET one account; PATCH {"display_name", "role", "status", "password", "reset_totp",
    "unlock"} (any subset); DELETE retires it (the row stays for the audit trail)."""

    access = {"GET": MANAGER, "PATCH": MANAGER, "DELETE": MANAGER}

    def __init__(self, admins: AdminService) -> None:
        self._admins = admins

    def on_get(self, _req: falcon.Request, resp: falcon.Response, admin_id: int) -> None:
        resp.media = {"account": self._admins.get(admin_id).to_json()}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, admin_id: int) -> None:
        body = json_body(req, allowed={"display_name", "role", "status", "password",
                                       "reset_totp", "unlock"})
        account, enrolment = self._admins.update(
            principal(req), admin_id, display_name=optional_str(body, "display_name", 128),
            role=optional_str(body, "role", 32), status=optional_str(body, "status", 16),
            password=optional_str(body, "password", MAX_PASSWORD),
            reset_totp=optional_bool(body, "reset_totp"), unlock=optional_bool(body, "unlock"))
        resp.media = {"account": account.to_json(),
                      "totp": enrolment.to_json() if enrolment else None}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, admin_id: int) -> None:
        self._admins.delete(principal(req), admin_id)
        resp.media = {"deleted": True, "id": admin_id}


def routes(admins: AdminService, cookie: SessionCookie) -> dict[str, Any]:
    return {
        "/api/v1/console/login": Login(admins, cookie),
        "/api/v1/console/logout": Logout(admins, cookie),
        "/api/v1/console/me": Me(admins),
        "/api/v1/console/accounts": Accounts(admins),
        f"/api/v1/console/accounts/{ID}": Account(admins),
    }
