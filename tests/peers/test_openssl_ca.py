"""The built-in CA's certificates and CRLs against the real ``openssl verify`` and ``openssl x509``.

- RSA: ``openssl verify -crl_check -CAfile root+issuing -CRLfile crl`` accepts a doctor's chain
  and, after revocation and a new CRL (full, then delta), rejects it as revoked.
- SM2: OpenSSL 3.0 passes the SM2 ID only to the end certificate (``-vfyopt distid``), so the
  leaf is checked against the issuing CA as a partial chain, and the issuing CA against the root
  the same way (PEERS.md).
- ``openssl x509 -text`` shows the health-sector subject and the profile's extensions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ca_client import BuiltinCa, CaUrls, MemoryRepository, SubjectInfo, generate_hierarchy
from signcore.keys import generate_private_key
from signcore.x509 import build_csr
from tests.support.peers import run_tool
from tests.support.pki import write_pem

pytestmark = pytest.mark.peer

DISTID = "distid:1234567812345678"
DOCTOR = SubjectInfo(common_name="李四", organization="测试医院", department="药剂科",
                     title="主管药师", unique_id="U0011223344556677")


def _verify(openssl: str, *args: str | Path) -> str:
    proc = run_tool([openssl, "verify", *args], check=False)
    return (proc.stdout + proc.stderr).decode()


def test_rsa_chain_with_crl_check(openssl_bin: str, tmp_path: Path) -> None:
    h = generate_hierarchy("rsa", "测试医院")
    repository = MemoryRepository()
    ca = BuiltinCa("rsa-1", h.issuing, h.issuing_key, repository,
                   urls=CaUrls(crl="http://127.0.0.1/crl/rsa-1.crl",
                               delta_crl="http://127.0.0.1/crl/rsa-1-delta.crl"))
    leaf = ca.issue("pharmacist-signing", DOCTOR,
                    csr=build_csr(generate_private_key("rsa2048"), "CN=x")).certificate
    chain = write_pem(tmp_path / "chain.pem", h.issuing, h.root)
    leaf_file = write_pem(tmp_path / "leaf.pem", leaf)
    base = ca.crl(1)
    crl = write_pem(tmp_path / "crl1.pem", base)
    out = _verify(openssl_bin, "-crl_check", "-CAfile", chain, "-CRLfile", crl, leaf_file)
    assert "leaf.pem: OK" in out, out
    ca.revoke(leaf.serial_number, "key_compromise")
    crl2 = write_pem(tmp_path / "crl2.pem", ca.crl(2))
    out = _verify(openssl_bin, "-crl_check", "-CAfile", chain, "-CRLfile", crl2, leaf_file)
    assert "certificate revoked" in out and "leaf.pem: OK" not in out, out
    # The older base (before the revocation) plus a delta CRL report it too (-use_deltas).
    both = write_pem(tmp_path / "both.pem", base, ca.crl(3, delta_of=(1, base.this_update)))
    out = _verify(openssl_bin, "-crl_check", "-use_deltas", "-CAfile", chain, "-CRLfile", both,
                  leaf_file)
    assert "certificate revoked" in out, out
    text = run_tool([openssl_bin, "x509", "-in", leaf_file, "-noout", "-text", "-nameopt",
                     "utf8"]).stdout.decode()
    assert "CN=李四" in text and "OU=药剂科" in text and "title=主管药师" in text, text
    assert "serialNumber=U0011223344556677" in text, text
    assert "1.2.156.10260.4.1.1" in text and "http://127.0.0.1/crl/rsa-1.crl" in text, text
    assert "Digital Signature, Non Repudiation" in text, text


def test_sm2_chain_link_by_link(openssl_bin: str, tmp_path: Path) -> None:
    h = generate_hierarchy("sm2", "测试医院")
    ca = BuiltinCa("sm2-1", h.issuing, h.issuing_key, MemoryRepository())
    leaf = ca.issue("doctor-signing", dataclasses.replace(DOCTOR, title="主任医师"),
                    csr=build_csr(generate_private_key("sm2"), "CN=x")).certificate
    issuing = write_pem(tmp_path / "issuing.pem", h.issuing)
    root = write_pem(tmp_path / "root.pem", h.root)
    leaf_file = write_pem(tmp_path / "leaf.pem", leaf)
    out = _verify(openssl_bin, "-partial_chain", "-CAfile", issuing, "-vfyopt", DISTID,
                  leaf_file)
    assert "leaf.pem: OK" in out, out
    out = _verify(openssl_bin, "-CAfile", root, "-vfyopt", DISTID, issuing)
    assert "issuing.pem: OK" in out, out
    # Negative control: the leaf does not chain to a stranger's issuing CA.
    stranger = write_pem(tmp_path / "stranger.pem", generate_hierarchy("sm2", "别的医院").issuing)
    out = _verify(openssl_bin, "-partial_chain", "-CAfile", stranger, "-vfyopt", DISTID,
                  leaf_file)
    assert "leaf.pem: OK" not in out, out
