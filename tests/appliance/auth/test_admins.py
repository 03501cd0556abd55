"""Console accounts at the service level, on SQLite and PostgreSQL: password policy, Argon2id,
TOTP (fixed time), replay, lockout, sessions, role rules, bootstrap."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select

from appliance.api.access import AUDIT_ADMIN, REVIEWER, SECURITY_ADMIN, SYSTEM_ADMIN, Principal
from appliance.custody import KeyHolder
from appliance.errors import Conflict, Forbidden, Locked, NotFound, Sealed, ValidationFailed
from appliance.services.admins import (
    AccountDisabled,
    AccountSpec,
    AdminService,
    CurrentPasswordWrong,
    LoginFailed,
    PasswordRejected,
    SelfChangeRefused,
    TotpReused,
    check_password_policy,
    csrf_token_for,
)
from appliance.storage import Database, schema
from tests.appliance.auth.conftest import FAST_HASHER, PASSWORD, SECURITY, T0, Clock, totp_at


def _manager(admins: AdminService, name: str = "sec") -> Principal:
    account, _ = admins.create(None, username=name, role=SECURITY_ADMIN, password=PASSWORD)
    return Principal(kind="admin", name=account.username, id=account.id, role=SECURITY_ADMIN)


def _count(database: Database, table: object) -> int:
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "short-pass1"),  # 11 characters
    ("alice.wang", "alice.wang"),
    ("alice.wang.admin", "ALICE.WANG.ADMIN"),
    ("alice", "aaaaaaaaaaaaaaaa"),
])
def test_password_policy_refuses(username: str, password: str) -> None:
    with pytest.raises(PasswordRejected):
        check_password_policy(username, password)


def test_password_policy_accepts_twelve_characters() -> None:
    check_password_policy("alice", "abcdefghijk1")


def test_create_hashes_with_argon2id_and_returns_the_totp_uri_once(
        admins: AdminService, database: Database) -> None:
    account, enrolment = admins.create(None, username="Alice", role=SYSTEM_ADMIN,
                                       password=PASSWORD, display_name="王丽")
    assert account.username == "alice" and account.role == SYSTEM_ADMIN
    assert not account.totp_enrolled
    uri = urlparse(enrolment.uri)
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [enrolment.secret]
    assert parse_qs(uri.query)["issuer"] == ["medsign"]
    with database.transaction() as conn:
        row = conn.execute(select(schema.admins)).one()
    assert row.password_hash.startswith("$argon2id$")
    assert "secret" not in account.to_json() and "uri" not in account.to_json()


def test_create_refuses_bad_input_and_duplicates(admins: AdminService) -> None:
    admins.create(None, username="alice", role=REVIEWER, password=PASSWORD)
    with pytest.raises(Conflict):
        admins.create(None, username="ALICE", role=REVIEWER, password=PASSWORD)
    with pytest.raises(ValidationFailed):
        admins.create(None, username="bob", role="superuser", password=PASSWORD)
    with pytest.raises(ValidationFailed):
        admins.create(None, username="b", role=REVIEWER, password=PASSWORD)
    with pytest.raises(ValidationFailed):
        admins.create(None, username="bob smith", role=REVIEWER, password=PASSWORD)


def test_login_needs_password_and_totp_at_a_fixed_time(admins: AdminService,
                                                        clock: Clock) -> None:
    _, enrolment = admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    with pytest.raises(LoginFailed):
        admins.login("alice", "wrong password!", totp_at(enrolment.secret, T0))
    with pytest.raises(LoginFailed):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0 + 300))
    with pytest.raises(LoginFailed):
        admins.login("alice", PASSWORD, "12345")
    result = admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0), ip="10.0.0.7")
    assert result.account.totp_enrolled and result.account.failed_logins == 0
    assert result.csrf_token == csrf_token_for(result.session_token)
    assert result.expires_at == dt.datetime.fromtimestamp(T0 + 30 * 60, dt.UTC)


def test_totp_accepts_one_step_of_drift_and_each_code_once(admins: AdminService,
                                                           clock: Clock) -> None:
    _, enrolment = admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    previous = totp_at(enrolment.secret, T0 - 30)
    admins.login("alice", PASSWORD, previous)  # the phone one step behind
    with pytest.raises(TotpReused):  # the same code again
        admins.login("alice", PASSWORD, previous)
    admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0 + 30))  # one step ahead
    with pytest.raises(TotpReused):  # a step older than the last one used, though in the window
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0))
    clock.advance(30)
    with pytest.raises(TotpReused):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0 + 30))
    admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0 + 60))
    with pytest.raises(LoginFailed):  # two steps away: outside the window
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, T0 + 120))


def test_unknown_user_is_answered_like_a_wrong_password(admins: AdminService) -> None:
    with pytest.raises(LoginFailed) as unknown:
        admins.login("nobody", PASSWORD, "123456")
    admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    with pytest.raises(LoginFailed) as wrong:
        admins.login("alice", "not the password", "123456")
    assert unknown.value.detail == wrong.value.detail


def test_lockout_after_max_failures_and_unlock_after_the_period(
        admins: AdminService, clock: Clock) -> None:
    _, enrolment = admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    for _ in range(SECURITY.admin_max_failures - 1):
        with pytest.raises(LoginFailed):
            admins.login("alice", "wrong password!", "000000")
    with pytest.raises(Locked):  # the failure that reaches the limit locks
        admins.login("alice", "wrong password!", "000000")
    with pytest.raises(Locked):  # even the right credentials wait
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    assert admins.find("alice") is not None
    clock.advance(SECURITY.admin_lock_minutes * 60 - 1)
    with pytest.raises(Locked):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    clock.advance(2)
    result = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    assert result.account.failed_logins == 0
    assert not result.account.to_json(dt.datetime.fromtimestamp(clock(), dt.UTC))["locked"]


def test_a_wrong_totp_counts_as_a_failure(admins: AdminService) -> None:
    admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    for _ in range(SECURITY.admin_max_failures - 1):
        with pytest.raises(LoginFailed):
            admins.login("alice", PASSWORD, "000000")
    with pytest.raises(Locked):
        admins.login("alice", PASSWORD, "000000")


def test_security_admin_unlocks(admins: AdminService, clock: Clock) -> None:
    manager = _manager(admins)
    account, enrolment = admins.create(None, username="alice", role=REVIEWER,
                                       password=PASSWORD)
    for _ in range(SECURITY.admin_max_failures):
        with pytest.raises((LoginFailed, Locked)):
            admins.login("alice", "wrong password!", "000000")
    admins.update(manager, account.id, unlock=True)
    admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))


def test_disabled_and_deleted_accounts_cannot_sign_in(admins: AdminService,
                                                      clock: Clock) -> None:
    manager = _manager(admins)
    account, enrolment = admins.create(None, username="alice", role=REVIEWER,
                                       password=PASSWORD)
    session = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    admins.update(manager, account.id, status="disabled")
    assert admins.session(session.session_token) is None  # its sessions ended
    clock.advance(30)
    with pytest.raises(AccountDisabled):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    admins.update(manager, account.id, status="active")
    clock.advance(30)
    admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    admins.delete(manager, account.id)
    clock.advance(30)
    with pytest.raises(LoginFailed):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    with pytest.raises(NotFound):
        admins.get(account.id)
    assert [a.username for a in admins.list_accounts()] == ["sec"]
    with pytest.raises(Conflict):  # the username stays reserved for the audit trail
        admins.create(None, username="alice", role=REVIEWER, password=PASSWORD)


def test_session_expires_slides_and_has_an_absolute_limit(admins: AdminService,
                                                          clock: Clock) -> None:
    _, enrolment = admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    token = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock())).session_token
    session = admins.session(token)
    assert session is not None and session.role == SYSTEM_ADMIN
    clock.advance(20 * 60)
    session = admins.session(token)
    assert session is not None
    admins.touch(session)  # use at +20 min: now valid until +50 min
    clock.advance(25 * 60)
    assert admins.session(token) is not None  # +45 min: alive thanks to the slide
    clock.advance(6 * 60)
    assert admins.session(token) is None  # +51 min: idle for 31 minutes
    assert admins.session("not-a-token") is None
    assert admins.session("") is None
    # Used every 29 minutes, a session still ends 12 hours after login.
    clock.advance(60)
    token = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock())).session_token
    for _ in range(12 * 60 // 29 + 1):
        clock.advance(29 * 60)
        session = admins.session(token)
        if session is None:
            break
        admins.touch(session)
    assert session is None


def test_logout_ends_the_session(admins: AdminService, clock: Clock,
                                 database: Database) -> None:
    _, enrolment = admins.create(None, username="alice", role=AUDIT_ADMIN, password=PASSWORD)
    token = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock())).session_token
    assert _count(database, schema.admin_sessions) == 1
    admins.logout(token)
    assert admins.session(token) is None
    assert _count(database, schema.admin_sessions) == 0


def test_only_a_security_admin_manages_accounts(admins: AdminService) -> None:
    target, _ = admins.create(None, username="target", role=REVIEWER, password=PASSWORD)
    for role in (SYSTEM_ADMIN, AUDIT_ADMIN, REVIEWER):
        actor, _ = admins.create(None, username=f"as-{role}".replace("_", "-"), role=role,
                                 password=PASSWORD)
        who = Principal(kind="admin", name=actor.username, id=actor.id, role=role)
        with pytest.raises(Forbidden):
            admins.create(who, username=f"new-{role}".replace("_", "-"), role=REVIEWER,
                          password=PASSWORD)
        with pytest.raises(Forbidden):
            admins.update(who, target.id, role=SECURITY_ADMIN)
        with pytest.raises(Forbidden):  # not even its own role
            admins.update(who, actor.id, role=SECURITY_ADMIN)
        with pytest.raises(Forbidden):
            admins.delete(who, target.id)
    assert admins.get(target.id).role == REVIEWER


def test_nobody_changes_their_own_role_status_or_credentials(admins: AdminService) -> None:
    manager = _manager(admins)
    for change in ({"role": SYSTEM_ADMIN}, {"role": SECURITY_ADMIN}, {"status": "disabled"},
                   {"password": "another password 1"}, {"reset_totp": True}, {"unlock": True}):
        with pytest.raises(SelfChangeRefused):
            admins.update(manager, manager.id, **change)
    with pytest.raises(SelfChangeRefused):
        admins.delete(manager, manager.id)
    account, _ = admins.update(manager, manager.id, display_name="安全管理员")
    assert account.display_name == "安全管理员" and account.role == SECURITY_ADMIN


def test_role_change_by_a_security_admin_ends_the_sessions(admins: AdminService,
                                                           clock: Clock) -> None:
    manager = _manager(admins)
    account, enrolment = admins.create(None, username="alice", role=REVIEWER,
                                       password=PASSWORD)
    token = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock())).session_token
    updated, _ = admins.update(manager, account.id, role=SYSTEM_ADMIN)
    assert updated.role == SYSTEM_ADMIN
    assert admins.session(token) is None
    with pytest.raises(ValidationFailed):
        admins.update(manager, account.id, role="root")
    with pytest.raises(NotFound):
        admins.update(manager, 999_999, role=REVIEWER)


def test_reset_totp_replaces_the_seed(admins: AdminService, clock: Clock) -> None:
    _, old = admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    token = admins.login("alice", PASSWORD, totp_at(old.secret, clock())).session_token
    new = admins.reset_totp("alice")
    assert new.secret != old.secret and new.uri.startswith("otpauth://totp/")
    assert admins.session(token) is None
    found = admins.find("alice")
    assert found is not None and not admins.get(found.id).totp_enrolled
    clock.advance(30)
    with pytest.raises(LoginFailed):
        admins.login("alice", PASSWORD, totp_at(old.secret, clock()))
    admins.login("alice", PASSWORD, totp_at(new.secret, clock()))
    with pytest.raises(NotFound):
        admins.reset_totp("nobody")


def test_change_own_password(admins: AdminService, clock: Clock) -> None:
    account, enrolment = admins.create(None, username="alice", role=AUDIT_ADMIN,
                                       password=PASSWORD)
    first = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    clock.advance(30)
    second = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    kept = admins.session(second.session_token)
    assert kept is not None
    with pytest.raises(CurrentPasswordWrong):
        admins.change_password(account.id, "wrong current!", "a new password 9")
    with pytest.raises(PasswordRejected):
        admins.change_password(account.id, PASSWORD, "short")
    admins.change_password(account.id, PASSWORD, "a new password 9", keep_session=kept.id)
    assert admins.session(first.session_token) is None
    assert admins.session(second.session_token) is not None
    clock.advance(30)
    with pytest.raises(LoginFailed):
        admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    admins.login("alice", "a new password 9", totp_at(enrolment.secret, clock() + 30))


def test_guessing_through_a_session_locks_and_ends_it(admins: AdminService,
                                                      clock: Clock) -> None:
    account, enrolment = admins.create(None, username="alice", role=REVIEWER,
                                       password=PASSWORD)
    token = admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock())).session_token
    for _ in range(SECURITY.admin_max_failures - 1):
        with pytest.raises(CurrentPasswordWrong):
            admins.change_password(account.id, "a wrong guess!", "a new password 9")
    assert admins.session(token) is not None
    with pytest.raises(Locked):
        admins.change_password(account.id, "a wrong guess!", "a new password 9")
    assert admins.session(token) is None


def test_bootstrap_creates_once(admins: AdminService) -> None:
    specs = [AccountSpec("sysadmin", SYSTEM_ADMIN, "系统管理员"),
             AccountSpec("secadmin", SECURITY_ADMIN, "安全管理员", password=PASSWORD),
             AccountSpec("auditor", AUDIT_ADMIN, "审计管理员")]
    created = admins.bootstrap(specs)
    assert [c.account.role for c in created] == [SYSTEM_ADMIN, SECURITY_ADMIN, AUDIT_ADMIN]
    assert created[1].password == PASSWORD
    assert len(created[0].password) >= 12
    assert all(c.enrolment.uri.startswith("otpauth://totp/medsign:") for c in created)
    assert admins.bootstrap(specs) == []


def test_sealed_appliance_refuses_login_and_creation(admins: AdminService,
                                                     holder: KeyHolder) -> None:
    admins.create(None, username="alice", role=SYSTEM_ADMIN, password=PASSWORD)
    holder.seal()
    with pytest.raises(Sealed):
        admins.login("alice", PASSWORD, "123456")
    with pytest.raises(Sealed):
        admins.create(None, username="bob", role=SYSTEM_ADMIN, password=PASSWORD)


def test_changes_and_logins_reach_the_audit_hook(database: Database, holder: KeyHolder,
                                                 clock: Clock) -> None:
    entries: list[tuple[str, str, str, str, dict[str, object]]] = []
    admins = AdminService(database, holder, SECURITY, hasher=FAST_HASHER, clock=clock,
                          audit=lambda *entry: entries.append(entry))
    manager = _manager(admins)
    account, enrolment = admins.create(manager, username="alice", role=REVIEWER,
                                       password=PASSWORD)
    with pytest.raises(LoginFailed):
        admins.login("alice", "wrong password!", "000000")
    with pytest.raises(LoginFailed):
        admins.login("bad\nname", "wrong password!", "000000")
    admins.login("alice", PASSWORD, totp_at(enrolment.secret, clock()))
    admins.update(manager, account.id, role=SYSTEM_ADMIN)
    summary = [(c, a, actor, subject) for c, a, actor, subject, _ in entries]
    assert summary == [
        ("data", "admin.create", "cli", "sec"),
        ("data", "admin.create", "admin:sec", "alice"),
        ("login", "login.failed", "", "alice"),
        ("login", "login.failed", "", "bad?name"),
        ("login", "login", "admin:alice", "alice"),
        ("data", "admin.update", "admin:sec", "alice"),
    ]
    assert entries[-1][4]["role"] == SYSTEM_ADMIN
    assert all(PASSWORD not in str(entry) for entry in entries)
