"""Seals over the API: ``POST /api/v1/seal`` applies the hospital's seal (a server-held key) to
a batch of documents as CMS (scope ``seal``); ``GET /api/v1/seals`` lists the seals that can
seal now (scope ``seal``, or the security administrator)."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import SECURITY_ADMIN, either, roles, scopes
from appliance.api.ca import CERTIFICATE
from appliance.api.media import json_body, optional_str
from appliance.errors import ValidationFailed
from appliance.services.admins import Actor
from appliance.services.seals import (
    FLAVOURS,
    FORMATS,
    MAX_DOCUMENTS,
    SealService,
    documents_from_json,
)

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
                "documents": {"type": "array", "minItems": 1, "maxItems": MAX_DOCUMENTS,
                              "items": _DOCUMENT},
            }}),
        "responses": {"200": oa.response("One CMS signature per document", {
            "type": "object", "required": ["seal", "results"], "additionalProperties": False,
            "properties": {"seal": CERTIFICATE,
                           "results": {"type": "array", "items": _RESULT}}}),
            "409": oa.problem("No usable seal certificate (or TSA certificate)"),
            "503": oa.problem("A time stamp was asked for and the clock is not synchronized")},
    }}

    def __init__(self, service: SealService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"seal", "format", "flavour", "documents", "timestamp"},
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
        info, results = self._service.apply(
            actor, documents_from_json(body.get("documents")), seal_id=seal_id,
            detached=fmt == "cms-detached", flavour=optional_str(body, "flavour", 16)
            or "rfc5652", timestamp=timestamp, pades=fmt == "pades")
        resp.media = {"seal": info.to_json(), "results": [r.to_json() for r in results]}


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
