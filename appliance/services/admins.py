"""Console accounts: three-role separation (三员分立), passwords, TOTP, lockout and sessions.

Threat model.  The console is reached over the hospital intranet by a handful of officers.  We
defend against: password guessing (Argon2id hashes, lockout after
``security.admin_max_failures`` failures for ``security.admin_lock_minutes``); a stolen or
shoulder-surfed password (a TOTP code is required at every login, and a code is accepted at
most once: its time step must be newer than the last one used, RFC 6238 section 5.2); a stolen
database or backup (password hashes only; TOTP seeds wrapped by the KEK with the account id as
associated data; sessions stored as SHA-256 of the cookie token, so a database reader cannot
ride a session); cross-site request forgery (SameSite=Strict cookie plus a CSRF token derived
from the session token, which the browser's script must echo on every state-changing request);
privilege escalation (one role per account; only a security administrator manages accounts and
roles, and nobody changes their own role, status or credentials through account management).

Not defended here: a compromised console host or browser (it holds a live session), and
username enumeration through the lockout answer (a locked account says so, so that its owner
knows to wait or call a security administrator).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Row, delete, func, insert, select, update

from appliance.api.access import ROLES, SECURITY_ADMIN
from appliance.config import SecurityConfig
from appliance.custody import KeyHolder, Keyring
from appliance.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from appliance.storage import Database, schema
from signcore.errors import DecryptionError

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
TOTP_ISSUER = "medsign"
TOTP_INTERVAL = 30
TOTP_WINDOW = (0, -1, 1)  # time steps tried around now, for clock drift of the phone
SESSION_ABSOLUTE_HOURS = 12  # a sliding session still ends this long after login
SESSION_TOUCH_SECONDS = 60  # sliding expiry is written at most once a minute per session
STATUSES = ("active", "disabled")
_CSRF_LABEL = b"medsign/csrf/v1"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Clock = Callable[[], float]
AuditHook = Callable[[str, str, str, str, Mapping[str, Any]], None]
"""(category, action, actor, subject, details): called after the change is committed."""


class Actor(Protocol):
    """Who asks for a change: an authenticated :class:`appliance.api.access.Principal`
    (``kind`` "admin", with a ``role``), or an operator at the appliance's own console
    (``kind`` "cli", e.g. ``appliance.services.signers.CliActor``; ``None`` means the same)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def id(self) -> int: ...


def actor_label(actor: Actor | None) -> str:
    """How the audit log names an actor: ``admin:alice``, ``cli:root``,
    ``system:renewal``; "" for nobody known (a failed login)."""
    if actor is None:
        return "cli"
    return f"{actor.kind}:{actor.name}" if actor.kind else ""


@dataclasses.dataclass(frozen=True)
class _Self:
    """The account acting on its own session (login, logout, password change)."""

    name: str
    kind: str = "admin"
    id: int = 0


_NOBODY = _Self("", kind="")


def require_manager(actor: Actor | None, what: str = "账户和角色") -> None:
    """Only a security administrator (or the appliance's operator, root on its console, or the
    appliance itself acting on the consequence of an authorized act: kind ``system``) manages
    accounts, credentials and certificates."""
    if actor is None or actor.kind in ("cli", "system"):
        return
    if actor.kind != "admin" or getattr(actor, "role", None) != SECURITY_ADMIN:
        raise Forbidden(f"只有安全管理员可以管理{what}")


def _is_self(actor: Actor | None, admin_id: int) -> bool:
    return actor is not None and actor.kind == "admin" and actor.id == admin_id


class LoginFailed(Unauthorized):
    code, title = "login-failed", "登录失败"


class TotpReused(Unauthorized):
    code, title = "totp-reused", "动态口令已使用"


class AccountDisabled(Unauthorized):
    code, title = "account-disabled", "账户已停用"


class CurrentPasswordWrong(BadRequest):
    code, title = "current-password-wrong", "当前密码错误"


class PasswordRejected(ValidationFailed):
    code, title = "password-policy", "密码不符合要求"


class SelfChangeRefused(Forbidden):
    code, title = "self-change-refused", "不能修改自己的角色、状态或凭据"


