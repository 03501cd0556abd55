"""The audit log service on both engines: appends, group commit, sequences, personal data,
checkpoints, proofs, search and export."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gc
import io
import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from appliance.config import AuditConfig
from appliance.custody import KeyHolder
from appliance.errors import NotFound, Sealed, ValidationFailed
from appliance.services.audit import (
    AuditLog,
    Entry,
    Filters,
    audit_public_keys,
    canonical_json,
    export,
    leaf_entry,
    timestamp,
)
from appliance.storage import Database, schema
from evidence import SM3, checkpoint, root_of, verify_consistency, verify_inclusion
from tests.appliance.audit.conftest import ORIGIN

T = schema.audit_log


def _rows(database: Database) -> list[dict[str, Any]]:
    with database.transaction() as conn:
        return [dict(r._mapping) for r in conn.execute(select(T).order_by(T.c.seq))]


def test_appends_number_entries_from_zero_and_hash_the_whole_row(audit: AuditLog,
                                                                database: Database) -> None:
    assert audit.append("login", "admin.login", "admin:alice", "", {"ok": True}) == 0
    assert audit.append("data", "signer.create", "admin:bob", "signer:7",
                        {"名字": "值", "n": 1}) == 1
    rows = _rows(database)
    assert [(r["seq"], r["node_id"], r["node_seq"]) for r in rows] == [
        (0, "node-a", 0), (1, "node-a", 1)]
    row = rows[1]
    assert row["details"] == '{"n":1,"名字":"值"}'
    created = row["created_at"]
    assert isinstance(created, dt.datetime)
    expected = SM3.leaf(canonical_json({
        "v": 1, "seq": 1, "node_id": "node-a", "node_seq": 1, "category": "data",
        "action": "signer.create", "actor": "admin:bob", "subject": "signer:7",
        "details": '{"n":1,"名字":"值"}', "created_at": timestamp(created)}).encode())
    assert row["leaf_hash"] == expected
    assert audit.entry(1).leaf_data() == leaf_entry(
        seq=1, node_id="node-a", node_seq=1, category="data", action="signer.create",
        actor="admin:bob", subject="signer:7", details='{"n":1,"名字":"值"}',
        created_at=timestamp(created))


@pytest.mark.parametrize("entry", [
    Entry("other", "x"),
    Entry("login", ""),
    Entry("login", "x" * 65),
    Entry("login", "x", actor="a" * 129),
    Entry("login", "x", subject="s" * 257),
    Entry("login", "x\nforged line"),
    Entry("login", "x", details={"t": dt.datetime.now()}),
    Entry("login", "x", details={"nan": float("nan")}),
    Entry("login", "x", details={"big": "x" * 20_000}),
    Entry("login", "x", details=["not", "a", "mapping"]),  # type: ignore[arg-type]
])
def test_invalid_entries_are_refused_and_nothing_is_written(audit: AuditLog, database: Database,
                                                            entry: Entry) -> None:
    with pytest.raises(ValidationFailed):
        audit.append_many([Entry("system", "fine"), entry])
    assert _rows(database) == []


def test_append_many_takes_consecutive_numbers(audit: AuditLog) -> None:
    audit.append("system", "boot")
    assert audit.append_many([Entry("data", f"a{i}") for i in range(5)]) == [1, 2, 3, 4, 5]
    assert audit.append_many([]) == []


def test_entries_appended_within_a_transaction_commit_or_vanish_with_it(
        audit: AuditLog, database: Database) -> None:
    """append_within writes in the caller's transaction: a rolled-back change leaves no entry
    (and no gap), a committed one its entries, in one sequence with ordinary appends."""
    audit.append("system", "boot")

    class AbandonedError(Exception):
        pass

    with pytest.raises(AbandonedError), database.transaction() as conn:
        assert audit.append_within(conn, [Entry("signature", "lost")]) == [1]
        raise AbandonedError
    assert [r["action"] for r in _rows(database)] == ["boot"]
    with database.transaction() as conn:
        assert audit.append_within(conn, [Entry("signature", f"kept{i}") for i in range(2)]) \
            == [1, 2]
        assert audit.append_within(conn, []) == []
    assert audit.append("system", "after") == 3
    assert [r["action"] for r in _rows(database)] == ["boot", "kept0", "kept1", "after"]
    with pytest.raises(ValidationFailed), database.transaction() as conn:
        audit.append_within(conn, [Entry("nonsense", "x")])
    head = audit.checkpoint()
    proof = audit.inclusion_proof(2)
    assert proof.entry.action == "kept1"
    assert SM3.leaf(proof.entry.leaf_data()) == proof.entry.leaf_hash
    verify_inclusion(SM3, index=2, size=head.tree_size, leaf_hash=proof.entry.leaf_hash,
                     proof=proof.proof, root=head.root_hash)


@pytest.mark.parametrize("group_commit", [True, False])
def test_concurrent_appends_give_one_gapless_sequence_and_each_caller_its_own_seq(
        database: Database, holder: KeyHolder, group_commit: bool) -> None:
    """Two 'nodes' (two services with their own node ids) x 6 threads each append at once:
    seq runs 0..n-1, each node's node_seq runs 0..k-1, and every returned seq names the
    caller's own entry."""
    logs = [AuditLog(database, holder, AuditConfig(node_id=f"node-{c}"),
                     group_commit=group_commit) for c in "ab"]
    returned: dict[str, int] = {}
    errors: list[BaseException] = []

    def writer(log: AuditLog, name: str) -> None:
        try:
            for i in range(25):
                marker = f"{name}-{i}"
                returned[marker] = log.append("data", "test.write", name, marker)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(logs[w % 2], f"w{w}")) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    assert not errors
    rows = _rows(database)
    assert [r["seq"] for r in rows] == list(range(300))
    for node in ("node-a", "node-b"):
        assert sorted(r["node_seq"] for r in rows if r["node_id"] == node) == list(range(150))
    assert {r["subject"]: r["seq"] for r in rows} == returned


