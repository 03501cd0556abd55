"""A throwaway PostgreSQL cluster on a loopback port, for the storage suites.

``initdb`` refuses to run as root (PEERS.md), so as root the cluster belongs to the ``postgres``
system user and runs under ``runuser``; otherwise it runs as the current user.  The server runs
in the foreground (``postgres -D``, not ``pg_ctl start``) so that stopping the
:class:`LoopbackProcess` process group stops it.  fsync is off: these tests are about SQL
semantics and concurrency; the durability test turns it back on with ``durable=True``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg

from tests.support.peers import LoopbackProcess, free_port, require_tool, run_tool

USER = "app"
_counter = itertools.count()


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return [require_tool("runuser"), "-u", "postgres", "--", *args]


class PostgresCluster:
    """A cluster in a temporary directory; :meth:`create_database` gives fresh databases."""

    def __init__(self, *, durable: bool = False) -> None:
        initdb = require_tool("initdb")
        self.bin_dir = Path(initdb).parent
        self.dir = Path(tempfile.mkdtemp(prefix="medsign-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data = self.dir / "data"
        run_tool(_as_postgres([initdb, "-D", str(self.data), "-U", USER, "--auth=trust",
                               "--no-sync", "-E", "UTF8", "--locale=C"]), timeout=120)
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                    "-c", f"fsync={'on' if durable else 'off'}",
                    "-c", f"synchronous_commit={'on' if durable else 'off'}",
                    "-c", "max_connections=200"]
        port = free_port()
        self.process = LoopbackProcess(
            _as_postgres([str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(port),
                          *settings]), port=port, ready=self._accepts_queries, name="postgres",
            timeout=60)

    def _accepts_queries(self) -> bool:
        # The port opens before recovery ends ("the database system is starting up").
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres",
                                 connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def start(self) -> PostgresCluster:
        self.process.start()
        return self

    @property
    def port(self) -> int:
        assert self.process.port is not None
        return self.process.port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "medsign") -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
