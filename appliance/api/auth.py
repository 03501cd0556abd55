"""Authenticators: who is calling.  :class:`appliance.api.access.AccessControl` runs them in
order and decides with the first :class:`Principal` one returns.

- :class:`HmacAuthenticator` answers requests whose Authorization header claims a
  ``MEDSIGN-HMAC-*`` scheme (application credentials, :mod:`appliance.api.hmac_signing`).  Such
  a request either authenticates or is refused with a 401 problem naming what was wrong; it
  never falls through to another authenticator.
- :class:`SessionAuthenticator` answers requests with the console session cookie.  A cookie
  that is unknown or expired is ignored (the route then answers 401 if it needs a principal); a
  live session on a state-changing request (anything but GET, HEAD, OPTIONS) must echo its CSRF
  token in ``X-CSRF-Token``, else 403 ``csrf-failed``.

Threat model: see :mod:`appliance.services.admins` (sessions, CSRF) and
:mod:`appliance.services.applications` (signed requests).  The session cookie is HttpOnly (no
script reads it), SameSite=Strict (no cross-site request carries it), Secure and ``__Host-``
prefixed when ``security.cookie_secure`` (the default; turned off only for plain-HTTP
development), Path=/ and without Domain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import time
from collections.abc import Callable

import falcon

from appliance.api import device_signing, hmac_signing
from appliance.api.access import Authenticator, Principal
from appliance.config import Config
from appliance.custody import KeyHolder
from appliance.errors import Forbidden
from appliance.services.admins import AdminService, AuditHook
from appliance.services.applications import ApplicationService, NonceRecorder
from appliance.services.devices import DeviceService
from appliance.storage import Database

CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/api/v1/console/login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class CsrfFailed(Forbidden):
    code, title = "csrf-failed", "CSRF 校验失败"


@dataclasses.dataclass(frozen=True)
class SessionCookie:
    """How the console session cookie is named and set."""

    secure: bool

    @property
    def name(self) -> str:
        # __Host-: the browser accepts it only Secure, with Path=/ and no Domain.
        return "__Host-medsign_session" if self.secure else "medsign_session"

    def set(self, resp: falcon.Response, token: str) -> None:
        resp.set_cookie(self.name, token, path="/", secure=self.secure, http_only=True,
                        same_site="Strict")

    def clear(self, resp: falcon.Response) -> None:
        resp.set_cookie(self.name, "", expires=_EPOCH, path="/", secure=self.secure,
                        http_only=True, same_site="Strict")


def raw_body(req: falcon.Request) -> bytes:
    """The request body, read once: kept on ``req.context.raw_body`` and put back as the WSGI
    input, so ``req.bounded_stream`` and ``req.get_media()`` (built lazily from it) still work.
    Only Content-Length bytes count (``BodyLimit`` has already bounded them)."""
    cached: bytes | None = getattr(req.context, "raw_body", None)
    if cached is not None:
        return cached
    length = req.content_length or 0
    body = req.stream.read(length) if length else b""
    req.env["wsgi.input"] = req.stream = io.BytesIO(body)
    req.context.raw_body = body
    return body


def decoded_path(req: falcon.Request) -> str:
    """The request path as received (before Falcon strips a trailing slash), decoded."""
    path = str(req.env.get("SCRIPT_NAME", "")) + str(req.env.get("PATH_INFO") or "/")
    return path if path.isascii() else path.encode("iso-8859-1").decode("utf-8", "replace")


class HmacAuthenticator:
    """Application credentials: MEDSIGN-HMAC-SM3 / MEDSIGN-HMAC-SHA256 signed requests."""

    def __init__(self, applications: ApplicationService, max_skew_seconds: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._apps, self._skew, self._clock = applications, max_skew_seconds, clock

    def authenticate(self, req: falcon.Request) -> Principal | None:
        header = req.get_header("Authorization")
        if not hmac_signing.is_signed(header):
            if device_signing.is_device_signed(header):
                return None  # the device authenticator's
            if req.get_header(hmac_signing.TIMESTAMP_HEADER) or req.get_header(
                    hmac_signing.NONCE_HEADER):
                raise hmac_signing.AuthHeadersMissing("缺少 Authorization 请求头")
            return None
        assert header is not None
        algorithm, key_id, signature = hmac_signing.parse_authorization(header)
        timestamp = hmac_signing.check_timestamp(
            req.get_header(hmac_signing.TIMESTAMP_HEADER), self._skew, self._clock())
        nonce = hmac_signing.check_nonce(req.get_header(hmac_signing.NONCE_HEADER))
        message = hmac_signing.string_to_sign(
            algorithm, method=req.method, decoded_path=decoded_path(req),
            query=req.query_string, body=raw_body(req), timestamp=timestamp, nonce=nonce)
        credential = self._apps.authenticate(
            key_id, nonce,
            lambda secret: hmac_signing.signature_matches(algorithm, secret, message, signature))
        return Principal(kind="app", name=credential.key_id, id=credential.id,
                         scopes=credential.scopes)


class DeviceAuthenticator:
    """Signers' bound phones: MEDSIGN-DEVICE-SM2 signed requests (device_signing).  Like
    application requests, a request claiming the scheme authenticates or is refused."""

    def __init__(self, devices: DeviceService, max_skew_seconds: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._devices, self._skew, self._clock = devices, max_skew_seconds, clock

    def authenticate(self, req: falcon.Request) -> Principal | None:
        header = req.get_header("Authorization")
        if not device_signing.is_device_signed(header):
            return None
        assert header is not None
        device_id, signature = device_signing.parse_authorization(header)
        timestamp = hmac_signing.check_timestamp(
            req.get_header(hmac_signing.TIMESTAMP_HEADER), self._skew, self._clock())
        nonce = hmac_signing.check_nonce(req.get_header(hmac_signing.NONCE_HEADER))
        message = device_signing.string_to_sign(
            method=req.method, decoded_path=decoded_path(req), query=req.query_string,
            body=raw_body(req), timestamp=timestamp, nonce=nonce)
        device = self._devices.authenticate(
            device_id, nonce,
            lambda key: device_signing.signature_matches(key, message, signature))
        return Principal(kind="device", name=device.id, id=device.signer_id)


class SessionAuthenticator:
    """Console accounts: the session cookie, plus the CSRF token on state-changing requests.

    Sets ``req.context.session`` (the :class:`appliance.services.admins.Session`),
    ``req.context.session_token`` and ``req.context.session_expires_at``."""

    def __init__(self, admins: AdminService, cookie: SessionCookie) -> None:
        self._admins, self._cookie = admins, cookie

    def authenticate(self, req: falcon.Request) -> Principal | None:
        if req.path == LOGIN_PATH:  # login starts a new session whatever the browser holds
            return None
        tokens = req.get_cookie_values(self._cookie.name)
        if not tokens:
            return None
        session = self._admins.session(tokens[0])
        if session is None:
            return None
        if req.method not in SAFE_METHODS:
            sent = req.get_header(CSRF_HEADER)
            if not sent or not session.csrf_matches(sent):
                raise CsrfFailed(f"请求缺少有效的 {CSRF_HEADER}，请刷新页面后重试")
        req.context.session = session
        req.context.session_token = tokens[0]
        req.context.session_expires_at = self._admins.touch(session)
        return Principal(kind="admin", name=session.username, id=session.admin_id,
                         role=session.role)


def services(database: Database, key_holder: KeyHolder, config: Config, *,
             audit: AuditHook | None = None,
             nonces: NonceRecorder | None = None) -> tuple[AdminService, ApplicationService]:
    """The account and credential services the authenticators and resources share; ``audit``
    (e.g. ``appliance.services.audit.AuditLog``) receives logins and account changes."""
    return (AdminService(database, key_holder, config.security, audit=audit),
            ApplicationService(database, key_holder, config.security, audit=audit,
                               nonces=nonces))


def authenticators(database: Database, key_holder: KeyHolder, config: Config, *,
                   admins: AdminService | None = None,
                   applications: ApplicationService | None = None,
                   devices: DeviceService | None = None) -> list[Authenticator]:
    """Signed application requests first, then device-signed ones, then console sessions."""
    if admins is None or applications is None:
        admins, applications = services(database, key_holder, config)
    found: list[Authenticator] = [
        HmacAuthenticator(applications, config.security.request_max_skew_seconds)]
    if devices is not None:
        found.append(DeviceAuthenticator(devices, config.security.request_max_skew_seconds))
    found.append(SessionAuthenticator(admins, SessionCookie(config.security.cookie_secure)))
    return found


def session_expiry(req: falcon.Request) -> dt.datetime | None:
    expires: dt.datetime | None = getattr(req.context, "session_expires_at", None)
    return expires
