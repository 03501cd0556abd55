"""``medsign crypto ...`` against the system ``openssl`` (3.0), in both directions.

- keys: ours are read by ``openssl pkey``; OpenSSL's (PKCS#8, traditional, encrypted) sign with us;
- raw signatures: OpenSSL verifies ours (``pkeyutl``/``dgst``), we verify OpenSSL's;
- certificates and CSRs: ``openssl verify``/``req -verify`` accept what we make, we issue for
  OpenSSL's CSRs and under OpenSSL's CA certificates;
- CMS (RSA and ECDSA P-256; OpenSSL 3.0 can neither make nor verify SM2 CMS, see PEERS.md):
  ``openssl cms -verify`` accepts ours, we verify ``openssl cms -sign`` output.

The SM2 ID is always explicit on the OpenSSL side (``distid:1234567812345678``; 3.0 defaults to
an EMPTY ID), and ``-vfyopt distid`` is passed for SM2 only (it makes OpenSSL fail for RSA/EC).
The CLI runs in-process through ``appliance.cli.main`` (the console script itself is covered in
tests/appliance/test_cli_crypto.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cli import main
from signcore import keys, x509
from tests.support.peers import run_tool

pytestmark = pytest.mark.peer

Arg = str | Path
DEFAULT_ID = "1234567812345678"
DISTID = f"distid:{DEFAULT_ID}"
PASSWORD = "病历 secret"
ALGS = ["sm2", "rsa2048", "ecdsa-p256"]
ROOT_SUBJECT = "CN=互通测试根CA,O=某市第一人民医院,C=CN"
LEAF_SUBJECT = "CN=张三,OU=心内科,O=某市第一人民医院,C=CN"
DNS = "sign.hospital.example"
EMAIL = "zhangsan@hospital.example"
CONTENT = "门诊病历 2024-0001：患者主诉胸闷。\n".encode() + bytes(range(256))
# openssl arguments that make a key of each kind
GENPKEY = {
    "sm2": ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:SM2"],
    "rsa2048": ["-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ecdsa-p256": ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
}
NEWKEY = {
    "sm2": ["-newkey", "sm2"],
    "rsa2048": ["-newkey", "rsa:2048"],
    "ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
}


# ---------------------------------------------------------------------------------------------
# Running both sides


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def medsign(*argv: Arg, expect: int = 0) -> Result:
    """``medsign ARGV`` in-process; asserts the exit code and the one-line stderr contract."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([os.fspath(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    result = Result(code, out.getvalue(), err.getvalue())
    assert result.code == expect, (f"medsign {' '.join(map(str, argv))}: exit {result.code}, "
                                   f"expected {expect}\n{result.out}{result.err}")
    assert "Traceback" not in result.err
    if expect == 0:
        assert result.err == ""
    else:
        assert len(result.err.strip().splitlines()) == 1, result.err
    return result


