"""The phone's view of signed documents (device access, the signer's own tasks only):

- ``GET /api/v1/mobile/tasks/{task_id}/documents/{index}/current``: the document as it is now
  -- for a PAdES request the PDF with every signature made so far (the phone shows it), else
  the document's content (``X-Medsign-Media-Type`` says what it is; ``X-Medsign-Signed``
  whether any signature exists yet);
- ``GET /api/v1/mobile/tasks/{task_id}/documents/{index}/verification``: the validation result
  of that document as it is now, the same JSON as ``POST /api/v1/verify`` (``format: pdf``
  for PAdES: every signature's integrity, signer, chain, revocation, timestamp, coverage,
  level, and the document timestamps; ``format: cms`` for CMS requests).

A task of another signer, or an unknown one, is a 404 (the phone learns nothing about it).
"""

from __future__ import annotations

from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import DEVICE, Principal
from appliance.api.verify import PDF_RESULT, RESULT
from appliance.errors import NotFound
from appliance.services.sign_requests import SignRequestService
from appliance.services.verification import VerificationService

__all__ = ["routes"]

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
BASE = "/api/v1/mobile/tasks/{task_id}/documents/{index:int(min=0, max=9999999)}"


def _signer(req: falcon.Request) -> int:
    principal: Principal = req.context.principal
    return int(principal.id)


class CurrentDocument:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "A document of a task as it is now (a PDF with its signatures so far)",
        "parameters": [oa.path_param("task_id", _ID)],
        "responses": {"200": oa.response("The document's bytes", {
            "type": "string", "format": "binary"}, media_type="application/octet-stream"),
            "404": oa.problem("No such task of this signer, or only a digest was registered")}}}

    def __init__(self, requests: SignRequestService) -> None:
        self._requests = requests

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str,
               index: int) -> None:
        document = self._requests.current_document(_signer(req), task_id, index)
        data = document.viewable
        if data is None:
            raise NotFound("该文档只登记了摘要，没有可显示的内容")
        resp.data = data
        resp.content_type = "application/octet-stream"
        resp.set_header("X-Medsign-Media-Type", document.media_type)
        resp.set_header("X-Medsign-Signed", "true" if document.signature else "false")


class DocumentVerification:
    access = {"GET": DEVICE}
    openapi = {"GET": {
        "summary": "The validation result of a task's document as it is now "
                   "(the same JSON as POST /api/v1/verify)",
        "parameters": [oa.path_param("task_id", _ID)],
        "responses": {"200": oa.response("The verification result",
                                         {"oneOf": [RESULT, PDF_RESULT]}),
                      "404": oa.problem("No such task of this signer"),
                      "409": oa.problem("Nothing this route can verify (raw requests, "
                                        "digest-only detached documents)")}}}

    def __init__(self, requests: SignRequestService, verification: VerificationService) -> None:
        self._requests, self._verification = requests, verification

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str,
               index: int) -> None:
        document = self._requests.current_document(_signer(req), task_id, index)
        resp.media = self._verification.verify_stored(document.format, document.content,
                                                      document.signature)


def routes(requests: SignRequestService, verification: VerificationService) -> dict[str, Any]:
    return {f"{BASE}/current": CurrentDocument(requests),
            f"{BASE}/verification": DocumentVerification(requests, verification)}
