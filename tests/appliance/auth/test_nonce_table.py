"""The shared nonce table (appliance.services.nonce_table): replays refused across processes,
across a restart, across generations for a whole window; overflow and doubt go to the
database, whose primary key then refuses the replay."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from appliance.services.applications import NonceStore, relaxed
from appliance.services.nonce_table import NonceTable
from appliance.storage import Database, schema
from tests.appliance.auth.conftest import T0, Clock

WINDOW = 600
SEEN = dt.datetime.fromtimestamp(T0, dt.UTC)


@pytest.fixture
def store(database: Database) -> NonceStore:
    return NonceStore(relaxed(database))


def _table(path: Path, store: NonceStore, clock: Clock, **kwargs: object) -> NonceTable:
    return NonceTable(path / "nonces.table", WINDOW, store, clock=clock, **kwargs)  # type: ignore[arg-type]


def _in_database(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.request_nonces))
                   .scalar_one())


def test_new_then_replayed(tmp_path: Path, store: NonceStore, database: Database) -> None:
    clock = Clock()
    table = _table(tmp_path, store, clock)
    assert table.record("app_a", "n1", SEEN) is True
    assert table.record("app_a", "n1", SEEN) is False
    assert table.record("app_b", "n1", SEEN) is True  # per key id
    assert table.record("app_a", "n2", SEEN) is True
    assert _in_database(database) == 0  # the fast path writes no row


def test_remembered_for_a_whole_window_then_forgotten(tmp_path: Path, store: NonceStore) -> None:
    clock = Clock(T0 - T0 % WINDOW + WINDOW - 1)  # the last second of a generation
    table = _table(tmp_path, store, clock)
    assert table.record("app_a", "late", SEEN)
    clock.advance(WINDOW)  # the last second of the next generation: still remembered
    assert not table.record("app_a", "late", SEEN)
    clock.advance(2)  # two generations on: forgotten (its timestamp is long out of the window)
    assert table.record("app_a", "late", SEEN)


def test_shared_with_forked_workers_and_kept_across_sigkill(tmp_path: Path,
                                                            store: NonceStore) -> None:
    clock = Clock()
    table = _table(tmp_path, store, clock)
    pid = os.fork()
    if pid == 0:  # a worker records, then dies without any cleanup
        try:
            ok = table.record("app_a", "from-worker", SEEN)
            os.kill(os.getpid(), signal.SIGKILL if ok else signal.SIGTERM)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert table.record("app_a", "from-worker", SEEN) is False
    table.close()
    reopened = _table(tmp_path, store, clock)  # the server restarted
    assert reopened.record("app_a", "from-worker", SEEN) is False
    assert reopened.record("app_a", "fresh", SEEN) is True


def test_overflow_goes_to_the_database(tmp_path: Path, store: NonceStore,
                                       database: Database) -> None:
    clock = Clock()
    table = _table(tmp_path, store, clock, slots=16)  # 70 %: 11 fit
    for n in range(11):
        assert table.record("app_a", f"n{n}", SEEN)
    assert _in_database(database) == 0
    assert table.record("app_a", "overflow", SEEN)
    assert _in_database(database) == 1
    assert not table.record("app_a", "overflow", SEEN)  # the database's primary key
    assert not table.record("app_a", "n3", SEEN)  # the table
    clock.advance(WINDOW - 1)  # next generation: the table has room, the database still asked
    assert table.record("app_a", "again", SEEN)
    assert _in_database(database) == 2
    assert not table.record("app_a", "overflow", SEEN)


def test_a_new_table_defers_to_nonces_already_in_the_database(tmp_path: Path, store: NonceStore,
                                                              database: Database) -> None:
    assert store.record("app_a", "before-upgrade", SEEN)
    table = _table(tmp_path, store, Clock(), newest_in_database=T0)
    assert table.record("app_a", "before-upgrade", SEEN) is False
    assert table.record("app_a", "after", SEEN) is True
    assert _in_database(database) == 2  # within the window, both paths record


def test_a_stuck_lock_falls_back_to_the_database(tmp_path: Path, store: NonceStore,
                                                 database: Database) -> None:
    table = _table(tmp_path, store, Clock())
    assert table.record("app_a", "n", SEEN)
    table._lock.acquire()  # as if a worker died inside the critical section
    try:
        assert table.record("app_a", "m", SEEN) is True
        assert table.record("app_a", "m", SEEN) is False
    finally:
        table._lock.release()
    assert _in_database(database) == 1


def test_another_layout_starts_a_new_table(tmp_path: Path, store: NonceStore) -> None:
    clock = Clock()
    table = _table(tmp_path, store, clock, slots=64)
    assert table.record("app_a", "n", SEEN)
    table.close()
    other = _table(tmp_path, store, clock, slots=128)
    assert other.record("app_a", "n", SEEN) is True


def test_bad_parameters(tmp_path: Path, store: NonceStore) -> None:
    with pytest.raises(ValueError, match="slots"):
        _table(tmp_path, store, Clock(), slots=4)
