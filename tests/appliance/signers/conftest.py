"""Fixtures of the signer suites: an unsealed key holder, the service with an audit recorder,
console accounts for the foreign key of ``reviewed_by``, and valid ID numbers on demand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import insert, select

from appliance.api.access import AUDIT_ADMIN, REVIEWER, SECURITY_ADMIN, SYSTEM_ADMIN, Principal
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.services.signers import SignerService, id_check_digit
from appliance.storage import Database, schema

ADMIN_IDS = {SYSTEM_ADMIN: 1, SECURITY_ADMIN: 2, AUDIT_ADMIN: 3, REVIEWER: 4}
_serial = itertools.count(1)


def make_id_number(serial: int | None = None, *, region: str = "110101",
                   birth: str = "19850615") -> str:
    """A valid 18-digit resident ID number; ``serial`` (0..999) picks the sequence digits."""
    n = next(_serial) % 1000 if serial is None else serial
    first17 = f"{region}{birth}{n:03d}"
    return first17 + id_check_digit(first17)


def unique_id_number(n: int) -> str:
    """The n-th of up to 999 * 3650 distinct valid ID numbers."""
    day = dt.date(1960, 1, 1) + dt.timedelta(days=n // 999)
    return make_id_number(n % 999 + 1, birth=day.strftime("%Y%m%d"))


def make_phone(n: int) -> str:
    return f"139{n:08d}"


def signer_data(n: int, **overrides: object) -> dict[str, object]:
    """A complete doctor record (ready for review)."""
    data: dict[str, object] = {
        "kind": "doctor", "name": f"医生{chr(0x4E00 + n % 20000)}",
        "id_number": unique_id_number(n), "phone": make_phone(n), "department": "心内科",
        "title": "主治医师", "qualification_no": f"1998{n:011d}", "practice_no": f"1101{n:011d}",
    }
    data.update(overrides)
    return data


@dataclasses.dataclass
class AuditRecorder:
    entries: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __call__(self, category: str, action: str, actor: str, subject: str,
                 details: Mapping[str, Any]) -> None:
        self.entries.append({"category": category, "action": action, "actor": actor,
                             "subject": subject, "details": dict(details)})

    def actions(self) -> list[str]:
        return [e["action"] for e in self.entries]


def admin(role: str) -> Principal:
    return Principal(kind="admin", name=f"{role}-user", id=ADMIN_IDS[role], role=role)


def app(*scopes: str) -> Principal:
    return Principal(kind="app", name="his-backend", id=7, scopes=frozenset(scopes))


@pytest.fixture
def holder(database: Database) -> KeyHolder:
    key_holder = KeyHolder(KekStore(database))
    key_holder.adopt(Keyring(os.urandom(16)))
    return key_holder


@pytest.fixture
def admins(database: Database) -> dict[str, Principal]:
    """One console account per role, with the ids :func:`admin` uses."""
    now = dt.datetime.now(dt.UTC)
    with database.transaction() as conn:
        for role, admin_id in ADMIN_IDS.items():
            conn.execute(insert(schema.admins).values(
                id=admin_id, username=f"{role}-user", display_name=role, role=role,
                password_hash="x", totp_confirmed=True, failed_logins=0, status="active",
                created_at=now, updated_at=now))
    return {role: admin(role) for role in ADMIN_IDS}


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def service(database: Database, holder: KeyHolder, audit: AuditRecorder,
            admins: dict[str, Principal]) -> SignerService:
    return SignerService(database, holder, audit=audit)


def dump_database(database: Database) -> bytes:
    """Every value of every row of every table, as bytes (to look for data in clear)."""
    out = bytearray()
    with database.transaction() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    out += value if isinstance(value, bytes) else str(value).encode()
                    out += b"\x00"
    return bytes(out)
