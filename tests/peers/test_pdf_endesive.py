"""pdfsign's PAdES B-B / B-T / B-LT / B-LTA output against independent validators.

- endesive (PyPI, pinned in pyproject's dev extras; run in a subprocess by
  tests/peers/endesive_verify.py, which works around oscrypto's OpenSSL version bug): for RSA
  at every level, the byte-range digest, the signature, the chain to our root (certvalidator),
  the signature timestamp and, for B-LTA, the document timestamp all verify; a tampered B-LT
  document fails its hash check.
- poppler's pdfsig (NSS database trusting our root, made here): B-LT and B-LTA signatures are
  valid and trusted; the DSS and document-timestamp revisions after them are reported as such.
- qpdf --check: no errors in any B-LT / B-LTA file, SM2 and RSA, archive-timestamped again.
- gmssl: the SM2 CMS of a B-LT document verifies over its signed byte ranges (SM3 digest and
  SM2 signature), as for B-B/B-T in test_pdf_peers.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import pdfsign
from pdfsign import Level, ValidationData
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.revocation import TestRevocation
from tests.pdfsign.tsa import TestTSA
from tests.peers.test_pdf_peers import _nss_db, _pdfsig, _signatures
from tests.support import gmssl_oracle
from tests.support.peers import require_tool, run_tool
from tests.support.pki import TestPKI, cached_pki, write_pem

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
LEVELS = (Level.B_B, Level.B_T, Level.B_LT, Level.B_LTA)


def _sign(pki: TestPKI, level: Level) -> bytes:
    return pdfsign.sign_pdf(
        minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain, level=level,
        timestamper=TestTSA(pki) if level.timestamped else None,
        validation=ValidationData([pki.root], fetcher=TestRevocation(pki))
        if level in (Level.B_LT, Level.B_LTA) else None)


@pytest.fixture(scope="module")
def documents() -> dict[tuple[str, str], bytes]:
    found = {}
    for key_type in ("sm2", "rsa2048"):
        pki = cached_pki(key_type)
        for level in LEVELS:
            found[key_type, level.value] = _sign(pki, level)
        found[key_type, "archived"] = pdfsign.add_archive_timestamp(
            found[key_type, "B-LTA"], TestTSA(pki),
            ValidationData([pki.root], fetcher=TestRevocation(pki)))
    return found


def _endesive(data: bytes, tmp_path: Path) -> list[dict[str, Any]]:
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(data)
    root = write_pem(tmp_path / "root.pem", cached_pki("rsa2048").root)
    result = run_tool([sys.executable, "-m", "tests.peers.endesive_verify", pdf, root],
                      cwd=ROOT, timeout=120)
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


@pytest.mark.parametrize("level", [lv.value for lv in LEVELS])
def test_endesive_verifies_rsa(documents: dict[tuple[str, str], bytes], level: str,
                               tmp_path: Path) -> None:
    results = _endesive(documents["rsa2048", level], tmp_path)
    signature, *stamps = results
    assert not signature["timestamp_only"]
    assert signature["hashok"] and signature["signatureok"] and signature["certok"], signature
    assert signature["tspok"] is (None if level == "B-B" else True), signature
    # B-LT: the DSS revision follows the signature; B-B/B-T: nothing does
    assert signature["whole_file"] is (level in ("B-B", "B-T"))
    if level == "B-LTA":
        (stamp,) = stamps
        assert stamp["timestamp_only"] and stamp["tspok"] and stamp["whole_file"], stamp
    else:
        assert stamps == []


def test_endesive_verifies_archive_timestamps(documents: dict[tuple[str, str], bytes],
                                              tmp_path: Path) -> None:
    results = _endesive(documents["rsa2048", "archived"], tmp_path)
    assert len(results) == 3
    assert all(r["tspok"] for r in results[1:]) and results[-1]["whole_file"], results


def test_endesive_detects_tampering(documents: dict[tuple[str, str], bytes],
                                    tmp_path: Path) -> None:
    forged = documents["rsa2048", "B-LT"].replace(b"e-prescription 0001",
                                                  b"e-prescription 0002")
    (signature,) = _endesive(forged, tmp_path)
    assert signature["hashok"] is False


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
@pytest.mark.parametrize("level", ["B-LT", "B-LTA", "archived"])
def test_qpdf_check(documents: dict[tuple[str, str], bytes], key_type: str, level: str,
                    tmp_path: Path) -> None:
    qpdf = require_tool("qpdf")
    path = tmp_path / "signed.pdf"
    path.write_bytes(documents[key_type, level])
    result = run_tool([qpdf, "--check", path])
    assert b"No syntax or stream encoding errors found" in result.stdout, result.stdout


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
def test_pdfsig_validates_rsa(documents: dict[tuple[str, str], bytes], level: str,
                              tmp_path: Path) -> None:
    nssdir = _nss_db(tmp_path / "nss", cached_pki("rsa2048").root)
    signature, *stamps = _pdfsig(documents["rsa2048", level], nssdir, tmp_path)
    assert signature["Signature Validation"] == "Signature is Valid.", signature
    assert signature["Certificate Validation"] == "Certificate is Trusted.", signature
    assert signature["Signature Type"] == "ETSI.CAdES.detached"
    assert "Not total document signed" in signature  # the DSS (and timestamp) follow
    if level == "B-LTA":
        (stamp,) = stamps
        assert stamp["Signature Field Name"] == "ArchiveTimestamp1"
        assert "Total document signed" in stamp, stamp
    else:
        assert stamps == []


def test_gmssl_checks_the_sm2_cms_of_a_b_lt_document(
        documents: dict[tuple[str, str], bytes]) -> None:
    data = documents["sm2", "B-LT"]
    ((signed, signed_data),) = list(_signatures(data))
    assert len(signed) < len(data)  # the DSS revision is outside the signed ranges
    (signer_info,) = signed_data["signer_infos"]
    attrs = signer_info["signed_attrs"]
    digest = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    assert gmssl_oracle.sm3(signed) == digest
    pki = cached_pki("sm2")
    public = pki.doctor.public_key()
    attrs_der = attrs.untag().dump()
    signature = signer_info["signature"].native
    assert gmssl_oracle.verify(public, signature, attrs_der)  # type: ignore[arg-type]
    assert not gmssl_oracle.verify(public, signature, attrs_der + b"\x00")  # type: ignore[arg-type]
