"""PAdES signing throughput and memory: one-page PDFs signed per second with a server key (B-T
with an in-process TSA, and B-B), SM2 and RSA-2048, next to the raw signature rate of the same key
measured in the same run; and the peak memory of a process signing a ~50 MB PDF (issue 7).

What one document costs is one signature by the key plus everything pdfsign and pyHanko do
around it: parsing the PDF, adding the signature field and dictionary in an incremental update,
hashing the /ByteRange, building the CMS signed attributes and SignedData, and for B-T the
RFC 3161 round trip (here in process: ``signcore.tsp`` builds the token with a TSA key of the same
type, as ``tests/pdfsign/tsa.py`` does, so the TSA's own signature counts as well).  Every figure
is set next to ``key.sign(...)`` over the real signed attributes of such a document, measured on
the same pinned core in the same run.  The ratio (documents / raw signatures) shows how much of
the key's speed survives; the goal of issue 7 is absolute, though: **>= 20 one-page documents
per second per core** at B-T, printed with ``PASS`` or ``BELOW GOAL`` for SM2 and RSA.

"Render + sign": when ``pdfsign.templates`` and its sample ``e-prescription.json`` exist, the
sample is filled with fixed values (``Template.load(...).render``) and signed at B-T in its first
signature slot; that row carries the goal, and rendering alone gets a row too.  Without them the
benchmark measures signing only (the goal then applies to the sign-only B-T rows) and says so.

Memory: a child process (``--memory-child``, started by the benchmark) reads a ~50 MB PDF (one
page showing an image XObject of incompressible random bytes), signs it at B-T with an SM2 key
and reports its peak RSS (``VmHWM``; ``ru_maxrss`` of the child as cross-check).  Another child
that only imports pdfsign gives the baseline.  **Goal: peak RSS <= 1.5 x file size + 150 MB**.

Conventions are those of ``bench/ca.py`` (helpers in ``bench/_common.py``): one CPU pinned,
rounds alternating over every operation, best round kept, CPU time (user + system) of this
process by default (``--elapsed``: wall clock).  ``--quick``: one round of 1.5 s.  Every signed
document is validated once before timing (exit code 2 if one does not validate); otherwise the
exit code is 0 whatever the goals say.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import io
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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

import pdfsign
import signcore
from pdfsign import Level, prepare_pdf, sign_pdf, validate_pdf
from signcore import tsp
from signcore.keys import PrivateKey, generate_private_key
from signcore.x509 import Certificate, Extensions, issue_certificate

GOAL_DOCS_PER_SECOND = 20.0
GOAL_RSS_FACTOR = 1.5
GOAL_RSS_EXTRA_MB = 150.0
BIG_PDF_MB = 50
KEY_TYPES = {"sm2": "SM2", "rsa2048": "RSA-2048"}
TSA_POLICY = "2.999.1.2"
MIB = 1024 * 1024


# --- a small PKI and an in-process TSA -----------------------------------------------------------


@dataclass
class Pki:
    """A root, a server (seal) key with its certificate, and a TSA key with its certificate."""

    root: Certificate
    key: PrivateKey
    certificate: Certificate
    tsa_key: PrivateKey
    tsa: Certificate


def build_pki(key_type: str) -> Pki:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
    root_key = generate_private_key(key_type)
    root = issue_certificate(
        subject=f"CN=medsign bench root {KEY_TYPES[key_type]},O=测试医院,C=CN",
        public_key=root_key.public_key(), signer=root_key, not_before=start, not_after=end,
        extensions=Extensions(ca=True, path_length=0,
                              key_usage=frozenset({"key_cert_sign", "crl_sign"})))
    key, tsa_key = generate_private_key(key_type), generate_private_key(key_type)
    certificate = issue_certificate(
        subject="CN=测试医院 电子处方专用章,O=测试医院,C=CN", public_key=key.public_key(),
        signer=root_key, issuer=root, not_before=start, not_after=end,
        extensions=Extensions(ca=False,
                              key_usage=frozenset({"digital_signature", "non_repudiation"})))
    tsa = issue_certificate(
        subject="CN=medsign bench TSA,O=测试医院,C=CN", public_key=tsa_key.public_key(),
        signer=root_key, issuer=root, not_before=start, not_after=end,
        extensions=Extensions(ca=False, key_usage=frozenset({"digital_signature"}),
                              extended_key_usage=("time_stamping",),
                              extended_key_usage_critical=True))
    return Pki(root, key, certificate, tsa_key, tsa)


def in_process_tsa(pki: Pki) -> Callable[[bytes], bytes]:
    """TimeStampReq DER -> TimeStampResp DER, the token signed by ``pki``'s TSA key."""
    serials = itertools.count(1)

    def answer(request_der: bytes) -> bytes:
        request = tsp.load_request(request_der)
        token = tsp.build_token(
            hash_algorithm=request.hash_algorithm, message_imprint=request.message_imprint,
            signer=pki.tsa_key, certificate=pki.tsa, serial_number=next(serials),
            policy=TSA_POLICY, nonce=request.nonce,
            extra_certificates=(pki.root,) if request.cert_req else ())
        return tsp.build_response(token)

    return answer


