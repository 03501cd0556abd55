"""Application credentials of the hospital backend (HIS, EMR, internet hospital) and the checks
behind their signed requests (the algorithm is :mod:`appliance.api.hmac_signing`).

A credential is a key id (``app_`` + 16 hex digits, public, sent with every request) and a
32-byte secret shown once, as base64url, when it is created or rotated.  The secret is stored
only as an envelope under the KEK, bound to its key id.  Each credential carries scopes:

=================  ==============================================================
``sign:request``   ask signers to sign (prescriptions, EMR documents), start flows
``sign:read``      read signing requests, their state and the signed results
``verify``         verify signatures, certificates and time stamps
``seal``           apply the hospital's seals (automatic signature of the institution)
``tsa``            obtain RFC 3161 time stamps
``signer:read``    read signer records (doctors, pharmacists, nurses)
``signer:write``   push signer records from the HIS (created as drafts for review)
=================  ==============================================================

Threat model.  The network between the hospital platform and the appliance may be observed and
replayed into; the database may be stolen.  A request is accepted only with a valid HMAC over
method, path, query, body digest, timestamp and nonce; its timestamp within
``security.request_max_skew_seconds`` of the appliance clock; and a nonce never seen before for
that key id within twice that window.  The nonce is recorded only after the signature checks
out, so unsigned junk cannot fill the store.  Where nonces are kept (:class:`NonceRecorder`):
``request_nonces`` rows (:class:`NonceStore`: one insert per request; concurrent replays
across workers or nodes collide on the primary key; committed without waiting for the disk --
SQLite WAL with ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off`` -- so a process
crash loses none and a power cut may lose the last moment's, which then could be replayed only
until their timestamps leave the window); or, for the workers of a server on SQLite, the
shared memory-mapped table of :mod:`appliance.services.nonce_table`, with the same crash
guarantee and no I/O per request, falling back to ``request_nonces`` on overflow.  A durable
commit per request would cap signed requests at the disk's fsync rate.

Unknown key ids cost the same work as known ones and give the same answer, so the API does not
reveal which key ids exist; a disabled credential is reported as such only to a caller who
proved possession of its secret.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from sqlalchemy import Connection, Row, delete, event, insert, select, update

from appliance.config import SecurityConfig
from appliance.custody import KeyHolder, Keyring
from appliance.errors import NotFound, Unauthorized, ValidationFailed
from appliance.services.admins import Actor, actor_label, require_manager
from appliance.storage import Database, schema

SIGN_REQUEST = "sign:request"
SIGN_READ = "sign:read"
VERIFY = "verify"
SEAL = "seal"
TSA = "tsa"
SIGNER_READ = "signer:read"
SIGNER_WRITE = "signer:write"
ALL_SCOPES = (SIGN_REQUEST, SIGN_READ, VERIFY, SEAL, TSA, SIGNER_READ, SIGNER_WRITE)

KEY_ID_PREFIX = "app_"
SECRET_BYTES = 32
STATUSES = ("active", "disabled")
NONCE_PURGE_SECONDS = 60  # each process purges expired nonces at most this often
_DUMMY_SECRET = bytes(SECRET_BYTES)

Clock = Callable[[], float]
AuditHook = Callable[[str, str, str, str, Mapping[str, Any]], None]


class SignatureInvalid(Unauthorized):
    code, title = "signature-invalid", "请求签名无效"


class CredentialDisabled(Unauthorized):
    code, title = "credential-disabled", "应用凭证已停用"


class Replay(Unauthorized):
    code, title = "replay", "重复的请求（nonce 已使用）"


@dataclasses.dataclass(frozen=True)
class Credential:
    id: int
    name: str
    key_id: str
    scopes: frozenset[str]
    status: str
    created_at: dt.datetime
    created_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "key_id": self.key_id,
                "scopes": sorted(self.scopes), "status": self.status,
                "created_at": self.created_at.astimezone(dt.UTC).isoformat(),
                "created_by": self.created_by}


def parse_scopes(value: str | Iterable[str]) -> frozenset[str]:
    """Scopes from a space-separated string or a list; unknown names are refused."""
    names = value.split() if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) for name in names):
        raise ValidationFailed("scopes must be strings")
    unknown = sorted(set(names) - set(ALL_SCOPES))
    if unknown:
        raise ValidationFailed(f"unknown scopes: {', '.join(unknown)}; "
                               f"known: {' '.join(ALL_SCOPES)}")
    if not names:
        raise ValidationFailed("a credential needs at least one scope")
    return frozenset(names)


def encode_secret(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).rstrip(b"=").decode()


def decode_secret(text: str) -> bytes:
    """The raw secret of its base64url form (padding optional)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


