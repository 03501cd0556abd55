"""Evidence reports against real third-party tools: ``qpdf --check`` finds nothing wrong,
poppler's ``pdftotext`` extracts the Chinese text, and when the appliance's seal is RSA,
poppler's ``pdfsig`` validates the report's signature (NSS, trusting the built-in CA's root);
our validator validates it for SM2 and RSA alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.custody import KekStore, KeyHolder, Keyring
from appliance.custody.kek import new_kek
from appliance.storage import Database
from evidence.verify import verify_report
from tests.appliance.evidence.conftest import make_hospital
from tests.appliance.evidence.test_evidence import _pdf, _report, _signed_prescription
from tests.peers.test_pdf_peers import _nss_db, _pdfsig
from tests.support.chrony import chrony_server
from tests.support.peers import LoopbackProcess, require_tool, run_tool

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def ntp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProcess]:
    with chrony_server(tmp_path_factory.mktemp("chrony")) as server:
        yield server


def _report_pdf(tmp_path: Path, ntp: LoopbackProcess, algorithm: str) -> tuple[bytes, object]:
    database = Database(f"sqlite:///{tmp_path / 'medsign.db'}")
    database.migrate()
    holder = KeyHolder(KekStore(database))
    holder.adopt(Keyring(new_kek()))
    assert ntp.port is not None
    hospital = make_hospital(database, holder, ntp.port, algorithm)
    try:
        request, _grant = _signed_prescription(hospital)
        answer = _report(hospital, {"sign_request_id": request["id"]})
        assert answer["verdict"] == "valid", answer["problems"]
        return _pdf(hospital, answer), hospital.ca.active_authority(algorithm).root
    finally:
        hospital.site.appliance.audit.close()
        database.dispose()


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_the_report_passes_qpdf_and_its_chinese_text_extracts(
        tmp_path: Path, ntp: LoopbackProcess, algorithm: str) -> None:
    pdf, root = _report_pdf(tmp_path, ntp, algorithm)
    verdict = verify_report(pdf, trust=[root])  # type: ignore[list-item]
    assert verdict.ok, verdict.failures
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    checked = run_tool([require_tool("qpdf"), "--check", path], check=False)
    assert checked.returncode == 0, checked.stdout
    assert b"No syntax or stream encoding errors found" in checked.stdout
    text = run_tool([require_tool("pdftotext"), "-enc", "UTF-8", path, "-"]).stdout.decode()
    for phrase in ("电子签名证据报告", "结论：有效", "签署过程时间线", "张医生", "李药师",
                   "免密签名授权", "输入 PIN 确认", "附录：审计日志证明"):
        assert phrase in text, phrase
    listed = run_tool([require_tool("pdfdetach"), "-list", path]).stdout.decode()
    assert "evidence.json" in listed


def test_pdfsig_validates_an_rsa_report(tmp_path: Path, ntp: LoopbackProcess) -> None:
    """pdfsig checks the report's RSA signature over the whole file and sees a changed byte.
    (Its certificate verdict for the built-in CA's seal is "Unknown issue with Certificate",
    though NSS's vfychain accepts the same chain for e-mail signing: trust in the seal is
    checked by our validator with the root pinned, in the test above.)"""
    pdf, root = _report_pdf(tmp_path, ntp, "rsa")
    nssdir = _nss_db(tmp_path / "nss", root)  # type: ignore[arg-type]
    signature, archive = _pdfsig(pdf, nssdir, tmp_path)  # the seal, then B-LTA's time stamp
    assert signature["Signature Validation"] == "Signature is Valid.", signature
    assert signature["Signature Type"] == "ETSI.CAdES.detached"
    assert signature["Signing Hash Algorithm"] == "SHA-256"
    assert "测试医院电子印章" in signature["Signer Certificate Common Name"]
    # poppler lists the document time stamp ("unknown" type) and that it covers the file
    assert archive["Signature Field Name"].startswith("ArchiveTimestamp"), archive
    assert "Total document signed" in archive, archive
    at = pdf.index(b"(medsign)")
    tampered = pdf[:at + 1] + b"M" + pdf[at + 2:]
    verdicts = _pdfsig(tampered, nssdir, tmp_path)
    assert all(v["Signature Validation"] != "Signature is Valid." for v in verdicts), verdicts
