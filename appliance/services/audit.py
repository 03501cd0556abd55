"""The audit log: one append-only, tamper-evident record of every security-relevant event.

Every login, signature, data change and system event is one row of ``audit_log`` and one leaf
of an RFC 6962 Merkle tree over SM3 (DESIGN.md section 7, :mod:`evidence.merkle`).  The leaf is
SM3(0x00 || canonical JSON of the whole row), so the row's position (``seq``), node, per-node
sequence, time, category, action, actor, subject and details are all covered.  Signed tree heads
(checkpoints, C2SP tlog-checkpoint text signed with the appliance's SM2 audit key) are made at a
fixed cadence and on demand; inclusion and consistency proofs come from the stored leaf hashes.

Threat model.  We defend against:

- someone with write access to the database (or a restored, edited backup) changing, deleting,
  inserting or reordering rows.  :func:`verify` recomputes every leaf from the row's content,
  checks that ``seq`` runs 0, 1, 2, ... without gaps, that each node's ``node_seq`` runs
  without gaps or repeats, and that every stored checkpoint is signed by an audit key and
  matches the tree recomputed from the rows; it names the first bad index.  Rewriting a row
  *and* its leaf hash is caught by the next checkpoint (then the report gives the range since
  the last good one).  Whoever can also re-sign checkpoints (a stolen KEK, or a forged key row
  that a verifier trusts) can rewrite history *inside* the appliance: pin the audit public key
  (``trusted_keys``) and keep checkpoints outside (syslog, evidence reports) to catch that.
- lost acknowledgements: ``append`` returns only after the row's transaction committed
  (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``), so an acknowledged entry
  survives SIGKILL and power loss.
- concurrent writers producing gaps, duplicates or two histories: appends from every thread,
  gunicorn worker and appliance node serialize on the database (SQLite ``BEGIN IMMEDIATE``,
  PostgreSQL ``pg_advisory_xact_lock``), then take ``max(seq) + 1`` — never a counter in process
  memory (DESIGN.md section 6).
- personal data leaking through exports and syslog: details carry :meth:`AuditLog.pii` values
  (HMAC-SM3 under a key derived from the KEK), never ID numbers or phone numbers in clear.

Throughput comes from group commit: an in-process committer thread takes every append queued
while the previous transaction was committing and writes them in one transaction, and each
caller is acknowledged only after that commit.

For the command line (``medsign audit verify|export``): :func:`verify` returns a
:class:`VerificationReport`; :func:`export` writes CSV or JSON.  Neither needs the KEK.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from sqlalchemy import Connection, Row, bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from appliance.config import AuditConfig
from appliance.custody import KeyHolder, Keyring
from appliance.errors import NotFound, Sealed, ValidationFailed
from appliance.storage import Database, schema
from evidence import (
    SM3,
    Checkpoint,
    CheckpointSignatureError,
    CompactRange,
    Hasher,
    MalformedCheckpoint,
    MerkleTree,
    checkpoint,
)
from signcore.errors import DecryptionError, SigncoreError
from signcore.keys import load_private_key, load_public_key
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "CATEGORIES",
    "AuditLog",
    "CheckpointRecord",
    "ConsistencyProof",
    "Entry",
    "Filters",
    "InclusionProof",
    "Page",
    "Record",
    "VerificationReport",
    "audit_public_keys",
    "export",
    "export_chunks",
    "records",
    "verify",
]

LOG = logging.getLogger("medsign.audit")
T = schema.audit_log
C = schema.audit_checkpoints
# Built once: every append runs them (building a statement costs more than executing it).
_LAST_SEQ = select(func.max(T.c.seq))
_LAST_NODE_SEQ = select(func.max(T.c.node_seq)).where(T.c.node_id == bindparam("node_id"))
W = schema.wrapped_keys
CATEGORIES = ("login", "signature", "data", "system")
SIGNING_PURPOSE = "audit-signing"
LOCK_KEY = int.from_bytes(b"medsaudt", "big")  # pg_advisory_xact_lock key of the log
MAX_DETAILS_BYTES = 16 * 1024
MAX_BATCH = 2000
GATHER_SECONDS = 0.002  # longest a commit waits for the writers it just acknowledged
EXPORT_FORMATS = ("csv", "json")
_LIMITS = {"action": 64, "actor": 128, "subject": 256}
_PAGE = 2000


# --- entries and their canonical form ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One event to append.  ``details`` is JSON data; personal data in it goes through
    :meth:`AuditLog.pii` first."""

    category: str
    action: str
    actor: str = ""
    subject: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