CREDENTIAL_CACHE_SECONDS = 5.0
CREDENTIAL_CACHE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class _Known:
    credential: Credential | None  # None: no such key id
    secret: bytes


class _CredentialCache:
    """Opened credentials per process, so a signed request costs an HMAC and a nonce insert,
    not a lookup and an envelope to open.  Bounded (LRU) and short-lived: a credential
    disabled, re-scoped or rotated on another worker or node is honoured within
    CREDENTIAL_CACHE_SECONDS; on this process at once (``clear``).  Keyed by the KEK's
    fingerprint as well, so nothing opened under one unseal survives a seal."""

    def __init__(self, ttl: float = CREDENTIAL_CACHE_SECONDS,
                 size: int = CREDENTIAL_CACHE_SIZE) -> None:
        self._ttl, self._size = ttl, size
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[str, str], tuple[float, _Known]] = (
            collections.OrderedDict())

    def get(self, key_id: str, kek: str) -> _Known | None:
        with self._lock:
            found = self._entries.get((key_id, kek))
            if found is None:
                return None
            if found[0] < time.monotonic():
                del self._entries[(key_id, kek)]
                return None
            self._entries.move_to_end((key_id, kek))
            return found[1]

    def put(self, key_id: str, kek: str, known: _Known) -> None:
        with self._lock:
            self._entries[(key_id, kek)] = (time.monotonic() + self._ttl, known)
            self._entries.move_to_end((key_id, kek))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class NonceRecorder(Protocol):
    """Where signed requests' nonces go: :class:`NonceStore` writes them itself; the server's
    workers on SQLite hand them to the master's nonce keeper (:mod:`appliance.nonce_keeper`),
    which writes them the same way from one process."""

    def record(self, key_id: str, nonce: str, seen_at: dt.datetime) -> bool:
        """True if the nonce is new for this key id (and is now recorded)."""
        ...


