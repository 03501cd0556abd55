"""A small audit log and a report over it, without the appliance: leaves in the appliance's
leaf format (canonical JSON of the row), checkpoints signed with a fresh SM2 key, the report
rendered by evidence.render and signed B-T with the test PKI (tests/support/pki.py) and the
test TSA (tests/pdfsign/tsa.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pdfsign
from evidence import SM3, Checkpoint, MerkleTree, checkpoint
from evidence.render import render_pdf
from evidence.report import (
    Consistency,
    DocumentDigest,
    ProvedEntry,
    Report,
    SignatureFacts,
    canonical_json,
    derive_process,
)
from signcore.hashes import sm3
from signcore.sm2 import SM2PrivateKey
from tests.pdfsign.tsa import TestTSA
from tests.support.pki import TestPKI

ORIGIN = "medsign.test/audit"
DOCUMENT = "门诊电子处方 RX-2026-0001：阿莫西林胶囊 0.25g×24 粒".encode()


def leaf(seq: int, action: str, actor: str, subject: str, details: dict[str, Any], *,
         when: str) -> str:
    """The appliance's leaf data for one row (appliance.services.audit.leaf_entry)."""
    return canonical_json({"action": action, "actor": actor, "category": "signature",
                           "created_at": when, "details": canonical_json(details),
                           "node_id": "node-1", "node_seq": seq, "seq": seq,
                           "subject": subject, "v": 1})


@dataclasses.dataclass
class Log:
    leaves: list[str]
    key: SM2PrivateKey
    tree: MerkleTree

    def note(self, size: int) -> str:
        return checkpoint.sign(Checkpoint(ORIGIN, size, self.tree.root(size)), self.key, ORIGIN)


def e_prescription_log(filler: int = 20) -> tuple[Log, dict[str, list[int]]]:
    """A doctor signs under PIN, a pharmacist under an auto-sign authorization; other traffic
    around.  The seqs of each signer's process."""
    rows: list[tuple[str, str, str, dict[str, Any]]] = [
        ("login", "admin:alice", "", {})] * filler
    rid = "9b2c4c1e-1111-4222-8333-444455556666"
    process = [
        ("device.bind", "", "signer:1", {"device_id": "dv_doc"}),
        ("device.bind", "", "signer:2", {"device_id": "dv_pha"}),
        ("sign-request.create", "app:his", rid,
         {"documents": [{"name": "rx.txt", "sm3": sm3(DOCUMENT).hex()}], "format": "cms-detached",
          "notified": [{"signer_id": 1, "step": 0}], "signers": []}),
        ("sign-request.cosign", "device:dv_doc", rid,
         {"task_id": "tk_1", "signer_id": 1, "step": 0, "device_id": "dv_doc",
          "ip": "10.0.0.7", "confirmation": "pin", "auto_sign_id": None, "session": "cs_1",
          "certificate_id": 11, "documents": [{"index": 0, "e": "00" * 32}]}),
        ("auto-sign.grant", "device:dv_pha", "signer:2",
         {"id": "as_1", "minutes": 30, "max_count": 5}),
        ("sign-request.cosign", "device:dv_pha", rid,
         {"task_id": "tk_2", "signer_id": 2, "step": 1, "device_id": "dv_pha",
          "ip": "10.0.0.8", "confirmation": "auto-sign", "auto_sign_id": "as_1",
          "session": "cs_2", "certificate_id": 12, "documents": [{"index": 0, "e": "11" * 32}]}),
    ]
    rows += process + [("login", "admin:bob", "", {})] * filler
    leaves = [leaf(i, action, actor, subject, details, when=f"2026-11-26T01:{i // 60:02d}:"
                   f"{i % 60:02d}.000000Z") for i, (action, actor, subject, details)
              in enumerate(rows)]
    hashes = [SM3.leaf(x.encode()) for x in leaves]
    log = Log(leaves, SM2PrivateKey.generate(), MerkleTree.from_leaf_hashes(hashes))
    base = filler
    return log, {"doctor": [base, base + 2, base + 3],
                 "pharmacist": [base + 1, base + 2, base + 4, base + 5]}


def build_report(log: Log, seqs: dict[str, list[int]], *, checkpoint_sizes: tuple[int, ...]
                 | None = None) -> Report:
    size = len(log.leaves)
    sizes = checkpoint_sizes or (max(max(s) for s in seqs.values()) + 1, size)
    first = sizes[0]
    newest = max(sizes)
    cited = sorted({s for v in seqs.values() for s in v})
    entries = tuple(ProvedEntry(s, log.leaves[s], first,
                                tuple(log.tree.inclusion_proof(s, first))) for s in cited)
    signatures = []
    for index, (who, numbers) in enumerate(seqs.items()):
        records = [entries[cited.index(n)].record() for n in numbers]
        signatures.append(SignatureFacts(
            index=index, kind="cms", field=f"signer-{index + 1}",
            signer=f"CN={who},O=测试医院", certificate=None, algorithm="sm2sign_with_sm3",
            signing_time="2026-11-26T01:00:30+00:00", timestamp=None, valid=True,
            checks={"integrity": True, "trusted": True, "problems": []},
            certificate_status={"at_signing": "good", "now": "good"},
            process=derive_process(records), entries=tuple(numbers)))
    return Report(
        report_id="ev_test", generated_at="2026-11-26T02:00:00.000000Z",
        appliance={"name": "测试医院签名服务器", "origin": ORIGIN, "node_id": "node-1"},
        document=DocumentDigest("rx.txt", len(DOCUMENT), hashlib.sha256(DOCUMENT).hexdigest(),
                                sm3(DOCUMENT).hex()),
        sign_request_id="9b2c4c1e-1111-4222-8333-444455556666",
        signatures=tuple(signatures), entries=entries,
        checkpoints=tuple(log.note(s) for s in sorted(set(sizes))),
        consistency=tuple(Consistency(s, newest, tuple(log.tree.consistency_proof(s, newest)))
                          for s in sorted(set(sizes)) if s != newest),
        log_keys=(log.key.public_key().to_der(),),
        certificates=tuple(c.der for c in ()))


def sign_report(report: Report, pki: TestPKI) -> bytes:
    """The report PDF signed B-T by the test PKI's doctor certificate (as the appliance)."""
    report = dataclasses.replace(report, certificates=(pki.root.der, pki.issuing.der))
    return pdfsign.sign_pdf(render_pdf(report), pki.doctor_key, pki.doctor, chain=pki.chain,
                            level=pdfsign.Level.B_T, timestamper=TestTSA(pki),
                            field="medsign-evidence")


def reembedded(report_json: dict[str, Any]) -> Report:
    return Report.from_json(json.loads(json.dumps(report_json)))
