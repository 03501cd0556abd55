"""``medsign evidence verify REPORT.pdf``: the offline verifier of evidence reports.

No configuration, no database, no network: the report carries its facts, proofs, checkpoints,
audit keys and certificate chain (:mod:`evidence.verify`).  Exit 0 when every check holds, 1
when one fails (each named on stdout), 2 for unreadable input (one line on stderr).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from appliance.cli._common import EXIT_INVALID, EXIT_OK, CliError
from evidence.verify import Verdict, verify_report
from signcore.errors import SigncoreError
from signcore.keys import load_public_key
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, load_certificate

READ_LIMIT = 64 * 1024 * 1024


def _read(path: str, what: str) -> bytes:
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(READ_LIMIT + 1)
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > READ_LIMIT:
        raise CliError(f"{what} {path} is larger than {READ_LIMIT} bytes")
    return data


def _certificates(paths: tuple[str, ...]) -> list[Certificate] | None:
    if not paths:
        return None
    out = []
    for path in paths:
        try:
            out.append(load_certificate(_read(path, "trust root")))
        except (SigncoreError, ValueError) as exc:
            raise CliError(f"{path} is not a certificate: {exc}") from None
    return out


def _audit_keys(paths: tuple[str, ...]) -> list[SM2PublicKey] | None:
    if not paths:
        return None
    out = []
    for path in paths:
        try:
            key = load_public_key(_read(path, "audit key"))
        except (SigncoreError, ValueError) as exc:
            raise CliError(f"{path} is not a public key: {exc}") from None
        if not isinstance(key, SM2PublicKey):
            raise CliError(f"{path} is not an SM2 public key")
        out.append(key)
    return out


def _print(verdict: Verdict, pinned: bool) -> None:
    report = verdict.report
    assert report is not None
    state = "有效" if verdict.ok else "无效"
    print(f"证据报告 {report.report_id}：{state}")
    print(f"  报告签名人：{verdict.signer or '—'}")
    root = verdict.root_fingerprint or "—"
    hint = "" if pinned else "（未指定 --trust：请与医院公布的根证书指纹比对）"
    print(f"  信任根 SHA-256：{root}{hint}")
    print(f"  文档：{report.document.name or '—'}  SM3 {report.document.sm3}")
    print(f"  生成时的文档结论：{'有效' if report.verdict == 'valid' else '无效'}；"
          f"签名 {len(report.signatures)} 个，审计条目 {len(report.entries)} 条，"
          f"签名树头 {len(report.checkpoints)} 个")
    failures = verdict.failures
    print(f"  检查 {len(verdict.checks)} 项，通过 {len(verdict.checks) - len(failures)} 项")
    for check in failures:
        print(f"  失败 {check.name}：{check.detail}")


@click.group(name="evidence")
def evidence() -> None:
    """Evidence reports (一键取证)."""


@evidence.command(name="verify")
@click.argument("report_path", metavar="REPORT.pdf")
@click.option("--document", "document_path", metavar="DOC",
              help="the document the report speaks about: its digest must match")
@click.option("--trust", "trust_paths", metavar="ROOT.pem", multiple=True,
              help="trust only this root for the report's signature (repeatable)")
@click.option("--audit-key", "audit_key_paths", metavar="KEY.pem", multiple=True,
              help="pin the audit log's checkpoint key (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON")
def verify(report_path: str, document_path: str | None, trust_paths: tuple[str, ...],
           audit_key_paths: tuple[str, ...], as_json: bool) -> int:
    """Check an evidence report offline (exit 0 valid, 1 invalid, 2 bad input)."""
    # pyHanko logs a failed path build with its traceback; the verdict names the failure.
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    pdf = _read(report_path, "report")
    document = _read(document_path, "document") if document_path else None
    verdict = verify_report(pdf, document=document, trust=_certificates(trust_paths),
                            audit_keys=_audit_keys(audit_key_paths))
    if verdict.report is None:
        raise CliError(f"{report_path}: {verdict.failures[0].detail}")
    if as_json:
        print(json.dumps(verdict.to_json(), ensure_ascii=False, indent=2))
    else:
        _print(verdict, bool(trust_paths))
    return EXIT_OK if verdict.ok else EXIT_INVALID


COMMANDS = [evidence]
