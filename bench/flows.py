#!/usr/bin/env python3
"""Benchmark of the signing flows over loopback HTTP: phones co-signing sign requests, seals on
batches of documents, RFC 3161 time stamps, each set next to a reference measured in the same run.

One ``medsign serve`` (gunicorn gthread, 2 workers x the configuration's threads by default,
SQLite in a temporary directory — or, with ``--database postgresql``, a throwaway durable
PostgreSQL cluster on loopback, the test suite's — unsealed from a passphrase file) answers on
loopback. Its database is prepared directly before it starts: an SM2 built-in CA, an
organization-seal and a TSA certificate with server-held keys, 50 active doctors
(``SignerService``), one application credential for the hospital's backend. The TSA only issues
while its clock agrees with a time source (``appliance.services.timesync``; no source configured
means "not synchronized"), so ``[tsa] ntp_servers`` points at a small SNTP responder this script
runs on loopback, serving this machine's own clock (the check is cached 15 s per worker, so it
costs nothing measurable).

1. **Co-signatures.**  Each simulated phone (one thread and one keep-alive connection each,
   keysplit's reference phone ``keysplit.phone``, every request signed with its device key) is
   bound to its doctor over the API: the backend asks for an activation code, the phone
   activates, runs co-keygen and co-signs its enrollment (certificate from the built-in CA).
   Before each timed round the backend posts sign requests (one document each, cms-detached, one
   signer; not timed, their rate is reported).  Then every phone loops: GET its pending tasks,
   POST /api/v1/mobile/sign for the oldest, cosign.commit (with the PIN), cosign.result.
   Reported: co-signatures completed per second and the p50/p99 latency of one co-signature
   (the sign call and the two messages, with the phone's own math).  Reference: **the appliance
   in process, server side**: the same app (``appliance.wsgi.build``) driven through
   ``falcon.testing.TestClient`` by the same phone code in this process, one thread on one
   pinned CPU; the CPU time spent inside the app per co-signature, the phone's math timed apart.
   Also shown: the same in-process loop in elapsed time (its waits for the disk included),
   keysplit's protocol alone (bench/keysplit.py's full co-signature with PIN), one phone
   alone over HTTP (the latency of a co-signature without queueing behind 49 others), and the
   50 phones at a human pace: each doctor waits an exponential think time before the next
   signature, (a) so that together they offer half the closed loop's rate, and (b) at a busy
   clinic's pace, one signature every 10 s per doctor on average (5/s for 50 doctors; real
   outpatient rates are one every minute or two), a load that does not grow with the machine.
2. **Seals.**  POST /api/v1/seal with batches of documents (cms-detached); seal signatures per
   second next to the raw SM2 signature rate (``SM2PrivateKey.sign``) on one pinned CPU, and
   ``SealService.apply`` in process.
3. **TSA.**  POST /tsa with RFC 3161 queries (SM3 imprint, nonce, certReq); tokens per second
   next to ``TsaService.stamp`` in process on one pinned CPU.

The client runs in this process and shares the machine's CPUs with the server, so the CPU time
of the server's processes and of this client is read for every HTTP window and printed per
operation, with what the rest of the machine used meanwhile: the reader can tell whether the
client (or another program) took the CPUs the server needed.  Rounds
alternate (reference, HTTP, reference, HTTP, ...) and the best round of each is kept.

Goals: co-signatures over HTTP >= 0.3 x the appliance in process (server side); seal
signatures over HTTP >= 0.5 x raw SM2 signs.  The co-signature p99 latency is compared with
100 ms, an absolute figure: the issue names no load, and a closed loop's latency is only
phones / rate (Little's law), so each load above is printed with its p99.  Exit code
0 whatever the figures; 2 when the run itself fails (the server does not start, a request is
refused, a signature or a time stamp does not verify).  The server is started without bench/
on its path: bench/keysplit.py would shadow the keysplit package there.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import http.client
import importlib.util
import json
import math
import os
import random
import resource
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import _common
from _common import BenchError, ops_per_second, pin_to_cpu


def _bench_module(name: str) -> Any:
    """bench/<name>.py imported as ``_bench_<name>`` (from the path, not by name)."""
    spec = importlib.util.spec_from_file_location(
        f"_bench_{name}", os.path.join(_common.BENCH_DIR, f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# bench/keysplit.py gives the protocol-only reference.  It is named like the keysplit package
# and drops bench/ from sys.path when it is imported, which this script needs too before
# anything imports the package: so it comes first, under another name.
keysplit_bench = _bench_module("keysplit")
# bench/api.py: the fresh installation (KEK sealed with a passphrase, auto-unseal) and the
# server launcher, shared rather than copied.
api_bench = _bench_module("api")

import falcon.testing  # noqa: E402

from appliance import config as config_module  # noqa: E402
from appliance.api import device_signing, hmac_signing  # noqa: E402
from appliance.config import Config, ServerConfig  # noqa: E402
from appliance.custody import KekStore, KeyHolder  # noqa: E402
from appliance.server import _nonce_table  # noqa: E402
from appliance.services.applications import ApplicationService  # noqa: E402
from appliance.services.ca import CaService  # noqa: E402
from appliance.services.channels import ChannelService  # noqa: E402
from appliance.services.seals import Document, SealService  # noqa: E402
from appliance.services.signers import (  # noqa: E402
    ACTIVE,
    CliActor,
    SignerService,
    id_check_digit,
    validate,
)
from appliance.services.timesync import NTP_EPOCH_OFFSET, ClockCheck  # noqa: E402
from appliance.services.tsa import TsaService  # noqa: E402
from appliance.storage import Database  # noqa: E402
from appliance.wsgi import build  # noqa: E402
from ca_client import SubjectInfo  # noqa: E402
from keysplit import messages  # noqa: E402
from keysplit.phone import PhoneCosigner, PhoneKeygen, PhoneShare  # noqa: E402
from signcore import cms, tsp  # noqa: E402
from signcore.hashes import HashAlgorithm  # noqa: E402
from signcore.keys import generate_private_key  # noqa: E402
from signcore.sm2 import SM2PrivateKey  # noqa: E402
from signcore.x509 import Certificate  # noqa: E402

COSIGN_GOAL = 0.3
SEAL_GOAL = 0.5
P99_LIMIT_MS = 100.0
PIN = "246810"
ORGANIZATION = "测试医院"
SCOPES = ["sign:request", "sign:read", "signer:write", "seal"]
PRESCRIPTION = ("处方 RX-{n:06d}：阿莫西林胶囊 0.25g×24 粒，每次 0.5g，每日三次；"
                "头孢克肟片 0.1g×6 片，每次 0.1g，每日两次。医师：{name}\n")
SEAL_DOCUMENT = ("检验报告 LIS-{n:06d}：血常规 WBC 6.1×10^9/L，RBC 4.52×10^12/L，"
                 "HGB 138 g/L，PLT 221×10^9/L。\n") * 4
INPROCESS_PHONES = 4
DATABASES = {"sqlite": "SQLite (WAL, synchronous=FULL) in a temporary directory",
             "postgresql": "PostgreSQL (fsync on), a throwaway cluster on loopback"}
ACTOR = CliActor("bench")

Answer = tuple[int, str, bytes]  # status, content type, body
Transport = Callable[[str, str, bytes, dict[str, str]], Answer]


# ---------------------------------------------------------------------------------------------
# A time source for the TSA's clock check


class SntpResponder:
    """A loopback SNTP server (RFC 4330 server mode, stratum 10) answering with this machine's
    own clock: the time source the benchmark's TSA checks its clock against."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bench-sntp", daemon=True)
        self._thread.start()

    @staticmethod
    def _stamp(seconds: float) -> tuple[int, int]:
        whole = int(seconds)
        return whole + NTP_EPOCH_OFFSET, int((seconds - whole) * 2**32) & 0xFFFFFFFF

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            received = time.time()
            if len(data) < 48 or data[0] & 7 != 3:  # client mode only
                continue
            reply = bytearray(48)
            reply[0], reply[1], reply[2], reply[3] = (4 << 3) | 4, 10, data[2], 0xEC
            reply[24:32] = data[40:48]  # origin: the client's transmit time stamp
            struct.pack_into("!II", reply, 32, *self._stamp(received))
            struct.pack_into("!II", reply, 40, *self._stamp(time.time()))
            with contextlib.suppress(OSError):
                self._sock.sendto(bytes(reply), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


# ---------------------------------------------------------------------------------------------
# The hospital: an installation prepared directly in its database


@dataclasses.dataclass
class Hospital:
    installation: Any  # bench/api.py's Installation
    config: Config
    key_id: str  # the backend's application credential
    secret: str
    signer_ids: list[int]
    root: Certificate  # the SM2 hierarchy, to verify what comes back
    issuing: Certificate


def _doctor(index: int) -> dict[str, str]:
    first17 = f"11010519800101{index:03d}"
    return {"kind": "doctor", "name": f"医生{chr(0x4E00 + index)}",
            "id_number": first17 + id_check_digit(first17), "department": "内科",
            "title": "主治医师"}


def make_hospital(directory: Path, *, workers: int, threads: int, signers: int,
                  ntp_port: int, database_url: str | None = None) -> Hospital:
    """A fresh installation with a CA, a seal and a TSA certificate, ``signers`` active doctors
    and the backend's credential; SQLite in ``directory`` unless ``database_url`` is given."""
    directory.mkdir(parents=True, exist_ok=True)
    installation = api_bench.make_installation(directory, workers, threads, database_url)
    with installation.config_file.open("a") as out:
        out.write(f'\n[tsa]\nntp_servers = "127.0.0.1:{ntp_port}"\n')
    config = config_module.load(installation.config_file, env={})
    database = Database(config.database_url)
    try:
        holder = KeyHolder(KekStore(database))
        holder.unseal(passphrase=api_bench.PASSPHRASE)
        ca = CaService(database, holder, public_url=config.server.public_url)
        ca.initialize(ACTOR, "sm2", ORGANIZATION)
        channels = ChannelService(database, holder, ca)
        for profile, name in (("organization-seal", "电子印章"), ("tsa", "时间戳服务")):
            channels.enroll_server_key(ACTOR, profile=profile, algorithm="sm2",
                                       subject=SubjectInfo(common_name=ORGANIZATION + name,
                                                           organization=ORGANIZATION))
        credential, secret = ApplicationService(database, holder, config.security).create(
            None, name="bench-his", scopes=SCOPES)
        service = SignerService(database, holder)
        records = [service.prepare(holder.keyring(), validate(_doctor(i)))
                   for i in range(signers)]
        ids = service.insert_many(records, ACTOR, status=ACTIVE)
        if not all(isinstance(i, int) for i in ids):
            raise BenchError(f"signers were refused: {ids}")
        authority = ca.active_authority("sm2")
    finally:
        database.dispose()
    return Hospital(installation, config, credential.key_id, secret,
                    [int(i) for i in ids if isinstance(i, int)], authority.root,
                    authority.certificate)


# ---------------------------------------------------------------------------------------------
# Transports: loopback HTTP, or the app in this process


class HttpTransport:
    """One keep-alive connection; reconnects once when the server closed an idle one."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None

    def __call__(self, method: str, target: str, body: bytes,
                 headers: dict[str, str]) -> Answer:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
            try:
                self._conn.request(method, target, body=body or None, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
                continue
            return response.status, response.getheader("Content-Type", ""), data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class FalconTransport:
    """The app in this process (``falcon.testing``); counts the CPU time spent inside it."""

    def __init__(self, client: falcon.testing.TestClient) -> None:
        self._client = client
        self.seconds = 0.0

    def __call__(self, method: str, target: str, body: bytes,
                 headers: dict[str, str]) -> Answer:
        started = time.process_time()
        result = self._client.simulate_request(method, target, body=body or None,
                                               headers=headers)
        self.seconds += time.process_time() - started
        return result.status_code, result.headers.get("content-type", ""), result.content


def _answer(method: str, target: str, answer: Answer) -> Any:
    status, kind, content = answer
    if status >= 400:
        raise BenchError(f"{method} {target}: {status} {content[:400]!r}")
    return json.loads(content) if content and kind.startswith("application/json") else content


class Backend:
    """The hospital's system: HMAC-signed requests with the application credential."""

    def __init__(self, transport: Transport, hospital: Hospital) -> None:
        self.transport, self._hospital = transport, hospital

    def call(self, method: str, target: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        headers = hmac_signing.sign_request(method, target, key_id=self._hospital.key_id,
                                            secret=self._hospital.secret, body=data)
        if data:
            headers["Content-Type"] = "application/json"
        return _answer(method, target, self.transport(method, target, data, headers))

    def activation_code(self, signer_id: int) -> str:
        answer = self.call("POST", f"/api/v1/signers/{signer_id}/activation-codes", {})
        return str(answer["code"])

    def sign_request(self, signer_id: int, number: int) -> str:
        content = PRESCRIPTION.format(n=number, name=signer_id).encode()
        answer = self.call("POST", "/api/v1/sign-requests", {
            "title": f"门诊处方 RX-{number:06d}", "format": "cms-detached",
            "documents": [{"name": f"rx-{number:06d}.txt", "media_type": "text/plain",
                           "content": base64.b64encode(content).decode()}],
            "signers": [{"signer_id": signer_id, "action": "sign"}]})
        return str(answer["id"])


class Phone:
    """keysplit's reference phone speaking the mobile API; every request device-signed."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.device_key = SM2PrivateKey.generate()
        self.device_id: str | None = None
        self.share: PhoneShare | None = None

    def call(self, method: str, target: str, body: Any = None, *,
             raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else b"")
        headers = {"Content-Type": "application/json"} if data else {}
        if self.device_id is not None:
            headers.update(device_signing.sign_request(method, target, device_id=self.device_id,
                                                       key=self.device_key, body=data))
        return _answer(method, target, self.transport(method, target, data, headers))

    def activate(self, code: str) -> None:
        spki = base64.b64encode(self.device_key.public_key().to_der()).decode()
        answer = self.call("POST", "/api/v1/mobile/activate",
                           {"code": code, "device_public_key": spki, "device_name": "bench"})
        self.device_id = answer["device"]["id"]

    def enroll(self) -> None:
        """Co-keygen, then co-sign the enrollment's proof of possession."""
        opened = self.call("POST", "/api/v1/mobile/keys")
        keygen = PhoneKeygen(PIN)
        commit = keygen.commit(messages.decode(json.dumps(opened["message"]),
                                               messages.KeygenOffer))
        answer = self._send(opened["session"], commit)
        self.share = keygen.finish(messages.decode(json.dumps(answer["message"]),
                                                   messages.KeygenResult))
        self.cosign(answer["next"])

    def _send(self, session: str, message: messages.Message) -> Any:
        return self.call("POST", f"/api/v1/mobile/sessions/{session}", raw=message.encode())

    def cosign(self, opened: dict[str, Any]) -> tuple[bytes, ...]:
        assert self.share is not None
        cosigner = PhoneCosigner(self.share, pin=PIN)
        commit = cosigner.commit(messages.decode(json.dumps(opened["message"]),
                                                 messages.CosignOffer))
        answer = self._send(opened["session"], commit)
        result = cosigner.finish(messages.decode(json.dumps(answer["message"]),
                                                 messages.CosignResponse))
        if not isinstance(result, messages.CosignResult):
            raise BenchError("a co-signature needed a second round (s = 0): run again")
        answer = self._send(opened["session"], result)
        return cosigner.close(messages.decode(json.dumps(answer["message"]),
                                              messages.CosignDone))

    def pending(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", "/api/v1/mobile/tasks?status=pending")[
            "items"]
        return items

    def sign(self, task_id: str) -> tuple[bytes, ...]:
        """One co-signature: the sign call, cosign.commit, cosign.result."""
        return self.cosign(self.call("POST", "/api/v1/mobile/sign", {"tasks": [task_id]}))


def bind_phones(hospital: Hospital, backend: Callable[[], Backend],
                transport: Callable[[], Transport], threads: int) -> list[Phone]:
    """A phone per signer: activation code, activation, co-keygen, enrollment."""
    def one(signer_id: int) -> Phone:
        phone = Phone(transport())
        phone.activate(backend().activation_code(signer_id))
        phone.enroll()
        return phone

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, hospital.signer_ids))


