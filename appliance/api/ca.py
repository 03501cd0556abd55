"""The built-in CA over HTTP (issue 5).

Public, for relying parties (anonymous, as RFC 5280 and RFC 6960 expect):
``GET /crl/{ca}.crl`` and ``/crl/{ca}-delta.crl`` (DER, ``application/pkix-crl``),
``GET /ca/{ca}.crt`` and ``/ca/{ca}-root.crt`` (``application/pkix-cert``; a relying party
pins the root's fingerprint out of band), ``POST /ocsp`` (``application/ocsp-request``
in, ``application/ocsp-response`` out; an unparsable request gets an OCSP
``malformedRequest`` answer, as RFC 6960 section 2.3 says, not an HTTP error).

For the security administrator: ``/api/v1/ca/authorities`` (list, create a hierarchy),
``/api/v1/certificates`` (list and search, issue from a CSR), ``/api/v1/certificates/{id}``
(detail with the PEM and chain), ``/api/v1/certificates/{id}/revoke``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import PUBLIC, SECURITY_ADMIN, roles
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import NotFound, PayloadTooLarge, ValidationFailed
from appliance.services.admins import Actor
from appliance.services.ca import MAX_ID, MAX_PAGE, CaService
from appliance.services.channels import ChannelService
from appliance.services.renewal import RenewalService
from ca_client import PROFILES, REVOCATION_REASONS, SubjectInfo

MANAGE = roles(SECURITY_ADMIN)
MAX_OCSP_REQUEST = 16 * 1024
MAX_CSR = 64 * 1024
_CA_ID = re.compile(r"^(?P<id>[a-z0-9]{2,8}-g[0-9]{1,4})(?P<delta>-delta)?\.crl$")
_CRT = re.compile(r"^(?P<id>[a-z0-9]{2,8}-g[0-9]{1,4})(?P<root>-root)?\.crt$")
_ID = f"{{certificate_id:int(min=1, max={MAX_ID})}}"  # a BIGINT primary key
_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
_BINARY = {"type": "string", "format": "binary"}

AUTHORITY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "algorithm", "status", "subject", "root_subject", "not_before",
                 "not_after", "created_at", "crl_number"],
    "properties": {
        "id": {"type": "string", "examples": ["sm2-g1"]},
        "algorithm": {"enum": ["sm2", "rsa"]},
        "status": {"enum": ["active", "retired"]},
        "subject": {"type": "string"}, "root_subject": {"type": "string"},
        "not_before": _TIME, "not_after": _TIME, "created_at": _TIME,
        "crl_number": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
CERTIFICATE: dict[str, Any] = {
    "type": "object",
    "required": ["id", "issuer_id", "channel", "serial", "profile", "subject", "issuer",
                 "key_type", "not_before", "not_after", "status", "revoked_at",
                 "revocation_reason", "signer_id", "created_at", "created_by", "sha256", "pem"],
    "properties": {
        "id": {"type": "integer"}, "issuer_id": {"type": "string"},
        "channel": {"type": "string"},
        "serial": {"type": "string", "pattern": "^[0-9a-f]+$"},
        "profile": {"type": "string"}, "subject": {"type": "string"},
        "issuer": {"type": "string"}, "key_type": {"enum": ["sm2", "rsa", "ec-p256"]},
        "not_before": _TIME, "not_after": _TIME,
        "status": {"enum": ["active", "expired", "revoked"]},
        "revoked_at": _OPTIONAL_TIME, "revocation_reason": {"type": ["string", "null"]},
        "signer_id": {"type": ["integer", "null"]}, "created_at": _TIME,
        "created_by": {"type": "string"}, "sha256": {"type": "string"},
        "pem": {"type": "string"},
    },
    "additionalProperties": False,
}
_SUBJECT_FIELDS = {"common_name": 64, "organization": 128, "department": 128, "title": 64,
                   "unique_id": 64, "country": 2}
SUBJECT: dict[str, Any] = {
    "type": "object", "required": ["common_name", "organization"],
    "properties": {
        **{name: {"type": "string", "minLength": 1, "maxLength": size}
           for name, size in _SUBJECT_FIELDS.items()},
        "dns_names": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "ip_addresses": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
    },
    "additionalProperties": False,
}


def _actor(req: falcon.Request) -> Actor:
    principal: Actor = req.context.principal
    return principal


def read_limited(req: falcon.Request, limit: int) -> bytes:
    if req.content_length is not None and req.content_length > limit:
        raise PayloadTooLarge(f"at most {limit} bytes")
    data: bytes = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"at most {limit} bytes")
    return data


class CrlResource:
    access = {"GET": PUBLIC}
    openapi = {"GET": {
        "summary": "A CA's current CRL: {ca}.crl (full) or {ca}-delta.crl (delta), DER",
        "parameters": [oa.path_param("name", {"type": "string", "pattern": _CA_ID.pattern},
                                     "`sm2-g1.crl`, `sm2-g1-delta.crl`, ...")],
        "responses": {"200": oa.response("The CRL", _BINARY, media_type="application/pkix-crl")},
    }}

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        match = _CA_ID.match(name)
        if match is None:
            raise NotFound("没有这个 CRL")
        resp.data = self._service.crl(match["id"], delta=bool(match["delta"]))
        resp.content_type = "application/pkix-crl"
        resp.cache_control = ["public", "max-age=60"]


class CaCertificateResource:
    access = {"GET": PUBLIC}
    openapi = {"GET": {
        "summary": "A CA certificate (DER): {ca}.crt (issuing CA), {ca}-root.crt (its root)",
        "parameters": [oa.path_param("name", {"type": "string", "pattern": _CRT.pattern},
                                     "`sm2-g1.crt`, `sm2-g1-root.crt`, ...")],
        "responses": {"200": oa.response("The certificate", _BINARY,
                                         media_type="application/pkix-cert")},
    }}

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        match = _CRT.match(name)
        if match is None:
            raise NotFound("没有这个 CA 证书")
        resp.data = self._service.ca_certificate(match["id"], root=bool(match["root"]))
        resp.content_type = "application/pkix-cert"


class OcspResource:
    """RFC 6960 over HTTP (appendix A): POST a DER request."""

    access = {"POST": PUBLIC}
    openapi = {"POST": {
        "summary": "OCSP responder (RFC 6960): the status of certificates of the built-in CA",
        "requestBody": oa.body({**_BINARY, "minLength": 2, "maxLength": MAX_OCSP_REQUEST},
                               media_type="application/ocsp-request"),
        "responses": {"200": oa.response(
            "An OCSP response (also for malformed or foreign requests: malformedRequest, "
            "unauthorized)", _BINARY, media_type="application/ocsp-response")},
    }}

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.content_type is None or not req.content_type.startswith(
                "application/ocsp-request"):
            raise falcon.HTTPUnsupportedMediaType(description="send application/ocsp-request")
        resp.data = self._service.ocsp(read_limited(req, MAX_OCSP_REQUEST))
        resp.content_type = "application/ocsp-response"
        resp.cache_control = ["no-store"]  # every answer is signed fresh, with the nonce


class Authorities:
    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {"summary": "The built-in CA's hierarchies",
                "responses": {"200": oa.response("Every hierarchy, oldest first", {
                    "type": "object", "required": ["items"], "additionalProperties": False,
                    "properties": {"items": {"type": "array", "items": AUTHORITY}}})}},
        "POST": {"summary": "Create an SM2 or RSA hierarchy (root and issuing CA) under the KEK",
                 "requestBody": oa.body({
                     "type": "object", "required": ["algorithm", "organization"],
                     "additionalProperties": False,
                     "properties": {"algorithm": {"enum": ["sm2", "rsa"]},
                                    "organization": {"type": "string", "minLength": 1,
                                                     "maxLength": 128}}}),
                 "responses": {"201": oa.response("The new hierarchy", AUTHORITY)}},
    }

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [a.to_json() for a in self._service.authorities()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"algorithm", "organization"},
                         required={"algorithm", "organization"})
        algorithm = required_str(body, "algorithm", 8)
        if algorithm not in ("sm2", "rsa"):
            raise ValidationFailed("algorithm 应为 sm2 或 rsa")
        authority = self._service.initialize(_actor(req), algorithm,
                                             required_str(body, "organization", 128))
        resp.status = falcon.HTTP_201
        resp.media = authority.to_json()


def _subject(value: Any) -> SubjectInfo:
    if not isinstance(value, dict):
        raise ValidationFailed("subject must be an object")
    unknown = set(value) - set(_SUBJECT_FIELDS) - {"dns_names", "ip_addresses"}
    if unknown:
        raise ValidationFailed(f"unknown subject fields: {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {}
    for name, size in _SUBJECT_FIELDS.items():
        text = optional_str(value, name, size)
        if text is not None:
            fields[name] = text
    for name in ("dns_names", "ip_addresses"):
        items = value.get(name, [])
        if not isinstance(items, list) or len(items) > 20 or not all(
                isinstance(i, str) and 0 < len(i) <= 253 for i in items):
            raise ValidationFailed(f"{name} must be a list of up to 20 strings")
        fields[name] = tuple(items)
    if "common_name" not in fields or "organization" not in fields:
        raise ValidationFailed("subject needs common_name and organization")
    return SubjectInfo(**fields)


def _csr_bytes(text: str) -> bytes:
    """PEM as it is (the loader reads PEM and DER), or base64 DER decoded."""
    if "-----BEGIN" in text:
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("csr must be PEM or base64 DER") from None


class Certificates:
    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {
            "summary": "Issued certificates, newest first (search by subject or serial)",
            "parameters": [
                oa.query("status", {"enum": ["active", "expired", "revoked"]}),
                oa.query("profile", {"enum": sorted(PROFILES)}),
                oa.query("q", {"type": "string", "maxLength": 64},
                         description="part of the subject or of the serial (hex)"),
                oa.query("offset", {"type": "integer", "minimum": 0}),
                oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            ],
            "responses": {"200": oa.response("One page", {
                "type": "object", "required": ["items", "total", "offset", "limit"],
                "additionalProperties": False,
                "properties": {"items": {"type": "array", "items": CERTIFICATE},
                               "total": {"type": "integer"}, "offset": {"type": "integer"},
                               "limit": {"type": "integer"}}})},
        },
        "POST": {
            "summary": "Issue a certificate from a CSR with the active built-in hierarchy",
            "requestBody": oa.body({
                "type": "object", "required": ["algorithm", "profile", "subject", "csr"],
                "additionalProperties": False,
                "properties": {
                    "algorithm": {"enum": ["sm2", "rsa"]},
                    "profile": {"enum": sorted(PROFILES)},
                    "subject": SUBJECT,
                    "csr": {"type": "string", "maxLength": MAX_CSR,
                            "description": "PKCS#10, PEM or base64 DER"},
                    "validity_days": {"type": "integer", "minimum": 1, "maximum": 3660},
                }}),
            "responses": {"201": oa.response("The certificate", CERTIFICATE)},
        },
    }

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status, profile, query = (req.get_param(n) for n in ("status", "profile", "q"))
        if profile is not None and profile not in PROFILES:
            raise ValidationFailed(f"profile 应为 {', '.join(sorted(PROFILES))} 之一")
        if query is not None and len(query) > 64:
            raise ValidationFailed("q 不能超过 64 个字符")
        offset = req.get_param_as_int("offset", min_value=0, max_value=10**9, default=0)
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_PAGE, default=50)
        items, total = self._service.search(status=status, profile=profile, query=query,
                                            offset=offset, limit=limit)
        resp.media = {"items": [c.to_json() for c in items], "total": total, "offset": offset,
                      "limit": limit}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"algorithm", "profile", "subject", "csr",
                                       "validity_days"},
                         required={"algorithm", "profile", "subject", "csr"})
        algorithm = required_str(body, "algorithm", 8)
        if algorithm not in ("sm2", "rsa"):
            raise ValidationFailed("algorithm 应为 sm2 或 rsa")
        days = body.get("validity_days")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                 or not 0 < days <= 3660):
            raise ValidationFailed("validity_days must be an integer from 1 to 3660")
        info = self._service.issue(
            _actor(req), algorithm=algorithm, profile=required_str(body, "profile", 40),
            subject=_subject(body.get("subject")), csr_der=_csr_bytes(
                required_str(body, "csr", MAX_CSR)), validity_days=days)
        resp.status = falcon.HTTP_201
        resp.location = f"/api/v1/certificates/{info.id}"
        resp.media = info.to_json()


class CertificateItem:
    access = {"GET": MANAGE}
    openapi = {"GET": {"summary": "One certificate",
                       "responses": {"200": oa.response("The certificate", CERTIFICATE)}}}

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, certificate_id: int) -> None:
        resp.media = self._service.get(certificate_id).to_json()


class Revoke:
    access = {"POST": MANAGE}
    openapi = {"POST": {
        "summary": "Revoke a certificate through the channel that issued it (the built-in CA's "
                   "CRL and OCSP reflect it at once)",
        "requestBody": oa.body({"type": "object", "required": ["reason"],
                                "additionalProperties": False,
                                "properties": {"reason": {"enum": list(REVOCATION_REASONS)}}}),
        "responses": {"200": oa.response("The revoked certificate", CERTIFICATE),
                      "409": oa.problem("Revoked already, or the issuing CA refused"),
                      "503": oa.problem("The issuing channel did not answer "
                                        "(`ca-channel-unavailable`)")},
    }}

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, certificate_id: int) -> None:
        body = json_body(req, allowed={"reason"}, required={"reason"})
        reason = required_str(body, "reason", 32)
        if reason not in REVOCATION_REASONS:
            raise ValidationFailed(f"reason 应为 {', '.join(REVOCATION_REASONS)} 之一")
        resp.media = self._service.revoke(_actor(req), certificate_id, reason).to_json()


def routes(service: CaService, channels: ChannelService) -> dict[str, Any]:
    return {
        "/crl/{name}": CrlResource(service),
        "/ca/{name}": CaCertificateResource(service),
        "/ocsp": OcspResource(service),
        "/api/v1/ca/authorities": Authorities(service),
        "/api/v1/certificates": Certificates(service),
        f"/api/v1/certificates/{_ID}": CertificateItem(service),
        f"/api/v1/certificates/{_ID}/revoke": Revoke(channels),
    }


# --------------------------------------------------------------------------- channels

CHANNEL: dict[str, Any] = {
    "type": "object",
    "required": ["name", "kind", "enabled", "settings", "has_secrets", "active_for"],
    "properties": {
        "name": {"type": "string"}, "kind": {"enum": ["builtin", "cmp", "vendor-http"]},
        "enabled": {"type": "boolean"}, "settings": {"type": "object"},
        "has_secrets": {"type": "boolean"},
        "active_for": {"type": "array", "items": {"enum": sorted(PROFILES)}},
    },
    "additionalProperties": False,
}
_CHANNEL_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ASSIGNMENTS = {"type": "object", "additionalProperties": False,
                "required": sorted(PROFILES),
                "properties": {p: {"type": "string"} for p in PROFILES}}


class Channels:
    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {"summary": "CA channels (built-in, CMP, vendor HTTP) and the profiles each "
                           "enrolls", "responses": {"200": oa.response("Every channel", {
                               "type": "object", "required": ["items"],
                               "additionalProperties": False,
                               "properties": {"items": {"type": "array", "items": CHANNEL}}})}},
        "POST": {
            "summary": "Configure a CMP or vendor HTTP channel (secrets are stored wrapped)",
            "requestBody": oa.body({
                "type": "object", "required": ["name", "kind", "settings"],
                "additionalProperties": False,
                "properties": {"name": {"type": "string", "pattern": _CHANNEL_NAME},
                               "kind": {"enum": ["cmp", "vendor-http"]},
                               "settings": {"type": "object"},
                               "secrets": {"type": "object"}}}),
            "responses": {"201": oa.response("The new channel", CHANNEL)},
        },
    }

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [c.to_json() for c in self._service.channels()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"name", "kind", "settings", "secrets"},
                         required={"name", "kind", "settings"})
        settings, secrets = body.get("settings"), body.get("secrets", {})
        if not isinstance(settings, dict) or not isinstance(secrets, dict):
            raise ValidationFailed("settings and secrets must be objects")
        channel = self._service.add(_actor(req), name=required_str(body, "name", 63),
                                    kind=required_str(body, "kind", 16), settings=settings,
                                    secrets=secrets)
        resp.status = falcon.HTTP_201
        resp.media = channel.to_json()


class ChannelItem:
    access = {"GET": MANAGE, "PATCH": MANAGE, "DELETE": MANAGE}
    _param = [oa.path_param("name", {"type": "string", "pattern": _CHANNEL_NAME})]
    openapi = {
        "GET": {"summary": "One channel with its live status", "parameters": _param,
                "responses": {"200": oa.response("The channel", {
                    **CHANNEL, "required": [*CHANNEL["required"], "status"],
                    "properties": {**CHANNEL["properties"], "status": {
                        "type": "object", "required": ["available", "detail"],
                        "additionalProperties": False,
                        "properties": {"available": {"type": "boolean"},
                                       "detail": {"type": "string"}}}}})}},
        "PATCH": {"summary": "Enable or disable a configured channel", "parameters": _param,
                  "requestBody": oa.body({"type": "object", "required": ["enabled"],
                                          "additionalProperties": False,
                                          "properties": {"enabled": {"type": "boolean"}}}),
                  "responses": {"200": oa.response("The channel", CHANNEL)}},
        "DELETE": {"summary": "Remove a configured channel that no profile uses",
                   "parameters": _param, "responses": {"204": oa.response("Removed")}},
    }

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        info = self._service.info(name)
        status = self._service.status(name)
        resp.media = {**info.to_json(), "status": {"available": status.available,
                                                   "detail": status.detail}}

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = json_body(req, allowed={"enabled"}, required={"enabled"})
        if not isinstance(body["enabled"], bool):
            raise ValidationFailed("enabled must be true or false")
        resp.media = self._service.set_enabled(_actor(req), name, body["enabled"]).to_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self._service.remove(_actor(req), name)
        resp.status = falcon.HTTP_204


class Profiles:
    access = {"GET": MANAGE}
    openapi = {"GET": {"summary": "Certificate profiles and the channel active for each",
                       "responses": {"200": oa.response("profile -> channel", _ASSIGNMENTS)}}}

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._service.assignments()


class ProfileChannel:
    """Switch the channel of a profile online: the next enrollment uses it."""

    access = {"PUT": MANAGE}
    openapi = {"PUT": {
        "summary": "Switch the channel that enrolls a profile (online, no restart)",
        "parameters": [oa.path_param("profile", {"enum": sorted(PROFILES)})],
        "requestBody": oa.body({"type": "object", "required": ["channel"],
                                "additionalProperties": False,
                                "properties": {"channel": {"type": "string",
                                                           "pattern": _CHANNEL_NAME}}}),
        "responses": {"200": oa.response("profile -> channel, after the switch", _ASSIGNMENTS)},
    }}

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_put(self, req: falcon.Request, resp: falcon.Response, profile: str) -> None:
        body = json_body(req, allowed={"channel"}, required={"channel"})
        resp.media = self._service.switch(_actor(req), profile,
                                          required_str(body, "channel", 63))


class Enrollments:
    """The appliance generates a key for one of its own certificates (seal, TSA, TLS, update
    signing) and has the profile's active channel certify it."""

    access = {"POST": MANAGE}
    openapi = {"POST": {
        "summary": "Enroll a server-held key through the profile's active channel",
        "requestBody": oa.body({
            "type": "object", "required": ["profile", "algorithm", "subject"],
            "additionalProperties": False,
            "properties": {"profile": {"enum": sorted(n for n, p in PROFILES.items()
                                                      if p.server_held)},
                           "algorithm": {"enum": ["sm2", "rsa"]}, "subject": SUBJECT}}),
        "responses": {"201": oa.response("The certificate", CERTIFICATE),
                      "503": oa.problem("The channel did not answer "
                                        "(`ca-channel-unavailable`): retry later")},
    }}

    def __init__(self, service: ChannelService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"profile", "algorithm", "subject"},
                         required={"profile", "algorithm", "subject"})
        info = self._service.enroll_server_key(
            _actor(req), profile=required_str(body, "profile", 40),
            algorithm=required_str(body, "algorithm", 8), subject=_subject(body.get("subject")))
        resp.status = falcon.HTTP_201
        resp.location = f"/api/v1/certificates/{info.id}"
        resp.media = info.to_json()


