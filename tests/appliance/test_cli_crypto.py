"""``medsign crypto ...`` through ``appliance.cli.main``: commands, results, the exit-code contract.

The contract: exit 0 success / "valid", 1 an invalid signature, 2 bad usage or unreadable input,
always with ONE line on stderr and never a Python traceback.  Everything (keys, CSRs,
certificates, signatures) is made through the CLI itself and checked with signcore's parsers and
with hashlib.  The CLI runs in-process (fast); stdout/stderr are captured with
``contextlib.redirect_*`` rather than ``capsys`` so that the module-scoped material fixtures can
use the same helper.  One test runs the installed ``medsign`` console script.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cli import main
from signcore import cms, hashes, keys, x509
from signcore.algorithms import KeyType
from signcore.errors import InvalidSignature, SigncoreError

ALGS = ["sm2", "rsa2048", "ecdsa-p256"]
KEY_TYPES = {"sm2": KeyType.SM2, "rsa2048": KeyType.RSA, "ecdsa-p256": KeyType.EC_P256}
PASSWORD = "病历 secret"
ROOT_SUBJECT = "CN=测试根CA,O=某市第一人民医院,C=CN"
OTHER_SUBJECT = "CN=别的根CA,O=另一家医院,C=CN"
LEAF_SUBJECT = "CN=张三,OU=心内科,O=某市第一人民医院,C=CN"
DNS = "sign.hospital.example"
EMAIL = "zhangsan@hospital.example"
LEAF_KU = frozenset({"digital_signature", "non_repudiation"})
CA_KU = frozenset({"key_cert_sign", "crl_sign"})
CONTENT = "门诊病历 2024-0001：患者主诉胸闷。\n".encode() + bytes(range(256))
# (format, flavor) of every signature the material holds; "raw" has no flavour.
SIGNATURES: list[tuple[str, str | None]] = [
    ("raw", None),
    ("cms-detached", "rfc5652"),
    ("cms-attached", "rfc5652"),
    ("cms-detached", "gmt0010"),
    ("cms-attached", "gmt0010"),
]
CMS_SIGNATURES: list[tuple[str, str]] = [(f, v) for f, v in SIGNATURES if v is not None]


# ---------------------------------------------------------------------------------------------
# Running the CLI


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def invoke(*argv: str | Path) -> Result:
    """``main(argv)`` with stdout/stderr captured; argparse's own ``sys.exit(2)`` becomes a code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([os.fspath(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    result = Result(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in result.err, result.err
    return result


def one_line(err: str) -> None:
    assert len(err.strip().splitlines()) == 1, f"expected one stderr line, got:\n{err}"
    assert err.startswith("medsign"), err


def ok(*argv: str | Path) -> Result:
    result = invoke(*argv)
    assert result.code == 0, f"exit {result.code}: {result.err}"
    assert result.err == ""
    return result


def valid(*argv: str | Path) -> Result:
    result = ok("crypto", "verify", *argv)
    assert result.out.startswith("valid "), result.out
    return result


def invalid(*argv: str | Path) -> Result:
    result = invoke("crypto", "verify", *argv)
    assert result.code == 1, f"exit {result.code}: {result.out}{result.err}"
    one_line(result.err)
    assert "invalid signature" in result.err
    assert result.out == ""
    return result


def usage(*argv: str | Path) -> Result:
    result = invoke(*argv)
    assert result.code == 2, f"exit {result.code}: {result.out}{result.err}"
    one_line(result.err)
    return result


# ---------------------------------------------------------------------------------------------
# Material: one small PKI and one set of signatures per algorithm, made by the CLI


@dataclass(frozen=True)
class Pki:
    alg: str
    dir: Path
    content: Path
    ca_key: Path
    ca_cert: Path
    other_ca_cert: Path  # an unrelated root (another key, another name)
    imposter_ca_cert: Path  # another key under the SAME name as the real root
    leaf_key: Path  # encrypted with PASSWORD
    leaf_csr: Path
    leaf_cert: Path
    leaf_pub: Path
    signatures: dict[tuple[str, str | None], Path]

    @property
    def passin(self) -> list[str]:
        return ["--passin", f"pass:{PASSWORD}"]

    def signer(self) -> list[str | Path]:
        return ["--key", self.leaf_key, *self.passin, "--cert", self.leaf_cert]

    def leaf_private_key(self) -> keys.PrivateKey:
        return keys.load_private_key(self.leaf_key.read_bytes(), PASSWORD.encode())

    def verify_args(self, fmt: str, flavor: str | None, **files: Path) -> list[str | Path]:
        """verify arguments for a signature of the material (content/trust replaceable)."""
        sig = files.get("sig", self.signatures[fmt, flavor])
        args: list[str | Path] = ["--in", sig]
        if fmt in ("raw", "cms-detached"):
            args += ["--content", files.get("content", self.content)]
        if fmt == "raw":
            args += ["--format", "raw", "--cert", files.get("cert", self.leaf_cert)]
        elif "cert" in files:
            args += ["--cert", files["cert"]]
        else:
            args += ["--ca", files.get("ca", self.ca_cert)]
        return args