def check_cosignature(hospital: Hospital, backend: Backend, phone: Phone, number: int) -> None:
    """Before timing: a co-signed request completes and its CMS verifies with the document."""
    assert phone.device_id is not None
    signer_id = hospital.signer_ids[0]
    request_id = backend.sign_request(signer_id, number)
    (task,) = [t for t in phone.pending() if t["request_id"] == request_id]
    phone.sign(task["id"])
    result = backend.call("GET", f"/api/v1/sign-requests/{request_id}/result")
    content = PRESCRIPTION.format(n=number, name=signer_id).encode()
    verified = cms.verify(base64.b64decode(result["documents"][0]["signature"]), content=content,
                          trust_roots=[hospital.root], intermediates=[hospital.issuing])
    if not verified.valid:
        raise BenchError(f"a co-signed CMS does not verify: {verified}")


# ---------------------------------------------------------------------------------------------
# CPU accounting


def server_cpu_seconds() -> dict[int, float]:
    """User + system CPU seconds of each live process descended from this one (the server's
    gunicorn master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    me, found = os.getpid(), {}
    for pid, seconds in cpu.items():
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor > 1 and ancestor != me:
            ancestor = parents.get(ancestor)
        if pid != me and ancestor == me:
            found[pid] = seconds
    return found


def machine_cpu_seconds() -> float:
    """CPU seconds every process of the machine used so far (/proc/stat: not idle, not
    waiting for I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user .. steal, without idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Window:
    """One timed HTTP window: what completed in it and the CPU both sides used."""

    count: float
    seconds: float
    latencies: list[float]
    client_cpu: float
    processes: dict[int, float]  # server process -> CPU seconds in the window
    machine_cpu: float  # every process of the machine

    @property
    def server_cpu(self) -> float:
        return sum(self.processes.values())

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def cpu_ms(self, side: str) -> float:
        return 1000 * getattr(self, f"{side}_cpu") / self.count if self.count else math.nan

    def busy(self) -> float:
        return (self.client_cpu + self.server_cpu) / self.seconds

    def others(self) -> float:
        """CPUs used by the rest of the machine (other programs) during the window."""
        return max(0.0, self.machine_cpu / self.seconds - self.busy())

    def shares(self) -> list[float]:
        """CPUs used by each server process (the busiest first; a gunicorn worker's threads
        share one interpreter lock, so one worker uses at most about one CPU)."""
        return sorted((v / self.seconds for v in self.processes.values()), reverse=True)


Worker = Callable[[float, float, list[tuple[float, float, float]]], None]


def timed_window(workers: Sequence[Worker], *, warmup: float, seconds: float) -> Window:
    """Run ``workers`` (each in a thread) from a common start; count what each reports
    (started, finished, items) finishing in [start + warmup, start + warmup + seconds]."""
    start = time.perf_counter() + 0.2
    counted_from, deadline = start + warmup, start + warmup + seconds
    done: list[list[tuple[float, float, float]]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def run(worker: Worker, out: list[tuple[float, float, float]]) -> None:
        try:
            time.sleep(max(0.0, start - time.perf_counter()))
            worker(deadline, start, out)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w, d), daemon=True)
               for w, d in zip(workers, done, strict=True)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, counted_from - time.perf_counter()))
    client0, server0, machine0 = client_cpu_seconds(), server_cpu_seconds(), machine_cpu_seconds()
    time.sleep(max(0.0, deadline - time.perf_counter()))
    client1, server1, machine1 = client_cpu_seconds(), server_cpu_seconds(), machine_cpu_seconds()
    processes = {pid: server1[pid] - server0.get(pid, 0.0) for pid in server1}
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"a client thread failed: {errors[0]}") from errors[0]
    finished = [e for out in done for e in out if counted_from <= e[1] <= deadline]
    if not finished:
        raise BenchError("nothing completed in the timed window")
    return Window(sum(e[2] for e in finished), seconds, [e[1] - e[0] for e in finished],
                  client1 - client0, processes, machine1 - machine0)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