OpenSSL = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture(scope="module")
def openssl(openssl_bin: str) -> OpenSSL:
    """``openssl(*args, check=True)``: run the openssl CLI (a failure shows command and output)."""

    def run(*args: Arg, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run_tool([openssl_bin, *args], check=check)

    return run


def sm2_only(alg: str, *args: str) -> list[str]:
    return list(args) if alg == "sm2" else []


def digest_of(alg: str) -> str:
    return "-sm3" if alg == "sm2" else "-sha256"


def openssl_verify_raw(openssl: OpenSSL, alg: str, pub: Path, sig: Path, data: Path, *,
                       user_id: str = DEFAULT_ID) -> subprocess.CompletedProcess[bytes]:
    """``openssl dgst -verify`` of a raw signature over ``data`` (not checked)."""
    return openssl("dgst", digest_of(alg), "-verify", pub,
                   *sm2_only(alg, "-sigopt", f"distid:{user_id}"), "-signature", sig, data,
                   check=False)


def tampered(path: Path, data: bytes = CONTENT) -> Path:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    path.write_bytes(bytes(changed))
    return path


# ---------------------------------------------------------------------------------------------
# Material made by medsign


@dataclass(frozen=True)
class Ours:
    alg: str
    dir: Path
    content: Path
    ca_key: Path
    ca_cert: Path
    other_ca_cert: Path
    leaf_key: Path  # plain
    leaf_key_enc: Path  # encrypted with PASSWORD
    leaf_csr: Path
    leaf_cert: Path
    leaf_pub: Path  # written by `openssl pkey -pubout`
    raw: Path
    cms_detached: Path
    cms_attached: Path


def make_ours(alg: str, d: Path, openssl: OpenSSL) -> Ours:
    def p(name: str) -> Path:
        return d / name

    medsign("crypto", "keygen", "--alg", alg, "--out", p("ca.key"))
    medsign("crypto", "selfsign", "--key", p("ca.key"), "--subject", ROOT_SUBJECT,
            "--days", "3650", "--ca", "--out", p("ca.pem"))
    medsign("crypto", "keygen", "--alg", alg, "--out", p("other.key"))
    medsign("crypto", "selfsign", "--key", p("other.key"), "--subject", "CN=Unrelated Root",
            "--days", "3650", "--ca", "--out", p("other.pem"))
    medsign("crypto", "keygen", "--alg", alg, "--out", p("leaf.key"))
    # The CLI cannot re-encrypt an existing key: the encrypted one is a second key.
    medsign("crypto", "keygen", "--alg", alg, "--out", p("leaf-enc.key"),
            "--passout", f"pass:{PASSWORD}")
    medsign("crypto", "csr", "--key", p("leaf.key"), "--subject", LEAF_SUBJECT,
            "--dns", DNS, "--email", EMAIL, "--out", p("leaf.csr"))
    medsign("crypto", "issue", "--ca-key", p("ca.key"), "--ca-cert", p("ca.pem"),
            "--csr", p("leaf.csr"), "--days", "365", "--out", p("leaf.pem"))
    openssl("pkey", "-in", p("leaf.key"), "-pubout", "-out", p("leaf.pub.pem"))
    p("record.bin").write_bytes(CONTENT)
    for fmt in ("raw", "cms-detached", "cms-attached"):
        medsign("crypto", "sign", "--key", p("leaf.key"), "--cert", p("leaf.pem"),
                "--in", p("record.bin"), "--format", fmt, "--out", p(f"{fmt}.sig"))
    return Ours(alg=alg, dir=d, content=p("record.bin"), ca_key=p("ca.key"),
                ca_cert=p("ca.pem"), other_ca_cert=p("other.pem"), leaf_key=p("leaf.key"),
                leaf_key_enc=p("leaf-enc.key"), leaf_csr=p("leaf.csr"), leaf_cert=p("leaf.pem"),
                leaf_pub=p("leaf.pub.pem"), raw=p("raw.sig"), cms_detached=p("cms-detached.sig"),
                cms_attached=p("cms-attached.sig"))


@pytest.fixture(scope="module")
def our_material(tmp_path_factory: pytest.TempPathFactory,
                 openssl: OpenSSL) -> Callable[[str], Ours]:
    cache: dict[str, Ours] = {}

    def get(alg: str) -> Ours:
        if alg not in cache:
            cache[alg] = make_ours(alg, tmp_path_factory.mktemp(f"ours-{alg}"), openssl)
        return cache[alg]

    return get


@pytest.fixture(scope="module", params=ALGS)
def ours(request: pytest.FixtureRequest, our_material: Callable[[str], Ours]) -> Ours:
    alg: str = request.param
    return our_material(alg)


# ---------------------------------------------------------------------------------------------
# Material made by OpenSSL


@dataclass(frozen=True)
class Theirs:
    alg: str
    key: Path  # PKCS#8 PEM from genpkey
    pub: Path
    cert: Path  # self-signed by openssl req -x509


def make_theirs(alg: str, d: Path, openssl: OpenSSL) -> Theirs:
    key, pub, cert = d / "key.pem", d / "pub.pem", d / "cert.pem"
    openssl("genpkey", *GENPKEY[alg], "-out", key)
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=OpenSSL signer", "-days", "30",
            *sm2_only(alg, "-sm3", "-sigopt", DISTID), "-out", cert)
    return Theirs(alg=alg, key=key, pub=pub, cert=cert)


