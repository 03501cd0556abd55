#!/usr/bin/env python3
"""Benchmark of the built-in CA: certificates issued and OCSP responses signed per second, each
set next to the raw signature rate of the same CA key.

Issuing a certificate and answering an OCSP request each cost one signature by the CA key plus
everything around it: for issuance, checking the CSR's proof of possession, the profile's checks
on the subject, building the extensions and the TBSCertificate, DER encoding and storing the
record (``BuiltinCa.issue`` with a :class:`~ca_client.builtin.MemoryRepository`); for OCSP,
parsing the request, finding the CA its CertID names, looking the serial number up, building
and encoding the BasicOCSPResponse (``OcspResponder.respond``).  What matters is how much of the
raw signature rate survives that work, not operations per second on this machine, so every
figure is set next to ``key.sign(...)`` by the same CA key (SM2, and RSA-3072 as
``generate_hierarchy`` makes it) over data of the size of a real TBSCertificate, measured in the
same run on the same core.  The ratios (issuance / raw sign, OCSP / raw sign) are printed; the
closer to 1, the less the CA adds to its key's work.  There is no goal line: the ratios are
context for capacity planning (a hospital issues a few thousand certificates a year but may
answer OCSP for every signature verified).

Method.  Everything is made before the timed loops: the two hierarchies, 64 CSRs per key type
(signed by fresh SM2 or RSA-2048 leaf keys, cycled through by the issuance loop), a certificate
per CA and an OCSP request for it with a nonce.  Before timing, each result is checked (an issued
certificate carries the CSR's key and verifies under the CA key; an OCSP answer is successful,
says "good", echoes the nonce and verifies), so a fast but wrong path cannot look good.
Conventions are those of ``bench/crypto.py`` and ``bench/keysplit.py`` (shared helpers in
``bench/_common.py``): one CPU pinned, rounds alternate over every operation and the best round
of each is kept.  Both sides are Python in this process, so the default clock is this process's
CPU time, user and system; ``--elapsed`` switches to wall-clock time.

Exit code 0 whatever the ratios; 2 when a result cannot be trusted (a certificate or an OCSP
answer that does not check) or the CPU is unavailable.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from _common import (
    Bench,
    BenchError,
    Row,
    measure,
    parse_single_core,
    pin_to_cpu,
    ratio,
    ratio_table,
    single_core_arguments,
)

import signcore
from ca_client import BuiltinCa, MemoryRepository, OcspResponder, SubjectInfo, generate_hierarchy
from signcore import ocsp
from signcore.errors import SigncoreError
from signcore.keys import generate_private_key
from signcore.x509 import CertificateRequest, build_csr

CSRS = 64  # made before timing, cycled through by the issuance loop
PROFILE = "doctor-signing"
DOCTOR = SubjectInfo(common_name="王五", organization="测试医院", department="儿科",
                     title="主治医师", unique_id="UABCDEF0123456789")
LEAF_KEYS = {"sm2": "sm2", "rsa": "rsa2048"}
LABELS = {"sm2": "SM2", "rsa": "RSA-3072"}




@dataclass
class RunInfo:
    """The conditions of a run, printed with its results."""

    cpu: int
    seconds: float
    rounds: int
    clock: str
    versions: dict[str, str]
    sizes: dict[str, int]


# --- what is measured ---------------------------------------------------------------------------


def raw_name(algorithm: str) -> str:
    return f"{LABELS[algorithm]} raw sign (CA key)"


def csrs(algorithm: str) -> list[CertificateRequest]:
    """CSRs for fresh leaf keys of the hierarchy's type (the CA refuses other key types)."""
    return [build_csr(generate_private_key(LEAF_KEYS[algorithm]), "CN=medsign enrollment")
            for _ in range(CSRS)]


