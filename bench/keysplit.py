#!/usr/bin/env python3
"""Benchmark of issue 3: two-party SM2 co-signing and split RSA against plain signcore signatures.

A co-signature costs more than a plain signature by design: the server's step alone does two
point multiplications (k3*Q1 and k2*G, two constant-time ladder calls and an add) where a plain
SM2 sign does one, and a whole co-signature adds the phone's k1*G and two verifications.  What
matters is that ratio, not operations per second on this machine, so every figure is set next to
a plain ``signcore`` signature measured in the same run on the same core.  The goal (issue 3):
the server step >= 0.4 x a plain SM2 sign.

Conventions are those of ``bench/crypto.py`` (shared helpers in ``bench/_common.py``): one CPU
pinned, rounds alternate over every operation and the best round of each is kept.  Both sides
are Python in this process, so the default clock is this process's CPU time, user *and* system
(the protocol reads the OS random generator for its nonces); ``--elapsed`` switches to
wall-clock time.  Co-sign sessions use ``require_pin=False`` (the phone opens its share with the
cached unwrap key), except the row that says "with PIN", so the HMAC-SM3 PIN check is measured
once, apart.

Exit code 0 whatever the ratios (the goal lines are informational); 2 when a result cannot be
trusted (a co-signature that does not verify as an ordinary signature) or the CPU is unavailable.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

import _common
from _common import (
    BenchError,
    Clock,
    Op,
    Row,
    ops_per_second,
    parse_single_core,
    pin_to_cpu,
    single_core_arguments,
)

# Run as a script, this file is first on sys.path under the name of the package it measures and
# would shadow it: drop bench/ (it was needed for _common only) before importing keysplit.
sys.path.remove(_common.BENCH_DIR)

import signcore
from keysplit import messages, pin
from keysplit.messages import (
    CosignCommit,
    CosignResult,
    Message,
)
from keysplit.phone import (
    PhoneCosigner,
    PhoneKeygen,
    PhoneRsaEnrollment,
    PhoneRsaSigner,
    PhoneShare,
)
from keysplit.rsa import RsaServer, RsaState, split_keygen
from keysplit.sm2 import SM2Server, UnlockFn, complete_keygen, open_keygen
from signcore import SignatureAlgorithm
from signcore.errors import InvalidSignature
from signcore.keys import generate_private_key
from signcore.sm2 import SM2PrivateKey, SM2PublicKey

GOAL = 0.4
BATCH = 200  # one clinic session's prescriptions (issue 3)
MESSAGE = bytes(range(32))  # the document: a 32-byte digest, as in bench/crypto.py
PIN = "246810"
RSA = SignatureAlgorithm.RSA_PKCS1_SHA256

PLAIN_SM2 = "SM2 plain sign"
RESPOND = "co-sign server step: respond"
DECODE_RESPOND = "co-sign server step: decode+respond"
FULL = "full co-signature"
FULL_PIN = "full co-signature, with PIN"
BATCHED = f"batch co-signature ({BATCH} digests)"
PLAIN_RSA = "RSA-2048 plain sign"
RSA_SERVER = "RSA-2048 server partial: finish"

M = TypeVar("M", bound=Message)


@dataclass
class Bench:
    """One operation to time: ``items`` signatures per call, compared with ``baseline``."""

    name: str
    op: Op
    items: int = 1
    baseline: str | None = None


@dataclass
class RunInfo:
    """The conditions of a run, printed with its results."""

    cpu: int
    seconds: float
    rounds: int
    clock: str
    versions: dict[str, str]


# --- the protocol, in process -------------------------------------------------------------------


def wire(message: M) -> M:
    """What the peer receives: the message encoded to JSON and decoded (and checked) again."""
    return messages.decode(message.encode(), type(message))


def pin_unlock(record: pin.PinRecord) -> UnlockFn:
    """The appliance's unlock callback: check the proof, keep the new record, release the key."""
    records = [record]

    def unlock(proof: bytes | None) -> bytes | None:
        outcome = records[-1].verify(proof)
        records[-1] = outcome.record
        outcome.raise_for_error()
        return outcome.unwrap

    return unlock


@dataclass
class Sm2Parties:
    """A joint key made by a real co-keygen, and what each party keeps of it."""

    server: SM2Server
    share: PhoneShare
    unwrap: bytes
    unlock: UnlockFn
    public: SM2PublicKey


def sm2_keygen() -> Sm2Parties:
    """Run co-keygen through the wire format, as the appliance and a phone would."""
    state, offer = open_keygen()
    phone = PhoneKeygen(PIN)
    outcome = complete_keygen(state, wire(phone.commit(wire(offer))))
    share = phone.finish(wire(outcome.reply))
    return Sm2Parties(SM2Server(outcome.share), share, outcome.reply.unwrap,
                      pin_unlock(outcome.pin_record), outcome.share.sm2_public_key())


