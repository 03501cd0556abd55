"""Reliability: an appliance process SIGKILLed in the middle of 5,000 audit appends loses
nothing it acknowledged, the log still verifies, and appending continues.  On SQLite the
appender is killed; on PostgreSQL (fsync and synchronous_commit on) the database server is
SIGKILLed too and restarted through crash recovery.  And two appliance processes appending to
one database at once produce one gapless, consistent sequence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.config import AuditConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.services.audit import AuditLog, verify
from appliance.storage import Database, schema
from tests.support.peers import LoopbackProcess
from tests.support.postgres import PostgresCluster

REPO = Path(__file__).resolve().parents[3]
TOTAL = 5000
KILL_AFTER = 2000
KEK = os.urandom(16)
T = schema.audit_log


def _start(url: str, node_id: str, count: int, threads: int = 8,
           checkpoint_every: int = 500) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.appliance.audit.appender", url, node_id, str(count),
         str(threads), KEK.hex(), str(checkpoint_every)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acks(lines: list[str]) -> dict[int, str]:
    acks: dict[int, str] = {}
    for line in lines:
        if line.strip() and line.strip() != "done":
            seq, subject = line.split()
            assert int(seq) not in acks, f"seq {seq} acknowledged twice"
            acks[int(seq)] = subject
    return acks


def _subjects(database: Database, acks: dict[int, str]) -> dict[int, str]:
    """The stored subject of every acknowledged seq."""
    with database.transaction() as conn:
        rows = conn.execute(select(T.c.seq, T.c.subject).where(T.c.seq.in_(list(acks))))
        return {row.seq: row.subject for row in rows}


def _crash_postgres(cluster: PostgresCluster) -> None:
    """SIGKILL the postmaster and every backend, then start it again on the same data."""
    old = cluster.process
    os.killpg(old.pid, signal.SIGKILL)
    old.stop(grace=5)
    cluster.process = LoopbackProcess(old.args, port=old.port, ready=cluster._accepts_queries,
                                      name="postgres", timeout=120)
    cluster.process.start()


@pytest.fixture(scope="module")
def durable_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(durable=True).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest,
               tmp_path: Path) -> tuple[str, PostgresCluster | None]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}", None
    cluster: PostgresCluster = request.getfixturevalue("durable_cluster")
    return cluster.create_database("sigkill"), cluster


def _migrated(url: str) -> Database:
    database = Database(url)
    database.migrate()
    return database


def _holder(database: Database) -> KeyHolder:
    holder = KeyHolder(KekStore(database))
    holder.adopt(Keyring(KEK))
    return holder


def test_sigkill_in_the_middle_of_appends_loses_no_acknowledged_entry(
        engine_url: tuple[str, PostgresCluster | None]) -> None:
    url, cluster = engine_url
    _migrated(url).dispose()
    child = _start(url, "node-k", TOTAL)
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while len(lines) < KILL_AFTER and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
    assert len(lines) >= KILL_AFTER, child.stderr.read() if child.stderr else ""
    child.send_signal(signal.SIGKILL)
    if cluster is not None:
        # At once, the database server dies too: only what was flushed to disk survives (with
        # synchronous_commit=off, acknowledged commits would be lost here).
        _crash_postgres(cluster)
    rest, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    acks = _acks(lines + rest.splitlines())
    assert KILL_AFTER <= len(acks) < TOTAL  # it really died in the middle

    database = Database(url)
    try:
        holder = _holder(database)
        report = verify(database, keyring=holder.keyring())
        assert report.ok, report.reason
        assert report.entries >= len(acks) and report.checkpoints >= 1
        assert _subjects(database, acks) == acks  # every acknowledged entry, its own content
        log = AuditLog(database, holder, AuditConfig(node_id="node-k"))
        seq = log.append("system", "restart")
        assert seq == report.entries
        assert log.entry(seq).node_seq == report.nodes["node-k"]
        log.checkpoint()
        log.close()
        assert verify(database, keyring=holder.keyring()).ok
    finally:
        database.dispose()


def test_two_processes_appending_at_once_make_one_gapless_sequence(database_url: str) -> None:
    """Two appliance processes (node-a, node-b), 8 threads each, on one database."""
    database = _migrated(database_url)
    children = [_start(database_url, node, 1500, checkpoint_every=400)
                for node in ("node-a", "node-b")]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert out.endswith("done\n")
    acks = [_acks(out.splitlines()) for out, _ in outputs]
    assert not set(acks[0]) & set(acks[1])
    assert sorted({**acks[0], **acks[1]}) == list(range(3000))
    try:
        report = verify(database)
        assert report.ok, report.reason
        assert report.nodes == {"node-a": 1500, "node-b": 1500}
        for node_acks in acks:
            assert _subjects(database, node_acks) == node_acks
    finally:
        database.dispose()
