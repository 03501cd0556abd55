"""The evidence report as a zh-CN PDF, with its facts embedded as a file.

reportlab draws the pages (A4; the CJK TrueType font pdfsign finds, subset-embedded with a
ToUnicode map so the text is extractable); pyHanko then embeds :meth:`Report.to_bytes` as the
attached file ``evidence.json`` in an incremental update.  The appliance signs the result
(PAdES), so the signature covers both what the pages show and the facts the offline verifier
reads: the pages are drawn from those same facts and nothing else.

Threat model: rendering runs on the appliance over facts it produced; every text drawn comes
from the report (audit details included), so it is drawn as text only, never interpreted.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
from collections.abc import Iterable
from typing import Any

from pyhanko.pdf_utils.embed import EmbeddedFileObject, EmbeddedFileParams, FileSpec, embed_file
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from evidence.report import ACTION_LABELS, Report, SignatureFacts
from pdfsign._fonts import cjk_font_path
from signcore.hashes import sm3

__all__ = ["ATTACHMENT", "render_pdf"]

ATTACHMENT = "evidence.json"
FONT = "MedsignCJK"
MARGIN = 50.0
WIDTH, HEIGHT = A4
LINE = 15.0

_STATUS = {"good": "有效（未吊销）", "revoked": "已吊销", "expired": "已过期",
           "unknown": "未知（无法取得吊销信息）", "not-yet-valid": "尚未生效"}
_CONFIRMATION = {"pin": "输入 PIN 确认", "auto-sign": "免密签名授权（授权时已输入 PIN）",
                 "face": "人脸核验确认"}


@functools.cache
def _font() -> str:
    path = cjk_font_path()
    options: dict[str, Any] = {"subfontIndex": 0} if path.read_bytes()[:4] == b"ttcf" else {}
    pdfmetrics.registerFont(TTFont(FONT, str(path), **options))
    return FONT


@functools.lru_cache(maxsize=8192)
def _advance(font: str, char: str) -> float:
    """The advance width of ``char`` at size 1."""
    return float(pdfmetrics.stringWidth(char, font, 1.0))


class _Pages:
    """A cursor over A4 pages: lines of text wrapped to the width, new pages as needed."""

    def __init__(self, out: io.BytesIO, title: str) -> None:
        self.font = _font()
        self.canvas = canvas.Canvas(out, pagesize=A4, pageCompression=1, invariant=1)
        self.canvas.setTitle(title)
        self.canvas.setAuthor("medsign")
        self.page = 1
        self.y = HEIGHT - MARGIN
        self._start_page()

    def _start_page(self) -> None:
        self.canvas.setFont(self.font, 8)
        self.canvas.drawRightString(WIDTH - MARGIN, MARGIN / 2, f"第 {self.page} 页")
        self.y = HEIGHT - MARGIN

    def new_page(self) -> None:
        self.canvas.showPage()
        self.page += 1
        self._start_page()

    def _wrap(self, text: str, size: float, width: float) -> list[str]:
        """Lines of at most ``width`` points (character by character: CJK has no spaces;
        reportlab's TrueType widths are the sums of the characters' advances)."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            current: list[str] = []
            used = 0.0
            for char in paragraph:
                advance = _advance(self.font, char) * size
                if used + advance > width and current:
                    lines.append("".join(current))
                    current, used = [], 0.0
                current.append(char)
                used += advance
            lines.append("".join(current))
        return lines

    def text(self, text: str, *, size: float = 10, indent: float = 0) -> None:
        width = WIDTH - 2 * MARGIN - indent
        for line in self._wrap(text, size, width):
            if self.y < MARGIN + size:
                self.new_page()
            self.canvas.setFont(self.font, size)
            self.canvas.drawString(MARGIN + indent, self.y, line)
            self.y -= size * 1.5

    def heading(self, text: str, size: float = 14) -> None:
        if self.y < MARGIN + 4 * LINE:
            self.new_page()
        self.y -= 4
        self.text(text, size=size)
        self.canvas.line(MARGIN, self.y + size * 0.9, WIDTH - MARGIN, self.y + size * 0.9)
        self.y -= 4

    def pairs(self, rows: Iterable[tuple[str, str]], *, indent: float = 0) -> None:
        for label, value in rows:
            self.text(f"{label}：{value}", indent=indent)

    def save(self) -> None:
        self.canvas.save()