@pytest.fixture(scope="module")
def their_material(tmp_path_factory: pytest.TempPathFactory,
                   openssl: OpenSSL) -> Callable[[str], Theirs]:
    cache: dict[str, Theirs] = {}

    def get(alg: str) -> Theirs:
        if alg not in cache:
            cache[alg] = make_theirs(alg, tmp_path_factory.mktemp(f"theirs-{alg}"), openssl)
        return cache[alg]

    return get


@pytest.fixture(scope="module", params=ALGS)
def theirs(request: pytest.FixtureRequest, their_material: Callable[[str], Theirs]) -> Theirs:
    alg: str = request.param
    return their_material(alg)


# ---------------------------------------------------------------------------------------------
# Keys


def test_openssl_reads_our_keys(ours: Ours, openssl: OpenSSL, tmp_path: Path) -> None:
    openssl("pkey", "-in", ours.ca_key, "-noout")
    text = openssl("pkey", "-in", ours.ca_key, "-noout", "-text").stdout.decode()
    expected = {"sm2": "ASN1 OID: SM2", "rsa2048": "Private-Key: (2048 bit",
                "ecdsa-p256": "NIST CURVE: P-256"}[ours.alg]
    assert expected in text
    ours_public = keys.load_private_key(ours.leaf_key.read_bytes()).public_key()
    assert keys.load_public_key(ours.leaf_pub.read_bytes()) == ours_public
    # encrypted PKCS#8: the right password opens it, a wrong one does not
    pub = openssl("pkey", "-in", ours.leaf_key_enc, "-passin", f"pass:{PASSWORD}",
                  "-pubout").stdout
    enc_public = keys.load_private_key(ours.leaf_key_enc.read_bytes(),
                                       PASSWORD.encode()).public_key()
    assert keys.load_public_key(pub) == enc_public
    assert openssl("pkey", "-in", ours.leaf_key_enc, "-passin", "pass:wrong", "-noout",
                   check=False).returncode != 0
    # and OpenSSL re-encodes the key to exactly the same PKCS#8
    plain = openssl("pkcs8", "-topk8", "-nocrypt", "-in", ours.ca_key, "-outform", "DER").stdout
    assert plain == keys.load_private_key(ours.ca_key.read_bytes()).to_der()


KEY_FORMS = [
    ("sm2", "pkcs8"), ("rsa2048", "pkcs8"), ("ecdsa-p256", "pkcs8"),
    ("sm2", "pkcs8-aes-256-cbc"), ("rsa2048", "pkcs8-aes-256-cbc"),
    ("ecdsa-p256", "pkcs8-aes-256-cbc"), ("sm2", "pkcs8-sm4-cbc"),
    ("ecdsa-p256", "traditional"), ("rsa2048", "traditional"), ("sm2", "traditional"),
]


@pytest.mark.parametrize(("alg", "form"), KEY_FORMS)
def test_cli_signs_with_openssl_keys(alg: str, form: str, their_material: Callable[[str], Theirs],
                                     openssl: OpenSSL, tmp_path: Path) -> None:
    theirs = their_material(alg)
    key, passin = theirs.key, []
    if form.startswith("pkcs8-"):
        key = tmp_path / "enc.pem"
        openssl("pkcs8", "-topk8", "-v2", form.removeprefix("pkcs8-"), "-in", theirs.key,
                "-passout", f"pass:{PASSWORD}", "-out", key)
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        passin = ["--passin", f"pass:{PASSWORD}"]
    elif form == "traditional":  # SEC1 "EC PRIVATE KEY" (SM2: "SM2 PRIVATE KEY"), PKCS#1
        key = tmp_path / "trad.pem"
        if alg == "rsa2048":
            openssl("pkey", "-in", theirs.key, "-traditional", "-out", key)
        else:  # `pkey -traditional` refuses SM2 keys in 3.0; `ec` writes SEC1 for both curves
            openssl("ec", "-in", theirs.key, "-out", key)
        assert b"-----BEGIN PRIVATE KEY-----" not in key.read_bytes()
    data, sig = tmp_path / "data", tmp_path / "sig"
    data.write_bytes(CONTENT)
    medsign("crypto", "sign", "--key", key, *passin, "--in", data, "--format", "raw",
            "--out", sig)
    verified = openssl_verify_raw(openssl, alg, theirs.pub, sig, data)
    assert verified.returncode == 0, verified.stderr
    assert b"Verified OK" in verified.stdout
    medsign("crypto", "verify", "--format", "raw", "--in", sig, "--content", data,
            "--cert", theirs.cert)
    if passin:
        medsign("crypto", "sign", "--key", key, "--passin", "pass:wrong", "--in", data,
                "--format", "raw", "--out", tmp_path / "nope", expect=2)