class NonceStore:
    """Records request nonces through the database driver on a connection kept per thread.

    One insert per signed request is the hot path of the API, and SQLAlchemy's checkout,
    compilation and event machinery cost several times the insert itself.  The statement is the
    same as the ORM would issue; a duplicate (key id, nonce) violates the primary key, in any
    worker or node, and is reported as a replay.  On SQLite the insert is one autocommit
    statement (one call into SQLite, so the write lock is never held while this thread waits
    for the GIL) behind the database's write gate; PostgreSQL commits these rows without
    waiting for the disk (module docstring).  Give it :func:`relaxed` of the database.
    """

    def __init__(self, database: Database) -> None:
        self._db = database
        self._local = threading.local()
        self._sql = ("INSERT INTO request_nonces (key_id, nonce, seen_at) VALUES (?, ?, ?)"
                     if database.kind == "sqlite" else
                     "INSERT INTO request_nonces (key_id, nonce, seen_at) VALUES (%s, %s, %s)")
        dialect = database.engine.dialect
        assert dialect.dbapi is not None
        self._duplicate: type[Exception] = dialect.dbapi.IntegrityError
        column = schema.request_nonces.c.seen_at
        self._stamp = column.type.dialect_impl(dialect).bind_processor(dialect)

    def _connection(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():  # a forked worker opens its own
            raw = self._db.engine.raw_connection()
            if self._db.kind == "postgresql":
                # The engine reads in autocommit; this connection commits its own inserts
                # (SET LOCAL synchronous_commit needs a transaction).
                driver = raw.dbapi_connection
                assert driver is not None
                driver.autocommit = False
            held = (os.getpid(), raw)
            self._local.held = held
        return held[1]

    def record(self, key_id: str, nonce: str, seen_at: dt.datetime) -> bool:
        """True if the nonce is new for this key id (and is now recorded)."""
        stamp = self._stamp(seen_at) if self._stamp else seen_at
        conn = self._connection()
        if self._db.kind == "sqlite":
            try:
                with self._db.write_gate.held():
                    conn.execute(self._sql, (key_id, nonce, stamp))
            except self._duplicate:
                return False
            return True
        cursor = conn.cursor()
        try:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.execute(self._sql, (key_id, nonce, stamp))
        except self._duplicate:
            conn.rollback()
            return False
        except BaseException:
            conn.rollback()
            raise
        finally:
            cursor.close()
        conn.commit()
        return True


class ApplicationService:
    """Credential management (security administrators) and request authentication."""

    def __init__(self, database: Database, key_holder: KeyHolder, security: SecurityConfig, *,
                 clock: Clock = time.time, audit: AuditHook | None = None,
                 nonces: NonceRecorder | None = None) -> None:
        self._db, self._holder, self._security = database, key_holder, security
        self._clock, self._audit = clock, audit
        self._purge_lock = threading.Lock()
        self._last_purge = 0.0
        self._dummy: tuple[Keyring, bytes, bytes] | None = None  # opened for unknown ids
        self._nonce_db = relaxed(database)
        self._cache = _CredentialCache()
        self._nonces: NonceRecorder = nonces or NonceStore(self._nonce_db)

    # -- management ---------------------------------------------------------------------

    def create(self, actor: Actor | None, *, name: str,
               scopes: str | Iterable[str]) -> tuple[Credential, str]:
        """A new credential and its secret (base64url): show the secret once, never again.
        ``actor`` None (or a "cli" actor) is the command line (``medsign app create``)."""
        require_manager(actor, "应用凭证")
        wanted = parse_scopes(scopes)
        name = _name(name)
        keyring = self._holder.keyring()
        key_id = KEY_ID_PREFIX + secrets.token_hex(8)
        secret = secrets.token_bytes(SECRET_BYTES)
        with self._db.transaction() as conn:
            app_id = conn.execute(insert(schema.applications).values(
                name=name, key_id=key_id, scopes=" ".join(sorted(wanted)), status="active",
                secret_wrapped=keyring.wrap(secret, _secret_context(key_id)),
                created_at=self._now(), created_by=_creator(actor))
                .returning(schema.applications.c.id)).scalar_one()
            credential = _credential(_row(conn, app_id))
        self._record("data", "app.create", actor, key_id, {"scopes": sorted(wanted)})
        return credential, encode_secret(secret)

    def list_credentials(self) -> list[Credential]:
        with self._db.transaction() as conn:
            rows = conn.execute(select(schema.applications)
                                .order_by(schema.applications.c.id)).all()
        return [_credential(row) for row in rows]

    def get(self, app_id: int) -> Credential:
        with self._db.transaction() as conn:
            return _credential(_row(conn, app_id))

    def update(self, actor: Actor | None, app_id: int, *, name: str | None = None,
               scopes: str | Iterable[str] | None = None, status: str | None = None,
               rotate_secret: bool = False) -> tuple[Credential, str | None]:
        """Rename, change scopes, disable/enable, or rotate the secret (returned once)."""
        require_manager(actor, "应用凭证")
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = _name(name)
        if scopes is not None:
            values["scopes"] = " ".join(sorted(parse_scopes(scopes)))
        if status is not None:
            if status not in STATUSES:
                raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}")
            values["status"] = status
        keyring = self._holder.keyring() if rotate_secret else None
        secret = secrets.token_bytes(SECRET_BYTES) if rotate_secret else None
        with self._db.transaction() as conn:
            row = _row(conn, app_id)
            if keyring is not None and secret is not None:
                values["secret_wrapped"] = keyring.wrap(secret, _secret_context(row.key_id))
            if values:
                conn.execute(update(schema.applications)
                             .where(schema.applications.c.id == app_id).values(**values))
            credential = _credential(_row(conn, app_id))
        self._cache.clear()  # this process honours the change at once, others within the TTL
        self._record("data", "app.update", actor, row.key_id,
                     {"changed": sorted(set(values) - {"secret_wrapped"}),
                      "rotated": rotate_secret, "scopes": sorted(credential.scopes),
                      "status": credential.status})
        return credential, encode_secret(secret) if secret else None

    # -- request authentication ---------------------------------------------------------

    def authenticate(self, key_id: str, nonce: str,
                     signature_valid: Callable[[bytes], bool]) -> Credential:
        """Check a signed request of ``key_id``: ``signature_valid(secret)`` recomputes and
        compares its HMAC.  Records the nonce; raises SignatureInvalid (also for unknown key
        ids, after the same work), CredentialDisabled or Replay, and then nothing is stored."""
        keyring = self._holder.keyring()
        known = self._known(key_id, keyring)
        if not signature_valid(known.secret) or known.credential is None:
            raise SignatureInvalid("请求签名无效")
        if known.credential.status != "active":
            raise CredentialDisabled("该应用凭证已停用，请联系安全管理员")
        now = self._now()
        if not self._nonces.record(key_id, nonce, now):
            raise Replay("该请求的 nonce 已使用过，请求被拒绝")
        self._maybe_purge(now)
        return known.credential

    def record_nonce(self, key_id: str, nonce: str) -> bool:
        """Remember a signed request's nonce for ``key_id`` (any signed caller: devices use
        their device id); False when it was seen before."""
        now = self._now()
        if not self._nonces.record(key_id, nonce, now):
            return False
        self._maybe_purge(now)
        return True

    def _known(self, key_id: str, keyring: Keyring) -> _Known:
        """The credential and its opened secret, from the per-process cache (at most
        CREDENTIAL_CACHE_SECONDS old) or the database.  Unknown key ids are cached too, with
        the dummy secret, so they cost what known ones do."""
        cached = self._cache.get(key_id, keyring.fingerprint)
        if cached is not None:
            return cached
        with self._db.engine.connect() as conn:
            row = conn.execute(select(schema.applications)
                               .where(schema.applications.c.key_id == key_id)).first()
        if row is None:
            envelope, context = self._dummy_envelope(keyring)
            known = _Known(None, keyring.unwrap(envelope, context))
        else:
            secret = keyring.unwrap(row.secret_wrapped, _secret_context(row.key_id))
            known = _Known(_credential(row), secret)
        self._cache.put(key_id, keyring.fingerprint, known)
        return known

    def secret_of(self, app_id: int) -> tuple[Credential, bytes]:
        """A credential and its opened secret, for what the appliance signs *to* the
        application (webhooks): the backend checks them with the secret it already holds."""
        with self._db.engine.connect() as conn:
            row = conn.execute(select(schema.applications)
                               .where(schema.applications.c.id == app_id)).first()
        if row is None:
            raise NotFound(f"应用凭证 {app_id} 不存在")
        keyring = self._holder.keyring()
        return _credential(row), keyring.unwrap(row.secret_wrapped, _secret_context(row.key_id))

    def purge_nonces(self, now: dt.datetime | None = None) -> int:
        """Forget nonces older than twice the accepted clock skew: by then the timestamp check
        alone refuses a replay of their requests.  The number removed."""
        cutoff = (now or self._now()) - dt.timedelta(
            seconds=2 * self._security.request_max_skew_seconds)
        with self._nonce_transaction() as conn:
            return int(conn.execute(delete(schema.request_nonces)
                                    .where(schema.request_nonces.c.seen_at < cutoff)).rowcount)

    def close(self) -> None:
        if self._nonce_db is not self._db:
            self._nonce_db.dispose()

    # -- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _nonce_transaction(self) -> Iterator[Connection]:
        """A transaction whose commit does not wait for the disk (see the module docstring:
        the nonce table trades power-loss durability for a commit without fsync)."""
        with self._nonce_db.transaction() as conn:
            if self._nonce_db.kind == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    def _dummy_envelope(self, keyring: Keyring) -> tuple[bytes, bytes]:
        """An envelope to open for an unknown key id, so that it costs what a known one does."""
        if self._dummy is None or self._dummy[0] is not keyring:
            context = _secret_context("app_unknown")
            self._dummy = (keyring, keyring.wrap(_DUMMY_SECRET, context), context)
        return self._dummy[1], self._dummy[2]

    def _maybe_purge(self, now: dt.datetime) -> None:
        stamp = now.timestamp()
        with self._purge_lock:
            if stamp - self._last_purge < NONCE_PURGE_SECONDS:
                return
            self._last_purge = stamp
        self.purge_nonces(now)

    def _record(self, category: str, action: str, actor: Actor | None, subject: str,
                details: Mapping[str, Any]) -> None:
        if self._audit is not None:
            self._audit(category, action, actor_label(actor), subject, dict(details))


