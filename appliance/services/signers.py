"""Signer records: the doctors, pharmacists and nurses who sign (tender 1.3.2 items 7 and 8).

A record goes ``draft`` → ``pending_review`` (submitted) → ``active`` (approved by a reviewer);
a rejection sends it back to ``draft`` with the reviewer's note.  Any of those can be
``disabled``; enabling restores the status it had.  Editing the identity or qualification of an
``active`` signer sends it back to ``pending_review``: a reviewer approved what they saw, not
what was changed afterwards.

Personal data never reaches the database in clear (DESIGN.md section 7): the resident ID number
and the mobile phone are stored as an envelope from the :class:`~appliance.custody.Keyring`
whose associated data names the record and the field, plus a keyed HMAC-SM3
(``Keyring.hmac(b"pii", value)``) for uniqueness and lookup.  Reads return them masked.

Every state change is reported to an audit sink (category ``data``) with the HMAC, never the
value, of any personal data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Row, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from appliance.custody import KeyHolder, Keyring
from appliance.errors import Conflict, NotFound, ValidationFailed
from appliance.storage import Database, schema

T = schema.signers

DRAFT, PENDING_REVIEW, ACTIVE, DISABLED = "draft", "pending_review", "active", "disabled"
STATUSES = (DRAFT, PENDING_REVIEW, ACTIVE, DISABLED)
EDITABLE = frozenset({DRAFT, PENDING_REVIEW, ACTIVE})
KINDS = ("doctor", "pharmacist", "nurse")
KIND_LABELS = {"doctor": "医师", "pharmacist": "药师", "nurse": "护士"}
KIND_ALIASES = {
    "doctor": "doctor", "医师": "doctor", "医生": "doctor",
    "pharmacist": "pharmacist", "药师": "pharmacist",
    "nurse": "nurse", "护士": "nurse", "护师": "nurse",
}
# Titles the console proposes; the field itself is free text (中医、技师... series exist too).
KNOWN_TITLES = {
    "doctor": ("主任医师", "副主任医师", "主治医师", "住院医师", "医师", "医士"),
    "pharmacist": ("主任药师", "副主任药师", "主管药师", "药师", "药士", "执业药师"),
    "nurse": ("主任护师", "副主任护师", "主管护师", "护师", "护士"),
}

FIELDS = ("kind", "name", "id_number", "phone", "department", "title", "qualification_no",
          "practice_no")
FIELD_LABELS = {
    "kind": "类别", "name": "姓名", "id_number": "身份证号", "phone": "手机号",
    "department": "科室", "title": "职称", "qualification_no": "资格证书编号",
    "practice_no": "执业证书编号",
}
REQUIRED = frozenset({"kind", "name", "id_number"})
# What a reviewer checks: changing any of these on an active signer needs a new review.
REVIEWED_FIELDS = frozenset({"kind", "name", "id_number", "phone", "title", "qualification_no",
                             "practice_no"})
PII_FIELDS = ("id_number", "phone")
MAX_LENGTHS = {"name": 64, "department": 128, "title": 64, "qualification_no": 64,
               "practice_no": 64}
MAX_NOTE = 500
MAX_PAGE = 200
MAX_REVIEW_BATCH = 1000
MAX_ID = 2**63 - 1  # BIGINT: larger ids cannot exist (and would overflow the driver)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_PATTERN = re.compile(r"[1-9]\d{16}[\dX]")
_PHONE_PATTERN = re.compile(r"1[3-9]\d{9}")
_CERT_PATTERN = re.compile(r"[0-9A-Za-z\-]+")
_NAME_EXTRA = frozenset(" ·・.-'")
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"), None)


# --------------------------------------------------------------------------- validation


class FieldError(ValueError):
    """One field's value is refused; ``reason`` is the zh-CN sentence shown to staff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character (ISO 7064 MOD 11-2) of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def clean_text(value: object) -> str:
    """A string with surrounding and invisible whitespace removed; FieldError if not a string."""
    if not isinstance(value, str):
        raise FieldError("必须是文本")
    return value.translate(_INVISIBLE).replace("\u3000", " ").strip()


