"""Two signers in one SignedData (prepare/finish + add_signer) against the real OpenSSL CLI.

- RSA: ``openssl cms -verify`` checks every SignerInfo, so a doctor + pharmacist CMS built by
  signcore's two-phase signing and ``add_signer`` must verify as a whole, and fail when either
  signature is broken.
- SM2: OpenSSL 3.0 cannot verify SM2 CMS (see test_openssl_cms.py), so it parses the structure
  (``cms -cmsout -print`` lists both SignerInfos, in the order they were added) and
  ``pkeyutl`` with the explicit distid verifies each SignerInfo's signature; gmssl does too.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from asn1crypto import cms as acms

from signcore import cms
from signcore.algorithms import DEFAULT_SM2_ID
from signcore.keys import PrivateKey
from signcore.sm2 import SM2PublicKey
from signcore.x509 import Certificate, Extensions
from tests.support import gmssl_oracle
from tests.support.peers import run_tool
from tests.support.pki import PkiFiles, cached_pki, issue_leaf, write_pem

pytestmark = pytest.mark.peer

PRESCRIPTION = "电子处方 2025-06-07：头孢克肟 0.1g bid × 5 日\r\n".encode() + bytes(range(256))
DISTID = "distid:" + DEFAULT_SM2_ID.decode()


@functools.cache
def pharmacist(key_type: str) -> tuple[Certificate, PrivateKey]:
    return issue_leaf(cached_pki(key_type), "CN=赵六,OU=药剂科,O=测试医院,C=CN",
                      extensions=Extensions(ca=False, key_usage=frozenset(
                          {"digital_signature", "non_repudiation"})))


def two_signers(key_type: str, *, flavor: cms.CMSFlavor = cms.CMSFlavor.RFC5652,
                detached: bool = False) -> bytes:
    """The doctor signs, then the pharmacist; both through prepare/finish, merged."""
    pki = cached_pki(key_type)
    signed = []
    for cert, key in ((pki.doctor, pki.doctor_key), pharmacist(key_type)):
        prepared = cms.prepare(PRESCRIPTION, cert, flavor=flavor, detached=detached,
                               extra_certificates=[pki.issuing])
        prepared = cms.PreparedSignature.from_dict(prepared.to_dict())  # as if stored
        signed.append(prepared.finish(key.sign(prepared.to_be_signed, prepared.algorithm,
                                               signer_id=prepared.signer_id)))
    return cms.add_signer(signed[0], signed[1])


def openssl_verify(openssl: str, files: PkiFiles, der: bytes, *,
                   content: bytes | None = None) -> tuple[int, bytes, str]:
    out = files.path("verified.out")
    out.unlink(missing_ok=True)
    args: list[str | Path] = [openssl, "cms", "-verify", "-in", files.path("multi.p7s", der),
                              "-inform", "DER", "-CAfile", files.root, "-binary", "-out", out]
    if content is not None:
        args += ["-content", files.path("content.bin", content)]
    result = run_tool(args, check=False)
    return (result.returncode, out.read_bytes() if out.exists() else b"",
            result.stderr.decode("utf-8", "replace"))


def printed_signer_serials(openssl: str, files: PkiFiles, der: bytes) -> list[int]:
    """The issuerAndSerialNumber serials of the SignerInfos, as ``cms -cmsout -print`` shows."""
    printed = run_tool([openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in",
                        files.path("print.p7s", der)]).stdout.decode("utf-8", "replace")
    _, _, signer_part = printed.partition("signerInfos:")
    assert signer_part, printed
    assert signer_part.count("d.issuerAndSerialNumber:") == len(
        re.findall(r"^\s+version: \d+$", signer_part, re.MULTILINE))
    return [int(m, 16) for m in re.findall(r"serialNumber: 0x([0-9A-F]+)", signer_part)]


@pytest.mark.parametrize("detached", [False, True], ids=["attached", "detached"])
def test_openssl_verifies_a_two_signer_rsa_cms(openssl_bin: str, tmp_path: Path,
                                               detached: bool) -> None:
    pki = cached_pki("rsa2048")
    files = PkiFiles(pki, tmp_path)
    der = two_signers("rsa2048", detached=detached)
    code, out, text = openssl_verify(openssl_bin, files, der,
                                     content=PRESCRIPTION if detached else None)
    assert code == 0, text
    assert "Verification successful" in text
    assert out == PRESCRIPTION
    assert printed_signer_serials(openssl_bin, files, der) == \
        [pki.doctor.serial_number, pharmacist("rsa2048")[0].serial_number]
    result = cms.verify(der, content=PRESCRIPTION if detached else None,
                        trust_roots=[pki.root])
    assert result.valid and len(result.signers) == 2


@pytest.mark.parametrize("index", [0, 1], ids=["doctor", "pharmacist"])
def test_openssl_rejects_a_two_signer_cms_with_one_bad_signature(openssl_bin: str,
                                                                 tmp_path: Path,
                                                                 index: int) -> None:
    files = PkiFiles(cached_pki("rsa2048"), tmp_path)
    der = two_signers("rsa2048")
    signature = bytes(acms.ContentInfo.load(der)["content"]["signer_infos"][index]
                      ["signature"].native)
    assert der.count(signature) == 1
    broken = der.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
    code, _, text = openssl_verify(openssl_bin, files, broken)
    assert code != 0
    assert "Verification failure" in text
    assert [s.integrity for s in cms.verify(broken).signers] == [index != 0, index != 1]


def test_openssl_lists_both_signer_infos_of_an_sm2_cms(openssl_bin: str,
                                                       tmp_path: Path) -> None:
    pki = cached_pki("sm2")
    files = PkiFiles(pki, tmp_path)
    pharmacist_cert = pharmacist("sm2")[0]
    der = two_signers("sm2")
    assert printed_signer_serials(openssl_bin, files, der) == \
        [pki.doctor.serial_number, pharmacist_cert.serial_number]
    # Each SignerInfo's SM2 signature over its DER SET of signed attributes: OpenSSL (explicit
    # distid) and gmssl agree.
    for info, cert in zip(acms.ContentInfo.load(der)["content"]["signer_infos"],
                          (pki.doctor, pharmacist_cert), strict=True):
        encoded = info["signed_attrs"].dump()
        attrs = files.path("attrs.der", b"\x31" + encoded[1:])
        signature = bytes(info["signature"].native)
        pub = write_pem(files.path("pub.pem"), cert.public_key())
        ok = run_tool([openssl_bin, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
                       "-digest", "sm3", "-pkeyopt", DISTID, "-in", attrs,
                       "-sigfile", files.path("sig.der", signature)])
        assert b"Signature Verified Successfully" in ok.stdout
        public = cert.public_key()
        assert isinstance(public, SM2PublicKey)
        assert gmssl_oracle.verify(public, signature, b"\x31" + encoded[1:])
    result = cms.verify(der, trust_roots=[pki.root])
    assert result.valid
    assert [s.signer_certificate for s in result.signers] == [pki.doctor, pharmacist_cert]