def build_pki(alg: str, d: Path) -> Pki:
    def path(name: str) -> Path:
        return d / name

    ok("crypto", "keygen", "--alg", alg, "--out", path("ca.key"))
    ok("crypto", "selfsign", "--key", path("ca.key"), "--subject", ROOT_SUBJECT, "--days", "3650",
       "--ca", "--out", path("ca.pem"))
    ok("crypto", "keygen", "--alg", alg, "--out", path("other.key"))
    ok("crypto", "selfsign", "--key", path("other.key"), "--subject", OTHER_SUBJECT, "--days",
       "3650", "--ca", "--out", path("other.pem"))
    ok("crypto", "selfsign", "--key", path("other.key"), "--subject", ROOT_SUBJECT, "--days",
       "3650", "--ca", "--out", path("imposter.pem"))
    ok("crypto", "keygen", "--alg", alg, "--out", path("leaf.key"),
       "--passout", f"pass:{PASSWORD}")
    ok("crypto", "csr", "--key", path("leaf.key"), "--passin", f"pass:{PASSWORD}",
       "--subject", LEAF_SUBJECT, "--dns", DNS, "--email", EMAIL, "--out", path("leaf.csr"))
    ok("crypto", "issue", "--ca-key", path("ca.key"), "--ca-cert", path("ca.pem"),
       "--csr", path("leaf.csr"), "--days", "365", "--eku", "email_protection",
       "--out", path("leaf.pem"))
    leaf = keys.load_private_key(path("leaf.key").read_bytes(), PASSWORD.encode())
    path("leaf.pub.pem").write_bytes(leaf.public_key().to_pem())
    path("record.bin").write_bytes(CONTENT)
    signatures: dict[tuple[str, str | None], Path] = {}
    for fmt, flavor in SIGNATURES:
        out = path(f"sig-{fmt}-{flavor}.bin")
        extra = [] if flavor is None else ["--flavor", flavor]
        ok("crypto", "sign", "--key", path("leaf.key"), "--passin", f"pass:{PASSWORD}",
           "--cert", path("leaf.pem"), "--in", path("record.bin"), "--format", fmt, *extra,
           "--out", out)
        signatures[fmt, flavor] = out
    return Pki(alg=alg, dir=d, content=path("record.bin"), ca_key=path("ca.key"),
               ca_cert=path("ca.pem"), other_ca_cert=path("other.pem"),
               imposter_ca_cert=path("imposter.pem"), leaf_key=path("leaf.key"),
               leaf_csr=path("leaf.csr"), leaf_cert=path("leaf.pem"),
               leaf_pub=path("leaf.pub.pem"), signatures=signatures)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Pki]:
    """``material(alg)``: the PKI of ``alg``, built once per module (RSA keygen is slow)."""
    cache: dict[str, Pki] = {}

    def get(alg: str) -> Pki:
        if alg not in cache:
            cache[alg] = build_pki(alg, tmp_path_factory.mktemp(f"cli-{alg}"))
        return cache[alg]

    return get


@pytest.fixture(scope="module", params=ALGS)
def pki(request: pytest.FixtureRequest, material: Callable[[str], Pki]) -> Pki:
    alg: str = request.param
    return material(alg)


@pytest.fixture
def sm2(material: Callable[[str], Pki]) -> Pki:
    return material("sm2")


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def cms_signature_offset(der: bytes) -> int:
    """Where the (only) signer's signature value starts inside a CMS blob."""
    _, signed_data = cms.load_signed_data(der)
    value = bytes(signed_data["signer_infos"][0]["signature"].native)
    offset = der.rfind(value)
    assert offset > 0 and der.count(value) == 1
    return offset


# ---------------------------------------------------------------------------------------------
# keygen and passwords


def test_keygen_writes_pkcs8_with_mode_0600(pki: Pki) -> None:
    for key_file in (pki.ca_key, pki.leaf_key):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    plain = pki.ca_key.read_bytes()
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    ca_key = keys.load_private_key(plain)
    assert ca_key.key_type is KEY_TYPES[pki.alg]
    encrypted = pki.leaf_key.read_bytes()
    assert encrypted.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(SigncoreError):
        keys.load_private_key(encrypted)
    with pytest.raises(SigncoreError):
        keys.load_private_key(encrypted, b"wrong")
    leaf = pki.leaf_private_key()
    assert leaf.key_type is KEY_TYPES[pki.alg]
    assert leaf.public_key() == x509.load_certificate(pki.leaf_cert.read_bytes()).public_key()
    assert leaf.public_key() != ca_key.public_key()