def cosign(parties: Sm2Parties, digests: Sequence[bytes], *, with_pin: bool = False
           ) -> tuple[bytes, ...]:
    """One whole co-signature session, every message crossing the wire format."""
    server = parties.server
    state, offer = server.open_cosign(digests, require_pin=with_pin)
    phone = (PhoneCosigner(parties.share, pin=PIN) if with_pin
             else PhoneCosigner(parties.share, unwrap=parties.unwrap))
    commit: CosignCommit = phone.commit(wire(offer))
    while True:  # more than one round only if s = 0 or s = n - r (probability ~2^-255)
        response = server.respond(state, wire(commit), unlock=parties.unlock)
        answer = phone.finish(wire(response.reply))
        if isinstance(answer, CosignResult):
            break
        state, commit = response.state, answer
    accepted = server.accept(response.state, wire(answer))
    return phone.close(wire(accepted.reply))


def server_step(parties: Sm2Parties) -> tuple[Op, Op]:
    """The server's response to one digest: on a decoded commit, and from its JSON bytes.

    The session state is immutable, so the same state and commit can be answered again and
    again (each answer with fresh k2, k3), which is exactly the step to time.
    """
    state, offer = parties.server.open_cosign([parties.public.digest(MESSAGE)],
                                              require_pin=False)
    commit = PhoneCosigner(parties.share, unwrap=parties.unwrap).commit(offer)
    raw = commit.encode()
    server = parties.server

    def respond() -> object:
        return server.respond(state, commit)

    def decode_respond() -> object:
        return server.respond(state, messages.decode(raw, CosignCommit))

    return respond, decode_respond


def check_cosignatures(parties: Sm2Parties) -> None:
    """Before timing: co-signatures must verify as ordinary SM2 signatures over the message."""
    docs = [MESSAGE + i.to_bytes(2, "big") for i in range(BATCH)]
    for with_pin in (False, True):
        (signature,) = cosign(parties, [parties.public.digest(MESSAGE)], with_pin=with_pin)
        parties.public.verify(signature, MESSAGE)
    signatures = cosign(parties, [parties.public.digest(d) for d in docs])
    for signature, doc in zip(signatures, docs, strict=True):
        parties.public.verify(signature, doc)


def sm2_benches() -> list[Bench]:
    """The plain SM2 sign and every co-signing operation compared with it."""
    key = generate_private_key("sm2")
    assert isinstance(key, SM2PrivateKey)
    key.public_key().verify(key.sign(MESSAGE), MESSAGE)
    parties = sm2_keygen()
    try:
        check_cosignatures(parties)
    except InvalidSignature:
        raise BenchError("a co-signature does not verify: the comparison is void") from None
    respond, decode_respond = server_step(parties)
    one = [parties.public.digest(MESSAGE)]
    batch = [parties.public.digest(MESSAGE + i.to_bytes(2, "big")) for i in range(BATCH)]
    return [
        Bench(PLAIN_SM2, lambda: key.sign(MESSAGE)),
        Bench(RESPOND, respond, baseline=PLAIN_SM2),
        Bench(DECODE_RESPOND, decode_respond, baseline=PLAIN_SM2),
        Bench(FULL, lambda: cosign(parties, one), baseline=PLAIN_SM2),
        Bench(FULL_PIN, lambda: cosign(parties, one, with_pin=True), baseline=PLAIN_SM2),
        Bench(BATCHED, lambda: cosign(parties, batch), items=BATCH, baseline=PLAIN_SM2),
    ]


def rsa_session(digest: bytes) -> tuple[RsaServer, RsaState, messages.RsaCommit]:
    """A split RSA-2048 key and a session up to the phone's partial signature."""
    server_share, phone_secret = split_keygen(2048)
    enrollment = PhoneRsaEnrollment(PIN)
    _, unwrap = pin.PinRecord.create(enrollment.pin_proof)
    signer = PhoneRsaSigner(enrollment.finish(phone_secret, unwrap), unwrap=unwrap)
    server = RsaServer(server_share)
    state, offer = server.open([digest], require_pin=False)
    state, unlocked = server.unlock(state, wire(signer.unlock(wire(offer))))
    commit = wire(signer.commit(wire(unlocked)))
    _, result, _ = server.finish(state, commit)
    signer.close(wire(result))  # verifies the signature, as the phone would
    server_share.public_key().verify(result.signatures[0], MESSAGE, RSA)
    return server, state, commit


def rsa_benches() -> list[Bench]:
    """A plain RSA-2048 sign, and the server's half of a split one (multiply in, verify)."""
    key = generate_private_key("rsa2048")
    try:
        server, state, commit = rsa_session(hashlib.sha256(MESSAGE).digest())
    except InvalidSignature:
        raise BenchError("a split RSA signature does not verify: the comparison is void") from None
    return [
        Bench(PLAIN_RSA, lambda: key.sign(MESSAGE, RSA)),
        Bench(RSA_SERVER, lambda: server.finish(state, commit), baseline=PLAIN_RSA),
    ]


