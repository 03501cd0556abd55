"""Batch import of signers from CSV and XLSX, with a per-row error report (tender 1.3.2 item 7).

The first sheet of an XLSX workbook (read-only mode, formulas refused) or a CSV file (UTF-8 with
or without BOM, GB18030 as Chinese Excel saves it, UTF-16 "Unicode text"; comma, semicolon or
tab separated).  The header row is found among the first rows by its column names, Chinese
(姓名, 身份证号, 手机号, 类别, 科室, 职称, 资格证书编号, 执业证书编号) or English
(name, id_number, ...); unknown columns are ignored and named in the report.

Each row is validated on its own; valid rows are created as ``pending_review``, one transaction
per :data:`BATCH_ROWS` rows.  A row whose ID number or phone is already registered, or appears
on an earlier row of the file, is a row error.  Row numbers in the report are the spreadsheet's
(the header is usually row 1, so the first person is row 2).  The report never contains an ID
number or a phone number, only where the problem is and why, in Chinese.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from appliance.errors import PayloadTooLarge, ValidationFailed
from appliance.services.signers import (
    FIELD_LABELS,
    FIELDS,
    PENDING_REVIEW,
    Actor,
    Duplicate,
    FieldError,
    NewSigner,
    SignerService,
    check_field,
    required_for_review,
)

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ROWS = 50_000
MAX_COLUMNS = 64
MAX_XLSX_UNPACKED = 256 * 1024 * 1024  # zip bombs: the sum of the members' sizes
HEADER_SEARCH_ROWS = 10
BATCH_ROWS = 500

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ProgressCallback = Callable[[int, int], None]

# Header text (normalized: lower case, no spaces, no "*" and no parenthesized hints) -> field.
HEADER_ALIASES: dict[str, str] = {
    "姓名": "name", "name": "name", "fullname": "name",
    "身份证号": "id_number", "身份证号码": "id_number", "身份证": "id_number",
    "公民身份号码": "id_number", "证件号码": "id_number", "id_number": "id_number",
    "idnumber": "id_number", "id_no": "id_number", "idno": "id_number",
    "手机号": "phone", "手机号码": "phone", "手机": "phone", "联系电话": "phone",
    "phone": "phone", "mobile": "phone",
    "类别": "kind", "人员类别": "kind", "类型": "kind", "kind": "kind", "type": "kind",
    "科室": "department", "部门": "department", "所在科室": "department",
    "department": "department", "dept": "department",
    "职称": "title", "title": "title",
    "资格证书编号": "qualification_no", "医师资格证书编号": "qualification_no",
    "资格证书编码": "qualification_no", "资格证号": "qualification_no",
    "qualification_no": "qualification_no", "qualificationno": "qualification_no",
    "执业证书编号": "practice_no", "执业证书编码": "practice_no", "医师执业证书编码": "practice_no",
    "医师执业证书编号": "practice_no", "执业证号": "practice_no", "practice_no": "practice_no",
    "practiceno": "practice_no",
}
# Every row needs these; 资格证书编号 only for doctors, so a nurses' file may leave it out.
HEADER_REQUIRED = ("name", "id_number", "kind", "phone", "department", "title", "practice_no")
_HINT = re.compile(r"[（(【\[].*?[）)】\]]")
_SCIENTIFIC = re.compile(r"\d(\.\d+)?[eE]\+?\d+")
# Numbers longer than this lost digits in Excel (it keeps 15 significant digits).
_EXACT_DIGITS = 15


class ImportRefused(ValidationFailed):
    """The file as a whole cannot be imported (format, encoding, header, size)."""

    code, title = "import-refused", "导入文件无法处理"


@dataclasses.dataclass(frozen=True)
class RowError:
    row: int  # as the spreadsheet numbers it (1-based, header included)
    column: str  # the column's header as written in the file ("" for the whole row)
    field: str  # API name of the field ("" for the whole row)
    reason: str  # zh-CN
    name: str = ""  # the row's 姓名, to help staff find it (no other personal data)


@dataclasses.dataclass
class ImportReport:
    """Totals and row errors of one import; :meth:`to_csv` is the downloadable error list."""

    file_format: str
    encoding: str
    total_rows: int = 0  # data rows with any content
    created: int = 0  # with dry_run: rows that would be created
    failed: int = 0
    blank_rows: int = 0
    dry_run: bool = False
    ignored_columns: list[str] = dataclasses.field(default_factory=list)
    errors: list[RowError] = dataclasses.field(default_factory=list)
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        return out

    def to_csv(self) -> bytes:
        """The error list as CSV (UTF-8 with BOM, so that Excel opens it in Chinese)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(["行号", "姓名", "列", "错误原因"])
        for error in self.errors:
            writer.writerow([error.row, _csv_safe(error.name), _csv_safe(error.column),
                             error.reason])
        writer.writerow([])
        writer.writerow(["合计", f"数据行 {self.total_rows}", f"成功 {self.created}",
                         f"失败 {self.failed}"])
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _csv_safe(text: str) -> str:
    # The report echoes header and name cells: never let a spreadsheet run them as formulas.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --------------------------------------------------------------------------- reading


