"""pdfsign's PAdES output against real third-party tools (PEERS.md "PDF: pdfsig, qpdf").

- RSA: poppler's ``pdfsig`` validates every signature, trusting our root through an NSS
  database made here, without online OCSP (``-no-ocsp``: the test PKI's responder URL does not
  exist); pdfsig exits 0 even for a tampered file, so its verdict lines are parsed;
  a tampered file is reported as such.
- Every generated PDF (SM2 and RSA, B-B and B-T, visible, two-phase, three sequential
  signatures): ``qpdf --check`` finds no errors.
- SM2 (pdfsig/NSS knows no SM2): the byte ranges and the CMS are cut out of the file here, and
  gmssl (an independent SM2/SM3 implementation) checks the SignerInfo signature over the signed
  attributes and that SM3 of the signed byte ranges equals the message-digest attribute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms as acms

import pdfsign
from pdfsign import MDP, Appearance, Level, Slot
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.tsa import TestTSA
from tests.support import gmssl_oracle
from tests.support.peers import require_tool, run_tool
from tests.support.pki import TestPKI, cached_pki, issue_leaf, write_pem

pytestmark = pytest.mark.peer

_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def _documents(pki: TestPKI) -> Iterator[tuple[str, bytes]]:
    """Every kind of document pdfsign makes, for one key type."""
    tsa = TestTSA(pki)
    yield "b-b", pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain)
    yield "b-t", pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                                  level=Level.B_T, timestamper=tsa)
    yield "visible", pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor,
                                      chain=pki.chain, appearance=Appearance((72, 600, 300, 680)))
    prepared = pdfsign.prepare_pdf(minimal_pdf(), pki.doctor, chain=pki.chain, level=Level.B_T)
    yield "two-phase", prepared.finish(pki.doctor_key.sign_digest(prepared.digest()),
                                       timestamper=tsa)
    # The doctor's extensions (NSS is picky about a document signer's certificate).
    usage = pki.doctor.extensions
    pharmacist, pharmacist_key = issue_leaf(pki, "CN=pharmacist,O=测试医院,C=CN",
                                            extensions=usage)
    seal, seal_key = issue_leaf(pki, "CN=seal,O=测试医院,C=CN", extensions=usage)
    first = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                             field="doctor", certify=MDP.FILL_FORMS,
                             appearance=Appearance((72, 100, 222, 160)),
                             slots=[Slot("pharmacist", box=(232, 100, 382, 160)), Slot("seal")])
    second = pdfsign.sign_pdf(first, pharmacist_key, pharmacist, chain=pki.chain,
                              field="pharmacist")
    yield "sequential", pdfsign.sign_pdf(second, seal_key, seal, chain=pki.chain, field="seal",
                                         level=Level.B_T, timestamper=tsa)


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, bytes]]:
    return {kt: dict(_documents(cached_pki(kt))) for kt in ("sm2", "rsa2048")}


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
@pytest.mark.parametrize("kind", ["b-b", "b-t", "visible", "two-phase", "sequential"])
def test_qpdf_check(documents: dict[str, dict[str, bytes]], key_type: str, kind: str,
                    tmp_path: Path) -> None:
    qpdf = require_tool("qpdf")
    path = tmp_path / "signed.pdf"
    path.write_bytes(documents[key_type][kind])
    result = run_tool([qpdf, "--check", path])
    assert b"No syntax or stream encoding errors found" in result.stdout, result.stdout


def _nss_db(directory: Path, root: Certificate) -> str:
    certutil = require_tool("certutil")
    directory.mkdir()
    run_tool([certutil, "-N", "-d", f"sql:{directory}", "--empty-password"])
    root_pem = write_pem(directory / "root.pem", root)
    run_tool([certutil, "-A", "-n", "root", "-t", "C,C,C", "-i", root_pem,
              "-d", f"sql:{directory}"])
    return f"sql:{directory}"


def _pdfsig(data: bytes, nssdir: str, tmp_path: Path) -> list[dict[str, str]]:
    """pdfsig's per-signature fields ("Signature Validation", "Certificate Validation"...)."""
    pdfsig = require_tool("pdfsig")
    path = tmp_path / "check.pdf"
    path.write_bytes(data)
    # -no-ocsp: the test certificates name an OCSP responder that does not exist; NSS's online
    # check then fails as "Unknown issue with Certificate or corrupted data".
    result = run_tool([pdfsig, "-no-ocsp", "-nssdir", nssdir, path], check=False)
    text = result.stdout.decode("utf-8", "replace")
    signatures: list[dict[str, str]] = []
    for line in text.splitlines():
        if re.match(r"^Signature #\d+:", line):
            signatures.append({})
        elif signatures and (m := re.match(r"^\s+- ([^:]+)(?:: (.*))?$", line)):
            signatures[-1][m.group(1).strip()] = (m.group(2) or "").strip()
    assert signatures, text + result.stderr.decode("utf-8", "replace")
    return signatures


