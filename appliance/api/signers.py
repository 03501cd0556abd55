"""Signer records over the API: ``/api/v1/signers`` (DESIGN.md section 8).

The security administrator manages records and imports; the reviewer reads and approves or
rejects; hospital backends create, edit, submit and read with the ``signer:write`` and
``signer:read`` scopes.  The system and audit administrators have no access.  ID numbers and
phone numbers are only ever returned masked.
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import REVIEWER, SECURITY_ADMIN, Access, either, roles, scopes
from appliance.api.media import json_body
from appliance.errors import BadRequest, PayloadTooLarge, ValidationFailed
from appliance.services import imports
from appliance.services.signers import (
    FIELDS,
    KINDS,
    MAX_ID,
    MAX_LENGTHS,
    MAX_NOTE,
    MAX_PAGE,
    MAX_REVIEW_BATCH,
    STATUSES,
    Actor,
    Decision,
    SignerService,
)

READ = either(roles(SECURITY_ADMIN, REVIEWER), scopes("signer:read"))
WRITE = either(roles(SECURITY_ADMIN), scopes("signer:write"))
MANAGE = roles(SECURITY_ADMIN)
REVIEW = roles(REVIEWER)
CSV_TYPE = "text/csv"
IMPORT_TYPES = (CSV_TYPE, "application/csv", "text/plain", imports.XLSX_TYPE,
                "application/octet-stream")


# --------------------------------------------------------------------------- OpenAPI

_TIME = {"type": "string", "format": "date-time"}
_OPTIONAL_TIME = {"type": ["string", "null"], "format": "date-time"}
SIGNER: dict[str, Any] = {
    "type": "object",
    "description": "A signer; the ID number and phone are always masked.",
    "required": ["id", "kind", "name", "id_number_masked", "phone_masked", "department",
                 "title", "qualification_no", "practice_no", "status", "review_note",
                 "reviewed_by", "reviewed_at", "submitted_at", "created_by", "created_at",
                 "updated_at", "version"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": list(KINDS)},
        "name": {"type": "string"},
        "id_number_masked": {"type": "string", "examples": ["110101********1234"]},
        "phone_masked": {"type": ["string", "null"], "examples": ["138****5678"]},
        "department": {"type": "string"},
        "title": {"type": "string", "examples": ["主治医师"]},
        "qualification_no": {"type": "string", "description": "医师资格证书编号"},
        "practice_no": {"type": "string", "description": "执业证书编号"},
        "status": {"enum": list(STATUSES)},
        "review_note": {"type": "string"},
        "reviewed_by": {"type": ["integer", "null"]},
        "reviewed_at": _OPTIONAL_TIME,
        "submitted_at": _OPTIONAL_TIME,
        "created_by": {"type": "string"},
        "created_at": _TIME,
        "updated_at": _TIME,
        "version": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_SIGNER_REF = {"$ref": "#/components/schemas/Signer"}
_TEXT_FIELDS: dict[str, dict[str, Any]] = {
    "kind": {"type": "string", "description": "doctor | pharmacist | nurse (or 医师/药师/护士)"},
    "name": {"type": "string", "maxLength": MAX_LENGTHS["name"]},
    "id_number": {"type": "string", "description": "18-digit resident ID (GB 11643)"},
    "phone": {"type": "string", "description": "11-digit mainland mobile number"},
    **{f: {"type": "string", "maxLength": MAX_LENGTHS[f]}
       for f in ("department", "title", "qualification_no", "practice_no")},
}
_VERSION = {"type": "integer", "minimum": 1,
            "description": "refuse (409) if the record's version is not this one"}
SIGNER_INPUT = {
    "type": "object", "required": ["kind", "name", "id_number"],
    "properties": _TEXT_FIELDS, "additionalProperties": False,
}
SIGNER_CHANGES = {
    "type": "object",
    "properties": {**{f: {**v, "type": ["string", "null"]} for f, v in _TEXT_FIELDS.items()},
                   "version": _VERSION},
    "additionalProperties": False,
}
PAGE = {
    "type": "object", "required": ["items", "total", "offset", "limit"],
    "properties": {"items": {"type": "array", "items": _SIGNER_REF},
                   "total": {"type": "integer"}, "offset": {"type": "integer"},
                   "limit": {"type": "integer"}},
    "additionalProperties": False,
}
DECISIONS = {
    "type": "array", "minItems": 1, "maxItems": MAX_REVIEW_BATCH,
    "items": {"type": "object", "required": ["id", "decision"], "additionalProperties": False,
              "properties": {"id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                             "decision": {"enum": ["approve", "reject"]},
                             "note": {"type": "string", "maxLength": MAX_NOTE,
                                      "description": "required to reject"},
                             "version": _VERSION}},
}
RESULTS = {
    "type": "object", "required": ["results", "succeeded", "failed"],
    "additionalProperties": False,
    "properties": {
        "results": {"type": "array", "items": {
            "type": "object", "required": ["id", "ok"], "additionalProperties": False,
            "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"},
                           "status": {"enum": list(STATUSES)}, "code": {"type": "string"},
                           "detail": {"type": "string"}}}},
        "succeeded": {"type": "integer"}, "failed": {"type": "integer"}},
}
REPORT = {
    "type": "object", "additionalProperties": False,
    "required": ["file_format", "encoding", "total_rows", "created", "failed", "blank_rows",
                 "dry_run", "ignored_columns", "errors", "elapsed_seconds"],
    "properties": {
        "file_format": {"enum": ["csv", "xlsx"]}, "encoding": {"type": "string"},
        "total_rows": {"type": "integer"}, "created": {"type": "integer"},
        "failed": {"type": "integer"}, "blank_rows": {"type": "integer"},
        "dry_run": {"type": "boolean"},
        "ignored_columns": {"type": "array", "items": {"type": "string"}},
        "errors": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["row", "column", "field", "reason", "name"],
            "properties": {"row": {"type": "integer", "description": "as in the spreadsheet"},
                           "column": {"type": "string"}, "field": {"type": "string"},
                           "reason": {"type": "string", "description": "zh-CN"},
                           "name": {"type": "string"}}}},
        "elapsed_seconds": {"type": "number"},
    },
}
_UPLOAD = {
    "required": True,
    "description": "A CSV (UTF-8, GB18030, UTF-16) or XLSX file, at most 20 MiB and 50,000 "
                   "rows; the header names the columns (姓名, 身份证号, 手机号, 类别, 科室, "
                   "职称, 资格证书编号, 执业证书编号).",
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "contentMediaType":
                                    "application/octet-stream"}}}},
        "text/csv": {"schema": {"type": "string"}},
        imports.XLSX_TYPE: {"schema": {"type": "string",
                                       "contentMediaType": imports.XLSX_TYPE}},
    },
}
_SIGNER_RESPONSE = oa.response("The signer", _SIGNER_REF)
_NOT_FOUND = oa.problem("No such signer")
_CONFLICT = oa.problem("Not allowed in the signer's status, or the version changed (`conflict`)")


# --------------------------------------------------------------------------- resources


def _actor(req: falcon.Request) -> Actor:
    principal: Actor = req.context.principal
    return principal


def _version(body: dict[str, Any]) -> int | None:
    value = body.get("version")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationFailed("version 应为正整数", errors=[{"field": "version",
                                                           "reason": "应为正整数"}])
    return value


class Collection:
    """``GET`` lists with filters and paging; ``POST`` creates a draft."""

    access: dict[str, Access] = {"GET": READ, "POST": WRITE}
    openapi = {
        "GET": {
            "summary": "List signers (filters: status, kind, department, name prefix)",
            "parameters": [
                oa.query("status", {"enum": list(STATUSES)}),
                oa.query("kind", {"enum": list(KINDS)}),
                oa.query("department", {"type": "string"}),
                oa.query("name", {"type": "string", "maxLength": 64},
                         description="name prefix"),
                oa.query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}),
                oa.query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
            ],
            "responses": {"200": oa.response("One page of signers", PAGE)},
        },
        "POST": {
            "summary": "Create a draft signer",
            "requestBody": oa.body(SIGNER_INPUT),
            "responses": {
                "201": oa.response("The new signer", _SIGNER_REF, headers={
                    "Location": {"schema": {"type": "string"}}}),
                "400": oa.problem("A field is invalid (`validation-failed`, `errors` lists "
                                  "field and reason)"),
                "409": oa.problem("The ID number or phone is already registered "
                                  "(`signer_id` names the signer)"),
            },
        },
    }
    openapi_schemas = {"Signer": SIGNER}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        status = req.get_param("status")
        kind = req.get_param("kind")
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status 应为 {', '.join(STATUSES)} 之一")
        if kind is not None and kind not in KINDS:
            raise ValidationFailed(f"kind 应为 {', '.join(KINDS)} 之一")
        name = req.get_param("name")
        if name is not None and len(name) > 64:
            raise ValidationFailed("name 不能超过 64 个字符")
        page = self._service.search(
            status=status, kind=kind, department=req.get_param("department"),
            name_prefix=name,
            offset=req.get_param_as_int("offset", min_value=0, max_value=10**9, default=0),
            limit=req.get_param_as_int("limit", min_value=1, max_value=200, default=50))
        resp.media = {"items": [s.to_json() for s in page.items], "total": page.total,
                      "offset": page.offset, "limit": page.limit}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed=set(FIELDS))
        signer = self._service.create(body, _actor(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/api/v1/signers/{signer.id}"
        resp.media = signer.to_json()


class Item:
    """``GET`` one signer, ``PATCH`` some fields, ``DELETE`` a never-reviewed draft."""

    access: dict[str, Access] = {"GET": READ, "PATCH": WRITE, "DELETE": MANAGE}
    openapi = {
        "GET": {"summary": "One signer",
                "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND}},
        "PATCH": {
            "summary": "Change fields (an active signer goes back to review when what the "
                       "reviewer checked changes)",
            "requestBody": oa.body(SIGNER_CHANGES),
            "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND, "409": _CONFLICT},
        },
        "DELETE": {"summary": "Delete a draft that was never reviewed",
                   "responses": {"204": oa.response("Deleted"), "404": _NOT_FOUND,
                                 "409": _CONFLICT}},
    }

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_get(self, _req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        resp.media = self._service.get(signer_id).to_json()

    def on_patch(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={*FIELDS, "version"})
        version = _version(body)
        changes = {k: v for k, v in body.items() if k != "version"}
        resp.media = self._service.update(signer_id, changes, _actor(req),
                                          version=version).to_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        self._service.delete(signer_id, _actor(req))
        resp.status = falcon.HTTP_204


class Submit:
    access: dict[str, Access] = {"POST": WRITE}
    openapi = {"POST": {
        "summary": "Submit a complete draft for review",
        "requestBody": oa.body({"type": "object", "properties": {"version": _VERSION},
                                "additionalProperties": False}, required=False),
        "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND, "409": _CONFLICT},
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={"version"})
        resp.media = self._service.submit(signer_id, _actor(req),
                                          version=_version(body)).to_json()


class Disable:
    access: dict[str, Access] = {"POST": MANAGE}
    openapi = {"POST": {
        "summary": "Disable a signer (enable restores its status)",
        "requestBody": oa.body({"type": "object", "properties": {
            "reason": {"type": "string", "maxLength": MAX_NOTE}},
            "additionalProperties": False}, required=False),
        "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND, "409": _CONFLICT},
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={"reason"})
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise ValidationFailed("reason 应为文本")
        resp.media = self._service.disable(signer_id, _actor(req), reason=reason).to_json()


class Enable:
    access: dict[str, Access] = {"POST": MANAGE}
    openapi = {"POST": {
        "summary": "Enable a disabled signer",
        "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND, "409": _CONFLICT},
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        json_body(req, allowed=set())
        resp.media = self._service.enable(signer_id, _actor(req)).to_json()


class Lookup:
    """``POST {"id_number": ...}`` or ``{"phone": ...}``: find a signer by its HMAC (in a body,
    so the number never appears in a URL or an access log)."""

    access: dict[str, Access] = {"POST": READ}
    openapi = {"POST": {
        "summary": "Find a signer by ID number or phone",
        "requestBody": oa.body({"type": "object", "additionalProperties": False,
                                "properties": {"id_number": {"type": "string"},
                                               "phone": {"type": "string"}}}),
        "responses": {"200": _SIGNER_RESPONSE, "404": _NOT_FOUND},
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, allowed={"id_number", "phone"})
        resp.media = self._service.lookup(id_number=body.get("id_number"),
                                          phone=body.get("phone")).to_json()


def _decision(index: int, item: object) -> Decision:
    def bad(reason: str) -> ValidationFailed:
        return ValidationFailed(f"第 {index + 1} 项：{reason}",
                                errors=[{"index": index, "reason": reason}])

    if not isinstance(item, dict):
        raise bad("应为对象")
    unknown = set(item) - {"id", "decision", "note", "version"}
    if unknown:
        raise bad(f"未知字段 {', '.join(sorted(unknown))}")
    signer_id, decision, note = item.get("id"), item.get("decision"), item.get("note", "")
    if not isinstance(signer_id, int) or isinstance(signer_id, bool) or \
            not 0 < signer_id <= MAX_ID:
        raise bad("id 应为正整数")
    if decision not in ("approve", "reject"):
        raise bad("decision 应为 approve 或 reject")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise bad(f"note 应为不超过 {MAX_NOTE} 个字符的文本")
    return Decision(signer_id, decision == "approve", note, _version(item))


class Review:
    """``POST [{"id", "decision": "approve"|"reject", "note", "version"?}, ...]``: one result
    per item, in order; a failed item does not stop the others."""

    access: dict[str, Access] = {"POST": REVIEW}
    openapi = {"POST": {
        "summary": "Approve or reject pending signers, one or many",
        "requestBody": oa.body(DECISIONS),
        "responses": {"200": oa.response("One result per decision, in order", RESULTS)},
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.content_type is None or not req.content_type.startswith("application/json"):
            raise falcon.HTTPUnsupportedMediaType(description="send application/json")
        try:
            body = req.get_media()
        except falcon.MediaMalformedError:
            raise ValidationFailed("请求体不是有效的 JSON") from None
        if not isinstance(body, list) or not body:
            raise ValidationFailed("请求体应为非空数组：[{\"id\", \"decision\", \"note\"}]")
        if len(body) > MAX_REVIEW_BATCH:
            raise ValidationFailed(f"一次最多审核 {MAX_REVIEW_BATCH} 条")
        decisions = [_decision(i, item) for i, item in enumerate(body)]
        results = self._service.review(decisions, _actor(req))
        ok = sum(r.ok for r in results)
        resp.media = {"results": [r.to_json() for r in results], "succeeded": ok,
                      "failed": len(results) - ok}


class Import:
    """``POST`` a CSV or XLSX file, as ``multipart/form-data`` (part ``file``) or as the raw
    body; ``?dry_run=true`` only checks.  Answers the report as JSON, or the row errors as CSV
    when the client prefers ``text/csv``."""

    access: dict[str, Access] = {"POST": MANAGE}
    openapi = {"POST": {
        "summary": "Import signers from CSV or XLSX (valid rows become pending_review)",
        "parameters": [oa.query("dry_run", {"type": "boolean"},
                                description="only check; create nothing")],
        "requestBody": _UPLOAD,
        "responses": {
            "200": {"description": "The import report (row errors as CSV with "
                                   "Accept: text/csv)",
                    "content": {"application/json": {"schema": REPORT},
                                CSV_TYPE: {"schema": {"type": "string"}}}},
            "400": oa.problem("The file as a whole is refused (`import-refused`)"),
            "413": oa.problem("The file is larger than 20 MiB"),
            "415": oa.problem("Not multipart/form-data, CSV or XLSX"),
        },
    }}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = _upload(req)
        dry_run = req.get_param_as_bool("dry_run", default=False)
        report = imports.import_data(self._service, data, _actor(req), dry_run=dry_run)
        if req.client_prefers(["application/json", CSV_TYPE]) == CSV_TYPE:
            resp.content_type = "text/csv; charset=utf-8"
            resp.downloadable_as = "signer-import-report.csv"
            resp.data = report.to_csv()
        else:
            resp.media = report.to_json()


def _read_limited(stream: Any) -> bytes:
    data: bytes = stream.read(imports.MAX_FILE_BYTES + 1)
    if len(data) > imports.MAX_FILE_BYTES:
        raise PayloadTooLarge(f"文件超过 {imports.MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


def _upload(req: falcon.Request) -> bytes:
    content_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        data = _multipart_file(req)
    elif content_type in IMPORT_TYPES:
        data = _read_limited(req.bounded_stream)
    else:
        raise falcon.HTTPUnsupportedMediaType(
            description="请以 multipart/form-data（字段 file）、text/csv 或 XLSX 格式上传")
    if not data:
        raise ValidationFailed("上传的文件为空")
    return data


def _multipart_file(req: falcon.Request) -> bytes:
    try:
        form = req.get_media()
        for part in form:
            if part.name == "file":
                return _read_limited(part.stream)
    except falcon.MediaMalformedError:
        raise BadRequest("multipart/form-data 请求体格式错误") from None
    raise ValidationFailed("未找到名为 file 的文件字段")


_ID = f"{{signer_id:int(min=1, max={MAX_ID})}}"  # a BIGINT primary key


def routes(service: SignerService) -> dict[str, Any]:
    """The signer resources by path, for ``appliance.wsgi.build``."""
    return {
        "/api/v1/signers": Collection(service),
        "/api/v1/signers/lookup": Lookup(service),
        "/api/v1/signers/review": Review(service),
        "/api/v1/signers/import": Import(service),
        f"/api/v1/signers/{_ID}": Item(service),
        f"/api/v1/signers/{_ID}/submit": Submit(service),
        f"/api/v1/signers/{_ID}/disable": Disable(service),
        f"/api/v1/signers/{_ID}/enable": Enable(service),
    }
