"""The facts of an evidence report ("证据报告"): a typed model and its canonical JSON.

A report speaks about one document (its digests) and every signature in it: the validation
result at generation time, the certificate and its status then and now, and the signing process
as the audit log recorded it — each audit entry carried as its exact *leaf data* (the bytes the
log hashed), with an inclusion proof against a signed tree head (checkpoint) and, from every
checkpoint used, a consistency proof to the newest one.  The audit log's public keys travel
with it, so :mod:`evidence.verify` needs no database and no network.

The per-signature process facts (device, IP, confirmation, auto-sign authorization, co-sign
session) are *derived* from the leaf data by :func:`derive_process`; the verifier derives them
again and compares, so a report cannot show a fact its proved entries do not say.

Threat model: the JSON travels inside the PDF the appliance signs (:mod:`evidence.render`), but
the verifier treats it as hostile input: :func:`Report.from_json` checks types and shapes and
raises :class:`~evidence.errors.MalformedReport` on anything unexpected.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evidence.errors import MalformedReport
from evidence.merkle import SM3, Hasher

__all__ = [
    "ACTION_LABELS",
    "FORMAT",
    "Consistency",
    "DocumentDigest",
    "ProvedEntry",
    "Report",
    "SignatureFacts",
    "canonical_json",
    "derive_process",
]

FORMAT = "medsign-evidence/v1"
MAX_REPORT_BYTES = 32 * 1024 * 1024

#: How the timeline names the audit actions of a signing process (zh-CN).
ACTION_LABELS = {
    "sign-request.create": "业务系统创建签名请求",
    "sign-request.cosign": "签名人在手机上确认并完成协同签名",
    "sign-request.reject": "签名人驳回",
    "sign-request.cancel": "签名请求被撤销",
    "auto-sign.grant": "签名人输入 PIN 开启免密签名授权",
    "auto-sign.revoke": "免密签名授权被撤销",
    "device.activation-code": "医院核验身份后签发激活码",
    "device.bind": "签名人手机凭激活码绑定（身份核验通过）",
    "device.revoke": "手机绑定被撤销",
    "signer-key.keygen": "协同生成签名密钥（设置 PIN）",
    "signer-key.enroll": "签名证书签发",
    "signer-key.renew": "签名证书更新",
    "seal.apply": "加盖机构电子印章",
    "tsa.stamp": "时间戳服务签发时间戳",
    "evidence.generate": "生成证据报告",
}


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: one spelling for one value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedReport(f"{where} is base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedReport(f"{where} is not base64") from None


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise MalformedReport(f"{where} is an object")
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise MalformedReport(f"{where}.{key} is missing or of the wrong type")
    return value


def _opt(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedReport(f"{where}.{key} is text or null")
    return value


# --- audit entries -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProvedEntry:
    """One audit entry: its leaf data (the exact text the log hashed), its position, and the
    inclusion proof against the checkpoint of ``tree_size`` entries."""

    seq: int
    leaf: str
    tree_size: int
    proof: tuple[bytes, ...]

    def leaf_hash(self, hasher: Hasher = SM3) -> bytes:
        return hasher.leaf(self.leaf.encode("utf-8"))

    def record(self) -> dict[str, Any]:
        """The entry's fields, read from the leaf data (``details`` parsed); MalformedReport
        when the leaf data is not an audit leaf of this seq."""
        try:
            fields = json.loads(self.leaf)
            details = json.loads(fields["details"]) if isinstance(fields, dict) else None
        except (ValueError, KeyError, TypeError):
            raise MalformedReport(f"audit entry {self.seq}: the leaf data is not an audit "
                                  f"entry") from None
        if not isinstance(details, dict) or fields.get("seq") != self.seq:
            raise MalformedReport(f"audit entry {self.seq}: the leaf data is of another entry")
        for key in ("action", "actor", "category", "created_at", "subject", "node_id"):
            if not isinstance(fields.get(key), str):
                raise MalformedReport(f"audit entry {self.seq}: leaf field {key} is missing")
        return {**fields, "details": details}

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "leaf": self.leaf, "tree_size": self.tree_size,
                "proof": [_b64(h) for h in self.proof]}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> ProvedEntry:
        proof = _get(obj, "proof", list, where)
        return cls(_get(obj, "seq", int, where), _get(obj, "leaf", str, where),
                   _get(obj, "tree_size", int, where),
                   tuple(_unb64(h, f"{where}.proof") for h in proof))


@dataclasses.dataclass(frozen=True)
class Consistency:
    """A consistency proof from the checkpoint of ``first`` entries to that of ``second``."""

    first: int
    second: int
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "second": self.second,
                "proof": [_b64(h) for h in self.proof]}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Consistency:
        return cls(_get(obj, "first", int, where), _get(obj, "second", int, where),
                   tuple(_unb64(h, f"{where}.proof") for h in _get(obj, "proof", list, where)))


# --- the document and its signatures -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DocumentDigest:
    """The document the report speaks about: name, size and digests (hex)."""

    name: str
    size: int
    sha256: str
    sm3: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> DocumentDigest:
        return cls(_get(obj, "name", str, where), _get(obj, "size", int, where),
                   _get(obj, "sha256", str, where), _get(obj, "sm3", str, where))


@dataclasses.dataclass(frozen=True)
class SignatureFacts:
    """One signature of the document.

    ``checks``: the validation result at generation time (intact, valid, trusted, timestamp,
    problems...); ``certificate``: DER of the signer certificate; ``certificate_status``:
    ``{"at_signing": ..., "now": ...}`` (good | revoked | expired | unknown); ``process``: what
    :func:`derive_process` derives from ``entries`` (the seqs of this signature's audit
    entries, in log order).
    """

    index: int
    kind: str  # pdf | cms
    field: str
    signer: str
    certificate: bytes | None
    algorithm: str
    signing_time: str | None
    timestamp: str | None
    valid: bool
    checks: dict[str, Any]
    certificate_status: dict[str, Any]
    process: dict[str, Any]
    entries: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "field": self.field,
                "signer": self.signer,
                "certificate": _b64(self.certificate) if self.certificate else None,
                "algorithm": self.algorithm, "signing_time": self.signing_time,
                "timestamp": self.timestamp, "valid": self.valid, "checks": self.checks,
                "certificate_status": self.certificate_status, "process": self.process,
                "entries": list(self.entries)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> SignatureFacts:
        cert = obj.get("certificate") if isinstance(obj, dict) else None
        entries = _get(obj, "entries", list, where)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in entries):
            raise MalformedReport(f"{where}.entries are entry numbers")
        return cls(
            index=_get(obj, "index", int, where), kind=_get(obj, "kind", str, where),
            field=_get(obj, "field", str, where), signer=_get(obj, "signer", str, where),
            certificate=_unb64(cert, f"{where}.certificate") if cert is not None else None,
            algorithm=_get(obj, "algorithm", str, where),
            signing_time=_opt(obj, "signing_time", where),
            timestamp=_opt(obj, "timestamp", where), valid=_get(obj, "valid", bool, where),
            checks=_get(obj, "checks", dict, where),
            certificate_status=_get(obj, "certificate_status", dict, where),
            process=_get(obj, "process", dict, where), entries=tuple(entries))


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything a report states; :meth:`to_json` is what the PDF embeds and shows."""

    report_id: str
    generated_at: str
    appliance: dict[str, Any]  # name, origin (of the audit log), node_id
    document: DocumentDigest
    sign_request_id: str | None
    signatures: tuple[SignatureFacts, ...]
    entries: tuple[ProvedEntry, ...]  # every entry any signature cites, in seq order
    checkpoints: tuple[str, ...]  # signed notes, ascending tree size
    consistency: tuple[Consistency, ...]  # from each checkpoint to the newest
    log_keys: tuple[bytes, ...]  # SubjectPublicKeyInfo DER of the audit-signing keys
    certificates: tuple[bytes, ...]  # the appliance's CA certificates (the report's chain)
    problems: tuple[str, ...] = ()  # what the appliance's own checks found while collecting
    hash: str = "sm3"

    @property
    def verdict(self) -> str:
        """valid: at least one signature, every one valid, and no problem found in the audit
        evidence while collecting; otherwise invalid."""
        return "valid" if self.signatures and all(s.valid for s in self.signatures) \
            and not self.problems else "invalid"

    def entry(self, seq: int) -> ProvedEntry:
        for entry in self.entries:
            if entry.seq == seq:
                return entry
        raise MalformedReport(f"the report cites audit entry {seq} but does not carry it")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "report_id": self.report_id, "generated_at": self.generated_at,
            "verdict": self.verdict, "appliance": self.appliance,
            "document": self.document.to_json(), "sign_request_id": self.sign_request_id,
            "signatures": [s.to_json() for s in self.signatures],
            "entries": [e.to_json() for e in self.entries],
            "checkpoints": list(self.checkpoints),
            "consistency": [c.to_json() for c in self.consistency],
            "log_keys": [_b64(k) for k in self.log_keys],
            "certificates": [_b64(c) for c in self.certificates],
            "problems": list(self.problems), "hash": self.hash}

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json()).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Report:
        if len(data) > MAX_REPORT_BYTES:
            raise MalformedReport("the report's facts are too large")
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise MalformedReport("the report's facts are not JSON") from None
        return cls.from_json(obj)

    @classmethod
    def from_json(cls, obj: Any) -> Report:
        if _get(obj, "format", str, "report") != FORMAT:
            raise MalformedReport(f"not a {FORMAT} report")
        if _get(obj, "hash", str, "report") != "sm3":
            raise MalformedReport("the report's log hash is not sm3")
        report = cls(
            report_id=_get(obj, "report_id", str, "report"),
            generated_at=_get(obj, "generated_at", str, "report"),
            appliance=_get(obj, "appliance", dict, "report"),
            document=DocumentDigest.from_json(obj.get("document"), "document"),
            sign_request_id=_opt(obj, "sign_request_id", "report"),
            signatures=tuple(SignatureFacts.from_json(s, f"signatures[{i}]")
                             for i, s in enumerate(_get(obj, "signatures", list, "report"))),
            entries=tuple(ProvedEntry.from_json(e, f"entries[{i}]")
                          for i, e in enumerate(_get(obj, "entries", list, "report"))),
            checkpoints=tuple(_texts(_get(obj, "checkpoints", list, "report"), "checkpoints")),
            consistency=tuple(Consistency.from_json(c, f"consistency[{i}]")
                              for i, c in enumerate(_get(obj, "consistency", list, "report"))),
            log_keys=tuple(_unb64(k, "log_keys") for k in _get(obj, "log_keys", list, "report")),
            certificates=tuple(_unb64(c, "certificates")
                               for c in _get(obj, "certificates", list, "report")),
            problems=tuple(_texts(_get(obj, "problems", list, "report"), "problems")))
        if _get(obj, "verdict", str, "report") != report.verdict:
            raise MalformedReport("the stated verdict does not follow from the signatures")
        return report