# --- test documents ------------------------------------------------------------------------------


def write_pdf(out: io.BufferedIOBase | io.BytesIO, text: str,
              image: tuple[int, int] | None = None) -> None:
    """A PDF 1.7 with one A4 page showing ``text`` and, with ``image`` (width, height), an RGB
    image XObject of that size filled with random bytes (incompressible: stored as is)."""
    draw = b"q 595 0 0 842 0 0 cm /Im1 Do Q " if image else b""
    content = draw + f"BT /F1 14 Tf 72 770 Td ({text}) Tj ET".encode("ascii")
    xobject = b" /XObject << /Im1 5 0 R >>" if image else b""
    objects: list[bytes | tuple[bytes, int]] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 "
        b"4 0 R >>" + xobject + b" >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
         b"/BitsPerComponent 8 /Length %d >>" % (image[0], image[1], 3 * image[0] * image[1]),
         3 * image[0] * image[1]) if image else b"<< >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    offsets = []
    position = 0

    def put(data: bytes) -> None:
        nonlocal position
        out.write(data)
        position += len(data)

    put(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    for number, body in enumerate(objects, start=1):
        offsets.append(position)
        if isinstance(body, tuple):
            header, length = body
            put(b"%d 0 obj\n" % number + header + b"\nstream\n")
            for chunk in range(0, length, 4 * MIB):
                put(os.urandom(min(4 * MIB, length - chunk)))
            put(b"\nendstream\nendobj\n")
        else:
            put(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = position
    put(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        put(b"%010d 00000 n \n" % offset)
    put(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, xref))


def one_page_pdf() -> bytes:
    out = io.BytesIO()
    write_pdf(out, "e-prescription 0001")
    return out.getvalue()


# --- rendering (when pdfsign.templates exists) ---------------------------------------------------

SAMPLE_TEMPLATE = Path(pdfsign.__file__).parent / "templates" / "e-prescription.json"


SAMPLE_VALUES = {
    "hospital_name": "测试医院", "prescription_no": "RX-2026-000001", "date": "2026-11-27",
    "patient_name": "张三", "sex": "男", "age": 42, "department": "内科", "urgent": False,
    "diagnosis": "上呼吸道感染", "amount": 36.5,
    "drugs": [{"name": "阿莫西林胶囊", "specification": "0.25g x 24", "dose": "0.5g",
               "usage": "口服 每日三次", "quantity": "2盒"},
              {"name": "布洛芬缓释胶囊", "specification": "0.3g x 20", "dose": "0.3g",
               "usage": "口服 必要时", "quantity": "1盒"}],
}


def renderer() -> tuple[Callable[[], bytes] | None, str, str]:
    """A callable rendering the sample e-prescription (or None), what the run measures, and
    the signature field to sign."""
    if importlib.util.find_spec("pdfsign.templates") is None:
        return None, "sign only: pdfsign.templates does not exist yet (no rendering measured)", ""
    if not SAMPLE_TEMPLATE.is_file():
        return (None, f"sign only: no sample template at {SAMPLE_TEMPLATE} (no rendering "
                "measured)", "")
    try:
        from pdfsign.templates import Template  # noqa: PLC0415

        template = Template.load(SAMPLE_TEMPLATE)
        template.render(SAMPLE_VALUES)
        field = template.signatures[0].name if template.signatures else "Signature1"
    except Exception as exc:  # the templates are new: say why, measure signing only
        return None, f"sign only: rendering the sample template failed ({exc!r})", ""
    return (lambda: template.render(SAMPLE_VALUES)), (
        f"render + sign: {SAMPLE_TEMPLATE.name} (template {template.id} v{template.version}) "
        f"filled with fixed values, signed in its empty field {field!r}"), field


# --- what is measured ----------------------------------------------------------------------------


@dataclass
class PdfBench(Bench):
    """A PDF operation to time."""

    goal: bool = False  # the issue's absolute goal applies (documents per second per core)


def raw_name(key_type: str) -> str:
    return f"{KEY_TYPES[key_type]} raw sign (server key)"


def check(signed: bytes, pki: Pki, level: Level, what: str) -> None:
    """The signed document must validate: intact, valid, trusted, timestamp good for B-T."""
    reports = validate_pdf(signed, [pki.root])
    if len(reports) != 1:
        raise BenchError(f"{what}: {len(reports)} signatures found instead of 1")
    report = reports[0]
    if not (report.intact and report.valid and report.trusted) or report.level != level.value:
        raise BenchError(f"{what} does not validate: {report}")
    if level is Level.B_T and not report.timestamp_ok:
        raise BenchError(f"{what}: the signature timestamp does not validate: {report}")


def pdf_benches(key_type: str, document: bytes, sizes: dict[str, int],
                render: Callable[[], bytes] | None = None,
                field: str = "Signature1") -> list[PdfBench]:
    """Raw sign, sign at B-B and at B-T for one key type, each checked once before timing."""
    pki = build_pki(key_type)
    tsa = in_process_tsa(pki)
    chain = [pki.root]
    label = KEY_TYPES[key_type]
    signed_attributes = prepare_pdf(document, pki.certificate, chain=chain).signed_attributes
    sizes[f"{label} signed attributes bytes"] = len(signed_attributes)

    def sign_bb() -> bytes:
        return sign_pdf(document, pki.key, pki.certificate, chain=chain, level=Level.B_B)

    def sign_bt() -> bytes:
        return sign_pdf(document, pki.key, pki.certificate, chain=chain, level=Level.B_T,
                        timestamper=tsa)

    for level, op in ((Level.B_B, sign_bb), (Level.B_T, sign_bt)):
        signed = op()
        check(signed, pki, level, f"a {label} {level.value} signature")
        sizes[f"{label} {level.value} signed PDF bytes"] = len(signed)
    raw = raw_name(key_type)
    key = pki.key
    benches = [
        PdfBench(raw, lambda: key.sign(signed_attributes)),
        PdfBench(f"{label} sign one-page PDF, B-B", sign_bb, baseline=raw),
        PdfBench(f"{label} sign one-page PDF, B-T", sign_bt, baseline=raw, goal=render is None),
    ]
    if render is not None:
        make = render

        def render_sign_bt() -> bytes:
            return sign_pdf(make(), pki.key, pki.certificate, chain=chain, level=Level.B_T,
                            timestamper=tsa, field=field)

        signed = render_sign_bt()
        check(signed, pki, Level.B_T, f"a rendered {label} B-T signature")
        sizes[f"{label} rendered B-T signed PDF bytes"] = len(signed)
        benches.append(PdfBench(f"{label} render + sign e-prescription, B-T", render_sign_bt,
                             baseline=raw, goal=True))
    return benches


# --- memory: children ----------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(path: str | None) -> int:
    """Run in a child: sign the PDF at ``path`` (SM2, B-T) or, without one, nothing; print the
    peak RSS as JSON."""
    result: dict[str, float] = {}
    if path is not None:
        pki = build_pki("sm2")
        start = time.perf_counter()
        data = Path(path).read_bytes()
        signed = sign_pdf(data, pki.key, pki.certificate, chain=[pki.root], level=Level.B_T,
                          timestamper=in_process_tsa(pki))
        result["seconds"] = time.perf_counter() - start
        result["signed_bytes"] = len(signed)
        if signed[:len(data)] != data:
            print("the signed PDF is not an incremental update of the input", file=sys.stderr)
            return 2
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))
    return 0


