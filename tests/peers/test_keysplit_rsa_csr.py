"""keysplit against the OpenSSL CLI: split-RSA signatures, and CSRs whose proof-of-possession
signature was made by a two-party protocol (SM2 co-signing, split RSA) -- ``openssl req -verify``.

``openssl req -verify`` EXITS 0 EVEN WHEN THE SIGNATURE IS WRONG (OpenSSL 3.0): its verdict is
the line "Certificate request self-signature verify OK" / "... verify failure" on stderr, so
the output is parsed, and a tampered request shows the failure line.  SM2 requests need
``-vfyopt distid:1234567812345678`` (PEERS.md "OpenSSL 3.0 with SM2").
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
from pathlib import Path

import pytest

from keysplit.rsa import PUBLIC_EXPONENT, emsa_pkcs1_v15
from signcore.algorithms import DEFAULT_SM2_ID
from signcore.sm2 import SM2PublicKey
from signcore.x509 import CertificateRequest, load_csr, prepare_csr
from tests.keysplit.conftest import cosign, enroll
from tests.keysplit.test_rsa import RsaSigner, enroll_rsa, sign
from tests.support import gmssl_oracle
from tests.support.peers import run_tool
from tests.support.pki import write_pem

pytestmark = pytest.mark.peer

DISTID = "distid:" + DEFAULT_SM2_ID.decode()
SUBJECT = "CN=张三,OU=内科,O=测试医院,C=CN"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
BATCH = 20
VERIFY_OK = b"verify OK"
VERIFY_FAILURE = b"verify failure"


@pytest.fixture(scope="module")
def rsa_signer() -> RsaSigner:
    return enroll_rsa(2048)


def _run(openssl: str, *args: str | Path, check: bool = True
         ) -> subprocess.CompletedProcess[bytes]:
    return run_tool([openssl, *args], check=check)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _public_pem(signer: RsaSigner, path: Path) -> Path:
    return _write(path, signer.server_share.public_key().to_pem())


def _dgst_verifies(openssl: str, pub: Path, msg: Path, sig: Path) -> bool:
    proc = _run(openssl, "dgst", "-sha256", "-verify", pub, "-signature", sig, msg, check=False)
    return proc.returncode == 0 and b"Verified OK" in proc.stdout


def _pkeyutl_verifies(openssl: str, pub: Path, digest: Path, sig: Path) -> bool:
    proc = _run(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-in", digest,
                "-sigfile", sig, "-pkeyopt", "digest:sha256", check=False)
    return proc.returncode == 0 and b"Signature Verified Successfully" in proc.stdout


def _req_verify(openssl: str, request: Path, *extra: str, inform: str = "PEM") -> bytes:
    """The verdict line of ``openssl req -verify`` (its exit code says nothing)."""
    proc = _run(openssl, "req", "-verify", "-noout", "-inform", inform, *extra, "-in", request,
                check=False)
    output = proc.stdout + proc.stderr
    assert (VERIFY_OK in output) != (VERIFY_FAILURE in output), output
    return output


# --- split RSA signatures ----------------------------------------------------------------------


def test_rsa_split_signatures_verify_with_openssl(openssl_bin: str, rsa_signer: RsaSigner,
                                                  tmp_path: Path) -> None:
    messages = [f"处方 {i}: ".encode() + secrets.token_bytes(secrets.randbelow(300))
                for i in range(BATCH)]
    digests = [hashlib.sha256(m).digest() for m in messages]
    signatures = sign(rsa_signer, digests)  # one session, one PIN entry, 20 signatures
    pub = _public_pem(rsa_signer, tmp_path / "pub.pem")
    for i, (message, digest, signature) in enumerate(zip(messages, digests, signatures,
                                                         strict=True)):
        msg = _write(tmp_path / f"m{i}", message)
        dig = _write(tmp_path / f"d{i}", digest)
        sig = _write(tmp_path / f"s{i}", signature)
        assert _dgst_verifies(openssl_bin, pub, msg, sig), i
        assert _pkeyutl_verifies(openssl_bin, pub, dig, sig), i
    # Negative controls: OpenSSL does refuse a flipped bit, another message, and the phone's
    # partial signature on its own.
    bad = bytearray(signatures[0])
    bad[100] ^= 0x04
    assert not _dgst_verifies(openssl_bin, pub, tmp_path / "m0", _write(tmp_path / "bad",
                                                                          bytes(bad)))
    assert not _dgst_verifies(openssl_bin, pub, tmp_path / "m1", tmp_path / "s0")
    alone = rsa_signer.secret.partial(digests[0]).to_bytes(rsa_signer.size, "big")
    assert not _pkeyutl_verifies(openssl_bin, pub, tmp_path / "d0",
                                 _write(tmp_path / "alone", alone))
    server_alone = rsa_signer.server_share.partial(digests[0]).to_bytes(rsa_signer.size, "big")
    assert not _pkeyutl_verifies(openssl_bin, pub, tmp_path / "d0",
                                 _write(tmp_path / "server-alone", server_alone))


def test_rsa_3072_split_signature_verifies_with_openssl(openssl_bin: str,
                                                        tmp_path: Path) -> None:
    signer = enroll_rsa(3072)
    message = b"RSA-3072 split signature"
    (signature,) = sign(signer, [hashlib.sha256(message).digest()])
    pub = _public_pem(signer, tmp_path / "pub.pem")
    assert _dgst_verifies(openssl_bin, pub, _write(tmp_path / "m", message),
                          _write(tmp_path / "s", signature))
    text = _run(openssl_bin, "pkey", "-pubin", "-in", pub, "-noout", "-text").stdout
    assert b"3072 bit" in text


def test_openssl_recovers_the_pkcs1_encoding(openssl_bin: str, rsa_signer: RsaSigner,
                                             tmp_path: Path) -> None:
    """What OpenSSL recovers from a split signature is DigestInfo(sha256) || digest, and with
    no padding removed, exactly emsa_pkcs1_v15(digest)."""
    pub = _public_pem(rsa_signer, tmp_path / "pub.pem")
    for i, digest in enumerate(hashlib.sha256(bytes([i])).digest() for i in range(3)):
        (signature,) = sign(rsa_signer, [digest])
        sig = _write(tmp_path / f"s{i}", signature)
        recovered = _run(openssl_bin, "pkeyutl", "-verifyrecover", "-pubin", "-inkey", pub,
                         "-in", sig, "-pkeyopt", "rsa_padding_mode:pkcs1").stdout
        assert recovered == SHA256_DIGEST_INFO + digest
        raw = _run(openssl_bin, "pkeyutl", "-verifyrecover", "-pubin", "-inkey", pub,
                   "-in", sig, "-pkeyopt", "rsa_padding_mode:none").stdout
        assert raw == emsa_pkcs1_v15(digest, rsa_signer.size).to_bytes(rsa_signer.size, "big")
        assert int.from_bytes(raw, "big") == pow(int.from_bytes(signature, "big"),
                                                 PUBLIC_EXPONENT, rsa_signer.n)


# --- CSRs signed by the two-party protocols ----------------------------------------------------


def _tampered(request: CertificateRequest) -> bytes:
    """The request's DER with the department changed (内科 -> 外科, same length)."""
    der = request.der
    assert der.count("内科".encode()) == 1
    return der.replace("内科".encode(), "外科".encode())


