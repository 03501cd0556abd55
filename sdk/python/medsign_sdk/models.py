"""Typed views of the appliance's JSON answers, and the inputs of the backend calls.

Every answer type keeps the whole JSON object in ``raw``, so members added by a newer appliance
are not lost.  Times are timezone-aware :class:`datetime.datetime`; binary values (signatures,
certificates) are ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from medsign_sdk.errors import TransportError

JsonObject = dict[str, Any]


class _Reader:
    """Typed access to one JSON object of an answer; a wrong shape is a TransportError."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, dict):
            raise TransportError(f"unexpected answer: {what} is not a JSON object")
        self.data: JsonObject = data
        self._what = what

    def _bad(self, name: str, kind: str) -> TransportError:
        return TransportError(f"unexpected answer: {self._what}.{name} is not {kind}")

    def text(self, name: str) -> str:
        value = self.data.get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def opt_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def integer(self, name: str) -> int:
        value = self.data.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(name, "an integer")
        return value

    def opt_integer(self, name: str) -> int | None:
        return None if self.data.get(name) is None else self.integer(name)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def time(self, name: str) -> dt.datetime | None:
        text = self.opt_text(name)
        if text is None:
            return None
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise self._bad(name, "an ISO 8601 time") from None

    def b64(self, name: str) -> bytes | None:
        text = self.opt_text(name)
        if text is None:
            return None
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise self._bad(name, "base64") from None

    def obj(self, name: str) -> JsonObject | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name, [])
        if not isinstance(value, list):
            raise self._bad(name, "a list")
        return value

    def texts(self, name: str) -> list[str]:
        return [v for v in self.items(name) if isinstance(v, str)]


# --- inputs ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Document:
    """A document of a sign request or a QR signing session: its bytes, or (detached CMS only)
    its SM3 digest."""

    name: str
    content: bytes | None = None
    digest: bytes | None = None
    media_type: str | None = None

    def to_json(self) -> JsonObject:
        if (self.content is None) == (self.digest is None):
            raise ValueError("a document has its content or its SM3 digest")
        out: JsonObject = {"name": self.name}
        if self.media_type is not None:
            out["media_type"] = self.media_type
        if self.content is not None:
            out["content"] = base64.b64encode(self.content).decode()
        if self.digest is not None:
            out.update(digest=self.digest.hex(), digest_algorithm="sm3")
        return out


@dataclasses.dataclass(frozen=True)
class SealDocument:
    """A document to seal: ``id`` is the caller's (a prescription number, ...)."""

    id: str
    content: bytes | None = None
    digest: bytes | None = None
    digest_algorithm: str | None = None  # "sm3" (SM2 seal) or "sha256" (RSA seal)

    def to_json(self) -> JsonObject:
        if (self.content is None) == (self.digest is None):
            raise ValueError("a document has its content or its digest")
        out: JsonObject = {"id": self.id}
        if self.content is not None:
            out["content"] = base64.b64encode(self.content).decode()
        if self.digest is not None:
            out.update(digest=self.digest.hex(), digest_algorithm=self.digest_algorithm or "sm3")
        return out


@dataclasses.dataclass(frozen=True)
class SignerStep:
    """One step of a sign request: the signer signs (``sign``) or reviews (``review``)."""

    signer_id: int
    action: str = "sign"

    def to_json(self) -> JsonObject:
        return {"signer_id": self.signer_id, "action": self.action}


# --- backend answers -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RequestDocument:
    index: int
    name: str
    media_type: str | None
    size: int | None
    digest: str
    digest_algorithm: str | None

    @classmethod
    def from_json(cls, data: Any) -> RequestDocument:
        j = _Reader(data, "document")
        return cls(j.integer("index"), j.text("name"), j.opt_text("media_type"),
                   j.opt_integer("size"), j.text("digest"), j.opt_text("digest_algorithm"))