def channel_routes(service: ChannelService) -> dict[str, Any]:
    return {
        "/api/v1/ca/channels": Channels(service),
        "/api/v1/ca/channels/{name}": ChannelItem(service),
        "/api/v1/ca/profiles": Profiles(service),
        "/api/v1/ca/profiles/{profile}": ProfileChannel(service),
        "/api/v1/ca/enrollments": Enrollments(service),
    }


# --------------------------------------------------------------------------- renewal

_RENEWAL_ENTRY = {"type": "object", "additionalProperties": False,
                  "required": ["id", "profile", "subject", "channel", "not_after", "holder",
                               "signer_id", "error"],
                  "properties": {"id": {"type": "integer"}, "profile": {"type": "string"},
                                 "subject": {"type": "string"}, "channel": {"type": "string"},
                                 "not_after": _TIME, "holder": {"enum": ["signer", "appliance"]},
                                 "signer_id": {"type": ["integer", "null"]},
                                 "error": {"type": ["string", "null"]}}}
RENEWAL_REPORT = {"type": "object", "additionalProperties": False,
                  "required": ["renew_days_before", "due", "failed", "urgent"],
                  "properties": {"renew_days_before": {"type": "integer"},
                                 "due": {"type": "array", "items": _RENEWAL_ENTRY},
                                 "failed": {"type": "array", "items": _RENEWAL_ENTRY},
                                 "urgent": {"type": "array", "items": _RENEWAL_ENTRY}}}