# ---------------------------------------------------------------------------------------------
# Co-signatures


@dataclasses.dataclass
class InProcess:
    """The appliance in this process: CPU ms per co-signature inside the app and in the phone."""

    count: int
    server_seconds: float
    phone_seconds: float
    elapsed: float  # wall-clock seconds of the co-signatures (waits for the disk included)

    @property
    def server_rate(self) -> float:
        return self.count / self.server_seconds

    @property
    def elapsed_rate(self) -> float:
        return self.count / self.elapsed


class InProcessAppliance:
    """A second installation served by ``appliance.wsgi.build`` in this process (its nonces in
    a nonce table, as the server's workers have them), with a few bound phones."""

    def __init__(self, hospital: Hospital) -> None:
        config = hospital.config
        self.database = Database(config.database_url)
        self.holder = KeyHolder(KekStore(self.database))
        self.holder.unseal(passphrase=api_bench.PASSPHRASE)
        self.appliance = build(config, database=self.database, key_holder=self.holder,
                               nonces=_nonce_table(config, self.database))
        self.transport = FalconTransport(falcon.testing.TestClient(self.appliance.app))
        self.backend = Backend(self.transport, hospital)
        self.phones = bind_phones(hospital, lambda: self.backend, lambda: self.transport, 1)
        self.hospital = hospital
        self.number = 0

    def cosign(self, phone: Phone, signer_id: int) -> tuple[float, float, float]:
        """The backend posts one request (not counted), then the phone co-signs it; (CPU
        seconds inside the app, CPU seconds of the whole co-signature, elapsed seconds)."""
        self.number += 1
        self.backend.sign_request(signer_id, self.number)
        started, inside = time.process_time(), self.transport.seconds
        wall = time.perf_counter()
        (task,) = phone.pending()
        phone.sign(task["id"])
        return (self.transport.seconds - inside, time.process_time() - started,
                time.perf_counter() - wall)

    def measure(self, seconds: float) -> InProcess:
        pairs = list(zip(self.phones, self.hospital.signer_ids, strict=False))
        for phone, signer_id in pairs:  # warm-up
            self.cosign(phone, signer_id)
        count, server, whole, elapsed = 0, 0.0, 0.0, 0.0
        while whole < seconds:
            for phone, signer_id in pairs:
                inside, total, wall = self.cosign(phone, signer_id)
                count, server, whole, elapsed = (count + 1, server + inside, whole + total,
                                                 elapsed + wall)
        return InProcess(count, server, whole - server, elapsed)

    def close(self) -> None:
        self.appliance.audit.close()
        self.database.dispose()