def _time(value: str | None) -> str:
    """ISO time as Beijing time with the offset, for the reader (the JSON keeps UTC)."""
    if not value:
        return "—"
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    beijing = parsed.astimezone(dt.timezone(dt.timedelta(hours=8)))
    return beijing.strftime("%Y-%m-%d %H:%M:%S") + "（北京时间）"


def _cover(pages: _Pages, report: Report) -> None:
    pages.text("电子签名证据报告", size=22)
    pages.y -= 6
    valid = report.verdict == "valid"
    count = len(report.signatures)
    verdict = (f"结论：有效 —— 文档上的全部 {count} 个签名均验证通过" if valid else
               "结论：无效 —— 文档没有签名，或至少一个签名未通过验证")
    pages.text(verdict, size=14)
    pages.y -= 6
    doc = report.document
    pages.pairs([
        ("报告编号", report.report_id),
        ("生成时间", _time(report.generated_at)),
        ("生成设备", f"{report.appliance.get('name', '')}（审计日志 "
                 f"{report.appliance.get('origin', '')}，节点 "
                 f"{report.appliance.get('node_id', '')}）"),
        ("签名请求", report.sign_request_id or "—（按上传文档取证）"),
        ("文档名称", doc.name or "—"), ("文档大小", f"{doc.size} 字节"),
        ("文档 SM3", doc.sm3), ("文档 SHA-256", doc.sha256),
    ])
    pages.y -= 6
    pages.heading("签名一览", 12)
    for sig in report.signatures:
        state = "有效" if sig.valid else "无效"
        pages.text(f"{sig.index + 1}. {sig.signer or '（未知签名人）'} —— {state}；签名时间 "
                   f"{_time(sig.timestamp or sig.signing_time)}")
    pages.y -= 6
    pages.text("本报告由签名设备以其证书签名并加盖时间戳；报告的全部事实以附件 evidence.json "
               "嵌入本 PDF，可用 medsign evidence verify 离线核验（无需数据库与网络）。", size=9)