_IDS = {"type": "array", "items": {"type": "integer"}}
RENEWAL_PASS = {"type": "object", "additionalProperties": False,
                "required": ["renewed", "waiting_for_phone", "failed"],
                "properties": {
                    "renewed": {"type": "array", "items": {
                        "type": "object", "required": ["old", "new"],
                        "additionalProperties": False,
                        "properties": {"old": {"type": "integer"}, "new": {"type": "integer"}}}},
                    "waiting_for_phone": _IDS,
                    "failed": {"type": "array", "items": {
                        "type": "object", "required": ["id", "error"],
                        "additionalProperties": False,
                        "properties": {"id": {"type": "integer"},
                                       "error": {"type": "string"}}}}}}


class Renewals:
    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {"summary": "Certificates due for renewal, failed renewals, and those expiring "
                           "within a week without a renewal",
                "responses": {"200": oa.response("The renewal report", RENEWAL_REPORT)}},
        "POST": {"summary": "Run a renewal pass now (medsign worker does it on a cadence)",
                 "responses": {"200": oa.response("What the pass did", RENEWAL_PASS)}},
    }

    def __init__(self, service: RenewalService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._service.report()

    def on_post(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._service.run_once().to_json()


def renewal_routes(service: RenewalService) -> dict[str, Any]:
    return {"/api/v1/ca/renewals": Renewals(service)}


# --------------------------------------------------------------------------- trust anchors

TRUST_ANCHOR = {"type": "object", "additionalProperties": False,
                "required": ["id", "kind", "subject", "sha256", "not_after", "created_at",
                             "created_by", "pem"],
                "properties": {"id": {"type": "integer"},
                               "kind": {"enum": ["anchor", "intermediate"]},
                               "subject": {"type": "string"}, "sha256": {"type": "string"},
                               "not_after": _TIME, "created_at": _TIME,
                               "created_by": {"type": "string"}, "pem": {"type": "string"}}}


class TrustAnchors:
    """External CAs' roots (and cross-certificates) that verification trusts, besides the
    built-in CA's roots."""

    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {"summary": "Trust anchors and known CA certificates added to the built-in CA's",
                "responses": {"200": oa.response("The list", {
                    "type": "object", "required": ["items"], "additionalProperties": False,
                    "properties": {"items": {"type": "array", "items": TRUST_ANCHOR}}})}},
        "POST": {"summary": "Trust an external CA's root (anchor) or add a CA certificate for "
                            "path building (intermediate, e.g. a cross-certificate)",
                 "requestBody": oa.body({
                     "type": "object", "required": ["certificate"],
                     "additionalProperties": False,
                     "properties": {"certificate": {"type": "string", "maxLength": 65536,
                                                    "description": "PEM"},
                                    "kind": {"enum": ["anchor", "intermediate"],
                                             "default": "anchor"}}}),
                 "responses": {"201": oa.response("Added", TRUST_ANCHOR)}},
    }

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": self._service.trust_anchors()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"certificate", "kind"}, required={"certificate"})
        resp.media = self._service.add_trust_anchor(
            _actor(req), required_str(body, "certificate", 65536).encode(),
            kind=optional_str(body, "kind", 16) or "anchor")
        resp.status = falcon.HTTP_201


class TrustAnchorItem:
    access = {"DELETE": MANAGE}
    openapi = {"DELETE": {"summary": "Stop trusting an added anchor or certificate",
                          "responses": {"204": oa.response("Removed")}}}

    def __init__(self, service: CaService) -> None:
        self._service = service

    def on_delete(self, req: falcon.Request, resp: falcon.Response, anchor_id: int) -> None:
        self._service.remove_trust_anchor(_actor(req), anchor_id)
        resp.status = falcon.HTTP_204


def trust_routes(service: CaService) -> dict[str, Any]:
    return {"/api/v1/ca/trust-anchors": TrustAnchors(service),
            f"/api/v1/ca/trust-anchors/{{anchor_id:int(min=1, max={MAX_ID})}}":
                TrustAnchorItem(service)}
