"""What the benchmarks share: pinning to one CPU, the clocks, and the timing loop.

Kept in one place so that every benchmark measures the same way (bench/README.md, "How noise is
kept down"): a figure from ``crypto.py`` and one from ``keysplit.py`` then differ only by what
they measure.  The benchmarks run as scripts, so this module is imported as ``_common`` from the
directory they share.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The directory of the benchmarks, exactly as Python put it first on sys.path for a script
#: (the real path), so that a benchmark can drop it again (bench/keysplit.py must).
BENCH_DIR = os.path.dirname(os.path.realpath(__file__))

MIN_BATCH_SECONDS = 0.01  # check the clock about every 10 ms, so its cost does not count

Op = Callable[[], object]
Clock = Callable[[], float]


class BenchError(Exception):
    """A tool is missing or its output cannot be read: the run cannot produce a ratio."""


def postgres_cluster() -> Any:
    """The test suite's throwaway PostgreSQL cluster (``tests.support.postgres``), durable
    (fsync on, as an appliance runs it) and started; ``stop()`` removes it."""
    repo = os.path.dirname(BENCH_DIR)
    if repo not in sys.path:
        sys.path.append(repo)  # after the packages: tests/ is a dev-only helper here
    from tests.support.postgres import PostgresCluster  # noqa: PLC0415 -- dev-only helper

    try:
        return PostgresCluster(durable=True).start()
    except Exception as exc:  # initdb or postgres missing or failing: said, not raised
        raise BenchError(f"cannot start PostgreSQL (initdb/postgres): {exc}") from exc


def user_cpu_time() -> float:
    """User CPU seconds of this process: what ``openssl speed`` counts unless ``-elapsed``."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def ops_per_second(op: Op, seconds: float, clock: Clock) -> float:
    """Run ``op`` for about ``seconds`` of ``clock`` time; calls per second.

    The first doubling batches warm up caches and find a batch size that takes MIN_BATCH_SECONDS,
    so that reading the clock is a negligible part of what is measured.
    """
    batch = 1
    while True:
        start = clock()
        for _ in range(batch):
            op()
        if clock() - start >= MIN_BATCH_SECONDS:
            break
        batch *= 2
    count, start = 0, clock()
    while clock() - start < seconds:
        for _ in range(batch):
            op()
        count += batch
    return count / (clock() - start)


def pin_to_cpu(cpu: int | None) -> int:
    """Pin this process (and so every child it starts later) to one CPU; that CPU.

    By default the highest-numbered allowed CPU, which is usually the one that handles the
    fewest interrupts.
    """
    allowed = os.sched_getaffinity(0)
    chosen = max(allowed) if cpu is None else cpu
    if chosen not in allowed:
        raise BenchError(f"CPU {chosen} is not available to this process ({sorted(allowed)})")
    os.sched_setaffinity(0, {chosen})
    return chosen


@dataclass
class Row:
    """The result of one operation: per second (best round), what it is compared with, and
    every round."""

    operation: str
    per_second: float
    baseline: str | None
    runs: list[float] = field(default_factory=list)


def single_core_arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every single-core benchmark takes (keysplit.py, ca.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds over all operations; the best of each is kept")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to")
    parser.add_argument("--elapsed", action="store_true",
                        help="measure wall-clock time instead of this process's CPU time")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="print every round (to stderr)")
    return parser


def parse_single_core(parser: argparse.ArgumentParser,
                      argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be positive and --rounds at least 1")
    return args


@dataclass
class Bench:
    """One operation to time, compared with ``baseline`` (None: it is a baseline)."""

    name: str
    op: Op
    baseline: str | None = None


def measure(benches: Sequence[Bench], *, rounds: int, seconds: float, clock: Clock,
            verbose: bool) -> list[Row]:
    """Alternate over every operation ``rounds`` times; keep the best round of each."""
    runs: dict[str, list[float]] = {b.name: [] for b in benches}
    for round_number in range(1, rounds + 1):
        for bench in benches:
            rate = ops_per_second(bench.op, seconds, clock)
            runs[bench.name].append(rate)
            if verbose:
                print(f"round {round_number}: {bench.name}: {rate:,.1f}/s", file=sys.stderr)
    return [Row(b.name, max(runs[b.name]), b.baseline, runs[b.name]) for b in benches]


def ratio(row: Row, rows: Sequence[Row]) -> float | None:
    """Operations per second of ``row`` over those of its baseline row (None: no baseline)."""
    base = next((r for r in rows if r.operation == row.baseline), None)
    return row.per_second / base.per_second if base else None


def ratio_table(rows: Sequence[Row], width: int) -> list[str]:
    """The operations table (per second, ratio to the baseline) and one line per ratio."""
    lines = [f"{'operation':<{width}}{'per second':>12}{'vs raw sign':>13}"]
    for row in rows:
        value = ratio(row, rows)
        cell = f"{value:.3f}" if value is not None else "-"
        lines.append(f"{row.operation:<{width}}{row.per_second:>12,.1f}{cell:>13}")
    lines.append("")
    for row in rows:
        value = ratio(row, rows)
        if value is not None:
            lines.append(f"ratio {row.operation} / {row.baseline}: {value:.3f}")
    return lines