@dataclasses.dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    role: str
    status: str
    totp_enrolled: bool
    failed_logins: int
    locked_until: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    last_login_at: dt.datetime | None

    def to_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        now = now or dt.datetime.now(dt.UTC)
        return {
            "id": self.id, "username": self.username, "display_name": self.display_name,
            "role": self.role, "status": self.status, "totp_enrolled": self.totp_enrolled,
            "failed_logins": self.failed_logins,
            "locked": self.locked_until is not None and self.locked_until > now,
            "locked_until": _iso(self.locked_until), "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at), "last_login_at": _iso(self.last_login_at),
        }


@dataclasses.dataclass(frozen=True)
class Enrolment:
    """A fresh TOTP seed: show ``uri`` (as a QR code) and ``secret`` once, never again."""

    username: str
    secret: str
    uri: str

    def to_json(self) -> dict[str, str]:
        return {"secret": self.secret, "uri": self.uri}


@dataclasses.dataclass(frozen=True)
class Session:
    id: str  # SHA-256 of the cookie token, hex
    admin_id: int
    username: str
    role: str
    csrf_hash: str
    created_at: dt.datetime
    expires_at: dt.datetime
    last_seen_at: dt.datetime

    def csrf_matches(self, token: str) -> bool:
        return hmac.compare_digest(_sha256_hex(token), self.csrf_hash)


@dataclasses.dataclass(frozen=True)
class LoginResult:
    account: Account
    session_token: str  # the cookie value
    csrf_token: str
    expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class AccountSpec:
    """One account for :meth:`AdminService.bootstrap`; a missing password is generated."""

    username: str
    role: str
    display_name: str = ""
    password: str | None = None


@dataclasses.dataclass(frozen=True)
class Bootstrapped:
    account: Account
    password: str
    enrolment: Enrolment


def csrf_token_for(session_token: str) -> str:
    """The CSRF token of a session: derived from the cookie token, so only a page that was
    handed it (login, ``/me``) knows it, and the server can hand it out again."""
    mac = hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def session_id_for(session_token: str) -> str:
    return _sha256_hex(session_token)


