"""Evidence reports over the API ("一键取证"): ``POST /api/v1/evidence`` builds one for a sign
request's document or an uploaded signed document; ``GET /api/v1/evidence/{id}`` gives its
facts, ``/{id}/pdf`` the signed PDF (verifiable offline: ``medsign evidence verify``).

Access: the hospital's systems (application scopes ``sign:request``, ``sign:read``, ``verify``;
an application sees the processes of its own requests and the reports it made) and the security
and audit administrators in the console.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import AUDIT_ADMIN, SECURITY_ADMIN, either, roles, scopes
from appliance.api.media import json_body, optional_str
from appliance.errors import ValidationFailed
from appliance.services.evidence import MAX_UPLOAD, EvidenceService

CONSOLE = roles(SECURITY_ADMIN, AUDIT_ADMIN)
ACCESS = either(CONSOLE, scopes("sign:request", "sign:read", "verify"))
REPORT_ID = {"type": "string", "pattern": "^ev_[A-Za-z0-9_-]{16}$"}
_REQUEST_ID = {"type": "string", "pattern": "^[0-9a-f-]{36}$"}
MAX_B64 = MAX_UPLOAD * 4 // 3 + 4

SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "verdict", "sign_request_id", "document", "problems", "signatures",
                 "created_at", "links", "facts"],
    "properties": {
        "id": REPORT_ID, "verdict": {"enum": ["valid", "invalid"]},
        "sign_request_id": {"type": ["string", "null"]},
        "document": {"type": "object", "required": ["name", "size", "sha256", "sm3"],
                     "properties": {"name": {"type": "string"}, "size": {"type": "integer"},
                                    "sha256": {"type": "string"}, "sm3": {"type": "string"}}},
        "problems": {"type": "array", "items": {"type": "string"},
                     "description": "what the appliance's own checks found (zh-CN)"},
        "signatures": {"type": "array", "items": {
            "type": "object", "required": ["index", "field", "signer", "valid", "process"],
            "properties": {"index": {"type": "integer"}, "field": {"type": "string"},
                           "signer": {"type": "string"}, "valid": {"type": "boolean"},
                           "process": {"type": "object"}}}},
        "created_at": {"type": "string", "format": "date-time"},
        "links": {"type": "object", "required": ["self", "pdf"],
                  "properties": {"self": {"type": "string"}, "pdf": {"type": "string"}}},
        "facts": {"type": "object",
                  "description": "the report's facts, exactly as embedded in the PDF"},
    },
}


def _b64(body: dict[str, Any], name: str) -> bytes | None:
    text = optional_str(body, name, MAX_B64)
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{name} 应为 base64") from None


class Evidence:
    access = {"POST": ACCESS}
    openapi = {"POST": {
        "summary": "Build an evidence report (signed zh-CN PDF + facts) for a signed document",
        "requestBody": oa.body({
            "type": "object", "additionalProperties": False,
            "properties": {
                "sign_request_id": {**_REQUEST_ID,
                                    "description": "report on this request's document"},
                "document_index": {"type": "integer", "minimum": 0, "maximum": 999,
                                   "default": 0},
                "document": {"type": "string", "contentEncoding": "base64",
                             "description": "or: the signed PDF, or a CMS SignedData"},
                "content": {"type": "string", "contentEncoding": "base64",
                            "description": "the signed content of a detached CMS"},
                "name": {"type": "string", "maxLength": 200},
            }}),
        "responses": {"201": oa.response("The report", SUMMARY),
                      "400": oa.problem("Neither or both of sign_request_id and document "
                                        "(`validation-failed`)"),
                      "404": oa.problem("No such sign request or document"),
                      "409": oa.problem("Not signed yet, or no seal/TSA certificate to sign "
                                        "the report"),
                      "503": oa.problem("The TSA's clock is not synchronized")}}}

    def __init__(self, service: EvidenceService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"sign_request_id", "document_index", "document",
                                       "content", "name"})
        request_id = optional_str(body, "sign_request_id", 36)
        document = _b64(body, "document")
        if (request_id is None) == (document is None):
            raise ValidationFailed("请给出 sign_request_id 或 document 之一")
        actor = req.context.principal
        if request_id is not None:
            if set(body) - {"sign_request_id", "document_index"}:
                raise ValidationFailed("按签名请求取证时只接受 document_index")
            answer = self._service.for_sign_request(actor, request_id, _index(body))
        else:
            assert document is not None
            answer = self._service.for_upload(actor, document, content=_b64(body, "content"),
                                              name=optional_str(body, "name", 200) or "")
        resp.status = falcon.HTTP_201
        resp.set_header("Location", answer["links"]["self"])
        resp.media = answer


class EvidenceReport:
    access = {"GET": ACCESS}
    openapi = {"GET": {"summary": "An evidence report's facts and verdict",
                       "parameters": [oa.path_param("report_id", REPORT_ID)],
                       "responses": {"200": oa.response("The report", SUMMARY),
                                     "404": oa.problem("No such report")}}}

    def __init__(self, service: EvidenceService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, report_id: str) -> None:
        resp.media = self._service.get(req.context.principal, report_id)


class EvidencePdf:
    access = {"GET": ACCESS}
    openapi = {"GET": {"summary": "The signed evidence report (PDF, facts attached)",
                       "parameters": [oa.path_param("report_id", REPORT_ID)],
                       "responses": {"200": oa.response("The PDF", {"type": "string",
                                                                    "format": "binary"},
                                                        media_type="application/pdf"),
                                     "404": oa.problem("No such report")}}}

    def __init__(self, service: EvidenceService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, report_id: str) -> None:
        resp.data = self._service.pdf(req.context.principal, report_id)
        resp.content_type = "application/pdf"
        resp.set_header("Content-Disposition", f'attachment; filename="{report_id}.pdf"')


class ConsoleEvidence:
    """The console's one click: a report for a sign request, by a security or audit
    administrator (any application's request)."""

    access = {"POST": CONSOLE}
    openapi = {"POST": {
        "summary": "One click in the console: an evidence report for a sign request",
        "parameters": [oa.path_param("request_id", _REQUEST_ID)],
        "requestBody": oa.body({
            "type": "object", "additionalProperties": False,
            "properties": {"document_index": {"type": "integer", "minimum": 0,
                                              "maximum": 999, "default": 0}}},
            required=False),
        "responses": {"201": oa.response("The report", SUMMARY),
                      "404": oa.problem("No such sign request or document"),
                      "409": oa.problem("Not signed yet, or no seal/TSA certificate"),
                      "503": oa.problem("The TSA's clock is not synchronized")}}}

    def __init__(self, service: EvidenceService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, request_id: str) -> None:
        body = json_body(req, allowed={"document_index"})
        answer = self._service.for_sign_request(req.context.principal, request_id,
                                                _index(body))
        resp.status = falcon.HTTP_201
        resp.set_header("Location", answer["links"]["self"])
        resp.media = answer


def _index(body: dict[str, Any]) -> int:
    index = body.get("document_index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 999:
        raise ValidationFailed("document_index: 0 to 999")
    return index


def routes(service: EvidenceService) -> dict[str, Any]:
    return {"/api/v1/evidence": Evidence(service),
            "/api/v1/console/sign-requests/{request_id}/evidence": ConsoleEvidence(service),
            "/api/v1/evidence/{report_id}": EvidenceReport(service),
            "/api/v1/evidence/{report_id}/pdf": EvidencePdf(service)}
