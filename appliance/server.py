"""``medsign serve``: the Falcon app of :mod:`appliance.wsgi` under gunicorn, and the one KEK
shared by every worker.

Gunicorn runs the app in several worker *processes*.  A KEK unsealed through a request that one
worker answered must be usable by all of them, and sealing through any worker must seal all.
The design:

- The gunicorn master (the arbiter, which never answers HTTP requests) runs a
  :class:`KeyCustodian`: a thread serving a Unix socket (``<data_dir>/keyholder.sock``, mode
  0600, in the 0700 data directory) and holding the only authoritative
  :class:`~appliance.custody.KeyHolder`.  Unseal material (a passphrase, Shamir shares one at a
  time, a token PIN) is forwarded to it, so Shamir progress is shared too: three officers'
  shares may arrive through three different workers.
- The custodian publishes ``(epoch, sealed)`` in a small anonymous shared-memory page that the
  workers inherit when gunicorn forks them.  ``epoch`` changes whenever the KEK appears or goes.
  A worker's :class:`SharedKeyHolder` answers ``sealed`` from that page (no system call), and
  fetches the KEK over the socket once per epoch, then keeps it in memory like the
  single-process :class:`KeyHolder` does.  Sealing through any worker bumps the epoch: every
  worker drops its copy before its next use.
- The custodian only hands the KEK to a peer that runs under the same uid (``SO_PEERCRED``)
  *and* is a direct child of the master (a gunicorn worker), or to root (the operator's
  ``medsign admin|app|signer|audit`` commands on the appliance, which could read the master's
  memory anyway); anything else may ask for the status or bring unseal material, as the public
  HTTP endpoints may.

Everything else about serving comes from the configuration: ``server.bind``, ``server.workers``
(processes), ``server.threads`` (gthread worker threads), TLS 1.2 or newer when
``server.tls_cert`` and ``server.tls_key`` are set.  SIGTERM stops gracefully (requests in
flight get ``GRACEFUL_TIMEOUT`` seconds), SIGINT/SIGQUIT stop at once; either way the custodian
forgets the KEK and removes its socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import json
import logging
import mmap
import os
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from sqlalchemy import func, select

from appliance.config import Config
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.errors import ApplianceError, ConfigError, Forbidden, Sealed
from appliance.services.applications import NonceRecorder, NonceStore, relaxed
from appliance.services.nonce_table import FILE_NAME as NONCE_TABLE_FILE
from appliance.services.nonce_table import NonceTable
from appliance.storage import Database, schema
from appliance.wsgi import build
from signcore import selftest

LOG = logging.getLogger("medsign.server")


class StartupError(ApplianceError):
    """The server cannot start (port taken, self-test failed, ...)."""

    code, status, title = "startup-failed", 500, "服务无法启动"

SOCKET_NAME = "keyholder.sock"
GRACEFUL_TIMEOUT = 30  # seconds a request in flight gets after SIGTERM
WORKER_TIMEOUT = 120  # a worker silent for this long is restarted
KEEPALIVE = 5
#: gunicorn's combined log format plus the worker's pid (which process answered).
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" pid=%(p)s'
_MAX_MESSAGE = 64 * 1024
_STATE = struct.Struct("<QB")  # epoch, sealed
_SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux; keep a margin


# ---------------------------------------------------------------------------------------------
# Shared state page


class SharedState:
    """``(epoch, sealed)`` in an anonymous shared mapping, inherited by forked workers.

    Only the custodian writes (under its lock); readers may see a torn pair only as a
    transient "epoch changed", which makes them ask the custodian, never use a stale KEK.
    """

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, _STATE.size)
        self.write(0, sealed=True)

    def read(self) -> tuple[int, bool]:
        epoch, sealed = _STATE.unpack_from(self._page, 0)
        return int(epoch), bool(sealed)

    def write(self, epoch: int, *, sealed: bool) -> None:
        _STATE.pack_into(self._page, 0, epoch, int(sealed))


# ---------------------------------------------------------------------------------------------
# The custodian (in the gunicorn master)


class _CachedStore(KekStore):
    """The sealed KEK row, read once it exists (it never changes after ``medsign init``), with
    no database connection left open: the master forks workers and must not share one."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._database = database
        self._cached: dict[str, Any] | None = None

    def load(self) -> dict[str, Any] | None:
        if self._cached is None:
            try:
                self._cached = super().load()
            finally:
                self._database.engine.dispose()
        return self._cached