@pytest.mark.parametrize("kind", ["b-b", "b-t", "visible", "two-phase", "sequential"])
def test_pdfsig_validates_rsa(documents: dict[str, dict[str, bytes]], kind: str,
                              tmp_path: Path) -> None:
    pki = cached_pki("rsa2048")
    nssdir = _nss_db(tmp_path / "nss", pki.root)
    data = documents["rsa2048"][kind]
    verdicts = _pdfsig(data, nssdir, tmp_path)
    assert len(verdicts) == (3 if kind == "sequential" else 1)
    for verdict in verdicts:
        assert verdict["Signature Validation"] == "Signature is Valid.", verdict
        assert verdict["Certificate Validation"] == "Certificate is Trusted.", verdict
        assert verdict["Signature Type"] == "ETSI.CAdES.detached"
    whole = [v["Signature Field Name"] for v in verdicts if "Total document signed" in v]
    assert whole == (["seal"] if kind == "sequential" else ["Signature1"]), verdicts


def test_pdfsig_detects_tampering(documents: dict[str, dict[str, bytes]],
                                  tmp_path: Path) -> None:
    pki = cached_pki("rsa2048")
    nssdir = _nss_db(tmp_path / "nss", pki.root)
    forged = documents["rsa2048"]["b-b"].replace(b"e-prescription 0001", b"e-prescription 0002")
    (verdict,) = _pdfsig(forged, nssdir, tmp_path)
    assert verdict["Signature Validation"] != "Signature is Valid.", verdict


def _signatures(data: bytes) -> Iterator[tuple[bytes, acms.SignedData]]:
    """(signed bytes, SignedData) of every signature, cut out of the file by its /ByteRange."""
    for match in _BYTE_RANGE.finditer(data):
        a, la, b, lb = (int(g) for g in match.groups())
        signed = data[a:a + la] + data[b:b + lb]
        hole = data[a + la:b]
        assert hole.startswith(b"<") and hole.endswith(b">")
        der = bytes.fromhex(hole[1:-1].decode("ascii"))
        info = acms.ContentInfo.load(der)  # the DER, then zero padding
        yield signed, info["content"]


@pytest.mark.parametrize("kind", ["b-b", "b-t", "visible", "two-phase", "sequential"])
def test_gmssl_checks_sm2_signatures(documents: dict[str, dict[str, bytes]], kind: str) -> None:
    data = documents["sm2"][kind]
    found = list(_signatures(data))
    assert len(found) == (3 if kind == "sequential" else 1)
    for signed, signed_data in found:
        (signer_info,) = signed_data["signer_infos"]
        assert signer_info["digest_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.401"
        assert signer_info["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
        attrs = signer_info["signed_attrs"]
        digest = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
        assert gmssl_oracle.sm3(signed) == digest
        sid = signer_info["sid"].chosen
        certificate = next(
            Certificate(c.chosen) for c in signed_data["certificates"]
            if c.chosen.serial_number == sid["serial_number"].native
            and c.chosen.issuer.dump() == sid["issuer"].dump())
        public = certificate.public_key()
        assert isinstance(public, SM2PublicKey)
        attrs_der = attrs.untag().dump()
        signature = signer_info["signature"].native
        assert gmssl_oracle.verify(public, signature, attrs_der)
        assert not gmssl_oracle.verify(public, signature, attrs_der + b"\x00")

