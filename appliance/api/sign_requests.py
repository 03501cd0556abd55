"""The hospital backend's signing API: sign requests (``/api/v1/sign-requests``) and the
activation codes that bind signers' phones (``/api/v1/signers/{id}/activation-codes``)."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import REVIEWER, SECURITY_ADMIN, either, roles, scopes
from appliance.api.media import json_body
from appliance.errors import NotFound, ValidationFailed
from appliance.services.devices import ACTIVATION_MINUTES, MAX_ACTIVATION_MINUTES, DeviceService
from appliance.services.handwriting import HandwritingService
from appliance.services.qr import QrService
from appliance.services.sign_requests import (
    FLAVOURS,
    FORMATS,
    MAX_DOCUMENTS,
    MAX_STEPS,
    SignRequestService,
)
from appliance.services.signer_keys import SignerKeyService
from appliance.services.signers import MAX_ID

REQUEST = scopes("sign:request")
READ = scopes("sign:request", "sign:read")
ACTIVATE = either(roles(SECURITY_ADMIN), scopes("signer:write"))
_OBJECT: dict[str, Any] = {"type": "object"}
_ID = {"type": "string", "pattern": "^[0-9a-f-]{36}$"}
_STATUS = {"enum": ["pending", "completed", "rejected", "cancelled", "expired"]}
_SIGN_REQUEST = {
    "type": "object", "required": ["id", "status", "documents", "signers"],
    "properties": {"id": {"type": "string"}, "status": _STATUS,
                   "documents": {"type": "array", "items": _OBJECT},
                   "signers": {"type": "array", "items": _OBJECT}},
}
_DOCUMENT = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "media_type": {"type": "string", "maxLength": 100},
        "content": {"type": "string", "contentEncoding": "base64"},
        "digest": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                   "description": "SM3 of the document (cms-detached only)"},
        "digest_algorithm": {"enum": ["sm3"]},
    },
}


class SignRequests:
    access = {"POST": REQUEST}
    openapi = {"POST": {
        "summary": "Ask signers for signatures on documents (in order)",
        "description": "Send `Idempotency-Key` to make a retried POST safe: the same key with "
                       "the same body returns the first request (200), with another body 409.",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128}}],
        "requestBody": oa.body({
            "type": "object", "required": ["documents", "signers"],
            "additionalProperties": False,
            "properties": {
                "title": {"type": "string", "maxLength": 200},
                "format": {"enum": list(FORMATS), "default": "cms-detached"},
                "flavour": {"enum": list(FLAVOURS), "default": "rfc5652"},
                "level": {"enum": ["B-B", "B-T", "B-LT", "B-LTA"], "default": "B-B",
                          "description": "format pades only: the PAdES baseline level of "
                                         "every signature (B-T and above: the appliance's "
                                         "TSA; B-LT: validation data in the DSS; B-LTA: "
                                         "then a document time stamp)"},
                "documents": {"type": "array", "minItems": 1, "maxItems": MAX_DOCUMENTS,
                              "items": _DOCUMENT},
                "signers": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": {
                    "type": "object", "required": ["signer_id"], "additionalProperties": False,
                    "properties": {"signer_id": {"type": "integer", "minimum": 1},
                                   "action": {"enum": ["sign", "review"]}}}},
                "expires_in": {"type": "integer", "minimum": 60, "maximum": 2592000,
                               "default": 86400},
                "callback_url": {"type": "string", "format": "uri", "maxLength": 2048},
            }}),
        "responses": {"201": oa.response("The sign request", _SIGN_REQUEST),
                      "200": oa.response("The earlier request with this Idempotency-Key",
                                         _SIGN_REQUEST),
                      "409": oa.problem("The Idempotency-Key was used for another request")},
    }}

    def __init__(self, service: SignRequestService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"title", "format", "flavour", "level", "documents",
                                       "signers", "expires_in", "callback_url"},
                         required={"documents", "signers"})
        answer, created = self._service.create(req.context.principal, body,
                                               req.get_header("Idempotency-Key"))
        resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
        resp.media = answer


class SignRequest:
    access = {"GET": READ}
    openapi = {"GET": {"summary": "A sign request's status, step by step",
                       "parameters": [oa.path_param("request_id", _ID)],
                       "responses": {"200": oa.response("The sign request", _SIGN_REQUEST)}}}

    def __init__(self, service: SignRequestService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, request_id: str) -> None:
        resp.media = self._service.get(req.context.principal, request_id)


class SignRequestResult:
    access = {"GET": READ}
    openapi = {"GET": {
        "summary": "The signatures of a completed request (CMS per document, or raw)",
        "parameters": [oa.path_param("request_id", _ID)],
        "responses": {"200": oa.response("Signatures", {
            "type": "object", "required": ["id", "format", "documents"],
            "properties": {"id": {"type": "string"}, "format": {"enum": list(FORMATS)},
                           "documents": {"type": "array", "items": _OBJECT}}}),
            "409": oa.problem("The request is not completed")}}}

    def __init__(self, service: SignRequestService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, request_id: str) -> None:
        resp.media = self._service.result(req.context.principal, request_id)


class SignRequestCancel:
    access = {"POST": REQUEST}
    openapi = {"POST": {"summary": "Cancel a pending request",
                        "parameters": [oa.path_param("request_id", _ID)],
                        "responses": {"200": oa.response("The sign request", _SIGN_REQUEST),
                                      "409": oa.problem("The request is not pending")}}}

    def __init__(self, service: SignRequestService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, request_id: str) -> None:
        json_body(req, allowed=set())
        resp.media = self._service.cancel(req.context.principal, request_id)


class ActivationCodes:
    access = {"POST": ACTIVATE}
    openapi = {"POST": {
        "summary": "A one-time code (and QR URI) that binds the signer's phone",
        "requestBody": oa.body({
            "type": "object", "additionalProperties": False,
            "properties": {"minutes": {"type": "integer", "minimum": 1,
                                       "maximum": MAX_ACTIVATION_MINUTES,
                                       "default": ACTIVATION_MINUTES}}}, required=False),
        "responses": {"201": oa.response("The code", {
            "type": "object", "required": ["code", "uri", "expires_at"],
            "properties": {"code": {"type": "string"}, "uri": {"type": "string"},
                           "signer_id": {"type": "integer"},
                           "expires_at": {"type": "string"}}})}}}

    def __init__(self, devices: DeviceService) -> None:
        self._devices = devices

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={"minutes"})
        minutes = body.get("minutes", ACTIVATION_MINUTES)
        if not isinstance(minutes, int) or isinstance(minutes, bool):
            raise ValidationFailed("minutes must be an integer")
        resp.status = falcon.HTTP_201
        resp.media = self._devices.issue_activation(req.context.principal, signer_id,
                                                    minutes=minutes).to_json()


class SignerHandwriting:
    access = {"GET": either(roles(SECURITY_ADMIN, REVIEWER), scopes("signer:read"))}
    openapi = {"GET": {
        "summary": "A signer's latest handwritten signature (PNG, SVG or the strokes)",
        "parameters": [oa.query("format", {"enum": ["png", "svg", "json"]})],
        "responses": {"200": oa.response("The image", {"type": "string"},
                                         media_type="image/png"),
                      "404": oa.problem("None registered")}}}

    def __init__(self, handwriting: HandwritingService) -> None:
        self._handwriting = handwriting

    def on_get(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        kind = req.get_param("format") or "png"
        if kind not in ("png", "svg", "json"):
            raise ValidationFailed("format: png, svg or json")
        resp.content_type, resp.data = self._handwriting.latest(signer_id, kind)


_DEVICE_REASONS = ("key_compromise", "superseded", "cessation_of_operation", "unspecified")


class SignerDevices:
    access = {"GET": either(roles(SECURITY_ADMIN, REVIEWER), scopes("signer:read"))}
    openapi = {"GET": {"summary": "A signer's bound phones",
                       "responses": {"200": oa.response("Devices", {
                           "type": "object", "required": ["items"],
                           "properties": {"items": {"type": "array", "items": _OBJECT}}})}}}

    def __init__(self, devices: DeviceService) -> None:
        self._devices = devices

    def on_get(self, _req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        resp.media = {"items": [d.to_json() for d in self._devices.of_signer(signer_id)]}


class SignerDeviceRevoke:
    access = {"POST": ACTIVATE}
    openapi = {"POST": {
        "summary": "A lost or compromised phone: unbind it, retire its keys, revoke their "
                   "certificates",
        "parameters": [oa.path_param("device_id", {"type": "string",
                                                   "pattern": "^dv_[A-Za-z0-9_-]{1,40}$"})],
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "properties": {"reason": {"enum": list(_DEVICE_REASONS)}}},
                               required=False),
        "responses": {"200": oa.response("The device and the keys revoked", _OBJECT)}}}

    def __init__(self, devices: DeviceService, keys: SignerKeyService) -> None:
        self._devices, self._keys = devices, keys

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int,
                device_id: str) -> None:
        body = json_body(req, allowed={"reason"})
        reason = body.get("reason", "key_compromise")
        if reason not in _DEVICE_REASONS:
            raise ValidationFailed(f"reason: {', '.join(_DEVICE_REASONS)}")
        device = self._devices.get(device_id)
        if device.signer_id != signer_id:
            raise NotFound(f"没有设备 {device_id}")
        actor = req.context.principal
        device = self._devices.revoke(actor, device_id)
        keys = self._keys.revoke_device_keys(actor, device_id, reason)
        resp.media = {"device": device.to_json(), "revoked_keys": keys}


def routes(service: SignRequestService, devices: DeviceService,
           handwriting: HandwritingService, keys: SignerKeyService) -> dict[str, Any]:
    return {
        "/api/v1/sign-requests": SignRequests(service),
        "/api/v1/sign-requests/{request_id}": SignRequest(service),
        "/api/v1/sign-requests/{request_id}/result": SignRequestResult(service),
        "/api/v1/sign-requests/{request_id}/cancel": SignRequestCancel(service),
        f"/api/v1/signers/{{signer_id:int(min=1, max={MAX_ID})}}/activation-codes":
            ActivationCodes(devices),
        f"/api/v1/signers/{{signer_id:int(min=1, max={MAX_ID})}}/handwriting":
            SignerHandwriting(handwriting),
        f"/api/v1/signers/{{signer_id:int(min=1, max={MAX_ID})}}/devices":
            SignerDevices(devices),
        f"/api/v1/signers/{{signer_id:int(min=1, max={MAX_ID})}}/devices/{{device_id}}/revoke":
            SignerDeviceRevoke(devices, keys),
    }


_QR_ID = {"type": "string", "pattern": "^[0-9a-f-]{36}$"}
_QR_SESSION = {"type": "object", "required": ["id", "purpose", "status", "uri"],
               "properties": {"id": {"type": "string"}, "purpose": {"enum": ["login", "sign"]},
                              "status": {"type": "string"}, "uri": {"type": "string"},
                              "assertion": _OBJECT}}


class QrSessions:
    access = {"POST": REQUEST}
    openapi = {"POST": {
        "summary": "Open a QR login or QR signing session for PC software",
        "requestBody": oa.body({
            "type": "object", "required": ["purpose"], "additionalProperties": False,
            "properties": {"purpose": {"enum": ["login", "sign"]},
                           "title": {"type": "string", "maxLength": 200},
                           "format": {"enum": list(FORMATS)},
                           "flavour": {"enum": list(FLAVOURS)},
                           "documents": {"type": "array", "maxItems": MAX_DOCUMENTS,
                                         "items": _DOCUMENT}}}),
        "responses": {"201": oa.response("The session; show its QR code", _QR_SESSION)}}}

    def __init__(self, service: QrService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"purpose", "title", "format", "flavour", "documents"},
                         required={"purpose"})
        resp.status = falcon.HTTP_201
        resp.media = self._service.create(req.context.principal, body["purpose"], body)


class QrSession:
    access = {"GET": REQUEST}
    openapi = {"GET": {
        "summary": "A QR session's state; wait=N long-polls up to N (<= 25) seconds",
        "parameters": [oa.path_param("session_id", _QR_ID),
                       oa.query("wait", {"type": "integer", "minimum": 0, "maximum": 25})],
        "responses": {"200": oa.response("The session (the assertion once confirmed)",
                                         _QR_SESSION)}}}

    def __init__(self, service: QrService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        wait = req.get_param_as_int("wait", min_value=0, max_value=25) or 0
        resp.media = self._service.get(req.context.principal, session_id, wait)


class QrImage:
    access = {"GET": REQUEST}
    openapi = {"GET": {
        "summary": "The session's QR code (SVG, or PNG with format=png)",
        "parameters": [oa.path_param("session_id", _QR_ID),
                       oa.query("format", {"enum": ["svg", "png"]})],
        "responses": {"200": oa.response("The QR code", {"type": "string"},
                                         media_type="image/svg+xml")}}}

    def __init__(self, service: QrService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        kind = req.get_param("format") or "svg"
        if kind not in ("svg", "png"):
            raise ValidationFailed("format: svg or png")
        resp.content_type, resp.data = self._service.image(req.context.principal, session_id,
                                                           kind)


def qr_routes(service: QrService) -> dict[str, Any]:
    return {"/api/v1/qr-sessions": QrSessions(service),
            "/api/v1/qr-sessions/{session_id}": QrSession(service),
            "/api/v1/qr-sessions/{session_id}/qr": QrImage(service)}
