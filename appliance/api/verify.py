"""``POST /api/v1/verify`` (scope ``verify``): verify a CMS signature (either flavour, attached
or detached) or a raw signature with its certificate; structured JSON with integrity, signer,
chain and revocation per signer."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import scopes
from appliance.api.media import json_body, optional_str, required_str
from appliance.errors import ValidationFailed
from appliance.services.verification import VerificationService

MAX_B64 = 8 * 1024 * 1024
_CERT = {"type": ["object", "null"], "additionalProperties": False,
         "required": ["subject", "issuer", "serial", "not_before", "not_after", "sha256"],
         "properties": {k: {"type": "string"} for k in
                        ("subject", "issuer", "serial", "not_before", "not_after", "sha256")}}
_SIGNER = {
    "type": "object", "additionalProperties": False,
    "required": ["valid", "integrity", "problems", "signer", "signature_algorithm",
                 "signing_time", "checked_at", "timestamp", "chain"],
    "properties": {
        "valid": {"type": "boolean"}, "integrity": {"type": "boolean"},
        "problems": {"type": "array", "items": {"type": "string"}}, "signer": _CERT,
        "signature_algorithm": {"type": ["string", "null"]},
        "signing_time": {"type": ["string", "null"], "format": "date-time"},
        "timestamp": {"type": ["object", "null"], "additionalProperties": False,
                      "required": ["valid", "time", "tsa", "problems"],
                      "properties": {"valid": {"type": "boolean"},
                                     "time": {"type": ["string", "null"], "format": "date-time"},
                                     "tsa": {"type": ["string", "null"]},
                                     "problems": {"type": "array", "items": {"type": "string"}}}},
        "checked_at": {"type": "string", "format": "date-time",
                       "description": "the time the chain and revocation were checked at"},
        "chain": {"type": "object", "additionalProperties": False,
                  "required": ["trusted", "path", "revocation", "problems"],
                  "properties": {
                      "trusted": {"type": "boolean"},
                      "path": {"type": "array", "items": {"type": "string"}},
                      "revocation": {"enum": ["ocsp", "crl", "cached-stale", "unknown",
                                              "not-declared", "off", "revoked"]},
                      "problems": {"type": "array", "items": {"type": "string"}}}},
    },
}
RESULT = {"type": "object", "required": ["format", "valid", "signers"],
          "properties": {"format": {"enum": ["cms", "raw"]}, "valid": {"type": "boolean"},
                         "flavour": {"enum": ["rfc5652", "gmt0010"]},
                         "detached": {"type": "boolean"},
                         "signers": {"type": "array", "items": _SIGNER}},
          "additionalProperties": False}


_TIME = {"type": ["string", "null"], "format": "date-time"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
PDF_SIGNATURE = {
    "type": "object", "additionalProperties": False,
    "required": ["field", "signer", "ok", "intact", "valid", "trusted", "coverage",
                 "modification_level", "modifications_allowed", "signing_time", "timestamp",
                 "timestamp_ok", "level", "algorithm", "revocation", "archive_timestamp",
                 "problems"],
    "properties": {
        "field": {"type": "string"}, "signer": {"type": "string"}, "ok": {"type": "boolean"},
        "intact": {"type": "boolean"}, "valid": {"type": "boolean"},
        "trusted": {"type": "boolean"}, "coverage": {"type": "string"},
        "modification_level": {"type": ["string", "null"]},
        "modifications_allowed": {"type": ["boolean", "null"]},
        "signing_time": _TIME, "timestamp": _TIME,
        "timestamp_ok": {"type": ["boolean", "null"]},
        "level": {"enum": ["B-B", "B-T", "B-LT", "B-LTA"]},
        "algorithm": {"type": "string"},
        "revocation": {"enum": ["good", "revoked", "unknown", "not-checked"],
                       "description": "of the signer's and the TSA's chains, as of the "
                                      "signing time"},
        "archive_timestamp": _TIME, "problems": _STRINGS}}
PDF_DOCUMENT_TIMESTAMP = {
    "type": "object", "additionalProperties": False,
    "required": ["field", "ok", "time", "tsa", "intact", "valid", "trusted", "coverage",
                 "checked_at", "revocation", "problems"],
    "properties": {
        "field": {"type": "string"}, "ok": {"type": "boolean"}, "time": _TIME,
        "tsa": {"type": "string"}, "intact": {"type": "boolean"},
        "valid": {"type": "boolean"}, "trusted": {"type": "boolean"},
        "coverage": {"type": "string"},
        "checked_at": {"type": "string", "format": "date-time"},
        "revocation": {"enum": ["good", "revoked", "unknown", "not-checked"]},
        "problems": _STRINGS}}
PDF_RESULT = {
    "type": "object", "required": ["format", "valid", "signatures", "document_timestamps"],
    "additionalProperties": False,
    "properties": {
        "format": {"enum": ["pdf"]}, "valid": {"type": "boolean"},
        "signatures": {"type": "array", "items": PDF_SIGNATURE},
        "document_timestamps": {"type": "array", "items": PDF_DOCUMENT_TIMESTAMP}},
}


def _b64(body: dict[str, Any], name: str, *, required: bool) -> bytes | None:
    text = (required_str if required else optional_str)(body, name, MAX_B64)
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{name} must be base64") from None


class Verify:
    access = {"POST": scopes("verify")}
    openapi = {"POST": {
        "summary": "Verify a CMS or raw signature: integrity, signer, chain, revocation",
        "requestBody": oa.body({
            "type": "object", "required": ["format", "signature"], "additionalProperties": False,
            "properties": {
                "format": {"enum": ["cms", "raw", "pdf"],
                           "description": "pdf: `signature` is the signed PDF (PAdES)"},
                "signature": {"type": "string", "contentEncoding": "base64"},
                "content": {"type": "string", "contentEncoding": "base64",
                            "description": "the signed bytes (detached CMS, raw)"},
                "certificate": {"type": "string", "description": "PEM (raw only)"},
                "at": {"type": "string", "format": "date-time",
                       "description": "raw only: when it was signed (default: now)"},
            }}),
        "responses": {"200": oa.response("The verification result",
                                         {"oneOf": [RESULT, PDF_RESULT]})},
    }}

    def __init__(self, service: VerificationService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"format", "signature", "content", "certificate", "at"},
                         required={"format", "signature"})
        fmt = required_str(body, "format", 8)
        signature = _b64(body, "signature", required=True)
        content = _b64(body, "content", required=False)
        assert signature is not None
        if fmt == "cms":
            resp.media = self._service.verify_cms(signature, content)
            return
        if fmt == "pdf":  # the signed PDF itself is the signature
            resp.media = self._service.verify_pdf(signature)
            return
        if fmt != "raw":
            raise ValidationFailed("format 应为 cms、pdf 或 raw")
        certificate = required_str(body, "certificate", 64 * 1024)
        if content is None:
            raise ValidationFailed("content is required for a raw signature")
        resp.media = self._service.verify_raw(signature, content, certificate.encode(),
                                              _time(optional_str(body, "at", 64)))


def _time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed("at must be an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ValidationFailed("at needs a time zone (e.g. +08:00 or Z)")
    return value


def routes(service: VerificationService) -> dict[str, Any]:
    return {"/api/v1/verify": Verify(service)}