# --- the run ------------------------------------------------------------------------------------


def measure(benches: Sequence[Bench], *, rounds: int, seconds: float, clock: Clock,
            verbose: bool) -> list[Row]:
    """Alternate over every operation ``rounds`` times; keep the best round of each."""
    runs: dict[str, list[float]] = {b.name: [] for b in benches}
    for round_number in range(1, rounds + 1):
        for bench in benches:
            rate = ops_per_second(bench.op, seconds, clock) * bench.items
            runs[bench.name].append(rate)
            if verbose:
                print(f"round {round_number}: {bench.name}: {rate:,.1f}/s", file=sys.stderr)
    return [Row(b.name, max(runs[b.name]), b.baseline, runs[b.name]) for b in benches]


def ratio(row: Row, rows: Sequence[Row]) -> float | None:
    """Signatures per second of ``row`` over those of its plain baseline."""
    base = next((r for r in rows if r.operation == row.baseline), None)
    return row.per_second / base.per_second if base else None


def versions() -> dict[str, str]:
    """What was measured: the libraries under both sides."""
    from cryptography.hazmat.backends.openssl import backend  # noqa: PLC0415

    return {
        "signcore SM2 and keysplit point arithmetic": f"platform libcrypto, "
                                                      f"{signcore.backend_version()}",
        "signcore RSA, SM4-GCM": f"pyca/cryptography {importlib.metadata.version('cryptography')}"
                                 f", {backend.openssl_version_text()}",
        "python": sys.version.split()[0],
    }


# --- output -------------------------------------------------------------------------------------


def goal_lines(rows: Sequence[Row]) -> list[str]:
    """PASS / BELOW GOAL for the server step, and the batch cost in plain signatures."""
    lines = []
    for row in rows:
        value = ratio(row, rows)
        if row.operation in (RESPOND, DECODE_RESPOND) and value is not None:
            verdict = "PASS" if value >= GOAL else "BELOW GOAL"
            lines.append(f"goal {row.operation} / {row.baseline} >= {GOAL}: {value:.3f} {verdict}")
    costs = {FULL: "a full co-signature", BATCHED: f"each signature of a {BATCH}-digest batch"}
    for row in rows:
        value = ratio(row, rows)
        if row.operation in costs and value:
            lines.append(f"cost: {costs[row.operation]} = {1 / value:.2f} plain SM2 signs")
    return lines


def render(rows: Sequence[Row], info: RunInfo) -> str:
    """The human-readable report: context, the table, the goal and cost lines."""
    lines = [f"medsign keysplit benchmark: CPU {info.cpu} only, {info.seconds:g} s per "
             f"measurement, best of {info.rounds} alternating rounds, {info.clock} time"]
    lines += [f"  {name}: {version}" for name, version in info.versions.items()]
    lines += ["  co-sign sessions without PIN (cached unwrap key) unless the row says so", ""]
    lines.append(f"{'operation':<40}{'signatures/s':>14}{'vs plain':>10}  plain")
    for row in rows:
        value = ratio(row, rows)
        cell = f"{value:.3f}" if value is not None else "-"
        lines.append(f"{row.operation:<40}{row.per_second:>14,.1f}{cell:>10}  "
                     f"{row.baseline or ''}")
    return "\n".join([*lines, "", *goal_lines(rows)])


def as_json(rows: Sequence[Row], info: RunInfo) -> str:
    """Machine-readable results: the same figures, ratios and verdicts."""
    results = [{**asdict(row), "vs_baseline": ratio(row, rows)} for row in rows]
    goals = [{"operation": r.operation, "baseline": r.baseline, "ratio": ratio(r, rows),
              "goal": GOAL, "pass": (ratio(r, rows) or 0.0) >= GOAL}
             for r in rows if r.operation in (RESPOND, DECODE_RESPOND)]
    return json.dumps({**asdict(info), "unit": "signatures per second", "batch": BATCH,
                       "results": results, "goals": goals}, indent=2)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = single_core_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    return parse_single_core(parser, list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clock: Callable[[], float] = time.perf_counter if args.elapsed else time.process_time
    try:
        cpu = pin_to_cpu(args.cpu)
        info = RunInfo(cpu, args.seconds, args.rounds,
                       "elapsed" if args.elapsed else "CPU (user+system)", versions())
        rows = measure([*sm2_benches(), *rsa_benches()], rounds=args.rounds,
                       seconds=args.seconds, clock=clock, verbose=args.verbose)
    except BenchError as exc:
        print(f"bench/keysplit.py: {exc}", file=sys.stderr)
        return 2
    print(as_json(rows, info) if args.json else render(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
