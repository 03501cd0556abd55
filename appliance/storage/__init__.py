"""Storage: SQLAlchemy 2 engines for SQLite (the embedded default) and PostgreSQL (high
availability), and Alembic migrations run from code.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so several gunicorn workers
can write.  Anything that must be serialized across workers or appliance nodes (the audit log
sequence) uses database locks, never process memory (DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event

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


def _sqlite_begin_immediate(connection: Connection) -> None:
    # Take the write lock at BEGIN: two writers that both read then write would otherwise
    # deadlock into SQLITE_BUSY instead of queueing on the busy timeout.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One engine plus migrations; ``kind`` is ``sqlite`` or ``postgresql``."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False) -> None:
        if url.startswith("sqlite"):
            self.kind = "sqlite"
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, echo=echo)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
            event.listen(self.engine, "connect",
                         lambda conn, _rec: setattr(conn, "isolation_level", None))
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        elif url.startswith("postgresql"):
            self.kind = "postgresql"
            self.engine = create_engine(url, echo=echo, pool_size=pool_size,
                                        pool_pre_ping=True)
        else:
            raise ConfigError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a transaction: committed on success, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    def _alembic(self, connection: Connection) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        return cfg

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        with self.engine.begin() as connection:
            command.upgrade(self._alembic(connection), "head")

    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return ScriptDirectory.from_config(self._alembic(connection)).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()
