"""The offline verifier of evidence reports: no database, no network.

:func:`verify_report` checks, and names every failure of:

1. the report's own PAdES signature and its time stamp (pdfsign.validate_pdf), trusting the CA
   certificates the report carries — or only ``trust`` when given (a root the hospital
   published) — and that the signature covers the whole file (nothing appended after it);
2. the facts embedded in the signed PDF (``evidence.json``): well-formed, stated verdict follows;
3. every checkpoint: a valid signature by an audit key (the carried ones, or ``audit_keys``
   when pinned) under the log's origin;
4. every audit entry: its inclusion proof leads from its leaf data to its checkpoint's root;
5. every checkpoint older than the newest: a consistency proof to the newest;
6. leaf data ↔ facts: each signature's process facts are exactly what its entries say;
7. with ``document``: its SM3 and SHA-256 equal the digests the report records.

Threat model: the report file, everything in it and the document are attacker-controlled.  With
neither ``trust`` nor ``audit_keys`` the verifier proves integrity and internal consistency
against keys the report itself carries: the root fingerprint it prints must then be compared
with the one the hospital publishes (or passed as ``trust``) to exclude a forged appliance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import pdfsign
from evidence import checkpoint
from evidence.errors import (
    CheckpointSignatureError,
    EvidenceError,
    InvalidProof,
    MalformedCheckpoint,
    MalformedReport,
)
from evidence.merkle import SM3, Hasher, verify_consistency, verify_inclusion
from evidence.render import ATTACHMENT
from evidence.report import Report, derive_process
from signcore.errors import SigncoreError
from signcore.hashes import sm3
from signcore.keys import load_public_key
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, load_certificate

__all__ = ["Check", "Verdict", "read_facts", "verify_facts", "verify_report"]


@dataclasses.dataclass(frozen=True)
class Check:
    """One check: ``name`` says what (stable, English), ``detail`` the finding (zh-CN)."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Verdict:
    checks: list[Check]
    report: Report | None = None
    root_fingerprint: str | None = None  # SHA-256 of the root the report's signature chains to
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.ok, "report_id": self.report.report_id if self.report else None,
                "document_verdict": self.report.verdict if self.report else None,
                "signer": self.signer, "root_sha256": self.root_fingerprint,
                "checks": [c.to_json() for c in self.checks],
                "failures": [c.to_json() for c in self.failures]}


# --- the PDF -------------------------------------------------------------------------------------


def read_facts(pdf: bytes) -> Report:
    """The facts embedded in a report PDF; MalformedReport when there are none."""
    try:
        reader = pdfsign.open_pdf(pdf)
        names = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
        for i in range(0, len(names) - 1, 2):
            if str(names[i]) == ATTACHMENT:
                stream = names[i + 1].get_object()["/EF"]["/F"].get_object()
                return Report.from_bytes(bytes(stream.data))
    except pdfsign.PdfSignError as exc:
        raise MalformedReport(f"不是可读取的 PDF：{exc}") from None
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        if isinstance(exc, MalformedReport):
            raise
        raise MalformedReport("PDF 中没有证据报告附件 evidence.json") from None
    raise MalformedReport("PDF 中没有证据报告附件 evidence.json")


def _certificates(report: Report) -> list[Certificate]:
    out = []
    for der in report.certificates:
        try:
            out.append(load_certificate(der))
        except (SigncoreError, ValueError):
            continue
    return out


def _root_of(signer: Certificate | None, pool: Sequence[Certificate]) -> Certificate | None:
    """The self-signed certificate the signer's issuer names lead to, within ``pool``."""
    current = signer
    for _ in range(8):
        if current is None:
            return None
        if current.issuer == current.subject and current is not signer:
            return current
        current = next((c for c in pool if c.subject == current.issuer and c is not current),
                       None)
    return None


