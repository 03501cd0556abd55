"""Signature appearances (seal image, handwriting as vector paths and as PNG, Chinese lines)
against real third-party tools: ``qpdf --check`` finds no error (SM2 and RSA), poppler's
``pdfsig`` validates the RSA signatures (the strokes digest attribute does not disturb it),
``pdftotext`` gets the Chinese lines back out, ``pdffonts`` shows the appearance font embedded
and subset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pdfsign
from pdfsign import Appearance, Slot
from tests.pdfsign.pdfs import minimal_pdf
from tests.pdfsign.test_appearance import seal_png, signature_strokes
from tests.peers.test_pdf_peers import _nss_db, _pdfsig
from tests.support.peers import require_tool, run_tool
from tests.support.pki import TestPKI, cached_pki, issue_leaf

pytestmark = pytest.mark.peer

KINDS = ("seal", "handwriting", "handwriting-png", "two-phase", "slots")


def _documents(pki: TestPKI) -> Iterator[tuple[str, bytes]]:
    def sign(appearance: Appearance, pdf: bytes | None = None, field: str = "Signature1",
             ) -> bytes:
        return pdfsign.sign_pdf(pdf or minimal_pdf(), pki.doctor_key, pki.doctor,
                                chain=pki.chain, field=field, appearance=appearance)

    yield "seal", sign(Appearance((300, 80, 500, 200), image=seal_png(),
                                  lines=("测试医院（电子印章）", "%(ts)s")))
    yield "handwriting", sign(Appearance((72, 80, 272, 180), strokes=signature_strokes(),
                                         lines=("张三", "主治医师")))
    yield "handwriting-png", sign(Appearance((72, 80, 272, 180), strokes=signature_strokes(),
                                             vector=False, lines=("张三",)))
    prepared = pdfsign.prepare_pdf(minimal_pdf(), pki.doctor, chain=pki.chain,
                                   appearance=Appearance((72, 80, 272, 180),
                                                         strokes=signature_strokes(),
                                                         lines=("王五 药师",)))
    yield "two-phase", prepared.finish(pki.doctor_key.sign_digest(prepared.digest()))
    first = pdfsign.sign_pdf(minimal_pdf(), pki.doctor_key, pki.doctor, chain=pki.chain,
                             field="doctor", appearance=Appearance(
                                 (72, 80, 272, 180), strokes=signature_strokes(),
                                 lines=("张三",)),
                             slots=[Slot("seal", box=(300, 80, 500, 200))])
    # Another signer for the seal: NSS reports "Unknown issue with Certificate" for a second
    # signature by the same certificate (with or without an appearance).
    seal, seal_key = issue_leaf(pki, "CN=seal,O=测试医院,C=CN", extensions=pki.doctor.extensions)
    yield "slots", pdfsign.sign_pdf(first, seal_key, seal, chain=pki.chain, field="seal",
                                    appearance=Appearance(image=seal_png(), lines=("测试医院",)))


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, bytes]]:
    return {kt: dict(_documents(cached_pki(kt))) for kt in ("sm2", "rsa2048")}


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "signed.pdf"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("key_type", ["sm2", "rsa2048"])
@pytest.mark.parametrize("kind", KINDS)
def test_qpdf_check(documents: dict[str, dict[str, bytes]], key_type: str, kind: str,
                    tmp_path: Path) -> None:
    result = run_tool([require_tool("qpdf"), "--check", _write(tmp_path,
                                                               documents[key_type][kind])],
                      check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"No syntax or stream encoding errors found" in result.stdout, result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_pdfsig_validates_rsa(documents: dict[str, dict[str, bytes]], kind: str,
                              tmp_path: Path) -> None:
    pki = cached_pki("rsa2048")
    verdicts = _pdfsig(documents["rsa2048"][kind], _nss_db(tmp_path / "nss", pki.root),
                       tmp_path)
    assert len(verdicts) == (2 if kind == "slots" else 1)
    for verdict in verdicts:
        assert verdict["Signature Validation"] == "Signature is Valid.", verdict
        assert verdict["Certificate Validation"] == "Certificate is Trusted.", verdict


@pytest.mark.parametrize("kind", KINDS)
def test_chinese_lines_are_extractable(documents: dict[str, dict[str, bytes]], kind: str,
                                       tmp_path: Path) -> None:
    path = _write(tmp_path, documents["sm2"][kind])
    text = run_tool([require_tool("pdftotext"), "-enc", "UTF-8", path, "-"]).stdout.decode()
    expected = {"seal": ["测试医院（电子印章）", "UTC"], "handwriting": ["张三", "主治医师"],
                "handwriting-png": ["张三"], "two-phase": ["王五 药师"],
                "slots": ["张三", "测试医院"]}[kind]
    for line in expected:
        assert line in text, (line, text)


@pytest.mark.parametrize("kind", KINDS)
def test_appearance_fonts_embedded_and_subset(documents: dict[str, dict[str, bytes]],
                                              kind: str, tmp_path: Path) -> None:
    path = _write(tmp_path, documents["sm2"][kind])
    lines = run_tool([require_tool("pdffonts"), path]).stdout.decode().splitlines()[2:]
    cjk = [line for line in lines if "Identity-H" in line]
    assert cjk, lines
    for line in cjk:
        emb, sub, uni = line.split()[-5:-2]
        assert (emb, sub, uni) == ("yes", "yes", "yes"), line