def test_cosigned_sm2_csr_accepted_by_openssl_req(openssl_bin: str, tmp_path: Path) -> None:
    enrollment = enroll()
    public = SM2PublicKey.from_point(enrollment.share.public_key)
    unsigned = prepare_csr(public, SUBJECT)
    e = public.digest(unsigned.to_be_signed)  # SM3(Z || CertificationRequestInfo), default ID
    run = cosign(enrollment, [e])
    (signature,) = run.signatures
    assert gmssl_oracle.verify_digest(public, signature, e)  # an independent SM2 verifier
    request = unsigned.finish(signature)
    assert request.subject == load_csr(request.to_pem()).subject
    req = write_pem(tmp_path / "req.pem", request)

    assert VERIFY_OK in _req_verify(openssl_bin, req, "-vfyopt", DISTID)
    subject = _run(openssl_bin, "req", "-in", req, "-noout", "-subject", "-nameopt",
                   "utf8,sep_comma_plus").stdout.decode()
    assert "张三" in subject and "内科" in subject and "测试医院" in subject
    key = _run(openssl_bin, "req", "-in", req, "-noout", "-pubkey").stdout
    assert key == public.to_pem()
    # OpenSSL's verdict is real: a tampered request fails, and so does the right request
    # checked with OpenSSL 3.0's default (empty) SM2 ID.
    bad = _write(tmp_path / "bad.der", _tampered(request))
    assert VERIFY_FAILURE in _req_verify(openssl_bin, bad, "-vfyopt", DISTID, inform="DER")
    assert VERIFY_FAILURE in _req_verify(openssl_bin, req)


def test_cosigned_batch_of_csrs(openssl_bin: str, tmp_path: Path) -> None:
    """Two requests (for instance a signing and an encryption certificate) in one batch."""
    enrollment = enroll()
    public = SM2PublicKey.from_point(enrollment.share.public_key)
    unsigned = [prepare_csr(public, SUBJECT), prepare_csr(public, SUBJECT + ",L=北京")]
    digests = [public.digest(u.to_be_signed) for u in unsigned]
    signatures = cosign(enrollment, digests).signatures
    for i, (pending, signature) in enumerate(zip(unsigned, signatures, strict=True)):
        req = write_pem(tmp_path / f"req{i}.pem", pending.finish(signature))
        assert VERIFY_OK in _req_verify(openssl_bin, req, "-vfyopt", DISTID)


def test_split_rsa_csr_accepted_by_openssl_req(openssl_bin: str, rsa_signer: RsaSigner,
                                               tmp_path: Path) -> None:
    public = rsa_signer.server_share.public_key()
    unsigned = prepare_csr(public, SUBJECT)
    digest = hashlib.sha256(unsigned.to_be_signed).digest()
    (signature,) = sign(rsa_signer, [digest])
    request = unsigned.finish(signature)
    req = write_pem(tmp_path / "req.pem", request)
    assert VERIFY_OK in _req_verify(openssl_bin, req)
    text = _run(openssl_bin, "req", "-in", req, "-noout", "-text").stdout
    assert b"sha256WithRSAEncryption" in text and b"Public-Key: (2048 bit)" in text
    bad = _write(tmp_path / "bad.der", _tampered(request))
    assert VERIFY_FAILURE in _req_verify(openssl_bin, bad, inform="DER")
