"""Batch import from CSV (UTF-8, UTF-8 with BOM, GB18030, UTF-16) and XLSX on both engines:
per-row errors with the spreadsheet's row numbers, duplicates in the file and in the database,
the CSV report, progress, limits, and speed."""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select

from appliance.api.access import Principal
from appliance.errors import PayloadTooLarge
from appliance.services import imports
from appliance.services.imports import ImportRefused, ImportReport, import_data, import_file
from appliance.services.signers import PENDING_REVIEW, CliActor, SignerService
from appliance.storage import Database, schema
from tests.appliance.signers.conftest import AuditRecorder, signer_data, unique_id_number

DATA = Path(__file__).with_name("data")
SAMPLE = DATA / "signers.csv"
HEADER = ["姓名", "身份证号", "手机号", "类别", "科室", "职称", "资格证书编号", "执业证书编号"]
Admins = dict[str, Principal]

# What signers.csv holds: rows 2, 3, 6 and 10 are good; 8 is blank.
SAMPLE_ERRORS = [
    (4, "身份证号", "身份证号校验位错误，请核对号码"),
    (5, "手机号", "手机号应为 11 位中国大陆手机号码"),
    (7, "身份证号", "与第 2 行的身份证号重复"),
    (9, "类别", "类别应为 医师、药师 或 护士（doctor、pharmacist、nurse）"),
]


def _errors(report: ImportReport) -> list[tuple[int, str, str]]:
    return [(e.row, e.column, e.reason) for e in report.errors]


def _check_sample(report: ImportReport, service: SignerService) -> None:
    assert (report.total_rows, report.created, report.failed, report.blank_rows) == (8, 4, 4, 1)
    assert _errors(report) == SAMPLE_ERRORS
    page = service.search(status=PENDING_REVIEW)
    assert sorted(s.name for s in page.items) == ["吴 十", "张三", "李四", "钱七"]
    wu = next(s for s in page.items if s.name == "吴 十")
    assert (wu.kind, wu.phone_masked, wu.department, wu.practice_no) == \
        ("nurse", "138****0008", "儿科, 新生儿", "N-2024-0008")


def test_sample_csv_in_utf8(service: SignerService, admins: Admins) -> None:
    report = import_file(service, SAMPLE, admins["security_admin"])
    assert (report.file_format, report.encoding) == ("csv", "utf-8")
    _check_sample(report, service)


