"""PDF form templates over the API.

Security administrators (console role ``security_admin``) upload templates (``POST
/api/v1/templates``: a layout spec as JSON or YAML, or an AcroForm PDF in base64 with an
optional sidecar), publish new versions (``POST .../versions``), retire them, and read them;
applications with scope ``sign:request`` read them too.  ``POST /api/v1/documents/render``
fills a template with values and answers the PDF -- or, with ``sign_request``, creates a
``pades`` sign request for it (applications only: a sign request belongs to an application).
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import SECURITY_ADMIN, either, roles, scopes
from appliance.api.media import json_body
from appliance.errors import ValidationFailed
from appliance.services.templates import KINDS, TemplateService

ADMIN = roles(SECURITY_ADMIN)
READ = either(roles(SECURITY_ADMIN), scopes("sign:request"))
RENDER = either(roles(SECURITY_ADMIN), scopes("sign:request"))
MAX_VERSION = 2**31 - 1  # an INTEGER column
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
         "description": "the template's name (or its numeric id)"}
_OBJECT: dict[str, Any] = {"type": "object"}
_NULLABLE_STR = {"type": ["string", "null"]}
_VERSION = {
    "type": "object", "required": ["version", "kind", "sm3", "created_at", "created_by",
                                   "fields", "signatures"],
    "properties": {"version": {"type": "integer"}, "kind": {"enum": list(KINDS)},
                   "sm3": {"type": "string"}, "created_at": {"type": "string"},
                   "created_by": {"type": "string"},
                   "fields": {"type": "array", "items": _OBJECT},
                   "signatures": {"type": "array", "items": _OBJECT}},
}
_TEMPLATE = {
    "type": "object", "required": ["id", "name", "title", "status", "latest_version"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                   "title": {"type": "string"}, "status": {"enum": ["active", "retired"]},
                   "latest_version": {"type": "integer"}, "created_at": {"type": "string"},
                   "created_by": {"type": "string"}, "retired_at": _NULLABLE_STR,
                   "retired_by": _NULLABLE_STR,
                   "versions": {"type": "array", "items": _VERSION}},
}
_UPLOAD_PROPERTIES: dict[str, Any] = {
    "layout": {"type": ["object", "string"],
               "description": "a layout spec (see README, 'How to add a template'), as an "
                              "object or as JSON/YAML text"},
    "acroform": {"type": "string", "contentEncoding": "base64",
                 "description": "or an AcroForm PDF (at most 5 MiB)"},
    "sidecar": {"type": ["object", "string"],
                "description": "acroform only: overrides of field types, labels, required, "
                               "order and of signature slots' role, kind, order"},
}
_INVALID = oa.problem("The template or the values are invalid (`field` names which)")


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_VERSION:
        raise ValidationFailed("version must be a version number", field="version")
    return value


class Templates:
    access = {"GET": READ, "POST": ADMIN}
    openapi = {
        "GET": {"summary": "The templates (active ones; ?all=true: retired ones too)",
                "parameters": [oa.query("all", {"type": "boolean"})],
                "responses": {"200": oa.response("The templates", {
                    "type": "object", "required": ["items"],
                    "properties": {"items": {"type": "array", "items": _TEMPLATE}}})}},
        "POST": {"summary": "Upload a new template (version 1)",
                 "requestBody": oa.body({
                     "type": "object", "additionalProperties": False,
                     "properties": {**_UPLOAD_PROPERTIES, "name": _NAME}}),
                 "responses": {"201": oa.response("The template", _TEMPLATE),
                               "400": _INVALID,
                               "409": oa.problem("A template of that name exists")}},
    }

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        everything = req.get_param_as_bool("all") or False
        resp.media = {"items": self._service.templates(include_retired=everything)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"layout", "acroform", "sidecar", "name"})
        resp.media = self._service.upload(req.context.principal, body)
        resp.status = falcon.HTTP_201


class TemplateResource:
    access = {"GET": READ}
    openapi = {"GET": {"summary": "A template with all its versions, newest first",
                       "parameters": [oa.path_param("template", _NAME)],
                       "responses": {"200": oa.response("The template", _TEMPLATE)}}}

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, template: str) -> None:
        resp.media = self._service.get(template)


class TemplateVersions:
    access = {"POST": ADMIN}
    openapi = {"POST": {
        "summary": "Publish a new version of a template (the next number)",
        "parameters": [oa.path_param("template", _NAME)],
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "properties": _UPLOAD_PROPERTIES}),
        "responses": {"201": oa.response("The template", _TEMPLATE), "400": _INVALID,
                      "409": oa.problem("The template is retired")}}}

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, template: str) -> None:
        body = json_body(req, allowed={"layout", "acroform", "sidecar"})
        resp.media = self._service.publish(req.context.principal, template, body)
        resp.status = falcon.HTTP_201


class TemplateSource:
    access = {"GET": READ}
    openapi = {"GET": {
        "summary": "A version's uploaded source (the layout spec, or the AcroForm PDF)",
        "parameters": [oa.path_param("template", _NAME),
                       oa.path_param("version", {"type": "integer", "minimum": 1,
                                                 "maximum": MAX_VERSION})],
        "responses": {"200": {"description": "The source", "content": {
            "application/json": {"schema": _OBJECT},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}}}}

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, template: str,
               version: int) -> None:
        media_type, data = self._service.source(template, version)
        resp.content_type = media_type
        resp.data = data


class TemplateRetire:
    access = {"POST": ADMIN}
    openapi = {"POST": {"summary": "Retire a template: it renders no more",
                        "parameters": [oa.path_param("template", _NAME)],
                        "responses": {"200": oa.response("The template", _TEMPLATE),
                                      "409": oa.problem("Retired already")}}}

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, template: str) -> None:
        json_body(req, allowed=set())
        resp.media = self._service.retire(req.context.principal, template)


class Render:
    access = {"POST": RENDER}
    openapi = {"POST": {
        "summary": "Fill a template with values: the PDF, or a sign request for it",
        "description": "Without `sign_request` the answer is the PDF (`X-Medsign-Template` "
                       "names the template id@version it records).  With `sign_request` (the "
                       "body of POST /api/v1/sign-requests without `documents` and `format`; "
                       "applications only) a `pades` sign request for the PDF is created: the "
                       "template's signature slots, in slot order, become the signature "
                       "fields of the steps (`medsign-step-N`).",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 128}}],
        "requestBody": oa.body({
            "type": "object", "required": ["template", "values"], "additionalProperties": False,
            "properties": {
                "template": {"type": "string", "minLength": 1, "maxLength": 64,
                             "description": "the template's name or numeric id"},
                "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION,
                            "description": "default: the latest"},
                "values": {"type": "object", "description": "field name -> value"},
                "sign_request": {"type": "object"},
            }}),
        "responses": {
            "200": {"description": "The rendered PDF",
                    "headers": {"X-Medsign-Template": {"schema": {"type": "string"}}},
                    "content": {"application/pdf": {"schema": {"type": "string",
                                                               "format": "binary"}}}},
            "201": oa.response("The sign request for the rendered PDF", _OBJECT),
            "400": _INVALID, "409": oa.problem("The template is retired")}}}

    def __init__(self, service: TemplateService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"template", "version", "values", "sign_request"},
                         required={"template", "values"})
        ref = body["template"]
        if not isinstance(ref, str) or not 0 < len(ref) <= 64:
            raise ValidationFailed("template: a template name or id", field="template")
        version = _version(body.get("version"))
        if "sign_request" in body:
            answer, created = self._service.render_to_sign_request(
                req.context.principal, ref, body["values"], body["sign_request"],
                version=version, idempotency_key=req.get_header("Idempotency-Key"))
            resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
            resp.media = answer
            return
        rendered = self._service.render(ref, body["values"], version=version)
        resp.content_type = "application/pdf"
        resp.set_header("X-Medsign-Template", rendered.template)
        resp.data = rendered.pdf


def routes(service: TemplateService) -> dict[str, Any]:
    return {
        "/api/v1/templates": Templates(service),
        "/api/v1/templates/{template}": TemplateResource(service),
        "/api/v1/templates/{template}/versions": TemplateVersions(service),
        f"/api/v1/templates/{{template}}/versions/{{version:int(min=1, max={MAX_VERSION})}}"
        "/source": TemplateSource(service),
        "/api/v1/templates/{template}/retire": TemplateRetire(service),
        "/api/v1/documents/render": Render(service),
    }

