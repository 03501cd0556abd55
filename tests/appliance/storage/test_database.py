"""The storage layer on both engines: migrations, pragmas, transactions, concurrency."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, insert, inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError

from appliance.errors import ConfigError
from appliance.storage import Database, schema
from tests.support.postgres import PostgresCluster

EXPECTED_TABLES = {
    "admin_sessions", "admins", "applications", "audit_checkpoints", "audit_log", "kek",
    "request_nonces", "signers", "wrapped_keys", "ca_authorities", "certificates", "ca_channels",
    "ca_active_channels", "webhook_deliveries", "trust_anchors",
}


def test_migrations_create_the_schema_and_are_idempotent(database: Database) -> None:
    assert set(inspect(database.engine).get_table_names()) >= EXPECTED_TABLES
    assert database.schema_revision() == database.head_revision()
    database.migrate()  # a second run changes nothing
    assert database.schema_revision() == database.head_revision()


def test_migrations_build_exactly_the_declared_schema(database: Database) -> None:
    """schema.py (what the services query) and the migrations (what creates the tables) agree:
    alembic's autogenerate comparison finds nothing to change, on both engines."""
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    database.migrate()
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.transaction() as conn:
        conn.execute(insert(schema.admin_sessions).values(
            id="x" * 64, admin_id=999, csrf_hash="y" * 64, created_at=_now(),
            expires_at=_now(), last_seen_at=_now()))


def test_a_failed_transaction_changes_nothing(database: Database) -> None:
    row = {"id": 1, "method": "file", "sealed": "{}", "created_at": _now()}
    with pytest.raises(RuntimeError), database.transaction() as conn:
        conn.execute(insert(schema.kek).values(**row))
        raise RuntimeError("abort")
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(schema.kek)).scalar() == 0


def test_concurrent_writers_all_commit(database: Database) -> None:
    """Eight threads insert 25 rows each; none is lost, none fails with 'database is locked'."""
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for i in range(25):
                with database.transaction() as conn:
                    conn.execute(insert(schema.request_nonces).values(
                        key_id=f"k{worker}", nonce=f"n{i}", seen_at=_now()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with database.transaction() as conn:
        count = conn.execute(select(func.count()).select_from(schema.request_nonces)).scalar()
    assert count == 200


def test_unknown_database_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database"):
        Database("mysql://x")


def _kill_backends(url: str) -> None:
    """What a PostgreSQL restart or failover does to a pooled connection: its backend ends."""
    killer = Database(url)
    try:
        with killer.engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        killer.dispose()


@pytest.mark.parametrize("idle_seconds, survives", [(0.05, True), (3600.0, False)])
def test_a_postgresql_connection_that_died_while_idle_is_replaced(
        postgres_cluster: PostgresCluster, idle_seconds: float, survives: bool) -> None:
    """A pooled connection idle longer than ``ping_after_idle`` is pinged before it is handed
    out, and a dead one replaced; one in use moments ago is not (no round trip per checkout).
    The second case shows the ping is what saves the first."""
    url = postgres_cluster.create_database()
    database = Database(url, pool_size=1, ping_after_idle=idle_seconds)
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        _kill_backends(url)
        time.sleep(0.1)
        if survives:
            with database.engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT 2").scalar() == 2
        else:
            with pytest.raises(OperationalError), database.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 2")
    finally:
        database.dispose()