@dataclasses.dataclass
class Table:
    """Rows of cells after the header; ``columns`` maps a cell index to (field, header)."""

    file_format: str
    encoding: str
    header_row: int
    columns: dict[int, tuple[str, str]]
    ignored: list[str]
    rows: list[tuple[int, Sequence[object]]]  # data rows, blank ones left out
    blank_rows: int = 0


def read_table(data: bytes) -> Table:
    """Parse a CSV or XLSX file into its header and data rows, or :class:`ImportRefused`."""
    if len(data) > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"文件超过 {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if data.startswith(b"PK\x03\x04"):
        file_format, encoding, raw = "xlsx", "", _xlsx_rows(data)
    elif data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportRefused("不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV 后再导入")
    else:
        text, encoding = decode_csv(data)
        file_format, raw = "csv", _csv_rows(text)
    return _table(file_format, encoding, raw)


def _table(file_format: str, encoding: str, raw: Iterator[tuple[int, Sequence[object]]]) -> Table:
    header_row, header = _find_header(raw)
    columns, ignored = _map_header(header)
    table = Table(file_format, encoding, header_row, columns, ignored, [])
    blanks = 0  # blank rows count only between data rows, not in a formatted tail
    for number, cells in raw:
        if _blank(columns, cells):
            blanks += 1
            continue
        if len(table.rows) >= MAX_ROWS:
            raise ImportRefused(f"数据行超过 {MAX_ROWS} 行，请分成多个文件导入")
        table.rows.append((number, cells))
        table.blank_rows += blanks
        blanks = 0
    return table


def _blank(columns: Mapping[int, tuple[str, str]], cells: Sequence[object]) -> bool:
    for index in columns:
        value = cells[index] if index < len(cells) else None
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return False
    return True


def decode_csv(data: bytes) -> tuple[str, str]:
    """The text of a CSV file and the encoding it was in."""
    candidates: tuple[str, ...]
    if data.startswith(b"\xef\xbb\xbf"):
        candidates = ("utf-8-sig",)
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ("utf-16",)
    else:
        candidates = ("utf-8", "gb18030")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text, encoding
    raise ImportRefused("无法识别文件编码，请保存为 UTF-8 或 GB18030 编码的 CSV，或 .xlsx 文件")


def _csv_rows(text: str) -> Iterator[tuple[int, Sequence[object]]]:
    first_line = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            if len(cells) > MAX_COLUMNS:
                raise ImportRefused(f"第 {number} 行超过 {MAX_COLUMNS} 列")
            yield number, cells
    except csv.Error as exc:
        raise ImportRefused(f"CSV 格式错误（第 {number + 1} 行附近）：{exc}") from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, Sequence[object]]]:
    import openpyxl  # noqa: PLC0415  (heavy; only XLSX imports need it)

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_XLSX_UNPACKED:
            raise ImportRefused("XLSX 文件解压后过大")
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except ImportRefused:
        raise
    except Exception:
        raise ImportRefused("无法读取该 XLSX 文件，请确认文件未损坏"
                            "并以 Excel 工作簿格式保存") from None
    try:
        sheet = _pick_sheet(workbook)
        yield from enumerate(sheet.iter_rows(min_row=1, max_col=MAX_COLUMNS, values_only=True),
                             start=1)
    except ImportRefused:
        raise
    except Exception:
        raise ImportRefused("读取 XLSX 文件内容失败，请确认文件未损坏") from None
    finally:
        workbook.close()


