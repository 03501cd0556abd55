"""RFC 3161 over HTTP (section 3.4): ``POST /tsa`` (the newest TSA certificate) and
``/tsa/sm2``, ``/tsa/rsa``; ``application/timestamp-query`` in, ``application/timestamp-reply``
out.  Public like OCSP: RFC 3161 clients cannot sign their HTTP requests; expose it on the
hospital's network only."""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import PUBLIC
from appliance.api.ca import read_limited
from appliance.services.tsa import TsaService

MAX_QUERY = 16 * 1024
_BODY = {"type": "string", "format": "binary", "minLength": 2, "maxLength": MAX_QUERY}
_REPLY = {"type": "string", "format": "binary"}


class TimeStamp:
    access = {"POST": PUBLIC}

    def __init__(self, service: TsaService) -> None:
        self._service = service

    def _answer(self, req: falcon.Request, resp: falcon.Response, algorithm: str | None) -> None:
        if req.content_type is None or not req.content_type.startswith(
                "application/timestamp-query"):
            raise falcon.HTTPUnsupportedMediaType(description="send application/timestamp-query")
        resp.data = self._service.stamp(read_limited(req, MAX_QUERY), algorithm=algorithm)
        resp.content_type = "application/timestamp-reply"
        resp.cache_control = ["no-store"]


class Tsa(TimeStamp):
    openapi = {"POST": {
        "summary": "RFC 3161 time stamp with the newest TSA certificate",
        "requestBody": oa.body(_BODY, media_type="application/timestamp-query"),
        "responses": {"200": oa.response("A TimeStampResp (a token, or a rejection)", _REPLY,
                                         media_type="application/timestamp-reply"),
                      "409": oa.problem("No TSA certificate yet"),
                      "503": oa.problem("The clock is not synchronized "
                                        "(`clock-unsynchronized`): no time stamps")},
    }}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._answer(req, resp, None)


class TsaByAlgorithm(TimeStamp):
    openapi = {"POST": {
        "summary": "RFC 3161 time stamp with the newest SM2 or RSA TSA certificate",
        "parameters": [oa.path_param("algorithm", {"enum": ["sm2", "rsa"]})],
        "requestBody": oa.body(_BODY, media_type="application/timestamp-query"),
        "responses": Tsa.openapi["POST"]["responses"],
    }}

    def on_post(self, req: falcon.Request, resp: falcon.Response, algorithm: str) -> None:
        if algorithm not in ("sm2", "rsa"):
            raise falcon.HTTPNotFound()
        self._answer(req, resp, algorithm)


def routes(service: TsaService) -> dict[str, Any]:
    return {"/tsa": Tsa(service), "/tsa/{algorithm}": TsaByAlgorithm(service)}
