"""Console routes through the whole app (``appliance.wsgi.build``): cookie flags, CSRF, login
problems, logout, account and credential management."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pyotp
from sqlalchemy import func, select

from appliance.api.access import AUDIT_ADMIN, REVIEWER, SECURITY_ADMIN, SYSTEM_ADMIN
from appliance.custody import KeyHolder
from appliance.storage import Database, schema
from tests.appliance.auth.conftest import PASSWORD, Site, make_site

SECURE_COOKIE = "__Host-medsign_session"


def _signed_in(site: Site, username: str, role: str) -> tuple[dict[str, str], str]:
    """(cookies, csrf token) of a fresh login."""
    enrolment = site.create_account(username, role)
    result = site.login(username, enrolment)
    assert result.status_code == 200, result.json
    return {SECURE_COOKIE: result.cookies[SECURE_COOKIE].value}, result.json["csrf_token"]


def _problem(result: falcon.testing.Result, status: int, code: str) -> None:
    assert result.status_code == status, result.text
    assert result.headers["content-type"] == "application/problem+json"
    assert result.json["code"] == code
    assert result.json["status"] == status


def _accounts(database: Database) -> int:
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.admins)).scalar_one())


def test_login_sets_a_secure_httponly_samesite_strict_cookie(site: Site) -> None:
    enrolment = site.create_account("alice", SYSTEM_ADMIN)
    result = site.login("alice", enrolment)
    assert result.status_code == 200
    cookie = result.cookies[SECURE_COOKIE]
    assert cookie.secure and cookie.http_only and cookie.path == "/"
    assert cookie.same_site == "Strict" and cookie.domain is None
    assert cookie.max_age is None  # a browser-session cookie; the server owns the expiry
    assert len(cookie.value) >= 43
    body = result.json
    assert body["account"]["username"] == "alice" and body["account"]["role"] == SYSTEM_ADMIN
    assert body["csrf_token"] and body["expires_at"]
    assert cookie.value not in result.text  # the token travels only in Set-Cookie


def test_development_cookie_without_secure(database: Database, holder: KeyHolder) -> None:
    site = make_site(database, holder, cookie_secure=False)
    enrolment = site.create_account("alice", SYSTEM_ADMIN)
    result = site.login("alice", enrolment)
    cookie = result.cookies["medsign_session"]
    assert not cookie.secure and cookie.http_only and cookie.same_site == "Strict"
    me = site.client.simulate_get("/api/v1/console/me",
                                  cookies={"medsign_session": cookie.value})
    assert me.status_code == 200


def test_me_returns_the_account_and_the_same_csrf_token(site: Site) -> None:
    cookies, csrf = _signed_in(site, "alice", AUDIT_ADMIN)
    me = site.client.simulate_get("/api/v1/console/me", cookies=cookies)
    assert me.status_code == 200
    assert me.json["account"]["role"] == AUDIT_ADMIN
    assert me.json["csrf_token"] == csrf
    _problem(site.client.simulate_get("/api/v1/console/me"), 401, "unauthorized")
    _problem(site.client.simulate_get("/api/v1/console/me",
                                      cookies={SECURE_COOKIE: "forged-token"}), 401,
             "unauthorized")


def test_state_changing_requests_need_the_csrf_token(site: Site, database: Database) -> None:
    cookies, csrf = _signed_in(site, "sec", SECURITY_ADMIN)
    new = {"username": "bob", "role": REVIEWER, "password": PASSWORD}
    before = _accounts(database)
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": csrf[:-1]}):
        result = site.client.simulate_post("/api/v1/console/accounts", json=new,
                                           cookies=cookies, headers=headers)
        _problem(result, 403, "csrf-failed")
    assert _accounts(database) == before
    result = site.client.simulate_post("/api/v1/console/accounts", json=new, cookies=cookies,
                                       headers={"X-CSRF-Token": csrf})
    assert result.status_code == 201
    assert _accounts(database) == before + 1
    # Reads need no CSRF token; logout does.
    assert site.client.simulate_get("/api/v1/console/accounts", cookies=cookies).status_code == 200
    _problem(site.client.simulate_post("/api/v1/console/logout", cookies=cookies), 403,
             "csrf-failed")


def test_login_ignores_a_stale_cookie_and_needs_no_csrf(site: Site) -> None:
    enrolment = site.create_account("alice", REVIEWER)
    result = site.client.simulate_post(
        "/api/v1/console/login", cookies={SECURE_COOKIE: "stale"},
        json={"username": "alice", "password": PASSWORD,
              "totp": pyotp.TOTP(enrolment.secret).now()})
    assert result.status_code == 200


def test_logout_ends_the_session_and_clears_the_cookie(site: Site) -> None:
    cookies, csrf = _signed_in(site, "alice", REVIEWER)
    result = site.client.simulate_post("/api/v1/console/logout", cookies=cookies,
                                       headers={"X-CSRF-Token": csrf})
    assert result.status_code == 200 and result.json == {"logged_out": True}
    cleared = result.cookies[SECURE_COOKIE]
    assert cleared.value == "" and cleared.secure and cleared.same_site == "Strict"
    assert cleared.expires is not None and cleared.expires.year == 1970
    _problem(site.client.simulate_get("/api/v1/console/me", cookies=cookies), 401,
             "unauthorized")


def test_login_problems(site: Site, database: Database) -> None:
    enrolment = site.create_account("alice", SYSTEM_ADMIN)
    bad: list[dict[str, Any]] = [
        {"username": "alice", "password": "wrong password", "totp": "123456"},
        {"username": "nobody", "password": PASSWORD, "totp": "123456"},
    ]
    for body in bad:
        _problem(site.client.simulate_post("/api/v1/console/login", json=body), 401,
                 "login-failed")
    _problem(site.client.simulate_post("/api/v1/console/login",
                                       json={"username": "alice", "password": PASSWORD}),
             400, "validation-failed")
    _problem(site.client.simulate_post("/api/v1/console/login", json={
        "username": "alice", "password": PASSWORD, "totp": "1", "extra": 1}),
        400, "validation-failed")
    code = pyotp.TOTP(enrolment.secret).now()
    assert site.login("alice", enrolment, code=code).status_code == 200
    _problem(site.login("alice", enrolment, code=code), 401, "totp-reused")
    for _ in range(4):  # SECURITY allows 5 failures; the login above reset the count
        site.client.simulate_post("/api/v1/console/login", json=bad[0])
    _problem(site.client.simulate_post("/api/v1/console/login", json=bad[0]), 423, "locked")
    locked = site.client.simulate_post("/api/v1/console/login", json={
        "username": "alice", "password": PASSWORD, "totp": "000000"})
    _problem(locked, 423, "locked")
    assert locked.json["locked_until"]
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(schema.admin_sessions)
                            ).scalar_one() == 1


def test_login_while_sealed_is_503(site: Site, holder: KeyHolder) -> None:
    enrolment = site.create_account("alice", SYSTEM_ADMIN)
    holder.seal()
    _problem(site.login("alice", enrolment), 503, "sealed")


def test_account_management_round_trip(site: Site) -> None:
    cookies, csrf = _signed_in(site, "sec", SECURITY_ADMIN)
    headers = {"X-CSRF-Token": csrf}
    created = site.client.simulate_post("/api/v1/console/accounts", cookies=cookies,
                                        headers=headers, json={
                                            "username": "bob", "role": REVIEWER,
                                            "password": PASSWORD, "display_name": "张三"})
    assert created.status_code == 201
    bob = created.json["account"]
    assert created.json["totp"]["uri"].startswith("otpauth://totp/medsign:bob")
    listed = site.client.simulate_get("/api/v1/console/accounts", cookies=cookies).json
    assert [a["username"] for a in listed["accounts"]] == ["sec", "bob"]
    assert "totp" not in str(listed["accounts"][1].keys()).replace("totp_enrolled", "")
    path = f"/api/v1/console/accounts/{bob['id']}"
    changed = site.client.simulate_patch(path, cookies=cookies, headers=headers,
                                         json={"role": SYSTEM_ADMIN, "reset_totp": True})
    assert changed.status_code == 200
    assert changed.json["account"]["role"] == SYSTEM_ADMIN
    assert changed.json["totp"]["secret"] != created.json["totp"]["secret"]
    me_id = site.client.simulate_get("/api/v1/console/me", cookies=cookies).json["account"]["id"]
    _problem(site.client.simulate_patch(f"/api/v1/console/accounts/{me_id}", cookies=cookies,
                                        headers=headers, json={"role": SYSTEM_ADMIN}),
             403, "self-change-refused")
    _problem(site.client.simulate_patch(path, cookies=cookies, headers=headers,
                                        json={"reset_totp": "yes"}), 400, "validation-failed")
    _problem(site.client.simulate_get("/api/v1/console/accounts/999999", cookies=cookies),
             404, "not-found")
    deleted = site.client.simulate_delete(path, cookies=cookies, headers=headers)
    assert deleted.status_code == 200 and deleted.json == {"deleted": True, "id": bob["id"]}
    _problem(site.client.simulate_get(path, cookies=cookies), 404, "not-found")


def test_change_own_password_over_http(site: Site) -> None:
    cookies, csrf = _signed_in(site, "auditor", AUDIT_ADMIN)
    result = site.client.simulate_patch("/api/v1/console/me", cookies=cookies,
                                        headers={"X-CSRF-Token": csrf}, json={
                                            "current_password": PASSWORD,
                                            "new_password": "a brand new secret"})
    assert result.status_code == 200
    # The session that changed the password stays signed in.
    assert site.client.simulate_get("/api/v1/console/me", cookies=cookies).status_code == 200


def test_credential_management_shows_the_secret_once(site: Site) -> None:
    cookies, csrf = _signed_in(site, "sec", SECURITY_ADMIN)
    headers = {"X-CSRF-Token": csrf}
    created = site.client.simulate_post("/api/v1/applications", cookies=cookies,
                                        headers=headers,
                                        json={"name": "HIS", "scopes": "sign:request verify"})
    assert created.status_code == 201
    app = created.json["application"]
    assert app["key_id"].startswith("app_") and len(app["key_id"]) == 20
    assert app["scopes"] == ["sign:request", "verify"] and app["status"] == "active"
    assert len(created.json["secret"]) == 43
    listed = site.client.simulate_get("/api/v1/applications", cookies=cookies)
    assert created.json["secret"] not in listed.text
    assert listed.json["applications"][0]["created_by"] == "sec"
    path = f"/api/v1/applications/{app['id']}"
    patched = site.client.simulate_patch(path, cookies=cookies, headers=headers,
                                         json={"status": "disabled", "scopes": ["tsa"]})
    assert patched.json["application"]["status"] == "disabled"
    assert patched.json["application"]["scopes"] == ["tsa"] and patched.json["secret"] is None
    rotated = site.client.simulate_patch(path, cookies=cookies, headers=headers,
                                         json={"rotate_secret": True})
    assert rotated.json["secret"] and rotated.json["secret"] != created.json["secret"]
    _problem(site.client.simulate_post("/api/v1/applications", cookies=cookies,
                                       headers=headers,
                                       json={"name": "x", "scopes": "sign:everything"}),
             400, "validation-failed")
    _problem(site.client.simulate_post("/api/v1/applications", cookies=cookies,
                                       headers=headers, json={"name": "x", "scopes": []}),
             400, "validation-failed")
    _problem(site.client.simulate_patch("/api/v1/applications/424242", cookies=cookies,
                                        headers=headers, json={"status": "active"}),
             404, "not-found")


def test_logins_and_changes_reach_the_audit_log(site: Site) -> None:
    cookies, csrf = _signed_in(site, "sec", SECURITY_ADMIN)
    headers = {"X-CSRF-Token": csrf}
    site.client.simulate_post("/api/v1/console/login", json={
        "username": "sec", "password": "wrong password", "totp": "000000"})
    created = site.client.simulate_post("/api/v1/applications", cookies=cookies,
                                        headers=headers, json={"name": "HIS", "scopes": "tsa"})
    key_id = created.json["application"]["key_id"]
    site.client.simulate_post("/api/v1/console/logout", cookies=cookies, headers=headers)
    audit = site.appliance.audit
    audit.close()  # flush the group commit
    entries = [(r.category, r.action, r.actor, r.subject)
               for r in audit.search(newest_first=False).entries]
    assert ("login", "login", "admin:sec", "sec") in entries
    assert ("login", "login.failed", "", "sec") in entries
    assert ("data", "app.create", "admin:sec", key_id) in entries
    assert ("login", "logout", "admin:sec", "sec") in entries
    assert created.json["secret"] not in str(audit.search().entries)