def _texts(values: Iterable[Any], where: str) -> list[str]:
    out = []
    for value in values:
        if not isinstance(value, str):
            raise MalformedReport(f"{where} are text")
        out.append(value)
    return out


# --- the process, derived from the entries -------------------------------------------------------


def derive_process(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The facts of one signing process, from its audit records (in log order): the request,
    signer, device, IP, how the signer confirmed (PIN or an auto-sign authorization), the
    co-sign session and its time, the identity check (device binding) and the certificate."""
    facts: dict[str, Any] = {
        "sign_request_id": None, "requested_at": None, "requested_by": None,
        "notified": False, "signer_id": None, "step": None, "device_id": None, "ip": None,
        "confirmation": None, "auto_sign": None, "session": None, "signed_at": None,
        "certificate_id": None, "identity_check": None}
    grants: dict[str, dict[str, Any]] = {}
    for record in records:
        details, action = record["details"], record["action"]
        if action == "sign-request.create":
            facts["sign_request_id"] = record["subject"]
            facts["requested_at"], facts["requested_by"] = record["created_at"], record["actor"]
            facts["notified"] = bool(details.get("notified"))
        elif action == "sign-request.cosign":
            _cosign_facts(facts, record)
        elif action == "auto-sign.grant":
            grants[str(details.get("id"))] = {
                "id": details.get("id"), "granted_at": record["created_at"],
                "minutes": details.get("minutes"), "max_count": details.get("max_count")}
        elif action == "device.bind":
            facts["identity_check"] = {"method": "activation-code", "passed": True,
                                       "at": record["created_at"]}
    if facts["auto_sign"] is not None:  # the authorization this signature was made under
        facts["auto_sign"] = grants.get(facts["auto_sign"], {"id": facts["auto_sign"],
                                                             "granted_at": None})
    return facts


def _cosign_facts(facts: dict[str, Any], record: Mapping[str, Any]) -> None:
    details = record["details"]
    facts["sign_request_id"] = record["subject"]
    for key in ("signer_id", "step", "device_id", "ip", "session", "certificate_id"):
        facts[key] = details.get(key)
    facts["signed_at"] = record["created_at"]
    grant = details.get("auto_sign_id")
    facts["auto_sign"] = grant
    facts["confirmation"] = details.get("confirmation") or ("auto-sign" if grant else "pin")