@dataclasses.dataclass(frozen=True)
class RequestStep:
    step: int
    task_id: str
    signer_id: int
    action: str
    status: str
    reason: str | None
    certificate_id: int | None
    auto_sign_id: str | None
    finished_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> RequestStep:
        j = _Reader(data, "signer step")
        return cls(j.integer("step"), j.text("task_id"), j.integer("signer_id"), j.text("action"),
                   j.text("status"), j.opt_text("reason"), j.opt_integer("certificate_id"),
                   j.opt_text("auto_sign_id"), j.time("finished_at"))


@dataclasses.dataclass(frozen=True)
class SignRequest:
    id: str
    status: str  # pending, completed, rejected, cancelled, expired
    title: str | None
    format: str
    flavour: str | None
    idempotency_key: str | None
    callback_url: str | None
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    finished_at: dt.datetime | None
    documents: list[RequestDocument]
    signers: list[RequestStep]
    created: bool  # False when an earlier request with the same Idempotency-Key was returned
    raw: JsonObject = dataclasses.field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status != "pending"

    @classmethod
    def from_json(cls, data: Any, *, created: bool = True) -> SignRequest:
        j = _Reader(data, "sign request")
        return cls(j.text("id"), j.text("status"), j.opt_text("title"), j.text("format"),
                   j.opt_text("flavour"), j.opt_text("idempotency_key"), j.opt_text("callback_url"),
                   j.time("created_at"), j.time("expires_at"), j.time("finished_at"),
                   [RequestDocument.from_json(d) for d in j.items("documents")],
                   [RequestStep.from_json(s) for s in j.items("signers")], created, j.data)


@dataclasses.dataclass(frozen=True)
class RawSignature:
    """One signer's raw SM2 signature of a document (format ``raw``)."""

    step: int
    signer_id: int
    certificate_id: int | None
    signature: bytes | None

    @classmethod
    def from_json(cls, data: Any) -> RawSignature:
        j = _Reader(data, "signature")
        return cls(j.integer("step"), j.integer("signer_id"), j.opt_integer("certificate_id"),
                   j.b64("signature"))


@dataclasses.dataclass(frozen=True)
class ResultDocument:
    index: int
    name: str
    signature: bytes | None  # the CMS (DER ContentInfo) holding every signer; None for raw
    signatures: list[RawSignature]  # raw format: one per signer

    @classmethod
    def from_json(cls, data: Any) -> ResultDocument:
        j = _Reader(data, "result document")
        return cls(j.integer("index"), j.text("name"), j.b64("signature"),
                   [RawSignature.from_json(s) for s in j.items("signatures")])


@dataclasses.dataclass(frozen=True)
class SignResult:
    id: str
    format: str
    flavour: str | None
    documents: list[ResultDocument]
    raw: JsonObject = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> SignResult:
        j = _Reader(data, "result")
        return cls(j.text("id"), j.text("format"), j.opt_text("flavour"),
                   [ResultDocument.from_json(d) for d in j.items("documents")], j.data)


@dataclasses.dataclass(frozen=True)
class ActivationCode:
    code: str
    uri: str
    signer_id: int | None
    expires_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> ActivationCode:
        j = _Reader(data, "activation code")
        return cls(j.text("code"), j.text("uri"), j.opt_integer("signer_id"), j.time("expires_at"))


