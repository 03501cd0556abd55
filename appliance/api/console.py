"""Console session and account routes: login, logout, me, and account management.

Access: login is public; logout and ``/me`` are for every console role (the audit
administrator included: they are its own session); account management is for security
administrators only.  The services re-check every rule (no self role change, only a security
administrator manages accounts), so a wrong declaration here would still not grant anything.
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, ROLES, SECURITY_ADMIN, Principal, roles
from appliance.api.auth import SessionCookie, session_expiry
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.admins import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    STATUSES,
    AdminService,
    csrf_token_for,
)

ANY_ROLE = roles(*ROLES)
MANAGER = roles(SECURITY_ADMIN)
ID = "{admin_id:int(min=1, max=9223372036854775807)}"

_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
ACCOUNT: dict[str, Any] = {
    "type": "object",
    "description": "A console account (one role per account, 三员分立).",
    "required": ["id", "username", "display_name", "role", "status", "totp_enrolled",
                 "failed_logins", "locked", "locked_until", "created_at", "updated_at",
                 "last_login_at"],
    "properties": {
        "id": {"type": "integer"}, "username": {"type": "string"},
        "display_name": {"type": "string"}, "role": {"enum": list(ROLES)},
        "status": {"enum": list(STATUSES)},
        "totp_enrolled": {"type": "boolean", "description": "a TOTP login has succeeded"},
        "failed_logins": {"type": "integer"}, "locked": {"type": "boolean"},
        "locked_until": _OPTIONAL_TIME, "created_at": _TIME, "updated_at": _TIME,
        "last_login_at": _OPTIONAL_TIME,
    },
}
TOTP: dict[str, Any] = {
    "type": "object", "required": ["secret", "uri"],
    "description": "A new TOTP seed, shown once: base32 secret and otpauth:// URI (QR code).",
    "properties": {"secret": {"type": "string"}, "uri": {"type": "string"}},
}
ACCOUNT_REF = {"$ref": "#/components/schemas/ConsoleAccount"}
TOTP_REF = {"$ref": "#/components/schemas/TotpEnrolment"}
SCHEMAS = {"ConsoleAccount": ACCOUNT, "TotpEnrolment": TOTP}
_PASSWORD = {"type": "string", "minLength": 1, "maxLength": MAX_PASSWORD}
_NEW_PASSWORD = {"type": "string", "minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD,
                 "description": f"at least {MIN_PASSWORD} characters, not the username"}
_USERNAME = {"type": "string", "minLength": 1, "maxLength": 64}
_SESSION = {
    "type": "object", "required": ["account", "csrf_token", "expires_at"],
    "properties": {"account": ACCOUNT_REF, "csrf_token": {"type": "string"},
                   "expires_at": _OPTIONAL_TIME},
}


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


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
    openapi = {"POST": {
        "summary": "Sign in with username, password and TOTP code (one step)",
        "requestBody": oa.body(_closed({"username": _USERNAME, "password": _PASSWORD,
                                        "totp": {"type": "string", "minLength": 1,
                                                 "maxLength": 16}},
                                       ["username", "password", "totp"])),
        "responses": {
            "200": oa.response("Signed in: the session cookie is set", _SESSION,
                               headers={"Set-Cookie": {"schema": {"type": "string"}}}),
            "401": oa.problem("login-failed, totp-reused or account-disabled"),
            "423": oa.problem("locked: too many failures, wait or ask a security admin"),
            "503": oa.problem("sealed: the TOTP seeds are wrapped by the KEK"),
        },
    }}
    openapi_schemas = SCHEMAS

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
    openapi = {"POST": {
        "summary": "End this session and clear its cookie",
        "responses": {"200": oa.response("Signed out", _closed(
            {"logged_out": {"const": True}}, ["logged_out"]))},
    }}

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
    openapi = {
        "GET": {"summary": "The signed-in account, its CSRF token and session expiry",
                "responses": {"200": oa.response("This session", _SESSION)}},
        "PATCH": {
            "summary": "Change one's own password (other sessions end)",
            "requestBody": oa.body(_closed({"current_password": _PASSWORD,
                                            "new_password": _NEW_PASSWORD},
                                           ["current_password", "new_password"])),
            "responses": {"200": oa.response("Changed", _closed({"account": ACCOUNT_REF},
                                                                ["account"]))},
        },
    }
    openapi_schemas = SCHEMAS

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
    openapi = {
        "GET": {"summary": "Every console account",
                "responses": {"200": oa.response("The accounts", {
                    "type": "object", "required": ["accounts"],
                    "properties": {"accounts": {"type": "array", "items": ACCOUNT_REF}}})}},
        "POST": {
            "summary": "Create an account; its TOTP seed is in this answer only",
            "requestBody": oa.body(_closed({
                "username": _USERNAME, "role": {"enum": list(ROLES)},
                "password": _NEW_PASSWORD,
                "display_name": {"type": "string", "minLength": 1, "maxLength": 128}},
                ["username", "role", "password"])),
            "responses": {"201": oa.response("Created", _closed(
                {"account": ACCOUNT_REF, "totp": TOTP_REF}, ["account", "totp"]))},
        },
    }
    openapi_schemas = SCHEMAS

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
    openapi = {
        "GET": {"summary": "One console account",
                "responses": {"200": oa.response("The account", _closed(
                    {"account": ACCOUNT_REF}, ["account"]))}},
        "PATCH": {
            "summary": "Change another account (never one's own role, status or credentials)",
            "requestBody": oa.body(_closed({
                "display_name": {"type": "string", "minLength": 1, "maxLength": 128},
                "role": {"enum": list(ROLES)}, "status": {"enum": list(STATUSES)},
                "password": _NEW_PASSWORD, "reset_totp": {"type": "boolean"},
                "unlock": {"type": "boolean"}}, []), required=False),
            "responses": {"200": oa.response("Changed; a reset TOTP seed is shown once", _closed(
                {"account": ACCOUNT_REF, "totp": {"anyOf": [TOTP_REF, {"type": "null"}]}},
                ["account", "totp"]))},
        },
        "DELETE": {"summary": "Retire an account (the row stays for the audit trail)",
                   "responses": {"200": oa.response("Retired", _closed(
                       {"deleted": {"const": True}, "id": {"type": "integer"}},
                       ["deleted", "id"]))}},
    }
    openapi_schemas = SCHEMAS

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