_CONTROL = re.compile(r"[\x00-\x1f]")
_quote: Callable[[str], str] = json.encoder.encode_basestring  # what ensure_ascii=False uses


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text, no NaN: one spelling for one value."""
    return _CANONICAL.encode(value)


def _check_entry(entry: Entry) -> str:
    """Validate an entry before it is queued; its canonical details text."""
    if entry.category not in CATEGORIES:
        raise ValidationFailed(f"audit category must be one of {', '.join(CATEGORIES)}")
    if not entry.action:
        raise ValidationFailed("an audit entry has an action")
    for name, limit in _LIMITS.items():
        value = getattr(entry, name)
        if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
            raise ValidationFailed(f"audit {name} is text of at most {limit} characters")
    if not isinstance(entry.details, Mapping):
        raise ValidationFailed("audit details are a JSON object")
    try:
        details = canonical_json(dict(entry.details))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"audit details are not JSON data: {exc}") from None
    if len(details.encode()) > MAX_DETAILS_BYTES:
        raise ValidationFailed(f"audit details are larger than {MAX_DETAILS_BYTES} bytes")
    return details


def timestamp(value: dt.datetime) -> str:
    """UTC, microseconds, 'Z': how times appear in leaves, exports and the API."""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_LEAF = ('{"action":%s,"actor":%s,"category":%s,"created_at":%s,"details":%s,"node_id":%s,'
         '"node_seq":%d,"seq":%d,"subject":%s,"v":1}')


def leaf_entry(*, seq: int, node_id: str, node_seq: int, category: str, action: str, actor: str,
               subject: str, details: str, created_at: str) -> bytes:
    """The bytes a leaf hashes: canonical JSON (sorted keys, no spaces) of the whole row, with
    ``"v": 1``.  ``details`` is the stored JSON text (covered byte for byte, as a string),
    ``created_at`` the :func:`timestamp` text.  Spelled out rather than built with
    :func:`canonical_json` because it runs for every append; the tests hold the two equal."""
    q = _quote
    return (_LEAF % (q(action), q(actor), q(category), q(created_at), q(details), q(node_id),
                     node_seq, seq, q(subject))).encode("utf-8")


@dataclasses.dataclass(frozen=True)
class Record:
    """A stored entry."""

    seq: int
    node_id: str
    node_seq: int
    category: str
    action: str
    actor: str
    subject: str
    details: str  # canonical JSON text
    created_at: dt.datetime
    leaf_hash: bytes

    @classmethod
    def from_row(cls, row: Row[Any]) -> Record:
        return cls(row.seq, row.node_id, row.node_seq, row.category, row.action, row.actor,
                   row.subject, row.details, _db_time(row.created_at), bytes(row.leaf_hash))

    def leaf_data(self) -> bytes:
        return leaf_entry(seq=self.seq, node_id=self.node_id, node_seq=self.node_seq,
                          category=self.category, action=self.action, actor=self.actor,
                          subject=self.subject, details=self.details,
                          created_at=timestamp(self.created_at))

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "node_id": self.node_id, "node_seq": self.node_seq,
                "category": self.category, "action": self.action, "actor": self.actor,
                "subject": self.subject, "details": json.loads(self.details),
                "created_at": timestamp(self.created_at), "leaf_hash": _b64(self.leaf_hash)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- search --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the audit administrator searches and exports by (all optional, all ANDed)."""

    category: str | None = None
    action: str | None = None
    actor: str | None = None
    subject: str | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive

    def where(self) -> list[Any]:
        clauses: list[Any] = []
        for name in ("category", "action", "actor", "subject"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(T.c[name] == value)
        if self.since is not None:
            clauses.append(T.c.created_at >= _db_time(self.since))
        if self.until is not None:
            clauses.append(T.c.created_at < _db_time(self.until))
        return clauses

    def to_json(self) -> dict[str, str]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return {k: timestamp(v) if isinstance(v, dt.datetime) else v for k, v in out.items()}


def _db_time(value: dt.datetime) -> dt.datetime:
    """Aware UTC (SQLite gives back naive datetimes; everything stored is UTC)."""
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Page:
    entries: list[Record]
    total: int
    limit: int
    offset: int


def records(database: Database, filters: Filters | None = None, *,
            page: int = _PAGE) -> Iterator[Record]:
    """Every matching entry in ``seq`` order, read in short transactions (keyset paging)."""
    clauses = (filters or Filters()).where()
    after = -1
    while True:
        with database.transaction() as conn:
            rows = conn.execute(select(T).where(T.c.seq > after, *clauses)
                                .order_by(T.c.seq).limit(page)).all()
        yield from (Record.from_row(row) for row in rows)
        if len(rows) < page:
            return
        after = rows[-1].seq


# --- checkpoints and proofs ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    tree_size: int
    root_hash: bytes
    note: str
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "root_hash": _b64(self.root_hash),
                "note": self.note, "created_at": timestamp(self.created_at)}