def _details_text(record: dict[str, Any]) -> str:
    details = record["details"]
    keep = {k: v for k, v in details.items() if k not in ("documents",)}
    text = json.dumps(keep, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 400 else text[:400] + "…"


def _timeline(pages: _Pages, report: Report) -> None:
    pages.heading("签署过程时间线")
    for entry in report.entries:
        record = entry.record()
        label = ACTION_LABELS.get(record["action"], record["action"])
        pages.text(f"{_time(record['created_at'])}  #{entry.seq}  {label}", size=10)
        pages.text(f"操作者 {record['actor'] or '—'}；对象 {record['subject'] or '—'}；"
                   f"详情 {_details_text(record)}", size=8, indent=12)


def _signature(pages: _Pages, report: Report, sig: SignatureFacts) -> None:
    pages.heading(f"签名 {sig.index + 1}：{sig.signer or '（未知签名人）'}")
    process, checks, status = sig.process, sig.checks, sig.certificate_status
    grant = process.get("auto_sign")
    fingerprint = sm3(sig.certificate).hex() if sig.certificate else "—"
    identity = process.get("identity_check")
    pages.pairs([
        ("结论", "有效" if sig.valid else "无效"),
        ("签名类型", f"{sig.kind.upper()}（{sig.field}）；算法 {sig.algorithm or '—'}"),
        ("签名人证书", sig.signer or "—"),
        ("证书 SM3 指纹", fingerprint),
        ("证书状态（签署时）", _STATUS.get(str(status.get("at_signing")),
                                   str(status.get("at_signing")))),
        ("证书状态（现在）", _STATUS.get(str(status.get("now")), str(status.get("now")))),
        ("声明的签名时间", _time(sig.signing_time)),
        ("时间戳时间", _time(sig.timestamp)),
        ("签名请求", str(process.get("sign_request_id") or "—")),
        ("请求创建", f"{_time(process.get('requested_at'))}，由 "
                 f"{process.get('requested_by') or '—'}"
                 f"{'，已通知签名人' if process.get('notified') else ''}"),
        ("签名人编号", str(process.get("signer_id") or "—")),
        ("签名设备", str(process.get("device_id") or "—")),
        ("IP 地址", str(process.get("ip") or "—（未记录）")),
        ("身份核验", f"手机激活码绑定，通过（{_time(identity.get('at'))}）"
         if isinstance(identity, dict) else "—（本报告未包含绑定记录）"),
        ("确认方式", _CONFIRMATION.get(str(process.get("confirmation")),
                                  str(process.get("confirmation") or "—"))),
        ("免密授权", f"{grant.get('id')}，{_time(grant.get('granted_at'))} 开启，"
                 f"{grant.get('minutes') or '?'} 分钟内至多 {grant.get('max_count') or '?'} 次"
         if isinstance(grant, dict) else "未使用"),
        ("协同签名会话", str(process.get("session") or "—")),
        ("完成签名", _time(process.get("signed_at"))),
        ("审计日志条目", "、".join(f"#{s}" for s in sig.entries) or "—"),
    ])
    problems = checks.get("problems") or []
    pages.text("校验项：" + "；".join(f"{k}={v}" for k, v in sorted(checks.items())
                                    if k != "problems"), size=8)
    if problems:
        pages.text("问题：" + "；".join(str(p) for p in problems), size=9)


def _appendix(pages: _Pages, report: Report) -> None:
    pages.new_page()
    pages.heading("附录：审计日志证明")
    pages.text("审计日志为 RFC 6962/9162 Merkle 树（SM3）；每个条目的叶子数据、其对签名树头的包含"
               "证明，以及各树头到最新树头的一致性证明如下（base64）。", size=9)
    pages.heading("签名树头（checkpoint）", 11)
    for note in report.checkpoints:
        pages.text(note, size=7)
    pages.heading("审计日志公钥", 11)
    for key in report.log_keys:
        pages.text(base64.b64encode(key).decode(), size=7)
    pages.heading("条目与包含证明", 11)
    for entry in report.entries:
        pages.text(f"#{entry.seq}（树大小 {entry.tree_size}）叶子数据：{entry.leaf}", size=7)
        pages.text("包含证明：" + " ".join(base64.b64encode(h).decode()
                                        for h in entry.proof), size=7, indent=12)
    pages.heading("一致性证明", 11)
    for link in report.consistency:
        pages.text(f"{link.first} → {link.second}：" + " ".join(
            base64.b64encode(h).decode() for h in link.proof), size=7)


def render_pdf(report: Report) -> bytes:
    """The unsigned report PDF: the pages, then ``evidence.json`` attached (see module doc)."""
    out = io.BytesIO()
    pages = _Pages(out, f"电子签名证据报告 {report.report_id}")
    _cover(pages, report)
    pages.new_page()
    _timeline(pages, report)
    for sig in report.signatures:
        _signature(pages, report, sig)
    _appendix(pages, report)
    pages.save()
    return _attach(out.getvalue(), report.to_bytes())


def _attach(pdf: bytes, facts: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    data = EmbeddedFileObject.from_file_data(
        writer, facts, mime_type="application/json",
        params=EmbeddedFileParams(embed_size=True, embed_checksum=True))
    embed_file(writer, FileSpec(file_spec_string=ATTACHMENT, file_name=ATTACHMENT,
                                embedded_data=data, description="证据报告的全部事实（JSON）"))
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