def _no_controls(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise FieldError("含有控制字符")
    return value


def _length(value: str, field: str) -> str:
    limit = MAX_LENGTHS[field]
    if len(value) > limit:
        raise FieldError(f"不能超过 {limit} 个字符")
    return value


def check_id_number(value: str) -> str:
    """A valid 18-digit resident ID number (upper-case X), or FieldError."""
    value = value.replace(" ", "").upper()
    if len(value) == 15 and value.isdigit():
        raise FieldError("不支持 15 位旧身份证号，请填写 18 位身份证号")
    if len(value) != 18:
        raise FieldError("身份证号应为 18 位")
    if not _ID_PATTERN.fullmatch(value):
        raise FieldError("身份证号格式不正确（前 17 位为数字，最后一位为数字或 X）")
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise FieldError("身份证号中的出生日期无效") from None
    if not dt.date(1900, 1, 1) <= birth <= dt.datetime.now(dt.UTC).date():
        raise FieldError("身份证号中的出生日期无效")
    if id_check_digit(value[:17]) != value[17]:
        raise FieldError("身份证号校验位错误，请核对号码")
    return value


def check_phone(value: str) -> str:
    """An 11-digit mainland mobile number (a +86 prefix, spaces and hyphens are dropped)."""
    value = value.replace(" ", "").replace("-", "")
    if value.startswith("+86"):
        value = value[3:]
    elif len(value) == 13 and value.startswith("86"):
        value = value[2:]
    if not _PHONE_PATTERN.fullmatch(value):
        raise FieldError("手机号应为 11 位中国大陆手机号码")
    return value


def check_kind(value: str) -> str:
    kind = KIND_ALIASES.get(value.lower())
    if kind is None:
        raise FieldError("类别应为 医师、药师 或 护士（doctor、pharmacist、nurse）")
    return kind


def check_name(value: str) -> str:
    if not value:
        raise FieldError("不能为空")
    _length(value, "name")
    if not all(ch.isalpha() or ch in _NAME_EXTRA for ch in value):
        raise FieldError("姓名只能包含文字、空格和间隔号“·”")
    return value


def check_certificate(field: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        _length(value, field)
        if value and not _CERT_PATTERN.fullmatch(value):
            raise FieldError("证书编号只能包含字母、数字和连字符")
        return value
    return check


def check_free_text(field: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        return _no_controls(_length(value, field))
    return check


CHECKS: dict[str, Callable[[str], str]] = {
    "kind": check_kind,
    "name": lambda v: check_name(_no_controls(v)),
    "id_number": check_id_number,
    "phone": check_phone,
    "department": check_free_text("department"),
    "title": check_free_text("title"),
    "qualification_no": check_certificate("qualification_no"),
    "practice_no": check_certificate("practice_no"),
}


def check_field(field: str, raw: object) -> str:
    """The normalized value of one field ("" when empty), or FieldError."""
    value = clean_text(raw)
    if value.startswith("="):
        raise FieldError("不能是公式，请填写数值本身")
    if value == "":
        if field in REQUIRED:
            raise FieldError("不能为空")
        return ""
    return CHECKS[field](value)


def check_note(value: str, field: str = "note") -> str:
    """A reviewer's note or a reason: text of at most :data:`MAX_NOTE` characters, line breaks
    allowed, other control characters not."""
    if len(value) > MAX_NOTE or any(
            unicodedata.category(ch) == "Cc" and ch not in "\n\r\t" for ch in value):
        raise invalid([{"field": field,
                        "reason": f"应为不超过 {MAX_NOTE} 个字符的文本，且不含控制字符"}])
    return value


def required_for_review(values: Mapping[str, str]) -> list[str]:
    """The fields a record must have before it can be reviewed (phone for device binding,
    department, title, practice certificate; a doctor's qualification certificate too)."""
    needed = ["name", "id_number", "kind", "phone", "department", "title", "practice_no"]
    if values.get("kind") == "doctor":
        needed.append("qualification_no")
    return [f for f in needed if not values.get(f)]


def validate(data: Mapping[str, object], *, partial: bool = False) -> dict[str, str]:
    """Normalized values of the given fields, or ValidationFailed naming every bad field."""
    values: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for field in FIELDS:
        if field not in data or data[field] is None:
            if not partial and field in REQUIRED:
                errors.append({"field": field, "reason": "不能为空"})
            continue
        try:
            values[field] = check_field(field, data[field])
        except FieldError as exc:
            errors.append({"field": field, "reason": exc.reason})
    if errors:
        raise invalid(errors)
    return values


def invalid(errors: list[dict[str, str]]) -> ValidationFailed:
    """ValidationFailed with a zh-CN summary and the ``errors`` list (field, reason)."""
    summary = "；".join(f"{FIELD_LABELS.get(e['field'], e['field'])}：{e['reason']}"
                       for e in errors)
    return ValidationFailed(f"签署人信息校验失败：{summary}", errors=errors)


def mask_id_number(value: str) -> str:
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:]


# --------------------------------------------------------------------------- records


class Actor(Protocol):
    """Who acts: :class:`appliance.api.access.Principal` or a CLI actor."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def id(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class CliActor:
    """An operator at the appliance console (``medsign signer import``)."""

    name: str
    kind: str = "cli"
    id: int = 0


# Seam to the audit log (``appliance.services.audit``), the same shape as the accounts
# service's: (category, action, actor, subject, details), one call per state change.
AuditSink = Callable[[str, str, str, str, Mapping[str, Any]], None]


def actor_label(actor: Actor) -> str:
    return f"{actor.kind}:{actor.name}"


@dataclasses.dataclass(frozen=True)
class Signer:
    """A signer as the API shows it: personal data masked."""

    id: int
    kind: str
    name: str
    id_number_masked: str
    phone_masked: str | None
    department: str
    title: str
    qualification_no: str
    practice_no: str
    status: str
    review_note: str
    reviewed_by: int | None
    reviewed_at: dt.datetime | None
    submitted_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.datetime):
                out[key] = _utc(value).isoformat().replace("+00:00", "Z")
        return out


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Signer]
    total: int
    offset: int
    limit: int


@dataclasses.dataclass(frozen=True)
class NewSigner:
    """Validated values plus the HMACs of the personal data, ready to insert."""

    values: Mapping[str, str]
    id_hmac: str
    phone_hmac: str | None


@dataclasses.dataclass(frozen=True)
class Decision:
    signer_id: int
    approve: bool
    note: str = ""
    version: int | None = None


@dataclasses.dataclass(frozen=True)
class DecisionResult:
    id: int
    ok: bool
    status: str | None = None
    code: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """A row refused at insert time: its ID number or phone already belongs to ``signer_id``."""

    field: str
    signer_id: int | None  # None: an earlier record of the same batch


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; every timestamp we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _context(signer_id: int, field: str) -> bytes:
    return f"medsign/signer/{signer_id}/{field}".encode()


def pii_hmac(keyring: Keyring, value: str) -> str:
    """The lookup HMAC of one personal-data value (also what audit rows carry)."""
    return keyring.hmac(b"pii", value.encode()).hex()


class SignerService:
    """Create, edit, review, disable and list signer records."""

    def __init__(self, database: Database, key_holder: KeyHolder,
                 audit: AuditSink | None = None,
                 on_disable: Callable[[int, Actor], object] | None = None) -> None:
        """``on_disable(signer_id, actor)``: called after a signer was disabled (the
        composition root revokes the signer's certificates there)."""
        self._db = database
        self._holder = key_holder
        self._audit = audit
        self._on_disable = on_disable

    def keyring(self) -> Keyring:
        """The unsealed keyring (Sealed while the appliance is sealed)."""
        return self._holder.keyring()

    # ---------------------------------------------------------------- reads

    def get(self, signer_id: int) -> Signer:
        keyring = self._holder.keyring()
        row = None
        if 0 < signer_id <= MAX_ID:
            with self._db.transaction() as conn:
                row = conn.execute(select(T).where(T.c.id == signer_id)).first()
        if row is None:
            raise NotFound(f"签署人 {signer_id} 不存在")
        return self._view(keyring, row)

    def search(self, *, status: str | None = None, kind: str | None = None,
             department: str | None = None, name_prefix: str | None = None,
             offset: int = 0, limit: int = 50) -> Page:
        """One page of signers, newest last, with the total matching the filters."""
        keyring = self._holder.keyring()
        limit = max(1, min(limit, MAX_PAGE))
        offset = max(0, offset)
        for field, value in (("department", department), ("name", name_prefix)):
            if value and (len(value) > MAX_LENGTHS[field] or not value.isprintable()):
                raise invalid([{"field": field, "reason": "过滤条件无效"}])
        where = []
        if status:
            where.append(T.c.status == status)
        if kind:
            where.append(T.c.kind == kind)
        if department:
            where.append(T.c.department == department)
        if name_prefix:
            where.append(T.c.name.startswith(name_prefix, autoescape=True))
        with self._db.transaction() as conn:
            total = conn.execute(select(func.count()).select_from(T).where(*where)).scalar_one()
            rows = conn.execute(select(T).where(*where).order_by(T.c.id)
                                .offset(offset).limit(limit)).all()
        return Page([self._view(keyring, r) for r in rows], total, offset, limit)

    def lookup(self, *, id_number: str | None = None, phone: str | None = None) -> Signer:
        """The signer with this ID number or phone (found by HMAC), or NotFound."""
        keyring = self._holder.keyring()
        if (id_number is None) == (phone is None):
            raise ValidationFailed("请提供身份证号或手机号之一")
        field = "id_number" if id_number is not None else "phone"
        try:
            value = check_field(field, id_number if id_number is not None else phone)
        except FieldError as exc:
            raise invalid([{"field": field, "reason": exc.reason}]) from None
        column = T.c.id_number_hmac if field == "id_number" else T.c.phone_hmac
        with self._db.transaction() as conn:
            row = conn.execute(select(T).where(column == pii_hmac(keyring, value))).first()
        if row is None:
            raise NotFound("未找到该签署人")
        return self._view(keyring, row)

    def _view(self, keyring: Keyring, row: Row[Any]) -> Signer:
        id_number = keyring.unwrap(row.id_number_wrapped, _context(row.id, "id_number")).decode()
        phone = (keyring.unwrap(row.phone_wrapped, _context(row.id, "phone")).decode()
                 if row.phone_wrapped else None)
        return Signer(
            id=row.id, kind=row.kind, name=row.name, id_number_masked=mask_id_number(id_number),
            phone_masked=mask_phone(phone) if phone else None, department=row.department,
            title=row.title, qualification_no=row.qualification_no, practice_no=row.practice_no,
            status=row.status, review_note=row.review_note, reviewed_by=row.reviewed_by,
            reviewed_at=row.reviewed_at and _utc(row.reviewed_at),
            submitted_at=row.submitted_at and _utc(row.submitted_at),
            created_by=row.created_by, created_at=_utc(row.created_at),
            updated_at=_utc(row.updated_at), version=row.version)

    # ---------------------------------------------------------------- create

    def prepare(self, keyring: Keyring, values: Mapping[str, str]) -> NewSigner:
        """Attach the lookup HMACs to validated values."""
        phone = values.get("phone") or None
        return NewSigner(values, pii_hmac(keyring, values["id_number"]),
                         pii_hmac(keyring, phone) if phone else None)

    def create(self, data: Mapping[str, object], actor: Actor) -> Signer:
        """A new ``draft`` record; Conflict when the ID number or phone is already registered."""
        keyring = self._holder.keyring()
        record = self.prepare(keyring, validate(data))
        outcome = self.insert_many([record], actor, status=DRAFT)[0]
        if isinstance(outcome, Duplicate):
            label = FIELD_LABELS[outcome.field]
            raise Conflict(f"该{label}已登记（签署人 {outcome.signer_id}）",
                           field=outcome.field, signer_id=outcome.signer_id)
        return self.get(outcome)

    def insert_many(self, records: Sequence[NewSigner], actor: Actor, *,
                    status: str) -> list[int | Duplicate]:
        """Insert in one transaction; per record its new id or the :class:`Duplicate` that
        stopped it.  A concurrent insert of the same person is retried once and then reported
        as a duplicate like any other."""
        keyring = self._holder.keyring()
        try:
            with self._db.transaction() as conn:
                outcomes = self._insert(conn, keyring, records, actor, status)
        except IntegrityError:
            with self._db.transaction() as conn:
                outcomes = self._insert(conn, keyring, records, actor, status)
        created = [o for o in outcomes if isinstance(o, int)]
        if len(created) == 1:
            self._log(actor, "signer.create", created[0], {"status": status})
        elif created:
            self._log_many(actor, "signer.create", created, {"status": status})
        return outcomes

    def existing(self, records: Sequence[NewSigner]) -> list[Duplicate | None]:
        """What :meth:`insert_many` would refuse, without inserting (an import's dry run)."""
        with self._db.transaction() as conn:
            return self._duplicates(conn, records)

    def _insert(self, conn: Connection, keyring: Keyring, records: Sequence[NewSigner],
                actor: Actor, status: str) -> list[int | Duplicate]:
        outcomes = self._duplicates(conn, records)
        fresh = [r for r, o in zip(records, outcomes, strict=True) if o is None]
        queue: Iterator[int] = iter(self._insert_rows(conn, keyring, fresh, actor, status))
        return [o if o is not None else next(queue) for o in outcomes]

    def _duplicates(self, conn: Connection,
                    records: Sequence[NewSigner]) -> list[Duplicate | None]:
        """Per record: the duplicate that refuses it (registered, or earlier in ``records``)."""
        taken = self._taken(conn, [r.id_hmac for r in records],
                            [r.phone_hmac for r in records if r.phone_hmac])
        outcomes: list[Duplicate | None] = []
        for record in records:
            duplicate = _duplicate_of(record, taken)
            outcomes.append(duplicate)
            if duplicate is None:
                taken[record.id_hmac] = ("id_number", None)
                if record.phone_hmac:
                    taken[record.phone_hmac] = ("phone", None)
        return outcomes

    @staticmethod
    def _taken(conn: Connection, id_hmacs: list[str],
               phone_hmacs: list[str]) -> dict[str, tuple[str, int | None]]:
        """HMAC -> (field, signer id) of the given values that already exist."""
        taken: dict[str, tuple[str, int | None]] = {}
        if id_hmacs:
            for row in conn.execute(select(T.c.id, T.c.id_number_hmac)
                                    .where(T.c.id_number_hmac.in_(id_hmacs))):
                taken[row.id_number_hmac] = ("id_number", row.id)
        if phone_hmacs:
            for row in conn.execute(select(T.c.id, T.c.phone_hmac)
                                    .where(T.c.phone_hmac.in_(phone_hmacs))):
                taken[row.phone_hmac] = ("phone", row.id)
        return taken

    def _insert_rows(self, conn: Connection, keyring: Keyring, records: Sequence[NewSigner],
                     actor: Actor, status: str) -> list[int]:
        if not records:
            return []
        now = _now()
        # The envelopes name the row, so the ids are drawn before the rows are written.
        ids = _allocate_ids(conn, len(records))
        conn.execute(insert(T), [
            {**_plain(r.values), "id": signer_id, "id_number_hmac": r.id_hmac,
             "phone_hmac": r.phone_hmac, **_wrapped(keyring, signer_id, r.values),
             "status": status, "review_note": "",
             "submitted_at": now if status == PENDING_REVIEW else None,
             "created_by": actor_label(actor), "created_at": now, "updated_at": now,
             "version": 1} for signer_id, r in zip(ids, records, strict=True)])
        return ids

    # ---------------------------------------------------------------- edit

    def update(self, signer_id: int, data: Mapping[str, object], actor: Actor, *,
               version: int | None = None) -> Signer:
        """Change some fields.  Editing what a reviewer checked on an ``active`` signer sends
        it back to ``pending_review``; a ``disabled`` signer must be enabled first."""
        keyring = self._holder.keyring()
        changes = validate(data, partial=True)
        with self._db.transaction() as conn:
            row = self._locked(conn, signer_id, version)
            if row.status not in EDITABLE:
                raise Conflict("已停用的签署人不能修改，请先启用", signer_status=row.status)
            current = self._current(keyring, row)
            changed = {f for f, v in changes.items() if current.get(f, "") != v}
            if not changed:
                return self._view(keyring, row)
            merged = {**current, **changes}
            status = row.status
            if status == ACTIVE and changed & REVIEWED_FIELDS:
                status = PENDING_REVIEW
            if status != DRAFT:
                _require_complete(merged)
            self._check_unique(conn, keyring, signer_id, merged, changed)
            conn.execute(update(T).where(T.c.id == signer_id).values(
                **self._changed_columns(keyring, signer_id, merged, changed),
                **_status_columns(row.status, status), version=row.version + 1,
                updated_at=_now()))
        self._log(actor, "signer.update", signer_id,
                  {"fields": sorted(changed), "from": row.status, "status": status})
        return self.get(signer_id)

    @staticmethod
    def _current(keyring: Keyring, row: Row[Any]) -> dict[str, str]:
        values = {f: getattr(row, f) for f in FIELDS if f not in PII_FIELDS}
        values["id_number"] = keyring.unwrap(row.id_number_wrapped,
                                             _context(row.id, "id_number")).decode()
        values["phone"] = (keyring.unwrap(row.phone_wrapped, _context(row.id, "phone")).decode()
                           if row.phone_wrapped else "")
        return values

    def _check_unique(self, conn: Connection, keyring: Keyring, signer_id: int,
                      merged: Mapping[str, str], changed: set[str]) -> None:
        for field in PII_FIELDS:
            if field not in changed or not merged[field]:
                continue
            column = T.c.id_number_hmac if field == "id_number" else T.c.phone_hmac
            other = conn.execute(select(T.c.id).where(
                column == pii_hmac(keyring, merged[field]), T.c.id != signer_id)).first()
            if other is not None:
                raise Conflict(f"该{FIELD_LABELS[field]}已登记（签署人 {other.id}）",
                               field=field, signer_id=other.id)

    @staticmethod
    def _changed_columns(keyring: Keyring, signer_id: int, merged: Mapping[str, str],
                         changed: set[str]) -> dict[str, Any]:
        columns: dict[str, Any] = {f: merged[f] for f in changed if f not in PII_FIELDS}
        if "id_number" in changed:
            id_number = merged["id_number"]
            columns["id_number_hmac"] = pii_hmac(keyring, id_number)
            columns["id_number_wrapped"] = keyring.wrap(id_number.encode(),
                                                        _context(signer_id, "id_number"))
        if "phone" in changed:
            phone = merged["phone"]
            columns["phone_hmac"] = pii_hmac(keyring, phone) if phone else None
            columns["phone_wrapped"] = (keyring.wrap(phone.encode(), _context(signer_id, "phone"))
                                        if phone else None)
        return columns

    # ---------------------------------------------------------------- transitions

    def submit(self, signer_id: int, actor: Actor, *, version: int | None = None) -> Signer:
        """``draft`` → ``pending_review``, once every field a reviewer needs is filled in."""
        keyring = self._holder.keyring()
        with self._db.transaction() as conn:
            row = self._locked(conn, signer_id, version)
            _expect(row.status, {DRAFT}, "提交审核")
            _require_complete(self._current(keyring, row))
            self._set_status(conn, row, PENDING_REVIEW)
        self._log(actor, "signer.submit", signer_id, {"from": row.status,
                                                      "status": PENDING_REVIEW})
        return self.get(signer_id)

    def disable(self, signer_id: int, actor: Actor, *, reason: str = "") -> Signer:
        """Any status but ``disabled`` → ``disabled``; the old status is kept for enable."""
        check_note(reason, "reason")
        with self._db.transaction() as conn:
            row = self._locked(conn, signer_id, None)
            _expect(row.status, EDITABLE, "停用")
            self._set_status(conn, row, DISABLED, status_before_disable=row.status)
        self._log(actor, "signer.disable", signer_id,
                  {"from": row.status, "status": DISABLED, "reason": reason})
        if self._on_disable is not None:
            self._on_disable(signer_id, actor)
        return self.get(signer_id)

    def enable(self, signer_id: int, actor: Actor) -> Signer:
        """``disabled`` → the status it had when it was disabled (records cannot be edited
        while disabled, so an approval still covers exactly what was approved)."""
        with self._db.transaction() as conn:
            row = self._locked(conn, signer_id, None)
            _expect(row.status, {DISABLED}, "启用")
            status = row.status_before_disable or DRAFT
            self._set_status(conn, row, status, status_before_disable=None)
        self._log(actor, "signer.enable", signer_id, {"from": DISABLED, "status": status})
        return self.get(signer_id)

    def delete(self, signer_id: int, actor: Actor) -> None:
        """Remove a ``draft`` that was never approved (anything else is disabled instead,
        so that evidence keeps naming its signer)."""
        with self._db.transaction() as conn:
            row = self._locked(conn, signer_id, None)
            if row.status != DRAFT or row.reviewed_at is not None:
                raise Conflict("只能删除从未审核过的草稿；其他签署人请停用",
                               signer_status=row.status)
            try:
                with conn.begin_nested():
                    conn.execute(T.delete().where(T.c.id == signer_id))
            except IntegrityError:
                raise Conflict("该签署人已被其他记录引用，不能删除，请停用") from None
        self._log(actor, "signer.delete", signer_id, {"from": row.status})

    def review(self, decisions: Sequence[Decision], actor: Actor) -> list[DecisionResult]:
        """Approve (→ ``active``) or reject (→ ``draft`` with the note) pending records, in one
        transaction; each decision succeeds or fails on its own."""
        if len(decisions) > MAX_REVIEW_BATCH:
            raise ValidationFailed(f"一次最多审核 {MAX_REVIEW_BATCH} 条")
        ids = sorted({d.signer_id for d in decisions if 0 < d.signer_id <= MAX_ID})
        seen: set[int] = set()
        results: list[DecisionResult] = []
        with self._db.transaction() as conn:
            rows = {r.id: r for r in conn.execute(
                select(T).where(T.c.id.in_(ids)).order_by(T.c.id).with_for_update())}
            for decision in decisions:
                results.append(self._decide(conn, rows.get(decision.signer_id), decision,
                                            seen, actor))
        for decision, result in zip(decisions, results, strict=True):
            if result.ok:
                self._log(actor, "signer.approve" if decision.approve else "signer.reject",
                          decision.signer_id, {"from": PENDING_REVIEW, "status": result.status,
                                               "note": decision.note})
        return results

    def _decide(self, conn: Connection, row: Row[Any] | None, decision: Decision,
                seen: set[int], actor: Actor) -> DecisionResult:
        sid = decision.signer_id
        refusal = _refusal(row, decision, seen)
        seen.add(sid)
        if refusal is not None:
            code, detail = refusal
            return DecisionResult(sid, False, code=code, detail=detail)
        assert row is not None
        status = ACTIVE if decision.approve else DRAFT
        conn.execute(update(T).where(T.c.id == sid).values(
            status=status, review_note=decision.note, reviewed_at=_now(),
            reviewed_by=actor.id if actor.kind == "admin" else None,
            version=row.version + 1, updated_at=_now()))
        return DecisionResult(sid, True, status=status)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _locked(conn: Connection, signer_id: int, version: int | None) -> Row[Any]:
        row = None
        if 0 < signer_id <= MAX_ID:
            row = conn.execute(select(T).where(T.c.id == signer_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"签署人 {signer_id} 不存在")
        if version is not None and version != row.version:
            raise Conflict("记录已被他人修改，请刷新后重试", current_version=row.version)
        return row

    @staticmethod
    def _set_status(conn: Connection, row: Row[Any], status: str, **extra: Any) -> None:
        conn.execute(update(T).where(T.c.id == row.id).values(
            **_status_columns(row.status, status), **extra, version=row.version + 1,
            updated_at=_now()))

    def _log(self, actor: Actor, action: str, signer_id: int,
             details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit("data", action, actor_label(actor), f"signer:{signer_id}",
                        dict(details))

    def _log_many(self, actor: Actor, action: str, signer_ids: list[int],
                  details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit("data", action, actor_label(actor), "signers",
                        {**details, "ids": signer_ids})

    def log_import(self, actor: Actor, details: Mapping[str, Any]) -> None:
        """One audit entry for a whole import (its rows are logged as they are created)."""
        if self._audit is not None:
            self._audit("data", "signer.import", actor_label(actor), "signers", dict(details))


STATUS_LABELS = {DRAFT: "草稿", PENDING_REVIEW: "待审核", ACTIVE: "已启用", DISABLED: "已停用"}
_TRANSITION_LABELS = {"提交审核": "只有草稿可以提交审核", "停用": "该签署人已停用",
                      "启用": "只有已停用的签署人可以启用"}


def _refusal(row: Row[Any] | None, decision: Decision,
             seen: set[int]) -> tuple[str, str] | None:
    """Why a review decision cannot be applied, as (problem code, zh-CN detail), or None."""
    sid = decision.signer_id
    if sid in seen:
        return "conflict", "同一批次中重复出现"
    if row is None:
        return "not-found", f"签署人 {sid} 不存在"
    if decision.version is not None and decision.version != row.version:
        return "conflict", "记录已被修改，请刷新后重新审核"
    if row.status != PENDING_REVIEW:
        return "conflict", f"当前状态为“{STATUS_LABELS[row.status]}”，不是待审核"
    return _note_refusal(decision)


def _note_refusal(decision: Decision) -> tuple[str, str] | None:
    try:
        check_note(decision.note)
    except ValidationFailed as exc:
        return exc.code, exc.detail
    if not decision.approve and not decision.note.strip():
        return "validation-failed", "驳回时必须填写原因"
    return None


def _expect(status: str, allowed: Iterable[str], action: str) -> None:
    if status not in allowed:
        raise Conflict(f"{_TRANSITION_LABELS[action]}（当前状态：{STATUS_LABELS[status]}）",
                       signer_status=status)


def _require_complete(values: Mapping[str, str]) -> None:
    missing = required_for_review(values)
    if missing:
        raise invalid([{"field": f, "reason": "提交审核前必须填写"} for f in missing])


def _status_columns(old: str, new: str) -> dict[str, Any]:
    """Columns that follow a status change: a new review starts with a clean slate."""
    if new == PENDING_REVIEW and old != PENDING_REVIEW:
        return {"status": new, "submitted_at": _now(), "review_note": ""}
    return {"status": new}


def _plain(values: Mapping[str, str]) -> dict[str, str]:
    return {f: values.get(f, "") for f in FIELDS if f not in PII_FIELDS}


def _wrapped(keyring: Keyring, signer_id: int, values: Mapping[str, str]) -> dict[str, Any]:
    phone = values.get("phone") or None
    return {
        "id_number_wrapped": keyring.wrap(values["id_number"].encode(),
                                          _context(signer_id, "id_number")),
        "phone_wrapped": (keyring.wrap(phone.encode(), _context(signer_id, "phone"))
                          if phone else None),
    }


def _allocate_ids(conn: Connection, count: int) -> list[int]:
    """``count`` fresh signer ids: from the column's sequence on PostgreSQL; on SQLite after
    the largest id, which is stable because the transaction holds the write lock."""
    if conn.dialect.name == "postgresql":
        return list(conn.execute(text(
            "SELECT nextval(pg_get_serial_sequence('signers', 'id')) "
            "FROM generate_series(1, :n)"), {"n": count}).scalars())
    last = conn.execute(select(func.coalesce(func.max(T.c.id), 0))).scalar_one()
    return list(range(last + 1, last + count + 1))


def _duplicate_of(record: NewSigner,
                  taken: Mapping[str, tuple[str, int | None]]) -> Duplicate | None:
    for digest in (record.id_hmac, record.phone_hmac):
        if digest and digest in taken:
            field, signer_id = taken[digest]
            return Duplicate(field, signer_id)
    return None