def test_keygen_tightens_an_existing_readable_file(tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    out.write_bytes(b"old")
    out.chmod(0o644)
    ok("crypto", "keygen", "--alg", "sm2", "--out", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert keys.load_private_key(out.read_bytes()).key_type is KeyType.SM2


def test_keygen_rsa3072(tmp_path: Path) -> None:
    key_file, data, sig = tmp_path / "k.pem", tmp_path / "d", tmp_path / "s"
    ok("crypto", "keygen", "--alg", "rsa3072", "--out", key_file)
    key = keys.load_private_key(key_file.read_bytes())
    assert key.key_type is KeyType.RSA
    assert key.public_key().key_size == 3072
    (tmp_path / "pub.pem").write_bytes(key.public_key().to_pem())
    data.write_bytes(CONTENT)
    ok("crypto", "sign", "--key", key_file, "--in", data, "--format", "raw", "--out", sig)
    assert len(sig.read_bytes()) == 384
    valid("--in", sig, "--content", data, "--cert", tmp_path / "pub.pem")


@pytest.mark.parametrize("source", ["pass", "env", "file", "file-crlf"])
def test_password_sources(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if source == "pass":
        spec = f"pass:{PASSWORD}"
    elif source == "env":
        monkeypatch.setenv("MEDSIGN_TEST_PW", PASSWORD)
        spec = "env:MEDSIGN_TEST_PW"
    else:
        eol = b"\r\n" if source == "file-crlf" else b"\n"
        (tmp_path / "pw.txt").write_bytes(PASSWORD.encode() + eol + b"second line ignored\n")
        spec = f"file:{tmp_path / 'pw.txt'}"
    key_file, data, sig = tmp_path / "k.pem", tmp_path / "d", tmp_path / "s"
    ok("crypto", "keygen", "--alg", "sm2", "--out", key_file, "--passout", spec)
    key = keys.load_private_key(key_file.read_bytes(), PASSWORD.encode())
    (tmp_path / "pub.pem").write_bytes(key.public_key().to_pem())
    data.write_bytes(CONTENT)
    ok("crypto", "sign", "--key", key_file, "--passin", spec, "--in", data, "--format", "raw",
       "--out", sig)
    valid("--in", sig, "--content", data, "--cert", tmp_path / "pub.pem")
    usage("crypto", "sign", "--key", key_file, "--passin", "pass:not the password", "--in", data,
          "--format", "raw", "--out", tmp_path / "s2")
    assert not (tmp_path / "s2").exists()


def test_empty_passout_is_refused_not_written_in_clear(tmp_path: Path) -> None:
    # Regression: an empty password used to write the key silently UNENCRYPTED.
    (tmp_path / "empty").write_bytes(b"")
    for spec in ("pass:", f"file:{tmp_path / 'empty'}"):
        result = usage("crypto", "keygen", "--alg", "sm2", "--out", tmp_path / "k.pem",
                       "--passout", spec)
        assert "password" in result.err
        assert not (tmp_path / "k.pem").exists()


# ---------------------------------------------------------------------------------------------
# csr, selfsign, issue


def test_csr(pki: Pki) -> None:
    request = x509.load_csr(pki.leaf_csr.read_bytes())
    request.verify()
    assert pki.leaf_csr.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    assert request.subject == x509.format_name(x509.parse_name(LEAF_SUBJECT))
    assert "张三" in request.subject and "心内科" in request.subject
    assert request.extensions.dns_names == (DNS,)
    assert request.extensions.emails == (EMAIL,)
    assert request.public_key() == pki.leaf_private_key().public_key()


def test_selfsign_ca(pki: Pki) -> None:
    root = x509.load_certificate(pki.ca_cert.read_bytes())
    assert root.is_ca
    assert root.is_self_issued
    assert root.extensions.key_usage == CA_KU
    assert root.subject == x509.format_name(x509.parse_name(ROOT_SUBJECT))
    root.verify_signature(root.public_key())
    assert root.public_key() == keys.load_private_key(pki.ca_key.read_bytes()).public_key()


def test_selfsign_end_entity_with_san(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "self.pem"
    ok("crypto", "selfsign", "--key", pki.leaf_key, *pki.passin, "--subject", LEAF_SUBJECT,
       "--days", "30", "--dns", DNS, "--dns", "second.example", "--email", EMAIL, "--out", out)
    cert = x509.load_certificate(out.read_bytes())
    assert not cert.is_ca
    assert cert.extensions.key_usage == LEAF_KU
    assert cert.extensions.dns_names == (DNS, "second.example")
    assert cert.extensions.emails == (EMAIL,)
    cert.verify_signature(pki.leaf_private_key().public_key())
    days = (cert.not_after - cert.not_before).days
    assert days == 30


def test_issue_copies_subject_and_san(pki: Pki) -> None:
    root = x509.load_certificate(pki.ca_cert.read_bytes())
    request = x509.load_csr(pki.leaf_csr.read_bytes())
    leaf = x509.load_certificate(pki.leaf_cert.read_bytes())
    assert leaf.subject == request.subject
    assert leaf.issuer == root.subject
    assert leaf.public_key() == request.public_key()
    assert leaf.extensions.dns_names == (DNS,)
    assert leaf.extensions.emails == (EMAIL,)
    assert not leaf.is_ca
    assert leaf.extensions.key_usage == LEAF_KU
    assert leaf.extensions.extended_key_usage == ("email_protection",)
    assert leaf.authority_key_identifier == root.subject_key_identifier
    leaf.verify_signature(root.public_key())
    imposter = x509.load_certificate(pki.imposter_ca_cert.read_bytes())
    with pytest.raises(InvalidSignature):
        leaf.verify_signature(imposter.public_key())


def test_issue_ends_with_the_ca_when_days_outlive_it(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "long.pem"
    result = invoke("crypto", "issue", "--ca-key", pki.ca_key, "--ca-cert", pki.ca_cert,
                    "--csr", pki.leaf_csr, "--days", "36000", "--out", out)
    assert result.code == 0, result.err
    one_line(result.err)
    assert "shortened" in result.err
    root = x509.load_certificate(pki.ca_cert.read_bytes())
    leaf = x509.load_certificate(out.read_bytes())
    assert leaf.not_after == root.not_after
    leaf.verify_signature(root.public_key())


def test_issue_does_not_copy_requested_ca_rights(pki: Pki, tmp_path: Path) -> None:
    greedy = x509.Extensions(ca=True, path_length=5, key_usage=CA_KU,
                             extended_key_usage=("code_signing",), dns_names=("x.example",))
    request = x509.build_csr(pki.leaf_private_key(), "CN=贪心的申请人,C=CN", greedy)
    assert request.extensions.ca is True  # the request really asks for CA rights
    (tmp_path / "greedy.csr").write_bytes(request.to_pem())
    issue: list[str | Path] = ["crypto", "issue", "--ca-key", pki.ca_key, "--ca-cert", pki.ca_cert,
                              "--csr", tmp_path / "greedy.csr", "--days", "30"]
    ok(*issue, "--out", tmp_path / "leaf.pem")
    leaf = x509.load_certificate((tmp_path / "leaf.pem").read_bytes())
    assert not leaf.is_ca
    assert leaf.extensions.path_length is None
    assert leaf.extensions.key_usage == LEAF_KU
    assert leaf.extensions.extended_key_usage == ()
    assert leaf.extensions.dns_names == ("x.example",)
    assert leaf.subject == request.subject
    ok(*issue, "--ca", "--eku", "time_stamping", "--eku", "1.2.3.4.5", "--out",
       tmp_path / "sub.pem")
    sub = x509.load_certificate((tmp_path / "sub.pem").read_bytes())
    assert sub.is_ca
    assert sub.extensions.key_usage == CA_KU
    assert sub.extensions.extended_key_usage == ("time_stamping", "1.2.3.4.5")


def test_sub_ca_chain(pki: Pki, tmp_path: Path) -> None:
    def p(name: str) -> Path:
        return tmp_path / name

    ok("crypto", "keygen", "--alg", pki.alg, "--out", p("sub.key"))
    ok("crypto", "csr", "--key", p("sub.key"), "--subject", "CN=签名子CA,O=某市第一人民医院,C=CN",
       "--out", p("sub.csr"))
    ok("crypto", "issue", "--ca-key", pki.ca_key, "--ca-cert", pki.ca_cert, "--csr", p("sub.csr"),
       "--days", "100", "--ca", "--out", p("sub.pem"))
    ok("crypto", "issue", "--ca-key", p("sub.key"), "--ca-cert", p("sub.pem"),
       "--csr", pki.leaf_csr, "--days", "30", "--out", p("leaf.pem"))
    sign: list[str | Path] = ["crypto", "sign", "--key", pki.leaf_key, *pki.passin,
                              "--cert", p("leaf.pem"), "--in", pki.content,
                              "--format", "cms-attached"]
    ok(*sign, "--out", p("bare.p7s"))
    ok(*sign, "--certfile", p("sub.pem"), "--out", p("chain.p7s"))
    valid("--in", p("chain.p7s"), "--ca", pki.ca_cert)
    valid("--in", p("bare.p7s"), "--ca", pki.ca_cert, "--certfile", p("sub.pem"))
    invalid("--in", p("bare.p7s"), "--ca", pki.ca_cert)  # the intermediate is missing
    invalid("--in", p("chain.p7s"), "--ca", pki.other_ca_cert)


def test_issue_refuses_an_issuer_that_is_not_a_ca(pki: Pki, tmp_path: Path) -> None:
    # Regression: an end-entity certificate used to issue certificates nothing would accept.
    result = usage("crypto", "issue", "--ca-key", pki.leaf_key, *pki.passin,
                   "--ca-cert", pki.leaf_cert, "--csr", pki.leaf_csr, "--days", "30",
                   "--out", tmp_path / "x.pem")
    assert "not a CA" in result.err
    assert not (tmp_path / "x.pem").exists()


def test_issue_refuses_a_ca_key_of_another_certificate(pki: Pki, tmp_path: Path) -> None:
    usage("crypto", "issue", "--ca-key", pki.ca_key, "--ca-cert", pki.other_ca_cert,
          "--csr", pki.leaf_csr, "--days", "30", "--out", tmp_path / "x.pem")
    assert not (tmp_path / "x.pem").exists()


# ---------------------------------------------------------------------------------------------
# sign and verify


@pytest.mark.parametrize(("fmt", "flavor"), SIGNATURES)
def test_verify_valid(pki: Pki, fmt: str, flavor: str | None) -> None:
    result = valid(*pki.verify_args(fmt, flavor))
    if fmt != "raw":
        subject = x509.load_certificate(pki.leaf_cert.read_bytes()).subject
        assert result.out.startswith(f"valid {flavor} signature by {subject};"), result.out
        assert "张三" in result.out
        assert "chain ok" in result.out
        valid(*pki.verify_args(fmt, flavor, cert=pki.leaf_cert))


def test_verify_raw_variants(pki: Pki) -> None:
    sig = pki.signatures["raw", None]
    # a bare public key instead of the certificate, and format detection
    valid("--in", sig, "--content", pki.content, "--cert", pki.leaf_pub)
    valid("--in", sig, "--content", pki.content, "--cert", pki.leaf_cert)
    # the signature really is over the file with the algorithm's default digest (and SM2 ID)
    public = pki.leaf_private_key().public_key()
    public.verify(sig.read_bytes(), CONTENT)
    size = len(sig.read_bytes())
    if pki.alg == "rsa2048":
        assert size == 256
    else:
        assert sig.read_bytes()[0] == 0x30 and 68 <= size <= 72


def test_attached_cms_embeds_the_content(pki: Pki) -> None:
    for flavor in ("rfc5652", "gmt0010"):
        attached = pki.signatures["cms-attached", flavor].read_bytes()
        detached = pki.signatures["cms-detached", flavor].read_bytes()
        assert CONTENT in attached
        assert CONTENT not in detached
        assert cms.load_signed_data(attached)[0].value == flavor


@pytest.mark.parametrize(("fmt", "flavor"), SIGNATURES)
def test_tampered_content_is_invalid(pki: Pki, fmt: str, flavor: str | None,
                                     tmp_path: Path) -> None:
    if fmt == "cms-attached":
        der = pki.signatures[fmt, flavor].read_bytes()
        start = der.find(CONTENT)
        (tmp_path / "sig").write_bytes(flip(der, start + 5))
        invalid(*pki.verify_args(fmt, flavor, sig=tmp_path / "sig"))
    else:
        (tmp_path / "content").write_bytes(flip(CONTENT, 5))
        invalid(*pki.verify_args(fmt, flavor, content=tmp_path / "content"))
        (tmp_path / "content").write_bytes(CONTENT + b"\n")
        invalid(*pki.verify_args(fmt, flavor, content=tmp_path / "content"))


@pytest.mark.parametrize(("fmt", "flavor"), SIGNATURES)
def test_tampered_signature_is_invalid(pki: Pki, fmt: str, flavor: str | None,
                                       tmp_path: Path) -> None:
    sig = pki.signatures[fmt, flavor].read_bytes()
    start = 0 if fmt == "raw" else cms_signature_offset(sig)
    # 10 bytes in: inside r of a DER (r, s) pair, inside the RSA signature block.
    (tmp_path / "sig").write_bytes(flip(sig, start + 10))
    invalid(*pki.verify_args(fmt, flavor, sig=tmp_path / "sig"))


@pytest.mark.parametrize(("fmt", "flavor"), CMS_SIGNATURES)
def test_cms_against_the_wrong_root_is_invalid(pki: Pki, fmt: str, flavor: str) -> None:
    invalid(*pki.verify_args(fmt, flavor, ca=pki.other_ca_cert))
    invalid(*pki.verify_args(fmt, flavor, ca=pki.imposter_ca_cert))


@pytest.mark.parametrize(("fmt", "flavor"), SIGNATURES)
def test_verify_with_another_certificate_is_invalid(pki: Pki, fmt: str,
                                                    flavor: str | None) -> None:
    invalid(*pki.verify_args(fmt, flavor, cert=pki.ca_cert))
    invalid(*pki.verify_args(fmt, flavor, cert=pki.other_ca_cert))


def test_raw_signature_against_a_key_of_another_algorithm_is_invalid(
        material: Callable[[str], Pki]) -> None:
    sm2, rsa = material("sm2"), material("rsa2048")
    invalid(*sm2.verify_args("raw", None, cert=rsa.leaf_cert))
    invalid(*rsa.verify_args("raw", None, cert=sm2.leaf_cert))


def test_sm2_signer_id(sm2: Pki, tmp_path: Path) -> None:
    sig = tmp_path / "sig"
    for user_id in ("alice@hospital.example", "张三"):
        ok("crypto", "sign", *sm2.signer(), "--in", sm2.content, "--format", "raw",
           "--id", user_id, "--out", sig)
        raw: list[str | Path] = ["--in", sig, "--content", sm2.content, "--cert", sm2.leaf_cert]
        valid(*raw, "--id", user_id)
        invalid(*raw)  # the default ID 1234567812345678
        invalid(*raw, "--id", user_id + "x")
        sm2.leaf_private_key().public_key().verify(sig.read_bytes(), CONTENT,
                                                   signer_id=user_id.encode())
    # the default signature is bound to the default ID: the explicit default matches, others not
    default = sm2.verify_args("raw", None)
    valid(*default, "--id", "1234567812345678")
    invalid(*default, "--id", "1234567812345679")
    for fmt, flavor in CMS_SIGNATURES:
        out = tmp_path / f"{fmt}-{flavor}"
        ok("crypto", "sign", *sm2.signer(), "--in", sm2.content, "--format", fmt,
           "--flavor", flavor, "--id", "alice", "--out", out)
        args = sm2.verify_args(fmt, flavor, sig=out)
        valid(*args, "--id", "alice")
        invalid(*args)
        invalid(*sm2.verify_args(fmt, flavor), "--id", "alice")


@pytest.mark.parametrize("alg", ["rsa2048", "ecdsa-p256"])
def test_signer_id_does_not_apply_to_rsa_and_ecdsa(material: Callable[[str], Pki],
                                                   alg: str) -> None:
    pki = material(alg)
    valid(*pki.verify_args("raw", None), "--id", "someone else")


def test_sign_empty_file(sm2: Pki, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for fmt in ("raw", "cms-detached", "cms-attached"):
        out = tmp_path / fmt
        ok("crypto", "sign", *sm2.signer(), "--in", empty, "--format", fmt, "--out", out)
        args: list[str | Path] = ["--in", out]
        args += ["--cert", sm2.leaf_cert] if fmt == "raw" else ["--ca", sm2.ca_cert]
        if fmt != "cms-attached":
            args += ["--content", empty]
        valid(*args)


# ---------------------------------------------------------------------------------------------
# hash


SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"  # GB/T 32905 A.1


@pytest.mark.parametrize("alg", ["sm3", "sha256"])
def test_hash(alg: str, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # more than one 1 MiB read
    target = tmp_path / "大文件.bin"
    target.write_bytes(data)
    result = ok("crypto", "hash", "--alg", alg, target)
    hexdigest, _, name = result.out.rstrip("\n").partition("  ")
    assert name == str(target)
    assert result.out.count("\n") == 1
    assert hexdigest == hashes.digest(hashes.HashAlgorithm.from_name(alg), data).hex()
    if alg in hashlib.algorithms_available:
        assert hexdigest == hashlib.new(alg, data).hexdigest()
    assert len(hexdigest) == 64


def test_hash_known_answers(tmp_path: Path) -> None:
    (tmp_path / "abc").write_bytes(b"abc")
    assert ok("crypto", "hash", "--alg", "sm3", tmp_path / "abc").out.split()[0] == SM3_ABC
    assert (ok("crypto", "hash", "--alg", "sha256", tmp_path / "abc").out.split()[0]
            == hashlib.sha256(b"abc").hexdigest())
    (tmp_path / "empty").write_bytes(b"")
    assert (ok("crypto", "hash", "--alg", "sm3", tmp_path / "empty").out.split()[0]
            == hashes.sm3(b"").hex())


# ---------------------------------------------------------------------------------------------
# Bad usage and unreadable input: exit 2, one line


@pytest.fixture(scope="module")
def junk(tmp_path_factory: pytest.TempPathFactory,
         material: Callable[[str], Pki]) -> dict[str, Path]:
    """Bad inputs next to the SM2 material."""
    pki = material("sm2")
    d = tmp_path_factory.mktemp("junk")
    files = {
        "garbage": d / "garbage.pem",
        "dir": d / "a-directory",
        "missing": d / "does-not-exist",
        "broken_csr": d / "broken.csr",
        "truncated_cert": d / "truncated.pem",
    }
    files["garbage"].write_bytes(b"this is not a key, a certificate or a request\n")
    files["dir"].mkdir()
    # A CSR whose proof-of-possession signature is broken: flip a byte inside the signature.
    der = x509.load_csr(pki.leaf_csr.read_bytes()).der
    files["broken_csr"].write_bytes(x509.load_csr(flip(der, len(der) - 10)).to_pem())
    files["truncated_cert"].write_bytes(pki.ca_cert.read_bytes()[:300])
    return files


def _bad_usage_cases() -> list[tuple[str, Callable[[Pki, dict[str, Path], Path],
                                                    Sequence[str | Path]]]]:
    def sign(p: Pki, *extra: str | Path) -> list[str | Path]:
        return ["crypto", "sign", *extra]

    return [
        ("no command", lambda p, j, o: []),
        ("unknown command", lambda p, j, o: ["frobnicate"]),
        ("unknown crypto subcommand", lambda p, j, o: ["crypto", "frobnicate"]),
        ("crypto without subcommand", lambda p, j, o: ["crypto"]),
        ("unknown option", lambda p, j, o: ["crypto", "hash", "--alg", "sm3", "--bogus",
                                            p.content]),
        ("keygen unknown alg", lambda p, j, o: ["crypto", "keygen", "--alg", "dsa",
                                                "--out", o]),
        ("keygen without --out", lambda p, j, o: ["crypto", "keygen", "--alg", "sm2"]),
        ("keygen bad password source", lambda p, j, o: ["crypto", "keygen", "--alg", "sm2",
                                                        "--out", o, "--passout", "secret"]),
        ("keygen unset env password", lambda p, j, o: [
            "crypto", "keygen", "--alg", "sm2", "--out", o,
            "--passout", "env:MEDSIGN_TEST_SURELY_UNSET"]),
        ("sign missing options", lambda p, j, o: ["crypto", "sign", "--key", p.ca_key]),
        ("sign missing input file", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", j["missing"], "--format", "raw", "--out", o)),
        ("sign directory as input", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", j["dir"], "--format", "raw", "--out", o)),
        ("sign directory as output", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", p.content, "--format", "raw", "--out", j["dir"])),
        ("sign missing key file", lambda p, j, o: sign(
            p, "--key", j["missing"], "--in", p.content, "--format", "raw", "--out", o)),
        ("sign directory as key", lambda p, j, o: sign(
            p, "--key", j["dir"], "--in", p.content, "--format", "raw", "--out", o)),
        ("sign garbage key", lambda p, j, o: sign(
            p, "--key", j["garbage"], "--in", p.content, "--format", "raw", "--out", o)),
        ("sign certificate as key", lambda p, j, o: sign(
            p, "--key", p.ca_cert, "--in", p.content, "--format", "raw", "--out", o)),
        ("sign encrypted key without password", lambda p, j, o: sign(
            p, "--key", p.leaf_key, "--in", p.content, "--format", "raw", "--out", o)),
        ("sign wrong key password", lambda p, j, o: sign(
            p, "--key", p.leaf_key, "--passin", "pass:wrong", "--in", p.content,
            "--format", "raw", "--out", o)),
        ("sign password file missing", lambda p, j, o: sign(
            p, "--key", p.leaf_key, "--passin", f"file:{j['missing']}", "--in", p.content,
            "--format", "raw", "--out", o)),
        ("sign unknown format", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", p.content, "--format", "pkcs7", "--out", o)),
        ("cms-detached without --cert", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", p.content, "--format", "cms-detached", "--out", o)),
        ("cms-attached without --cert", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--in", p.content, "--format", "cms-attached", "--out", o)),
        ("cms with a certificate of another key", lambda p, j, o: sign(
            p, "--key", p.ca_key, "--cert", p.leaf_cert, "--in", p.content,
            "--format", "cms-attached", "--out", o)),
        ("cms with garbage --certfile", lambda p, j, o: sign(
            p, *p.signer(), "--certfile", j["garbage"], "--in", p.content,
            "--format", "cms-attached", "--out", o)),
        ("csr garbage key", lambda p, j, o: [
            "crypto", "csr", "--key", j["garbage"], "--subject", "CN=x", "--out", o]),
        ("csr bad subject", lambda p, j, o: [
            "crypto", "csr", "--key", p.ca_key, "--subject", "not a name", "--out", o]),
        ("csr unknown attribute", lambda p, j, o: [
            "crypto", "csr", "--key", p.ca_key, "--subject", "XX=foo", "--out", o]),
        ("selfsign empty CN", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "CN=", "--days", "1",
            "--out", o]),
        ("selfsign empty subject", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "", "--days", "1",
            "--out", o]),
        ("selfsign --days 0", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "CN=x", "--days", "0",
            "--out", o]),
        ("selfsign --days -1", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "CN=x", "--days", "-1",
            "--out", o]),
        ("selfsign --days too large", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "CN=x", "--days", "36501",
            "--out", o]),
        ("selfsign --days not a number", lambda p, j, o: [
            "crypto", "selfsign", "--key", p.ca_key, "--subject", "CN=x", "--days", "ten",
            "--out", o]),
        ("issue garbage CSR", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", p.ca_cert,
            "--csr", j["garbage"], "--days", "1", "--out", o]),
        ("issue CSR with broken signature", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", p.ca_cert,
            "--csr", j["broken_csr"], "--days", "1", "--out", o]),
        ("issue certificate as CSR", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", p.ca_cert,
            "--csr", p.leaf_cert, "--days", "1", "--out", o]),
        ("issue truncated CA certificate", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", j["truncated_cert"],
            "--csr", p.leaf_csr, "--days", "1", "--out", o]),
        ("issue --days 0", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", p.ca_cert,
            "--csr", p.leaf_csr, "--days", "0", "--out", o]),
        ("issue unknown EKU", lambda p, j, o: [
            "crypto", "issue", "--ca-key", p.ca_key, "--ca-cert", p.ca_cert,
            "--csr", p.leaf_csr, "--days", "1", "--eku", "world_domination", "--out", o]),
        ("verify without --in", lambda p, j, o: ["crypto", "verify", "--cert", p.leaf_cert]),
        ("verify raw without --content", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["raw", None], "--format", "raw",
            "--cert", p.leaf_cert]),
        ("verify raw without --cert", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["raw", None], "--format", "raw",
            "--content", p.content]),
        ("verify raw with garbage --cert", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["raw", None], "--format", "raw",
            "--content", p.content, "--cert", j["garbage"]]),
        ("verify missing signature file", lambda p, j, o: [
            "crypto", "verify", "--in", j["missing"], "--content", p.content,
            "--cert", p.leaf_cert]),
        ("verify directory as signature", lambda p, j, o: [
            "crypto", "verify", "--in", j["dir"], "--content", p.content,
            "--cert", p.leaf_cert]),
        ("verify directory as content", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["raw", None], "--content", j["dir"],
            "--cert", p.leaf_cert]),
        ("verify missing content", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["cms-detached", "rfc5652"],
            "--content", j["missing"], "--ca", p.ca_cert]),
        ("verify detached CMS without --content", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["cms-detached", "rfc5652"],
            "--ca", p.ca_cert]),
        ("verify garbage --ca", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["cms-attached", "rfc5652"],
            "--ca", j["garbage"]]),
        ("verify directory as --ca", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["cms-attached", "rfc5652"],
            "--ca", j["dir"]]),
        ("verify --cert and --ca together", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["cms-attached", "rfc5652"],
            "--ca", p.ca_cert, "--cert", p.leaf_cert]),
        ("verify raw data as --format cms", lambda p, j, o: [
            "crypto", "verify", "--in", p.signatures["raw", None], "--format", "cms",
            "--ca", p.ca_cert]),
        ("hash missing file", lambda p, j, o: ["crypto", "hash", "--alg", "sm3", j["missing"]]),
        ("hash directory", lambda p, j, o: ["crypto", "hash", "--alg", "sha256", j["dir"]]),
        ("hash unknown alg", lambda p, j, o: ["crypto", "hash", "--alg", "md5", p.content]),
    ]


