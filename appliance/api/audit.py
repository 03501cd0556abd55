"""The audit log over the API: ``/api/v1/audit/...`` (DESIGN.md sections 7 and 8).

The audit administrator reads: searches entries, exports them (CSV or JSON), reads the newest
signed checkpoint, the audit public key, and inclusion and consistency proofs.  The audit and
system administrators may ask for a checkpoint on demand.  Nobody can change or delete an entry
through the API: there is no such operation.

Exports and on-demand checkpoints are themselves audited (category ``system``).  Hashes and
proofs are standard base64, as in the checkpoint note; a verifier needs only
:mod:`evidence` and the audit public key.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import falcon

from appliance.api import openapi as oa
from appliance.api.access import AUDIT_ADMIN, SECURITY_ADMIN, SYSTEM_ADMIN, Access, Principal, roles
from appliance.errors import NotFound, ValidationFailed
from appliance.services.audit import (
    CATEGORIES,
    EXPORT_FORMATS,
    AuditLog,
    Filters,
    export_chunks,
    timestamp,
)
from evidence import checkpoint

READ = roles(AUDIT_ADMIN)
# The audit administrator reads and nothing else (DESIGN.md section 8): an on-demand signed
# tree head is an operation of the system and security administrators.
CHECKPOINT = roles(SYSTEM_ADMIN, SECURITY_ADMIN)
MAX_PAGE = 500
_MAX_INT = 10**15
_INTEGER = re.compile(r"[0-9]{1,16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_SEQ = 2**63 - 1
_TEXT_LIMITS = {"action": 64, "actor": 128, "subject": 256}
_EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}

# --------------------------------------------------------------------------- OpenAPI

_B64 = {"type": "string", "contentEncoding": "base64"}
_TIME = {"type": "string", "format": "date-time"}
ENTRY: dict[str, Any] = {
    "type": "object",
    "description": "One audit entry: a leaf of the log's Merkle tree (SM3).",
    "required": ["seq", "node_id", "node_seq", "category", "action", "actor", "subject",
                 "details", "created_at", "leaf_hash"],
    "properties": {
        "seq": {"type": "integer", "minimum": 0, "description": "leaf index, from 0"},
        "node_id": {"type": "string"},
        "node_seq": {"type": "integer", "minimum": 0},
        "category": {"enum": list(CATEGORIES)},
        "action": {"type": "string"},
        "actor": {"type": "string"},
        "subject": {"type": "string"},
        "details": {"type": "object", "description": "personal data only as HMAC-SM3"},
        "created_at": _TIME,
        "leaf_hash": _B64,
    },
    "additionalProperties": False,
}
_ENTRY_REF = {"$ref": "#/components/schemas/AuditEntry"}
PAGE = {
    "type": "object", "required": ["items", "total", "offset", "limit"],
    "properties": {"items": {"type": "array", "items": _ENTRY_REF},
                   "total": {"type": "integer"}, "offset": {"type": "integer"},
                   "limit": {"type": "integer"}},
    "additionalProperties": False,
}
CHECKPOINT_SCHEMA = {
    "type": "object", "required": ["tree_size", "root_hash", "note", "created_at"],
    "properties": {"tree_size": {"type": "integer", "minimum": 0}, "root_hash": _B64,
                   "note": {"type": "string",
                            "description": "C2SP tlog-checkpoint signed note (SM2)"},
                   "created_at": _TIME},
    "additionalProperties": False,
}
_HASHES = {"type": "array", "items": _B64}
INCLUSION = {
    "type": "object",
    "required": ["seq", "tree_size", "leaf_hash", "root_hash", "proof", "entry", "hash"],
    "properties": {"seq": {"type": "integer"}, "tree_size": {"type": "integer"},
                   "leaf_hash": _B64, "root_hash": _B64, "proof": _HASHES,
                   "entry": _ENTRY_REF, "hash": {"const": "sm3"}},
    "additionalProperties": False,
}
CONSISTENCY = {
    "type": "object",
    "required": ["first", "second", "first_root", "second_root", "proof", "hash"],
    "properties": {"first": {"type": "integer"}, "second": {"type": "integer"},
                   "first_root": _B64, "second_root": _B64, "proof": _HASHES,
                   "hash": {"const": "sm3"}},
    "additionalProperties": False,
}
PUBLIC_KEY = {
    "type": "object", "required": ["origin", "key_id", "public_key"],
    "properties": {"origin": {"type": "string", "description": "checkpoint origin = key name"},
                   "key_id": {"type": "string", "description": "signed-note key ID, hex"},
                   "public_key": {**_B64, "description": "SubjectPublicKeyInfo DER (SM2)"}},
    "additionalProperties": False,
}
_FILTERS = [
    oa.query("category", {"enum": list(CATEGORIES)}),
    oa.query("action", {"type": "string", "maxLength": 64}),
    oa.query("actor", {"type": "string", "maxLength": 128}),
    oa.query("subject", {"type": "string", "maxLength": 256}),
    oa.query("since", _TIME, description="inclusive (ISO 8601; without zone: UTC)"),
    oa.query("until", _TIME, description="exclusive"),
]
_BAD = oa.problem("A parameter is invalid (`validation-failed`)")
_MISSING = oa.problem("No such entry, or no checkpoint yet (`not-found`)")


# --------------------------------------------------------------------------- parameters


def _int_param(req: falcon.Request, name: str, *, default: int | None = None,
               maximum: int = _MAX_INT) -> int | None:
    raw = req.get_param(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or int(raw) > maximum:
        raise ValidationFailed(f"{name} must be an integer from 0 to {maximum}")
    return int(raw)


def _required_int(req: falcon.Request, name: str) -> int:
    value = _int_param(req, name)
    if value is None:
        raise ValidationFailed(f"{name} is required")
    return value


def _time_param(req: falcon.Request, name: str) -> dt.datetime | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(f"{name} must be an ISO 8601 date-time") from None


def filters_from(req: falcon.Request) -> Filters:
    """The search filters of a request (every one optional)."""
    category = req.get_param("category")
    if category is not None and category not in CATEGORIES:
        raise ValidationFailed(f"category must be one of {', '.join(CATEGORIES)}")
    texts: dict[str, str | None] = {}
    for name, limit in _TEXT_LIMITS.items():
        value = req.get_param(name)
        if value is not None and (not 0 < len(value) <= limit or _CONTROL.search(value)):
            raise ValidationFailed(f"{name} is 1 to {limit} characters, no control characters")
        texts[name] = value
    since, until = _time_param(req, "since"), _time_param(req, "until")
    if since is not None and until is not None and since >= until:
        raise ValidationFailed("since must be before until")
    return Filters(category=category, since=since, until=until, **texts)


def _actor(req: falcon.Request) -> str:
    principal: Principal | None = getattr(req.context, "principal", None)
    return f"{principal.kind}:{principal.name}" if principal else ""


# --------------------------------------------------------------------------- resources


class Entries:
    """Search the log, newest first (or oldest first with ``order=oldest``)."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {
        "summary": "Search audit entries",
        "parameters": [*_FILTERS,
                       oa.query("order", {"enum": ["newest", "oldest"]}),
                       oa.query("offset", {"type": "integer", "minimum": 0}),
                       oa.query("limit", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_PAGE})],
        "responses": {"200": oa.response("One page of entries", PAGE), "400": _BAD},
    }}
    openapi_schemas = {"AuditEntry": ENTRY}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        order = req.get_param("order") or "newest"
        if order not in ("newest", "oldest"):
            raise ValidationFailed("order is newest or oldest")
        limit = _int_param(req, "limit", default=100, maximum=MAX_PAGE) or 0
        if limit < 1:
            raise ValidationFailed(f"limit is 1 to {MAX_PAGE}")
        page = self._audit.search(filters_from(req), limit=limit,
                                  offset=_int_param(req, "offset", default=0) or 0,
                                  newest_first=order == "newest")
        resp.media = {"items": [r.to_json() for r in page.entries], "total": page.total,
                      "offset": page.offset, "limit": page.limit}