@dataclasses.dataclass(frozen=True)
class QrAssertion:
    """What a confirmed QR login proves: ``signature`` (DER SM2) over the canonical JSON of
    ``assertion`` by the key of ``certificate`` (DER)."""

    assertion: JsonObject
    signature: bytes
    certificate: bytes

    @classmethod
    def from_json(cls, data: Any) -> QrAssertion:
        j = _Reader(data, "assertion")
        assertion, signature, certificate = j.obj("assertion"), j.b64("signature"), j.b64(
            "certificate")
        if assertion is None or signature is None or certificate is None:
            raise TransportError("unexpected answer: an incomplete QR assertion")
        return cls(assertion, signature, certificate)

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (sorted keys, compact, UTF-8)."""
        return json.dumps(self.assertion, ensure_ascii=False, sort_keys=True,
                          separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class QrSession:
    id: str
    purpose: str  # login or sign
    status: str  # waiting, scanned, confirmed, expired, rejected, cancelled
    uri: str
    expires_at: dt.datetime | None
    signer_id: int | None
    sign_request_id: str | None
    sign_request_status: str | None
    assertion: QrAssertion | None
    raw: JsonObject = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> QrSession:
        j = _Reader(data, "QR session")
        assertion = j.obj("assertion")
        return cls(j.text("id"), j.text("purpose"), j.text("status"), j.text("uri"),
                   j.time("expires_at"), j.opt_integer("signer_id"), j.opt_text("sign_request_id"),
                   j.opt_text("sign_request_status"),
                   QrAssertion.from_json(assertion) if assertion is not None else None, j.data)


@dataclasses.dataclass(frozen=True)
class SealedDocument:
    id: str
    signature: bytes  # DER ContentInfo(SignedData)
    digest: str
    digest_algorithm: str

    @classmethod
    def from_json(cls, data: Any) -> SealedDocument:
        j = _Reader(data, "sealed document")
        signature = j.b64("signature")
        if signature is None:
            raise TransportError("unexpected answer: a sealed document without signature")
        return cls(j.text("id"), signature, j.text("digest"), j.text("digest_algorithm"))


@dataclasses.dataclass(frozen=True)
class SealResult:
    seal: JsonObject  # the seal certificate (id, serial, subject, pem, ...)
    results: list[SealedDocument]

    @classmethod
    def from_json(cls, data: Any) -> SealResult:
        j = _Reader(data, "seal result")
        return cls(j.obj("seal") or {}, [SealedDocument.from_json(r) for r in j.items("results")])


@dataclasses.dataclass(frozen=True)
class SignerVerification:
    valid: bool
    integrity: bool
    problems: list[str]
    signer: JsonObject | None  # subject, issuer, serial, not_before, not_after, sha256
    signature_algorithm: str | None
    signing_time: dt.datetime | None
    checked_at: dt.datetime | None
    timestamp: JsonObject | None
    chain: JsonObject

    @classmethod
    def from_json(cls, data: Any) -> SignerVerification:
        j = _Reader(data, "verified signer")
        return cls(j.flag("valid"), j.flag("integrity"), j.texts("problems"), j.obj("signer"),
                   j.opt_text("signature_algorithm"), j.time("signing_time"),
                   j.time("checked_at"), j.obj("timestamp"), j.obj("chain") or {})


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    format: str  # cms or raw
    valid: bool
    flavour: str | None
    detached: bool | None
    signers: list[SignerVerification]
    raw: JsonObject = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> VerifyResult:
        j = _Reader(data, "verification")
        detached = j.data.get("detached")
        return cls(j.text("format"), j.flag("valid"), j.opt_text("flavour"),
                   detached if isinstance(detached, bool) else None,
                   [SignerVerification.from_json(s) for s in j.items("signers")], j.data)


@dataclasses.dataclass(frozen=True)
class Signer:
    """A signer record; the ID number and the phone are always masked."""

    id: int
    kind: str
    name: str
    id_number_masked: str
    phone_masked: str | None
    department: str
    title: str
    qualification_no: str
    practice_no: str
    status: str  # draft, pending_review, active, disabled
    review_note: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    version: int
    raw: JsonObject = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Signer:
        j = _Reader(data, "signer")
        return cls(j.integer("id"), j.text("kind"), j.text("name"), j.text("id_number_masked"),
                   j.opt_text("phone_masked"), j.opt_text("department") or "",
                   j.opt_text("title") or "", j.opt_text("qualification_no") or "",
                   j.opt_text("practice_no") or "", j.text("status"),
                   j.opt_text("review_note") or "", j.time("created_at"), j.time("updated_at"),
                   j.integer("version"), j.data)


@dataclasses.dataclass(frozen=True)
class SignerPage:
    items: list[Signer]
    total: int
    offset: int
    limit: int

    @classmethod
    def from_json(cls, data: Any) -> SignerPage:
        j = _Reader(data, "signer page")
        return cls([Signer.from_json(s) for s in j.items("items")], j.integer("total"),
                   j.integer("offset"), j.integer("limit"))


@dataclasses.dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook: ``type`` is e.g. ``sign_request.completed``; receivers de-duplicate
    by ``id`` (a retry carries the same id)."""

    id: str
    type: str
    created_at: dt.datetime | None
    data: JsonObject
    key_id: str

    @classmethod
    def from_json(cls, data: Any, key_id: str) -> WebhookEvent:
        j = _Reader(data, "event")
        return cls(j.text("id"), j.text("type"), j.time("created_at"), j.obj("data") or {},
                   key_id)


