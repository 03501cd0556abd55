"""Certificates, CSRs and CRLs against the real OpenSSL 3.0 CLI, both ways.

OpenSSL checks what signcore makes (the declared test PKI of ``tests.support.pki``) and signcore
checks what OpenSSL makes.  OpenSSL 3.0 behaviours these tests rely on (see PEERS.md):

- SM2 needs ``distid:1234567812345678`` everywhere (``-sigopt`` to sign, ``-vfyopt`` /
  ``-pkeyopt`` to verify); without it OpenSSL uses an EMPTY ID.  For RSA/ECDSA ``-vfyopt distid``
  makes OpenSSL fail, so it is passed for SM2 only.
- ``openssl verify -vfyopt`` applies the ID to the certificate being verified only, not to the
  CA certificates from ``-CAfile``/``-untrusted``: a three-level SM2 chain fails at depth 1 with
  "certificate signature failure" even when OpenSSL made every certificate itself.  SM2 chains
  are therefore checked link by link (``-partial_chain`` with the issuing CA as anchor).
- The SM2 root's self-signature (``-check_ss_sig`` does not get the ID) and SM2 CRLs
  (``openssl crl -CAfile`` / ``verify -crl_check`` cannot pass an ID) are checked with
  ``openssl pkeyutl -verify ... -rawin -digest sm3 -pkeyopt distid:...`` over the TBS bytes.
- ``openssl req -verify`` exits 0 even when the signature is bad: read its message.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509

from signcore.algorithms import SignatureAlgorithm
from signcore.errors import InvalidSignature, PathValidationError
from signcore.keys import generate_private_key, load_private_key
from signcore.path import validate_path
from signcore.x509 import (
    CRL,
    Certificate,
    Extensions,
    build_csr,
    issue_certificate,
    key_identifier,
    load_certificate,
    load_crl,
    load_csr,
    parse_name,
)
from tests.support.peers import run_tool
from tests.support.pki import (
    DOCTOR_SUBJECT,
    KEY_TYPES,
    POLICY_OID,
    URLS,
    TestPKI,
    cached_pki,
    write_pem,
)

pytestmark = pytest.mark.peer

DISTID = "distid:1234567812345678"
Run = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def ossl(openssl_bin: str, tmp_path: Path) -> Run:
    """Run ``openssl`` with the given arguments in ``tmp_path``; PeerError when it fails."""

    def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run_tool([openssl_bin, *map(str, args)], cwd=tmp_path, check=check)

    return run


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return (proc.stdout + proc.stderr).decode("utf-8", "replace")


def _vfy(key_type: str) -> list[str]:
    """``-vfyopt distid:...`` for SM2 only (it breaks RSA and ECDSA verification)."""
    return ["-vfyopt", DISTID] if key_type == "sm2" else []


def _sign_opts(key_type: str) -> list[str]:
    """Digest and signature options for OpenSSL signing with a key of this type."""
    return ["-sm3", "-sigopt", DISTID] if key_type == "sm2" else ["-sha256"]


def _newkey(key_type: str) -> list[str]:
    return {"sm2": ["-newkey", "sm2"], "rsa2048": ["-newkey", "rsa:2048"],
            "ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]}[key_type]


@pytest.fixture(params=KEY_TYPES)
def pki(request: pytest.FixtureRequest) -> TestPKI:
    return cached_pki(request.param)


def _verify_chain(ossl: Run, tmp_path: Path, pki: TestPKI, leaf: Certificate, *extra: str,
                  check: bool = True) -> str:
    """``openssl verify`` of leaf -> issuing -> root; returns OpenSSL's output."""
    root = write_pem(tmp_path / "root.pem", pki.root)
    issuing = write_pem(tmp_path / "issuing.pem", pki.issuing)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)
    if pki.key_type != "sm2":
        return _out(ossl("verify", "-CAfile", root, "-untrusted", issuing, *extra, leaf_pem,
                         check=check))
    # SM2: one link at a time (see the module docstring).
    assert "OK" in _out(ossl("verify", "-CAfile", root, "-vfyopt", DISTID, issuing))
    return _out(ossl("verify", "-partial_chain", "-CAfile", issuing, "-vfyopt", DISTID, *extra,
                     leaf_pem, check=check))


