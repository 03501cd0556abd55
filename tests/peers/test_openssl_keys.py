"""Key files and RSA/ECDSA signatures against the real OpenSSL CLI.

OpenSSL must read what signcore writes (PKCS#8, plain and PBES2-encrypted, and SPKI) and signcore
must read what OpenSSL writes; RSA PKCS#1 v1.5 and PSS signatures must verify both ways.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from signcore.algorithms import SignatureAlgorithm
from signcore.errors import DecodeError, InvalidSignature
from signcore.keys import (
    ECPrivateKey,
    PrivateKey,
    RSAPrivateKey,
    SM2PrivateKey,
    generate_private_key,
    load_private_key,
    load_public_key,
)
from tests.support import gmssl_oracle
from tests.support.peers import require_tool, run_tool

pytestmark = pytest.mark.peer

PASSWORD = "s3cret pass"
SPECS = ["sm2", "rsa2048", "ecdsa-p256"]
_KEYS: dict[str, PrivateKey] = {}
PSS = ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]


def _run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run_tool([require_tool("openssl"), *args], check=check)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _key(spec: str) -> PrivateKey:
    if spec not in _KEYS:
        _KEYS[spec] = generate_private_key(spec)
    return _KEYS[spec]


def _openssl_public_pem(key_file: Path, *extra: str) -> bytes:
    """What OpenSSL says the public key of a private key file is (SPKI PEM)."""
    return _run("pkey", "-in", key_file, "-pubout", *extra).stdout


def _check_signs(key: PrivateKey) -> None:
    signature = key.sign(b"loaded key works")
    key.public_key().verify(signature, b"loaded key works")
    if isinstance(key, SM2PrivateKey):
        assert gmssl_oracle.verify(key.public_key(), signature, b"loaded key works")


# --- OpenSSL reads our files ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_openssl_reads_our_pkcs8(tmp_path: Path, spec: str) -> None:
    key = _key(spec)
    expected = key.public_key().to_pem()
    pem = _write(tmp_path / "k.pem", key.to_pem())
    der = _write(tmp_path / "k.der", key.to_der())
    assert _openssl_public_pem(pem) == expected
    assert _openssl_public_pem(der, "-inform", "DER") == expected
    # and what OpenSSL writes back from it is still the same key for us
    reencoded = _run("pkey", "-in", der, "-inform", "DER", "-outform", "DER").stdout
    assert load_private_key(reencoded).public_key() == key.public_key()


@pytest.mark.parametrize("spec", SPECS)
def test_openssl_reads_our_encrypted_pkcs8(tmp_path: Path, spec: str) -> None:
    key = _key(spec)
    expected = key.public_key().to_pem()
    pem = _write(tmp_path / "k.pem", key.to_pem(PASSWORD.encode()))
    der = _write(tmp_path / "k.der", key.to_der(PASSWORD.encode()))
    assert _openssl_public_pem(pem, "-passin", f"pass:{PASSWORD}") == expected
    assert _openssl_public_pem(der, "-inform", "DER", "-passin", f"pass:{PASSWORD}") == expected
    # OpenSSL really decrypts: the wrong password fails there too
    assert _run("pkey", "-in", pem, "-pubout", "-passin", "pass:wrong", check=False).returncode
    # and it sees PBES2 / PBKDF2 / AES-256-CBC
    asn1 = _run("asn1parse", "-in", pem).stdout
    assert b"PBES2" in asn1
    assert b"PBKDF2" in asn1
    assert b"aes-256-cbc" in asn1


@pytest.mark.parametrize("spec", SPECS)
def test_openssl_reads_our_spki(tmp_path: Path, spec: str) -> None:
    public = _key(spec).public_key()
    pem = _write(tmp_path / "pub.pem", public.to_pem())
    out = _run("pkey", "-pubin", "-in", pem, "-outform", "DER").stdout
    assert out == public.to_der()


def test_openssl_sees_sm2_curve_in_our_key(tmp_path: Path) -> None:
    pem = _write(tmp_path / "k.pem", _key("sm2").to_pem())
    text = _run("pkey", "-in", pem, "-text", "-noout").stdout
    assert b"ASN1 OID: SM2" in text


# --- we read OpenSSL's files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "genpkey_args", "expected_type"),
    [
        ("sm2", ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:SM2"], SM2PrivateKey),
        ("rsa2048", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], RSAPrivateKey),
        ("p256", ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], ECPrivateKey),
    ],
    ids=["sm2", "rsa2048", "p256"],
)
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "aes-256-cbc"])
def test_we_read_openssl_keys(
    tmp_path: Path, name: str, genpkey_args: list[str], expected_type: type, encrypted: bool
) -> None:
    k_pem = tmp_path / "k.pem"
    crypt = ["-aes-256-cbc", "-pass", "pass:x"] if encrypted else []
    _run("genpkey", *genpkey_args, *crypt, "-out", k_pem)
    password = b"x" if encrypted else None
    key = load_private_key(k_pem.read_bytes(), password)
    assert isinstance(key, expected_type)
    passin = ["-passin", "pass:x"] if encrypted else []
    openssl_pub = _openssl_public_pem(k_pem, *passin)
    assert load_public_key(openssl_pub) == key.public_key()
    assert openssl_pub == key.public_key().to_pem()
    _check_signs(key)
    if encrypted:
        with pytest.raises(DecodeError):
            load_private_key(k_pem.read_bytes())
        with pytest.raises(DecodeError):
            load_private_key(k_pem.read_bytes(), b"y")
    # the DER PKCS#8 form OpenSSL writes loads too
    der = _run("pkcs8", "-topk8", "-nocrypt", "-in", k_pem, *passin, "-outform", "DER").stdout
    assert load_private_key(der).public_key() == key.public_key()


# --- RSA and ECDSA signatures both ways ----------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "sigopts"),
    [(SignatureAlgorithm.RSA_PKCS1_SHA256, []), (SignatureAlgorithm.RSA_PSS_SHA256, PSS)],
    ids=["pkcs1v15", "pss"],
)
def test_openssl_verifies_our_rsa_signatures(
    tmp_path: Path, alg: SignatureAlgorithm, sigopts: list[str]
) -> None:
    key = _key("rsa2048")
    pub = _write(tmp_path / "pub.pem", key.public_key().to_pem())
    for i in range(5):
        message = os.urandom(100 * i + 1)
        msg = _write(tmp_path / f"m{i}", message)
        sig = _write(tmp_path / f"s{i}", key.sign(message, alg))
        proc = _run("dgst", "-sha256", "-verify", pub, *sigopts, "-signature", sig, msg)
        assert b"Verified OK" in proc.stdout
    # a wrong message fails in OpenSSL too
    bad = _run("dgst", "-sha256", "-verify", pub, *sigopts, "-signature", tmp_path / "s0",
               tmp_path / "m1", check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize(
    ("alg", "sigopts"),
    [(SignatureAlgorithm.RSA_PKCS1_SHA256, []), (SignatureAlgorithm.RSA_PSS_SHA256, PSS)],
    ids=["pkcs1v15", "pss"],
)
def test_we_verify_openssl_rsa_signatures(
    tmp_path: Path, alg: SignatureAlgorithm, sigopts: list[str]
) -> None:
    key = _key("rsa2048")
    k_pem = _write(tmp_path / "k.pem", key.to_pem())
    public = key.public_key()
    for i in range(5):
        message = os.urandom(100 * i + 1)
        msg = _write(tmp_path / f"m{i}", message)
        sig = tmp_path / f"s{i}"
        _run("dgst", "-sha256", "-sign", k_pem, *sigopts, "-out", sig, msg)
        public.verify(sig.read_bytes(), message, alg)
        with pytest.raises(InvalidSignature):
            public.verify(sig.read_bytes(), message + b"!", alg)
    # PKCS#1 v1.5 and PSS are not interchangeable
    other = (SignatureAlgorithm.RSA_PSS_SHA256 if alg is SignatureAlgorithm.RSA_PKCS1_SHA256
             else SignatureAlgorithm.RSA_PKCS1_SHA256)
    with pytest.raises(InvalidSignature):
        public.verify((tmp_path / "s0").read_bytes(), (tmp_path / "m0").read_bytes(), other)


def test_ecdsa_p256_both_ways(tmp_path: Path) -> None:
    key = _key("ecdsa-p256")
    k_pem = _write(tmp_path / "k.pem", key.to_pem())
    pub = _write(tmp_path / "pub.pem", key.public_key().to_pem())
    msg = _write(tmp_path / "m", b"ecdsa interop")
    ours = _write(tmp_path / "ours", key.sign(b"ecdsa interop"))
    assert b"Verified OK" in _run("dgst", "-sha256", "-verify", pub, "-signature", ours,
                                  msg).stdout
    theirs = tmp_path / "theirs"
    _run("dgst", "-sha256", "-sign", k_pem, "-out", theirs, msg)
    key.public_key().verify(theirs.read_bytes(), b"ecdsa interop")
