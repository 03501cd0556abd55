"""The hospital backend's client: sign requests, activation codes, QR sessions, seals,
verification and signer records over HMAC-signed requests, and webhook verification.

::

    client = BackendClient("https://medsign.hospital.example", key_id, secret)
    request = client.create_sign_request(
        [Document("rx-0001.txt", content=b"...")], [SignerStep(doctor_id)],
        format="cms-attached", idempotency_key="rx-0001")
    request = client.wait_for(request.id, timeout=600)
    result = client.get_result(request.id)  # one CMS per document

Every request is signed with the credential (MEDSIGN-HMAC-SM3, or -SHA256 with
``algorithm="SHA256"``); a retried request is signed again with a fresh nonce.  Creating a sign
request always sends an ``Idempotency-Key`` (a random one when none is given), so a retry
after a lost answer never creates a second request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from medsign_sdk import _signing
from medsign_sdk.errors import WaitTimeout, WebhookError
from medsign_sdk.models import (
    ActivationCode,
    Document,
    EvidenceReport,
    QrSession,
    SealDocument,
    SealResult,
    Signer,
    SignerPage,
    SignerStep,
    SignRequest,
    SignResult,
    VerifyResult,
    WebhookEvent,
    as_mapping,
)
from medsign_sdk.transport import Response, Transport

_SIGNATURE = re.compile(r"\s*MEDSIGN-HMAC-SM3\s+keyId=([A-Za-z0-9_-]{1,64})\s*,\s*"
                        r"signature=([A-Za-z0-9+/=]{1,200})\s*")
MAX_WAIT_SECONDS = 25


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: bytes | str, *,
                   max_age: int = 300, now: float | None = None) -> WebhookEvent:
    """Check a webhook the appliance POSTed and return its event.

    ``headers`` are the request's headers (any case); ``body`` the exact bytes received;
    ``secret`` the application credential's secret (raw bytes or the base64url text shown at
    creation).  The signature is HMAC-SM3 over ``timestamp \\n event-id \\n body``; the timestamp
    must be within ``max_age`` seconds of now.  :class:`~medsign_sdk.errors.WebhookError` if
    anything does not check out.  A retry carries the same event id: de-duplicate by it.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    header = lowered.get("x-medsign-signature")
    event_id = lowered.get("x-medsign-event-id")
    stamp = lowered.get("x-medsign-timestamp")
    if not header or not event_id or not stamp:
        raise WebhookError("missing X-Medsign-Signature, X-Medsign-Event-Id or "
                           "X-Medsign-Timestamp")
    match = _SIGNATURE.fullmatch(header)
    if match is None:
        raise WebhookError("X-Medsign-Signature is not MEDSIGN-HMAC-SM3 keyId=..., signature=...")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookError("X-Medsign-Timestamp is not unix seconds")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > max_age:
        raise WebhookError(f"the webhook is older (or newer) than {max_age} seconds")
    try:
        signature = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError("the signature is not base64") from None
    expected = _signing.hmac_digest("SM3", _signing.decode_secret(secret),
                                    f"{stamp}\n{event_id}\n".encode() + body)
    if not hmac.compare_digest(signature, expected):
        raise WebhookError("the webhook signature does not verify")
    try:
        event = WebhookEvent.from_json(json.loads(body.decode("utf-8")), match.group(1))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(f"the webhook body is not an event: {exc}") from None
    if event.id != event_id:
        raise WebhookError("X-Medsign-Event-Id is not the event's id")
    return event