@pytest.mark.parametrize(("encoding", "expected"), [
    ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030"), ("utf-16", "utf-16")])
def test_sample_csv_in_other_encodings(service: SignerService, admins: Admins,
                                       encoding: str, expected: str) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    if encoding == "utf-16":  # Excel's "Unicode text": tab separated
        text = "".join(
            "\t".join(row) + "\r\n" for row in csv.reader(io.StringIO(text, newline="")))
    report = import_data(service, text.encode(encoding), admins["security_admin"])
    assert report.encoding == expected
    _check_sample(report, service)


def _xlsx(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_sample_as_xlsx(service: SignerService, admins: Admins) -> None:
    rows = list(csv.reader(io.StringIO(SAMPLE.read_text(encoding="utf-8"), newline="")))
    report = import_data(service, _xlsx(rows), admins["security_admin"])
    assert report.file_format == "xlsx"
    _check_sample(report, service)


def test_xlsx_cells_excel_gets_wrong(service: SignerService, admins: Admins) -> None:
    """A title row above the header, numbers where text belongs, a formula, a date."""
    good = signer_data(1)
    rows: list[list[Any]] = [
        ["2026 年医护人员导入表"],
        ["*姓名", "身份证号码", "手机号码", "类别(医师/药师/护士)", "科室", "职称",
         "医师资格证书编号", "执业证书编码", "备注"],
        [good["name"], good["id_number"], int(str(good["phone"])), "医师", "外科", "主治医师",
         good["qualification_no"], int(str(good["practice_no"])), "ok"],
        ["李四", float(unique_id_number(2)), "13900000002", "医师", "外科", "主治医师",
         "1", "2", ""],
        ["王五", unique_id_number(3), "13900000003", "医师", "=A1", "主治医师", "1", "3", ""],
        ["赵六", unique_id_number(4), "13900000004", True, "外科", "主治医师", "1", "4", ""],
        ["孙七", unique_id_number(5), "13900000005", "护士", "外科", "护师", None,
         __import__("datetime").datetime(2020, 1, 1), ""],
    ]
    report = import_data(service, _xlsx(rows), admins["security_admin"])
    assert report.ignored_columns == ["备注"]
    assert report.created == 1
    assert [(e.row, e.field) for e in report.errors] == [
        (4, "id_number"), (5, "department"), (6, "kind"), (7, "practice_no")]
    assert "位数已丢失" in report.errors[0].reason
    assert "公式" in report.errors[1].reason
    assert report.errors[1].column == "科室" and report.errors[1].name == "王五"


def test_scientific_notation_from_excel_csv(service: SignerService, admins: Admins) -> None:
    text = ",".join(HEADER) + "\n张三,1.10101E+17,13900000001,医师,外科,主治医师,1,2\n"
    report = import_data(service, text.encode(), admins["security_admin"])
    assert report.errors[0].field == "id_number" and "科学计数法" in report.errors[0].reason


def test_english_headers_and_missing_qualification_column(service: SignerService,
                                                          admins: Admins) -> None:
    nurse, doctor = signer_data(1, kind="nurse"), signer_data(2)
    fields = ["name", "id_number", "phone", "kind", "department", "title", "practice_no"]
    lines = [",".join(fields)] + [",".join(str(d[f]) for f in fields) for d in (nurse, doctor)]
    report = import_data(service, "\n".join(lines).encode(), admins["security_admin"])
    assert report.created == 1
    assert _errors(report) == [(3, "资格证书编号", "缺少该列")]


def test_duplicates_against_the_database(service: SignerService, admins: Admins) -> None:
    existing = service.create(signer_data(1), admins["security_admin"])
    phone_owner = service.create(signer_data(2), admins["security_admin"])
    rows = [HEADER, _row(signer_data(1, phone="13800000001")),
            _row(signer_data(3, phone=signer_data(2)["phone"])), _row(signer_data(4))]
    report = import_data(service, _csv(rows), admins["security_admin"])
    assert _errors(report) == [
        (2, "身份证号", f"该身份证号已登记（签署人 {existing.id}）"),
        (3, "手机号", f"该手机号已登记（签署人 {phone_owner.id}）")]
    assert report.created == 1
    again = import_data(service, _csv(rows), admins["security_admin"])
    assert again.created == 0 and again.failed == 3


def test_report_csv_for_staff(service: SignerService, admins: Admins) -> None:
    report = import_file(service, SAMPLE, admins["security_admin"])
    data = report.to_csv()
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table[0] == ["行号", "姓名", "列", "错误原因"]
    assert [(int(r[0]), r[2], r[3]) for r in table[1:5]] == SAMPLE_ERRORS
    assert [r[1] for r in table[1:5]] == ["王五", "赵六", "孙八", "周九"]
    assert table[-1] == ["合计", "数据行 8", "成功 4", "失败 4"]
    sample = SAMPLE.read_text(encoding="utf-8")
    for id_number in {line.split(",")[1] for line in sample.splitlines()[1:] if line[0] != ","}:
        assert id_number not in data.decode("utf-8-sig")
    assert "110101" not in str(report.to_json())


def test_dry_run_creates_nothing(service: SignerService, admins: Admins,
                                 database: Database) -> None:
    report = import_file(service, SAMPLE, admins["security_admin"], dry_run=True)
    assert report.dry_run and report.created == 4 and len(report.errors) == 4
    assert _count(database) == 0


def test_import_is_audited_without_personal_data(service: SignerService, admins: Admins,
                                                 audit: AuditRecorder) -> None:
    import_file(service, SAMPLE, admins["security_admin"])
    assert audit.actions() == ["signer.create", "signer.import"]
    assert len(audit.entries[0]["details"]["ids"]) == 4
    assert audit.entries[1]["details"] == {"format": "csv", "rows": 8, "created": 4,
                                           "failed": 4}


@pytest.mark.parametrize(("data", "message"), [
    (b"", "未找到表头"),
    ("名字,号码\n张三,1\n".encode(), "未找到表头"),
    ("姓名,身份证号,类别\n".encode(), "表头缺少以下列：手机号、科室、职称、执业证书编号"),
    (",".join([*HEADER, "姓名"]).encode(), "是同一列"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "旧版 Excel"),
    (b"PK\x03\x04" + bytes(100), "无法读取该 XLSX"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x81\x82\x00\x00", "无法识别文件编码"),
    ((",".join(HEADER) + '\n"张三,1').encode(), "CSV 格式错误"),
])
def test_files_refused_as_a_whole(service: SignerService, admins: Admins,
                                  data: bytes, message: str) -> None:
    with pytest.raises(ImportRefused, match=message) as caught:
        import_data(service, data, admins["security_admin"])
    assert caught.value.status == 400 and caught.value.code == "import-refused"


def test_size_and_row_limits(service: SignerService, admins: Admins,
                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = [HEADER] + [_row(signer_data(n)) for n in range(6)]
    monkeypatch.setattr(imports, "MAX_ROWS", 5)
    with pytest.raises(ImportRefused, match="超过 5 行"):
        import_data(service, _csv(rows), admins["security_admin"])
    monkeypatch.setattr(imports, "MAX_FILE_BYTES", 100)
    path = tmp_path / "big.csv"
    path.write_bytes(_csv(rows))
    with pytest.raises(PayloadTooLarge):
        import_file(service, path, admins["security_admin"])


def test_a_formatted_tail_of_blank_rows_is_not_counted(service: SignerService,
                                                       admins: Admins) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(_row(signer_data(1)))
    sheet.cell(row=60_000, column=1).value = ""  # formatting far below the data
    buffer = io.BytesIO()
    workbook.save(buffer)
    report = import_data(service, buffer.getvalue(), admins["security_admin"])
    assert (report.created, report.blank_rows) == (1, 0)


def test_five_thousand_rows_with_progress(service: SignerService, database: Database,
                                          admins: Admins, capsys: pytest.CaptureFixture[str],
                                          request: pytest.FixtureRequest) -> None:
    count = 5000
    rows = [HEADER] + [_row(signer_data(n)) for n in range(count)]
    rows[4001][1] = "110101198001010110"  # one bad check digit (spreadsheet row 4002)
    calls: list[tuple[int, int]] = []
    started = time.perf_counter()
    report = import_data(service, _csv(rows), CliActor("root"),
                         progress=lambda done, total: calls.append((done, total)))
    elapsed = time.perf_counter() - started
    assert (report.created, report.failed) == (count - 1, 1)
    assert _errors(report) == [(4002, "身份证号", "身份证号校验位错误，请核对号码")]
    assert calls[0] == (0, count) and calls[-1] == (count, count)
    assert [done for done, _ in calls] == list(range(0, count + 1, imports.BATCH_ROWS))
    assert _count(database) == count - 1
    with capsys.disabled():
        print(f"\n[{request.node.callspec.id}] imported {count} rows in {elapsed:.2f} s "
              f"({count / elapsed:.0f} rows/s)")
    assert elapsed < 30


def test_five_thousand_rows_xlsx(service: SignerService, admins: Admins,
                                 capsys: pytest.CaptureFixture[str],
                                 request: pytest.FixtureRequest) -> None:
    count = 5000
    data = _xlsx([HEADER] + [_row(signer_data(n)) for n in range(count)])
    started = time.perf_counter()
    report = import_data(service, data, CliActor("root"))
    elapsed = time.perf_counter() - started
    assert report.created == count
    with capsys.disabled():
        print(f"\n[{request.node.callspec.id}] imported {count} XLSX rows in {elapsed:.2f} s "
              f"({count / elapsed:.0f} rows/s)")
    assert elapsed < 30


def _row(data: dict[str, object]) -> list[str]:
    fields = ["name", "id_number", "phone", "kind", "department", "title", "qualification_no",
              "practice_no"]
    return [str(data[f]) for f in fields]


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _count(database: Database) -> int:
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.signers)).scalar_one())


def test_the_sheet_with_the_header_is_used(service: SignerService, admins: Admins) -> None:
    workbook = openpyxl.Workbook()
    instructions = workbook.active
    instructions.title = "填写说明"
    instructions.append(["身份证号请设为文本格式"])
    data = workbook.create_sheet("医护人员")
    data.append(HEADER)
    data.append(_row(signer_data(1)))
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert import_data(service, buffer.getvalue(), admins["security_admin"]).created == 1


def test_a_swapped_column_puts_no_id_number_in_the_report(service: SignerService,
                                                          admins: Admins) -> None:
    good = _row(signer_data(1))
    swapped = [good[1], good[0], *good[2:]]
    report = import_data(service, _csv([HEADER, swapped]), admins["security_admin"])
    assert report.failed == 1 and {e.name for e in report.errors} == {""}
    assert good[1] not in report.to_csv().decode("utf-8-sig")
    assert good[1] not in str(report.to_json())


def test_two_imports_of_the_same_people_at_once(service: SignerService, admins: Admins,
                                                database: Database) -> None:
    """Each person is created once; the other import reports them as already registered
    (on PostgreSQL the unique index settles the race and the batch is retried)."""
    count = 1200
    data = _csv([HEADER] + [_row(signer_data(n)) for n in range(count)])
    reports: list[ImportReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(import_data(service, data, admins["security_admin"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.created for r in reports) == count
    assert sum(r.failed for r in reports) == count
    assert _count(database) == count
