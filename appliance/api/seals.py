"""Seals over the API: ``POST /api/v1/seal`` applies the hospital's seal (a server-held key) to
a batch of documents as CMS (scope ``seal``); ``GET /api/v1/seals`` lists the seals that can
seal now (scope ``seal``, or the security administrator).  ``/api/v1/managed-seals/...``: seal
management for the security administrator (create, image, bind a certificate, enable/disable,
application scope, usage log; ``appliance.services.seal_registry``)."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import SECURITY_ADMIN, either, roles, scopes
from appliance.api.ca import CERTIFICATE
from appliance.api.console import optional_bool, principal
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.admins import Actor
from appliance.services.seal_registry import KINDS, MAX_IMAGE_BYTES, SealRegistry
from appliance.services.seal_registry import MAX_PAGE as MAX_USAGE_PAGE
from appliance.services.seals import (
    FLAVOURS,
    FORMATS,
    MAX_DOCUMENTS,
    Placement,
    SealService,
    documents_from_json,
)
from appliance.services.signers import MAX_ID

SEAL = scopes("seal")
READ = either(scopes("seal"), roles(SECURITY_ADMIN))
_DOCUMENT = {
    "type": "object", "required": ["id"], "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 64,
               "description": "the caller's id for the document (e.g. the prescription number)"},
        "content": {"type": "string", "contentEncoding": "base64",
                    "description": "the document's bytes"},
        "digest": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                   "description": "or its digest (cms-detached only): SM3 for an SM2 seal, "
                                  "SHA-256 for an RSA seal"},
        "digest_algorithm": {"enum": ["sm3", "sha256"]},
    },
}
_RESULT = {"type": "object", "additionalProperties": False,
           "required": ["id", "signature", "digest", "digest_algorithm"],
           "properties": {"id": {"type": "string"},
                          "signature": {"type": "string", "contentEncoding": "base64",
                                        "description": "DER ContentInfo(SignedData), or "
                                                       "the sealed PDF (pades)"},
                          "digest": {"type": "string"},
                          "digest_algorithm": {"enum": ["sm3", "sha256"]}}}


# --- managed seals on POST /api/v1/seal (appliance.services.seal_registry) ---------------------

_FIELD_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}$"}
_MANAGED_IN: dict[str, Any] = {
    "managed_seal": {"type": "integer", "minimum": 1, "maximum": MAX_ID,
                     "description": "a managed seal's id: it must be enabled and this "
                                    "application in its scope; pades shows its image"},
    "field": {**_FIELD_NAME, "description": "pades: the empty signature field to seal "
                                            "into (a template's seal slot)"},
    "box": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 14400},
            "minItems": 4, "maxItems": 4,
            "description": "pades: a new visible field's rectangle x1, y1, x2, y2 (points)"},
    "page": {"type": "integer", "minimum": 0, "maximum": 9999, "default": 0},
}
_FIELD_RE = re.compile(_FIELD_NAME["pattern"])
_MANAGED_OUT: dict[str, Any] = {
    "request_id": {"type": "string", "description": "this batch in the seal's usage log"}}


def _managed_arguments(body: dict[str, Any], fmt: str) -> dict[str, Any]:
    managed = body.get("managed_seal")
    if managed is not None and (not isinstance(managed, int) or isinstance(managed, bool)
                                or not 0 < managed <= MAX_ID):
        raise ValidationFailed("managed_seal must be a seal id")
    field, box, page = body.get("field"), body.get("box"), body.get("page", 0)
    if field is not None and (not isinstance(field, str)
                              or not _FIELD_RE.fullmatch(field)):
        raise ValidationFailed("field: 1 to 64 letters, digits, _ . -")
    if box is not None and (not isinstance(box, list) or len(box) != 4 or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 14400 for v in box)
            or box[0] >= box[2] or box[1] >= box[3]):
        raise ValidationFailed("box: [x1, y1, x2, y2], integers, x1 < x2 and y1 < y2")
    if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page <= 9999:
        raise ValidationFailed("page: 0 to 9999")
    if (field is not None or box is not None) and fmt != "pades":
        raise ValidationFailed("field and box are for format pades")
    if field is not None and box is not None:
        raise ValidationFailed("give field or box, not both")
    placement = Placement(field=field, box=(box[0], box[1], box[2], box[3]) if box else None,
                          page=page) if field is not None or box is not None else None
    return {"managed_seal": managed, "placement": placement}


class Seal:
    """Apply a seal to up to 100 documents (all or nothing)."""

    access = {"POST": SEAL}
    openapi = {"POST": {
        "summary": "Seal a batch of documents with the hospital's seal (CMS)",
        "requestBody": oa.body({
            "type": "object", "required": ["documents"], "additionalProperties": False,
            "properties": {
                "seal": {"type": "integer", "minimum": 1,
                         "description": "the seal certificate's id (default: the newest)"},
                "format": {"enum": list(FORMATS), "default": "cms-detached"},
                "flavour": {"enum": list(FLAVOURS), "default": "rfc5652"},
                "timestamp": {"type": "boolean", "default": False,
                              "description": "add the appliance TSA's signature time stamp"},
                "level": {"enum": ["B-B", "B-T", "B-LT", "B-LTA"],
                          "description": "pades only: the PAdES baseline level (default B-T "
                                         "with timestamp, else B-B); B-LT adds the chains' "
                                         "certificates and OCSP answers (DSS), B-LTA a "
                                         "document timestamp"},
                "documents": {"type": "array", "minItems": 1, "maxItems": MAX_DOCUMENTS,
                              "items": _DOCUMENT},
                **_MANAGED_IN,
            }}),
        "responses": {"200": oa.response("One CMS signature per document", {
            "type": "object", "required": ["seal", "results"], "additionalProperties": False,
            "properties": {"seal": CERTIFICATE,
                           "results": {"type": "array", "items": _RESULT}, **_MANAGED_OUT}}),
            "403": oa.problem("The application is not in the managed seal's scope"),
            "404": oa.problem("No such seal certificate or managed seal"),
            "409": oa.problem("No usable seal certificate (or TSA certificate); the managed "
                              "seal is disabled or has no key"),
            "503": oa.problem("A time stamp was asked for and the clock is not synchronized")},
    }}

    def __init__(self, service: SealService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"seal", "format", "flavour", "documents", "timestamp",
                                       "level", *_MANAGED_IN},
                         required={"documents"})
        timestamp = body.get("timestamp", False)
        if not isinstance(timestamp, bool):
            raise ValidationFailed("timestamp must be true or false")
        seal_id = body.get("seal")
        if seal_id is not None and (not isinstance(seal_id, int) or isinstance(seal_id, bool)
                                    or not 0 < seal_id < 2**63):
            raise ValidationFailed("seal must be a certificate id")
        fmt = optional_str(body, "format", 16) or "cms-detached"
        if fmt not in FORMATS:
            raise ValidationFailed(f"format 应为 {', '.join(FORMATS)} 之一")
        actor: Actor = req.context.principal
        request_id = str(uuid.uuid4())
        info, results = self._service.apply(
            actor, documents_from_json(body.get("documents")), seal_id=seal_id,
            detached=fmt == "cms-detached", flavour=optional_str(body, "flavour", 16)
            or "rfc5652", timestamp=timestamp, pades=fmt == "pades",
            level=optional_str(body, "level", 8), request_id=request_id,
            **_managed_arguments(body, fmt))
        resp.media = {"seal": info.to_json(), "results": [r.to_json() for r in results],
                      "request_id": request_id}


class Seals:
    access = {"GET": READ}
    openapi = {"GET": {"summary": "The seals that can seal now, newest first",
                       "responses": {"200": oa.response("The seal certificates", {
                           "type": "object", "required": ["items"],
                           "additionalProperties": False,
                           "properties": {"items": {"type": "array", "items": CERTIFICATE}}})}}}

    def __init__(self, service: SealService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [s.to_json() for s in self._service.seals()]}


def routes(service: SealService) -> dict[str, Any]:
    return {"/api/v1/seal": Seal(service), "/api/v1/seals": Seals(service)}


# --- seal management (security administrator): appliance.services.seal_registry --------------

MANAGE = roles(SECURITY_ADMIN)
_SEAL_ID = f"{{seal_id:int(min=1, max={MAX_ID})}}"
_IMAGE_B64_MAX = MAX_IMAGE_BYTES * 4 // 3 + 4
MANAGED_SEAL: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "name", "kind", "department", "has_image", "image_sm3",
                 "certificate_id", "enabled", "applications", "created_at", "created_by",
                 "updated_at", "updated_by"],
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "kind": {"enum": list(KINDS)},
        "department": {"type": ["string", "null"]}, "has_image": {"type": "boolean"},
        "image_sm3": {"type": ["string", "null"]},
        "certificate_id": {"type": ["integer", "null"]}, "enabled": {"type": "boolean"},
        "applications": {"type": "array", "items": {"type": "integer"},
                         "description": "the applications that may use the seal"},
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": {"type": "string"},
        "updated_at": {"type": "string", "format": "date-time"},
        "updated_by": {"type": "string"},
    },
}
_SEAL_REF = {"$ref": "#/components/schemas/ManagedSeal"}
_SCHEMAS = {"ManagedSeal": MANAGED_SEAL}
_ONE = oa.response("The seal", {"type": "object", "required": ["seal"],
                                "additionalProperties": False,
                                "properties": {"seal": _SEAL_REF}})
_IMAGE_IN = {"type": "string", "contentEncoding": "base64", "maxLength": _IMAGE_B64_MAX,
             "description": f"PNG, at most {MAX_IMAGE_BYTES} bytes"}
_USE = {"type": "object", "additionalProperties": False,
        "required": ["id", "application_id", "actor", "document_id", "document_digest",
                     "digest_algorithm", "format", "request_id", "used_at"],
        "properties": {"id": {"type": "integer"},
                       "application_id": {"type": ["integer", "null"]},
                       "actor": {"type": "string"}, "document_id": {"type": "string"},
                       "document_digest": {"type": "string"},
                       "digest_algorithm": {"type": "string"},
                       "format": {"enum": list(FORMATS)}, "request_id": {"type": "string"},
                       "used_at": {"type": "string", "format": "date-time"}}}


def _image(body: dict[str, Any]) -> bytes:
    value = body.get("image")
    if not isinstance(value, str) or len(value) > _IMAGE_B64_MAX:
        raise ValidationFailed(f"image: base64 PNG, at most {MAX_IMAGE_BYTES} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise ValidationFailed("image is not base64") from None


class ManagedSeals:
    """GET every managed seal; POST a new one (a fresh server-held key, certified through the
    active channel of the organization-seal profile)."""

    access = {"GET": MANAGE, "POST": MANAGE}
    openapi = {
        "GET": {"summary": "Every managed seal",
                "responses": {"200": oa.response("The seals", {
                    "type": "object", "required": ["items"], "additionalProperties": False,
                    "properties": {"items": {"type": "array", "items": _SEAL_REF}}})}},
        "POST": {
            "summary": "Create a seal: generate its key, have its certificate issued",
            "requestBody": oa.body({
                "type": "object", "additionalProperties": False,
                "required": ["name", "kind", "common_name", "organization", "algorithm"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
                    "kind": {"enum": list(KINDS)},
                    "department": {"type": "string", "minLength": 1, "maxLength": 128},
                    "common_name": {"type": "string", "minLength": 1, "maxLength": 64,
                                    "description": "the certificate's CN (e.g. 某某医院电子印章)"},
                    "organization": {"type": "string", "minLength": 1, "maxLength": 128},
                    "algorithm": {"enum": ["sm2", "rsa"]},
                    "image": _IMAGE_IN,
                }}),
            "responses": {"201": _ONE,
                          "409": oa.problem("A seal of that name exists"),
                          "503": oa.problem("The CA channel is unavailable")},
        },
    }
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [s.to_json() for s in self._registry.list(principal(req))]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"name", "kind", "department", "common_name",
                                       "organization", "algorithm", "image"},
                         required={"name", "kind", "common_name", "organization",
                                   "algorithm"})
        seal = self._registry.create(
            principal(req), name=required_str(body, "name", 64),
            kind=required_str(body, "kind", 16),
            department=optional_str(body, "department", 128),
            common_name=required_str(body, "common_name", 64),
            organization=required_str(body, "organization", 128),
            algorithm=required_str(body, "algorithm", 8),
            image=_image(body) if "image" in body else None)
        resp.status = falcon.HTTP_201
        resp.media = {"seal": seal.to_json()}


class ManagedSeal:
    access = {"GET": MANAGE}
    openapi = {"GET": {"summary": "One managed seal", "responses": {"200": _ONE}}}
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        resp.media = {"seal": self._registry.get(principal(req), seal_id).to_json()}


class ManagedSealImage:
    """GET the seal image (PNG); PUT {"image": base64 PNG} uploads or replaces it."""

    access = {"GET": MANAGE, "PUT": MANAGE}
    openapi = {
        "GET": {"summary": "The seal image",
                "responses": {"200": oa.response("PNG", {"type": "string",
                                                         "format": "binary"},
                                                 media_type="image/png")}},
        "PUT": {"summary": "Upload or replace the seal image (PNG)",
                "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                        "required": ["image"],
                                        "properties": {"image": _IMAGE_IN}}),
                "responses": {"200": _ONE,
                              "400": oa.problem("Not a readable PNG, or too big")}},
    }
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        resp.content_type = "image/png"
        resp.data = self._registry.image(principal(req), seal_id)

    def on_put(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        body = json_body(req, allowed={"image"}, required={"image"})
        resp.media = {"seal": self._registry.set_image(principal(req), seal_id,
                                                       _image(body)).to_json()}


class ManagedSealCertificate:
    """PUT {"certificate_id"}: bind an existing organization-seal certificate whose key the
    appliance holds (a sensitive change: audited with the old and new certificate)."""

    access = {"PUT": MANAGE}
    openapi = {"PUT": {
        "summary": "Bind an existing seal certificate and its server-held key",
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "required": ["certificate_id"],
                                "properties": {"certificate_id": {
                                    "type": "integer", "minimum": 1, "maximum": MAX_ID}}}),
        "responses": {"200": _ONE}}}
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_put(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        body = json_body(req, allowed={"certificate_id"}, required={"certificate_id"})
        value = body["certificate_id"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
            raise ValidationFailed("certificate_id must be a certificate id")
        resp.media = {"seal": self._registry.bind(principal(req), seal_id, value).to_json()}


class ManagedSealStatus:
    """PUT {"enabled": true | false}: enable or disable the seal."""

    access = {"PUT": MANAGE}
    openapi = {"PUT": {
        "summary": "Enable or disable a seal",
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "required": ["enabled"],
                                "properties": {"enabled": {"type": "boolean"}}}),
        "responses": {"200": _ONE}}}
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_put(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        body = json_body(req, allowed={"enabled"}, required={"enabled"})
        resp.media = {"seal": self._registry.set_enabled(
            principal(req), seal_id, optional_bool(body, "enabled")).to_json()}


class ManagedSealScope:
    """PUT {"applications": [ids]}: exactly these applications may use the seal."""

    access = {"PUT": MANAGE}
    openapi = {"PUT": {
        "summary": "Set which applications may use a seal",
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "required": ["applications"],
                                "properties": {"applications": {
                                    "type": "array", "maxItems": 500, "items": {
                                        "type": "integer", "minimum": 1, "maximum": MAX_ID}}}}),
        "responses": {"200": _ONE}}}
    openapi_schemas = _SCHEMAS

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_put(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        body = json_body(req, allowed={"applications"}, required={"applications"})
        apps = body["applications"]
        if not isinstance(apps, list):
            raise ValidationFailed("applications must be a list of application ids")
        resp.media = {"seal": self._registry.set_scope(principal(req), seal_id,
                                                       apps).to_json()}


class ManagedSealUsage:
    """GET the seal's usage log, newest first (?offset, ?limit)."""

    access = {"GET": MANAGE}
    openapi = {"GET": {
        "summary": "A seal's usage log, newest first",
        "parameters": [oa.query("offset", {"type": "integer", "minimum": 0,
                                           "maximum": 10**9}),
                       oa.query("limit", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_USAGE_PAGE})],
        "responses": {"200": oa.response("One page", {
            "type": "object", "required": ["items", "total", "offset", "limit"],
            "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": _USE},
                           "total": {"type": "integer"}, "offset": {"type": "integer"},
                           "limit": {"type": "integer"}}})}}}

    def __init__(self, registry: SealRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response, seal_id: int) -> None:
        offset = req.get_param_as_int("offset", min_value=0, max_value=10**9, default=0)
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_USAGE_PAGE,
                                     default=50)
        resp.media = self._registry.usage(principal(req), seal_id, offset=offset, limit=limit)


def registry_routes(registry: SealRegistry) -> dict[str, Any]:
    base = f"/api/v1/managed-seals/{_SEAL_ID}"
    return {
        "/api/v1/managed-seals": ManagedSeals(registry),
        base: ManagedSeal(registry),
        f"{base}/image": ManagedSealImage(registry),
        f"{base}/certificate": ManagedSealCertificate(registry),
        f"{base}/status": ManagedSealStatus(registry),
        f"{base}/scope": ManagedSealScope(registry),
        f"{base}/usage": ManagedSealUsage(registry),
    }