def create_requests(backends: Sequence[Backend], wanted: dict[int, int],
                    first_number: int) -> tuple[int, float]:
    """The backend posts ``wanted[signer]`` sign requests for each signer, several at a time;
    (how many, seconds)."""
    jobs = [signer for signer, n in wanted.items() for _ in range(n)]
    if not jobs:
        return 0, 0.0
    lock, queue = threading.Lock(), list(enumerate(jobs, first_number))

    def drain(backend: Backend) -> None:
        while True:
            with lock:
                if not queue:
                    return
                number, signer = queue.pop()
            backend.sign_request(signer, number)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(backends)) as pool:
        for future in [pool.submit(drain, b) for b in backends]:
            future.result()
    return len(jobs), time.perf_counter() - started


def paced_phone_worker(phone: Phone, think: float, rng: random.Random) -> Worker:
    """A phone at a human pace: it waits an exponential think time (mean ``think`` seconds,
    so the phones together offer a steady rate), then lists its tasks and co-signs one."""
    def loop(deadline: float, _start: float, out: list[tuple[float, float, float]]) -> None:
        while True:
            time.sleep(rng.expovariate(1.0 / think))
            if time.perf_counter() >= deadline:
                return
            tasks = phone.pending()
            if not tasks:
                return
            started = time.perf_counter()
            phone.sign(tasks[0]["id"])
            out.append((started, time.perf_counter(), 1.0))

    return loop


def phone_worker(phone: Phone, ran_out: list[Phone], depths: list[int]) -> Worker:
    def loop(deadline: float, _start: float, out: list[tuple[float, float, float]]) -> None:
        while time.perf_counter() < deadline:
            tasks = phone.pending()
            depths.append(len(tasks))
            if not tasks:
                ran_out.append(phone)
                return
            started = time.perf_counter()
            phone.sign(tasks[0]["id"])
            out.append((started, time.perf_counter(), 1.0))

    return loop


# ---------------------------------------------------------------------------------------------
# Seals and time stamps over HTTP


