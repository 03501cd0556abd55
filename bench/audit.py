#!/usr/bin/env python3
"""Benchmark of issue 4: durable audit appends per second on SQLite and PostgreSQL.

Every figure is acknowledged appends per second through ``AuditLog.append`` — each one
committed (SQLite ``synchronous=FULL`` in WAL mode; PostgreSQL with ``fsync`` and
``synchronous_commit`` on) before ``append`` returns, so each survives SIGKILL.  Absolute
numbers mostly measure the disk's flush latency, so each row is set next to references
measured in the same run on the same files:

- **one transaction per append**: the same service with group commit off (every append takes
  the log's lock, reads ``max(seq)``, inserts, commits): what the log would do without the
  committer thread.  ``group/txn`` is the speed-up group commit buys.
- **raw commits/s**: one thread, a bare one-row ``INSERT`` + ``COMMIT`` on a plain table through
  the driver: the disk's durable commit rate, the ceiling of any one-commit-per-append design.

Writers are threads of this process (as gunicorn ``gthread`` workers are) and, for the last
rows, several processes (as gunicorn workers or appliance nodes are), all appending at once.
Goal (issue 4): at least 5,000 durable appends/s on SQLite with several concurrent writers; the
goal line takes the best group-commit row with 8 or more writers and says PASS or BELOW.

Wall-clock time throughout (durable appends wait for the disk, not the CPU).  Exit code 0
whatever the figures; 2 when PostgreSQL cannot be started (``--no-postgres`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
from _common import BenchError, pin_to_cpu

sys.path.remove(_common.BENCH_DIR)

from sqlalchemy import text

from appliance.config import AuditConfig
from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.services.audit import AuditLog
from appliance.storage import Database

GOAL = 5000.0
GOAL_MIN_WRITERS = 8
DETAILS = {"document": "sha256:9f86d081884c7d65", "ip_hmac": "0" * 64, "result": "ok"}


@dataclass
class Row:
    """One configuration: appends/s with and without group commit, latencies in ms."""

    engine: str
    writers: str
    group: float
    direct: float | None = None
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    direct_p50_ms: float | None = None
    count: int = 0
    runs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.group / self.direct if self.direct else None

    @property
    def total_writers(self) -> int:
        procs, _, threads = self.writers.partition("x")
        return int(procs) * int(threads) if threads else int(procs)


# --- measuring --------------------------------------------------------------------------------


def _audit(url: str, *, group: bool, node: str = "bench", pool: int = 8) -> AuditLog:
    database = Database(url, pool_size=pool)
    holder = KeyHolder(KekStore(database))
    holder.adopt(Keyring(os.urandom(16)))
    return AuditLog(database, holder, AuditConfig(node_id=node), group_commit=group)


def run_writers(log: AuditLog, writers: int, seconds: float,
                start_at: float | None = None) -> tuple[int, float, list[float]]:
    """``writers`` threads append until ``seconds`` are up; (appends, elapsed, latencies s)."""
    barrier = threading.Barrier(writers + 1)
    counts, latencies = [0] * writers, [[] for _ in range(writers)]
    window: list[float] = []

    def work(w: int) -> None:
        barrier.wait()
        n, lat = 0, latencies[w]
        while time.monotonic() < window[1]:
            t0 = time.perf_counter()
            log.append("data", "bench.append", f"writer:{w}", f"doc:{n}", DETAILS)
            lat.append(time.perf_counter() - t0)
            n += 1
        counts[w] = n

    pool = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in pool:
        thread.start()
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    begin = time.monotonic()
    window.extend([begin, begin + seconds])
    barrier.wait()
    for thread in pool:
        thread.join()
    return sum(counts), time.monotonic() - begin, [x for lat in latencies for x in lat]


def _ms(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def threads_row(engine: str, url: str, writers: int, seconds: float, rounds: int) -> Row:
    """Group commit and one-transaction-per-append, alternating rounds, best of each."""
    group_runs: list[float] = []
    direct_runs: list[float] = []
    lat_group: list[float] = []
    lat_direct: list[float] = []
    for _ in range(rounds):
        for group, runs, lats in ((True, group_runs, lat_group),
                                  (False, direct_runs, lat_direct)):
            log = _audit(url, group=group, pool=writers + 2)
            log.append("system", "bench.warmup")
            n, elapsed, lat = run_writers(log, writers, seconds)
            log.close()
            log.database.dispose()
            runs.append(n / elapsed)
            if n / elapsed >= max(runs):  # keep the latencies of the best round
                lats[:] = lat
    return Row(engine, str(writers), max(group_runs), max(direct_runs),
               _ms(lat_group, 0.5), _ms(lat_group, 0.99), _ms(lat_direct, 0.5),
               runs={"group": group_runs, "txn": direct_runs})


def processes_row(engine: str, url: str, procs: int, threads: int, seconds: float) -> Row:
    """``procs`` processes of ``threads`` writers each, group commit, one shared window."""
    start_at = time.time() + 3.0
    args = [sys.executable, str(Path(__file__).resolve()), "--child", url, str(threads),
            str(seconds), str(start_at)]
    children = [subprocess.Popen([*args, f"proc-{p}"], stdout=subprocess.PIPE, text=True)
                for p in range(procs)]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 120)
        if child.returncode != 0:
            raise BenchError(f"a writer process failed ({child.returncode})")
        results.append(json.loads(out))
    total = sum(r["count"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    p50 = statistics.median(r["p50_ms"] for r in results)
    p99 = max(r["p99_ms"] for r in results)
    return Row(engine, f"{procs}x{threads}", total / elapsed, None, p50, p99, count=total)


def child(argv: Sequence[str]) -> int:
    """One writer process of :func:`processes_row`: prints its count as JSON."""
    url, threads, seconds, start_at, node = argv
    log = _audit(url, group=True, node=node, pool=int(threads) + 2)
    log.append("system", "bench.warmup")
    n, elapsed, lat = run_writers(log, int(threads), float(seconds), float(start_at))
    log.close()
    print(json.dumps({"count": n, "elapsed": elapsed, "p50_ms": _ms(lat, 0.5),
                      "p99_ms": _ms(lat, 0.99)}))
    return 0


def raw_commits(url: str, seconds: float) -> float:
    """One thread: a one-row INSERT + COMMIT per iteration on a bare table (the disk's rate)."""
    database = Database(url)
    with database.transaction() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_raw (n BIGINT, payload TEXT)"))
    count, stop = 0, time.monotonic() + seconds
    begin = time.monotonic()
    while time.monotonic() < stop:
        with database.transaction() as conn:
            conn.execute(text("INSERT INTO bench_raw VALUES (:n, :p)"), {"n": count, "p": "x"})
        count += 1
    rate = count / (time.monotonic() - begin)
    database.dispose()
    return rate


# --- engines ----------------------------------------------------------------------------------


def sqlite_url(directory: str) -> str:
    database = Database(f"sqlite:///{directory}/bench.db")
    database.migrate()
    database.dispose()
    return f"sqlite:///{directory}/bench.db"


def start_postgres() -> tuple[str, Callable[[], None]]:
    cluster = _common.postgres_cluster()
    url = cluster.create_database("bench")
    database = Database(url)
    database.migrate()
    database.dispose()
    return url, cluster.stop


def measure(engine: str, url: str, args: argparse.Namespace) -> tuple[list[Row], float]:
    rows = [threads_row(engine, url, w, args.seconds, args.rounds) for w in args.writers]
    for procs, threads in args.processes:
        rows.append(processes_row(engine, url, procs, threads, args.seconds))
    return rows, raw_commits(url, args.seconds)


# --- output -----------------------------------------------------------------------------------


def _num(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if ratio else f"{value:,.0f}"


def goal_row(rows: Sequence[Row]) -> Row | None:
    eligible = [r for r in rows if r.engine == "sqlite" and r.total_writers >= GOAL_MIN_WRITERS]
    return max(eligible, key=lambda r: r.group, default=None)


def render(rows: Sequence[Row], raw: dict[str, float], info: dict[str, Any]) -> str:
    lines = [f"medsign audit-append benchmark: {info['seconds']} s per measurement, best of "
             f"{info['rounds']} alternating rounds, wall-clock time, {info['cpus']}"]
    lines += [f"  {engine}: raw durable commits/s (1 thread, bare INSERT+COMMIT): "
              f"{_num(rate)}" for engine, rate in raw.items()]
    header = ("engine", "writers", "group/s", "txn/s", "group/txn", "group/raw", "p50 ms",
              "p99 ms", "txn p50 ms")
    lines += ["", f"{header[0]:<11}{header[1]:>8}" + "".join(f"{h:>12}" for h in header[2:])]
    for r in rows:
        cells = (_num(r.group), _num(r.direct), _num(r.ratio, True),
                 _num(r.group / raw[r.engine], True), f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
                 "-" if r.direct_p50_ms is None else f"{r.direct_p50_ms:.1f}")
        lines.append(f"{r.engine:<11}{r.writers:>8}" + "".join(f"{c:>12}" for c in cells))
    lines += ["", "writers: threads of one process, or processes x threads (NxM);",
              "group: AuditLog with group commit; txn: one transaction per append (reference)"]
    best = goal_row(rows)
    if best is not None:
        verdict = "PASS" if best.group >= GOAL else "BELOW"
        lines.append(f"goal durable appends on SQLite >= {GOAL:,.0f}/s with several writers "
                     f"(best: {best.writers} writers): {best.group:,.0f}/s {verdict}")
    return "\n".join(lines)


def as_json(rows: Sequence[Row], raw: dict[str, float], info: dict[str, Any]) -> str:
    best = goal_row(rows)
    results = [{**asdict(r), "group_vs_txn": r.ratio, "group_vs_raw": r.group / raw[r.engine]}
               for r in rows]
    goal = None if best is None else {"writers": best.writers, "appends_per_second": best.group,
                                       "goal": GOAL, "pass": best.group >= GOAL}
    return json.dumps({**info, "unit": "durable appends per second", "raw_commits": raw,
                       "results": results, "goal": goal}, indent=2)


def _pair(text_value: str) -> tuple[int, int]:
    procs, _, threads = text_value.partition("x")
    return int(procs), int(threads)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating group/txn rounds; the best of each is kept")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 32, 64],
                        help="writer thread counts to measure")
    parser.add_argument("--processes", type=_pair, nargs="*", default=[(2, 32)],
                        help="PROCSxTHREADS configurations of several writer processes")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin to one CPU (default: all CPUs; writers are I/O bound)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or min(args.writers) < 1:
        parser.error("--seconds, --rounds and --writers must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    args = parse_args(argv)
    stop_postgres: Callable[[], None] | None = None
    try:
        cpus = f"CPU {pin_to_cpu(args.cpu)} only" if args.cpu is not None else \
            f"{len(os.sched_getaffinity(0))} CPUs"
        info = {"seconds": args.seconds, "rounds": args.rounds, "cpus": cpus}
        with tempfile.TemporaryDirectory(prefix="medsign-bench-") as tmp:
            rows, raw = [], {}
            engines = [("sqlite", sqlite_url(tmp))]
            if not args.no_postgres:
                url, stop_postgres = start_postgres()
                engines.append(("postgresql", url))
            for engine, url in engines:
                engine_rows, raw[engine] = measure(engine, url, args)
                rows += engine_rows
    except BenchError as exc:
        print(f"bench/audit.py: {exc}", file=sys.stderr)
        return 2
    finally:
        if stop_postgres is not None:
            stop_postgres()
    print(as_json(rows, raw, info) if args.json else render(rows, raw, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