def relaxed(database: Database) -> Database:
    """The database for request authentication: on SQLite a second engine on the same file
    whose connections commit with ``synchronous=NORMAL`` (WAL: durable across a process crash,
    not a power cut); on PostgreSQL the same engine (``synchronous_commit`` is set per
    transaction)."""
    url = database.engine.url
    if database.kind != "sqlite" or url.database in (None, "", ":memory:"):
        return database
    relaxed = Database(url.render_as_string(hide_password=False), unpooled=True)
    event.listen(relaxed.engine, "connect",
                 lambda dbapi, _record: dbapi.execute("PRAGMA synchronous=NORMAL"))
    return relaxed


def _creator(actor: Actor | None) -> str:
    return actor.name if actor is not None and actor.kind == "admin" else actor_label(actor)


def _name(value: str) -> str:
    name = value.strip()
    if not 0 < len(name) <= 128:
        raise ValidationFailed("name must be 1 to 128 characters")
    return name


def _secret_context(key_id: str) -> bytes:
    return f"medsign/app-secret/v1:{key_id}".encode()


def _row(conn: Connection, app_id: int) -> Row[Any]:
    row = conn.execute(select(schema.applications)
                       .where(schema.applications.c.id == app_id)).first()
    if row is None:
        raise NotFound("应用凭证不存在")
    return row


def _credential(row: Row[Any]) -> Credential:
    created = row.created_at
    return Credential(id=row.id, name=row.name, key_id=row.key_id,
                      scopes=frozenset(row.scopes.split()), status=row.status,
                      created_at=created if created.tzinfo else created.replace(tzinfo=dt.UTC),
                      created_by=row.created_by)