# ---------------------------------------------------------------------------------------------
# Raw signatures


def test_openssl_verifies_our_raw_sm2(our_material: Callable[[str], Ours], openssl: OpenSSL,
                                      tmp_path: Path) -> None:
    ours = our_material("sm2")
    cert_pub = tmp_path / "cert-pub.pem"
    cert_pub.write_bytes(openssl("x509", "-in", ours.leaf_cert, "-pubkey", "-noout").stdout)
    openssl("pkeyutl", "-verify", "-pubin", "-inkey", ours.leaf_pub, "-rawin", "-digest", "sm3",
            "-pkeyopt", DISTID, "-in", ours.content, "-sigfile", ours.raw)
    for pub in (ours.leaf_pub, cert_pub):
        out = openssl("dgst", "-sm3", "-verify", pub, "-sigopt", DISTID, "-signature", ours.raw,
                      ours.content).stdout
        assert out.strip() == b"Verified OK"
    bad = openssl_verify_raw(openssl, "sm2", ours.leaf_pub, ours.raw,
                             tampered(tmp_path / "bad"))
    assert bad.returncode != 0
    # a custom --id is OpenSSL's distid
    for user_id in ("alice@hospital.example", "张三"):
        sig = tmp_path / "custom.sig"
        medsign("crypto", "sign", "--key", ours.leaf_key, "--in", ours.content, "--format", "raw",
                "--id", user_id, "--out", sig)
        assert openssl_verify_raw(openssl, "sm2", ours.leaf_pub, sig, ours.content,
                                  user_id=user_id).returncode == 0
        openssl("pkeyutl", "-verify", "-pubin", "-inkey", ours.leaf_pub, "-rawin", "-digest",
                "sm3", "-pkeyopt", f"distid:{user_id}", "-in", ours.content, "-sigfile", sig)
        assert openssl_verify_raw(openssl, "sm2", ours.leaf_pub, sig,
                                  ours.content).returncode != 0


@pytest.mark.parametrize("alg", ["rsa2048", "ecdsa-p256"])
def test_openssl_verifies_our_raw_rsa_and_ecdsa(alg: str, our_material: Callable[[str], Ours],
                                                openssl: OpenSSL, tmp_path: Path) -> None:
    ours = our_material(alg)
    out = openssl("dgst", "-sha256", "-verify", ours.leaf_pub, "-signature", ours.raw,
                  ours.content).stdout
    assert out.strip() == b"Verified OK"
    if alg == "rsa2048":  # PKCS#1 v1.5 exactly: OpenSSL recovers the DigestInfo
        recovered = openssl("pkeyutl", "-verifyrecover", "-pubin", "-inkey", ours.leaf_pub,
                            "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", ours.raw).stdout
        digest = openssl("dgst", "-sha256", "-binary", ours.content).stdout
        assert recovered == bytes.fromhex("3031300d060960864801650304020105000420") + digest
    bad = openssl_verify_raw(openssl, alg, ours.leaf_pub, ours.raw, tampered(tmp_path / "bad"))
    assert bad.returncode != 0


