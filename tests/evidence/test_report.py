"""evidence.report / render / verify without the appliance: a report over a small log with a
doctor (PIN) and a pharmacist (auto-sign authorization) validates offline, and every tamper —
of the document, the report file, an entry, a proof, a checkpoint, the facts — is named."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from pyhanko.pdf_utils.embed import EmbeddedFileObject, FileSpec, embed_file
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from evidence import SM3, Checkpoint, MerkleTree, checkpoint
from evidence.errors import MalformedReport
from evidence.render import render_pdf
from evidence.report import ProvedEntry, Report
from evidence.verify import Verdict, read_facts, verify_facts, verify_report
from signcore.sm2 import SM2PrivateKey
from tests.evidence.builders import (
    DOCUMENT,
    ORIGIN,
    Log,
    build_report,
    e_prescription_log,
    leaf,
    sign_report,
)
from tests.pdfsign.pdfs import minimal_pdf
from tests.support.pki import cached_pki


@pytest.fixture(scope="module")
def log() -> tuple[Log, dict[str, list[int]]]:
    return e_prescription_log()


@pytest.fixture(scope="module")
def report(log: tuple[Log, dict[str, list[int]]]) -> Report:
    return build_report(*log)


@pytest.fixture(scope="module")
def signed(report: Report) -> bytes:
    return sign_report(report, cached_pki("sm2"))


def _failed(verdict: Verdict) -> dict[str, str]:
    return {c.name: c.detail for c in verdict.failures}


def _facts_failed(report: Report) -> dict[str, str]:
    return {c.name: c.detail for c in verify_facts(report) if not c.ok}


def test_a_genuine_report_verifies_offline(signed: bytes, report: Report) -> None:
    verdict = verify_report(signed, document=DOCUMENT)
    assert verdict.ok, verdict.failures
    assert verdict.report == dataclasses.replace(
        report, certificates=verdict.report.certificates if verdict.report else ())
    assert verdict.root_fingerprint == cached_pki("sm2").root.fingerprint("sha256").hex()
    names = {c.name for c in verdict.checks}
    assert {"report-signature", "report-timestamp", "report-coverage", "document-digest",
            "consistency 26->46", "inclusion #25", "facts signature 2"} <= names
    assert verify_report(signed, trust=[cached_pki("sm2").root]).ok


def test_both_processes_are_derived_from_their_entries(report: Report) -> None:
    doctor, pharmacist = report.signatures
    assert doctor.process["confirmation"] == "pin" and doctor.process["auto_sign"] is None
    assert doctor.process["device_id"] == "dv_doc" and doctor.process["ip"] == "10.0.0.7"
    assert pharmacist.process["confirmation"] == "auto-sign"
    assert pharmacist.process["auto_sign"]["id"] == "as_1"
    assert pharmacist.process["auto_sign"]["minutes"] == 30
    assert pharmacist.process["identity_check"]["passed"] is True
    assert doctor.process["notified"] is True


def test_the_json_round_trips(report: Report) -> None:
    assert Report.from_bytes(report.to_bytes()) == report
    broken = json.loads(report.to_bytes())
    broken["verdict"] = "invalid"
    with pytest.raises(MalformedReport, match="verdict"):
        Report.from_json(broken)
    del broken["entries"]
    with pytest.raises(MalformedReport, match="entries"):
        Report.from_json(broken)


def test_a_changed_document_is_named(signed: bytes) -> None:
    tampered = bytearray(DOCUMENT)
    tampered[0] ^= 1
    assert set(_failed(verify_report(signed, document=bytes(tampered)))) == {"document-digest"}


def test_a_changed_byte_of_the_report_is_named(signed: bytes) -> None:
    at = signed.index(b"(medsign)")  # the /Author string, inside the signed range
    tampered = signed[:at + 1] + b"M" + signed[at + 2:]
    failed = _failed(verify_report(tampered, document=DOCUMENT))
    assert "report-signature" in failed, failed


def test_facts_replaced_after_signing_are_named(signed: bytes, report: Report) -> None:
    forged = json.loads(report.to_bytes())
    forged["signatures"][0]["process"]["ip"] = "192.0.2.1"
    writer = IncrementalPdfFileWriter(io.BytesIO(signed))
    embed_file(writer, FileSpec("evidence.json", "evidence.json",
                                EmbeddedFileObject.from_file_data(
                                    writer, json.dumps(forged).encode())))
    out = io.BytesIO()
    writer.write(out)
    failed = _failed(verify_report(out.getvalue()))
    assert "report-coverage" in failed, failed


def test_a_pdf_that_is_not_a_report_is_named() -> None:
    verdict = verify_report(minimal_pdf())
    assert not verdict.ok and set(_failed(verdict)) == {"report-facts"}
    assert "evidence.json" in verdict.failures[0].detail
    assert not verify_report(b"not a pdf").ok
    with pytest.raises(MalformedReport):
        read_facts(b"%PDF-1.7 nonsense")


def test_an_untrusted_root_is_named(signed: bytes) -> None:
    failed = _failed(verify_report(signed, trust=[cached_pki("rsa2048").root]))
    assert "report-signer-trusted" in failed


def test_an_edited_entry_is_named(report: Report) -> None:
    entry = report.entries[3]
    edited = ProvedEntry(entry.seq, entry.leaf.replace("10.0.0.7", "10.0.0.9"),
                         entry.tree_size, entry.proof)
    entries = tuple(edited if e.seq == entry.seq else e for e in report.entries)
    failed = _facts_failed(dataclasses.replace(report, entries=entries))
    assert f"inclusion #{entry.seq}" in failed
    assert "facts signature 1" in failed  # the shown ip no longer follows from the entry


def test_an_edited_proof_is_named(report: Report) -> None:
    entry = report.entries[0]
    proof = (bytes(32), *entry.proof[1:])
    entries = (ProvedEntry(entry.seq, entry.leaf, entry.tree_size, proof),
               *report.entries[1:])
    assert set(_facts_failed(dataclasses.replace(report, entries=entries))) == {
        f"inclusion #{entry.seq}"}


def test_a_deleted_or_reordered_entry_is_named(report: Report) -> None:
    dropped = dataclasses.replace(report, entries=report.entries[:3] + report.entries[4:])
    failed = _facts_failed(dropped)
    assert "facts signature 1" in failed and "does not carry" in failed["facts signature 1"]
    a, b = report.entries[3], report.entries[5]
    swapped = list(report.entries)
    swapped[3] = ProvedEntry(a.seq, b.leaf, a.tree_size, a.proof)
    swapped[5] = ProvedEntry(b.seq, a.leaf, b.tree_size, b.proof)
    failed = _facts_failed(dataclasses.replace(report, entries=tuple(swapped)))
    assert {f"inclusion #{a.seq}", f"inclusion #{b.seq}", "facts signature 1"} <= set(failed)


def test_facts_that_do_not_follow_from_the_entries_are_named(report: Report) -> None:
    sig = report.signatures[1]
    forged = dataclasses.replace(sig, process={**sig.process, "confirmation": "pin"})
    failed = _facts_failed(dataclasses.replace(report, signatures=(report.signatures[0],
                                                                   forged)))
    assert set(failed) == {"facts signature 2"} and "confirmation" in failed["facts signature 2"]


def test_a_replaced_checkpoint_is_named(report: Report, log: tuple[Log, dict[str, list[int]]]
                                        ) -> None:
    tree = log[0].tree
    other = checkpoint.sign(Checkpoint(ORIGIN, 26, tree.root(26)), SM2PrivateKey.generate(),
                            ORIGIN)
    failed = _facts_failed(dataclasses.replace(
        report, checkpoints=(other, report.checkpoints[1])))
    assert "checkpoint 26" in failed and "inclusion #20" in failed
    forged_root = checkpoint.sign(Checkpoint(ORIGIN, 26, bytes(32)), log[0].key, ORIGIN)
    failed = _facts_failed(dataclasses.replace(
        report, checkpoints=(forged_root, report.checkpoints[1])))
    assert {"inclusion #20", "consistency 26->46"} <= set(failed)


def test_a_forked_log_is_named(report: Report, log: tuple[Log, dict[str, list[int]]]) -> None:
    """The newest checkpoint of a log that rewrote its history after size 26."""
    original, _ = log
    leaves = original.leaves[:30] + [leaf(i, "login", "admin:eve", "", {}, when="2026-11-26T03:00:"
                                          "00.000000Z") for i in range(30, 46)]
    forked = MerkleTree.from_leaf_hashes([SM3.leaf(x.encode()) for x in leaves])
    forked.grow(46)
    rewritten = dataclasses.replace(report, checkpoints=(
        report.checkpoints[0],
        checkpoint.sign(Checkpoint(ORIGIN, 46, forked.root(46)), original.key, ORIGIN)))
    assert set(_facts_failed(rewritten)) == {"consistency 26->46"}


def test_pinned_audit_keys(report: Report, log: tuple[Log, dict[str, list[int]]]) -> None:
    assert not _facts_failed(report)
    checks = verify_facts(report, audit_keys=[log[0].key.public_key()])
    assert all(c.ok for c in checks)
    stranger = SM2PrivateKey.generate().public_key()
    failed = {c.name for c in verify_facts(report, audit_keys=[stranger]) if not c.ok}
    assert {"checkpoint 26", "checkpoint 46", "inclusion #20"} <= failed


def test_the_pdf_carries_the_facts(report: Report) -> None:
    assert read_facts(render_pdf(report)) == report
