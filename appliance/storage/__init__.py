"""Storage: SQLAlchemy 2 engines for SQLite (the embedded default) and PostgreSQL (high
availability), and Alembic migrations run from code.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so several gunicorn workers
can write.  Anything that must be serialized across workers or appliance nodes (the audit log
sequence) uses database locks, never process memory (DESIGN.md section 6).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from appliance.errors import ConfigError
from appliance.storage import schema

__all__ = ["Database", "schema"]

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # FULL: a committed transaction survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


WRITER = "medsign_writer"  # execution option: this connection's transaction will write

#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(engine: Engine, idle_seconds: float) -> Any:
    """A pool ``checkout`` hook: a connection that sat idle longer than ``idle_seconds`` (the
    database may have restarted or failed over meanwhile) is pinged first, and a dead one is
    replaced — the pool retries the checkout with a new connection.  SQLAlchemy's
    ``pool_pre_ping`` pings on every checkout: one more round trip each time, about 15 per
    co-signature and a fifth of its CPU on PostgreSQL, for connections that were in use a few
    milliseconds earlier."""
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # hand it out outside any transaction, as pooled
        except Exception as exc:  # any failure: not worth handing out
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc
    return checkout


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock at BEGIN: two writers that both read then write would
    # otherwise deadlock into SQLITE_BUSY instead of queueing on the busy timeout.  Readers
    # begin deferred: in WAL mode they read a snapshot and neither wait for a writer nor make
    # one wait (a reader taking the write lock used to sleep in SQLite's busy handler, up to
    # 100 ms at a time, whenever another process was committing).
    writer = connection.get_execution_options().get(WRITER, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


class WriteGate:
    """A cross-process lock (``flock`` on ``<database>.writelock``) in front of SQLite's
    ``BEGIN IMMEDIATE``.

    Correctness never depends on it: BEGIN IMMEDIATE serializes the writers.  But a process
    that finds the database locked polls in SQLite's busy handler, sleeping up to 100 ms at a
    time, so with several gunicorn workers writing, a waiting writer sleeps through other
    commits (measured on audit appends: p99 latency 1.7 s with two processes, 25 ms queued on
    ``flock``).  Queued on ``flock`` it wakes the moment the lock is free; the kernel drops the
    lock of a killed process.  ``path=None`` (PostgreSQL, in-memory SQLite) makes it a no-op.
    """

    def __init__(self, path: str | None) -> None:
        self._path = f"{path}.writelock" if path else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._lock:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        assert self._path is not None
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


class Database:
    """One engine plus migrations; ``kind`` is ``sqlite`` or ``postgresql``."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False,
                 unpooled: bool = False,
                 ping_after_idle: float = PING_AFTER_IDLE_SECONDS) -> None:
        """``unpooled`` (SQLite): every checkout opens its own connection, for callers that
        keep one per thread for the thread's life (any number of threads).
        ``ping_after_idle`` (PostgreSQL): see :func:`_ping_if_idle`."""
        if url.startswith("sqlite"):
            self.kind = "sqlite"
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url, echo=echo, **({"poolclass": NullPool} if unpooled else {}))
            self._gate = WriteGate(path if path and path != ":memory:" else None)
            self._write_isolation: dict[str, str] = {}
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
            event.listen(self.engine, "connect",
                         lambda conn, _rec: setattr(conn, "isolation_level", None))
            event.listen(self.engine, "begin", _sqlite_begin)
        elif url.startswith("postgresql"):
            self.kind = "postgresql"
            # Reads run in autocommit: under READ COMMITTED every statement takes its own
            # snapshot anyway, so a transaction around reads only added a BEGIN and a ROLLBACK
            # round trip to each.  transaction() asks for READ COMMITTED explicitly.
            self.engine = create_engine(url, echo=echo, pool_size=pool_size,
                                        isolation_level="AUTOCOMMIT")
            event.listen(self.engine.pool, "checkin", _checked_in)
            event.listen(self.engine.pool, "checkout",
                         _ping_if_idle(self.engine, ping_after_idle))
            self._gate = WriteGate(None)  # PostgreSQL queues lock waiters itself
            self._write_isolation = {"isolation_level": "READ COMMITTED"}
        else:
            raise ConfigError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction that may write: committed on success, rolled back on
        error.

        On SQLite it takes the write lock at once (BEGIN IMMEDIATE), and writers queue on
        :class:`WriteGate` first instead of sleeping in SQLite's busy handler.  Code that only
        reads uses ``engine.connect()``: a deferred transaction over a WAL snapshot, which
        never waits for writers (SQLite), or autocommit statements (PostgreSQL, READ
        COMMITTED: each statement its own snapshot, as inside a transaction)."""
        with self._gate.held(), self.engine.connect() as connection:
            connection.execution_options(**{WRITER: True}, **self._write_isolation)
            with connection.begin():
                yield connection

    @property
    def write_gate(self) -> WriteGate:
        """The gate :meth:`transaction` takes; for code that writes through the driver."""
        return self._gate

    def _alembic(self, connection: Connection) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        with self.transaction() as connection:
            command.upgrade(self._alembic(connection), "head")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return ScriptDirectory.from_config(self._alembic(connection)).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()