def _pkeyutl_verify(ossl: Run, tmp_path: Path, public_pem: bytes, tbs: bytes, signature: bytes,
                    *opts: str) -> bool:
    (tmp_path / "pub.pem").write_bytes(public_pem)
    (tmp_path / "tbs.der").write_bytes(tbs)
    (tmp_path / "sig.der").write_bytes(signature)
    proc = ossl("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
                *opts, "-in", "tbs.der", "-sigfile", "sig.der", check=False)
    verified = "Signature Verified Successfully" in _out(proc)
    assert verified == (proc.returncode == 0), _out(proc)
    return verified


# ============================================================================================
# OpenSSL checks what signcore makes


@pytest.mark.parametrize(("role", "purpose"), [
    ("doctor", ["-purpose", "smimesign"]),
    ("tsa", ["-purpose", "timestampsign"]),
    ("tls", ["-purpose", "sslserver", "-verify_hostname", "localhost", "-verify_ip", "127.0.0.1"]),
    ("revoked", []),
])
def test_openssl_verifies_our_chains(ossl: Run, tmp_path: Path, pki: TestPKI, role: str,
                                     purpose: list[str]) -> None:
    out = _verify_chain(ossl, tmp_path, pki, pki.certificate(role), *purpose)
    assert "leaf.pem: OK" in out


@pytest.mark.parametrize(("role", "options"), [
    ("doctor", ["-purpose", "sslserver"]),
    ("doctor", ["-purpose", "timestampsign"]),
    ("tls", ["-verify_hostname", "example.com"]),
])
def test_openssl_agrees_on_what_our_leaves_are_not_for(ossl: Run, tmp_path: Path, pki: TestPKI,
                                                       role: str, options: list[str]) -> None:
    out = _verify_chain(ossl, tmp_path, pki, pki.certificate(role), *options, check=False)
    assert "unsuitable certificate purpose" in out or "hostname mismatch" in out, out