def _peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket."""
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    return pid, uid


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    return int(stat[stat.rindex(")") + 2:].split()[1])


def is_my_child(pid: int) -> bool:
    return _parent_pid(pid) == os.getpid()


def worker_or_root(pid: int, uid: int) -> bool:
    """Who may take the KEK: the server's own workers (direct children of the master), or
    root -- the operator's ``medsign`` commands on the appliance; root can read the master's
    memory anyway."""
    return uid == 0 or is_my_child(pid)


class KeyCustodian:
    """The master's key holder, served on a Unix socket to the workers (see the module doc)."""

    def __init__(self, holder: KeyHolder, socket_path: Path, *,
                 may_take_kek: Callable[[int, int], bool] = worker_or_root) -> None:
        self.holder = holder
        self.socket_path = socket_path
        self.state = SharedState()
        self._may_take_kek = may_take_kek
        self._lock = threading.Lock()
        self._epoch = 0
        self._identity: str | None = None
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None
        self._owner_pid = os.getpid()

    # -- life cycle

    def start(self) -> KeyCustodian:
        path = self.socket_path
        if path.exists() or path.is_symlink():
            if _socket_answers(path):
                raise ConfigError(f"another medsign server is running on this data directory "
                                  f"({path} answers)")
            path.unlink()
        custodian = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                custodian._handle(self.connection, self.rfile, self.wfile)

        old_umask = os.umask(0o177)
        try:
            server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="medsign-keyholder",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        self._publish()
        return self

    def close_in_child(self) -> None:
        """In a freshly forked worker: drop the inherited listening socket (not the file)."""
        if self._server is not None:
            self._server.socket.close()

    def stop(self) -> None:
        """Forget the KEK, stop serving, remove the socket (only in the process that made it)."""
        if os.getpid() != self._owner_pid:
            return
        self.holder.seal()
        self._publish()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # -- operations

    def unseal(self, **material: str | None) -> dict[str, Any]:
        with self._lock:
            try:
                return self.holder.unseal(**material)
            finally:
                self._publish()

    def seal(self) -> dict[str, Any]:
        with self._lock:
            self.holder.seal()
            self._publish()
        return self.holder.status()

    def adopt(self, keyring: Keyring) -> dict[str, Any]:
        with self._lock:
            self.holder.adopt(keyring)
            self._publish()
        return self.holder.status()

    def _publish(self) -> None:
        """Write the shared page; a new epoch whenever the KEK appeared, went or changed."""
        sealed = self.holder.sealed
        identity = None if sealed else self.holder.keyring().fingerprint
        if identity != self._identity:
            self._identity = identity
            self._epoch += 1
        self.state.write(self._epoch, sealed=sealed)

    # -- the wire: one JSON request line, one JSON answer line, per connection

    def _handle(self, connection: socket.socket, rfile: Any, wfile: Any) -> None:
        try:
            line = rfile.readline(_MAX_MESSAGE + 1)
            if len(line) > _MAX_MESSAGE:
                raise ValueError("message too long")
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            answer = self._answer(connection, request)
        except ApplianceError as exc:
            answer = {"ok": False, "error": {"code": exc.code, "status": exc.status,
                                             "title": exc.title, "detail": exc.detail}}
        except (ValueError, TypeError, KeyError) as exc:
            answer = {"ok": False, "error": {"code": "bad-request", "status": 400,
                                             "title": "请求无效", "detail": str(exc)}}
        except Exception:
            LOG.exception("key custodian: unexpected error")
            answer = {"ok": False, "error": {"code": "internal-error", "status": 500,
                                             "title": "服务器内部错误",
                                             "detail": "key custodian error"}}
        with contextlib.suppress(OSError):
            wfile.write(json.dumps(answer).encode() + b"\n")

    def _answer(self, connection: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        pid, uid = _peer_credentials(connection)
        if uid not in (os.getuid(), 0):
            raise Forbidden("the key custodian serves only its own user and root")
        op = request.get("op")
        if op == "status":
            return {"ok": True, "status": self.holder.status()}
        if op == "unseal":
            material = request.get("material")
            if not isinstance(material, dict) or not all(
                    isinstance(k, str) and (v is None or isinstance(v, str))
                    for k, v in material.items()):
                raise ValueError("material must map names to strings")
            return {"ok": True, "status": self.unseal(**material)}
        if op == "seal":
            return {"ok": True, "status": self.seal()}
        if op in ("kek", "adopt") and not self._may_take_kek(pid, uid):
            raise Forbidden("only the server's own workers (or root) may exchange the KEK")
        if op == "kek":
            with self._lock:
                epoch, sealed = self.state.read()
                if sealed:
                    raise Sealed()
                kek = _raw_kek(self.holder.keyring())
            return {"ok": True, "kek": kek.hex(), "epoch": epoch}
        if op == "adopt":
            return {"ok": True, "status": self.adopt(Keyring(bytes.fromhex(request["kek"])))}
        raise ValueError(f"unknown operation {op!r}")


def _raw_kek(keyring: Keyring) -> bytes:
    kek: bytes = keyring._kek  # the one place outside custody that handles the raw KEK
    return kek


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def socket_path_for(config: Config, *, fallback: bool = True) -> Path:
    """``<data_dir>/keyholder.sock``, or (``fallback``) one in a private temporary directory
    when the data directory's path is too long for a Unix socket address."""
    path = Path(config.data_dir).resolve() / SOCKET_NAME
    if len(os.fsencode(path)) <= _SUN_PATH_MAX or not fallback:
        return path
    return Path(tempfile.mkdtemp(prefix="medsign-")) / SOCKET_NAME


# ---------------------------------------------------------------------------------------------
# The workers' side


_ERRORS: dict[str, type[ApplianceError]] = {}


def _error_classes(base: type[ApplianceError]) -> Iterator[type[ApplianceError]]:
    yield base
    for sub in base.__subclasses__():
        yield from _error_classes(sub)


def _raise(error: dict[str, Any]) -> None:
    code = str(error.get("code", "internal-error"))
    detail = str(error.get("detail", ""))
    if not _ERRORS or code not in _ERRORS:
        _ERRORS.update({cls.code: cls for cls in _error_classes(ApplianceError)})
    cls = _ERRORS.get(code)
    if cls is not None:
        raise cls(detail)
    exc = ApplianceError(detail)
    exc.code, exc.status = code, int(error.get("status", 500))
    exc.title = str(error.get("title", exc.title))
    raise exc


def custodian_request(socket_path: Path, op: str, *, timeout: float = 30.0,
                      **fields: Any) -> dict[str, Any]:
    """One request to a custodian; its answer, or the refusal raised as an ApplianceError
    (OSError when nothing answers on ``socket_path``)."""
    request = json.dumps({"op": op, **fields}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # Argon2id in the custodian takes a moment; a share or status is instant.
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(request)
        with sock.makefile("rb") as answer_file:
            line = answer_file.readline(_MAX_MESSAGE + 1)
    answer = json.loads(line)
    if not answer.get("ok"):
        _raise(answer.get("error") or {})
    result: dict[str, Any] = answer
    return result


class CustodianClient:
    """Talks to the master's :class:`KeyCustodian`; reads the shared state page directly."""

    def __init__(self, socket_path: Path, state: SharedState, *, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.state = state
        self._timeout = timeout

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        try:
            return custodian_request(self.socket_path, op, timeout=self._timeout, **fields)
        except OSError as exc:
            LOG.error("key custodian unreachable at %s: %s", self.socket_path, exc)
            raise Sealed("the key holder of this server is unreachable") from None


class SharedKeyHolder(KeyHolder):
    """A worker's :class:`KeyHolder`: same interface, state kept by the master's custodian."""

    def __init__(self, store: KekStore, client: CustodianClient) -> None:
        super().__init__(store)
        self._client = client
        self._cache_lock = threading.Lock()
        self._cached: tuple[int, Keyring] | None = None

    @property
    def sealed(self) -> bool:
        return self._client.state.read()[1]

    def keyring(self) -> Keyring:
        epoch, sealed = self._client.state.read()
        if sealed:
            self._cached = None
            raise Sealed()
        cached = self._cached
        if cached is not None and cached[0] == epoch:
            return cached[1]
        with self._cache_lock:
            answer = self._client.call("kek")
            keyring = Keyring(bytes.fromhex(answer["kek"]))
            self._cached = (int(answer["epoch"]), keyring)
        return keyring

    def adopt(self, keyring: Keyring) -> None:
        self._client.call("adopt", kek=_raw_kek(keyring).hex())

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._client.call("status")["status"]
        return status

    def unseal(self, **material: str | None) -> dict[str, Any]:
        status: dict[str, Any] = self._client.call(
            "unseal", material={k: v for k, v in material.items() if v is not None})["status"]
        return status

    def seal(self) -> None:
        self._cached = None
        self._client.call("seal")


# ---------------------------------------------------------------------------------------------
# TLS


def tls_context(config: Config,
                factory: Callable[[], ssl.SSLContext] | None = None) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or newer only, the configured certificate and key."""
    if factory is not None:
        context = factory()
    else:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def _check_tls_files(config: Config) -> None:
    if bool(config.server.tls_cert) != bool(config.server.tls_key):
        raise ConfigError("server.tls_cert and server.tls_key are set together or not at all")
    if config.tls_enabled:
        try:
            tls_context(config)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate and key: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Gunicorn


def _parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"server.bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 -- an explicit ":PORT"


def check_bind(bind: str) -> None:
    """Fail with one clear line now rather than gunicorn's five retries later."""
    host, port = _parse_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen on {bind}: {exc.strerror}") from None


def public_url(config: Config) -> str:
    host, port = _parse_bind(config.server.bind)
    scheme = "https" if config.tls_enabled else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """gunicorn's settings for a configuration (hooks apart); bench/api.py serves its
    reference app with exactly these."""
    settings: dict[str, Any] = {
        "bind": [config.server.bind],
        "workers": config.server.workers,
        "threads": config.server.threads,
        "worker_class": "gthread",
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "timeout": WORKER_TIMEOUT,
        "keepalive": KEEPALIVE,
        "proc_name": "medsign",
        "errorlog": "-",
        "loglevel": "info",
        # gunicorn 23+ opens a control socket in $HOME by default: not on an appliance.
        "control_socket_disable": True,
        # The body limit is the app's (BodyLimit); gunicorn's own limits stay default.
    }
    if config.tls_enabled:
        settings.update({
            "certfile": config.server.tls_cert,
            "keyfile": config.server.tls_key,
            "ssl_context": lambda _cfg, factory: tls_context(config, factory),
        })
    return settings


class MedsignApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn with the settings of the medsign configuration (no command line)."""

    def __init__(self, config: Config, custodian: KeyCustodian,
                 extra: dict[str, Any] | None = None, *,
                 nonces: NonceRecorder | None = None) -> None:
        self.medsign_config = config
        self.custodian = custodian
        self.nonces = nonces
        self.extra = extra or {}
        super().__init__()

    def load_config(self) -> None:
        custodian = self.custodian

        def post_fork(_server: Any, _worker: Any) -> None:
            custodian.close_in_child()

        def on_exit(_server: Any) -> None:
            custodian.stop()

        settings = {**gunicorn_settings(self.medsign_config), "post_fork": post_fork,
                    "on_exit": on_exit, **self.extra}
        for name, value in settings.items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> Any:
        """In each worker, after the fork: its own database engine, the shared key holder."""
        config = self.medsign_config
        database = Database(config.database_url, pool_size=config.database.pool_size,
                            echo=config.database.echo)
        client = CustodianClient(self.custodian.socket_path, self.custodian.state)
        holder = SharedKeyHolder(KekStore(database), client)
        app = build(config, database=database, key_holder=holder, nonces=self.nonces).app
        # Everything loaded so far (modules, the app, pyHanko's and asn1crypto's tables) lives
        # as long as the worker: keep it out of the cyclic collector's full passes, which
        # otherwise scan it all with the GIL held (~0.1 s, every few hundred requests) and
        # stall every request in flight in this worker.
        gc.freeze()
        return app


def _master_holder(database: Database, config: Config) -> KeyHolder:
    return KeyHolder(_CachedStore(database), pkcs11_module=config.custody.pkcs11_module)


@dataclasses.dataclass
class Prepared:
    """What ``serve`` sets up in the master before gunicorn starts."""

    custodian: KeyCustodian
    initialized: bool
    auto_unsealed: bool
    nonces: NonceRecorder | None = None


def prepare(config: Config) -> Prepared:
    """Self-test, migrate, start the custodian, unseal from the demo passphrase file when
    configured."""
    failed = [check for check in selftest.run() if not check.ok]
    if failed:
        raise StartupError(f"the cryptographic self-test failed: {failed[0].name}: "
                           f"{failed[0].detail}")
    _check_tls_files(config)
    data_dir = Path(config.data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = Database(config.database_url, pool_size=config.database.pool_size,
                        echo=config.database.echo)
    try:
        database.migrate()
    finally:
        database.dispose()
    holder = _master_holder(database, config)
    initialized = holder.status()["initialized"]
    custodian = KeyCustodian(holder, socket_path_for(config)).start()
    auto = False
    try:
        demo_file = config.custody.unseal_passphrase_file
        if initialized and not config.custody.start_sealed and demo_file:
            passphrase = _read_first_line(demo_file)
            custodian.unseal(passphrase=passphrase)
            auto = True
    except BaseException:
        custodian.stop()
        raise
    return Prepared(custodian, bool(initialized), auto, _nonce_table(config, database))


def _nonce_table(config: Config, database: Database) -> NonceRecorder | None:
    """On SQLite, the workers share a nonce table made here, before the fork
    (:mod:`appliance.services.nonce_table`); PostgreSQL takes concurrent inserts itself."""
    if database.kind != "sqlite" or not Path(config.data_dir).is_dir():
        return None
    store = relaxed(database)
    with store.engine.connect() as conn:
        newest = conn.execute(select(func.max(schema.request_nonces.c.seen_at))).scalar()
    store.engine.dispose()  # no connection of the master's may reach a forked worker
    return NonceTable(Path(config.data_dir) / NONCE_TABLE_FILE,
                      2 * config.security.request_max_skew_seconds, NonceStore(store),
                      newest_in_database=_epoch(newest) if newest is not None else None)


def _epoch(stamp: dt.datetime) -> float:
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp()


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read custody.unseal_passphrase_file {path}: {exc}") from None


def serve(config: Config, *, access_log: str | None = None,
          extra_settings: dict[str, Any] | None = None,
          announce: Callable[[str], None] | None = None) -> int:
    """Run the server until it is stopped; the exit status (0 after a normal stop).

    ``access_log``: a file, or ``-`` for stdout (the journal under systemd); none by default.
    """
    say = announce or (lambda line: print(line, file=sys.stderr, flush=True))
    settings = dict(extra_settings or {})
    if access_log:
        settings.update({"accesslog": access_log, "access_log_format": ACCESS_LOG_FORMAT})
    check_bind(config.server.bind)
    prepared = prepare(config)
    custodian = prepared.custodian
    try:
        state = "sealed"
        if prepared.auto_unsealed:
            state = "unsealed from custody.unseal_passphrase_file (development demo)"
        elif not prepared.initialized:
            state = "NOT INITIALIZED: run medsign init"
        say(f"medsign: serving {public_url(config)} ({config.server.workers} workers x "
            f"{config.server.threads} threads, TLS {'1.2+' if config.tls_enabled else 'off'}); "
            f"{state}")
        application = MedsignApplication(config, custodian, settings, nonces=prepared.nonces)
        try:
            application.run()
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0
    finally:
        custodian.stop()