def seal_worker(port: int, hospital: Hospital, body: bytes, count: int) -> Worker:
    transport = HttpTransport(port)
    target = "/api/v1/seal"

    def loop(deadline: float, _start: float, out: list[tuple[float, float, float]]) -> None:
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                headers = hmac_signing.sign_request("POST", target, key_id=hospital.key_id,
                                                    secret=hospital.secret, body=body)
                headers["Content-Type"] = "application/json"
                status, _, data = transport("POST", target, body, headers)
                if status != 200:
                    raise BenchError(f"POST {target}: {status} {data[:300]!r}")
                out.append((started, time.perf_counter(), float(count)))
        finally:
            transport.close()

    return loop


def tsa_worker(port: int, queries: Sequence[bytes]) -> Worker:
    transport = HttpTransport(port)
    headers = {"Content-Type": "application/timestamp-query"}

    def loop(deadline: float, _start: float, out: list[tuple[float, float, float]]) -> None:
        try:
            index = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, kind, data = transport("POST", "/tsa", queries[index % len(queries)],
                                               headers)
                if status != 200 or kind != "application/timestamp-reply":
                    raise BenchError(f"POST /tsa: {status} {data[:300]!r}")
                out.append((started, time.perf_counter(), 1.0))
                index += 1
        finally:
            transport.close()

    return loop


def seal_body(count: int) -> bytes:
    return json.dumps({"format": "cms-detached", "documents": [
        {"id": f"lis-{i:06d}",
         "content": base64.b64encode(SEAL_DOCUMENT.format(n=i).encode()).decode()}
        for i in range(count)]}).encode()


def check_seal(port: int, hospital: Hospital) -> None:
    body = seal_body(2)
    headers = hmac_signing.sign_request("POST", "/api/v1/seal", key_id=hospital.key_id,
                                        secret=hospital.secret, body=body)
    headers["Content-Type"] = "application/json"
    answer = _answer("POST", "/api/v1/seal",
                     HttpTransport(port)("POST", "/api/v1/seal", body, headers))
    for i, result in enumerate(answer["results"]):
        verified = cms.verify(base64.b64decode(result["signature"]),
                              content=SEAL_DOCUMENT.format(n=i).encode(),
                              trust_roots=[hospital.root], intermediates=[hospital.issuing])
        if not verified.valid:
            raise BenchError(f"a seal does not verify: {verified}")


def check_tsa(port: int, hospital: Hospital, request: tsp.TimestampRequest) -> None:
    status, _, data = HttpTransport(port)("POST", "/tsa", request.der,
                                          {"Content-Type": "application/timestamp-query"})
    if status != 200:
        raise BenchError(f"POST /tsa: {status} {data[:300]!r}")
    verified = tsp.verify_response(data, request, trust_roots=[hospital.root],
                                   intermediates=[hospital.issuing])
    if not verified.valid:
        raise BenchError(f"a time stamp does not verify: {verified.problems}")


# ---------------------------------------------------------------------------------------------
# In-process references (one pinned CPU, CPU time)


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[int]:
    """This thread (and threads it starts meanwhile) on one CPU for the block."""
    allowed = os.sched_getaffinity(0)
    try:
        yield pin_to_cpu(cpu)
    finally:
        os.sched_setaffinity(0, allowed)


class ServerSide:
    """The seal and TSA services of the server's installation, in this process (they only
    read the database; the server is idle meanwhile)."""

    def __init__(self, hospital: Hospital) -> None:
        config = hospital.config
        self.database = Database(config.database_url)
        holder = KeyHolder(KekStore(self.database))
        holder.unseal(passphrase=api_bench.PASSPHRASE)
        ca = CaService(self.database, holder, public_url=config.server.public_url)
        self.tsa = TsaService(self.database, holder, ca, config.tsa,
                              clock_check=ClockCheck([("127.0.0.1", _ntp_port(config))],
                                                     max_offset=config.tsa.max_offset_ms / 1000))
        self.seals = SealService(self.database, holder, ca, tsa=self.tsa)

    def close(self) -> None:
        self.database.dispose()


def _ntp_port(config: Config) -> int:
    return int(config.tsa.ntp_servers.rsplit(":", 1)[1])


class _App:
    kind, name, id, role, scopes = "app", "bench-his", 0, None, frozenset({"seal"})


# ---------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class Row:
    name: str
    per_second: float
    baseline: str | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    runs: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Results:
    rows: list[Row]
    notes: list[str]
    info: dict[str, Any]


REF_COSIGN = "co-sign: appliance in process, server side"
REF_ELAPSED = "co-sign: appliance in process, elapsed"
REF_PROTOCOL = "co-sign: keysplit protocol alone, with PIN"
HTTP_COSIGN = "co-sign over HTTP"
HTTP_LONE = "co-sign over HTTP, one phone alone"
HTTP_PACED = "co-sign over HTTP, the phones at half capacity"
PACED_LOAD = 0.5  # of the closed loop's rate: doctors confirm at a human pace
HTTP_CLINIC = "co-sign over HTTP, the doctors at a busy clinic's pace"
# Seconds between two signatures of one doctor, on average: a heavy clinic.  An outpatient
# doctor sees a patient every few minutes and signs two or three documents per patient; one
# signature every 10 s per doctor is well above that, and the offered rate (phones / 10 per
# second) does not scale with the machine, as a hospital's load does not.
CLINIC_THINK_SECONDS = 10.0
REF_SM2 = "seal: raw SM2 sign"
REF_SEAL = "seal: SealService.apply in process"
HTTP_SEAL = "seal over HTTP"
REF_TSA = "tsa: TsaService.stamp in process"
HTTP_TSA = "tsa over HTTP"
CREATE = "backend: POST /api/v1/sign-requests"


