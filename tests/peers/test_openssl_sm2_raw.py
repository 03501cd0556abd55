"""SM2 raw signatures and encryption against the real OpenSSL CLI (PEERS.md "OpenSSL 3.0 with SM2").

OpenSSL 3.0 uses an EMPTY SM2 ID unless told otherwise, so every command passes
``distid:1234567812345678`` explicitly; one test shows what happens without it.  Every SM2
signature signcore makes here is also verified by gmssl (``CheckedSM2Key``).
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from signcore import ec
from signcore.algorithms import DEFAULT_SM2_ID
from signcore.der import decode_ecdsa_signature, encode_ecdsa_signature
from signcore.errors import InvalidSignature
from signcore.keys import load_private_key, load_public_key
from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from tests.support import gmssl_oracle
from tests.support.gmssl_oracle import CheckedSM2Key
from tests.support.peers import require_tool, run_tool

pytestmark = pytest.mark.peer

DISTID = "distid:" + DEFAULT_SM2_ID.decode()
BATCH = 20


def _run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return run_tool([require_tool("openssl"), *args], check=check)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pkeyutl_verify(pub: Path, msg: Path, sig: Path, distid: str = DISTID) -> bool:
    proc = _run("pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-digest", "sm3",
                "-pkeyopt", distid, "-in", msg, "-sigfile", sig, check=False)
    return proc.returncode == 0 and b"Signature Verified Successfully" in proc.stdout


def _dgst_verify(pub: Path, msg: Path, sig: Path, distid: str = DISTID) -> bool:
    proc = _run("dgst", "-sm3", "-verify", pub, "-sigopt", distid, "-signature", sig, msg,
                check=False)
    return proc.returncode == 0 and b"Verified OK" in proc.stdout


@pytest.fixture
def signer(tmp_path: Path) -> tuple[CheckedSM2Key, Path, Path]:
    """A fresh SM2 key (signatures gmssl-checked), with k.pem and pub.pem written for OpenSSL."""
    key = CheckedSM2Key(SM2PrivateKey.generate())
    k_pem = _write(tmp_path / "k.pem", key.key.to_pem())
    pub_pem = _write(tmp_path / "pub.pem", key.public.to_pem())
    return key, k_pem, pub_pem


def _messages() -> list[bytes]:
    sizes = [1, 2, 31, 32, 33, 64, 100, 1000, 4096] + [secrets.randbelow(3000) + 1
                                                         for _ in range(BATCH - 9)]
    return [secrets.token_bytes(size) for size in sizes]


def test_openssl_verifies_the_gbt_vector(tmp_path: Path) -> None:
    vector = {
        "x": 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
        "y": 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
        "r": 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3,
        "s": 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA,
    }
    public = SM2PublicKey.from_point(ec.Point(vector["x"], vector["y"]))
    pub = _write(tmp_path / "pub.pem", public.to_pem())
    msg = _write(tmp_path / "msg", b"message digest")
    sig = _write(tmp_path / "sig", encode_ecdsa_signature(vector["r"], vector["s"]))
    assert _pkeyutl_verify(pub, msg, sig)
    assert _dgst_verify(pub, msg, sig)
    # and OpenSSL is really checking: another message or another ID fails
    other = _write(tmp_path / "other", b"message digesT")
    assert not _pkeyutl_verify(pub, other, sig)
    assert not _pkeyutl_verify(pub, msg, sig, distid="distid:1234567812345679")


def test_openssl_verifies_our_signatures(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    key, _k_pem, pub = signer
    for i, message in enumerate(_messages()):
        msg = _write(tmp_path / f"m{i}", message)
        sig = _write(tmp_path / f"s{i}", key.sign(message))
        assert _pkeyutl_verify(pub, msg, sig), f"pkeyutl rejects message {i}"
        assert _dgst_verify(pub, msg, sig), f"dgst rejects message {i}"
    assert key.checked == BATCH
    # a signature over one message does not verify for the next
    assert not _pkeyutl_verify(pub, tmp_path / "m1", tmp_path / "s0")
    assert not _dgst_verify(pub, tmp_path / "m1", tmp_path / "s0")


def test_openssl_verifies_digest_signatures(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    key, _k_pem, pub = signer
    message = b"registered digest first, signed later"
    sig = key.sign_digest(key.public.digest(message))
    assert _pkeyutl_verify(pub, _write(tmp_path / "m", message), _write(tmp_path / "s", sig))


def test_openssl_verifies_non_default_signer_id(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    key, _k_pem, pub = signer
    signer_id = b"doctor.zhang@hospital.example"
    msg = _write(tmp_path / "m", b"with a personal ID")
    sig = _write(tmp_path / "s", key.sign(b"with a personal ID", signer_id=signer_id))
    assert _pkeyutl_verify(pub, msg, sig, distid="distid:" + signer_id.decode())
    assert not _pkeyutl_verify(pub, msg, sig)


def test_we_verify_openssl_signatures(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    key, k_pem, _pub = signer
    for i, message in enumerate(_messages()):
        msg = _write(tmp_path / f"m{i}", message)
        sig_path = tmp_path / f"s{i}"
        if i % 2:
            _run("dgst", "-sm3", "-sign", k_pem, "-sigopt", DISTID, "-out", sig_path, msg)
        else:
            _run("pkeyutl", "-sign", "-inkey", k_pem, "-rawin", "-digest", "sm3", "-pkeyopt",
                 DISTID, "-in", msg, "-out", sig_path)
        signature = sig_path.read_bytes()
        decode_ecdsa_signature(signature)  # strict DER
        key.public.verify(signature, message)
        assert gmssl_oracle.verify(key.public, signature, message)
        with pytest.raises(InvalidSignature):
            key.public.verify(signature, message + b"\x00")


def test_openssl_without_distid_uses_an_empty_id(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    """The PEERS.md trap, pinned: OpenSSL 3.0 without distid signs with ID = b""."""
    key, k_pem, _pub = signer
    msg = _write(tmp_path / "m", b"no distid")
    sig_path = tmp_path / "s"
    _run("pkeyutl", "-sign", "-inkey", k_pem, "-rawin", "-digest", "sm3", "-in", msg,
         "-out", sig_path)
    signature = sig_path.read_bytes()
    with pytest.raises(InvalidSignature):
        key.public.verify(signature, b"no distid")
    key.public.verify(signature, b"no distid", signer_id=b"")


def test_openssl_key_signs_for_us(tmp_path: Path) -> None:
    """A key generated by OpenSSL, used by signcore, its signature checked by OpenSSL."""
    k_pem = tmp_path / "k.pem"
    _run("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:SM2", "-out", k_pem)
    pub = tmp_path / "pub.pem"
    _run("pkey", "-in", k_pem, "-pubout", "-out", pub)
    private = load_private_key(k_pem.read_bytes())
    assert isinstance(private, SM2PrivateKey)
    assert load_public_key(pub.read_bytes()) == private.public_key()
    key = CheckedSM2Key(private)
    msg = _write(tmp_path / "m", b"signed with an OpenSSL-made key")
    sig = _write(tmp_path / "s", key.sign(b"signed with an OpenSSL-made key"))
    assert _pkeyutl_verify(pub, msg, sig)


# --- encryption ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 32, 100, 1500])
def test_openssl_decrypts_our_ciphertext(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path], size: int
) -> None:
    key, k_pem, _pub = signer
    plaintext = secrets.token_bytes(size)
    ct = _write(tmp_path / "ct", key.public.encrypt(plaintext))
    out = tmp_path / "pt"
    _run("pkeyutl", "-decrypt", "-inkey", k_pem, "-in", ct, "-out", out)
    assert out.read_bytes() == plaintext


@pytest.mark.parametrize("size", [1, 32, 100, 1500])
def test_we_decrypt_openssl_ciphertext(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path], size: int
) -> None:
    key, _k_pem, pub = signer
    plaintext = secrets.token_bytes(size)
    pt = _write(tmp_path / "pt", plaintext)
    ct = tmp_path / "ct"
    _run("pkeyutl", "-encrypt", "-pubin", "-inkey", pub, "-in", pt, "-out", ct)
    assert key.key.decrypt(ct.read_bytes()) == plaintext


def test_openssl_refuses_tampered_ciphertext(
    tmp_path: Path, signer: tuple[CheckedSM2Key, Path, Path]
) -> None:
    key, k_pem, _pub = signer
    ct = bytearray(key.public.encrypt(b"tamper with me"))
    ct[-1] ^= 1
    proc = _run("pkeyutl", "-decrypt", "-inkey", k_pem, "-in", _write(tmp_path / "ct", bytes(ct)),
                "-out", tmp_path / "pt", check=False)
    assert proc.returncode != 0
