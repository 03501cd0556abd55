"""Run real third-party peers from tests: find the tool, run it, serve on loopback, never leak it.

Every peer test needs the same four things, and each is easy to get subtly wrong:

- a missing tool must skip on a developer's machine but FAIL under ``CI=true``: a skipped peer
  test is a test that silently stopped running;
- a failing command must show its command line and output, not only an exit code;
- a server must be *ready* before the test connects, not merely started;
- a server must die with its whole process group when the test ends, passed or failed, or the
  next run finds the port busy and the machine fills with orphans.

Run servers in the foreground (``rsyslogd -n``, ``chronyd -d``, ``postgres -D ...`` rather than
``pg_ctl start``, which detaches the postmaster into a session of its own): the group kill only
reaches processes that stay in the group the server was started in.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import pytest

__all__ = [
    "DEBIAN_PACKAGES",
    "LoopbackFactory",
    "LoopbackProcess",
    "PeerError",
    "Ready",
    "StrPath",
    "find_tool",
    "free_port",
    "port_accepts",
    "require_tool",
    "run_tool",
]

StrPath = str | os.PathLike[str]
# A readiness condition: a callable returning True once ready, or a regex searched in the output.
Ready = Callable[[], bool] | str | re.Pattern[str]

# Tool -> the Debian package that ships it, for the message that tells a developer what to install.
DEBIAN_PACKAGES: dict[str, str] = {
    "openssl": "openssl",
    "pdfsig": "poppler-utils",
    "pdffonts": "poppler-utils",
    "qpdf": "qpdf",
    "rsyslogd": "rsyslog",
    "snmpget": "snmp",
    "snmpwalk": "snmp",
    "chronyd": "chrony",
    "softhsm2-util": "softhsm2",
    "chromium": "chromium",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
    "postgres": "postgresql",
    "node": "nodejs",
    "npm": "npm",
    "certutil": "libnss3-tools",
    "systemd-analyze": "systemd",
}

TAIL_CHARS = 3000
_POLL_SECONDS = 0.05


class PeerError(AssertionError):
    """A peer command or server failed.

    An AssertionError so that pytest reports it as a test failure with the message in full.
    """


# --- finding tools ----------------------------------------------------------------------------


def _postgres_version(bin_dir: str) -> tuple[int, ...]:
    return tuple(int(p) for p in Path(bin_dir).parent.name.split(".") if p.isdigit())


def _extra_dirs() -> list[str]:
    """Where Debian puts binaries that are not on a normal user's PATH (newest PostgreSQL first)."""
    postgres = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_postgres_version, reverse=True)
    return ["/usr/sbin", "/sbin", *postgres]


def find_tool(name: str) -> str | None:
    """The absolute path of executable ``name``, or None; PATH first, then :func:`_extra_dirs`."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_extra_dirs()))
    return os.path.abspath(found) if found else None


def require_tool(name: str) -> str:
    """The absolute path of ``name``; skip the test when it is missing -- fail under CI=true."""
    path = find_tool(name)
    if path is not None:
        return path
    package = DEBIAN_PACKAGES.get(name, name)
    message = (f"{name} is not installed: apt-get install --no-install-recommends {package}"
               f" (Debian package {package!r})")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true a missing peer fails the run", pytrace=False)
    pytest.skip(message)


# --- running commands -------------------------------------------------------------------------


def _tail(data: bytes | str | None, limit: int = TAIL_CHARS) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else "[...]" + text[-limit:]


def _describe(argv: Sequence[str], what: str, stdout: bytes | str | None,
              stderr: bytes | str | None) -> str:
    return (f"{what}: {shlex.join(argv)}\n--- stdout (tail) ---\n{_tail(stdout)}"
            f"\n--- stderr (tail) ---\n{_tail(stderr)}")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every member of process group ``pgid`` to exit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a member that dropped privileges is still a member
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


def run_tool(
    args: Sequence[StrPath],
    *,
    input: bytes | None = None,
    timeout: float = 60,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: StrPath | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion and capture its output.

    With ``check`` a non-zero exit raises :class:`PeerError` showing the command, exit code and
    the tails of stdout and stderr.  A timeout always raises.  stdin is empty unless ``input`` is
    given, so a tool that falls back to reading stdin fails fast instead of hanging.  The command
    runs in its own process group, killed as a whole on timeout or interruption.
    """
    argv = [os.fspath(a) for a in args]
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    with subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, cwd=cwd, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise PeerError(_describe(argv, f"timed out after {timeout:g} s", stdout,
                                      stderr)) from None
        except BaseException:  # KeyboardInterrupt included: do not leave the tool running
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    result = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise PeerError(_describe(argv, f"command failed with exit code {result.returncode}",
                                  stdout, stderr))
    return result


# --- ports ------------------------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_handed_out: set[tuple[int, int]] = set()


def free_port(*, udp: bool = False) -> int:
    """A port on 127.0.0.1 that was free a moment ago and that this process never handed out.

    The kernel may still give the same port to someone else before the server binds it; never
    handing out a port twice at least keeps two servers of one test run from colliding.
    """
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if (kind, port) not in _ports_handed_out:
                _ports_handed_out.add((kind, port))
                return port
    raise RuntimeError("no fresh loopback port after 100 attempts")


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- servers ----------------------------------------------------------------------------------