def _server_env() -> dict[str, str]:
    """This environment without MEDSIGN_* settings (bench/ is deliberately not on the server's
    path: bench/keysplit.py would shadow the keysplit package there)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("MEDSIGN_") or k == "MEDSIGN_LIBCRYPTO"}


def say(args: argparse.Namespace, text: str) -> None:
    if args.verbose:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Recorder:
    """Every round of every row, the HTTP windows, and the side figures of the notes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs: dict[str, list[float]] = {}
        self.windows: dict[str, list[Window]] = {}
        self.extra: dict[str, list[float]] = {"phone_ms": [], "server_ms": [], "created": [],
                                              "ran_out": [], "depth": []}

    def keep(self, name: str, value: float, window: Window | None = None) -> None:
        self.runs.setdefault(name, []).append(value)
        detail = ""
        if window is not None:
            self.windows.setdefault(name, []).append(window)
        if window is not None and window.processes:
            detail = (f" (server CPUs {', '.join(f'{s:.2f}' for s in window.shares())}, "
                      f"client {window.client_cpu / window.seconds:.2f}, others "
                      f"{window.others():.2f})")
        say(self.args, f"{name}: {value:,.1f}/s{detail}")

    def best(self, name: str) -> int:
        return max(range(len(self.runs[name])), key=lambda i: self.runs[name][i])

    def row(self, name: str, baseline: str | None = None) -> Row:
        best = self.best(name)
        found = Row(name, self.runs[name][best], baseline, runs=self.runs[name])
        if name in self.windows:
            latencies = self.windows[name][best].latencies
            found.p50_ms = 1000 * statistics.median(latencies)
            found.p99_ms = 1000 * percentile(latencies, 0.99)
        return found


@dataclasses.dataclass
class Stage:
    """What the rounds run against: the server, its phones and backends, the references."""

    args: argparse.Namespace
    port: int
    served: Hospital
    phones: list[Phone]
    backends: list[Backend]
    inproc: InProcessAppliance
    parties: Any  # bench/keysplit.py's Sm2Parties
    server_side: ServerSide
    seal_key: SM2PrivateKey
    queries: list[tsp.TimestampRequest]
    number: int = 1  # the next prescription number
    expected: float = 0.0  # co-signatures per second over HTTP in the last round


def cosign_round(stage: Stage, record: Recorder) -> None:
    args, phones = stage.args, stage.phones
    digest = [stage.parties.public.digest(keysplit_bench.MESSAGE)]
    with pinned(args.cpu):
        measured = stage.inproc.measure(args.ref_seconds)
        protocol = ops_per_second(
            lambda: keysplit_bench.cosign(stage.parties, digest, with_pin=True),
            args.ref_seconds, time.process_time)
    record.keep(REF_COSIGN, measured.server_rate)
    record.keep(REF_ELAPSED, measured.elapsed_rate)
    record.keep(REF_PROTOCOL, protocol)
    record.extra["phone_ms"].append(1000 * measured.phone_seconds / measured.count)
    record.extra["server_ms"].append(1000 * measured.server_seconds / measured.count)
    # Enough pending requests that no phone runs dry in the window: 1.5 x the rate expected
    # (the last round's, at first the in-process server-side rate), topped up per phone.
    expected = stage.expected or measured.server_rate
    per_phone = math.ceil(1.5 * expected * (args.warmup + args.seconds) / len(phones)) + 1
    pending = {s: len(p.pending()) for s, p in zip(stage.served.signer_ids, phones,
                                                     strict=True)}
    made, took = create_requests(stage.backends,
                                 {s: max(0, per_phone - n) for s, n in pending.items()},
                                 stage.number)
    stage.number += made
    if made:
        record.extra["created"].append(made / took)
    for phone in phones:  # fresh connections: the server closed the idle ones
        assert isinstance(phone.transport, HttpTransport)
        phone.transport.close()
    ran_out: list[Phone] = []
    depths: list[int] = []
    window = timed_window([phone_worker(p, ran_out, depths) for p in phones],
                          warmup=args.warmup, seconds=args.seconds)
    record.extra["ran_out"].append(len(ran_out))
    record.extra["depth"].append(statistics.mean(depths))
    stage.expected = window.per_second
    record.keep(HTTP_COSIGN, window.per_second, window)
    record.keep(HTTP_PACED, *paced_round(stage, window.per_second * PACED_LOAD))
    record.keep(HTTP_CLINIC, *paced_round(stage, len(phones) / CLINIC_THINK_SECONDS))
    alone = lone_phone(stage, args.seconds / 4)
    record.keep(HTTP_LONE, alone.per_second, alone)


def paced_round(stage: Stage, rate: float) -> tuple[float, Window]:
    """The phones offer ``rate`` co-signatures per second together (exponential think times):
    the latency a doctor sees when the appliance is half busy, without the queueing of a
    closed loop."""
    args, phones = stage.args, stage.phones
    think = len(phones) / rate
    per_phone = math.ceil(2 * (args.warmup + args.seconds) / think) + 2
    pending = {s: len(p.pending()) for s, p in zip(stage.served.signer_ids, phones,
                                                     strict=True)}
    made, _took = create_requests(stage.backends,
                                  {s: max(0, per_phone - n) for s, n in pending.items()},
                                  stage.number)
    stage.number += made
    rng = random.Random(7)
    window = timed_window([paced_phone_worker(p, think, random.Random(rng.random()))
                           for p in phones], warmup=args.warmup, seconds=args.seconds)
    return window.per_second, window


def lone_phone(stage: Stage, seconds: float) -> Window:
    """One phone alone over HTTP (the others idle): the backend posts a request (not timed),
    the phone lists it and co-signs it; the latency without queueing behind other phones."""
    phone, signer = stage.phones[0], stage.served.signer_ids[0]
    for task in phone.pending():  # what the window left, so that a GET lists one task
        phone.sign(task["id"])
    latencies: list[float] = []
    busy, loops = 0.0, 0
    while busy < seconds:
        stage.backends[0].sign_request(signer, stage.number)
        stage.number += 1
        started = time.perf_counter()
        (task,) = phone.pending()
        signing = time.perf_counter()
        phone.sign(task["id"])
        done = time.perf_counter()
        loops += 1
        if loops > 2:  # the first ones warm the connection and the worker up
            latencies.append(done - signing)
            busy += done - started
    return Window(len(latencies), busy, latencies, 0.0, {}, 0.0)


def seal_round(stage: Stage, record: Recorder, body: bytes) -> None:
    args = stage.args
    documents = [Document(f"lis-{i:06d}", SEAL_DOCUMENT.format(n=i).encode())
                 for i in range(args.seal_batch)]
    with pinned(args.cpu):
        raw = ops_per_second(lambda: stage.seal_key.sign(keysplit_bench.MESSAGE),
                             args.ref_seconds, time.process_time)
        sealed = ops_per_second(lambda: stage.server_side.seals.apply(_App(), documents),
                                args.ref_seconds, time.process_time) * args.seal_batch
    record.keep(REF_SM2, raw)
    record.keep(REF_SEAL, sealed)
    window = timed_window([seal_worker(stage.port, stage.served, body, args.seal_batch)
                           for _ in range(args.client_threads)],
                          warmup=args.warmup, seconds=args.seconds / 2)
    record.keep(HTTP_SEAL, window.per_second, window)