class Entry:
    """One entry by its sequence number."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {"summary": "One audit entry",
                       "responses": {"200": oa.response("The entry", _ENTRY_REF),
                                     "404": _MISSING}}}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, _req: falcon.Request, resp: falcon.Response, seq: int) -> None:
        resp.media = self._audit.entry(seq).to_json()


class Export:
    """The matching entries as a CSV or JSON download (the export itself is audited)."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {
        "summary": "Export audit entries (CSV or JSON)",
        "parameters": [oa.query("format", {"enum": list(EXPORT_FORMATS)}), *_FILTERS],
        "responses": {
            "200": {"description": "The export as an attachment",
                    "content": {"text/csv": {"schema": {"type": "string"}},
                                "application/json": {"schema": {"type": "object"}}}},
            "400": _BAD,
        },
    }}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        fmt = req.get_param("format") or "csv"
        if fmt not in EXPORT_FORMATS:
            raise ValidationFailed(f"format is one of {', '.join(EXPORT_FORMATS)}")
        filters = filters_from(req)
        self._audit.append("system", "audit.export", _actor(req), "audit_log",
                           {"format": fmt, "filters": filters.to_json()})
        chunks = export_chunks(self._audit.database, fmt, filters)
        stamp = timestamp(dt.datetime.now(dt.UTC))[:19].replace(":", "")
        resp.content_type = _EXPORT_TYPES[fmt]
        resp.downloadable_as = f"medsign-audit-{stamp}.{fmt}"
        resp.stream = (chunk.encode("utf-8") for chunk in chunks)


