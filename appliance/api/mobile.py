"""The phone's API (``/api/v1/mobile/...``): activation, co-keygen and enrollment, PIN, the
task list, co-sign sessions, auto-sign authorizations, certificate and message center.

Everything but activation is a device-signed request (appliance.api.device_signing); the
principal is the bound device, and its signer is the only one whose data it sees.  Protocol
messages are keysplit's JSON (keysplit/README.md): the phone POSTs a message as the whole body
of ``/api/v1/mobile/sessions/{session}``; the server's messages come as the ``message`` member
of its JSON answers (next to what else the step produced: a certificate, task states, ``next``).

Encodings: protocol messages use unpadded base64url inside (keysplit); the session id in URLs,
digests, PIN proofs and unwrap keys are lower-case hex; keys, certificates, documents and
signatures outside the protocol are standard base64.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import DEVICE, PUBLIC, Principal
from appliance.api.auth import raw_body
from appliance.api.media import json_body, optional_str
from appliance.errors import PayloadTooLarge, ValidationFailed
from appliance.services.devices import DeviceService
from appliance.services.handwriting import HandwritingService
from appliance.services.qr import QrService
from appliance.services.sign_requests import SignRequestService
from appliance.services.signer_keys import SignerKeyService
from appliance.services.signers import MAX_ID

_OBJECT: dict[str, Any] = {"type": "object"}
_SESSION = {"type": "object", "required": ["session", "kind", "message"],
            "properties": {"session": {"type": "string"}, "kind": {"type": "string"},
                           "expires_at": {"type": "string"}, "message": _OBJECT}}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
_MAX_MESSAGE = 256 * 1024


def _device(req: falcon.Request) -> Principal:
    principal: Principal = req.context.principal
    return principal


def _b64(value: Any, name: str, max_bytes: int = 4096) -> bytes:
    if not isinstance(value, str) or len(value) > max_bytes * 2:
        raise ValidationFailed(f"{name}: base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{name} is not base64") from None


def _hex(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise ValidationFailed(f"{name}: {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValidationFailed(f"{name} is not hex") from None


class Activate:
    access = {"POST": PUBLIC}
    openapi = {"POST": {
        "summary": "Bind a phone to a signer with a one-time activation code",
        "requestBody": oa.body({
            "type": "object", "required": ["code", "device_public_key"],
            "additionalProperties": False,
            "properties": {"code": {"type": "string", "maxLength": 64},
                           "device_public_key": {"type": "string", "maxLength": 1024,
                                                 "description": "SM2 SPKI DER, base64"},
                           "device_name": {"type": "string", "maxLength": 64}}}),
        "responses": {"201": oa.response("The bound device", {
            "type": "object", "required": ["device", "signer"],
            "properties": {"device": _OBJECT, "signer": _OBJECT}}),
            "400": oa.problem("Unknown, used or expired code, or not an SM2 key")},
    }}

    def __init__(self, devices: DeviceService) -> None:
        self._devices = devices

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"code", "device_public_key", "device_name"},
                         required={"code", "device_public_key"})
        code = optional_str(body, "code", 64) or ""
        key = _b64(body["device_public_key"], "device_public_key", 512)
        device = self._devices.activate(code, key, optional_str(body, "device_name", 64) or "")
        resp.status = falcon.HTTP_201
        resp.media = {"device": device.to_json(), "signer": {"id": device.signer_id}}


class Me:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "This phone, its signer's keys and certificate, PIN attempts left",
        "responses": {"200": oa.response("The phone's state", {
            "type": "object", "required": ["device", "keys"],
            "properties": {"device": _OBJECT, "keys": {"type": "array"},
                           "certificate": {"type": ["object", "null"]},
                           "pin": {"type": ["object", "null"]}}})}}}

    def __init__(self, devices: DeviceService, keys: SignerKeyService) -> None:
        self._devices, self._keys = devices, keys

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        device = _device(req)
        keys = [k for k in self._keys.keys_of(device.id) if k.device_id == device.name]
        active = next((k for k in keys if k.status == "active"), None)
        certificate = None
        if active is not None and active.certificate_id is not None:
            certificate = self._keys.certificate_info(active.certificate_id)
        resp.media = {"device": self._devices.get(device.name).to_json(),
                      "keys": [k.to_json() for k in keys], "certificate": certificate,
                      "pin": self._keys.pin_status(active.id) if active else None}


class CertificateDetail:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "This phone's certificate: details, chain to the root, renewal state",
        "responses": {"200": oa.response("The certificate", {
            "type": "object", "required": ["certificate", "chain", "key", "renewal"],
            "properties": {"certificate": _OBJECT, "chain": {"type": "array",
                                                            "items": {"type": "string"}},
                           "key": _OBJECT, "renewal": _OBJECT}}),
            "409": oa.problem("No certificate on this phone yet")}}}

    def __init__(self, keys: SignerKeyService) -> None:
        self._keys = keys

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        device = _device(req)
        resp.media = self._keys.certificate_detail(device.id, device.name)


class Keys:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Generate this phone's split signing key, then enroll it",
        "description": "SM2 (default): a co-keygen session; its keygen.result comes with the "
                       "co-sign session of the enrollment (`next`).  RSA: split keygen at "
                       "once (send `pin_proof`); the answer carries the phone's share sealed "
                       "to the device key (SM2 encryption), the unwrap key and `next`.",
        "requestBody": oa.body({
            "type": "object", "additionalProperties": False,
            "properties": {"algorithm": {"enum": ["sm2", "rsa"], "default": "sm2"},
                           "pin_proof": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
            required=False),
        "responses": {"201": oa.response("A keygen session (SM2) or the split key (RSA)",
                                         _OBJECT)}}}

    def __init__(self, keys: SignerKeyService) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"algorithm", "pin_proof"})
        algorithm = body.get("algorithm", "sm2")
        if algorithm not in ("sm2", "rsa"):
            raise ValidationFailed("algorithm: sm2 or rsa")
        proof = _hex(body["pin_proof"], "pin_proof", 32) if "pin_proof" in body else None
        device = _device(req)
        resp.status = falcon.HTTP_201
        resp.media = self._keys.open_keygen(device.name, device.id, algorithm=algorithm,
                                            pin_proof=proof)


class KeyRenewal:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Renew this phone's certificate (same key): the co-sign session of the "
                   "enrollment",
        "responses": {"201": oa.response("The co-sign session", _SESSION),
                      "409": oa.problem("No key with a certificate on this phone")}}}

    def __init__(self, keys: SignerKeyService) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        json_body(req, allowed=set())
        device = _device(req)
        resp.status = falcon.HTTP_201
        resp.media = self._keys.renew(device.name, device.id)


class SessionMessage:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Send the phone's next protocol message of a keygen or co-sign session",
        "parameters": [oa.path_param("session", {"type": "string",
                                                 "pattern": "^[0-9a-f]{32,64}$"})],
        "requestBody": oa.body({"type": "object", "description": "a keysplit message "
                                "(keygen.commit, cosign.commit or cosign.result)"}),
        "responses": {"200": oa.response("The server's answer", {
            "type": "object", "required": ["message"], "properties": {"message": _OBJECT}}),
            "400": oa.problem("The message was refused (nothing changed)"),
            "403": oa.problem("Wrong PIN (attempts_left)"),
            "409": oa.problem("The session moved on or expired"),
            "423": oa.problem("The PIN is locked")}}}

    def __init__(self, keys: SignerKeyService) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response, session: str) -> None:
        body = raw_body(req)
        if len(body) > _MAX_MESSAGE:
            raise PayloadTooLarge(f"at most {_MAX_MESSAGE} bytes")
        if req.content_type is None or not req.content_type.startswith("application/json"):
            raise falcon.HTTPUnsupportedMediaType(description="send application/json")
        if not session.isascii() or not session.isalnum() or len(session) > 64:
            raise ValidationFailed("session: hex")
        device = _device(req)
        resp.media = self._keys.handle(device.name, device.id, session.lower(), body)


class Pin:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Change the PIN: check the old proof, prepare the new one",
        "requestBody": oa.body({
            "type": "object", "required": ["old_pin_proof", "new_pin_proof"],
            "additionalProperties": False,
            "properties": {"old_pin_proof": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "new_pin_proof": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}),
        "responses": {"200": oa.response("The unwrap keys for the old and the new PIN", {
            "type": "object", "required": ["unwrap", "new_unwrap"],
            "properties": {"unwrap": {"type": "string"}, "new_unwrap": {"type": "string"}}}),
            "403": oa.problem("Wrong PIN"), "423": oa.problem("The PIN is locked")}}}

    def __init__(self, keys: SignerKeyService) -> None:
        self._keys = keys

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"old_pin_proof", "new_pin_proof"},
                         required={"old_pin_proof", "new_pin_proof"})
        device = _device(req)
        resp.media = self._keys.change_pin(device.name, device.id,
                                           _hex(body["old_pin_proof"], "old_pin_proof", 32),
                                           _hex(body["new_pin_proof"], "new_pin_proof", 32))


class Tasks:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "The signer's tasks (pending by default), oldest first",
        "parameters": [oa.query("status", {"enum": ["pending", "waiting", "signed", "rejected",
                                                    "cancelled", "expired", "all"]})],
        "responses": {"200": oa.response("Tasks", {
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": _OBJECT},
                           "auto_sign": {"type": "array", "items": _OBJECT}}})}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status") or "pending"
        if status not in ("pending", "waiting", "signed", "rejected", "cancelled", "expired",
                          "all"):
            raise ValidationFailed("status: pending, waiting, signed, rejected, cancelled, "
                                   "expired or all")
        device = _device(req)
        resp.media = {"items": self._requests.tasks(device.id,
                                                    None if status == "all" else status),
                      "auto_sign": self._requests.auto_sign_grants(device.id)}


class Task:
    access = {"GET": DEVICE}
    openapi = {"GET": {"summary": "One task with its documents",
                       "parameters": [oa.path_param("task_id", _ID)],
                       "responses": {"200": oa.response("The task", _OBJECT)}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        resp.media = self._requests.task(_device(req).id, task_id)


class TaskDocument:
    access = {"GET": DEVICE}
    openapi = {"GET": {"summary": "A document of a task, for the preview before signing",
                       "parameters": [oa.path_param("task_id", _ID)],
                       "responses": {"200": oa.response("The document's bytes", {
                           "type": "string", "format": "binary"},
                           media_type="application/octet-stream")}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str,
               index: int) -> None:
        media_type, data = self._requests.document(_device(req).id, task_id, index)
        resp.data = data
        resp.content_type = "application/octet-stream"
        resp.set_header("X-Medsign-Media-Type", media_type)


class TaskReject:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Decline or reject a task with a reason (the request ends)",
        "parameters": [oa.path_param("task_id", _ID)],
        "requestBody": oa.body({"type": "object", "required": ["reason"],
                                "additionalProperties": False,
                                "properties": {"reason": {"type": "string", "minLength": 1,
                                                          "maxLength": 500}}}),
        "responses": {"200": oa.response("The task", _OBJECT),
                      "409": oa.problem("The task is not pending")}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        body = json_body(req, allowed={"reason"}, required={"reason"})
        resp.media = self._requests.reject(_device(req), task_id, body["reason"])


class Sign:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Open one co-sign session for one task or a batch (one confirmation)",
        "requestBody": oa.body({
            "type": "object", "required": ["tasks"], "additionalProperties": False,
            "properties": {"tasks": {"type": "array", "minItems": 1, "maxItems": 500,
                                     "items": _ID},
                           "auto_sign": {"type": "boolean", "default": False}}}),
        "responses": {"201": oa.response("The session, its offer and what each digest is", {
            **_SESSION, "required": ["session", "kind", "message", "items"]}),
            "404": oa.problem("A task that is not this signer's"),
            "409": oa.problem("A task that is not pending, or no usable key/authorization")}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"tasks", "auto_sign"}, required={"tasks"})
        tasks, auto = body["tasks"], body.get("auto_sign", False)
        if not isinstance(tasks, list) or not all(isinstance(t, str) and 0 < len(t) <= 64
                                                  for t in tasks):
            raise ValidationFailed("tasks: a list of task ids")
        if not isinstance(auto, bool):
            raise ValidationFailed("auto_sign must be true or false")
        resp.status = falcon.HTTP_201
        resp.media = self._requests.start_signing(_device(req), tasks, auto_sign=auto,
                                                  ip=req.remote_addr)


class AutoSign:
    access = {"GET": DEVICE, "POST": DEVICE}
    openapi = {
        "GET": {"summary": "The signer's auto-sign authorizations",
                "responses": {"200": oa.response("Authorizations", {
                    "type": "object", "required": ["items"],
                    "properties": {"items": {"type": "array", "items": _OBJECT}}})}},
        "POST": {"summary": "Authorize PIN-less co-signing for a time window and a count",
                 "requestBody": oa.body({
                     "type": "object", "required": ["minutes", "max_count", "pin_proof"],
                     "additionalProperties": False,
                     "properties": {"minutes": {"type": "integer", "minimum": 1,
                                                "maximum": 1440},
                                    "max_count": {"type": "integer", "minimum": 1,
                                                  "maximum": 1000},
                                    "pin_proof": {"type": "string",
                                                  "pattern": "^[0-9a-f]{64}$"}}}),
                 "responses": {"201": oa.response(
                     "The authorization, and the unwrap key the phone keeps for it", _OBJECT),
                     "403": oa.problem("Wrong PIN"), "423": oa.problem("The PIN is locked")}},
    }

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": self._requests.auto_sign_grants(_device(req).id)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"minutes", "max_count", "pin_proof"},
                         required={"minutes", "max_count", "pin_proof"})
        resp.status = falcon.HTTP_201
        resp.media = self._requests.grant_auto_sign(
            _device(req), minutes=body["minutes"], max_count=body["max_count"],
            pin_proof=_hex(body["pin_proof"], "pin_proof", 32))


class AutoSignGrant:
    access = {"DELETE": DEVICE}
    openapi = {"DELETE": {"summary": "Revoke an auto-sign authorization",
                          "parameters": [oa.path_param("grant_id", _ID)],
                          "responses": {"200": oa.response("The authorization", _OBJECT)}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_delete(self, req: falcon.Request, resp: falcon.Response, grant_id: str) -> None:
        resp.media = self._requests.revoke_auto_sign(_device(req), grant_id)


class Messages:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "The message center, newest first",
        "parameters": [oa.query("unread", {"type": "boolean"})],
        "responses": {"200": oa.response("Messages", {
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": _OBJECT}}})}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        unread = req.get_param_as_bool("unread") or False
        resp.media = {"items": self._requests.messages(_device(req).id, unread_only=unread)}


class MessageRead:
    access = {"POST": DEVICE}
    openapi = {"POST": {"summary": "Mark a message read",
                        "responses": {"204": oa.response("Marked")}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_post(self, req: falcon.Request, resp: falcon.Response, message_id: int) -> None:
        self._requests.mark_read(_device(req).id, message_id)
        resp.status = falcon.HTTP_204


class QrScan:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "The phone scanned a QR code: claim the session, see what is asked",
        "parameters": [oa.path_param("session_id", {"type": "string",
                                                    "pattern": "^[0-9a-f-]{36}$"})],
        "responses": {"200": oa.response("What the PC asks", _OBJECT),
                      "409": oa.problem("Scanned already, used or expired")}}}

    def __init__(self, qr: QrService) -> None:
        self._qr = qr

    def on_post(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        json_body(req, allowed=set())
        resp.media = self._qr.scan(_device(req), session_id)


class QrConfirm:
    access = {"POST": DEVICE}
    openapi = {"POST": {
        "summary": "Confirm a scanned QR session: the co-sign session that proves it",
        "parameters": [oa.path_param("session_id", {"type": "string",
                                                    "pattern": "^[0-9a-f-]{36}$"})],
        "responses": {"201": oa.response("A co-sign session and its offer", _SESSION),
                      "409": oa.problem("Used or expired")}}}

    def __init__(self, qr: QrService) -> None:
        self._qr = qr

    def on_post(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        json_body(req, allowed=set())
        resp.status = falcon.HTTP_201
        resp.media = self._qr.confirm(_device(req), session_id)


_POINT = {"type": "object", "required": ["x", "y"], "additionalProperties": False,
          "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1},
                         "y": {"type": "number", "minimum": 0, "maximum": 1},
                         "t": {"type": "number", "minimum": 0},
                         "p": {"type": "number", "minimum": 0, "maximum": 1}}}
_IMAGE_FORMAT = oa.query("format", {"enum": ["png", "svg", "json"]})


class Handwriting:
    access = {"GET": DEVICE, "POST": DEVICE}
    openapi = {
        "GET": {"summary": "The signer's latest handwritten signature (PNG, SVG or strokes)",
                "parameters": [_IMAGE_FORMAT],
                "responses": {"200": oa.response("The image", {"type": "string"},
                                                 media_type="image/png"),
                              "404": oa.problem("None registered yet")}},
        "POST": {"summary": "Register a handwritten signature from captured strokes",
                 "requestBody": oa.body({
                     "type": "object", "required": ["width", "height", "strokes"],
                     "additionalProperties": False,
                     "properties": {"width": {"type": "integer", "minimum": 1,
                                              "maximum": 4096},
                                    "height": {"type": "integer", "minimum": 1,
                                               "maximum": 4096},
                                    "strokes": {"type": "array", "minItems": 1,
                                                "maxItems": 100,
                                                "items": {"type": "array", "minItems": 1,
                                                          "items": _POINT}}}}),
                 "responses": {"201": oa.response("Stored and rendered", _OBJECT)}},
    }

    def __init__(self, handwriting: HandwritingService) -> None:
        self._handwriting = handwriting

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = req.get_param("format") or "png"
        if kind not in ("png", "svg", "json"):
            raise ValidationFailed("format: png, svg or json")
        resp.content_type, resp.data = self._handwriting.latest(_device(req).id, kind)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"width", "height", "strokes"},
                         required={"width", "height", "strokes"})
        device = _device(req)
        resp.status = falcon.HTTP_201
        resp.media = self._handwriting.store(device.id, device.name, body)


def routes(devices: DeviceService, keys: SignerKeyService,
           requests: SignRequestService, qr: QrService,
           handwriting: HandwritingService) -> dict[str, Any]:
    base = "/api/v1/mobile"
    return {
        f"{base}/activate": Activate(devices),
        f"{base}/me": Me(devices, keys),
        f"{base}/keys": Keys(keys),
        f"{base}/certificate": CertificateDetail(keys),
        f"{base}/keys/renew": KeyRenewal(keys),
        f"{base}/sessions/{{session}}": SessionMessage(keys),
        f"{base}/pin": Pin(keys),
        f"{base}/tasks": Tasks(requests),
        f"{base}/tasks/{{task_id}}": Task(requests),
        f"{base}/tasks/{{task_id}}/documents/{{index:int(min=0, max=9999999)}}":
            TaskDocument(requests),
        f"{base}/tasks/{{task_id}}/reject": TaskReject(requests),
        f"{base}/sign": Sign(requests),
        f"{base}/auto-sign": AutoSign(requests),
        f"{base}/auto-sign/{{grant_id}}": AutoSignGrant(requests),
        f"{base}/messages": Messages(requests),
        f"{base}/handwriting": Handwriting(handwriting),
        f"{base}/qr/{{session_id}}/scan": QrScan(qr),
        f"{base}/qr/{{session_id}}/confirm": QrConfirm(qr),
        f"{base}/messages/{{message_id:int(min=1, max={MAX_ID})}}/read": MessageRead(requests),
    }


__all__ = ["routes"]