BAD_USAGE = _bad_usage_cases()


@pytest.mark.parametrize("build", [c[1] for c in BAD_USAGE], ids=[c[0] for c in BAD_USAGE])
def test_bad_usage_exits_2_with_one_line(
        build: Callable[[Pki, dict[str, Path], Path], Sequence[str | Path]],
        material: Callable[[str], Pki], junk: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    result = usage(*build(material("sm2"), junk, out))
    assert result.out == ""
    assert not out.exists()


def test_bad_usage_messages_name_the_problem(sm2: Pki, junk: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert "frobnicate" in usage("crypto", "frobnicate").err
    assert str(junk["missing"]) in usage("crypto", "hash", "--alg", "sm3", junk["missing"]).err
    assert "password" in usage("crypto", "sign", "--key", sm2.leaf_key, "--passin", "pass:x",
                               "--in", sm2.content, "--format", "raw", "--out", out).err
    assert "--subject" in usage("crypto", "csr", "--key", sm2.ca_key, "--subject", "oops",
                                "--out", out).err
    assert "--days" in usage("crypto", "selfsign", "--key", sm2.ca_key, "--subject", "CN=x",
                             "--days", "0", "--out", out).err
    assert "--cert" in usage("crypto", "sign", "--key", sm2.ca_key, "--in", sm2.content,
                             "--format", "cms-detached", "--out", out).err
    assert "--content" in usage("crypto", "verify", "--in", sm2.signatures["raw", None],
                                "--format", "raw", "--cert", sm2.leaf_cert).err
    assert "proof-of-possession" in usage(
        "crypto", "issue", "--ca-key", sm2.ca_key, "--ca-cert", sm2.ca_cert,
        "--csr", junk["broken_csr"], "--days", "1", "--out", out).err


# ---------------------------------------------------------------------------------------------
# The installed console script


def test_console_script_entry_point(sm2: Pki, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "medsign"
    assert script.is_file(), f"{script} missing: is the project installed in the venv?"

    def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *argv], capture_output=True, text=True,
                              timeout=60, check=False, stdin=subprocess.DEVNULL)

    good = run("crypto", "verify", *sm2.verify_args("raw", None))
    assert (good.returncode, good.stderr) == (0, ""), good.stderr
    assert good.stdout.startswith("valid")
    (tmp_path / "tampered").write_bytes(flip(CONTENT, 0))
    bad = run("crypto", "verify", *sm2.verify_args("raw", None, content=tmp_path / "tampered"))
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1 and "invalid signature" in bad.stderr
    wrong = run("crypto", "frobnicate")
    assert wrong.returncode == 2
    assert len(wrong.stderr.strip().splitlines()) == 1
    for result in (good, bad, wrong):
        assert "Traceback" not in result.stderr
