#!/usr/bin/env python3
"""Benchmark of issue 4: an authenticated (HMAC) JSON round trip through gunicorn against a bare
Falcon hello-world served with the same gunicorn settings.

Two servers run side by side on loopback, both started from this process with identical
gunicorn settings (``appliance.server.gunicorn_settings``: gthread workers x threads from the
configuration, keep-alive, no access log):

- **medsign**: ``medsign serve`` on a fresh installation (SQLite in a temporary directory,
  unsealed from a passphrase file), answering ``GET /api/v1/whoami`` signed with an application
  credential (MEDSIGN-HMAC-SM3): the server parses the Authorization header, unwraps the
  credential's secret under the KEK, checks the HMAC over method, path, query, body digest,
  timestamp and nonce, records the nonce (replay protection: the workers' shared nonce table,
  ``appliance.services.nonce_table``), then answers who called;
- **hello**: a bare Falcon app (no middleware) answering the same path with a JSON body of the
  same shape.

The client is the same for both: several processes x threads, each thread with one keep-alive
``http.client`` connection, signing every request (a fresh nonce each time) even for the hello
server, so that the client's own cost is equal on both sides and the ratio is the servers'.
Rounds alternate (hello, medsign, hello, medsign, ...) and the best round of each is kept.

Goal (issue 4): medsign/hello >= 0.7.  Then it runs ``bench/audit.py`` (durable audit appends
on SQLite and PostgreSQL, goal >= 5,000/s on SQLite; ``--api-only`` skips it), so this one
command prints every figure issue 4 names.  As in the other benchmarks the goal line is
informational: exit 0 whatever the ratio, 2 when the run itself fails (a server does not start,
a signed request is refused, an unsigned one is not).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import http.client
import importlib.metadata
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The shared error type of the benchmarks (bench/_common.py).
from _common import BENCH_DIR, BenchError

from appliance import config as config_module
from appliance.api.hmac_signing import sign_request
from appliance.config import ServerConfig
from appliance.custody import KekStore, KeyHolder, initialize_kek
from appliance.services.applications import ApplicationService
from appliance.storage import Database

GOAL = 0.7
PATH = "/api/v1/whoami"
PASSPHRASE = "bench passphrase, loopback only"  # noqa: S105 -- a throwaway installation
MEDSIGN = str(Path(sys.executable).with_name("medsign"))


@dataclass
class Row:
    """One server: round trips per second (best round) and every round."""

    server: str
    per_second: float
    mean_latency_ms: float
    runs: list[float] = field(default_factory=list)


@dataclass
class RunInfo:
    workers: int
    threads: int
    client_processes: int
    client_threads: int
    seconds: float
    rounds: int
    versions: dict[str, str]


# ---------------------------------------------------------------------------------------------
# The two servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Installation:
    directory: Path
    config_file: Path
    key_id: str
    secret: str


def make_installation(directory: Path, workers: int, threads: int,
                      database_url: str | None = None) -> Installation:
    """A fresh appliance: passphrase-sealed KEK, one application credential, auto-unseal;
    its database in the data directory (SQLite) unless ``database_url`` names another."""
    data_dir = directory / "data"
    pass_file = directory / "unseal-passphrase"
    pass_file.write_text(PASSPHRASE + "\n")
    config_file = directory / "medsign.toml"
    database_section = f'[database]\nurl = "{database_url}"\n\n' if database_url else ""
    config_file.write_text(
        f'data_dir = "{data_dir}"\n\n[server]\nworkers = {workers}\nthreads = {threads}\n\n'
        f'{database_section}'
        f'[custody]\nstart_sealed = false\nunseal_passphrase_file = "{pass_file}"\n')
    config = config_module.load(config_file, env={})
    data_dir.mkdir(mode=0o700)
    database = Database(config.database_url)
    try:
        database.migrate()
        keyring, _ = initialize_kek(KekStore(database), passphrase=PASSPHRASE)
        holder = KeyHolder(KekStore(database))
        holder.adopt(keyring)
        credential, secret = ApplicationService(database, holder, config.security).create(
            None, name="bench", scopes=["verify"])
    finally:
        database.dispose()
    return Installation(directory, config_file, credential.key_id, secret)


@contextlib.contextmanager
def running(argv: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[None]:
    """A server process (own process group) until the block ends; waits for its port."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"{argv[0]} exited with {proc.returncode}: "
                                 f"{log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{argv[0]} did not listen on {port} within 60 s")
            time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _env(*, bench_modules: bool = False) -> dict[str, str]:
    """The servers' environment.  Only the hello-world reference imports from bench/: on the
    medsign server's path, bench/keysplit.py would shadow the keysplit package."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEDSIGN_") or k == "MEDSIGN_LIBCRYPTO"}
    if bench_modules:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [BENCH_DIR, env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------------------------
# The client


def _round_trips(port: int, key_id: str, secret: str, *, deadline: float,
                 warmup_until: float, check: Callable[[int, bytes], None]) -> tuple[int, float]:
    """One client thread: (round trips after warm-up, seconds spent in them)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    count, busy = 0, 0.0
    try:
        while True:
            started = time.perf_counter()
            if started >= deadline:
                return count, busy
            headers = sign_request("GET", PATH, key_id=key_id, secret=secret)
            conn.request("GET", PATH, headers=headers)
            response = conn.getresponse()
            body = response.read()
            check(response.status, body)
            if started >= warmup_until:
                count += 1
                busy += time.perf_counter() - started
    finally:
        conn.close()