def check_password_policy(username: str, password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise PasswordRejected(f"密码长度须为 {MIN_PASSWORD} 到 {MAX_PASSWORD} 个字符")
    if password.casefold() in (username.casefold(), username.casefold()[::-1]):
        raise PasswordRejected("密码不能与用户名相同")
    if len(set(password)) < 4:
        raise PasswordRejected("密码过于简单")


class AdminService:
    """Accounts, logins and sessions of the security console."""

    def __init__(self, database: Database, key_holder: KeyHolder, security: SecurityConfig, *,
                 hasher: PasswordHasher | None = None, clock: Clock = time.time,
                 audit: AuditHook | None = None) -> None:
        self._db, self._holder, self._security = database, key_holder, security
        self._hasher = hasher or PasswordHasher()  # Argon2id, RFC 9106 low-memory profile
        self._clock = clock
        self._audit = audit
        self._dummy_hash: str | None = None

    # -- accounts -------------------------------------------------------------------------

    def create(self, actor: Actor | None, *, username: str, role: str, password: str,
               display_name: str = "") -> tuple[Account, Enrolment]:
        """A new account with a fresh TOTP seed.  ``actor`` None (or a "cli" actor) is the
        command line (``medsign admin create``, ``medsign init``), run by the operator."""
        require_manager(actor)
        username = _username(username)
        _role(role)
        check_password_policy(username, password)
        keyring = self._holder.keyring()
        now = self._now()
        password_hash = self._hasher.hash(password)
        secret = pyotp.random_base32()
        with self._db.transaction() as conn:
            if self._row_by_username(conn, username) is not None:
                raise Conflict(f"用户名 {username} 已存在")
            admin_id = conn.execute(insert(schema.admins).values(
                username=username, display_name=display_name or username, role=role,
                password_hash=password_hash, totp_confirmed=False, failed_logins=0,
                status="active", created_at=now, updated_at=now)
                .returning(schema.admins.c.id)).scalar_one()
            conn.execute(update(schema.admins).where(schema.admins.c.id == admin_id)
                         .values(**_fresh_totp(keyring, admin_id, secret)))
            account = _account(self._row(conn, admin_id))
        self._record("data", "admin.create", actor, username, {"role": role})
        return account, _enrolment(username, secret)

    def bootstrap(self, specs: Iterable[AccountSpec]) -> list[Bootstrapped]:
        """Create the first accounts (``medsign init --demo``); existing usernames are left
        alone, so running it twice creates nothing.  Print each password and TOTP URI once."""
        created: list[Bootstrapped] = []
        for spec in specs:
            with self._db.transaction() as conn:
                exists = self._row_by_username(conn, spec.username.strip().lower())
            if exists is not None:
                continue
            password = spec.password or secrets.token_urlsafe(12)
            account, enrolment = self.create(None, username=spec.username, role=spec.role,
                                             password=password, display_name=spec.display_name)
            created.append(Bootstrapped(account, password, enrolment))
        return created

    def find(self, username: str) -> Account | None:
        with self._db.transaction() as conn:
            row = self._row_by_username(conn, username.strip().lower())
        return _account(row) if row is not None and row.status != "deleted" else None

    def get(self, admin_id: int) -> Account:
        with self._db.transaction() as conn:
            return _account(self._live_row(conn, admin_id))

    def list_accounts(self) -> list[Account]:
        with self._db.transaction() as conn:
            rows = conn.execute(select(schema.admins).where(schema.admins.c.status != "deleted")
                                .order_by(schema.admins.c.id)).all()
        return [_account(row) for row in rows]

    def update(self, actor: Actor | None, admin_id: int, *, display_name: str | None = None,
               role: str | None = None, status: str | None = None, password: str | None = None,
               reset_totp: bool = False, unlock: bool = False) -> tuple[Account, Enrolment | None]:
        """Change another account.  Role, status, password and TOTP changes end its sessions."""
        require_manager(actor)
        touches_credentials = (role, status, password) != (None, None, None) or reset_totp
        if _is_self(actor, admin_id) and (touches_credentials or unlock):
            raise SelfChangeRefused("不能通过账户管理修改自己的角色、状态或凭据")
        if role is not None:
            _role(role)
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
        keyring = self._holder.keyring() if reset_totp else None
        password_hash = None
        now = self._now()
        with self._db.transaction() as conn:
            row = self._live_row(conn, admin_id)
            values: dict[str, Any] = {"updated_at": now}
            if display_name is not None:
                values["display_name"] = display_name
            if role is not None:
                values["role"] = role
            if status is not None:
                values["status"] = status
            if password is not None:
                check_password_policy(row.username, password)
                password_hash = self._hasher.hash(password)
                values["password_hash"] = password_hash
            secret = None
            if keyring is not None:
                secret = pyotp.random_base32()
                values.update(_fresh_totp(keyring, admin_id, secret))
            if unlock:
                values.update(failed_logins=0, locked_until=None)
            conn.execute(update(schema.admins).where(schema.admins.c.id == admin_id)
                         .values(**values))
            if {"role", "status", "password_hash", "totp_wrapped"} & set(values):
                conn.execute(delete(schema.admin_sessions)
                             .where(schema.admin_sessions.c.admin_id == admin_id))
            account = _account(self._row(conn, admin_id))
        changed = sorted(set(values) - {"updated_at", "password_hash", "totp_wrapped",
                                        "totp_confirmed", "totp_last_step"})
        self._record("data", "admin.update", actor, row.username,
                     {"changed": changed, "password": password is not None,
                      "reset_totp": reset_totp, "role": account.role})
        return account, _enrolment(row.username, secret) if secret else None

    def delete(self, actor: Actor | None, admin_id: int) -> None:
        """Retire an account: it keeps its row (and username) for the audit trail, loses its
        credentials and sessions, and can no longer sign in."""
        require_manager(actor)
        if _is_self(actor, admin_id):
            raise SelfChangeRefused("不能删除自己的账户")
        with self._db.transaction() as conn:
            row = self._live_row(conn, admin_id)
            conn.execute(update(schema.admins).where(schema.admins.c.id == admin_id).values(
                status="deleted", totp_wrapped=None, totp_confirmed=False,
                updated_at=self._now()))
            conn.execute(delete(schema.admin_sessions)
                         .where(schema.admin_sessions.c.admin_id == admin_id))
        self._record("data", "admin.delete", actor, row.username, {})

    def reset_totp(self, username: str) -> Enrolment:
        """A new TOTP seed for ``username`` (``medsign admin reset-totp``); ends its sessions."""
        keyring = self._holder.keyring()
        secret = pyotp.random_base32()
        with self._db.transaction() as conn:
            row = self._row_by_username(conn, username.strip().lower())
            if row is None or row.status == "deleted":
                raise NotFound(f"没有用户名为 {username} 的账户")
            conn.execute(update(schema.admins).where(schema.admins.c.id == row.id).values(
                updated_at=self._now(), **_fresh_totp(keyring, row.id, secret)))
            conn.execute(delete(schema.admin_sessions)
                         .where(schema.admin_sessions.c.admin_id == row.id))
        self._record("data", "admin.reset_totp", None, row.username, {})
        return _enrolment(row.username, secret)

    def change_password(self, admin_id: int, current: str, new: str, *,
                        keep_session: str | None = None) -> Account:
        """An account changes its own password; its other sessions end.  A wrong current
        password counts as a failed login (a stolen session must not become a guessing oracle)."""
        now = self._now()
        with self._db.transaction() as conn:
            row = self._live_row(conn, admin_id)
        if not self._verify_password(row.password_hash, current):
            self._fail(row, now, end_sessions=True)
            raise CurrentPasswordWrong("当前密码错误")
        check_password_policy(row.username, new)
        password_hash = self._hasher.hash(new)
        with self._db.transaction() as conn:
            conn.execute(update(schema.admins).where(schema.admins.c.id == admin_id)
                         .values(password_hash=password_hash, updated_at=now))
            condition = schema.admin_sessions.c.admin_id == admin_id
            if keep_session is not None:
                condition &= schema.admin_sessions.c.id != keep_session
            conn.execute(delete(schema.admin_sessions).where(condition))
            account = _account(self._row(conn, admin_id))
        self._record("login", "admin.password", _Self(row.username), row.username, {})
        return account

    # -- login and sessions ---------------------------------------------------------------

    def login(self, username: str, password: str, code: str,
              ip: str | None = None) -> LoginResult:
        """Username, password and TOTP code in one step; a session on success."""
        keyring = self._holder.keyring()  # the TOTP seeds need the KEK: sealed -> 503
        now = self._now()
        with self._db.transaction() as conn:
            row = self._row_by_username(conn, username.strip().lower())
        if row is None or row.status == "deleted":
            self._burn_time(password)
            self._record("login", "login.failed", _NOBODY, username[:64],
                         {"reason": "credentials"})
            raise LoginFailed("用户名、密码或动态口令错误")
        locked_until = _utc(row.locked_until)
        if locked_until is not None and locked_until > now:
            raise _locked(locked_until, now)
        step = None
        if self._verify_password(row.password_hash, password):
            step = self._totp_step(keyring, row, code, now)
        if step is None:
            self._fail(row, now)
            raise LoginFailed("用户名、密码或动态口令错误")
        if row.status != "active":
            raise AccountDisabled("账户已停用，请联系安全管理员")
        return self._succeed(keyring, row, password=password, step=step, ip=ip, now=now)

    def open_session(self, admin_id: int, ip: str | None = None) -> LoginResult:
        """A session for an account whose credentials the caller has already checked."""
        keyring = self._holder.keyring()
        with self._db.transaction() as conn:
            row = self._live_row(conn, admin_id)
            return self._new_session(conn, keyring, row, ip, self._now())

    def session(self, token: str) -> Session | None:
        """The live session of a cookie token, or None (unknown, expired, account not active)."""
        if not token or len(token) > 128:
            return None
        sessions, admins = schema.admin_sessions, schema.admins
        with self._db.transaction() as conn:
            row = conn.execute(
                select(sessions, admins.c.username, admins.c.role, admins.c.status)
                .join(admins, admins.c.id == sessions.c.admin_id)
                .where(sessions.c.id == session_id_for(token))).first()
        if row is None or row.status != "active":
            return None
        session = Session(id=row.id, admin_id=row.admin_id, username=row.username,
                          role=row.role, csrf_hash=row.csrf_hash,
                          created_at=_aware(row.created_at), expires_at=_aware(row.expires_at),
                          last_seen_at=_aware(row.last_seen_at))
        return session if session.expires_at > self._now() else None

    def touch(self, session: Session) -> dt.datetime:
        """Slide the session's expiry forward (written at most once a minute); the new expiry."""
        now = self._now()
        if (now - session.last_seen_at).total_seconds() < SESSION_TOUCH_SECONDS:
            return session.expires_at
        expires = self._expiry(session.created_at, now)
        with self._db.transaction() as conn:
            conn.execute(update(schema.admin_sessions)
                         .where(schema.admin_sessions.c.id == session.id)
                         .values(expires_at=expires, last_seen_at=now))
        return expires

    def logout(self, token: str) -> None:
        sessions, admins = schema.admin_sessions, schema.admins
        with self._db.transaction() as conn:
            row = conn.execute(select(admins.c.username)
                               .join(sessions, sessions.c.admin_id == admins.c.id)
                               .where(sessions.c.id == session_id_for(token))).first()
            conn.execute(delete(sessions).where(sessions.c.id == session_id_for(token)))
        if row is not None:
            self._record("login", "logout", _Self(row.username), row.username, {})

    # -- internals --------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    def _expiry(self, created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
        return min(now + dt.timedelta(minutes=self._security.session_minutes),
                   created_at + dt.timedelta(hours=SESSION_ABSOLUTE_HOURS))

    @staticmethod
    def _row(conn: Connection, admin_id: int) -> Row[Any]:
        row = conn.execute(select(schema.admins).where(schema.admins.c.id == admin_id)).first()
        if row is None:
            raise NotFound("账户不存在")
        return row

    def _live_row(self, conn: Connection, admin_id: int) -> Row[Any]:
        row = self._row(conn, admin_id)
        if row.status == "deleted":
            raise NotFound("账户不存在")
        return row

    @staticmethod
    def _row_by_username(conn: Connection, username: str) -> Row[Any] | None:
        return conn.execute(select(schema.admins)
                            .where(schema.admins.c.username == username)).first()

    def _verify_password(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _burn_time(self, password: str) -> None:
        """Spend what a real verification costs, so timing does not reveal unknown usernames."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._verify_password(self._dummy_hash, password)

    @staticmethod
    def _totp_step(keyring: Keyring, row: Row[Any], code: str, now: dt.datetime) -> int | None:
        """The time step ``code`` belongs to (now, or one step either side), or None."""
        if row.totp_wrapped is None or not (len(code) == 6 and code.isascii() and code.isdigit()):
            return None
        try:
            secret = keyring.unwrap(row.totp_wrapped, _totp_context(row.id)).decode()
        except DecryptionError:
            return None
        totp = pyotp.TOTP(secret, interval=TOTP_INTERVAL)
        current = int(now.timestamp()) // TOTP_INTERVAL
        for offset in TOTP_WINDOW:
            if hmac.compare_digest(totp.generate_otp(current + offset), code):
                return current + offset
        return None

    def _fail(self, row: Row[Any], now: dt.datetime, *, end_sessions: bool = False) -> None:
        """Count a failure; lock at the limit.  A lock from a password change through a session
        also ends the sessions (someone is guessing through one); a lock from the login form
        does not, or anyone could sign an officer out by mistyping their username."""
        admins = schema.admins
        with self._db.transaction() as conn:
            conn.execute(update(admins).where(admins.c.id == row.id)
                         .values(failed_logins=admins.c.failed_logins + 1))
            failures = conn.execute(select(admins.c.failed_logins)
                                    .where(admins.c.id == row.id)).scalar_one()
            locked_until = None
            if failures >= self._security.admin_max_failures:
                locked_until = now + dt.timedelta(minutes=self._security.admin_lock_minutes)
                conn.execute(update(admins).where(admins.c.id == row.id)
                             .values(failed_logins=0, locked_until=locked_until))
                if end_sessions:
                    conn.execute(delete(schema.admin_sessions)
                                 .where(schema.admin_sessions.c.admin_id == row.id))
        self._record("login", "login.failed", _NOBODY, row.username,
                     {"failures": failures, "locked": locked_until is not None})
        if locked_until is not None:
            raise _locked(locked_until, now)

    def _succeed(self, keyring: Keyring, row: Row[Any], *, password: str, step: int,
                 ip: str | None, now: dt.datetime) -> LoginResult:
        admins = schema.admins
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None,
                                  "last_login_at": now, "totp_confirmed": True,
                                  "totp_last_step": step}
        if self._hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = self._hasher.hash(password)
        with self._db.transaction() as conn:
            claimed = conn.execute(
                update(admins).where(admins.c.id == row.id)
                .where((admins.c.totp_last_step.is_(None)) | (admins.c.totp_last_step < step))
                .values(**values)).rowcount
            if claimed != 1:
                raise TotpReused("该动态口令已使用过，请等待下一个口令")
            conn.execute(delete(schema.admin_sessions)
                         .where(schema.admin_sessions.c.expires_at < now))
            result = self._new_session(conn, keyring, self._row(conn, row.id), ip, now)
        self._record("login", "login", _Self(row.username), row.username, {"role": row.role})
        return result

    def _new_session(self, conn: Connection, keyring: Keyring, row: Row[Any], ip: str | None,
                     now: dt.datetime) -> LoginResult:
        token = secrets.token_urlsafe(32)
        csrf = csrf_token_for(token)
        expires = self._expiry(now, now)
        ip_hmac = keyring.hmac(b"admin-session-ip", ip.encode()).hex() if ip else None
        conn.execute(insert(schema.admin_sessions).values(
            id=session_id_for(token), admin_id=row.id, csrf_hash=_sha256_hex(csrf),
            created_at=now, expires_at=expires, last_seen_at=now, ip_hmac=ip_hmac))
        return LoginResult(_account(row), token, csrf, expires)

    def _record(self, category: str, action: str, actor: Actor | None, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), _printable(subject)[:256],
                        dict(details))


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)


def _username(value: str) -> str:
    username = value.strip().lower()
    if not USERNAME.fullmatch(username):
        raise ValidationFailed("用户名须为 3 到 64 个字符：字母、数字、点、下划线或连字符")
    return username


def _role(value: str) -> str:
    if value not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
    return value


def _totp_context(admin_id: int) -> bytes:
    return f"medsign/admin-totp/v1:{admin_id}".encode()


def _fresh_totp(keyring: Keyring, admin_id: int, secret: str) -> dict[str, Any]:
    return {"totp_wrapped": keyring.wrap(secret.encode(), _totp_context(admin_id)),
            "totp_confirmed": False, "totp_last_step": None}


def _enrolment(username: str, secret: str) -> Enrolment:
    uri = pyotp.TOTP(secret, interval=TOTP_INTERVAL).provisioning_uri(
        name=username, issuer_name=TOTP_ISSUER)
    return Enrolment(username, secret, uri)


def _account(row: Row[Any]) -> Account:
    return Account(id=row.id, username=row.username, display_name=row.display_name,
                   role=row.role, status=row.status, totp_enrolled=bool(row.totp_confirmed),
                   failed_logins=row.failed_logins, locked_until=_utc(row.locked_until),
                   created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
                   last_login_at=_utc(row.last_login_at))


def _locked(until: dt.datetime, now: dt.datetime) -> Locked:
    minutes = max(1, int((until - now).total_seconds() + 59) // 60)
    return Locked(f"登录失败次数过多，账户已锁定，请约 {minutes} 分钟后重试或联系安全管理员",
                  locked_until=_iso(until))


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything the appliance stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _aware(value)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def count_admins(database: Database) -> int:
    """Accounts that can still sign in or be re-enabled (``medsign init`` checks for none)."""
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.admins)
                                .where(schema.admins.c.status != "deleted")).scalar_one())
