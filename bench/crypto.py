#!/usr/bin/env python3
"""Benchmark of issue 2: signcore's SM2 and RSA-2048 signatures against OpenSSL and gmssl.

Absolute operations per second say little (they depend on the machine), so every figure is set
next to references measured in the same run on the same core: ``openssl speed`` (the C library
at full speed, the goal is signcore/OpenSSL >= 0.9 for SM2 sign, SM2 verify and RSA-2048 sign)
and the pure-Python ``gmssl`` (what a naive implementation would give).

Everything runs pinned to one CPU: this process is pinned with ``sched_setaffinity`` before it
starts anything, and the ``openssl speed`` children inherit the mask.  By default both sides
count user CPU time, as ``openssl speed`` does, so another process preempting us on the core
does not count against either side; ``--elapsed`` switches both to wall-clock time.  Rounds
alternate (signcore, openssl, signcore, openssl, ...) and the best of each side is kept, so a
noisy moment on this small machine does not decide a ratio.

Exit code 0 whatever the ratios (the goal lines are informational); 2 when a tool is missing or
a result cannot be parsed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

# The timing loop, the clocks and CPU pinning, shared with bench/keysplit.py.
from _common import BenchError, Clock, Op, ops_per_second, pin_to_cpu, user_cpu_time

import signcore
from signcore import SignatureAlgorithm, ec
from signcore.keys import generate_private_key
from signcore.sm2 import SM2PrivateKey

GOAL = 0.9
GOAL_OPERATIONS = ("SM2 sign", "SM2 verify", "RSA-2048 sign")
MESSAGE = bytes(range(32))  # a document digest: what the appliance signs most


@dataclass
class Row:
    """One operation: operations per second by each implementation (None: not measured)."""

    operation: str
    signcore: float
    openssl: float | None = None
    gmssl: float | None = None
    runs: dict[str, list[float]] = field(default_factory=dict)

    @property
    def vs_openssl(self) -> float | None:
        return self.signcore / self.openssl if self.openssl else None

    @property
    def vs_gmssl(self) -> float | None:
        return self.signcore / self.gmssl if self.gmssl else None


@dataclass
class RunInfo:
    """The conditions of a run, printed with its results."""

    cpu: int
    seconds: int
    rounds: int
    clock: str
    versions: dict[str, str]


# --- openssl speed ------------------------------------------------------------------------------


def parse_speed(output: str, algorithm: str) -> tuple[float, float]:
    """(sign/s, verify/s) from the ``+F`` line of ``openssl speed -mr`` output.

    The line ends with the sign and verify figures: ``+F2:<i>:2048:<sign>:<verify>`` for RSA,
    ``+F7:<i>:256:CurveSM2:<sign>:<verify>`` for SM2 (OpenSSL 3.0).  OpenSSL 3 prints operations
    per second there; 1.1.1 printed seconds per operation, recognisable as a value below 1
    (no machine signs fewer than one RSA-2048 or SM2 signature per second).
    """
    for line in output.splitlines():
        fields = line.strip().split(":")
        middle = fields[1:-2]
        wanted = (any("SM2" in f for f in middle) if algorithm == "sm2"
                  else algorithm.removeprefix("rsa") in middle)
        if not fields[0].startswith("+F") or not wanted:
            continue
        try:
            sign, verify = (float(v) for v in fields[-2:])
        except ValueError:
            continue
        if sign > 0 and verify > 0:
            return (sign if sign >= 1 else 1 / sign), (verify if verify >= 1 else 1 / verify)
    raise BenchError(f"no +F result for {algorithm} in openssl speed output:\n{output}")


def openssl_speed(openssl: str, algorithm: str, seconds: int, elapsed: bool,
                  verbose: bool) -> tuple[float, float]:
    """Run ``openssl speed -mr`` for ``algorithm`` (sign and verify, ``seconds`` each)."""
    args = [openssl, "speed", "-seconds", str(seconds), "-mr", *(["-elapsed"] if elapsed else []),
            algorithm]
    done = subprocess.run(args, capture_output=True, text=True, timeout=10 * seconds + 60,
                          check=False)
    if verbose:
        print(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}", file=sys.stderr)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited with {done.returncode}:\n{done.stderr}")
    return parse_speed(done.stdout + done.stderr, algorithm)


# --- the implementations under test -------------------------------------------------------------


def signcore_sm2() -> tuple[Op, Op]:
    """SM2 sign and verify through signcore (platform libcrypto), default ID, 32-byte message."""
    key = generate_private_key("sm2")
    assert isinstance(key, SM2PrivateKey)
    public, signature = key.public_key(), key.sign(MESSAGE)
    public.verify(signature, MESSAGE)
    return (lambda: key.sign(MESSAGE)), (lambda: public.verify(signature, MESSAGE))


def signcore_rsa() -> tuple[Op, Op]:
    """RSA-2048 PKCS#1 v1.5 SHA-256 sign and verify through signcore (pyca/cryptography)."""
    key = generate_private_key("rsa2048")
    alg = SignatureAlgorithm.RSA_PKCS1_SHA256
    public, signature = key.public_key(), key.sign(MESSAGE, alg)
    public.verify(signature, MESSAGE, alg)
    return (lambda: key.sign(MESSAGE, alg)), (lambda: public.verify(signature, MESSAGE, alg))


