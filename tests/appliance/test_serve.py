"""``medsign serve``: gunicorn with several worker processes sharing ONE unsealed KEK.

The key custodian (in the gunicorn master) is tested twice: in-process, where its protocol and
epochs can be driven directly, and through a real 2-worker gunicorn on loopback, where the
requests that unseal and the requests that follow land on different worker processes (told
apart by the access log's ``pid=``).  Also: demo auto-unseal only with ``start_sealed = false``,
graceful stop on SIGTERM, TLS 1.2+ only, clear one-line failures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes as chashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance import config as config_module
from appliance import server as server_module
from appliance.api.hmac_signing import sign_request
from appliance.custody import KekStore, KeyHolder, initialize_kek
from appliance.errors import BadRequest, Sealed
from appliance.server import CustodianClient, KeyCustodian, SharedKeyHolder
from appliance.storage import Database
from tests.appliance.serving import Server, clean_env, cli, cli_process, serving, shares_of
from tests.support.peers import free_port

PASSPHRASE = "correct horse battery staple 病历"
Signer = Callable[[str], dict[str, str]]


# ---------------------------------------------------------------------------------------------
# The custodian in-process


@pytest.fixture
def custody(tmp_path: Path) -> Iterator[tuple[KeyCustodian, Database, list[str]]]:
    """A 2-of-3 Shamir installation and a custodian that trusts this process with the KEK."""
    db = Database(f"sqlite:///{tmp_path / 'medsign.db'}")
    db.migrate()
    _, shares = initialize_kek(KekStore(db), shamir=(2, 3))
    custodian = KeyCustodian(KeyHolder(KekStore(db)), tmp_path / "keyholder.sock",
                             may_take_kek=lambda _pid, _uid: True).start()
    yield custodian, db, shares
    custodian.stop()
    db.dispose()


def _worker(custodian: KeyCustodian, db: Database) -> SharedKeyHolder:
    return SharedKeyHolder(KekStore(db),
                           CustodianClient(custodian.socket_path, custodian.state))


def test_custodian_shares_progress_kek_and_seal_between_holders(
        custody: tuple[KeyCustodian, Database, list[str]]) -> None:
    custodian, db, shares = custody
    one, two = _worker(custodian, db), _worker(custodian, db)
    assert one.sealed and two.sealed
    with pytest.raises(Sealed):
        two.keyring()
    # Shamir progress is the master's: share 1 through one worker, share 3 through the other.
    status = one.unseal(share=shares[0])
    assert (status["sealed"], status["progress"], status["threshold"]) == (True, 1, 2)
    assert two.status()["progress"] == 1
    status = two.unseal(share=shares[2])
    assert status["sealed"] is False
    assert not one.sealed and not two.sealed
    ring_one, ring_two = one.keyring(), two.keyring()
    assert ring_one.fingerprint == ring_two.fingerprint == custodian.holder.keyring().fingerprint
    envelope = ring_one.wrap(b"server key share", b"ctx")
    assert ring_two.unwrap(envelope, b"ctx") == b"server key share"
    assert one.keyring() is ring_one  # cached for the epoch: no round trip per use
    # Sealing through one worker seals every worker at its next use.
    one.seal()
    assert two.sealed and custodian.holder.sealed
    with pytest.raises(Sealed):
        two.keyring()
    assert two.status()["progress"] == 0


def test_custodian_forwards_refusals_as_problems(
        custody: tuple[KeyCustodian, Database, list[str]]) -> None:
    custodian, db, shares = custody
    holder = _worker(custodian, db)
    with pytest.raises(BadRequest) as refused:
        holder.unseal(passphrase=PASSPHRASE)  # a Shamir installation
    assert refused.value.code == "bad-request" and "Shamir" in refused.value.detail
    # Shares are read case-insensitively, so the changed digit must differ
    # from the original whatever its case.
    changed = "1" if shares[0][-6].lower() != "1" else "2"
    bogus = shares[0][:-6] + changed + shares[0][-5:]
    with pytest.raises(BadRequest) as bad_share:
        holder.unseal(share=bogus)
    assert bad_share.value.code in ("unseal-failed", "bad-request")
    assert holder.sealed


def _raw(path: Path, message: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(message)
        answer: dict[str, Any] = json.loads(sock.makefile("rb").readline())
        return answer


def test_custodian_gives_the_kek_only_to_its_workers(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'medsign.db'}")
    db.migrate()
    keyring, _ = initialize_kek(KekStore(db), passphrase=PASSPHRASE)
    holder = KeyHolder(KekStore(db))
    holder.adopt(keyring)
    # The policy of the server: direct children of the process running the custodian (or
    # root); this test process is neither child nor (here) trusted as root.
    custodian = KeyCustodian(holder, tmp_path / "k.sock",
                             may_take_kek=lambda pid, _uid: server_module.is_my_child(pid)
                             ).start()
    try:
        assert (tmp_path / "k.sock").stat().st_mode & 0o777 == 0o600
        answer = _raw(custodian.socket_path, b'{"op": "kek"}\n')
        assert answer["ok"] is False and "workers" in answer["error"]["detail"]
        assert (answer["error"]["code"], answer["error"]["status"]) == ("forbidden", 403)
        assert "kek" not in answer
        assert _raw(custodian.socket_path, b'{"op": "status"}\n')["status"]["sealed"] is False
        for junk in (b"not json\n", b"[1]\n", b'{"op": "frobnicate"}\n',
                     b'{"op": "unseal", "material": {"passphrase": 1}}\n'):
            answer = _raw(custodian.socket_path, junk)
            assert answer["ok"] is False and answer["error"]["status"] == 400, junk
        # A second custodian on the same socket is refused while the first answers.
        with pytest.raises(Exception, match="another medsign server"):
            KeyCustodian(holder, tmp_path / "k.sock").start()
    finally:
        custodian.stop()
    assert not (tmp_path / "k.sock").exists()
    assert holder.sealed  # stopping forgets the KEK
    db.dispose()


def test_tls_context_refuses_anything_below_tls_1_2(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    config = dataclasses.replace(config_module.Config(), server=dataclasses.replace(
        config_module.ServerConfig(), tls_cert=str(cert), tls_key=str(key)))

    def permissive() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.load_cert_chain(cert, key)
        return context

    assert server_module.tls_context(config, permissive).minimum_version \
        == ssl.TLSVersion.TLSv1_2
    assert server_module.tls_context(config).minimum_version == ssl.TLSVersion.TLSv1_2


# ---------------------------------------------------------------------------------------------
# A real gunicorn with two workers


@pytest.fixture
def shamir_install(tmp_path: Path) -> tuple[Path, list[str]]:
    config_file = tmp_path / "etc" / "medsign.toml"
    result = cli("init", "--config", config_file, "--shamir", "2/3")
    assert result.code == 0, result.err
    shares = shares_of(result.out)
    assert len(shares) == 3 and len(set(shares)) == 3
    return config_file, shares


def _answers_by_worker(server: Server, path: str, count: int,
                       sign: Signer | None = None) -> dict[int, list[Any]]:
    """Send ``count`` GETs, a few at a time on fresh connections (concurrent connections are
    what spreads accepts over the workers); group the answers by the worker pid that served
    each (the access log's ``pid=``, matched by a probe number in the query).  Answers are
    JSON bodies of 200s; with ``sign`` (signed requests), ``(status, body)`` pairs."""
    global _probe  # noqa: PLW0603 -- one counter for the test process
    probes = list(range(_probe + 1, _probe + 1 + count))
    _probe += count

    def ask(probe: int) -> tuple[int, Any]:
        target = f"{path}?probe={probe}"
        status, _, body = server.request("GET", target,
                                         headers=sign(target) if sign else None)
        return status, body

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = dict(zip(map(str, probes), pool.map(ask, probes), strict=True))
    bodies: dict[str, Any] = {}
    for probe, (status, body) in answers.items():
        if sign is None:
            assert status == 200, body
            bodies[probe] = body
        else:
            bodies[probe] = (status, body)
    by_pid: dict[int, list[Any]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = {m.group(1): int(m.group(2)) for m in re.finditer(
            r"\?probe=(\d+) .*pid=<?(\d+)", "\n".join(_log_lines(server)))}
        if all(n in found for n in bodies):
            for n, body in bodies.items():
                by_pid.setdefault(found[n], []).append(body)
            return by_pid
        time.sleep(0.05)
    raise AssertionError("the access log lacks some probes:\n" + "\n".join(_log_lines(server)))


_probe = 0


def _log_lines(server: Server) -> list[str]:
    text = server.access_log.read_text() if server.access_log.exists() else ""
    return text.splitlines()


def _until_both_workers(server: Server, path: str,
                        sign: Signer | None = None) -> dict[int, list[Any]]:
    """Probe until two workers have answered.  Bounded by time, not by a number of requests:
    without a preloaded app each worker imports it on its own, and on a loaded CI machine the
    second can still be starting after hundreds of answers from the first."""
    merged: dict[int, list[Any]] = {}
    deadline = time.monotonic() + 90
    sent = 0
    while time.monotonic() < deadline:
        for pid, bodies in _answers_by_worker(server, path, 8, sign).items():
            merged.setdefault(pid, []).extend(bodies)
        sent += 8
        if len(merged) >= 2:
            return merged
        time.sleep(0.1)
    raise AssertionError(f"{sent} requests in 90 s were all answered by {sorted(merged)}")


def _signer(credential: str) -> Signer:
    key_id = re.search(r"key id: (\S+)", credential)
    secret = re.search(r"secret \(shown once, base64url\): (\S+)", credential)
    assert key_id and secret, credential
    return lambda target: sign_request("GET", target, key_id=key_id.group(1),
                                       secret=secret.group(1))


def _statuses(answers: dict[int, list[Any]]) -> set[int]:
    return {status for pairs in answers.values() for status, _ in pairs}


def test_two_workers_share_one_unseal(shamir_install: tuple[Path, list[str]]) -> None:
    config_file, shares = shamir_install
    # An application credential: its secret is wrapped under the KEK, so a signed request
    # succeeds only in a worker that really holds the KEK.
    created = cli_process("app", "create", "probe", "--scope", "verify", "--config",
                          config_file, stdin=f"{shares[0]}\n{shares[2]}\n")
    assert created.code == 0, created.err
    signed = _signer(created.out)
    with serving(config_file, workers=2, threads=2) as server:
        before = _until_both_workers(server, "/healthz")
        assert all(body["sealed"] is True for bodies in before.values() for body in bodies)
        assert _statuses(_until_both_workers(server, "/api/v1/whoami", signed)) == {503}
        # Two officers' shares, each through its own request (and connection).
        status, _, body = server.request("POST", "/api/v1/sys/unseal", {"share": shares[1]})
        assert status == 200 and body["sealed"] is True and body["progress"] == 1, body
        status, _, body = server.request("POST", "/api/v1/sys/unseal", {"share": shares[0]})
        assert status == 200 and body["sealed"] is False, body
        after = _until_both_workers(server, "/healthz")
        assert len(after) == 2
        assert all(body["sealed"] is False for bodies in after.values() for body in bodies)
        statuses = _until_both_workers(server, "/api/v1/sys/seal-status")
        assert all(b == {"initialized": True, "sealed": False, "method": "shamir",
                         "threshold": 2, "progress": 0}
                   for bodies in statuses.values() for b in bodies)
        metrics = _until_both_workers(server, "/metrics")
        assert all("medsign_sealed 0" in text for bodies in metrics.values() for text in bodies)
        who = _until_both_workers(server, "/api/v1/whoami", signed)
        assert _statuses(who) == {200}
        assert all(body["scopes"] == ["verify"] for pairs in who.values() for _, body in pairs)
        # The KEK itself is usable in every worker: sealing from outside bumps the epoch and
        # is seen by both, and unsealing again works through either.
        socket_path = Path(_data_dir(config_file)) / "keyholder.sock"
        assert socket_path.exists() and socket_path.stat().st_mode & 0o777 == 0o600
        # Not a worker: refused, unless this test runs as root (the operator's CLI).
        assert _raw(socket_path, b'{"op": "kek"}\n')["ok"] is (os.getuid() == 0)
        assert _raw(socket_path, b'{"op": "seal"}\n')["status"]["sealed"] is True
        sealed_again = _until_both_workers(server, "/healthz")
        assert all(body["sealed"] is True for bodies in sealed_again.values() for body in bodies)
        assert _statuses(_until_both_workers(server, "/api/v1/whoami", signed)) == {503}
    assert not socket_path.exists()


def _data_dir(config_file: Path) -> str:
    return config_module.load(config_file, env={}).data_dir


def test_unseal_command_against_the_running_server(
        shamir_install: tuple[Path, list[str]]) -> None:
    config_file, shares = shamir_install
    with serving(config_file) as server:
        first = cli_process("unseal", "--url", server.url, "--share", stdin=shares[2] + "\n")
        assert first.code == 0, first.err
        assert "1 of 2 shares given, 1 more needed" in first.out
        wrong = cli_process("unseal", "--url", server.url, "--share", stdin="MSS1-garbage\n")
        assert wrong.code == 2 and len(wrong.err.strip().splitlines()) == 1, wrong.err
        assert wrong.err.startswith("medsign: error: the appliance refused: ")
        second = cli_process("unseal", "--url", server.url, stdin=shares[0] + "\n")
        assert (second.code, second.out.strip()) == (0, "unsealed"), second.err
        again = cli_process("unseal", "--url", server.url, "--share", stdin=shares[1] + "\n")
        assert (again.code, again.out.strip()) == (0, "already unsealed")
    gone = cli_process("unseal", "--url", server.url, "--share", stdin=shares[1] + "\n")
    assert gone.code == 2 and len(gone.err.strip().splitlines()) == 1
    assert "cannot reach the appliance" in gone.err


def test_passphrase_unseal_and_graceful_stop(tmp_path: Path) -> None:
    config_file = tmp_path / "medsign.toml"
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    assert cli("init", "--config", config_file, "--passphrase-file", pass_file).code == 0
    again = cli("init", "--config", config_file, "--passphrase-file", pass_file)
    assert again.code == 2 and "already has a KEK" in again.err
    with serving(config_file) as server:
        assert server.request("GET", "/healthz")[2]["sealed"] is True
        bad = tmp_path / "bad"
        bad.write_text("not the passphrase at all\n")
        refused = cli_process("unseal", "--url", server.url, "--passphrase-file", bad)
        assert refused.code == 2 and "unseal-failed" in refused.err, refused.err
        done = cli_process("unseal", "--url", server.url, "--passphrase-file", pass_file)
        assert (done.code, done.out.strip()) == (0, "unsealed"), done.err
        assert all(b["sealed"] is False for bodies in
                   _until_both_workers(server, "/healthz").values() for b in bodies)
        # A slow request in flight when SIGTERM arrives is answered, then the server exits 0.
        results: list[int] = []
        conn = server.connection()
        conn.request("GET", "/healthz")
        worker = threading.Thread(target=lambda: results.append(conn.getresponse().status))
        worker.start()
        os.killpg(server.process.pid, signal.SIGTERM)
        worker.join(30)
        assert server.process.wait(timeout=GRACE) == 0, server.process.log_text()
        assert results == [200]
    assert "Shutting down: Master" in server.process.stderr_text()


GRACE = server_module.GRACEFUL_TIMEOUT + 10


def test_a_replay_is_refused_by_every_worker_and_after_sigkill(tmp_path: Path) -> None:
    """The nonces live in the workers' shared table (SQLite): a replay is refused whichever
    worker gets it, and still after the whole server was killed and started again."""
    config_file = tmp_path / "medsign.toml"
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    assert cli("init", "--config", config_file, "--passphrase-file", pass_file).code == 0
    created = cli_process("app", "create", "probe", "--scope", "verify", "--config",
                          config_file, "--passphrase-file", pass_file)
    assert created.code == 0, created.err
    headers = _signer(created.out)("/api/v1/whoami")
    auto = {"MEDSIGN_CUSTODY_START_SEALED": "false",
            "MEDSIGN_CUSTODY_UNSEAL_PASSPHRASE_FILE": str(pass_file)}
    with serving(config_file, workers=2, threads=2, env=auto) as server:
        assert server.request("GET", "/api/v1/whoami", headers=headers)[0] == 200
        deadline = time.monotonic() + 90  # the second worker may still be importing the app
        while time.monotonic() < deadline:  # fresh connections, until both workers refused it
            status, _, body = server.request("GET", "/api/v1/whoami", headers=headers)
            assert (status, body["code"]) == (401, "replay"), body
            if len(server.worker_pids()) == 2:
                break
            time.sleep(0.02)
        assert len(server.worker_pids()) == 2
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    with serving(config_file, workers=2, threads=2, env=auto) as server:
        status, _, body = server.request("GET", "/api/v1/whoami", headers=headers)
        assert (status, body["code"]) == (401, "replay"), body
        fresh = _signer(created.out)("/api/v1/whoami")
        assert server.request("GET", "/api/v1/whoami", headers=fresh)[0] == 200



def test_demo_auto_unseals_only_when_start_sealed_is_false(tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    first = cli("init", "--demo", "--config", config_file)
    assert first.code == 0, first.err
    pass_file = tmp_path / "var" / "demo-unseal-passphrase"
    assert pass_file.stat().st_mode & 0o777 == 0o600
    with serving(config_file) as server:
        assert all(b["sealed"] is False for bodies in
                   _until_both_workers(server, "/healthz").values() for b in bodies)
        assert "unsealed from custody.unseal_passphrase_file" in server.process.stderr_text()
    with serving(config_file, env={"MEDSIGN_CUSTODY_START_SEALED": "true"}) as server:
        assert server.request("GET", "/healthz")[2]["sealed"] is True
        assert "sealed" in server.process.stderr_text()


def test_serve_failures_are_one_line(tmp_path: Path) -> None:
    config_file = tmp_path / "medsign.toml"
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    assert cli("init", "--config", config_file, "--passphrase-file", pass_file).code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli_process("serve", "--config", config_file, "--bind", f"127.0.0.1:{port}")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "cannot listen on" in result.err
    only_cert = cli_process("serve", "--config", config_file, "--bind",
                            f"127.0.0.1:{free_port()}",
                            env=clean_env(MEDSIGN_SERVER_TLS_CERT=str(tmp_path / "c.pem")))
    assert only_cert.code == 2 and "set together" in only_cert.err
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("nope")
    no_pem = cli_process("serve", "--config", config_file, "--bind", f"127.0.0.1:{free_port()}",
                         env=clean_env(MEDSIGN_SERVER_TLS_CERT=str(garbage),
                                  MEDSIGN_SERVER_TLS_KEY=str(garbage)))
    assert no_pem.code == 2 and "TLS certificate" in no_pem.err
    assert len(no_pem.err.strip().splitlines()) == 1
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    bad_demo = cli_process("serve", "--config", config_file, "--bind", f"127.0.0.1:{free_port()}",
                           env=clean_env(MEDSIGN_CUSTODY_START_SEALED="false",
                                    MEDSIGN_CUSTODY_UNSEAL_PASSPHRASE_FILE=str(wrong)))
    assert bad_demo.code == 2 and "unseal-failed" in bad_demo.err, bad_demo.err
    assert len(bad_demo.err.strip().splitlines()) == 1
    missing = cli_process("serve", "--config", tmp_path / "nope.toml")
    assert missing.code == 2 and "does not exist" in missing.err


# ---------------------------------------------------------------------------------------------
# TLS


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "medsign test")])
    now = dt.datetime.now(dt.UTC)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(cx509.SubjectAlternativeName(
                [cx509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, chashes.SHA256()))
    cert_file, key_file = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _client(cert: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old versions at all
    context.minimum_version = context.maximum_version = version
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


def _permissive_server(cert: Path, key: Path) -> tuple[int, threading.Thread]:
    """A one-shot TLS server that accepts TLS 1.1: proves the client below can offer it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_2_and_1_3_only(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE + "\n")
    config_file = tmp_path / "medsign.toml"
    assert cli("init", "--config", config_file, "--passphrase-file", pass_file).code == 0
    old = _client(cert, ssl.TLSVersion.TLSv1_1)
    port, thread = _permissive_server(cert, key)
    assert _handshake(port, old) == "TLSv1.1"  # the client can speak TLS 1.1 ...
    thread.join(10)
    modern = ssl.create_default_context(cafile=str(cert))
    with serving(config_file, tls_context=modern,
                 env={"MEDSIGN_SERVER_TLS_CERT": str(cert),
                      "MEDSIGN_SERVER_TLS_KEY": str(key)}) as server:
        assert server.url.startswith("https://")
        assert server.request("GET", "/healthz")[0] == 200
        assert _handshake(server.port, _client(cert, ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
        assert _handshake(server.port, _client(cert, ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
        with pytest.raises(ssl.SSLError, match=r"(?i)protocol version|unsupported protocol"):
            _handshake(server.port, old)  # ... and the appliance refuses it
        done = cli_process("unseal", "--url", server.url, "--passphrase-file", pass_file,
                           "--cacert", cert)
        assert (done.code, done.out.strip()) == (0, "unsealed"), done.err
        untrusted = cli_process("unseal", "--url", server.url, "--passphrase-file", pass_file)
        assert untrusted.code == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.err


def test_kek_policy_is_workers_or_root() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert server_module.is_my_child(child.pid)
        assert server_module.worker_or_root(child.pid, 1000)
        assert not server_module.is_my_child(os.getpid())  # not a child of itself
        assert not server_module.worker_or_root(os.getpid(), 1000)
        assert server_module.worker_or_root(os.getpid(), 0)
        assert not server_module.is_my_child(1)  # init, the parent of everything
    finally:
        child.kill()
        child.wait()