_live: set[LoopbackProcess] = set()
_own_tmpdirs: list[Path] = []


@atexit.register
def _cleanup_at_exit() -> None:
    """Last line of defence: a server a test forgot to stop still dies with the test process."""
    for proc in list(_live):
        proc.stop(grace=1.0)
    for path in _own_tmpdirs:
        shutil.rmtree(path, ignore_errors=True)


class LoopbackProcess:
    """A server process for one test, on loopback, in a process group of its own.

    ``args`` may contain ``{port}``: when ``port`` is None a fresh one from :func:`free_port` is
    substituted.  Readiness: ``ready`` (a callable returning True, or a regex searched in stdout
    and stderr) when given, else a TCP connect to ``port``.  A given ``ready`` replaces the TCP
    probe because a probe is a real connection (``openssl s_server -naccept 1`` would spend its
    only accept on it).  stdout and stderr go to files in :attr:`tmpdir` (a fresh directory,
    under ``tmpdir`` when given, so configuration files can be written there before ``start``).
    ``env`` is the whole environment, as for :mod:`subprocess`.
    """

    def __init__(
        self,
        args: Sequence[StrPath],
        *,
        port: int | None = None,
        ready: Ready | None = None,
        env: Mapping[str, str] | None = None,
        cwd: StrPath | None = None,
        timeout: float = 30.0,
        tmpdir: StrPath | None = None,
        name: str | None = None,
    ) -> None:
        raw = [os.fspath(a) for a in args]
        if port is None and any("{port}" in a for a in raw):
            port = free_port()
        if port is None and ready is None:
            raise ValueError("LoopbackProcess needs a port to probe or a ready condition")
        self.port = port
        self.args = [a.replace("{port}", str(port)) for a in raw] if port is not None else raw
        self.name = name or Path(self.args[0]).name
        self.timeout = timeout
        self._ready = ready
        self._env = env
        self._cwd = cwd
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"peer-{self.name}-", dir=tmpdir))
        if tmpdir is None:
            _own_tmpdirs.append(self.tmpdir)
        self.stdout_path = self.tmpdir / "stdout.log"
        self.stderr_path = self.tmpdir / "stderr.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False

    # -- life cycle

    def start(self) -> Self:
        """Start the process and return once it is ready; on any failure it is stopped again."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} was already started")
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=err, env=self._env, cwd=self._cwd,
                                          start_new_session=True)
        _live.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the whole group, SIGKILL what is left after ``grace`` s; the exit code."""
        proc = self._proc
        if proc is None or self._stopped:
            return None if proc is None else proc.returncode
        self._stopped = True
        _live.discard(self)
        # Once the leader is reaped its pid may be reused by another group when ours is empty:
        # signal only a group that still exists.
        if proc.poll() is None or not _group_gone(proc.pid, 0):
            _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        # The leader is gone; children that stayed in its group may not be.
        if not _group_gone(proc.pid, grace):
            _signal_group(proc.pid, signal.SIGKILL)
            _group_gone(proc.pid, grace)
        return proc.returncode

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; PeerError with the log tail on timeout."""
        try:
            return self._started().wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PeerError(self._failure(f"still running after {timeout:g} s")) from None

    def __enter__(self) -> Self:
        return self if self._proc is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- state

    @property
    def pid(self) -> int:
        """The server's pid, which is also its process-group id."""
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        return self._started().poll()

    def stdout_text(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace") if self.stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace") if self.stderr_path.exists() else ""

    def log_text(self) -> str:
        """Everything the process wrote so far: stdout, then stderr."""
        return f"--- stdout ---\n{self.stdout_text()}--- stderr ---\n{self.stderr_text()}"

    # -- internals

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc

    def _failure(self, what: str) -> str:
        return _describe(self.args, f"{self.name} {what}", self.stdout_text(), self.stderr_text())

    def _readiness(self) -> Callable[[], bool]:
        ready, port = self._ready, self.port
        if callable(ready):
            return ready
        if ready is not None:
            pattern = re.compile(ready, re.MULTILINE) if isinstance(ready, str) else ready
            return lambda: any(pattern.search(text) is not None
                               for text in (self.stdout_text(), self.stderr_text()))
        assert port is not None  # checked in __init__
        return lambda: port_accepts(port)

    def _wait_ready(self) -> None:
        proc, is_ready = self._started(), self._readiness()
        deadline = time.monotonic() + self.timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise PeerError(self._failure(f"exited with code {code} before it was ready"))
            try:
                if is_ready():
                    return
            except OSError:
                pass  # a probe that cannot connect yet means "not ready"
            if time.monotonic() >= deadline:
                raise PeerError(self._failure(f"not ready after {self.timeout:g} s"))
            time.sleep(_POLL_SECONDS)


class LoopbackFactory(Protocol):
    """The type of the ``loopback`` fixture: start a server that is stopped at test teardown."""

    def __call__(
        self,
        args: Sequence[StrPath],
        *,
        port: int | None = None,
        ready: Ready | None = None,
        env: Mapping[str, str] | None = None,
        cwd: StrPath | None = None,
        timeout: float = 30.0,
        name: str | None = None,
    ) -> LoopbackProcess: ...
