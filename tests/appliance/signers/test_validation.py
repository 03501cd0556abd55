"""Field validation: GB 11643 ID numbers, mobile numbers, kinds, lengths; every bad field is
named in one ValidationFailed (problem code ``validation-failed``)."""

from __future__ import annotations

import pytest

from appliance.errors import ValidationFailed
from appliance.services.signers import (
    FieldError,
    check_field,
    check_id_number,
    check_phone,
    id_check_digit,
    mask_id_number,
    mask_phone,
    required_for_review,
    validate,
)
from tests.appliance.signers.conftest import make_id_number, signer_data


@pytest.mark.parametrize(("first17", "check"), [
    ("11010519491231002", "X"),  # the GB 11643-1999 example
    ("44052419800101001", "3"),
    ("11010119900307803", "X"),
    ("11010119900307867", "0"),
])
def test_check_digit_of_known_numbers(first17: str, check: str) -> None:
    """Worked by hand: sum of digit x weight (7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2) mod 11
    indexes "10X98765432"."""
    assert id_check_digit(first17) == check
    assert check_id_number(first17 + check) == first17 + check


def test_lower_case_x_is_normalized() -> None:
    assert check_id_number("11010519491231002x") == "11010519491231002X"


@pytest.mark.parametrize(("value", "reason"), [
    ("110105194912310021", "校验位错误"),
    ("11010519491231002", "应为 18 位"),
    ("110105491231002", "15 位旧身份证号"),
    ("11010519491231002Y", "格式不正确"),
    ("01010519491231002X", "格式不正确"),
    ("110105194913310029", "出生日期无效"),
    ("110105210001010010", "出生日期无效"),  # born in 2100
])
def test_bad_id_numbers_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(FieldError, match=reason):
        check_id_number(value)


def test_every_single_digit_change_breaks_the_check_digit() -> None:
    good = make_id_number(123)
    for position in range(14, 17):  # sequence digits (the date would fail differently)
        for digit in "0123456789":
            if digit == good[position]:
                continue
            bad = good[:position] + digit + good[position + 1:]
            with pytest.raises(FieldError):
                check_id_number(bad)


@pytest.mark.parametrize(("value", "normal"), [
    ("13800138000", "13800138000"), ("+86 138 0013 8000", "13800138000"),
    ("8613800138000", "13800138000"), ("138-0013-8000", "13800138000"),
])
def test_phone_numbers_are_normalized(value: str, normal: str) -> None:
    assert check_phone(value) == normal


@pytest.mark.parametrize("value", ["1380013800", "23800138000", "12800138000", "1380013800a",
                                   "138001380000"])
def test_bad_phone_numbers_are_refused(value: str) -> None:
    with pytest.raises(FieldError, match="11 位"):
        check_phone(value)


@pytest.mark.parametrize(("value", "kind"), [("医师", "doctor"), ("医生", "doctor"),
                                             ("Doctor", "doctor"), ("药师", "pharmacist"),
                                             ("护士", "nurse"), ("nurse", "nurse")])
def test_kinds_and_their_chinese_names(value: str, kind: str) -> None:
    assert check_field("kind", value) == kind


def test_masks_keep_only_the_ends() -> None:
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_phone("13800138000") == "138****8000"


def test_all_bad_fields_are_named_at_once() -> None:
    data = signer_data(1, id_number="110105194912310021", phone="12345", kind="technician",
                       name="张" * 65, department="科" * 129, practice_no="编号 1",
                       title="主任\x07医师")
    with pytest.raises(ValidationFailed) as caught:
        validate(data)
    error = caught.value
    assert error.code == "validation-failed" and error.status == 400
    fields = {e["field"] for e in error.extensions["errors"]}  # type: ignore[attr-defined]
    assert fields == {"id_number", "phone", "kind", "name", "department", "practice_no", "title"}
    assert "身份证号：身份证号校验位错误" in error.detail


def test_missing_required_fields_and_non_text_values() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate({"name": 12, "phone": ["13800138000"]})
    errors = {e["field"]: e["reason"] for e in caught.value.extensions["errors"]}  # type: ignore[attr-defined]
    assert errors == {"kind": "不能为空", "name": "必须是文本", "id_number": "不能为空",
                      "phone": "必须是文本"}


def test_names_with_a_middle_dot_and_formulas() -> None:
    assert check_field("name", " 阿卜杜拉·艾则孜 ") == "阿卜杜拉·艾则孜"
    with pytest.raises(FieldError, match="姓名只能包含"):
        check_field("name", "张三3")
    with pytest.raises(FieldError, match="公式"):
        check_field("department", "=HYPERLINK(\"http://x\")")


def test_what_a_review_needs() -> None:
    complete = {k: str(v) for k, v in signer_data(1).items()}
    assert required_for_review(complete) == []
    assert required_for_review({**complete, "qualification_no": ""}) == ["qualification_no"]
    nurse = {**complete, "kind": "nurse", "qualification_no": "", "phone": ""}
    assert required_for_review(nurse) == ["phone"]
