"""The SDK's exceptions.

::

    MedsignError
    ├── ApiError                 an RFC 9457 problem document from the appliance
    │   ├── ValidationFailed     400, 422 (bad input; nothing changed)
    │   ├── Unauthorized         401 (signature, timestamp, nonce, unknown key or device)
    │   ├── Forbidden            403
    │   │   └── PinWrong         code pin-wrong; ``attempts_left``
    │   ├── NotFound             404 (also: someone else's task or request)
    │   ├── Conflict             409 (not pending, used up, idempotency key reused, ...)
    │   ├── PinLocked            code pin-locked (423): identity re-verification needed
    │   └── ServerError          5xx
    ├── TransportError           no usable HTTP answer (connection, timeout, not JSON)
    ├── ProtocolError            a server message that does not check out (the phone stops)
    ├── WebhookError             a webhook whose signature or timestamp does not verify
    └── WaitTimeout              wait_for gave up (also a TimeoutError)

Every :class:`ApiError` keeps the problem's ``status``, ``code`` (stable, machine readable),
``title``, ``detail`` and any extension members in ``extensions``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class MedsignError(Exception):
    """Base class of every error the SDK raises on purpose."""


class TransportError(MedsignError):
    """The appliance could not be reached, did not answer in time, or answered something that
    is not the API (after the retries the request allowed)."""


class ProtocolError(MedsignError):
    """A server message of the two-party protocol that does not check out (wrong session or
    nonce, malformed, a point off the curve, a contribution that does not make a valid
    signature).  The phone sent nothing in answer to it."""


class WebhookError(MedsignError):
    """A webhook request that must not be trusted (signature, timestamp, headers)."""


class WaitTimeout(MedsignError, TimeoutError):
    """The awaited state was not reached in time."""


class ApiError(MedsignError):
    """An error answer of the appliance (RFC 9457 problem document)."""

    def __init__(self, status: int, code: str, title: str = "", detail: str = "",
                 extensions: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extensions: dict[str, Any] = dict(extensions or {})


class ValidationFailed(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class ServerError(ApiError):
    pass


class PinWrong(Forbidden):
    """A wrong PIN: the share locks after ``attempts_left`` more wrong ones."""

    @property
    def attempts_left(self) -> int | None:
        value = self.extensions.get("attempts_left")
        return value if isinstance(value, int) else None


class PinLocked(ApiError):
    """Too many wrong PINs: the signing key is locked until the signer's identity is
    re-verified at the hospital."""


_BY_CODE: dict[str, type[ApiError]] = {"pin-wrong": PinWrong, "pin-locked": PinLocked}
_BY_STATUS: dict[int, type[ApiError]] = {400: ValidationFailed, 422: ValidationFailed,
                                         401: Unauthorized, 403: Forbidden, 404: NotFound,
                                         409: Conflict}
_STANDARD = {"type", "title", "status", "detail", "code", "instance"}


def from_response(status: int, body: bytes, content_type: str = "") -> ApiError:
    """The typed error of an HTTP error answer (a problem document, or whatever came)."""
    problem: Any = None
    if "json" in content_type.lower():
        try:
            problem = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            problem = None
    if not isinstance(problem, dict):
        problem = {}
    code = problem.get("code")
    code = code if isinstance(code, str) and code else f"http-{status}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (
        ServerError if status >= 500 else ApiError)
    title = problem.get("title")
    detail = problem.get("detail")
    if not isinstance(detail, str):
        detail = body[:200].decode("utf-8", "replace") if not problem else ""
    extensions = {k: v for k, v in problem.items() if k not in _STANDARD}
    if isinstance(problem.get("instance"), str):
        extensions["instance"] = problem["instance"]
    return cls(status, code, title if isinstance(title, str) else "", detail, extensions)
