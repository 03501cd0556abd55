"""RFC 9457 problem documents for every error the API returns.

Each :class:`appliance.errors.ApplianceError` becomes ``application/problem+json`` with a stable
``code``; Falcon's own errors (unknown route, wrong method, malformed header) are mapped to the
same shape; anything else is logged with its traceback and answered with a bare 500 that
reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import falcon

from appliance.errors import ApplianceError

LOG = logging.getLogger("medsign.api")
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://medsign.local/problems/"

_FALCON_CODES = {
    400: ("bad-request", "请求无效"),
    401: ("unauthorized", "未认证"),
    403: ("forbidden", "无权访问"),
    404: ("not-found", "资源不存在"),
    405: ("method-not-allowed", "不支持的请求方法"),
    406: ("not-acceptable", "无法提供请求的格式"),
    411: ("length-required", "缺少请求体长度"),
    413: ("payload-too-large", "请求体过大"),
    415: ("unsupported-media-type", "不支持的媒体类型"),
}


def problem(resp: falcon.Response, *, status: int, code: str, title: str, detail: str,
            instance: str = "", **extensions: Any) -> None:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status,
                            "detail": detail, "code": code}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = PROBLEM_JSON
    resp.media = body
    resp.complete = True


def handle_appliance_error(req: falcon.Request, resp: falcon.Response, ex: ApplianceError,
                           _params: dict[str, Any]) -> None:
    if ex.status >= 500:
        LOG.error("%s %s -> %s: %s", req.method, req.path, ex.code, ex.detail)
    problem(resp, status=ex.status, code=ex.code, title=ex.title, detail=ex.detail,
            instance=req.path, **ex.extensions)


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                      _params: dict[str, Any]) -> None:
    status = falcon.http_status_to_code(ex.status)
    code, title = _FALCON_CODES.get(status, ("http-error", str(ex.title or "错误")))
    detail = str(ex.description or ex.title or title)
    problem(resp, status=status, code=code, title=title, detail=detail, instance=req.path)
    headers = ex.headers or {}
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        resp.set_header(name, value)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                      _params: dict[str, Any]) -> None:
    if isinstance(ex, falcon.HTTPError | falcon.HTTPStatus):
        raise ex
    LOG.exception("unhandled error on %s %s", req.method, req.path)
    problem(resp, status=500, code="internal-error", title="服务器内部错误",
            detail="服务器内部错误，请联系系统管理员。", instance=req.path)


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register the handlers; the most specific is consulted first."""
    app.resp_options.media_handlers[PROBLEM_JSON] = falcon.media.JSONHandler()
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ApplianceError, handle_appliance_error)