# --- phone answers ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Device:
    id: str
    signer_id: int
    name: str
    status: str
    created_at: dt.datetime | None
    last_seen_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> Device:
        j = _Reader(data, "device")
        return cls(j.text("id"), j.integer("signer_id"), j.opt_text("name") or "", j.text("status"),
                   j.time("created_at"), j.time("last_seen_at"))


@dataclasses.dataclass(frozen=True)
class SigningKey:
    id: str
    status: str  # enrolling, active, retired
    algorithm: str
    public_key: bytes
    certificate_id: int | None
    created_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> SigningKey:
        j = _Reader(data, "key")
        try:
            public = bytes.fromhex(j.text("public_key"))
        except ValueError:
            raise TransportError("unexpected answer: key.public_key is not hex") from None
        return cls(j.text("id"), j.text("status"), j.opt_text("algorithm") or "sm2", public,
                   j.opt_integer("certificate_id"), j.time("created_at"))


@dataclasses.dataclass(frozen=True)
class PinStatus:
    attempts_left: int
    locked: bool


@dataclasses.dataclass(frozen=True)
class Me:
    device: Device
    keys: list[SigningKey]
    certificate: JsonObject | None  # the active key's certificate (id, serial, subject, pem...)
    pin: PinStatus | None

    @classmethod
    def from_json(cls, data: Any) -> Me:
        j = _Reader(data, "me")
        pin = j.obj("pin")
        status = None
        if pin is not None:
            p = _Reader(pin, "pin")
            status = PinStatus(p.integer("attempts_left"), p.flag("locked"))
        return cls(Device.from_json(j.data.get("device")),
                   [SigningKey.from_json(k) for k in j.items("keys")], j.obj("certificate"),
                   status)


@dataclasses.dataclass(frozen=True)
class Activation:
    device: Device
    signer_id: int


@dataclasses.dataclass(frozen=True)
class Enrollment:
    key_id: str
    public_key: bytes  # the joint SM2 public point
    certificate: JsonObject  # the issued certificate (id, serial, subject, pem, ...)


@dataclasses.dataclass(frozen=True)
class TaskDocument:
    index: int
    name: str
    media_type: str | None
    size: int | None
    sm3: str | None
    preview: bool  # the bytes can be fetched (PhoneClient.document)

    @classmethod
    def from_json(cls, data: Any) -> TaskDocument:
        j = _Reader(data, "task document")
        return cls(j.integer("index"), j.text("name"), j.opt_text("media_type"),
                   j.opt_integer("size"), j.opt_text("sm3"), j.flag("preview"))


@dataclasses.dataclass(frozen=True)
class Task:
    id: str
    request_id: str
    title: str | None
    action: str  # sign or review
    status: str  # pending, waiting, signed, rejected, cancelled, expired
    step: int
    format: str
    created_at: dt.datetime | None
    expires_at: dt.datetime | None
    reason: str | None
    auto_sign_id: str | None
    finished_at: dt.datetime | None
    documents: list[TaskDocument]
    raw: JsonObject = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> Task:
        j = _Reader(data, "task")
        return cls(j.text("id"), j.text("request_id"), j.opt_text("title"), j.text("action"),
                   j.text("status"), j.integer("step"), j.text("format"), j.time("created_at"),
                   j.time("expires_at"), j.opt_text("reason"), j.opt_text("auto_sign_id"),
                   j.time("finished_at"), [TaskDocument.from_json(d) for d in j.items("documents")],
                   j.data)


