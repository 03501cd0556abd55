"""``verify`` on both engines: a clean log passes, and every kind of tampering with the stored
rows or checkpoints is found and reported with the first bad index."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import pytest
from sqlalchemy import delete, insert, select, update

from appliance.config import AuditConfig
from appliance.custody import KeyHolder, Keyring
from appliance.services.audit import (
    AuditLog,
    Entry,
    Record,
    VerificationReport,
    audit_public_keys,
    verify,
)
from appliance.storage import Database, schema
from evidence import SM3, Checkpoint, checkpoint, root_of
from signcore.sm2 import SM2PrivateKey
from tests.appliance.audit.conftest import ORIGIN

T, C, W = schema.audit_log, schema.audit_checkpoints, schema.wrapped_keys
SIZE = 20


@pytest.fixture
def logged(database: Database, holder: KeyHolder) -> Database:
    """20 entries from two nodes (interleaved), checkpoints at 10 and 20."""
    logs = [AuditLog(database, holder, AuditConfig(node_id=n, origin=ORIGIN))
            for n in ("node-a", "node-b")]
    for i in range(SIZE):
        logs[i % 2].append("data", "signer.update", f"admin:{i}", f"signer:{i}", {"i": i})
        if i + 1 in (10, SIZE):
            logs[0].checkpoint()
    for log in logs:
        log.close()
    return database


def _record(database: Database, seq: int) -> Record:
    with database.transaction() as conn:
        return Record.from_row(conn.execute(select(T).where(T.c.seq == seq)).one())


def _set(database: Database, seq: int, **values: object) -> None:
    with database.transaction() as conn:
        conn.execute(update(T).where(T.c.seq == seq).values(**values))


def _set_consistently(database: Database, seq: int, **values: object) -> None:
    """Rewrite a row and recompute its leaf hash, as a careful attacker would."""
    if values:
        _set(database, seq, **values)
    record = _record(database, seq)
    _set(database, seq, leaf_hash=SM3.leaf(record.leaf_data()))


def _check(report: VerificationReport, index: int | None, reason: str) -> None:
    assert not report.ok
    assert report.first_bad_index == index, report
    assert reason in report.reason, report.reason


def test_a_clean_log_verifies(logged: Database, holder: KeyHolder) -> None:
    report = verify(logged, keyring=holder.keyring(), origin=ORIGIN)
    assert report.ok, report.reason
    assert (report.entries, report.checkpoints, report.signed_size) == (SIZE, 2, SIZE)
    assert report.nodes == {"node-a": 10, "node-b": 10}
    assert report.unsigned_entries == 0 and report.first_bad_index is None
    assert report.to_json()["root_hash"] == base64.b64encode(report.root_hash).decode()


def test_an_empty_log_verifies(database: Database) -> None:
    report = verify(database)
    assert report.ok and report.entries == 0 and report.checkpoints == 0


POSITIONS = [0, 7, SIZE - 1]

TAMPERING: dict[str, tuple[Callable[[Database, int], None], str]] = {
    "details": (lambda db, k: _set(db, k, details='{"i":999}'), "does not match its leaf hash"),
    "details spelling": (lambda db, k: _set(db, k, details=_record(db, k).details.replace(
        ":", ": ")), "canonical form"),
    "details not json": (lambda db, k: _set(db, k, details="{"), "not JSON"),
    "actor": (lambda db, k: _set(db, k, actor="admin:someone-else"), "leaf hash"),
    "action": (lambda db, k: _set(db, k, action="signer.read"), "leaf hash"),
    "category": (lambda db, k: _set(db, k, category="login"), "leaf hash"),
    "node id": (lambda db, k: _set(db, k, node_id="node-z"), "leaf hash"),
    "node seq": (lambda db, k: _set(db, k, node_seq=1000 + k), "leaf hash"),
    "time": (lambda db, k: _set(db, k, created_at=_record(db, k).created_at.replace(
        microsecond=(_record(db, k).created_at.microsecond + 1) % 1_000_000)), "leaf hash"),
    "leaf hash": (lambda db, k: _set(db, k, leaf_hash=bytes(32)), "leaf hash"),
    "deleted": (lambda db, k: _delete(db, k), "missing"),  # noqa: PLW0108 (defined below)
}


def _delete(database: Database, seq: int) -> None:
    with database.transaction() as conn:
        conn.execute(delete(T).where(T.c.seq == seq))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_with_a_row_is_found_at_that_row(logged: Database, kind: str,
                                                   position: int) -> None:
    tamper, reason = TAMPERING[kind]
    tamper(logged, position)
    if kind == "deleted" and position == SIZE - 1:
        # The last row gone: the checkpoint of size 20 shows the truncation.
        _check(verify(logged), SIZE - 1, "deleted from the end")
        return
    _check(verify(logged), position, reason)


def test_reordered_rows_are_found(logged: Database) -> None:
    """Swap entries 3 and 8 (their seq values): the first of them is reported."""
    with logged.transaction() as conn:
        conn.execute(update(T).where(T.c.seq == 3).values(seq=-1))
        conn.execute(update(T).where(T.c.seq == 8).values(seq=3))
        conn.execute(update(T).where(T.c.seq == -1).values(seq=8))
    _check(verify(logged), 3, "leaf hash")


def test_truncation_is_found_by_the_checkpoints(logged: Database) -> None:
    with logged.transaction() as conn:
        conn.execute(delete(T).where(T.c.seq >= 15))
    report = verify(logged)
    _check(report, 15, "deleted from the end")
    assert report.bad_checkpoint == SIZE


def test_a_consistent_rewrite_is_found_by_the_next_checkpoint(logged: Database) -> None:
    _set_consistently(logged, 13, details='{"i":"forged"}')
    report = verify(logged)
    _check(report, 10, "[10, 20) was rewritten")  # the range since the last good checkpoint
    assert report.bad_checkpoint == SIZE and report.checkpoints == 1


def test_a_deletion_renumbered_by_the_attacker_shows_as_a_node_sequence_gap(
        logged: Database) -> None:
    _delete(logged, 12)
    with logged.transaction() as conn:
        for seq in range(13, SIZE):
            conn.execute(update(T).where(T.c.seq == seq).values(seq=seq - 1))
    for seq in range(12, SIZE - 1):
        _set_consistently(logged, seq)
    # Entry 12 was node-a's 7th; the new 12 is node-b's 7th (fine), the new 13 node-a's 8th.
    _check(verify(logged), 13, "node node-a sequence jumps from 5 to 7")


def test_appended_forgeries_are_not_covered_by_a_checkpoint(logged: Database,
                                                           holder: KeyHolder) -> None:
    """An entry added after the newest checkpoint is indistinguishable from a real one until
    the next checkpoint: the report counts it as unsigned."""
    forger = AuditLog(logged, holder, AuditConfig(node_id="node-a"), group_commit=False)
    forger.append("data", "forged")
    report = verify(logged)
    assert report.ok and report.unsigned_entries == 1 and report.signed_size == SIZE


def test_a_checkpoint_signed_by_another_key_is_refused(logged: Database) -> None:
    other = SM2PrivateKey.generate()
    with logged.transaction() as conn:
        row = conn.execute(select(C).where(C.c.tree_size == 10)).one()
        note = checkpoint.sign(Checkpoint(ORIGIN, 10, bytes(row.root_hash)), other, ORIGIN)
        conn.execute(update(C).where(C.c.tree_size == 10).values(note=note))
    report = verify(logged)
    _check(report, 0, "no valid audit-key signature")
    assert report.bad_checkpoint == 10


def test_checkpoint_columns_must_match_the_note(logged: Database) -> None:
    with logged.transaction() as conn:
        conn.execute(update(C).where(C.c.tree_size == SIZE).values(root_hash=bytes(32)))
    _check(verify(logged), 10, "disagree")


def test_a_malformed_checkpoint_is_reported(logged: Database) -> None:
    with logged.transaction() as conn:
        conn.execute(update(C).where(C.c.tree_size == 10).values(note="not a note"))
    _check(verify(logged), 0, "malformed")


def test_a_wrong_origin_is_reported(logged: Database) -> None:
    report = verify(logged, origin="someone.else/audit")
    _check(report, 0, "origin")


def test_a_full_rewrite_with_a_planted_key_needs_a_pinned_key_or_the_kek(
        logged: Database, holder: KeyHolder) -> None:
    """The attacker rewrites an entry, plants their own public key in wrapped_keys and
    re-signs every checkpoint.  Keys read from the database are fooled; a pinned key and the
    KEK check are not."""
    genuine = audit_public_keys(logged)
    _set_consistently(logged, 4, details='{"i":"forged"}')
    attacker = SM2PrivateKey.generate()
    with logged.transaction() as conn:
        conn.execute(update(W).values(public_key=attacker.public_key().to_der()))
        for row in conn.execute(select(C)).all():
            leaves = [bytes(h) for h in conn.execute(
                select(T.c.leaf_hash).where(T.c.seq < row.tree_size).order_by(T.c.seq))
                .scalars()]
            root = root_of(leaves)
            note = checkpoint.sign(Checkpoint(ORIGIN, row.tree_size, root), attacker, ORIGIN)
            conn.execute(update(C).where(C.c.tree_size == row.tree_size)
                         .values(note=note, root_hash=root))
    assert verify(logged).ok  # only the database's word: fooled
    report = verify(logged, trusted_keys=genuine)
    _check(report, 0, "no valid audit-key signature")
    assert report.keys == "trusted"
    _check(verify(logged, keyring=holder.keyring()), None, "does not open")


def test_the_kek_check_refuses_an_envelope_of_another_installation(logged: Database) -> None:
    _check(verify(logged, keyring=Keyring(os.urandom(16))), None, "does not open")


def test_progress_is_reported(database: Database, holder: KeyHolder) -> None:
    log = AuditLog(database, holder, group_commit=False)
    log.append_many([Entry("data", "x")] * 2_500)
    seen: list[int] = []
    assert verify(database, progress=seen.append, progress_every=1000).ok
    assert seen == [1000, 2000]
    created = _record(database, 0).created_at
    with database.transaction() as conn:
        conn.execute(insert(T).values(
            seq=2_501, node_id="node-1", node_seq=2_500, category="data", action="x",
            actor="", subject="", details="{}", created_at=created, leaf_hash=bytes(32)))
    _check(verify(database), 2_500, "missing")