def _signature_checks(pdf: bytes, report: Report,
                      trust: Sequence[Certificate] | None) -> tuple[list[Check], Verdict]:
    carried = _certificates(report)
    roots = list(trust) if trust is not None else [c for c in carried
                                                   if c.subject == c.issuer]
    others = [c for c in carried if c.subject != c.issuer]
    verdict = Verdict([])
    try:
        reports = pdfsign.validate_pdf(pdf, roots, others)
    except pdfsign.PdfSignError as exc:
        return [Check("report-signature", False, f"报告 PDF 无法验证：{exc}")], verdict
    if len(reports) != 1:
        return [Check("report-signature", False,
                      f"报告应恰有一个设备签名，实际有 {len(reports)} 个")], verdict
    sig = reports[0]
    signer = load_certificate(sig.certificate) if sig.certificate else None
    root = _root_of(signer, [*carried, *roots])
    verdict.signer = sig.signer
    verdict.root_fingerprint = root.fingerprint("sha256").hex() if root else None
    whole = sig.coverage == "entire-file" or (sig.coverage == "entire-revision"
                                              and sig.modification_level == "lta-updates")
    problems = "；".join(sig.problems)
    checks = [
        Check("report-signature", sig.intact and sig.valid,
              "报告签名完整有效" if sig.intact and sig.valid
              else f"报告签名无效（报告或其附件被改动）：{problems}"),
        Check("report-signer-trusted", sig.trusted,
              "报告签名证书链接到信任根" if sig.trusted
              else f"报告签名证书不能链接到信任根：{problems}"),
        Check("report-coverage", whole,
              "签名覆盖整个报告文件" if whole else
              f"签名之后报告被追加了内容（{sig.coverage}，{sig.modification_level}）"),
        Check("report-timestamp", sig.timestamp_ok is True,
              f"报告时间戳有效：{sig.timestamp.isoformat() if sig.timestamp else ''}"
              if sig.timestamp_ok else "报告没有有效的时间戳"),
    ]
    checks += _archive_checks(pdf, roots, others, whole_signature=sig.coverage == "entire-file")
    return checks, verdict


def _archive_checks(pdf: bytes, roots: Sequence[Certificate], others: Sequence[Certificate],
                    *, whole_signature: bool) -> list[Check]:
    """B-LTA: every document (archive) time stamp valid, the newest covering the whole file."""
    try:
        stamps = pdfsign.validate_document_timestamps(pdf, roots, others)
    except pdfsign.PdfSignError as exc:
        return [Check("archive-timestamps", False, f"文档时间戳无法验证：{exc}")]
    checks = [Check(f"archive-timestamp {s.field}", s.ok,
                    f"文档时间戳 {s.time.isoformat() if s.time else ''} 有效（{s.tsa}）" if s.ok
                    else f"文档时间戳 {s.field} 无效：{'；'.join(s.problems)}") for s in stamps]
    if stamps and stamps[-1].coverage != "entire-file":
        checks.append(Check("archive-coverage", False, "最新的文档时间戳之后报告被追加了内容"))
    elif not stamps and not whole_signature:
        checks.append(Check("archive-coverage", False, "签名之后的更新没有文档时间戳覆盖"))
    return checks


# --- the facts -----------------------------------------------------------------------------------


def _log_keys(report: Report, audit_keys: Sequence[SM2PublicKey] | None) -> list[SM2PublicKey]:
    if audit_keys is not None:
        return list(audit_keys)
    keys = []
    for der in report.log_keys:
        try:
            key = load_public_key(der)
        except (SigncoreError, ValueError):
            continue
        if isinstance(key, SM2PublicKey):
            keys.append(key)
    return keys


def _checkpoint_checks(report: Report, keys: Sequence[SM2PublicKey],
                       hasher: Hasher) -> tuple[list[Check], dict[int, bytes]]:
    origin = str(report.appliance.get("origin", ""))
    checks: list[Check] = []
    roots: dict[int, bytes] = {}
    for note in report.checkpoints:
        try:
            parsed, _ = checkpoint.parse(note, hash_size=hasher.digest_size)
        except MalformedCheckpoint as exc:
            checks.append(Check("checkpoint", False, f"签名树头格式错误：{exc}"))
            continue
        name = f"checkpoint {parsed.size}"
        if parsed.origin != origin:
            checks.append(Check(name, False, f"树头 {parsed.size} 属于另一个日志 "
                                             f"{parsed.origin!r}"))
            continue
        if not _signed(note, keys, origin, hasher):
            checks.append(Check(name, False, f"树头 {parsed.size} 的签名无效（被替换或伪造）"))
            continue
        if parsed.size in roots and roots[parsed.size] != parsed.root_hash:
            checks.append(Check(name, False, f"同一大小 {parsed.size} 有两个不同的树头"))
            continue
        roots[parsed.size] = parsed.root_hash
        checks.append(Check(name, True, f"树头 {parsed.size} 签名有效"))
    if not roots:
        checks.append(Check("checkpoints", False, "报告没有可验证的签名树头"))
    return checks, roots


def _signed(note: str, keys: Sequence[SM2PublicKey], origin: str, hasher: Hasher) -> bool:
    for key in keys:
        try:
            checkpoint.verify(note, key, origin, hash_size=hasher.digest_size)
            return True
        except (CheckpointSignatureError, MalformedCheckpoint):
            continue
    return False