def _pick_sheet(workbook: Any) -> Any:
    """The first worksheet with a header row (a template may open with an instructions
    sheet), else the first one."""
    for sheet in workbook.worksheets:
        rows = sheet.iter_rows(min_row=1, max_row=HEADER_SEARCH_ROWS, max_col=MAX_COLUMNS,
                               values_only=True)
        if any(_is_header(cells) for cells in rows):
            return sheet
    return workbook.worksheets[0]


def normalize_header(text: object) -> str:
    if text is None:
        return ""
    value = _HINT.sub("", str(text)).replace("*", "").replace("＊", "")
    return "".join(value.split()).lower()


def _find_header(raw: Iterator[tuple[int, Sequence[object]]]) -> tuple[int, Sequence[object]]:
    """The first row naming at least the three required columns (a title row may precede)."""
    for number, cells in raw:
        if _is_header(cells):
            return number, cells
        if number >= HEADER_SEARCH_ROWS:
            break
    raise ImportRefused("未找到表头：第一行应包含列名 姓名、身份证号、类别"
                        "（以及手机号、科室、职称、资格证书编号、执业证书编号）")


def _is_header(cells: Sequence[object]) -> bool:
    fields = {HEADER_ALIASES.get(normalize_header(c)) for c in cells}
    return {"name", "id_number", "kind"} <= fields


def _map_header(header: Sequence[object]) -> tuple[dict[int, tuple[str, str]], list[str]]:
    columns: dict[int, tuple[str, str]] = {}
    seen: dict[str, str] = {}
    ignored: list[str] = []
    for index, cell in enumerate(header):
        label = "" if cell is None else str(cell).strip()
        field = HEADER_ALIASES.get(normalize_header(cell))
        if field is None:
            if label:
                ignored.append(label)
            continue
        if field in seen:
            raise ImportRefused(f"表头中“{seen[field]}”与“{label}”是同一列，请删除其中一列")
        seen[field] = label
        columns[index] = (field, label)
    missing = [FIELD_LABELS[f] for f in HEADER_REQUIRED if f not in seen]
    if missing:
        raise ImportRefused(f"表头缺少以下列：{'、'.join(missing)}")
    return columns, ignored


# --------------------------------------------------------------------------- validating


def cell_text(value: object, field: str) -> str:
    """A cell as text; numbers Excel cannot have kept exactly, dates and booleans refused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise FieldError("应为文本，不能是逻辑值")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 10**_EXACT_DIGITS:
            return str(int(value))
        raise FieldError("被 Excel 存成了数字，位数已丢失；请将该列设为“文本”格式后重新填写")
    if isinstance(value, str):
        text = value.strip()
        if field in ("id_number", "phone", "qualification_no", "practice_no") and \
                _SCIENTIFIC.fullmatch(text):
            raise FieldError("被 Excel 显示成了科学计数法，位数已丢失；请将该列设为“文本”格式后"
                             "重新填写")
        return value
    raise FieldError("应为文本，不能是日期或时间")


def _safe_name(value: object) -> str:
    """The row's name for the report, only if it looks like a name (a swapped column must not
    put an ID number into the report)."""
    try:
        return check_field("name", cell_text(value, "name"))
    except FieldError:
        return ""


@dataclasses.dataclass
class _Row:
    number: int
    name: str
    values: dict[str, str]
    errors: list[RowError]


def _validate_row(table: Table, number: int, cells: Sequence[object]) -> _Row:
    """The row's normalized values and its errors."""
    raw = {field: (label, cells[i] if i < len(cells) else None)
           for i, (field, label) in table.columns.items()}
    row = _Row(number, _safe_name(raw["name"][1]), {}, [])
    for field, (label, value) in raw.items():
        try:
            row.values[field] = check_field(field, cell_text(value, field))
        except FieldError as exc:
            row.errors.append(RowError(number, label, field, exc.reason, row.name))
    if not row.errors:
        labels = {f: label for f, (label, _) in raw.items()}
        for field in required_for_review(row.values):
            row.errors.append(RowError(number, labels.get(field, FIELD_LABELS[field]), field,
                                       "不能为空" if field in labels else "缺少该列",
                                       row.name))
    return row


# --------------------------------------------------------------------------- importing