@dataclasses.dataclass(frozen=True)
class InclusionProof:
    entry: Record
    tree_size: int
    root_hash: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.entry.seq, "tree_size": self.tree_size,
                "leaf_hash": _b64(self.entry.leaf_hash), "root_hash": _b64(self.root_hash),
                "proof": [_b64(h) for h in self.proof], "entry": self.entry.to_json(),
                "hash": "sm3"}


@dataclasses.dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "second": self.second,
                "first_root": _b64(self.first_root), "second_root": _b64(self.second_root),
                "proof": [_b64(h) for h in self.proof], "hash": "sm3"}


def _key_context(key_id: str) -> bytes:
    return f"medsign/wrapped-key/{SIGNING_PURPOSE}/{key_id}".encode()


def audit_public_keys(database: Database) -> list[SM2PublicKey]:
    """Every audit-signing public key the database records (active and retired)."""
    with database.transaction() as conn:
        rows = conn.execute(select(W.c.public_key).where(W.c.purpose == SIGNING_PURPOSE)
                            .order_by(W.c.created_at)).all()
    keys = []
    for row in rows:
        key = load_public_key(bytes(row.public_key))
        if isinstance(key, SM2PublicKey):
            keys.append(key)
    return keys


# --- group commit --------------------------------------------------------------------------------


class _Pending:
    __slots__ = ("done", "entries", "error", "seqs")

    def __init__(self, entries: list[tuple[Entry, str]]) -> None:
        self.entries = entries
        self.done = threading.Event()
        self.seqs: list[int] = []
        self.error: BaseException | None = None


_STOP = object()
_Writer = Callable[[list[tuple[Entry, str]]], list[int]]


