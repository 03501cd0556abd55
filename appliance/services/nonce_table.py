"""The nonce table: replay protection for the signed API without a database write per request.

Why.  Every signed request's nonce must be remembered for twice the accepted clock skew.  As a
database insert per request (``NonceStore``), each request blocks once on I/O; in a gunicorn
gthread worker whose other threads are busy with HMACs and JSON, the thread then waits for the
CPU and the GIL, and every other writer waits on the SQLite write lock it holds: signed round
trips ran at 0.55 of a bare Falcon app, and at 0.95 with the nonces kept in memory.  So the
server keeps them in memory -- memory that all workers of the appliance share and that outlives
them:

- a file (``<data_dir>/nonces.table``, 0600) mapped ``MAP_SHARED`` into the master before it
  forks, so every worker sees one table; a write is in the kernel's page cache the moment it
  is made, so it survives SIGKILL of any or all processes and a restart of the server (the
  same guarantee as SQLite WAL with ``synchronous=NORMAL``, which the database path gave:
  only a power cut or kernel crash may lose the last moment's nonces);
- one lock (a POSIX semaphore inherited from the master): taken without a system call when
  free, held for a hash probe of a few microseconds, never across I/O;
- two generations of open-addressing slots, each covering ``window`` = 2 x skew seconds
  (``floor(now / window)`` picks the current one): a nonce is looked up in both and inserted
  into the current one, so it is remembered for at least one whole window; the generation
  before last is zeroed when its time comes, so nothing is ever deleted inside a generation and
  linear probing stays exact;
- slots hold a 16-byte BLAKE2b of (key id, nonce) keyed with a random per-table key, so a
  client cannot aim nonces at one probe chain.

Overflow and doubt fall back to the database, never to acceptance: when the current generation
is 70 % full, when the lock cannot be had within a second (a worker killed inside the critical
section), or while the database holds nonces of the last window that the table never saw (a
new table on an appliance that recorded nonces in the database before, or a database-backed
overflow), each nonce is also inserted through the ``NonceStore`` fallback, whose primary key
refuses duplicates.

Threat model: as for the rest of request authentication (``applications``).  The file lives
in the 0700 data directory; whoever can write it can already read the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import mmap
import multiprocessing
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Any

from appliance.services.applications import NonceRecorder

LOG = logging.getLogger("medsign.nonces")

FILE_NAME = "nonces.table"
DEFAULT_SLOTS = 1 << 21  # per generation: 2M requests per window (16 B each, 64 MiB file)
MAX_LOAD = 0.7
LOCK_TIMEOUT_SECONDS = 1.0
_MAGIC = b"MSNONCE1"
# magic, slots, window seconds, hash key, generation of half 0 and 1, count of half 0 and 1,
# database-also-until (epoch seconds)
_HEADER = struct.Struct("<8sQQ32sqqQQd")
_HEADER_SIZE = 4096
_SLOT = 16
_EMPTY = bytes(_SLOT)


class NonceTable:
    """A :class:`~appliance.services.applications.NonceRecorder` over the shared table, with
    ``fallback`` (a ``NonceStore``) for overflow and doubt.  Create it in the process that
    forks the others."""

    def __init__(self, path: Path, window_seconds: int, fallback: NonceRecorder, *,
                 newest_in_database: float | None = None, slots: int = DEFAULT_SLOTS,
                 clock: Any = time.time) -> None:
        """``newest_in_database``: when the newest nonce the database holds was seen (epoch
        seconds), if any; a new table sends nonces to the database too for a window after it."""
        if slots < 16 or window_seconds < 1:
            raise ValueError("slots >= 16 and window_seconds >= 1")
        self._fallback, self._clock = fallback, clock
        self._lock = multiprocessing.get_context("fork").Lock()
        size = _HEADER_SIZE + 2 * slots * _SLOT
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fresh = os.fstat(fd).st_size != size
            if fresh:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)  # sparse: pages appear as slots are used
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        header = self._header()
        if fresh or header[0] != _MAGIC or header[1] != slots or header[2] != window_seconds:
            if not fresh:
                LOG.warning("nonce table %s has another layout; starting a new one", path)
            self._map[:_HEADER_SIZE] = bytes(_HEADER_SIZE)
            also_until = (newest_in_database + window_seconds + 1
                          if newest_in_database is not None else 0.0)
            self._write_header(_MAGIC, slots, window_seconds, secrets.token_bytes(32), -1, -1,
                               0, 0, also_until)
            if not fresh:
                self._map[_HEADER_SIZE:] = bytes(size - _HEADER_SIZE)
        self._slots, self._window = slots, window_seconds
        self._key = self._header()[3]

    def _header(self) -> tuple[Any, ...]:
        return _HEADER.unpack_from(self._map, 0)

    def _write_header(self, *fields: Any) -> None:
        _HEADER.pack_into(self._map, 0, *fields)

    def record(self, key_id: str, nonce: str, seen_at: dt.datetime) -> bool:
        digest = hashlib.blake2b(f"{key_id}\x00{nonce}".encode(), digest_size=_SLOT,
                                 key=self._key).digest()
        if digest == _EMPTY:
            digest = b"\x01" + digest[1:]
        now = self._clock()
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            LOG.error("nonce table lock not available; recording in the database")
            return self._fallback.record(key_id, nonce, seen_at)
        try:
            new, also_database = self._insert(digest, now)
        finally:
            self._lock.release()
        if not new:
            return False
        return self._fallback.record(key_id, nonce, seen_at) if also_database else True

    def _insert(self, digest: bytes, now: float) -> tuple[bool, bool]:
        """(new, must also go to the database); under the lock."""
        magic, slots, window, key, gen0, gen1, count0, count1, db_until = self._header()
        generation = int(now // window)
        gens, counts = [gen0, gen1], [count0, count1]
        current = generation % 2
        if gens[current] != generation:  # its time came: forget the generation before last
            if counts[current]:
                self._clear(current)
            gens[current], counts[current] = generation, 0
        previous = 1 - current
        if gens[previous] == generation - 1 and self._find(previous, digest) is None:
            return False, False
        found = self._find(current, digest)
        if found is None:
            return False, False
        if counts[current] >= int(MAX_LOAD * slots):
            db_until = max(db_until, now + window + 1)
        else:
            self._map[found:found + _SLOT] = digest
            counts[current] += 1
        self._write_header(magic, slots, window, key, gens[0], gens[1], counts[0], counts[1],
                           db_until)
        return True, now < db_until

    def _find(self, half: int, digest: bytes) -> int | None:
        """The offset of the empty slot where ``digest`` goes in ``half``, or None if it is
        there already (a full generation never happens: inserts stop at MAX_LOAD)."""
        base = _HEADER_SIZE + half * self._slots * _SLOT
        index = int.from_bytes(digest[:8], "little") % self._slots
        mapped = self._map
        while True:
            offset = base + index * _SLOT
            slot = mapped[offset:offset + _SLOT]
            if slot == _EMPTY:
                return offset
            if slot == digest:
                return None
            index = (index + 1) % self._slots

    def _clear(self, half: int) -> None:
        base, length = _HEADER_SIZE + half * self._slots * _SLOT, self._slots * _SLOT
        if base % mmap.PAGESIZE == 0 and length % mmap.PAGESIZE == 0:
            try:  # punch a hole: zeroes without writing 32 MiB back to the disk
                self._map.madvise(mmap.MADV_REMOVE, base, length)
                return
            except (AttributeError, OSError):
                pass
        self._map[base:base + length] = bytes(length)

    def close(self) -> None:
        self._map.close()