def _expect_app(status: int, body: bytes) -> None:
    if status != 200:
        raise BenchError(f"the server answered {status}: {body[:300]!r}")
    if json.loads(body).get("kind") != "app":
        raise BenchError(f"unexpected answer {body[:300]!r}")


def _client_process(port: int, key_id: str, secret: str,
                    timing: tuple[int, float, float]) -> tuple[int, float]:
    """One client process: ``threads`` threads for ``warmup`` + ``seconds`` (``timing``);
    summed counts."""
    threads, warmup, seconds = timing
    start = time.perf_counter()
    warmup_until, deadline = start + warmup, start + warmup + seconds
    results: list[tuple[int, float]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(_round_trips(port, key_id, secret, deadline=deadline,
                                        warmup_until=warmup_until, check=_expect_app))
        except BaseException as exc:  # reported by the parent
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise BenchError(f"client thread failed: {errors[0]}")
    return sum(c for c, _ in results), sum(b for _, b in results)


def measure_once(executor: concurrent.futures.Executor, port: int, inst: Installation,
                 args: argparse.Namespace) -> tuple[float, float]:
    """(round trips per second, mean latency in ms) of one round against one server."""
    futures = [executor.submit(_client_process, port, inst.key_id, inst.secret,
                               (args.client_threads, args.warmup, args.seconds))
               for _ in range(args.client_processes)]
    counts = [f.result() for f in futures]
    total = sum(c for c, _ in counts)
    busy = sum(b for _, b in counts)
    if total == 0:
        raise BenchError("no round trip completed")
    return total / args.seconds, 1000 * busy / total


def check_auth(port: int, inst: Installation) -> None:
    """Before timing: a signed request is answered as the application, an unsigned one is
    refused, a replayed one is refused."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = sign_request("GET", PATH, key_id=inst.key_id, secret=inst.secret)
        for expected in (200, 401):  # the same signed request twice: the second is a replay
            conn.request("GET", PATH, headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != expected:
                raise BenchError(f"signed request (expected {expected}): {response.status} "
                                 f"{body[:300]!r}")
        conn.request("GET", PATH)
        response = conn.getresponse()
        response.read()
        if response.status != 401:
            raise BenchError(f"an unsigned request got {response.status}, not 401")
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Running and reporting


def versions(database: str = "SQLite (WAL, synchronous=FULL) in a temporary directory"
             ) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for package in ("gunicorn", "falcon", "sqlalchemy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "?"
    out["database"] = database
    return out


def measure(args: argparse.Namespace, work: Path) -> tuple[list[Row], RunInfo]:
    inst = make_installation(work, args.workers, args.threads)
    medsign_port, hello_port = free_port(), free_port()
    env = _env()
    medsign_argv = [MEDSIGN, "serve", "--config", str(inst.config_file), "--bind",
                    f"127.0.0.1:{medsign_port}"]
    hello_argv = [sys.executable, os.path.join(BENCH_DIR, "_api_hello.py"), "--config",
                  str(inst.config_file), "--bind", f"127.0.0.1:{hello_port}"]
    runs: dict[str, list[tuple[float, float]]] = {"hello": [], "medsign": []}
    context = multiprocessing.get_context("fork")
    with running(medsign_argv, medsign_port, work / "medsign.log", env), \
            running(hello_argv, hello_port, work / "hello.log", _env(bench_modules=True)), \
            concurrent.futures.ProcessPoolExecutor(args.client_processes,
                                                   mp_context=context) as executor:
        check_auth(medsign_port, inst)
        for round_number in range(args.rounds):
            for name, port in (("hello", hello_port), ("medsign", medsign_port)):
                result = measure_once(executor, port, inst, args)
                runs[name].append(result)
                if args.verbose:
                    print(f"round {round_number + 1} {name}: {result[0]:,.0f}/s, "
                          f"{result[1]:.2f} ms", file=sys.stderr)
    rows = []
    for name, label in (("hello", "bare Falcon hello-world"),
                        ("medsign", f"medsign GET {PATH} (HMAC-SM3)")):
        best = max(runs[name])
        rows.append(Row(label, best[0], best[1], [r[0] for r in runs[name]]))
    info = RunInfo(args.workers, args.threads, args.client_processes, args.client_threads,
                   args.seconds, args.rounds, versions())
    return rows, info


def ratio(rows: Sequence[Row]) -> float:
    return rows[1].per_second / rows[0].per_second


def render(rows: Sequence[Row], info: RunInfo) -> str:
    lines = [f"medsign API benchmark: loopback, both servers gunicorn gthread {info.workers} "
             f"workers x {info.threads} threads; client {info.client_processes} processes x "
             f"{info.client_threads} threads, keep-alive, every request signed; "
             f"{info.seconds:g} s per measurement, best of {info.rounds} alternating rounds"]
    lines += [f"  {name}: {version}" for name, version in info.versions.items()]
    lines += ["", f"{'server':<40}{'round trips/s':>16}{'mean latency ms':>18}"]
    lines += [f"{row.server:<40}{row.per_second:>16,.0f}{row.mean_latency_ms:>18.2f}"
              for row in rows]
    value = ratio(rows)
    verdict = "PASS" if value >= GOAL else "BELOW GOAL"
    lines += ["", f"goal authenticated round trip medsign/hello >= {GOAL}: {value:.3f} "
                  f"{verdict}"]
    return "\n".join(lines)


def as_json(rows: Sequence[Row], info: RunInfo) -> str:
    value = ratio(rows)
    return json.dumps({**asdict(info), "unit": "round trips per second",
                       "results": [dataclasses.asdict(r) for r in rows],
                       "goals": [{"operation": "authenticated round trip", "ratio": value,
                                  "goal": GOAL, "pass": value >= GOAL}]}, indent=2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating hello/medsign rounds; the best of each is kept")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="seconds of each round not counted (connections, caches)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="gunicorn workers of both servers (default: the configuration's)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="gthread threads per worker of both servers")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--client-threads", type=int, default=4,
                        help="threads (keep-alive connections) per client process")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--api-only", action="store_true",
                        help="skip the audit-append benchmark (bench/audit.py) that follows")
    parser.add_argument("--verbose", action="store_true", help="print every round (stderr)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.workers < 1 or args.threads < 1 \
            or args.client_processes < 1 or args.client_threads < 1:
        parser.error("--seconds, --rounds, --workers, --threads and the client counts must be "
                     "positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="medsign-bench-") as work:
            rows, info = measure(args, Path(work))
    except (BenchError, OSError, concurrent.futures.process.BrokenProcessPool) as exc:
        print(f"bench/api.py: {exc}", file=sys.stderr)
        return 2
    print(as_json(rows, info) if args.json else render(rows, info))
    if args.api_only:
        return 0
    # The second figure of issue 4, durable audit appends (SQLite and PostgreSQL): its own
    # script, run here so that this benchmark prints every ratio the issue names.
    print(flush=True)
    audit = [sys.executable, os.path.join(BENCH_DIR, "audit.py"),
             *(["--json"] if args.json else [])]
    return subprocess.run(audit, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