def tsa_round(stage: Stage, record: Recorder) -> None:
    args, queries = stage.args, stage.queries
    with pinned(args.cpu):
        stamped = ops_per_second(lambda: stage.server_side.tsa.stamp(queries[0].der),
                                 args.ref_seconds, time.process_time)
    record.keep(REF_TSA, stamped)
    window = timed_window([tsa_worker(stage.port, [q.der for q in queries[i::args.client_threads]])
                           for i in range(args.client_threads)],
                          warmup=args.warmup, seconds=args.seconds / 2)
    record.keep(HTTP_TSA, window.per_second, window)


def prepare_stage(args: argparse.Namespace, port: int, served: Hospital,
                  local: Hospital) -> tuple[Stage, float]:
    """Bind the phones over HTTP, set up the references, check every flow once; the stage and
    the seconds the binding took."""
    say(args, f"binding {args.phones} phones over HTTP")
    started = time.perf_counter()
    phones = bind_phones(served, lambda: Backend(HttpTransport(port), served),
                         lambda: HttpTransport(port), args.client_threads)
    bound = time.perf_counter() - started
    backends = [Backend(HttpTransport(port), served) for _ in range(args.client_threads)]
    check_cosignature(served, backends[0], phones[0], 0)
    say(args, f"bound in {bound:.1f} s; the in-process appliance and references")
    parties = keysplit_bench.sm2_keygen()
    keysplit_bench.check_cosignatures(parties)
    seal_key = generate_private_key("sm2")
    assert isinstance(seal_key, SM2PrivateKey)
    queries = [tsp.build_request(data=f"电子病历 EMR-{i:06d}".encode(),
                                 hash_algorithm=HashAlgorithm.SM3) for i in range(256)]
    stage = Stage(args, port, served, phones, backends, InProcessAppliance(local), parties,
                  ServerSide(served), seal_key, queries)
    check_seal(port, served)
    check_tsa(port, served, queries[0])
    if not tsp.load_response(stage.server_side.tsa.stamp(queries[0].der)).granted:
        raise BenchError("the in-process TSA refused a query")
    return stage, bound


def measure(args: argparse.Namespace, work: Path) -> Results:
    record = Recorder(args)
    ntp = SntpResponder()
    cluster = _common.postgres_cluster() if args.database == "postgresql" else None
    try:
        say(args, "preparing the installations")
        served = make_hospital(work / "served", workers=args.workers, threads=args.threads,
                               signers=args.phones, ntp_port=ntp.port,
                               database_url=cluster and cluster.create_database("served"))
        local = make_hospital(work / "in-process", workers=1, threads=1,
                              signers=INPROCESS_PHONES, ntp_port=ntp.port,
                              database_url=cluster and cluster.create_database("local"))
        port = api_bench.free_port()
        argv = [api_bench.MEDSIGN, "serve", "--config", str(served.installation.config_file),
                "--bind", f"127.0.0.1:{port}"]
        with api_bench.running(argv, port, work / "server.log", _server_env()):
            stage, bound = prepare_stage(args, port, served, local)
            try:
                body = seal_body(args.seal_batch)
                for round_number in range(1, args.rounds + 1):
                    say(args, f"round {round_number}")
                    cosign_round(stage, record)
                    seal_round(stage, record, body)
                    tsa_round(stage, record)
            finally:
                stage.inproc.close()
                stage.server_side.close()
    finally:
        ntp.close()
        if cluster is not None:
            cluster.stop()
    rows = [record.row(REF_COSIGN), record.row(REF_ELAPSED),
            record.row(REF_PROTOCOL), record.row(HTTP_COSIGN, REF_COSIGN),
            record.row(HTTP_PACED), record.row(HTTP_CLINIC), record.row(HTTP_LONE, REF_ELAPSED),
            record.row(REF_SM2), record.row(REF_SEAL, REF_SM2), record.row(HTTP_SEAL, REF_SM2),
            record.row(REF_TSA), record.row(HTTP_TSA, REF_TSA)]
    if record.extra["created"]:
        rows.append(Row(CREATE, max(record.extra["created"]), runs=record.extra["created"]))
    info = {"workers": args.workers, "threads": args.threads, "phones": args.phones,
            "client_threads": args.client_threads, "seal_batch": args.seal_batch,
            "seconds": args.seconds, "ref_seconds": args.ref_seconds, "warmup": args.warmup,
            "rounds": args.rounds, "bind_seconds": bound, "database": args.database,
            "versions": api_bench.versions(DATABASES[args.database])}
    return Results(rows, cpu_notes(record), info)


def cpu_notes(record: Recorder) -> list[str]:
    """Where the CPU went in the best HTTP window of each flow."""
    args, extra = record.args, record.extra
    cpus = len(os.sched_getaffinity(0))
    notes = []
    for name, unit in ((HTTP_COSIGN, "co-signature"), (HTTP_SEAL, "seal signature"),
                       (HTTP_TSA, "token")):
        best = record.windows[name][record.best(name)]
        shares = " + ".join(f"{s:.2f}" for s in best.shares() if s >= 0.005)
        notes.append(f"{name}: CPU per {unit}: server {best.cpu_ms('server'):.1f} ms, client "
                     f"{best.cpu_ms('client'):.1f} ms; CPUs busy {best.busy():.2f} of {cpus}: "
                     f"server processes {shares}, client {best.client_cpu / best.seconds:.2f}; "
                     f"other programs {best.others():.2f}")
    by_name = {name: max(values) for name, values in record.runs.items()}
    notes.append(f"co-sign over HTTP / appliance in process, elapsed (one phone at a time, "
                 f"waits for the disk included): "
                 f"{by_name[HTTP_COSIGN] / by_name[REF_ELAPSED]:.3f}; / keysplit protocol "
                 f"alone: {by_name[HTTP_COSIGN] / by_name[REF_PROTOCOL]:.3f}")
    notes.append(f"co-sign in process, CPU per co-signature: the app "
                 f"{min(extra['server_ms']):.1f} ms, the phone's own work "
                 f"{min(extra['phone_ms']):.1f} ms (device signatures on 4 requests, k1*G, "
                 f"share opening, verification, JSON)")
    notes.append(f"co-sign over HTTP: a closed loop of {args.phones} phones without pause, so "
                 f"the latency is about phones / rate (Little's law); tasks pending per GET: "
                 f"{', '.join(f'{d:.1f}' for d in extra['depth'])} (mean, per round)")
    if any(extra["ran_out"]):
        notes.append(f"warning: phones ran out of tasks during a window "
                     f"({[int(n) for n in extra['ran_out']]} per round): fewer phones were "
                     f"busy at the end; run again")
    return notes