def ca_benches(algorithm: str, sizes: dict[str, int]) -> list[Bench]:
    """Raw sign, issuance and OCSP for one hierarchy, each checked once before timing."""
    h = generate_hierarchy(algorithm, "测试医院")
    ca = BuiltinCa(f"{algorithm}-bench", h.issuing, h.issuing_key, MemoryRepository(),
                   chain=[h.root])
    requests = csrs(algorithm)
    record = ca.issue(PROFILE, DOCTOR, csr=requests[0])
    try:
        record.certificate.verify_signature(ca.certificate.public_key())
    except SigncoreError as exc:
        raise BenchError(f"an issued {algorithm} certificate does not verify: {exc}") from None
    if record.certificate.public_key() != requests[0].public_key():
        raise BenchError(f"an issued {algorithm} certificate is not for the CSR's key")
    tbs = record.certificate.tbs.dump()  # the data a raw sign signs: a real TBSCertificate

    cert_id = ocsp.CertId.of(record.serial_number, ca.certificate)
    request = ocsp.build_request([cert_id], nonce=True)
    responder = OcspResponder([ca])
    check_ocsp(responder.respond(request.der), ca, cert_id, request.nonce, algorithm)
    sizes[f"{algorithm} TBSCertificate bytes"] = len(tbs)
    sizes[f"{algorithm} OCSP response bytes"] = len(responder.respond(request.der))

    key = h.issuing_key
    cycle = itertools.cycle(requests)

    def issue() -> object:
        return ca.issue(PROFILE, DOCTOR, csr=next(cycle))

    raw = raw_name(algorithm)
    return [
        Bench(raw, lambda: key.sign(tbs)),
        Bench(f"{LABELS[algorithm]} issue certificate", issue, baseline=raw),
        Bench(f"{LABELS[algorithm]} OCSP response (nonce)",
              lambda: responder.respond(request.der), baseline=raw),
    ]


def check_ocsp(der: bytes, ca: BuiltinCa, cert_id: ocsp.CertId, nonce: bytes | None,
               algorithm: str) -> None:
    """The answer must be successful, good for ``cert_id``, echo the nonce and verify."""
    try:
        response = ocsp.load_response(der)
        response.verify(ca.certificate)
    except SigncoreError as exc:
        raise BenchError(f"the {algorithm} OCSP answer does not check: {exc}") from None
    single = response.status_of(cert_id)
    if single is None or single.status is not ocsp.CertStatus.GOOD or response.nonce != nonce:
        raise BenchError(f"the {algorithm} OCSP answer is not 'good' with the request's nonce")


# --- the run ------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """What was measured: the libraries under the CA keys."""
    from cryptography.hazmat.backends.openssl import backend  # noqa: PLC0415

    return {
        "SM2 (CA key)": f"signcore on the platform libcrypto, {signcore.backend_version()}",
        "RSA-3072 (CA key)": f"pyca/cryptography {importlib.metadata.version('cryptography')}, "
                             f"{backend.openssl_version_text()}",
        "asn1crypto": importlib.metadata.version("asn1crypto"),
        "python": sys.version.split()[0],
    }


# --- output -------------------------------------------------------------------------------------


def render(rows: Sequence[Row], info: RunInfo) -> str:
    """The human-readable report: context, the table, one ratio line per CA operation."""
    lines = [f"medsign CA benchmark: CPU {info.cpu} only, {info.seconds:g} s per measurement, "
             f"best of {info.rounds} alternating rounds, {info.clock} time"]
    lines += [f"  {name}: {version}" for name, version in info.versions.items()]
    lines += ["  sizes: " + ", ".join(f"{k} {v}" for k, v in info.sizes.items()), ""]
    lines += ratio_table(rows, 36)
    return "\n".join(lines)


def as_json(rows: Sequence[Row], info: RunInfo) -> str:
    """Machine-readable results: the same figures and ratios."""
    results = [{**asdict(row), "vs_raw_sign": ratio(row, rows)} for row in rows]
    return json.dumps({**asdict(info), "unit": "operations per second", "results": results},
                      indent=2, ensure_ascii=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = single_core_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    return parse_single_core(parser, list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clock: Callable[[], float] = time.perf_counter if args.elapsed else time.process_time
    try:
        cpu = pin_to_cpu(args.cpu)
        sizes: dict[str, int] = {}
        benches = [b for algorithm in ("sm2", "rsa") for b in ca_benches(algorithm, sizes)]
        info = RunInfo(cpu, args.seconds, args.rounds,
                       "elapsed" if args.elapsed else "CPU (user+system)", versions(), sizes)
        rows = measure(benches, rounds=args.rounds, seconds=args.seconds, clock=clock,
                       verbose=args.verbose)
    except BenchError as exc:
        print(f"bench/ca.py: {exc}", file=sys.stderr)
        return 2
    print(as_json(rows, info) if args.json else render(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
