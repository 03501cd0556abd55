"""Who may call what: deny by default.

Every resource declares, per HTTP method, an :class:`Access`: public, a set of console roles
(session cookie), or a set of application scopes (HMAC-signed request).  A method without a
declaration is refused (405 for a method the resource does not implement, 403 otherwise), and
``appliance.wsgi`` refuses to start with a routed resource that has no ``access`` at all.

Authenticators run first and put a :class:`Principal` (or None) on ``req.context.principal``;
this middleware only decides.  The audit administrator role is the only one allowed to read
logs, and it is allowed nothing else (DESIGN.md section 8).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import falcon

from appliance.errors import Forbidden, PayloadTooLarge, Unauthorized

SYSTEM_ADMIN = "system_admin"
SECURITY_ADMIN = "security_admin"
AUDIT_ADMIN = "audit_admin"
REVIEWER = "reviewer"
ROLES = (SYSTEM_ADMIN, SECURITY_ADMIN, AUDIT_ADMIN, REVIEWER)


@dataclasses.dataclass(frozen=True)
class Principal:
    """An authenticated caller: a console account (``kind="admin"``, one role), an
    application credential (``kind="app"``, its scopes) or a signer's bound phone
    (``kind="device"``: ``name`` is the device id, ``id`` the signer's)."""

    kind: str  # admin | app | device
    name: str  # username, key id or device id
    id: int  # admin id, application id or signer id
    role: str | None = None
    scopes: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Access:
    public: bool = False
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    device: bool = False  # a signer's bound phone (device-signed request)

    def allows(self, principal: Principal | None) -> bool:
        if self.public:
            return True
        if principal is None:
            return False
        if principal.kind == "admin":
            return principal.role in self.roles
        if principal.kind == "device":
            return self.device
        return bool(self.scopes & principal.scopes)


PUBLIC = Access(public=True)
DEVICE = Access(device=True)


def roles(*names: str) -> Access:
    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    return Access(roles=frozenset(names))


def scopes(*names: str) -> Access:
    return Access(scopes=frozenset(names))


def either(*accesses: Access) -> Access:
    return Access(roles=frozenset().union(*(a.roles for a in accesses)),
                  scopes=frozenset().union(*(a.scopes for a in accesses)),
                  device=any(a.device for a in accesses))


class Authenticator(Protocol):
    def authenticate(self, req: falcon.Request) -> Principal | None: ...


def declared_access(resource: object) -> Mapping[str, Access]:
    access = getattr(resource, "access", None)
    if not isinstance(access, Mapping):
        raise TypeError(f"{type(resource).__name__} declares no access map")
    return access


class AccessControl:
    """Falcon middleware: authenticate, then allow or refuse before the responder runs."""

    def __init__(self, authenticators: Iterable[Authenticator]) -> None:
        self._authenticators = list(authenticators)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         params: dict[str, Any]) -> None:
        if resource is None:  # no route: Falcon answers 404 itself
            return
        rule = declared_access(resource).get(req.method)
        if rule is None:
            if req.method == "OPTIONS":
                return
            raise Forbidden("this operation is not available")
        principal = self._principal(req)
        req.context.principal = principal
        if rule.allows(principal):
            return
        if principal is None:
            raise Unauthorized("sign in, or sign the request with an application credential "
                               "or a bound device key")
        raise Forbidden("your role or credential scopes do not allow this operation")

    def _principal(self, req: falcon.Request) -> Principal | None:
        for authenticator in self._authenticators:
            principal = authenticator.authenticate(req)
            if principal is not None:
                return principal
        return None


class BodyLimit:
    """Refuse bodies larger than the configured limit before anything reads them."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        length = req.content_length
        if length is not None and length > self._max:
            raise PayloadTooLarge(f"the request body is larger than {self._max} bytes")


def check_routes(resources: Iterable[object],
                 on_missing: Callable[[str], None] | None = None) -> None:
    """Fail at start-up for any routed resource without an access declaration."""
    for resource in resources:
        try:
            declared_access(resource)
        except TypeError as exc:
            if on_missing is None:
                raise
            on_missing(str(exc))