@dataclasses.dataclass(frozen=True)
class DocumentContent:
    media_type: str
    content: bytes


@dataclasses.dataclass(frozen=True)
class DocumentView:
    """A task's document as it is now -- for a PAdES request the PDF with every signature made
    so far -- and its validation result: the same JSON as ``POST /api/v1/verify``
    (``format: pdf`` with ``signatures`` and ``document_timestamps``, or ``format: cms`` with
    ``signers``)."""

    media_type: str
    content: bytes
    signed: bool  # any signature yet
    verification: JsonObject

    @property
    def valid(self) -> bool:
        return self.verification.get("valid") is True

    @property
    def signatures(self) -> list[JsonObject]:
        """Per signature (pdf) or per signer (cms), as the verification JSON has them."""
        key = "signatures" if self.verification.get("format") == "pdf" else "signers"
        items = self.verification.get(key)
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


@dataclasses.dataclass(frozen=True)
class AutoSignGrant:
    id: str
    device_id: str
    status: str  # active, ended, revoked
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    max_count: int
    used_count: int
    created_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> AutoSignGrant:
        j = _Reader(data, "auto-sign grant")
        return cls(j.text("id"), j.text("device_id"), j.text("status"), j.time("not_before"),
                   j.time("not_after"), j.integer("max_count"), j.integer("used_count"),
                   j.time("created_at"), j.time("revoked_at"))


@dataclasses.dataclass(frozen=True)
class MobileMessage:
    id: int
    kind: str
    title: str
    body: str
    task_id: str | None
    created_at: dt.datetime | None
    read_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> MobileMessage:
        j = _Reader(data, "message")
        return cls(j.integer("id"), j.text("kind"), j.text("title"), j.opt_text("body") or "",
                   j.opt_text("task_id"), j.time("created_at"), j.time("read_at"))


@dataclasses.dataclass(frozen=True)
class SignOutcome:
    """A finished co-sign session: the DER SM2 signatures in digest order and what the server
    reported (``tasks``, ``requests``, ``qr`` or ``certificate`` depending on the session)."""

    session: str
    kind: str
    signatures: list[bytes]
    tasks: list[JsonObject]
    requests: list[JsonObject]
    extra: JsonObject = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class QrScan:
    id: str
    purpose: str
    application: str
    title: str
    documents: list[JsonObject]
    expires_at: dt.datetime | None

    @classmethod
    def from_json(cls, data: Any) -> QrScan:
        j = _Reader(data, "QR scan")
        return cls(j.text("id"), j.text("purpose"), j.opt_text("application") or "",
                   j.opt_text("title") or "", [d for d in j.items("documents")
                                              if isinstance(d, dict)], j.time("expires_at"))


@dataclasses.dataclass(frozen=True)
class EvidenceReport:
    """An evidence report (issue 8): its id and verdict, the document's digests, what the
    appliance's checks found, and the links to its facts and its signed PDF."""

    id: str
    verdict: str  # valid | invalid
    sign_request_id: str | None
    problems: list[str]
    pdf_path: str
    raw: JsonObject = dataclasses.field(repr=False)

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    @classmethod
    def from_json(cls, data: Any) -> EvidenceReport:
        j = _Reader(data, "evidence report")
        links = _Reader(j.data.get("links"), "evidence report links")
        return cls(j.text("id"), j.text("verdict"), j.opt_text("sign_request_id"),
                   [p for p in j.items("problems") if isinstance(p, str)], links.text("pdf"),
                   j.data)


def reader(data: Any, what: str) -> _Reader:
    """For the clients: typed access to an answer."""
    return _Reader(data, what)


def as_mapping(value: Mapping[str, Any] | Any) -> JsonObject:
    """An input given as a dataclass with ``to_json`` or as a mapping, as a JSON object."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        result = to_json()
        if isinstance(result, dict):
            return result
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"expected a mapping or an input dataclass, got {type(value).__name__}")