class _Committer:
    """One thread that writes everything queued since its last commit in one transaction.

    After taking the first waiting append it keeps gathering, for at most ``gather`` seconds,
    until as many callers wait as were in the previous batch: the callers it just acknowledged
    are about to append again, and one commit for all of them costs one disk flush instead of
    one each.  A lone writer (previous batch of one) never waits.
    """

    def __init__(self, write: Callable[[], _Writer | None], max_batch: int,
                 gather: float) -> None:
        # ``write`` dereferences a weak method: an abandoned AuditLog is not kept alive by its
        # own thread, and its finalizer stops the thread.
        self._write, self._max, self._gather = write, max_batch, gather
        self._expected = 1
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-committer", daemon=True)
        self._thread.start()

    def submit(self, entries: list[tuple[Entry, str]]) -> list[int]:
        pending = _Pending(entries)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.seqs

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def stop_soon(self) -> None:
        self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            self._commit(batch)
            if stop:
                return

    def _next(self, batch_size: int, deadline: float) -> Any:
        """The next queued item; None when the batch should go now."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            remaining = deadline - time.monotonic()
            if batch_size >= self._expected or remaining <= 0:
                return None
        try:
            return self._queue.get(timeout=remaining)
        except queue.Empty:
            return None

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, count = [first], len(first.entries)
        deadline = time.monotonic() + self._gather
        stop = False
        while count < self._max:
            item = self._next(len(batch), deadline)
            if item is None:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
            count += len(item.entries)
        self._expected = len(batch)
        return batch, stop

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            write = self._write()
            if write is None:
                raise RuntimeError("the audit log was closed")
            seqs = write([e for pending in batch for e in pending.entries])
        except BaseException as exc:  # every waiting caller learns of the failure
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        start = 0
        for pending in batch:
            pending.seqs = seqs[start:start + len(pending.entries)]
            start += len(pending.entries)
            pending.done.set()


_COLUMNS = ("seq", "node_id", "node_seq", "category", "action", "actor", "subject", "details",
            "created_at", "leaf_hash")


def _insert_sql(conn: Connection) -> str:
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return (f"INSERT INTO {T.name} ({', '.join(_COLUMNS)}) "  # noqa: S608 -- constants only
            f"VALUES ({', '.join([mark] * len(_COLUMNS))})")


def _bind(conn: Connection, column_type: Any, value: Any) -> Any:
    """``value`` as SQLAlchemy would hand it to the driver (SQLite stores times as text)."""
    process = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process else value


# --- the service ---------------------------------------------------------------------------------


class AuditLog:
    """Append to, checkpoint, search and prove the audit log of one appliance process.

    Callable as an audit sink: ``audit(category, action, actor, subject, details)``.
    """

    def __init__(self, database: Database, key_holder: KeyHolder,
                 config: AuditConfig | None = None, *, group_commit: bool = True,
                 max_batch: int = MAX_BATCH, gather_seconds: float = GATHER_SECONDS,
                 hasher: Hasher = SM3) -> None:
        self._db, self._holder = database, key_holder
        self.config = config or AuditConfig()
        self._group_commit, self._max_batch, self.hasher = group_commit, max_batch, hasher
        self._gather = gather_seconds
        self._lock = threading.Lock()
        self._pid = 0
        self._committer: _Committer | None = None
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()
        self._tree_lock = threading.Lock()
        self._tree = MerkleTree(self._leaf_hashes, 0, hasher=hasher, chunk_bits=10)
        self._signer: tuple[str, str, SM2PrivateKey] | None = None  # (kek fp, key id, key)

    @property
    def database(self) -> Database:
        return self._db

    # --- appending ---

    def append(self, category: str, action: str, actor: str = "", subject: str = "",
               details: Mapping[str, Any] | None = None) -> int:
        """Append one entry; its ``seq`` once it is durably committed."""
        return self.append_many([Entry(category, action, actor, subject, details or {})])[0]

    def __call__(self, category: str, action: str, actor: str, subject: str,
                 details: Mapping[str, Any]) -> None:
        self.append(category, action, actor, subject, details)

    def append_many(self, entries: Iterable[Entry]) -> list[int]:
        """Append several entries in one transaction (consecutive ``seq``); their ``seq``."""
        checked = [(entry, _check_entry(entry)) for entry in entries]
        if not checked:
            return []
        if not self._group_commit:
            return self._write(checked)
        return self._ensure_threads().submit(checked)

    def pii(self, value: str) -> str:
        """The salted HMAC-SM3 of a personal datum, as details carry it (hex; Sealed while
        sealed).  Equal values give equal HMACs on one installation, so an authorized
        investigator can still find every entry about one person."""
        return self._holder.keyring().hmac(b"pii", value.encode("utf-8")).hex()

    def _ensure_threads(self) -> _Committer:
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("the audit log is closed")
            if self._pid != os.getpid() or self._committer is None:  # new, or forked
                self._pid = os.getpid()
                self._committer = _Committer(weakref.WeakMethod(self._write), self._max_batch,
                                             self._gather)
                weakref.finalize(self, self._committer.stop_soon)
                self._start_ticker()
            return self._committer

    def append_within(self, conn: Connection, entries: Iterable[Entry]) -> list[int]:
        """Append entries inside the caller's open write transaction
        (:meth:`Database.transaction`): they commit or roll back with the change they record
        (no committed signature without its entry, even if the process dies right after the
        commit) and cost no commit of their own.  The log's lock is held from here to the
        caller's commit, so call this last in the transaction."""
        checked = [(entry, _check_entry(entry)) for entry in entries]
        return self._insert(conn, checked) if checked else []

    def _write(self, entries: list[tuple[Entry, str]]) -> list[int]:
        with self._db.transaction() as conn:
            return self._insert(conn, entries)

    def _insert(self, conn: Connection, entries: list[tuple[Entry, str]]) -> list[int]:
        self._serialize(conn)
        last = conn.execute(_LAST_SEQ).scalar()
        last_node = conn.execute(_LAST_NODE_SEQ, {"node_id": self.config.node_id}).scalar()
        first = 0 if last is None else last + 1
        node_first = 0 if last_node is None else last_node + 1
        now = dt.datetime.now(dt.UTC)
        stamp, stored = timestamp(now), _bind(conn, T.c.created_at.type, now)
        rows = [self._row(first + i, node_first + i, entry, details, stamp=stamp,
                          stored=stored) for i, (entry, details) in enumerate(entries)]
        # Straight to the driver: SQLAlchemy's per-row parameter handling was a quarter
        # of the CPU an append costs, and the committer is CPU-bound under load.
        conn.exec_driver_sql(_insert_sql(conn), rows)
        return list(range(first, first + len(entries)))

    def _serialize(self, conn: Connection) -> None:
        """Hold the log's lock until commit (SQLite: BEGIN IMMEDIATE already holds it)."""
        if self._db.kind == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})

    def _row(self, seq: int, node_seq: int, entry: Entry, details: str, *, stamp: str,
             stored: Any) -> tuple[Any, ...]:
        """One row in ``_COLUMNS`` order; ``stored`` is the time as the driver takes it."""
        node_id = self.config.node_id
        leaf = self.hasher.leaf(leaf_entry(
            seq=seq, node_id=node_id, node_seq=node_seq, category=entry.category,
            action=entry.action, actor=entry.actor, subject=entry.subject, details=details,
            created_at=stamp))
        return (seq, node_id, node_seq, entry.category, entry.action, entry.actor,
                entry.subject, details, stored, leaf)

    # --- checkpoints ---

    def checkpoint(self) -> CheckpointRecord:
        """Sign a tree head over everything committed now (idempotent per tree size)."""
        keyring = self._holder.keyring()
        name, key = self.config.origin, self._signing_key(keyring)
        with self._tree_lock:
            size = self._grow()
            root = self._tree.root(size)
        note = checkpoint.sign(Checkpoint(name, size, root), key, name)
        created = dt.datetime.now(dt.UTC)
        try:
            with self._db.transaction() as conn:
                conn.execute(insert(C).values(tree_size=size, root_hash=root, note=note,
                                              created_at=created))
        except IntegrityError:  # another worker or node signed this size first
            existing = self.checkpoint_at(size)
            if existing is None:
                raise
            return existing
        return CheckpointRecord(size, root, note, created)

    def checkpoint_at(self, tree_size: int) -> CheckpointRecord | None:
        with self._db.transaction() as conn:
            row = conn.execute(select(C).where(C.c.tree_size == tree_size)).first()
        return _checkpoint_record(row) if row else None

    def latest_checkpoint(self) -> CheckpointRecord | None:
        with self._db.transaction() as conn:
            row = conn.execute(select(C).order_by(C.c.tree_size.desc()).limit(1)).first()
        return _checkpoint_record(row) if row else None

    def maybe_checkpoint(self, now: dt.datetime | None = None) -> CheckpointRecord | None:
        """The cadence: sign a new tree head if the log grew and the newest checkpoint is at
        least ``checkpoint_interval_seconds`` old (or there is none).  Safe to call from every
        worker and node: they look at the same newest checkpoint."""
        now = now or dt.datetime.now(dt.UTC)
        latest = self.latest_checkpoint()
        size = self.size()
        if latest is not None:
            age = now - _db_time(latest.created_at)
            if size <= latest.tree_size or age.total_seconds() < self._interval():
                return None
        elif size == 0:
            return None
        return self.checkpoint()

    def _interval(self) -> int:
        return max(1, self.config.checkpoint_interval_seconds)

    def _start_ticker(self) -> None:
        self._ticker = threading.Thread(target=_tick_forever, name="audit-checkpoints",
                                        args=(weakref.ref(self), self._closed), daemon=True)
        weakref.finalize(self, self._closed.set)
        self._ticker.start()

    def tick(self) -> None:
        """One beat of the cadence, as the timer thread runs it (errors are logged)."""
        try:
            self.maybe_checkpoint()
        except Sealed:
            pass  # nothing can be signed while sealed; entries keep accumulating
        except OperationalError as exc:
            LOG.warning("audit checkpoint skipped, the database is unavailable: %s",
                        str(exc).splitlines()[0])
        except Exception:
            LOG.exception("audit checkpoint failed")

    def _signing_key(self, keyring: Keyring) -> SM2PrivateKey:
        """The SM2 audit-signing key, created on first use (under the log's lock, so two
        processes never create two)."""
        cached = self._signer
        if cached is not None and cached[0] == keyring.fingerprint:
            return cached[2]
        with self._db.transaction() as conn:
            self._serialize(conn)
            row = conn.execute(select(W).where(W.c.purpose == SIGNING_PURPOSE,
                                               W.c.status == "active")
                               .order_by(W.c.created_at.desc()).limit(1)).first()
            if row is None:
                key_id, key = str(uuid.uuid4()), SM2PrivateKey.generate()
                conn.execute(insert(W).values(
                    id=key_id, purpose=SIGNING_PURPOSE, key_type="sm2",
                    public_key=key.public_key().to_der(),
                    wrapped=keyring.wrap(key.to_der(), _key_context(key_id)),
                    status="active", created_at=dt.datetime.now(dt.UTC)))
            else:
                key_id, key = row.id, _open_key(keyring, row)
        self._signer = (keyring.fingerprint, key_id, key)
        return key

    def public_key(self) -> SM2PublicKey | None:
        """The active audit-signing public key (None before the first checkpoint)."""
        keys = audit_public_keys(self._db)
        return keys[-1] if keys else None

    # --- proofs ---

    def size(self) -> int:
        """How many entries are committed."""
        with self._db.transaction() as conn:
            last = conn.execute(select(func.max(T.c.seq))).scalar()
        return 0 if last is None else last + 1

    def _grow(self) -> int:
        size = self.size()
        if size > self._tree.size:
            self._tree.grow(size)
        return self._tree.size

    def _leaf_hashes(self, start: int, stop: int) -> list[bytes]:
        with self._db.transaction() as conn:
            rows = conn.execute(select(T.c.leaf_hash).where(T.c.seq >= start, T.c.seq < stop)
                                .order_by(T.c.seq)).scalars().all()
        return [bytes(value) for value in rows]

    def _default_size(self, size: int | None) -> int:
        if size is not None:
            return size
        latest = self.latest_checkpoint()
        return latest.tree_size if latest else self.size()

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Proof that entry ``seq`` is in the tree of ``tree_size`` entries (default: the
        newest checkpoint's size, whose signed root the verifier holds)."""
        defaulted, tree_size = tree_size is None, self._default_size(tree_size)
        if not 0 <= seq < tree_size:
            hint = ("; it is newer than the newest checkpoint: sign one, or name a tree_size"
                    if defaulted and seq >= 0 else "")
            raise ValidationFailed(f"entry {seq} is not in a tree of {tree_size} entries{hint}")
        with self._tree_lock:
            if tree_size > self._grow():
                raise NotFound(f"the log has fewer than {tree_size} entries")
            proof = self._tree.inclusion_proof(seq, tree_size)
            root = self._tree.root(tree_size)
        entry = self.entry(seq)
        return InclusionProof(entry, tree_size, root, proof)

    def consistency_proof(self, first: int, second: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``second`` entries extends the tree of ``first``."""
        second = self._default_size(second)
        if not 0 <= first <= second:
            raise ValidationFailed("the first tree size is between 0 and the second")
        with self._tree_lock:
            if second > self._grow():
                raise NotFound(f"the log has fewer than {second} entries")
            proof = self._tree.consistency_proof(first, second)
            roots = self._tree.root(first), self._tree.root(second)
        return ConsistencyProof(first, second, roots[0], roots[1], proof)

    # --- reading ---

    def entry(self, seq: int) -> Record:
        with self._db.transaction() as conn:
            row = conn.execute(select(T).where(T.c.seq == seq)).first()
        if row is None:
            raise NotFound(f"no audit entry {seq}")
        return Record.from_row(row)

    def search(self, filters: Filters | None = None, *, limit: int = 100, offset: int = 0,
               newest_first: bool = True) -> Page:
        clauses = (filters or Filters()).where()
        order = T.c.seq.desc() if newest_first else T.c.seq
        with self._db.transaction() as conn:
            total = conn.execute(select(func.count()).select_from(T).where(*clauses)).scalar()
            rows = conn.execute(select(T).where(*clauses).order_by(order)
                                .limit(limit).offset(offset)).all()
        return Page([Record.from_row(r) for r in rows], int(total or 0), limit, offset)

    def close(self) -> None:
        """Stop the committer (after it wrote what is queued) and the checkpoint timer."""
        with self._lock:
            self._closed.set()
            committer, self._committer = self._committer, None
        if committer is not None and self._pid == os.getpid():
            committer.stop()


def _tick_forever(ref: weakref.ReferenceType[AuditLog], closed: threading.Event) -> None:
    """The checkpoint timer; ends when the log is closed or garbage."""
    while True:
        log = ref()
        if log is None:
            return
        interval = log._interval()
        del log
        if closed.wait(interval):
            return
        log = ref()
        if log is None:
            return
        log.tick()
        del log


def _checkpoint_record(row: Row[Any]) -> CheckpointRecord:
    return CheckpointRecord(row.tree_size, bytes(row.root_hash), row.note,
                            _db_time(row.created_at))


def _open_key(keyring: Keyring, row: Row[Any]) -> SM2PrivateKey:
    key = load_private_key(keyring.unwrap(bytes(row.wrapped), _key_context(row.id)))
    if not isinstance(key, SM2PrivateKey) or key.public_key().to_der() != bytes(row.public_key):
        raise DecryptionError("the audit-signing key does not match its public key")
    return key


# --- verification --------------------------------------------------------------------------------


@dataclasses.dataclass
class VerificationReport:
    """What :func:`verify` found.  ``ok`` is False at the first problem, which
    ``first_bad_index`` (an entry's seq) or ``bad_checkpoint`` (a tree size) and ``reason``
    describe; counts say how far the check got."""

    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root_hash: bytes = b""
    first_bad_index: int | None = None
    bad_checkpoint: int | None = None
    reason: str = ""
    signed_size: int = 0  # entries covered by the newest verified checkpoint
    nodes: dict[str, int] = dataclasses.field(default_factory=dict)  # node id -> entries
    keys: str = "database"  # where the checkpoint keys came from: database | trusted

    @property
    def unsigned_entries(self) -> int:
        return self.tree_size - self.signed_size

    def fail(self, reason: str, *, index: int | None = None,
             checkpoint_size: int | None = None) -> VerificationReport:
        self.ok, self.reason = False, reason
        self.first_bad_index, self.bad_checkpoint = index, checkpoint_size
        return self

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["root_hash"] = _b64(self.root_hash)
        out["unsigned_entries"] = self.unsigned_entries
        return out


class _Verifier:
    """Streams the rows once, in O(log n) memory, checking as it goes."""

    def __init__(self, report: VerificationReport, checkpoints: list[CheckpointRecord],
                 keys: Sequence[SM2PublicKey], origin: str | None, hasher: Hasher) -> None:
        self.report, self.keys, self.origin, self.hasher = report, keys, origin, hasher
        self.pending = sorted(checkpoints, key=lambda c: c.tree_size)
        self.compact = CompactRange(hasher)
        self.node_next: dict[str, int] = {}

    def row(self, record: Record) -> bool:
        index = self.compact.size
        problem = self._row_problem(index, record)
        if problem:
            self.report.fail(problem, index=index)
            return False
        self.compact.append(record.leaf_hash)
        self.node_next[record.node_id] = record.node_seq + 1
        return self.checkpoints_due()

    def _row_problem(self, index: int, record: Record) -> str:
        if record.seq != index:
            return (f"entry {index} is missing (the next stored entry is {record.seq})"
                    if record.seq > index else f"entry {record.seq} is out of order")
        try:
            details = json.loads(record.details)
        except ValueError:
            return f"entry {index}: details are not JSON"
        if not isinstance(details, dict) or canonical_json(details) != record.details:
            return f"entry {index}: details are not in canonical form (edited)"
        if self.hasher.leaf(record.leaf_data()) != record.leaf_hash:
            return f"entry {index}: its content does not match its leaf hash (edited)"
        expected = self.node_next.get(record.node_id, 0)
        if record.node_seq != expected:
            return (f"entry {index}: node {record.node_id} sequence jumps from {expected - 1} "
                    f"to {record.node_seq} (entries missing or reordered)")
        return ""

    def checkpoints_due(self) -> bool:
        while self.pending and self.pending[0].tree_size == self.compact.size:
            cp = self.pending.pop(0)
            problem = self._checkpoint_problem(cp)
            if problem:
                self.report.fail(problem, index=self.report.signed_size,
                                 checkpoint_size=cp.tree_size)
                return False
            self.report.checkpoints += 1
            self.report.signed_size = cp.tree_size
        return True

    def _checkpoint_problem(self, cp: CheckpointRecord) -> str:
        try:
            parsed, _ = checkpoint.parse(cp.note, hash_size=self.hasher.digest_size)
        except MalformedCheckpoint as exc:
            return f"checkpoint {cp.tree_size} is malformed: {exc}"
        if self.origin is not None and parsed.origin != self.origin:
            return f"checkpoint {cp.tree_size} names origin {parsed.origin!r}"
        if parsed.size != cp.tree_size or parsed.root_hash != cp.root_hash:
            return f"checkpoint {cp.tree_size}: its note and its columns disagree"
        if not self._signed(cp.note, parsed.origin):
            return f"checkpoint {cp.tree_size} carries no valid audit-key signature"
        if parsed.root_hash != self.compact.root():
            return (f"checkpoint {cp.tree_size} does not match the entries: an entry in "
                    f"[{self.report.signed_size}, {cp.tree_size}) was rewritten with its leaf "
                    f"hash")
        return ""

    def _signed(self, note: str, name: str) -> bool:
        for key in self.keys:
            try:
                checkpoint.verify(note, key, name, hash_size=self.hasher.digest_size)
                return True
            except (CheckpointSignatureError, MalformedCheckpoint):
                continue
        return False

    def finish(self) -> None:
        report = self.report
        report.tree_size = report.entries = self.compact.size
        report.root_hash = self.compact.root()
        report.nodes = {node: n for node, n in sorted(self.node_next.items())}
        if report.ok and self.pending:
            cp = self.pending[0]
            report.fail(f"checkpoint {cp.tree_size} covers more entries than the log holds "
                        f"({self.compact.size}): entries were deleted from the end",
                        index=self.compact.size, checkpoint_size=cp.tree_size)


def verify(database: Database, *, trusted_keys: Sequence[SM2PublicKey] | None = None,
           origin: str | None = None, keyring: Keyring | None = None, hasher: Hasher = SM3,
           progress: Callable[[int], None] | None = None,
           progress_every: int = 10_000) -> VerificationReport:
    """Recompute the whole log from the database and check it; never raises for what it finds.

    - every row: ``seq`` continues 0, 1, 2, ...; ``details`` are canonical JSON; the leaf hash
      recomputed from the row equals the stored one; the row's node sequence has no gap;
    - every checkpoint (in tree-size order): well-formed, note and columns agree, signed by an
      audit key (``trusted_keys`` if given, else the keys recorded in the database), origin is
      ``origin`` if given, and its root equals the tree recomputed from the rows;
    - with ``keyring`` (an unsealed appliance), each recorded audit key's envelope must also
      open to the private key of its recorded public key.

    ``progress`` is called with the number of entries checked so far, every
    ``progress_every`` entries.
    """
    report = VerificationReport(keys="trusted" if trusted_keys is not None else "database")
    keys = list(trusted_keys) if trusted_keys is not None else audit_public_keys(database)
    if keyring is not None:
        problem = _key_envelope_problem(database, keyring)
        if problem:
            return report.fail(problem)
    with database.transaction() as conn:  # checkpoints first: their rows exist before them
        cps = [_checkpoint_record(r) for r in conn.execute(select(C)).all()]
    verifier = _Verifier(report, cps, keys, origin, hasher)
    if verifier.checkpoints_due():  # a checkpoint of the empty tree
        for record in records(database):
            if not verifier.row(record):
                break
            if progress is not None and verifier.compact.size % progress_every == 0:
                progress(verifier.compact.size)
    verifier.finish()
    return report


def _key_envelope_problem(database: Database, keyring: Keyring) -> str:
    with database.transaction() as conn:
        rows = conn.execute(select(W).where(W.c.purpose == SIGNING_PURPOSE)).all()
    for row in rows:
        try:
            _open_key(keyring, row)
        except (DecryptionError, SigncoreError):
            return f"audit key {row.id}: its envelope does not open to its public key"
    return ""


# --- export --------------------------------------------------------------------------------------

CSV_COLUMNS = ("seq", "created_at", "node_id", "node_seq", "category", "action", "actor",
               "subject", "details", "leaf_hash")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: str) -> str:
    """Spreadsheets run cells that start like a formula: quote them (OWASP CSV injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_line(values: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _csv_chunks(database: Database, filters: Filters) -> Iterator[str]:
    yield _csv_line(CSV_COLUMNS)
    for r in records(database, filters):
        yield _csv_line([r.seq, timestamp(r.created_at), _csv_cell(r.node_id), r.node_seq,
                         r.category, _csv_cell(r.action), _csv_cell(r.actor),
                         _csv_cell(r.subject), _csv_cell(r.details), r.leaf_hash.hex()])


def _json_chunks(database: Database, filters: Filters) -> Iterator[str]:
    with database.transaction() as conn:
        row = conn.execute(select(C).order_by(C.c.tree_size.desc()).limit(1)).first()
    head = {"format": "medsign-audit-export/v1", "hash": "sm3", "filters": filters.to_json(),
            "exported_at": timestamp(dt.datetime.now(dt.UTC)),
            "latest_checkpoint": _checkpoint_record(row).to_json() if row else None}
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "entries": ['
    separator = "\n"
    for record in records(database, filters):
        yield separator + json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True)
        separator = ",\n"
    yield "\n]}\n"


def export_chunks(database: Database, fmt: str, filters: Filters | None = None) -> Iterator[str]:
    """The export as text chunks (for streaming over HTTP); ``fmt`` is csv or json.

    CSV: one header line and one line per entry (RFC 4180, CRLF), details as canonical JSON,
    leaf hash in hex; text cells that start like a formula get a leading apostrophe.  JSON:
    one object with the newest checkpoint and an ``entries`` array (exact values, base64 leaf
    hashes).  Neither contains more personal data than the log itself (HMACs only).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationFailed(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
    filters = filters or Filters()
    return _csv_chunks(database, filters) if fmt == "csv" else _json_chunks(database, filters)


def export(database: Database, out: TextIO, fmt: str, filters: Filters | None = None) -> int:
    """Write the matching entries to ``out`` as CSV or JSON (see :func:`export_chunks`);
    how many entries were written."""
    chunks = 0
    for chunk in export_chunks(database, fmt, filters):
        out.write(chunk)
        chunks += 1
    framing = 1 if fmt == "csv" else 2  # the CSV header; the JSON head and tail
    return chunks - framing