def gmssl_sm2() -> tuple[Op, Op] | None:
    """SM2 sign and verify through gmssl, cross-checked against signcore first; None if absent.

    A fresh key (gmssl needs the scalar, which signcore never reveals); the public key is set
    after construction because gmssl's constructor mangles some keys (PEERS.md).
    """
    try:
        from gmssl import func, sm2  # noqa: PLC0415 -- optional: a dev dependency
    except ImportError:
        return None
    d = secrets.randbelow(ec.N - 2) + 1
    key = SM2PrivateKey.from_scalar(d)
    point = key.public_key().point
    crypt = sm2.CryptSM2(private_key=f"{d:064x}", public_key="", asn1=True)
    crypt.public_key = f"{point.x:064x}{point.y:064x}"

    def sign() -> str:
        return str(crypt.sign_with_sm3(MESSAGE, func.random_hex(crypt.para_len)))

    signature = sign()
    # Cross-check both ways before timing: benchmarking a wrong implementation proves nothing.
    key.public_key().verify(bytes.fromhex(signature), MESSAGE)
    if not crypt.verify_with_sm3(key.sign(MESSAGE).hex(), MESSAGE):
        raise BenchError("gmssl rejects a signcore SM2 signature: the comparison is void")
    return sign, (lambda: crypt.verify_with_sm3(signature, MESSAGE))


# --- the run ------------------------------------------------------------------------------------


def best_of_alternating(ours: dict[str, Op], theirs: Callable[[], tuple[float, float]], *,
                        rounds: int, seconds: int, clock: Clock) -> list[Row]:
    """Alternate signcore and OpenSSL rounds; one Row per operation with the best of each side.

    ``ours`` maps "<alg> sign" and "<alg> verify" to signcore calls; ``theirs`` measures the same
    two operations in one go (as ``openssl speed`` does) and returns them in that order.
    """
    names = tuple(ours)
    runs: dict[str, list[float]] = {f"{n}/{side}": [] for n in names for side in ("ours", "ref")}
    for _ in range(rounds):
        for name in names:
            runs[f"{name}/ours"].append(ops_per_second(ours[name], seconds, clock))
        for name, rate in zip(names, theirs(), strict=True):
            runs[f"{name}/ref"].append(rate)
    return [Row(name, max(runs[f"{name}/ours"]), max(runs[f"{name}/ref"]),
                runs={"signcore": runs[f"{name}/ours"], "openssl": runs[f"{name}/ref"]})
            for name in names]


def measure(args: argparse.Namespace, openssl: str) -> list[Row]:
    """All rows: SM2 and RSA-2048 against OpenSSL, SM2 also against gmssl."""
    clock: Clock = time.perf_counter if args.elapsed else user_cpu_time
    sm2_sign, sm2_verify = signcore_sm2()
    rsa_sign, rsa_verify = signcore_rsa()
    sm2_rows = best_of_alternating(
        {"SM2 sign": sm2_sign, "SM2 verify": sm2_verify},
        lambda: openssl_speed(openssl, "sm2", args.seconds, args.elapsed, args.verbose),
        rounds=args.rounds, seconds=args.seconds, clock=clock)
    gmssl_ops = gmssl_sm2()
    if gmssl_ops is not None:
        for row, op in zip(sm2_rows, gmssl_ops, strict=True):
            row.gmssl = ops_per_second(op, args.seconds, clock)
    rsa_rows = best_of_alternating(
        {"RSA-2048 sign": rsa_sign, "RSA-2048 verify": rsa_verify},
        lambda: openssl_speed(openssl, "rsa2048", args.seconds, args.elapsed, args.verbose),
        rounds=args.rounds, seconds=args.seconds, clock=clock)
    return sm2_rows + rsa_rows


