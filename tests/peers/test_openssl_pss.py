"""RSASSA-PSS made by OpenSSL with its default (maximum) salt length verifies with signcore,
raw and in CMS: PSS recovers the salt, so verification must not insist on salt = digest length."""

from __future__ import annotations

from pathlib import Path

import pytest

from signcore import SignatureAlgorithm, cms, keys, x509
from tests.support.peers import run_tool
from tests.support.pki import PkiFiles, cached_pki

pytestmark = pytest.mark.peer


@pytest.fixture(scope="module")
def rsa_material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    files = PkiFiles(cached_pki("rsa2048"), tmp_path_factory.mktemp("pss"))
    return files.key_file("doctor"), files.cert_file("doctor"), files.root


def test_openssl_default_salt_pss_raw_signature_verifies(
        openssl_bin: str, rsa_material: tuple[Path, Path, Path], tmp_path: Path) -> None:
    key, _, _ = rsa_material
    data = tmp_path / "doc"
    data.write_bytes("处方 PSS".encode())
    sig = tmp_path / "sig"
    run_tool([openssl_bin, "dgst", "-sha256", "-sign", key, "-sigopt", "rsa_padding_mode:pss",
              "-out", sig, data])
    public = keys.load_private_key(key.read_bytes()).public_key()
    public.verify(sig.read_bytes(), data.read_bytes(), SignatureAlgorithm.RSA_PSS_SHA256)
    assert not public.is_valid(sig.read_bytes(), data.read_bytes() + b"x",
                               SignatureAlgorithm.RSA_PSS_SHA256)


def test_openssl_default_salt_pss_cms_verifies(
        openssl_bin: str, rsa_material: tuple[Path, Path, Path], tmp_path: Path) -> None:
    key, cert, root = rsa_material
    data = tmp_path / "doc"
    data.write_bytes(b"prescription 42")
    out = tmp_path / "sig.p7s"
    run_tool([openssl_bin, "cms", "-sign", "-binary", "-in", data, "-signer", cert, "-inkey", key,
              "-keyopt", "rsa_padding_mode:pss", "-outform", "DER", "-out", out])
    roots = x509.load_certificates(root.read_bytes())
    result = cms.verify(out.read_bytes(), content=data.read_bytes(), trust_roots=roots,
                        intermediates=[cached_pki("rsa2048").issuing])
    assert result.valid, result.signers[0].problems
    assert result.signers[0].signature_algorithm is SignatureAlgorithm.RSA_PSS_SHA256
    tampered = cms.verify(out.read_bytes(), content=b"prescription 43", trust_roots=roots,
                          intermediates=[cached_pki("rsa2048").issuing])
    assert not tampered.valid