def test_a_new_process_continues_the_sequence(database: Database, holder: KeyHolder) -> None:
    first = AuditLog(database, holder, AuditConfig(node_id="n1"))
    assert first.append("system", "start") == 0
    first.close()
    second = AuditLog(database, holder, AuditConfig(node_id="n1"))
    assert second.append("system", "start") == 1
    assert second.entry(1).node_seq == 1
    second.close()
    with pytest.raises(RuntimeError):
        second.append("system", "after close")


def test_the_log_is_an_audit_sink(audit: AuditLog) -> None:
    audit("data", "signer.update", "admin:alice", "signer:1", {"field": "department"})
    assert audit.entry(0).action == "signer.update"


def test_personal_data_is_a_keyed_hmac(audit: AuditLog, holder: KeyHolder) -> None:
    value = "110101198506150011"
    hashed = audit.pii(value)
    assert len(hashed) == 64 and value not in hashed
    assert hashed == audit.pii(value) != audit.pii("110101198506150012")
    assert hashed == holder.keyring().hmac(b"pii", value.encode()).hex()  # as signers store it
    holder.seal()
    with pytest.raises(Sealed):
        audit.pii(value)


# --- checkpoints ---------------------------------------------------------------------------------


def test_checkpoints_need_the_kek(audit: AuditLog, holder: KeyHolder) -> None:
    audit.append("system", "x")
    holder.seal()
    with pytest.raises(Sealed):
        audit.checkpoint()
    assert audit.latest_checkpoint() is None


def test_a_checkpoint_is_a_signed_note_over_the_committed_tree(audit: AuditLog,
                                                             database: Database) -> None:
    for i in range(5):
        audit.append("data", f"a{i}")
    cp = audit.checkpoint()
    assert cp.tree_size == 5
    key = audit.public_key()
    assert key is not None
    parsed = checkpoint.verify(cp.note, key, ORIGIN)
    assert (parsed.origin, parsed.size, parsed.root_hash) == (ORIGIN, 5, cp.root_hash)
    leaves = [audit.entry(seq).leaf_hash for seq in range(5)]
    assert cp.root_hash == root_of(leaves)
    assert audit.checkpoint() == cp  # nothing new: the same checkpoint
    assert audit.latest_checkpoint() == cp
    audit.append("data", "more")
    assert audit.checkpoint().tree_size == 6
    assert audit.checkpoint_at(5) == cp