def run_child(path: str | None) -> dict[str, float]:
    command = [sys.executable, os.path.realpath(__file__), "--memory-child"]
    if path is not None:
        command.append(path)
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise BenchError(f"the memory child failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, float] = json.loads(done.stdout)
    # Cross-check: the largest child so far, as the kernel counted it (KiB on Linux).
    result["ru_maxrss_children_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return result


@dataclass
class Memory:
    file_mib: float
    baseline_rss_mib: float
    peak_rss_mib: float
    children_max_rss_mib: float
    sign_seconds: float
    limit_mib: float

    @property
    def passed(self) -> bool:
        return self.peak_rss_mib <= self.limit_mib


def measure_memory(megabytes: float) -> Memory:
    """Sign a ~``megabytes`` MB PDF in a child; its peak RSS, and a bare child's."""
    width = 4096
    height = max(1, round(megabytes * MIB / (3 * width)))
    with tempfile.TemporaryDirectory(prefix="medsign-bench-pdf-") as directory:
        path = os.path.join(directory, "big.pdf")
        with open(path, "wb") as out:
            write_pdf(out, "a large scanned record", image=(width, height))
        size = os.path.getsize(path)
        baseline = run_child(None)
        signing = run_child(path)
    file_mib = size / MIB
    return Memory(file_mib=file_mib, baseline_rss_mib=baseline["peak_rss_mib"],
                  peak_rss_mib=signing["peak_rss_mib"],
                  children_max_rss_mib=signing["ru_maxrss_children_mib"],
                  sign_seconds=signing["seconds"],
                  limit_mib=GOAL_RSS_FACTOR * file_mib + GOAL_RSS_EXTRA_MB)


# --- output --------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    cpu: int
    seconds: float
    rounds: int
    clock: str
    scope: str
    versions: dict[str, str]
    sizes: dict[str, int]


def versions() -> dict[str, str]:
    from cryptography.hazmat.backends.openssl import backend  # noqa: PLC0415

    return {
        "SM2": f"signcore on the platform libcrypto, {signcore.backend_version()}",
        "RSA-2048": f"pyca/cryptography {importlib.metadata.version('cryptography')}, "
                    f"{backend.openssl_version_text()}",
        "pyHanko": importlib.metadata.version("pyhanko"),
        "python": sys.version.split()[0],
    }


def goal_lines(rows: Sequence[Row], benches: Sequence[PdfBench]) -> list[str]:
    goals = {b.name for b in benches if b.goal}
    return [f"goal {row.operation}: {row.per_second:.1f} documents/s per core "
            f"(>= {GOAL_DOCS_PER_SECOND:g}): "
            f"{'PASS' if row.per_second >= GOAL_DOCS_PER_SECOND else 'BELOW GOAL'}"
            for row in rows if row.operation in goals]


def memory_lines(memory: Memory | None) -> list[str]:
    if memory is None:
        return ["memory: skipped (--no-memory)"]
    m = memory
    return [
        f"memory: signing a {m.file_mib:.1f} MiB PDF (SM2, B-T) in a child took "
        f"{m.sign_seconds:.2f} s wall clock",
        f"  peak RSS (VmHWM) {m.peak_rss_mib:.1f} MiB; a child that only imported pdfsign: "
        f"{m.baseline_rss_mib:.1f} MiB; above it: {m.peak_rss_mib - m.baseline_rss_mib:.1f} MiB "
        f"= {(m.peak_rss_mib - m.baseline_rss_mib) / m.file_mib:.2f} x the file; "
        f"ru_maxrss of the children {m.children_max_rss_mib:.1f} MiB",
        f"goal peak RSS <= {GOAL_RSS_FACTOR:g} x {m.file_mib:.1f} + {GOAL_RSS_EXTRA_MB:g} = "
        f"{m.limit_mib:.1f} MiB: {m.peak_rss_mib:.1f} MiB: "
        f"{'PASS' if m.passed else 'BELOW GOAL'}",
    ]


def render(rows: Sequence[Row], benches: Sequence[PdfBench], info: RunInfo,
           memory: Memory | None) -> str:
    lines = [f"medsign PDF signing benchmark: CPU {info.cpu} only, {info.seconds:g} s per "
             f"measurement, best of {info.rounds} alternating rounds, {info.clock} time",
             f"  {info.scope}"]
    lines += [f"  {name}: {version}" for name, version in info.versions.items()]
    lines += ["  sizes: " + ", ".join(f"{k} {v}" for k, v in info.sizes.items()), ""]
    lines += ratio_table(rows, 40)
    lines += ["", *goal_lines(rows, benches), *memory_lines(memory)]
    return "\n".join(lines)


def as_json(rows: Sequence[Row], info: RunInfo, memory: Memory | None) -> str:
    results = [{**asdict(row), "vs_raw_sign": ratio(row, rows)} for row in rows]
    return json.dumps({**asdict(info), "unit": "documents (or signatures) per second",
                       "goal_documents_per_second": GOAL_DOCS_PER_SECOND, "results": results,
                       "memory": {**asdict(memory), "passed": memory.passed} if memory else None},
                      indent=2, ensure_ascii=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = single_core_arguments(__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one round of 1.5 s")
    parser.add_argument("--megabytes", type=float, default=BIG_PDF_MB,
                        help="size of the large PDF for the memory figure")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory figure")
    parser.add_argument("--memory-child", nargs="?", const="", default=None,
                        help=argparse.SUPPRESS)
    args = parse_single_core(parser, list(argv) if argv is not None else None)
    if args.quick:
        args.seconds, args.rounds = 1.5, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child is not None:
        return memory_child(args.memory_child or None)
    clock: Callable[[], float] = time.perf_counter if args.elapsed else time.process_time
    try:
        cpu = pin_to_cpu(args.cpu)
        render_op, scope, field = renderer()
        document = one_page_pdf()
        sizes = {"one-page PDF bytes": len(document)}
        benches = [b for key_type in KEY_TYPES
                   for b in pdf_benches(key_type, document, sizes, render_op, field)]
        if render_op is not None:
            sizes["rendered e-prescription bytes"] = len(render_op())
            benches.append(PdfBench("render e-prescription (no signing)", render_op))
        info = RunInfo(cpu, args.seconds, args.rounds,
                       "elapsed" if args.elapsed else "CPU (user+system)", scope, versions(),
                       sizes)
        rows = measure(benches, rounds=args.rounds, seconds=args.seconds, clock=clock,
                       verbose=args.verbose)
        memory = None if args.no_memory else measure_memory(args.megabytes)
    except BenchError as exc:
        print(f"bench/pdf.py: {exc}", file=sys.stderr)
        return 2
    print(as_json(rows, info, memory) if args.json else render(rows, benches, info, memory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