@pytest.mark.parametrize("tool", ["dgst", "pkeyutl"])
def test_cli_verifies_openssl_raw_signatures(theirs: Theirs, tool: str, openssl: OpenSSL,
                                             tmp_path: Path) -> None:
    data, sig = tmp_path / "data", tmp_path / "sig"
    data.write_bytes(CONTENT)
    if tool == "dgst":
        openssl("dgst", digest_of(theirs.alg), "-sign", theirs.key,
                *sm2_only(theirs.alg, "-sigopt", DISTID), "-out", sig, data)
    else:
        digest = "sm3" if theirs.alg == "sm2" else "sha256"
        openssl("pkeyutl", "-sign", "-inkey", theirs.key, "-rawin", "-digest", digest,
                *sm2_only(theirs.alg, "-pkeyopt", DISTID), "-in", data, "-out", sig)
    for verifier in (theirs.pub, theirs.cert):
        out = medsign("crypto", "verify", "--format", "raw", "--in", sig, "--content", data,
                      "--cert", verifier).out
        assert out.startswith("valid")
    medsign("crypto", "verify", "--in", sig, "--content", data, "--cert", theirs.pub)  # detected
    bad = medsign("crypto", "verify", "--format", "raw", "--in", sig,
                  "--content", tampered(tmp_path / "bad"), "--cert", theirs.cert, expect=1)
    assert "invalid signature" in bad.err


def test_cli_verifies_openssl_sm2_with_custom_id(their_material: Callable[[str], Theirs],
                                                 openssl: OpenSSL, tmp_path: Path) -> None:
    theirs = their_material("sm2")
    data, sig = tmp_path / "data", tmp_path / "sig"
    data.write_bytes(CONTENT)
    openssl("dgst", "-sm3", "-sign", theirs.key, "-sigopt", "distid:alice@hospital.example",
            "-out", sig, data)
    raw: list[Arg] = ["crypto", "verify", "--format", "raw", "--in", sig, "--content", data,
                      "--cert", theirs.pub]
    medsign(*raw, "--id", "alice@hospital.example")
    medsign(*raw, expect=1)  # the default ID does not match


# ---------------------------------------------------------------------------------------------
# Certificates and CSRs


def test_openssl_verifies_our_chain(ours: Ours, openssl: OpenSSL, tmp_path: Path) -> None:
    vfy = sm2_only(ours.alg, "-vfyopt", DISTID)
    out = openssl("verify", "-CAfile", ours.ca_cert, *vfy, ours.leaf_cert).stdout
    assert out.strip() == f"{ours.leaf_cert}: OK".encode()
    assert openssl("verify", "-CAfile", ours.other_ca_cert, *vfy, ours.leaf_cert,
                   check=False).returncode != 0
    text = openssl("x509", "-in", ours.leaf_cert, "-noout", "-subject", "-issuer", "-nameopt",
                   "utf8,sep_comma_plus_space", "-ext", "subjectAltName,keyUsage,basicConstraints"
                   ).stdout.decode()
    assert "subject=C=CN, O=某市第一人民医院, OU=心内科, CN=张三" in text
    assert "issuer=C=CN, O=某市第一人民医院, CN=互通测试根CA" in text
    assert f"DNS:{DNS}" in text and f"email:{EMAIL}" in text
    assert "Digital Signature, Non Repudiation" in text
    assert "CA:FALSE" in text
    root_text = openssl("x509", "-in", ours.ca_cert, "-noout", "-ext",
                        "basicConstraints,keyUsage").stdout.decode()
    assert "CA:TRUE" in root_text and "Certificate Sign, CRL Sign" in root_text
    # a sub-CA made with `issue --ca` chains too
    sub_key, sub_csr, sub, leaf = (tmp_path / n for n in ("sub.key", "sub.csr", "sub.pem",
                                                          "leaf.pem"))
    medsign("crypto", "keygen", "--alg", ours.alg, "--out", sub_key)
    medsign("crypto", "csr", "--key", sub_key, "--subject", "CN=子CA,C=CN", "--out", sub_csr)
    medsign("crypto", "issue", "--ca-key", ours.ca_key, "--ca-cert", ours.ca_cert,
            "--csr", sub_csr, "--days", "100", "--ca", "--out", sub)
    medsign("crypto", "issue", "--ca-key", sub_key, "--ca-cert", sub, "--csr", ours.leaf_csr,
            "--days", "30", "--out", leaf)
    if ours.alg == "sm2":
        # OpenSSL 3.0 applies -vfyopt distid to the depth-0 certificate only: a 3-level SM2
        # chain fails with "error 7 at 1 depth" even when made entirely by OpenSSL.  Check the
        # two links one at a time instead.
        openssl("verify", "-CAfile", ours.ca_cert, *vfy, sub)
        openssl("verify", "-CAfile", sub, "-partial_chain", *vfy, leaf)
        assert openssl("verify", "-CAfile", ours.other_ca_cert, *vfy, sub,
                       check=False).returncode != 0
    else:
        openssl("verify", "-CAfile", ours.ca_cert, "-untrusted", sub, leaf)
        assert openssl("verify", "-CAfile", ours.ca_cert, leaf, check=False).returncode != 0


