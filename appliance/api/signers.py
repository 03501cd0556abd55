"""Signer records over the API: ``/api/v1/signers`` (DESIGN.md section 8).

The security administrator manages records and imports; the reviewer reads and approves or
rejects; hospital backends create, edit, submit and read with the ``signer:write`` and
``signer:read`` scopes.  The system and audit administrators have no access.  ID numbers and
phone numbers are only ever returned masked.
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api.access import REVIEWER, SECURITY_ADMIN, Access, either, roles, scopes
from appliance.api.media import json_body
from appliance.errors import BadRequest, PayloadTooLarge, ValidationFailed
from appliance.services import imports
from appliance.services.signers import (
    FIELDS,
    KINDS,
    MAX_NOTE,
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

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={"version"})
        resp.media = self._service.submit(signer_id, _actor(req),
                                          version=_version(body)).to_json()


class Disable:
    access: dict[str, Access] = {"POST": MANAGE}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        body = json_body(req, allowed={"reason"})
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_NOTE:
            raise ValidationFailed(f"reason 应为不超过 {MAX_NOTE} 个字符的文本")
        resp.media = self._service.disable(signer_id, _actor(req), reason=reason).to_json()


class Enable:
    access: dict[str, Access] = {"POST": MANAGE}

    def __init__(self, service: SignerService) -> None:
        self._service = service

    def on_post(self, req: falcon.Request, resp: falcon.Response, signer_id: int) -> None:
        json_body(req, allowed=set())
        resp.media = self._service.enable(signer_id, _actor(req)).to_json()


class Lookup:
    """``POST {"id_number": ...}`` or ``{"phone": ...}``: find a signer by its HMAC (in a body,
    so the number never appears in a URL or an access log)."""

    access: dict[str, Access] = {"POST": READ}

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
    if not isinstance(signer_id, int) or isinstance(signer_id, bool) or signer_id < 1:
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


def routes(service: SignerService) -> dict[str, Any]:
    """The signer resources by path, for ``appliance.wsgi.build``."""
    return {
        "/api/v1/signers": Collection(service),
        "/api/v1/signers/lookup": Lookup(service),
        "/api/v1/signers/review": Review(service),
        "/api/v1/signers/import": Import(service),
        "/api/v1/signers/{signer_id:int}": Item(service),
        "/api/v1/signers/{signer_id:int}/submit": Submit(service),
        "/api/v1/signers/{signer_id:int}/disable": Disable(service),
        "/api/v1/signers/{signer_id:int}/enable": Enable(service),
    }