def test_openssl_refuses_our_expired_leaf(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    out = _verify_chain(ossl, tmp_path, pki, pki.expired, check=False)
    assert "certificate has expired" in out, out


def test_openssl_sees_the_sm2_signatures_need_the_default_id(ossl: Run, tmp_path: Path) -> None:
    """Our SM2 certificate does not verify with OpenSSL's default (empty) ID: we really sign
    with ``1234567812345678`` and not with whatever OpenSSL would assume."""
    pki = cached_pki("sm2")
    root = write_pem(tmp_path / "root.pem", pki.root)
    issuing = write_pem(tmp_path / "issuing.pem", pki.issuing)
    assert "OK" in _out(ossl("verify", "-CAfile", root, "-vfyopt", DISTID, issuing))
    out = _out(ossl("verify", "-CAfile", root, issuing, check=False))
    assert "certificate signature failure" in out, out


@pytest.mark.parametrize("key_type", ["rsa2048", "ecdsa-p256"])
def test_openssl_crl_check_finds_our_revoked_leaf(ossl: Run, tmp_path: Path,
                                                  key_type: str) -> None:
    pki = cached_pki(key_type)
    crl = write_pem(tmp_path / "crl.pem", pki.crl)
    revoked = _verify_chain(ossl, tmp_path, pki, pki.revoked, "-crl_check", "-CRLfile", crl,
                            check=False)
    assert "certificate revoked" in revoked, revoked
    good = _verify_chain(ossl, tmp_path, pki, pki.doctor, "-crl_check", "-CRLfile", crl)
    assert "leaf.pem: OK" in good
    # The CRL's own signature, and its contents as OpenSSL reads them.
    issuing = write_pem(tmp_path / "issuing.pem", pki.issuing)
    assert "verify OK" in _out(ossl("crl", "-in", crl, "-CAfile", issuing, "-noout"))
    text = _out(ossl("crl", "-in", crl, "-noout", "-text"))
    assert f"Serial Number: {pki.revoked.serial_number:040X}" in text
    assert "Key Compromise" in text
    assert re.search(r"X509v3 CRL Number: \n\s+1\n", text), text


def test_our_sm2_crl_and_root_verify_with_pkeyutl(ossl: Run, tmp_path: Path) -> None:
    pki = cached_pki("sm2")
    crl_tbs = pki.crl.asn1["tbs_cert_list"].dump()
    crl_sig = bytes(pki.crl.asn1["signature"])
    issuing_pub = pki.issuing.public_key().to_pem()
    assert _pkeyutl_verify(ossl, tmp_path, issuing_pub, crl_tbs, crl_sig, "-pkeyopt", DISTID)
    # Negative controls: the root's key, an empty ID, one changed byte.
    assert not _pkeyutl_verify(ossl, tmp_path, pki.root.public_key().to_pem(), crl_tbs, crl_sig,
                               "-pkeyopt", DISTID)
    assert not _pkeyutl_verify(ossl, tmp_path, issuing_pub, crl_tbs, crl_sig)
    tampered = bytearray(crl_tbs)
    tampered[-1] ^= 1
    assert not _pkeyutl_verify(ossl, tmp_path, issuing_pub, bytes(tampered), crl_sig,
                               "-pkeyopt", DISTID)
    # The self-signature of the SM2 root, which `openssl verify -check_ss_sig` cannot check.
    assert _pkeyutl_verify(ossl, tmp_path, pki.root.public_key().to_pem(), pki.root.tbs.dump(),
                           bytes(pki.root.asn1["signature_value"]), "-pkeyopt", DISTID)
    # OpenSSL reads the SM2 CRL's contents.
    crl = write_pem(tmp_path / "crl.pem", pki.crl)
    text = _out(ossl("crl", "-in", crl, "-noout", "-text"))
    assert "SM2-with-SM3" in text and f"{pki.revoked.serial_number:040X}" in text


def test_openssl_req_verify_accepts_our_csrs(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    csr = build_csr(pki.doctor_key, DOCTOR_SUBJECT, Extensions(
        key_usage=frozenset({"digital_signature"}), emails=("zhangsan@hospital.medsign.test",)))
    path = write_pem(tmp_path / "req.pem", csr)
    out = _out(ossl("req", "-verify", *_vfy(pki.key_type), "-in", path, "-noout", "-text",
                    "-nameopt", "RFC2253,-esc_msb"))
    assert "self-signature verify OK" in out, out
    assert f"Subject: {DOCTOR_SUBJECT}" in out
    assert "email:zhangsan@hospital.medsign.test" in out
    if pki.key_type == "sm2":  # and it was not signed with OpenSSL's empty default ID
        out = _out(ossl("req", "-verify", "-in", path, "-noout"))
        assert "verify failure" in out, out


def test_openssl_parses_our_certificates(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    def text(cert: Certificate) -> str:
        return _out(ossl("x509", "-in", write_pem(tmp_path / "c.pem", cert), "-noout", "-text",
                         "-nameopt", "RFC2253,-esc_msb"))

    algorithm = {"sm2": "SM2-with-SM3", "rsa2048": "sha256WithRSAEncryption",
                 "ecdsa-p256": "ecdsa-with-SHA256"}[pki.key_type]
    root = text(pki.root)
    assert f"Signature Algorithm: {algorithm}" in root
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1" in root
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in root
    doctor = text(pki.doctor)
    for expected in (f"Subject: {DOCTOR_SUBJECT}", f"Issuer: {pki.issuing.subject}",
                     "CA:FALSE", "Digital Signature, Non Repudiation", "E-mail Protection",
                     "email:zhangsan@hospital.medsign.test", f"URI:{URLS['crl']}",
                     f"OCSP - URI:{URLS['ocsp']}", f"CA Issuers - URI:{URLS['ca_issuers']}",
                     f"Policy: {POLICY_OID}"):
        assert expected in doctor, expected
    assert "X509v3 Extended Key Usage: critical\n                Time Stamping" in text(pki.tsa)
    assert "DNS:localhost, IP Address:127.0.0.1" in text(pki.tls)


def test_openssl_reads_our_fields_exactly(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    cert = pki.doctor
    path = write_pem(tmp_path / "doctor.pem", cert)
    out = _out(ossl("x509", "-in", path, "-noout", "-serial", "-dates", "-dateopt", "iso_8601",
                    "-ext", "subjectKeyIdentifier,authorityKeyIdentifier"))
    assert f"serial={cert.serial_number:040X}" in out
    assert f"notBefore={cert.not_before:%Y-%m-%d %H:%M:%S}Z" in out
    assert f"notAfter={cert.not_after:%Y-%m-%d %H:%M:%S}Z" in out
    ski, aki = cert.subject_key_identifier, cert.authority_key_identifier
    assert ski is not None and aki is not None
    assert ski.hex(":").upper() in out and aki.hex(":").upper() in out
    # OpenSSL's RFC 2253 form (hex-escaped UTF-8) parses back to the very same Name.
    subject = _out(ossl("x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253"))
    escaped = subject.strip().removeprefix("subject=")
    assert "\\E5\\BC\\A0" in escaped
    assert parse_name(escaped).dump() == cert.subject_name.dump()
    utf8 = _out(ossl("x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"))
    assert utf8.strip() == f"subject={DOCTOR_SUBJECT}"
    # And the DER OpenSSL writes back is byte for byte ours.
    der = ossl("x509", "-in", path, "-outform", "DER").stdout
    assert der == cert.der


@pytest.mark.parametrize("algorithm", [SignatureAlgorithm.RSA_PSS_SHA256,
                                       SignatureAlgorithm.RSA_PKCS1_SHA384,
                                       SignatureAlgorithm.RSA_PKCS1_SHA512])
def test_openssl_verifies_our_other_rsa_signatures(ossl: Run, tmp_path: Path,
                                                   algorithm: SignatureAlgorithm) -> None:
    pki = cached_pki("rsa2048")
    leaf = issue_certificate(subject="CN=RSA variant,C=CN",
                             public_key=pki.doctor_key.public_key(), signer=pki.issuing_key,
                             issuer=pki.issuing, not_before=pki.now - dt.timedelta(days=1),
                             days=10, signature_algorithm=algorithm,
                             extensions=Extensions(ca=False))
    assert "leaf.pem: OK" in _verify_chain(ossl, tmp_path, pki, leaf)


# ============================================================================================
# signcore checks what OpenSSL makes

_LEAF_EXT = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
extendedKeyUsage=emailProtection
subjectAltName=email:zhangsan@hospital.test,DNS:localhost,IP:127.0.0.1,URI:http://x.test/
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
crlDistributionPoints=URI:http://pki.test/ca.crl
authorityInfoAccess=OCSP;URI:http://ocsp.test/,caIssuers;URI:http://pki.test/ca.cer
certificatePolicies=2.999.1.1
"""
_CA_EXT = """\
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""
_LEAF_EXPECTED = Extensions(
    ca=False, key_usage=frozenset({"digital_signature", "non_repudiation"}),
    extended_key_usage=("email_protection",), emails=("zhangsan@hospital.test",),
    dns_names=("localhost",), ip_addresses=("127.0.0.1",), uris=("http://x.test/",),
    crl_urls=("http://pki.test/ca.crl",), ocsp_urls=("http://ocsp.test/",),
    ca_issuers_urls=("http://pki.test/ca.cer",), policies=("2.999.1.1",))


def _openssl_root(ossl: Run, key_type: str, name: str) -> None:
    """``ca.pem`` + ``ca.key``: a self-signed CA made by ``openssl req -x509``."""
    ossl("req", "-x509", *_newkey(key_type), *_sign_opts(key_type), "-subj", name, "-utf8",
         "-days", "30", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:1",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _openssl_issue(ossl: Run, tmp_path: Path, key_type: str, *, ca: str, subject: str,
                   out: str, ext: str, sign: bool = True) -> None:
    """``out.pem`` + ``out.key``: a fresh key, a CSR, and ``openssl x509 -req`` under ``ca``."""
    ossl("req", "-new", *_newkey(key_type), "-nodes", "-keyout", f"{out}.key",
         *_sign_opts(key_type), "-subj", subject, "-utf8", "-out", f"{out}.csr")
    (tmp_path / f"{out}.ext").write_text(ext)
    signing = _sign_opts(key_type) if sign else (["-sm3"] if key_type == "sm2" else ["-sha256"])
    ossl("x509", "-req", "-in", f"{out}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         *signing, *_vfy(key_type), "-days", "10", "-extfile", f"{out}.ext", "-out", f"{out}.pem")


def _load(tmp_path: Path, name: str) -> Certificate:
    return load_certificate((tmp_path / name).read_bytes())


def test_we_validate_openssl_made_chains(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    key_type = pki.key_type
    _openssl_root(ossl, key_type, "/C=CN/O=测试医院/CN=OpenSSL root")
    _openssl_issue(ossl, tmp_path, key_type, ca="ca", subject="/C=CN/O=测试医院/CN=OpenSSL CA",
                   out="int", ext=_CA_EXT)
    _openssl_issue(ossl, tmp_path, key_type, ca="int", subject="/C=CN/O=测试医院/OU=内科/CN=张三",
                   out="leaf", ext=_LEAF_EXT)
    root, issuing, leaf = (_load(tmp_path, f"{n}.pem") for n in ("ca", "int", "leaf"))

    root.verify_signature(root.public_key())  # the SM2 self-signature OpenSSL cannot check
    path = validate_path(leaf, trust_roots=[root], intermediates=[issuing],
                         required_eku="email_protection")
    assert path.certificates == (leaf, issuing, root)
    assert leaf.subject == DOCTOR_SUBJECT
    assert leaf.extensions == _LEAF_EXPECTED
    assert (root.extensions.ca, root.extensions.path_length) == (True, 1)
    assert root.extensions.key_usage == {"key_cert_sign", "crl_sign"}
    assert (issuing.extensions.ca, issuing.extensions.path_length) == (True, 0)
    # OpenSSL's subjectKeyIdentifier=hash is RFC 5280 method 1, like ours.
    assert leaf.subject_key_identifier == key_identifier(leaf.public_key())
    assert leaf.authority_key_identifier == issuing.subject_key_identifier
    assert issuing.authority_key_identifier == root.subject_key_identifier
    expected = SignatureAlgorithm.default_for(leaf.public_key().key_type)
    assert leaf.signature_algorithm is expected
    # Its private keys load and match the certificates.
    ca_key = load_private_key((tmp_path / "ca.key").read_bytes())
    assert ca_key.public_key() == root.public_key()
    # A CA certificate we issue with OpenSSL's key validates under OpenSSL's root.
    ours = issue_certificate(subject="CN=ours under OpenSSL,C=CN",
                             public_key=pki.doctor_key.public_key(), signer=ca_key, issuer=root,
                             days=1, extensions=Extensions(ca=False))
    assert validate_path(ours, trust_roots=[root]).leaf == ours


def test_openssl_leaf_signed_with_the_empty_id_is_refused(ossl: Run, tmp_path: Path) -> None:
    """The PEERS.md trap, pinned: an SM2 certificate OpenSSL signs without ``-sigopt distid``
    carries a signature over the empty ID, which GM/T 0009 verifiers (and we) refuse."""
    _openssl_root(ossl, "sm2", "/CN=OpenSSL SM2 root")
    _openssl_issue(ossl, tmp_path, "sm2", ca="ca", subject="/CN=empty ID", out="leaf",
                   ext=_LEAF_EXT, sign=False)
    root, leaf = _load(tmp_path, "ca.pem"), _load(tmp_path, "leaf.pem")
    with pytest.raises(InvalidSignature):
        leaf.verify_signature(root.public_key())
    with pytest.raises(PathValidationError, match="does not verify"):
        validate_path(leaf, trust_roots=[root])


def test_openssl_csrs_verify_with_us(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    ossl("req", "-new", *_newkey(pki.key_type), "-nodes", "-keyout", "k.pem",
         *_sign_opts(pki.key_type), "-subj", "/C=CN/O=测试医院/OU=内科/CN=张三", "-utf8",
         "-addext", "subjectAltName=email:zhangsan@hospital.test,DNS:a.test",
         "-addext", "keyUsage=critical,digitalSignature", "-out", "req.pem")
    for data in ((tmp_path / "req.pem").read_bytes(),
                 ossl("req", "-in", "req.pem", "-outform", "DER").stdout):
        csr = load_csr(data)
        csr.verify()
        assert csr.subject == DOCTOR_SUBJECT
        assert csr.extensions.emails == ("zhangsan@hospital.test",)
        assert csr.extensions.dns_names == ("a.test",)
        assert csr.extensions.key_usage == {"digital_signature"}
        assert csr.public_key() == load_private_key((tmp_path / "k.pem").read_bytes()).public_key()
    if pki.key_type == "sm2":  # the empty-ID trap again, for a request
        ossl("req", "-new", "-key", "k.pem", "-sm3", "-subj", "/CN=x", "-out", "noid.pem")
        with pytest.raises(InvalidSignature):
            load_csr((tmp_path / "noid.pem").read_bytes()).verify()


_CA_CONFIG = """\
[ ca ]
default_ca = test_ca
[ test_ca ]
database = index.txt
crlnumber = crlnumber
certificate = ca.pem
private_key = ca.key
default_md = {md}
default_crl_days = 7
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_openssl_crls_verify_with_us(ossl: Run, tmp_path: Path, key_type: str) -> None:
    md = "sm3" if key_type == "sm2" else "sha256"
    (tmp_path / "ca.cnf").write_text(_CA_CONFIG.format(md=md))
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "crlnumber").write_text("2A\n")
    _openssl_root(ossl, key_type, "/C=CN/O=测试医院/CN=OpenSSL CRL issuer")
    _openssl_issue(ossl, tmp_path, key_type, ca="ca", subject="/CN=victim", out="victim",
                   ext=_LEAF_EXT)
    ossl("ca", "-config", "ca.cnf", "-revoke", "victim.pem", "-crl_reason", "keyCompromise")
    sigopt = ["-sigopt", DISTID] if key_type == "sm2" else []
    ossl("ca", "-config", "ca.cnf", "-gencrl", *sigopt, "-out", "crl.pem")
    ca, victim = _load(tmp_path, "ca.pem"), _load(tmp_path, "victim.pem")

    for data in ((tmp_path / "crl.pem").read_bytes(),
                 ossl("crl", "-in", "crl.pem", "-outform", "DER").stdout):
        crl = load_crl(data)
        assert isinstance(crl, CRL)
        crl.verify_signature(ca.public_key())
        assert crl.crl_number == 0x2A
        assert crl.issuer_name == ca.subject_name
        entry = crl.is_revoked(victim.serial_number)
        assert entry is not None and entry.reason == "key_compromise"
        assert crl.is_revoked(ca.serial_number) is None
        aki = crl.asn1.authority_key_identifier
        assert aki is not None and bytes(aki) == ca.subject_key_identifier
        assert crl.next_update is not None and crl.next_update > crl.this_update
    with pytest.raises(InvalidSignature):
        load_crl((tmp_path / "crl.pem").read_bytes()).verify_signature(victim.public_key())
    if key_type == "sm2":  # a CRL signed without -sigopt uses the empty ID: refused
        ossl("ca", "-config", "ca.cnf", "-gencrl", "-out", "noid.pem")
        with pytest.raises(InvalidSignature):
            load_crl((tmp_path / "noid.pem").read_bytes()).verify_signature(ca.public_key())


def test_openssl_issues_our_csrs(ossl: Run, tmp_path: Path, pki: TestPKI) -> None:
    """Our CSR and our CA key files in, an OpenSSL certificate out, our validator on it."""
    key = generate_private_key(pki.key_type)
    requested = Extensions(key_usage=frozenset({"digital_signature", "non_repudiation"}),
                           extended_key_usage=("email_protection",),
                           emails=("zhangsan@hospital.medsign.test",))
    write_pem(tmp_path / "req.pem", build_csr(key, DOCTOR_SUBJECT, requested))
    write_pem(tmp_path / "issuing.pem", pki.issuing)
    write_pem(tmp_path / "issuing.key", pki.issuing_key)
    (tmp_path / "leaf.ext").write_text("basicConstraints=critical,CA:FALSE\n"
                                       "subjectKeyIdentifier=hash\n"
                                       "authorityKeyIdentifier=keyid\n")
    ossl("x509", "-req", "-in", "req.pem", "-CA", "issuing.pem", "-CAkey", "issuing.key",
         *_sign_opts(pki.key_type), *_vfy(pki.key_type), "-days", "10",
         "-copy_extensions", "copyall", "-extfile", "leaf.ext", "-out", "leaf.pem")
    leaf = _load(tmp_path, "leaf.pem")

    path = validate_path(leaf, trust_roots=[pki.root], intermediates=[pki.issuing],
                         required_eku="email_protection")
    assert path.certificates == (leaf, pki.issuing, pki.root)
    assert leaf.subject_name.dump() == parse_name(DOCTOR_SUBJECT).dump()
    assert leaf.public_key() == key.public_key()
    # OpenSSL copied the extensions our CSR requested, so it read them as we meant them.
    assert leaf.extensions == Extensions(ca=False, key_usage=requested.key_usage,
                                         extended_key_usage=requested.extended_key_usage,
                                         emails=requested.emails)
    assert leaf.subject_key_identifier == key_identifier(key.public_key())
    assert leaf.authority_key_identifier == pki.issuing.subject_key_identifier


def test_openssl_made_name_encodings(ossl: Run, tmp_path: Path) -> None:
    """OpenSSL's -utf8 subject encodes as we do: C PrintableString, the rest UTF8String."""
    ossl("req", "-new", "-newkey", "sm2", "-nodes", "-keyout", "k.pem", "-sm3", "-sigopt",
         DISTID, "-subj", "/C=CN/O=测试医院/OU=内科/CN=张三", "-utf8", "-out", "req.pem")
    csr = load_csr((tmp_path / "req.pem").read_bytes())
    name: asn1_x509.Name = csr.subject_name
    assert [rdn[0]["value"].name for rdn in name.chosen] == [
        "printable_string", "utf8_string", "utf8_string", "utf8_string"]
    assert name.dump() == parse_name(DOCTOR_SUBJECT).dump()