def test_openssl_accepts_our_csr(ours: Ours, openssl: OpenSSL) -> None:
    result = openssl("req", "-verify", *sm2_only(ours.alg, "-vfyopt", DISTID), "-in",
                     ours.leaf_csr, "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus_space")
    assert b"self-signature verify OK" in result.stdout + result.stderr
    assert "CN=张三" in result.stdout.decode()
    text = openssl("req", "-in", ours.leaf_csr, "-noout", "-text").stdout.decode()
    assert f"DNS:{DNS}" in text and f"email:{EMAIL}" in text


def test_cli_issues_for_openssl_csr(theirs: Theirs, our_material: Callable[[str], Ours],
                                    openssl: OpenSSL, tmp_path: Path) -> None:
    ca = our_material(theirs.alg)
    csr, cert = tmp_path / "req.pem", tmp_path / "cert.pem"
    openssl("req", "-new", "-key", theirs.key, "-utf8", "-subj", "/O=某医院/CN=x",
            "-addext", "subjectAltName=DNS:peer.example,email:peer@hospital.example",
            *sm2_only(theirs.alg, "-sigopt", DISTID), "-out", csr)
    medsign("crypto", "issue", "--ca-key", ca.ca_key, "--ca-cert", ca.ca_cert, "--csr", csr,
            "--days", "30", "--eku", "email_protection", "--out", cert)
    openssl("verify", "-CAfile", ca.ca_cert, *sm2_only(theirs.alg, "-vfyopt", DISTID), cert)
    issued = x509.load_certificate(cert.read_bytes())
    assert issued.subject == x509.load_csr(csr.read_bytes()).subject == "CN=x,O=某医院"
    assert issued.extensions.dns_names == ("peer.example",)
    assert issued.extensions.emails == ("peer@hospital.example",)
    assert issued.public_key() == keys.load_public_key(theirs.pub.read_bytes())