def _inclusion_checks(report: Report, roots: dict[int, bytes], hasher: Hasher) -> list[Check]:
    checks = []
    seen: set[int] = set()
    for entry in report.entries:
        name = f"inclusion #{entry.seq}"
        if entry.seq in seen:
            checks.append(Check(name, False, f"条目 #{entry.seq} 重复出现"))
            continue
        seen.add(entry.seq)
        root = roots.get(entry.tree_size)
        if root is None:
            checks.append(Check(name, False, f"条目 #{entry.seq} 所对的树头 {entry.tree_size} "
                                             f"缺失或无效"))
            continue
        try:
            verify_inclusion(hasher, index=entry.seq, size=entry.tree_size,
                             leaf_hash=entry.leaf_hash(hasher), proof=entry.proof, root=root)
        except InvalidProof:
            checks.append(Check(name, False, f"审计条目 #{entry.seq} 不在树头 {entry.tree_size} "
                                             f"中（条目内容或证明被改动）"))
            continue
        checks.append(Check(name, True, f"审计条目 #{entry.seq} 的包含证明成立"))
    return checks


def _consistency_checks(report: Report, roots: dict[int, bytes], hasher: Hasher) -> list[Check]:
    if not roots:
        return []
    newest = max(roots)
    links = {(c.first, c.second): c for c in report.consistency}
    checks = []
    for size in sorted(roots):
        if size == newest:
            continue
        name = f"consistency {size}->{newest}"
        link = links.get((size, newest))
        if link is None:
            checks.append(Check(name, False, f"缺少树头 {size} 到 {newest} 的一致性证明"))
            continue
        try:
            verify_consistency(hasher, size1=size, size2=newest, proof=link.proof,
                               root1=roots[size], root2=roots[newest])
        except InvalidProof:
            checks.append(Check(name, False, f"树头 {newest} 不是树头 {size} 的延续（日志被"
                                             f"改写或分叉）"))
            continue
        checks.append(Check(name, True, f"树头 {size} 到 {newest} 一致"))
    return checks


def _fact_checks(report: Report) -> list[Check]:
    checks = []
    for sig in report.signatures:
        name = f"facts signature {sig.index + 1}"
        try:
            records = [report.entry(seq).record() for seq in sorted(sig.entries)]
        except MalformedReport as exc:
            checks.append(Check(name, False, f"签名 {sig.index + 1}：{exc}"))
            continue
        derived = derive_process(records)
        if derived != sig.process:
            wrong = sorted(k for k in {*derived, *sig.process}
                           if derived.get(k) != sig.process.get(k))
            checks.append(Check(name, False, f"签名 {sig.index + 1} 的过程事实与其审计条目不符："
                                             f"{', '.join(wrong)}"))
            continue
        if report.sign_request_id and derived["sign_request_id"] not in (
                None, report.sign_request_id):
            checks.append(Check(name, False, f"签名 {sig.index + 1} 的条目属于另一签名请求"))
            continue
        if derived["signed_at"] is None:
            checks.append(Check(name, False, f"签名 {sig.index + 1} 没有签署过程的审计记录"))
            continue
        checks.append(Check(name, True, f"签名 {sig.index + 1} 的过程事实与审计条目一致"))
    return checks


def _document_check(report: Report, document: bytes) -> Check:
    same = (hmac.compare_digest(sm3(document).hex(), report.document.sm3)
            and hmac.compare_digest(hashlib.sha256(document).hexdigest(),
                                    report.document.sha256))
    return Check("document-digest", same,
                 "文档摘要与报告记录一致" if same else
                 "文档摘要与报告记录不一致（文档被改动，或不是本报告所指的文档）")


def verify_facts(report: Report, *, audit_keys: Sequence[SM2PublicKey] | None = None,
                 document: bytes | None = None, hasher: Hasher = SM3) -> list[Check]:
    """Checks 3 to 7 of the module docstring over facts already read."""
    checks, roots = _checkpoint_checks(report, _log_keys(report, audit_keys), hasher)
    checks += _inclusion_checks(report, roots, hasher)
    checks += _consistency_checks(report, roots, hasher)
    checks += _fact_checks(report)
    if report.problems:  # what the appliance itself found while collecting
        checks.append(Check("collection", False, "生成报告时发现：" + "；".join(report.problems)))
    if document is not None:
        checks.append(_document_check(report, document))
    return checks


def verify_report(pdf: bytes, *, document: bytes | None = None,
                  trust: Sequence[Certificate] | None = None,
                  audit_keys: Sequence[SM2PublicKey] | None = None,
                  hasher: Hasher = SM3) -> Verdict:
    """Every check of the module docstring; never raises for what it finds."""
    try:
        report = read_facts(pdf)
    except EvidenceError as exc:
        return Verdict([Check("report-facts", False, str(exc))])
    checks, verdict = _signature_checks(pdf, report, trust)
    verdict.checks = [*checks, Check("report-facts", True, "报告事实可读取"),
                      *verify_facts(report, audit_keys=audit_keys, document=document,
                                    hasher=hasher)]
    verdict.report = report
    return verdict