class BackendClient:
    """An application credential (key id and secret) calling ``/api/v1`` of one appliance."""

    def __init__(self, base_url: str, key_id: str, secret: bytes | str,
                 algorithm: str = "SM3", *, timeout: float = 30.0, retries: int = 3,
                 transport: Transport | None = None) -> None:
        if algorithm not in _signing.ALGORITHMS:
            raise ValueError("algorithm: SM3 or SHA256")
        self.key_id = key_id
        self._secret = _signing.decode_secret(secret)
        self._algorithm = algorithm
        self.transport = transport or Transport(base_url, timeout=timeout, retries=retries)

    # -- plumbing

    def _authenticate(self, method: str, target: str, body: bytes) -> dict[str, str]:
        return _signing.hmac_headers(method, target, body, key_id=self.key_id,
                                     secret=self._secret, algorithm=self._algorithm)

    def request(self, method: str, path: str, *, json_body: Any = None,
                query: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None,
                timeout: float | None = None) -> Response:
        """A signed request to any API path (for endpoints this client has no method for)."""
        return self.transport.request(method, path, json_body=json_body, query=query,
                                      headers=headers, authenticate=self._authenticate,
                                      timeout=timeout)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # -- sign requests

    def create_sign_request(
            self, documents: Sequence[Document | Mapping[str, Any]],
            signers: Sequence[int | SignerStep | Mapping[str, Any]], *,
            title: str | None = None, format: str = "cms-detached",
            flavour: str = "rfc5652", expires_in: int | None = None,
            callback_url: str | None = None, idempotency_key: str | None = None) -> SignRequest:
        """Ask signers (in order) to sign documents.  ``format``: ``cms-attached``,
        ``cms-detached`` or ``raw``; ``flavour``: ``rfc5652`` or ``gmt0010``.  The same
        ``idempotency_key`` with the same body returns the first request (``created`` False);
        with another body it is a :class:`~medsign_sdk.errors.Conflict`."""
        body: dict[str, Any] = {
            "format": format, "flavour": flavour,
            "documents": [as_mapping(d) for d in documents],
            "signers": [SignerStep(s).to_json() if isinstance(s, int) else as_mapping(s)
                        for s in signers]}
        if title is not None:
            body["title"] = title
        if expires_in is not None:
            body["expires_in"] = expires_in
        if callback_url is not None:
            body["callback_url"] = callback_url
        key = idempotency_key or str(uuid.uuid4())
        response = self.request("POST", "/api/v1/sign-requests", json_body=body,
                                headers={"Idempotency-Key": key})
        return SignRequest.from_json(response.json(), created=response.status == 201)

    def get_sign_request(self, request_id: str) -> SignRequest:
        return SignRequest.from_json(self._json("GET", f"/api/v1/sign-requests/{request_id}"))

    def get_result(self, request_id: str) -> SignResult:
        """The signatures of a completed request (Conflict while it is not completed)."""
        return SignResult.from_json(self._json("GET",
                                               f"/api/v1/sign-requests/{request_id}/result"))

    def cancel_sign_request(self, request_id: str) -> SignRequest:
        return SignRequest.from_json(self._json(
            "POST", f"/api/v1/sign-requests/{request_id}/cancel"))

    def wait_for(self, request_id: str, timeout: float = 300.0, *, interval: float = 1.0,
                 max_interval: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> SignRequest:
        """Poll until the request is no longer pending (completed, rejected, cancelled or
        expired); :class:`~medsign_sdk.errors.WaitTimeout` after ``timeout`` seconds.
        (Webhooks tell the backend the same without polling.)"""
        deadline = time.monotonic() + timeout
        delay = interval
        while True:
            request = self.get_sign_request(request_id)
            if request.finished:
                return request
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"sign request {request_id} still pending after {timeout} s")
            sleep(min(delay, remaining))
            delay = min(max_interval, delay * 1.5)

    # -- phones

    def create_activation_code(self, signer_id: int, *,
                               minutes: int | None = None) -> ActivationCode:
        """A one-time code (and QR URI) that binds the signer's phone."""
        body = {} if minutes is None else {"minutes": minutes}
        return ActivationCode.from_json(self._json(
            "POST", f"/api/v1/signers/{signer_id}/activation-codes", json_body=body))

    # -- QR login and QR signing

    def create_qr_session(self, purpose: str = "login", *, title: str | None = None,
                          documents: Sequence[Document | Mapping[str, Any]] | None = None,
                          format: str | None = None,
                          flavour: str | None = None) -> QrSession:
        """A QR session (``login``, or ``sign`` with documents) to show on a PC."""
        body: dict[str, Any] = {"purpose": purpose}
        if title is not None:
            body["title"] = title
        if documents is not None:
            body["documents"] = [as_mapping(d) for d in documents]
        if format is not None:
            body["format"] = format
        if flavour is not None:
            body["flavour"] = flavour
        return QrSession.from_json(self._json("POST", "/api/v1/qr-sessions", json_body=body))

    def get_qr_session(self, session_id: str, *, wait: int = 0) -> QrSession:
        """The session's state; ``wait`` (up to 25 s) long-polls for a change."""
        wait = max(0, min(wait, MAX_WAIT_SECONDS))
        return QrSession.from_json(self._json(
            "GET", f"/api/v1/qr-sessions/{session_id}", query={"wait": wait} if wait else None,
            timeout=self.transport.timeout + wait))

    def qr_image(self, session_id: str, format: str = "svg") -> bytes:
        """The QR code to show: SVG (default) or PNG bytes."""
        return self.request("GET", f"/api/v1/qr-sessions/{session_id}/qr",
                            query={"format": format}).body

    # -- seals and verification

    def seal(self, documents: Sequence[SealDocument | Mapping[str, Any]], *,
             seal: int | None = None, format: str = "cms-detached",
             flavour: str = "rfc5652", timestamp: bool = False) -> SealResult:
        """Seal up to 100 documents with the hospital's seal (all or nothing)."""
        body: dict[str, Any] = {"documents": [as_mapping(d) for d in documents],
                                "format": format, "flavour": flavour, "timestamp": timestamp}
        if seal is not None:
            body["seal"] = seal
        return SealResult.from_json(self._json("POST", "/api/v1/seal", json_body=body))

    def list_seals(self) -> list[dict[str, Any]]:
        items = self._json("GET", "/api/v1/seals").get("items", [])
        return [i for i in items if isinstance(i, dict)]

    def verify(self, signature: bytes, *, content: bytes | None = None,
               format: str = "cms",
               certificate: str | None = None, at: str | None = None) -> VerifyResult:
        """Verify a CMS signature (``content`` for detached), or a raw one (``format="raw"``
        with ``content`` and the signer's PEM ``certificate``; ``at``: ISO time it was made)."""
        body: dict[str, Any] = {"format": format,
                                "signature": base64.b64encode(signature).decode()}
        if content is not None:
            body["content"] = base64.b64encode(content).decode()
        if certificate is not None:
            body["certificate"] = certificate
        if at is not None:
            body["at"] = at
        return VerifyResult.from_json(self._json("POST", "/api/v1/verify", json_body=body))

    # -- evidence reports (一键取证)

    def evidence(self, sign_request_id: str | None = None, *, document: bytes | None = None,
                 content: bytes | None = None, name: str | None = None,
                 document_index: int = 0) -> EvidenceReport:
        """Build an evidence report: for a sign request's document (``sign_request_id``), or
        for a signed document (``document``: a signed PDF or a CMS; ``content`` for a
        detached CMS).  ``evidence_pdf(report.id)`` fetches the signed PDF, which
        ``medsign evidence verify`` checks offline."""
        if (sign_request_id is None) == (document is None):
            raise ValueError("give sign_request_id or document")
        body: dict[str, Any]
        if sign_request_id is not None:
            body = {"sign_request_id": sign_request_id, "document_index": document_index}
        else:
            assert document is not None
            body = {"document": base64.b64encode(document).decode()}
            if content is not None:
                body["content"] = base64.b64encode(content).decode()
            if name is not None:
                body["name"] = name
        return EvidenceReport.from_json(self._json("POST", "/api/v1/evidence", json_body=body))

    def evidence_pdf(self, report_id: str) -> bytes:
        """The signed evidence report (PDF with its facts attached)."""
        return self.request("GET", f"/api/v1/evidence/{report_id}/pdf").body

    # -- signer records

    def create_signer(self, fields: Mapping[str, str]) -> Signer:
        """A draft signer: kind, name, id_number (and phone, department, title,
        qualification_no, practice_no)."""
        return Signer.from_json(self._json("POST", "/api/v1/signers", json_body=dict(fields)))

    def get_signer(self, signer_id: int) -> Signer:
        return Signer.from_json(self._json("GET", f"/api/v1/signers/{signer_id}"))

    def list_signers(self, *, status: str | None = None, kind: str | None = None,
                     department: str | None = None, name: str | None = None,
                     offset: int = 0, limit: int = 50) -> SignerPage:
        """One page of signers; ``name`` is a prefix."""
        return SignerPage.from_json(self._json("GET", "/api/v1/signers", query={
            "status": status, "kind": kind, "department": department, "name": name,
            "offset": offset, "limit": limit}))

    def update_signer(self, signer_id: int, changes: Mapping[str, str | None], *,
                      version: int | None = None) -> Signer:
        body: dict[str, Any] = dict(changes)
        if version is not None:
            body["version"] = version
        return Signer.from_json(self._json("PATCH", f"/api/v1/signers/{signer_id}",
                                           json_body=body))

    def submit_signer(self, signer_id: int, *, version: int | None = None) -> Signer:
        """Submit a complete draft for review."""
        return Signer.from_json(self._json(
            "POST", f"/api/v1/signers/{signer_id}/submit",
            json_body={} if version is None else {"version": version}))

    def lookup_signer(self, *, id_number: str | None = None,
                      phone: str | None = None) -> Signer:
        body = {k: v for k, v in (("id_number", id_number), ("phone", phone)) if v is not None}
        return Signer.from_json(self._json("POST", "/api/v1/signers/lookup", json_body=body))

    # -- webhooks

    def verify_webhook(self, headers: Mapping[str, str], body: bytes, *,
                       max_age: int = 300) -> WebhookEvent:
        """:func:`verify_webhook` with this client's secret; also checks the key id."""
        event = verify_webhook(headers, body, self._secret, max_age=max_age)
        if event.key_id != self.key_id:
            raise WebhookError("the webhook was signed for another credential")
        return event