class _Importer:
    """One import: validates chunks of rows, checks duplicates, inserts, reports."""

    def __init__(self, service: SignerService, table: Table, actor: Actor,
                 progress: ProgressCallback | None, dry_run: bool) -> None:
        self.service, self.table, self.actor = service, table, actor
        self.progress, self.dry_run = progress, dry_run
        self.keyring = service.keyring()
        self.report = ImportReport(table.file_format, table.encoding, dry_run=dry_run,
                                   blank_rows=table.blank_rows, ignored_columns=table.ignored)
        self.first_seen: dict[str, tuple[str, int]] = {}  # HMAC -> (field, first row)
        self.labels = {field: label for field, label in table.columns.values()}

    def run(self) -> ImportReport:
        total = len(self.table.rows)
        self._progress(0, total)
        for start in range(0, total, BATCH_ROWS):
            chunk = self.table.rows[start:start + BATCH_ROWS]
            self._chunk(chunk)
            self._progress(start + len(chunk), total)
        return self.report

    def _progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def _chunk(self, chunk: Sequence[tuple[int, Sequence[object]]]) -> None:
        ready: list[tuple[_Row, NewSigner]] = []
        for number, cells in chunk:
            row = _validate_row(self.table, number, cells)
            self.report.total_rows += 1
            record = None if row.errors else self.service.prepare(self.keyring, row.values)
            if record is not None:
                self._check_in_file(row, record)
            if row.errors or record is None:
                self._fail(row.errors)
            else:
                ready.append((row, record))
        self._insert(ready)

    def _check_in_file(self, row: _Row, record: NewSigner) -> None:
        for field, digest in (("id_number", record.id_hmac), ("phone", record.phone_hmac)):
            if digest is None:
                continue
            if digest in self.first_seen:
                _, first = self.first_seen[digest]
                row.errors.append(RowError(row.number, self.labels[field], field,
                                           f"与第 {first} 行的{FIELD_LABELS[field]}重复",
                                           row.name))
        if not row.errors:
            self.first_seen[record.id_hmac] = ("id_number", row.number)
            if record.phone_hmac:
                self.first_seen[record.phone_hmac] = ("phone", row.number)

    def _insert(self, ready: list[tuple[_Row, NewSigner]]) -> None:
        if not ready:
            return
        records = [record for _, record in ready]
        outcomes: Sequence[int | Duplicate | None] = (
            self.service.existing(records) if self.dry_run
            else self.service.insert_many(records, self.actor, status=PENDING_REVIEW))
        for (row, _), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, Duplicate):
                label = FIELD_LABELS[outcome.field]
                self._fail([RowError(row.number, self.labels[outcome.field], outcome.field,
                                     f"该{label}已登记（签署人 {outcome.signer_id}）", row.name)])
            else:
                self.report.created += 1

    def _fail(self, errors: list[RowError]) -> None:
        self.report.failed += 1
        self.report.errors.extend(errors)


def import_data(service: SignerService, data: bytes, actor: Actor, *,
                progress: ProgressCallback | None = None, dry_run: bool = False) -> ImportReport:
    """Import signers from the bytes of a CSV or XLSX file; with ``dry_run`` only check."""
    started = time.perf_counter()
    table = read_table(data)
    report = _Importer(service, table, actor, progress, dry_run).run()
    report.elapsed_seconds = time.perf_counter() - started
    if not dry_run:
        service.log_import(actor, {"format": report.file_format, "rows": report.total_rows,
                                   "created": report.created, "failed": report.failed})
    return report


def import_file(service: SignerService, path: str | Path, actor: Actor,
                progress: ProgressCallback | None = None, *,
                dry_run: bool = False) -> ImportReport:
    """Import signers from a CSV or XLSX file (``medsign signer import FILE``).

    ``progress(rows_processed, total_rows)`` is called before the first row and after each
    batch.  File-level problems raise :class:`ImportRefused` (or PayloadTooLarge); row-level
    problems are in the report.  For the command line::

        service = SignerService(database, key_holder, audit=audit_log)
        with click.progressbar(length=1, label="导入") as bar:
            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)
            report = import_file(service, path, CliActor(getpass.getuser()), progress)
        Path("errors.csv").write_bytes(report.to_csv())
    """
    path = Path(path)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PayloadTooLarge(f"文件超过 {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return import_data(service, path.read_bytes(), actor, progress=progress, dry_run=dry_run)


__all__ = ["FIELDS", "ImportRefused", "ImportReport", "RowError", "import_data", "import_file",
           "read_table"]
