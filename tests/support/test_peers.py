"""Tests of the peer fixture library itself, against a real ``openssl s_server``.

If these fail, every peer test that builds on ``tests.support.peers`` is suspect, so they check the
properties those tests rely on: readiness before connecting, failures that show the peer's
output, and no process left behind.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.peers import (
    DEBIAN_PACKAGES,
    LoopbackFactory,
    LoopbackProcess,
    PeerError,
    free_port,
    port_accepts,
    require_tool,
    run_tool,
)


@pytest.fixture
def tls_cert(openssl_bin: str, tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed RSA localhost certificate made by the openssl CLI: (cert, key)."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    run_tool([openssl_bin, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
              "-out", cert, "-subj", "/CN=localhost", "-days", "1",
              "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
    return cert, key


def _s_server(openssl_bin: str, cert_key: tuple[Path, Path], *extra: str) -> list[str]:
    cert, key = cert_key
    return [openssl_bin, "s_server", "-accept", "127.0.0.1:{port}", "-cert", str(cert),
            "-key", str(key), "-www", *extra]


def _https_get(port: int, cafile: Path) -> tuple[str | None, bytes]:
    """GET / over TLS trusting only ``cafile``: (negotiated TLS version, response head)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        return tls.version(), data


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.peer
def test_s_server_serves_https_and_its_group_is_gone_after_stop(
    openssl_bin: str, tls_cert: tuple[Path, Path], loopback: LoopbackFactory
) -> None:
    server = loopback(_s_server(openssl_bin, tls_cert))
    assert server.port is not None

    version, head = _https_get(server.port, tls_cert[0])

    assert version in {"TLSv1.2", "TLSv1.3"}
    assert head.startswith(b"HTTP/1.0 200"), head
    pgid = server.pid
    assert os.getpgid(pgid) == pgid  # its own group, so stop() can signal all of it
    server.stop()
    assert server.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


@pytest.mark.peer
def test_ready_by_regex_does_not_spend_a_connection(
    openssl_bin: str, tls_cert: tuple[Path, Path], loopback: LoopbackFactory
) -> None:
    # -naccept 1: a TCP readiness probe would use up the only accept; the regex must not.
    server = loopback(_s_server(openssl_bin, tls_cert, "-naccept", "1"), ready=r"^ACCEPT$")
    assert server.port is not None
    assert "ACCEPT" in server.stdout_text()

    _version, head = _https_get(server.port, tls_cert[0])

    assert head.startswith(b"HTTP/1.0 200"), head
    assert server.wait(timeout=10) == 0  # it served its one connection and left by itself


@pytest.mark.peer
def test_server_exiting_early_fails_start_with_its_log_tail(
    openssl_bin: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-cert.pem"
    server = LoopbackProcess([openssl_bin, "s_server", "-accept", "127.0.0.1:{port}", "-cert",
                              missing, "-www"], timeout=10)

    with pytest.raises(PeerError) as failure:
        server.start()

    message = str(failure.value)
    assert "exited with code" in message
    assert "no-such-cert.pem" in message  # openssl's own complaint, from the log tail
    assert not _group_exists(server.pid)


def test_start_times_out_with_the_log_tail_and_kills_the_whole_group(tmp_path: Path) -> None:
    script = ("import subprocess, sys, time; print('hello from the server', flush=True);"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
              "time.sleep(60)")
    server = LoopbackProcess([sys.executable, "-c", script], ready="never printed",
                             timeout=1.5, tmpdir=tmp_path)

    with pytest.raises(PeerError) as failure:
        server.start()

    assert "not ready after 1.5 s" in str(failure.value)
    assert "hello from the server" in str(failure.value)
    assert not _group_exists(server.pid)  # the grandchild went too


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
              "print('up', flush=True); time.sleep(60)")
    server = LoopbackProcess([sys.executable, "-c", script], ready="^up$", tmpdir=tmp_path)

    with server:
        pgid = server.pid
        assert server.returncode is None
        code = server.stop(grace=0.5)

    assert code == -9
    assert not _group_exists(pgid)


def test_ready_callable_and_loopback_fixture_teardown(loopback: LoopbackFactory) -> None:
    port = free_port()

    def answers() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return bool(response.status == 200)

    server = loopback([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                      port=port, ready=answers)

    assert server.port == port
    assert port_accepts(port)


def test_free_port_hands_out_distinct_bindable_ports() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
    assert free_port(udp=True) > 0


def test_run_tool_failure_shows_command_exit_code_and_output() -> None:
    script = "import sys; print('partial result'); sys.exit('fatal: bad input')"

    with pytest.raises(PeerError) as failure:
        run_tool([sys.executable, "-c", script])

    message = str(failure.value)
    assert "exit code 1" in message
    assert "partial result" in message
    assert "fatal: bad input" in message
    assert sys.executable in message


def test_run_tool_passes_input_and_check_false_returns_the_result() -> None:
    echo = run_tool([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"],
                    input=b"abc")
    assert echo.stdout == b"abc"
    failed = run_tool([sys.executable, "-c", "raise SystemExit(3)"], check=False)
    assert failed.returncode == 3


def test_run_tool_timeout_raises() -> None:
    with pytest.raises(PeerError, match=r"timed out after 0\.5 s"):
        run_tool([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)


def test_require_tool_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DEBIAN_PACKAGES, "medsign-no-such-tool", "medsign-pkg")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="medsign-pkg"):
        require_tool("medsign-no-such-tool")

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="medsign-pkg"):
        require_tool("medsign-no-such-tool")


def test_require_tool_returns_an_absolute_path() -> None:
    path = require_tool("sh")
    assert os.path.isabs(path)
    assert os.access(path, os.X_OK)