def versions(openssl: str) -> dict[str, str]:
    """What was measured: each implementation with the library underneath it."""
    from cryptography.hazmat.backends.openssl import backend  # noqa: PLC0415

    cli = subprocess.run([openssl, "version"], capture_output=True, text=True, check=True)
    try:
        gmssl = importlib.metadata.version("gmssl")
    except importlib.metadata.PackageNotFoundError:
        gmssl = "not installed"
    return {
        "openssl speed": cli.stdout.strip(),
        "signcore SM2": f"platform libcrypto, {signcore.backend_version()}",
        "signcore RSA": f"pyca/cryptography {importlib.metadata.version('cryptography')}, "
                        f"{backend.openssl_version_text()}",
        "gmssl": gmssl,
    }


# --- output -------------------------------------------------------------------------------------


def _num(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if ratio else f"{value:,.0f}"


def render(rows: Sequence[Row], info: RunInfo) -> str:
    """The human-readable report: context, the table, one goal line per goal ratio."""
    lines = [f"medsign crypto benchmark: CPU {info.cpu} only, {info.seconds} s per measurement,"
             f" best of {info.rounds} alternating rounds, {info.clock} time"]
    lines += [f"  {name}: {version}" for name, version in info.versions.items()]
    header = ("operation", "signcore/s", "openssl/s", "gmssl/s", "signcore/openssl",
              "signcore/gmssl")
    lines += ["", f"{header[0]:<16}" + "".join(f"{h:>18}" for h in header[1:])]
    for row in rows:
        cells = (_num(row.signcore), _num(row.openssl), _num(row.gmssl),
                 _num(row.vs_openssl, True), _num(row.vs_gmssl, True))
        lines.append(f"{row.operation:<16}" + "".join(f"{c:>18}" for c in cells))
    lines.append("")
    for row in rows:
        if row.operation in GOAL_OPERATIONS and row.vs_openssl is not None:
            verdict = "PASS" if row.vs_openssl >= GOAL else "BELOW GOAL"
            lines.append(f"goal {row.operation} signcore/openssl >= {GOAL}: "
                         f"{row.vs_openssl:.3f} {verdict}")
    return "\n".join(lines)


def as_json(rows: Sequence[Row], info: RunInfo) -> str:
    """Machine-readable results: the same figures, ratios and verdicts."""
    results = [{**asdict(row), "signcore_vs_openssl": row.vs_openssl,
                "signcore_vs_gmssl": row.vs_gmssl} for row in rows]
    goals = [{"operation": r.operation, "ratio": r.vs_openssl, "goal": GOAL,
              "pass": r.vs_openssl is not None and r.vs_openssl >= GOAL}
             for r in rows if r.operation in GOAL_OPERATIONS]
    return json.dumps({**asdict(info), "unit": "operations per second", "results": results,
                       "goals": goals}, indent=2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=3,
                        help="seconds per measurement (openssl speed takes whole seconds)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating signcore/openssl rounds; the best of each is kept")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to")
    parser.add_argument("--elapsed", action="store_true",
                        help="measure wall-clock time instead of user CPU time (both sides)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true",
                        help="print raw openssl speed output and every round (to stderr)")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.rounds < 1:
        parser.error("--seconds and --rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise BenchError("the openssl CLI is missing (Debian package openssl)")
        cpu = pin_to_cpu(args.cpu)
        info = RunInfo(cpu, args.seconds, args.rounds,
                       "elapsed" if args.elapsed else "user CPU", versions(openssl))
        rows = measure(args, openssl)
    except BenchError as exc:
        print(f"bench/crypto.py: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        for row in rows:
            print(f"{row.operation}: rounds {row.runs}", file=sys.stderr)
    print(as_json(rows, info) if args.json else render(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