def test_the_signing_key_is_created_once_and_stored_wrapped(audit: AuditLog, database: Database,
                                                           holder: KeyHolder) -> None:
    audit.checkpoint()
    other = AuditLog(database, holder, AuditConfig(origin=ORIGIN))
    other.append("system", "x")
    other.checkpoint()
    other.close()
    W = schema.wrapped_keys  # noqa: N806
    with database.transaction() as conn:
        rows = conn.execute(select(W).where(W.c.purpose == "audit-signing")).all()
    assert len(rows) == 1
    assert len(audit_public_keys(database)) == 1
    # No private key material in clear: the envelope does not contain the PKCS#8 key.
    assert b"\x30\x81" not in rows[0].wrapped[:2] and len(rows[0].wrapped) > 100
    assert audit._signer is not None
    assert audit._signer[2].to_der() not in bytes(rows[0].wrapped)


def test_the_cadence(audit: AuditLog) -> None:
    now = dt.datetime.now(dt.UTC)
    assert audit.maybe_checkpoint(now) is None  # empty log: nothing to sign
    audit.append("system", "a")
    first = audit.maybe_checkpoint(now)
    assert first is not None and first.tree_size == 1
    audit.append("system", "b")
    assert audit.maybe_checkpoint(now + dt.timedelta(seconds=10)) is None  # too soon
    later = audit.maybe_checkpoint(now + dt.timedelta(hours=2))
    assert later is not None and later.tree_size == 2
    assert audit.maybe_checkpoint(now + dt.timedelta(hours=4)) is None  # nothing new


def test_the_background_timer_checkpoints(database: Database, holder: KeyHolder) -> None:
    log = AuditLog(database, holder, AuditConfig(checkpoint_interval_seconds=1))
    log.append("system", "a")
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    while log.latest_checkpoint() is None and dt.datetime.now() < deadline:
        threading.Event().wait(0.1)
    log.close()
    assert log.latest_checkpoint() is not None


def test_the_timer_tolerates_a_sealed_appliance(audit: AuditLog, holder: KeyHolder) -> None:
    audit.append("system", "a")
    holder.seal()
    audit.tick()  # logged and skipped, never raised into the timer thread
    assert audit.latest_checkpoint() is None


def test_an_abandoned_log_stops_its_threads(database: Database, holder: KeyHolder) -> None:
    log = AuditLog(database, holder)
    log.append("system", "a")
    names = {"audit-committer", "audit-checkpoints"}
    mine = [t for t in threading.enumerate() if t.name in names and t.is_alive()]
    assert len(mine) >= 2
    del log
    gc.collect()
    for thread in mine:
        thread.join(timeout=60)
    assert not [t for t in mine if t.is_alive()]


# --- proofs --------------------------------------------------------------------------------------


def test_every_inclusion_proof_verifies_against_the_signed_root(audit: AuditLog) -> None:
    audit.append_many([Entry("data", f"e{i}") for i in range(37)])
    cp = audit.checkpoint()
    audit.append("data", "after the checkpoint")
    for seq in range(37):
        proof = audit.inclusion_proof(seq)  # default size: the newest checkpoint
        assert proof.tree_size == 37 and proof.root_hash == cp.root_hash
        assert proof.entry.seq == seq
        assert SM3.leaf(proof.entry.leaf_data()) == proof.entry.leaf_hash
        verify_inclusion(SM3, index=seq, size=37, leaf_hash=proof.entry.leaf_hash,
                         proof=proof.proof, root=cp.root_hash)
    body = audit.inclusion_proof(3, 38).to_json()
    assert body["tree_size"] == 38 and len(body["proof"]) == 6
    assert base64.b64decode(body["leaf_hash"]) == audit.entry(3).leaf_hash


def test_consistency_proofs_link_checkpoints(audit: AuditLog) -> None:
    sizes = []
    for batch in (3, 1, 8, 13):
        audit.append_many([Entry("data", "x")] * batch)
        sizes.append(audit.checkpoint())
    for old in sizes:
        for new in sizes:
            if old.tree_size <= new.tree_size:
                proof = audit.consistency_proof(old.tree_size, new.tree_size)
                verify_consistency(SM3, size1=old.tree_size, size2=new.tree_size,
                                   proof=proof.proof, root1=old.root_hash, root2=new.root_hash)