def test_cli_issues_under_an_openssl_ca(ours: Ours, openssl: OpenSSL, tmp_path: Path) -> None:
    ca_key, ca_cert, cert = tmp_path / "ca.key", tmp_path / "ca.pem", tmp_path / "leaf.pem"
    openssl("req", "-x509", *NEWKEY[ours.alg], "-nodes", "-keyout", ca_key,
            "-subj", "/CN=OpenSSL Root CA", "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            *sm2_only(ours.alg, "-sm3", "-sigopt", DISTID), "-out", ca_cert)
    medsign("crypto", "issue", "--ca-key", ca_key, "--ca-cert", ca_cert, "--csr", ours.leaf_csr,
            "--days", "29", "--out", cert)
    openssl("verify", "-CAfile", ca_cert, *sm2_only(ours.alg, "-vfyopt", DISTID), cert)
    # and signcore validates the OpenSSL root when it checks a CMS chain
    sig = tmp_path / "sig.p7s"
    medsign("crypto", "sign", "--key", ours.leaf_key, "--cert", cert, "--in", ours.content,
            "--format", "cms-attached", "--out", sig)
    assert "chain ok" in medsign("crypto", "verify", "--in", sig, "--ca", ca_cert).out
    medsign("crypto", "verify", "--in", sig, "--ca", ours.ca_cert, expect=1)


# ---------------------------------------------------------------------------------------------
# CMS (RSA and ECDSA P-256: OpenSSL 3.0 does not do SM2 CMS)


CMS_ALGS = ["rsa2048", "ecdsa-p256"]


@pytest.mark.parametrize("alg", CMS_ALGS)
@pytest.mark.parametrize("fmt", ["cms-detached", "cms-attached"])
def test_openssl_verifies_our_cms(alg: str, fmt: str, our_material: Callable[[str], Ours],
                                  openssl: OpenSSL, tmp_path: Path) -> None:
    ours = our_material(alg)
    sig = ours.cms_detached if fmt == "cms-detached" else ours.cms_attached
    content: list[Arg] = ["-content", ours.content] if fmt == "cms-detached" else []
    out = tmp_path / "out.bin"
    result = openssl("cms", "-verify", "-inform", "DER", "-in", sig, "-CAfile", ours.ca_cert,
                     "-binary", *content, "-out", out)
    assert b"Verification successful" in result.stderr
    assert out.read_bytes() == CONTENT
    if fmt == "cms-detached":
        assert openssl("cms", "-verify", "-inform", "DER", "-in", sig, "-CAfile", ours.ca_cert,
                       "-binary", "-content", tampered(tmp_path / "bad"), "-out", out,
                       check=False).returncode != 0
    assert openssl("cms", "-verify", "-inform", "DER", "-in", sig, "-CAfile",
                   ours.other_ca_cert, "-binary", *content, "-out", out,
                   check=False).returncode != 0


OPENSSL_CMS = [(alg, variant) for alg in CMS_ALGS
               for variant in ("detached", "nodetach", "noattr")] + [("rsa2048", "pss")]


@pytest.mark.parametrize(("alg", "variant"), OPENSSL_CMS)
def test_cli_verifies_openssl_cms(alg: str, variant: str, our_material: Callable[[str], Ours],
                                  openssl: OpenSSL, tmp_path: Path) -> None:
    ours = our_material(alg)
    sig = tmp_path / "sig.p7s"
    extra = {
        "detached": [],
        "nodetach": ["-nodetach"],
        "noattr": ["-nodetach", "-noattr"],
        "pss": ["-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"],
    }[variant]
    openssl("cms", "-sign", "-binary", "-in", ours.content, "-signer", ours.leaf_cert,
            "-inkey", ours.leaf_key, "-outform", "DER", *extra, "-out", sig)
    content: list[Arg] = [] if "-nodetach" in extra else ["--content", ours.content]
    out = medsign("crypto", "verify", "--in", sig, "--ca", ours.ca_cert, *content).out
    assert out.startswith("valid rfc5652 signature by CN=张三")
    assert "chain ok" in out
    medsign("crypto", "verify", "--in", sig, "--cert", ours.leaf_cert, *content)
    medsign("crypto", "verify", "--in", sig, "--ca", ours.other_ca_cert, *content, expect=1)
    if content:
        medsign("crypto", "verify", "--in", sig, "--ca", ours.ca_cert,
                "--content", tampered(tmp_path / "bad"), expect=1)
    else:
        der = bytearray(sig.read_bytes())
        start = der.find(CONTENT)
        assert start > 0
        der[start + 7] ^= 0x01  # one bit of the embedded content
        (tmp_path / "bad.p7s").write_bytes(bytes(der))
        medsign("crypto", "verify", "--in", tmp_path / "bad.p7s", "--ca", ours.ca_cert,
                expect=1)


def test_openssl_cms_with_our_encrypted_key(our_material: Callable[[str], Ours],
                                            openssl: OpenSSL, tmp_path: Path) -> None:
    """`openssl cms -sign -inkey` takes our encrypted PKCS#8 key with -passin."""
    ours = our_material("rsa2048")
    csr, cert, sig = tmp_path / "req.pem", tmp_path / "cert.pem", tmp_path / "sig.p7s"
    medsign("crypto", "csr", "--key", ours.leaf_key_enc, "--passin", f"pass:{PASSWORD}",
            "--subject", "CN=李四,C=CN", "--out", csr)
    medsign("crypto", "issue", "--ca-key", ours.ca_key, "--ca-cert", ours.ca_cert, "--csr", csr,
            "--days", "30", "--out", cert)
    openssl("cms", "-sign", "-binary", "-in", ours.content, "-signer", cert, "-inkey",
            ours.leaf_key_enc, "-passin", f"pass:{PASSWORD}", "-outform", "DER", "-nodetach",
            "-out", sig)
    assert "CN=李四" in medsign("crypto", "verify", "--in", sig, "--ca", ours.ca_cert).out