# ---------------------------------------------------------------------------------------------
# Output


def ratio(row: Row, rows: Sequence[Row]) -> float | None:
    base = next((r for r in rows if r.name == row.baseline), None)
    return row.per_second / base.per_second if base else None


def goal_lines(rows: Sequence[Row]) -> list[str]:
    by_name = {r.name: r for r in rows}
    cosign, lone, seal = by_name[HTTP_COSIGN], by_name[HTTP_LONE], by_name[HTTP_SEAL]
    lines = []
    for row, goal, what in ((cosign, COSIGN_GOAL, "co-signatures over HTTP / appliance in "
                             "process (server side)"),
                            (seal, SEAL_GOAL, "seal signatures over HTTP / raw SM2 sign")):
        value = ratio(row, rows) or 0.0
        lines.append(f"goal {what} >= {goal}: {value:.3f} "
                     f"{'PASS' if value >= goal else 'BELOW GOAL'}")
    paced, clinic = by_name[HTTP_PACED], by_name[HTTP_CLINIC]
    for row, what in ((cosign, "closed loop, all phones busy"),
                      (paced, f"{paced.name.split(', ', 1)[1]}"),
                      (clinic, f"{clinic.name.split(', ', 1)[1]} "
                               f"({clinic.per_second:.1f} co-signatures/s)"),
                      (lone, "one phone alone")):
        assert row.p99_ms is not None
        lines.append(f"co-signature latency p99 < {P99_LIMIT_MS:g} ms (absolute, "
                     f"informational), {what}: {row.p99_ms:.1f} ms "
                     f"{'meets it' if row.p99_ms < P99_LIMIT_MS else 'does not meet it'}")
    return lines


def render(results: Results) -> str:
    info = results.info
    lines = [f"medsign signing-flow benchmark: loopback HTTP to `medsign serve` (gunicorn gthread "
             f"{info['workers']} workers x {info['threads']} threads, "
             f"{'PostgreSQL' if info['database'] == 'postgresql' else 'SQLite'}), client in this "
             f"process: {info['phones']} phones (co-sign), {info['client_threads']} threads "
             f"(seal, TSA); {info['seconds']:g} s per co-sign window, {info['seconds'] / 2:g} s "
             f"per seal/TSA window, after {info['warmup']:g} s warm-up; in-process references "
             f"on one pinned CPU, CPU time, {info['ref_seconds']:g} s; best of {info['rounds']} "
             f"alternating rounds"]
    lines += [f"  {name}: {version}" for name, version in info["versions"].items()]
    lines += [f"  {info['phones']} phones bound (activation, co-keygen, enrollment) in "
              f"{info['bind_seconds']:.1f} s; seal batches of {info['seal_batch']} documents",
              "  co-sign reference (goal): the same app (appliance.wsgi.build) in this process "
              "through falcon.testing.TestClient, one phone at a time, CPU time inside the app "
              "(the phone's work timed apart)",
              "", f"{'operation':<46}{'per second':>12}{'vs ref':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f"  reference"]
    for row in results.rows:
        value = ratio(row, results.rows)
        cells = [f"{value:.3f}" if value is not None else "-",
                 f"{row.p50_ms:.1f}" if row.p50_ms is not None else "-",
                 f"{row.p99_ms:.1f}" if row.p99_ms is not None else "-"]
        lines.append(f"{row.name:<46}{row.per_second:>12,.1f}{cells[0]:>8}{cells[1]:>8}"
                     f"{cells[2]:>8}  {row.baseline or ''}")
    return "\n".join([*lines, "", *results.notes, "", *goal_lines(results.rows)])


def as_json(results: Results) -> str:
    rows = [{**dataclasses.asdict(r), "vs_baseline": ratio(r, results.rows)}
            for r in results.rows]
    return json.dumps({**results.info, "unit": "operations per second", "results": rows,
                       "notes": results.notes, "goals": goal_lines(results.rows)}, indent=2,
                      ensure_ascii=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="about 30 s: one round, shorter windows")
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per co-sign window (seal and TSA windows: half); "
                             "default 8, 2.5 with --quick")
    parser.add_argument("--ref-seconds", type=float, default=None,
                        help="CPU seconds per in-process reference (default 2, 0.5 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds, best kept (default 2, 1 with --quick)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of each HTTP window not counted (default 1, 0.5 quick)")
    parser.add_argument("--phones", type=int, default=50)
    parser.add_argument("--client-threads", type=int, default=8,
                        help="client threads for seals and time stamps (and the backend)")
    parser.add_argument("--seal-batch", type=int, default=20, help="documents per seal request")
    parser.add_argument("--database", choices=sorted(DATABASES), default="sqlite",
                        help="the appliance's database (postgresql: a throwaway local cluster)")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--cpu", type=int, default=None,
                        help="the CPU the in-process references are pinned to")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="progress and rounds (stderr)")
    args = parser.parse_args(argv)
    quick = args.quick
    for name, normal, short in (("seconds", 8.0, 2.5), ("ref_seconds", 2.0, 0.5),
                                ("rounds", 2, 1), ("warmup", 1.0, 0.5)):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else normal)
    if min(args.seconds, args.ref_seconds, args.rounds, args.phones, args.client_threads,
           args.seal_batch, args.workers, args.threads) <= 0 or args.warmup < 0:
        parser.error("every count and duration must be positive")
    if args.phones > 999 or args.seal_batch > 100:
        parser.error("at most 999 phones and 100 documents per seal request")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="medsign-bench-flows-") as work:
            results = measure(args, Path(work))
    except (BenchError, OSError) as exc:
        print(f"bench/flows.py: {exc}", file=sys.stderr)
        return 2
    print(as_json(results) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