def test_proof_ranges_are_checked(audit: AuditLog) -> None:
    audit.append_many([Entry("data", "x")] * 4)
    with pytest.raises(ValidationFailed):
        audit.inclusion_proof(4, 4)
    with pytest.raises(ValidationFailed):
        audit.inclusion_proof(-1, 4)
    with pytest.raises(NotFound):
        audit.inclusion_proof(1, 5)
    with pytest.raises(ValidationFailed):
        audit.consistency_proof(3, 2)
    with pytest.raises(NotFound):
        audit.consistency_proof(3, 9)
    with pytest.raises(NotFound):
        audit.entry(4)
    audit.checkpoint()
    audit.append("data", "after")
    with pytest.raises(ValidationFailed, match="newer than the newest checkpoint"):
        audit.inclusion_proof(4)
    assert audit.inclusion_proof(4, 5).tree_size == 5


# --- search and export ---------------------------------------------------------------------------


def _some_entries(audit: AuditLog) -> None:
    audit.append_many([
        Entry("login", "admin.login", "admin:alice"),
        Entry("login", "admin.login_failed", "admin:mallory", details={"ip": "x"}),
        Entry("data", "signer.create", "admin:alice", "signer:1"),
        Entry("signature", "sign.cosign", "signer:1", "doc:9"),
        Entry("system", "=cmd|' /C calc'!A0", "-2+3", "@SUM(1)"),
    ])


def test_search_filters_and_pages(audit: AuditLog) -> None:
    _some_entries(audit)
    page = audit.search(Filters(actor="admin:alice"))
    assert [r.seq for r in page.entries] == [2, 0] and page.total == 2
    assert [r.seq for r in audit.search(Filters(category="login")).entries] == [1, 0]
    assert audit.search(Filters(action="sign.cosign")).entries[0].subject == "doc:9"
    paged = audit.search(limit=2, offset=2, newest_first=False)
    assert [r.seq for r in paged.entries] == [2, 3] and paged.total == 5
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert audit.search(Filters(since=future)).total == 0
    assert audit.search(Filters(until=future)).total == 5
    assert audit.search(Filters(since=future - dt.timedelta(days=1), until=future)).total == 5


def test_csv_export(audit: AuditLog, database: Database) -> None:
    _some_entries(audit)
    out = io.StringIO()
    assert export(database, out, "csv", Filters(category="login")) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0][:6] == ["seq", "created_at", "node_id", "node_seq", "category", "action"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert rows[2][8] == '{"ip":"x"}'
    assert rows[2][9] == audit.entry(1).leaf_hash.hex()
    out = io.StringIO()
    export(database, out, "csv", Filters(category="system"))
    row = list(csv.reader(io.StringIO(out.getvalue())))[1]
    # Cells a spreadsheet would run as formulas are defused.
    assert row[5:8] == ["'=cmd|' /C calc'!A0", "'-2+3", "'@SUM(1)"]


def test_json_export(audit: AuditLog, database: Database) -> None:
    _some_entries(audit)
    cp = audit.checkpoint()
    out = io.StringIO()
    assert export(database, out, "json") == 5
    doc = json.loads(out.getvalue())
    assert doc["format"] == "medsign-audit-export/v1"
    assert doc["latest_checkpoint"]["note"] == cp.note
    assert [e["seq"] for e in doc["entries"]] == [0, 1, 2, 3, 4]
    assert doc["entries"][4]["action"] == "=cmd|' /C calc'!A0"  # JSON keeps exact values
    empty = io.StringIO()
    assert export(database, empty, "json", Filters(actor="nobody")) == 0
    assert json.loads(empty.getvalue())["entries"] == []
    with pytest.raises(ValidationFailed):
        export(database, io.StringIO(), "xml")


def test_export_reads_in_pages(audit: AuditLog, database: Database) -> None:
    audit.append_many([Entry("data", "bulk")] * 4100)
    out = io.StringIO()
    assert export(database, out, "csv") == 4100
    assert out.getvalue().count("\r\n") == 4101


_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)


@given(seq=st.integers(0, 2**62), node_seq=st.integers(0, 2**62), node_id=_TEXT,
       category=_TEXT, action=_TEXT, actor=_TEXT, subject=_TEXT, details=_TEXT,
       created_at=_TEXT)
def test_the_spelled_out_leaf_is_canonical_json(**row: Any) -> None:
    """``leaf_entry`` is written out by hand for speed: it must equal canonical JSON."""
    assert leaf_entry(**row) == canonical_json({"v": 1, **row}).encode("utf-8")