class LatestCheckpoint:
    """The newest signed tree head."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {"summary": "The newest signed checkpoint",
                       "responses": {"200": oa.response("The checkpoint", CHECKPOINT_SCHEMA),
                                     "404": _MISSING}}}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        latest = self._audit.latest_checkpoint()
        if latest is None:
            raise NotFound("no checkpoint has been signed yet")
        resp.media = latest.to_json()


class Checkpoints:
    """Sign a checkpoint now (the request is logged first, so the checkpoint covers it)."""

    access: dict[str, Access] = {"POST": CHECKPOINT}
    openapi = {"POST": {
        "summary": "Sign a checkpoint over the log now",
        "responses": {"201": oa.response("The new checkpoint", CHECKPOINT_SCHEMA)},
    }}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._audit.append("system", "audit.checkpoint", _actor(req), "audit_log", {})
        resp.status = falcon.HTTP_201
        resp.media = self._audit.checkpoint().to_json()


class PublicKey:
    """The audit-signing public key, to pin in an offline verifier."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {"summary": "The audit-signing public key",
                       "responses": {"200": oa.response("The key", PUBLIC_KEY),
                                     "404": _MISSING}}}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        key = self._audit.public_key()
        if key is None:
            raise NotFound("no audit-signing key yet (it is made with the first checkpoint)")
        origin = self._audit.config.origin
        resp.media = {"origin": origin, "key_id": checkpoint.key_id(origin, key).hex(),
                      "public_key": base64.b64encode(key.to_der()).decode()}


class InclusionProof:
    """Proof that entry ``seq`` is in the tree of ``tree_size`` entries (default: the newest
    checkpoint's size)."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {
        "summary": "Inclusion proof of one entry",
        "parameters": [oa.query("seq", {"type": "integer", "minimum": 0}, required=True),
                       oa.query("tree_size", {"type": "integer", "minimum": 1})],
        "responses": {"200": oa.response("The proof (RFC 9162 2.1.3)", INCLUSION),
                      "400": _BAD, "404": _MISSING},
    }}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        proof = self._audit.inclusion_proof(_required_int(req, "seq"),
                                            _int_param(req, "tree_size"))
        resp.media = proof.to_json()


class ConsistencyProof:
    """Proof that the tree of ``second`` entries (default: the newest checkpoint's size)
    extends the tree of ``first``."""

    access: dict[str, Access] = {"GET": READ}
    openapi = {"GET": {
        "summary": "Consistency proof between two tree sizes",
        "parameters": [oa.query("first", {"type": "integer", "minimum": 0}, required=True),
                       oa.query("second", {"type": "integer", "minimum": 0})],
        "responses": {"200": oa.response("The proof (RFC 9162 2.1.4)", CONSISTENCY),
                      "400": _BAD, "404": _MISSING},
    }}

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        proof = self._audit.consistency_proof(_required_int(req, "first"),
                                              _int_param(req, "second"))
        resp.media = proof.to_json()


def routes(audit: AuditLog) -> dict[str, Any]:
    base = "/api/v1/audit"
    return {
        f"{base}/entries": Entries(audit),
        f"{base}/entries/{{seq:int(min=0, max={_MAX_SEQ})}}": Entry(audit),
        f"{base}/export": Export(audit),
        f"{base}/checkpoints": Checkpoints(audit),
        f"{base}/checkpoints/latest": LatestCheckpoint(audit),
        f"{base}/public-key": PublicKey(audit),
        f"{base}/proofs/inclusion": InclusionProof(audit),
        f"{base}/proofs/consistency": ConsistencyProof(audit),
    }
