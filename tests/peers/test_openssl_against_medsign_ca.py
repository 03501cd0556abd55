"""The built-in CA of a running ``medsign serve``, checked by the real OpenSSL tools.

The operator creates an RSA hierarchy and issues a certificate for a key and CSR that OpenSSL
made (``medsign ca init|issue``); then:

- ``openssl ocsp -url http://127.0.0.1:PORT/ocsp`` asks our responder and verifies the signed
  answer against the root: ``good``; after ``medsign ca revoke``, ``revoked`` (keyCompromise);
- the CRL fetched from ``/crl/<ca>.crl`` (the URL in the certificate) makes
  ``openssl verify -crl_check`` reject the certificate as revoked, where the one fetched before
  the revocation let it pass.

SM2 is left to tests/peers/test_openssl_ocsp.py and test_openssl_ca.py (OpenSSL 3.0 cannot
pass the SM2 ID to OCSP or CRL verification).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from signcore.x509 import load_certificate
from tests.appliance.serving import cli, serving
from tests.support.peers import run_tool
from tests.support.pki import write_pem

pytestmark = pytest.mark.peer


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 -- loopback http
        data: bytes = answer.read()
        return data


def test_openssl_ocsp_and_crl_against_the_running_ca(openssl_bin: str, tmp_path: Path) -> None:
    config_file = tmp_path / "var" / "medsign.toml"
    assert cli("init", "--demo", "--config", config_file).code == 0
    key, csr = tmp_path / "leaf.key", tmp_path / "leaf.csr"
    run_tool([openssl_bin, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
              "-subj", "/CN=ignored", "-out", csr])
    with serving(config_file, workers=2, threads=2) as server:
        made = cli("ca", "init", "--config", config_file, "--algorithm", "rsa",
                   "--organization", "测试医院")
        assert made.code == 0, made.err
        ca_id = re.search(r"created (\S+):", made.out).group(1)  # type: ignore[union-attr]
        leaf_file = tmp_path / "leaf.pem"
        issued = cli("ca", "issue", "--config", config_file, csr, "--algorithm", "rsa",
                     "--profile", "doctor-signing", "--cn", "孙八", "--org", "测试医院",
                     "--dept", "急诊科", "--unique-id", "U0102030405060708", "--out", leaf_file)
        assert issued.code == 0, issued.err
        cert_id = re.search(r"issued certificate (\d+)", issued.out).group(1)  # type: ignore[union-attr]
        issuing = load_certificate(_fetch(f"{server.url}/ca/{ca_id}.crt"))
        leaf = load_certificate(leaf_file.read_bytes())
        assert leaf.extensions.ocsp_urls and leaf.extensions.crl_urls
        issuing_file = write_pem(tmp_path / "issuing.pem", issuing)
        shown = cli("ca", "show", "--config", config_file, cert_id)
        root = load_certificate(_fetch(f"{server.url}/ca/{ca_id}-root.crt"))
        root_pem = write_pem(tmp_path / "root.pem", root)
        assert shown.code == 0 and "孙八" in shown.out

        def ask() -> str:
            proc = run_tool([openssl_bin, "ocsp", "-url", f"{server.url}/ocsp", "-issuer",
                             issuing_file, "-cert", leaf_file, "-CAfile", root_pem,
                             "-verify_other", issuing_file], check=False)
            return (proc.stdout + proc.stderr).decode()

        answer = ask()
        assert "Response verify OK" in answer and "leaf.pem: good" in answer, answer
        crl_before = tmp_path / "before.crl"
        crl_before.write_bytes(_fetch(f"{server.url}/crl/{ca_id}.crl"))
        chain = write_pem(tmp_path / "chain.pem", issuing, root)

        def verify(crl: Path) -> str:
            proc = run_tool([openssl_bin, "verify", "-crl_check", "-CAfile", chain,
                             "-CRLfile", crl, leaf_file], check=False)
            return (proc.stdout + proc.stderr).decode()

        run_tool([openssl_bin, "crl", "-inform", "DER", "-in", crl_before, "-out",
                  tmp_path / "before.pem"])
        assert "leaf.pem: OK" in verify(tmp_path / "before.pem")
        revoked = cli("ca", "revoke", "--config", config_file, cert_id, "--reason",
                      "key_compromise")
        assert revoked.code == 0, revoked.err
        answer = ask()
        assert "Response verify OK" in answer and "leaf.pem: revoked" in answer, answer
        assert "Reason: keyCompromise" in answer, answer
        # The certificate names the CRL under server.public_url (the default 127.0.0.1:8080):
        # fetch the same path from this test's port.
        crl_path = "/crl/" + leaf.extensions.crl_urls[0].split("/crl/", 1)[1]
        assert crl_path == f"/crl/{ca_id}.crl"
        (tmp_path / "after.crl").write_bytes(_fetch(server.url + crl_path))
        run_tool([openssl_bin, "crl", "-inform", "DER", "-in", tmp_path / "after.crl", "-out",
                  tmp_path / "after.pem"])
        result = verify(tmp_path / "after.pem")
        assert "certificate revoked" in result and "leaf.pem: OK" not in result, result
