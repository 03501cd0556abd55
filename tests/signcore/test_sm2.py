"""SM2 signatures and encryption (signcore.sm2): the GB/T 32918.5 vector, round trips, and gmssl.

Every signature made here goes through ``CheckedSM2Key``, which has gmssl verify it too.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import core
from gmssl import sm2 as gm_sm2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signcore import ec
from signcore.algorithms import DEFAULT_SM2_ID, KeyType, SignatureAlgorithm
from signcore.der import decode_ecdsa_signature, encode_ecdsa_signature
from signcore.errors import DecryptionError, InvalidKey, InvalidSignature, UnsupportedAlgorithm
from signcore.hashes import sm3
from signcore.sm2 import SM2PrivateKey, SM2PublicKey
from tests.support import gmssl_oracle
from tests.support.gmssl_oracle import CheckedSM2Key
from tests.support.sm2_fixed_k import FixedKError, sign_digest_with_k

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sm2-sm3.json").read_text()
)
VECTOR: dict[str, str] = VECTORS["sm2_sign"][0]
SLOW_ORACLE = settings(max_examples=40, deadline=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])


def _i(value: str) -> int:
    return int(value, 16)


def _vector_public() -> SM2PublicKey:
    return SM2PublicKey.from_point(ec.Point(_i(VECTOR["public_key_x"]), _i(VECTOR["public_key_y"])))


class KeyPair:
    """A fresh SM2 key with its scalar known to the test (for gmssl), signatures gmssl-checked."""

    def __init__(self) -> None:
        self.d = secrets.randbelow(ec.N - 2) + 1
        self.checked = CheckedSM2Key(SM2PrivateKey.from_scalar(self.d))
        self.key = self.checked.key
        self.public = self.checked.public


@pytest.fixture
def pair() -> KeyPair:
    return KeyPair()


@pytest.fixture(scope="module")
def module_pair() -> KeyPair:
    return KeyPair()


# --- GB/T 32918.5 Annex A signature example ------------------------------------------------------


def test_vector_provenance_is_kept() -> None:
    assert "GB/T 32918.5" in VECTORS["provenance"]
    assert VECTOR["id_ascii"].encode() == DEFAULT_SM2_ID


def test_vector_public_key_is_d_times_g() -> None:
    d = _i(VECTOR["private_key"])
    expected = ec.Point(_i(VECTOR["public_key_x"]), _i(VECTOR["public_key_y"]))
    assert ec.mul_base(d) == expected
    assert SM2PrivateKey.from_scalar(d).public_key().point == expected


def test_vector_z_and_e() -> None:
    public = _vector_public()
    message = VECTOR["message_ascii"].encode()
    e = public.digest(message, VECTOR["id_ascii"].encode())
    assert e.hex() == VECTOR["e"]
    assert public.digest(message) == e  # the default ID is the vector's ID
    assert gmssl_oracle.e(public, message) == e  # independent Z computation agrees
    assert public.z() == gmssl_oracle.z(public)


def test_vector_signature_verifies() -> None:
    public = _vector_public()
    message = VECTOR["message_ascii"].encode()
    signature = encode_ecdsa_signature(_i(VECTOR["r"]), _i(VECTOR["s"]))
    public.verify(signature, message)
    public.verify(signature, message, SignatureAlgorithm.SM2_SM3, signer_id=DEFAULT_SM2_ID)
    public.verify_digest(signature, bytes.fromhex(VECTOR["e"]))
    assert gmssl_oracle.verify(public, signature, message)
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b".")
    with pytest.raises(InvalidSignature):
        public.verify(encode_ecdsa_signature(_i(VECTOR["r"]), _i(VECTOR["s"]) + 1), message)


def test_vector_reproduced_with_fixed_k() -> None:
    r, s = sign_digest_with_k(_i(VECTOR["private_key"]), bytes.fromhex(VECTOR["e"]),
                              _i(VECTOR["k"]))
    assert f"{r:064x}" == VECTOR["r"]
    assert f"{s:064x}" == VECTOR["s"]
    # a different k gives a different, still valid, signature
    r2, s2 = sign_digest_with_k(_i(VECTOR["private_key"]), bytes.fromhex(VECTOR["e"]),
                                _i(VECTOR["k"]) + 1)
    assert (r2, s2) != (r, s)
    _vector_public().verify_digest(encode_ecdsa_signature(r2, s2), bytes.fromhex(VECTOR["e"]))


def test_fixed_k_signatures_verify_with_random_keys(pair: KeyPair) -> None:
    e = pair.public.digest(b"fixed k")
    for _ in range(3):
        try:
            r, s = sign_digest_with_k(pair.d, e, secrets.randbelow(ec.N - 1) + 1)
        except FixedKError:  # pragma: no cover - probability about 2^-255
            continue
        sig = encode_ecdsa_signature(r, s)
        pair.public.verify(sig, b"fixed k")
        assert gmssl_oracle.verify(pair.public, sig, b"fixed k")


def test_fixed_k_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="d outside"):
        sign_digest_with_k(0, bytes(32), 1)
    with pytest.raises(ValueError, match="k outside"):
        sign_digest_with_k(1, bytes(32), ec.N)


# --- signatures ----------------------------------------------------------------------------------


def test_sign_verify_round_trip(pair: KeyPair) -> None:
    sig = pair.checked.sign(b"prescription 42")
    pair.public.verify(sig, b"prescription 42")
    assert pair.public.is_valid(sig, b"prescription 42")
    assert not pair.public.is_valid(sig, b"prescription 43")
    r, s = decode_ecdsa_signature(sig)
    assert 0 < r < ec.N
    assert 0 < s < ec.N
    assert len(sig) <= 72
    # k is random: signing twice gives two different valid signatures
    sig2 = pair.checked.sign(b"prescription 42")
    assert sig2 != sig
    pair.public.verify(sig2, b"prescription 42")


def test_verify_with_other_key_fails(pair: KeyPair, module_pair: KeyPair) -> None:
    sig = pair.checked.sign(b"data")
    with pytest.raises(InvalidSignature):
        module_pair.public.verify(sig, b"data")
    assert not gmssl_oracle.verify(module_pair.public, sig, b"data")


@pytest.mark.parametrize(
    "signer_id",
    [b"", b"alice@hospital.example", "医生-张三".encode(), b"\x00" * 3, b"i" * 8191],
    ids=["empty", "email", "utf8", "nul", "max"],
)
def test_non_default_signer_ids(pair: KeyPair, signer_id: bytes) -> None:
    sig = pair.checked.sign(b"msg", signer_id=signer_id)  # gmssl checks it with its own Z
    pair.public.verify(sig, b"msg", signer_id=signer_id)
    with pytest.raises(InvalidSignature):
        pair.public.verify(sig, b"msg")  # default ID
    with pytest.raises(InvalidSignature):
        pair.public.verify(sig, b"msg", signer_id=(signer_id + b"x")[-8191:])
    assert not gmssl_oracle.verify(pair.public, sig, b"msg")


def test_default_id_signature_fails_under_other_id(pair: KeyPair) -> None:
    sig = pair.checked.sign(b"msg")
    with pytest.raises(InvalidSignature):
        pair.public.verify(sig, b"msg", signer_id=b"")
    with pytest.raises(InvalidSignature):
        pair.public.verify(sig, b"msg", signer_id=b"1234567812345679")


def test_signer_id_too_long(pair: KeyPair) -> None:
    with pytest.raises(InvalidKey):
        pair.key.sign(b"msg", signer_id=b"i" * 8192)


def test_z_depends_on_id_and_key(pair: KeyPair, module_pair: KeyPair) -> None:
    assert pair.public.z() != pair.public.z(b"other")
    assert pair.public.z() != module_pair.public.z()
    assert pair.public.z(b"other") == gmssl_oracle.z(pair.public, b"other")
    assert pair.public.digest(b"m", b"other") == gmssl_oracle.e(pair.public, b"m", b"other")


def test_sign_digest_consistent_with_digest(pair: KeyPair) -> None:
    e = pair.public.digest(b"document")
    assert len(e) == 32
    sig = pair.checked.sign_digest(e)
    pair.public.verify(sig, b"document")  # a digest signature is a message signature
    pair.public.verify_digest(sig, e)
    with pytest.raises(InvalidSignature):
        pair.public.verify_digest(sig, pair.public.digest(b"documenT"))
    msg_sig = pair.checked.sign(b"document")
    pair.public.verify_digest(msg_sig, e)
    # the digest is SM3(Z || M), not SM3(M)
    with pytest.raises(InvalidSignature):
        pair.public.verify_digest(msg_sig, sm3(b"document"))


def test_digest_size_checks(pair: KeyPair) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        pair.key.sign_digest(bytes(31))
    with pytest.raises(ValueError, match="32 bytes"):
        pair.key.sign_digest(bytes(33))
    sig = pair.checked.sign(b"x")
    with pytest.raises(InvalidSignature):
        pair.public.verify_digest(sig, pair.public.digest(b"x")[:31])


def test_algorithm_argument(pair: KeyPair) -> None:
    sig = pair.key.sign(b"x", SignatureAlgorithm.SM2_SM3)
    assert gmssl_oracle.verify(pair.public, sig, b"x")
    pair.public.verify(sig, b"x", SignatureAlgorithm.SM2_SM3)
    for alg in (SignatureAlgorithm.RSA_PKCS1_SHA256, SignatureAlgorithm.ECDSA_SHA256):
        with pytest.raises(UnsupportedAlgorithm):
            pair.key.sign(b"x", alg)
        with pytest.raises(UnsupportedAlgorithm):
            pair.public.verify(sig, b"x", alg)


@SLOW_ORACLE
@given(message=st.binary(max_size=600))
def test_hypothesis_round_trip_checked_by_gmssl(module_pair: KeyPair, message: bytes) -> None:
    sig = module_pair.checked.sign(message)
    module_pair.public.verify(sig, message)


@SLOW_ORACLE
@given(message=st.binary(max_size=500), signer_id=st.binary(max_size=40))
def test_hypothesis_gmssl_signs_we_verify(
    module_pair: KeyPair, message: bytes, signer_id: bytes
) -> None:
    sig = gmssl_oracle.sign(module_pair.d, module_pair.public, message, signer_id)
    module_pair.public.verify(sig, message, signer_id=signer_id)
    with pytest.raises(InvalidSignature):
        module_pair.public.verify(sig, message + b"\x00", signer_id=signer_id)


def test_gmssl_signs_default_id_we_verify(pair: KeyPair) -> None:
    for message in (b"", b"a", b"message digest" * 10):
        sig = gmssl_oracle.sign(pair.d, pair.public, message)
        pair.public.verify(sig, message)


def test_oracle_is_not_a_tautology(pair: KeyPair) -> None:
    sig = pair.checked.sign(b"m")
    r, s = decode_ecdsa_signature(sig)
    assert gmssl_oracle.verify(pair.public, sig, b"m")
    assert not gmssl_oracle.verify(pair.public, sig, b"n")
    assert not gmssl_oracle.verify(pair.public, encode_ecdsa_signature(r, s ^ 1), b"m")
    assert not gmssl_oracle.verify(pair.public, encode_ecdsa_signature(r, ec.N + s), b"m")
    assert not gmssl_oracle.verify(pair.public, sig + b"\x00", b"m")
    assert not gmssl_oracle.verify(pair.public, sig, b"m", b"another id")


# --- keys ----------------------------------------------------------------------------------------


def test_key_properties(pair: KeyPair) -> None:
    public = pair.public
    assert public.key_type is KeyType.SM2
    assert public.key_size == 256
    assert public.encoded_point == public.point.encode()
    assert public.point == ec.mul_base(pair.d)
    assert public.default_signature_algorithm is SignatureAlgorithm.SM2_SM3
    assert SM2PublicKey.from_point(public.encoded_point) == public
    assert SM2PublicKey.from_point(public.point) == public
    assert hash(SM2PublicKey.from_point(public.point)) == hash(public)
    assert public != KeyPair().public
    assert f"{pair.d:x}" not in repr(pair.key)
    assert "SM2PrivateKey" in repr(pair.key)


def test_generate_gives_distinct_working_keys() -> None:
    a, b = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    assert a.public_key() != b.public_key()
    sig = CheckedSM2Key(a).sign(b"gen")
    a.public_key().verify(sig, b"gen")


@pytest.mark.parametrize("d", [1, 2, ec.N - 2])
def test_from_scalar_edges_accepted(d: int) -> None:
    key = CheckedSM2Key(SM2PrivateKey.from_scalar(d))
    assert key.public.point == ec.mul_base(d)
    key.public.verify(key.sign(b"edge"), b"edge")


@pytest.mark.parametrize("d", [0, -1, ec.N - 1, ec.N, ec.N + 1, 2**256])
def test_from_scalar_out_of_range(d: int) -> None:
    with pytest.raises(InvalidKey):
        SM2PrivateKey.from_scalar(d)


def test_from_point_rejects_invalid_points() -> None:
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_point(ec.Point(1, 2))
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_point(ec.Point(ec.GX, ec.GY ^ 1).encode())
    with pytest.raises(InvalidKey):
        SM2PublicKey.from_point(b"\x00")


# --- encryption ----------------------------------------------------------------------------------


def _ciphertext_parts(ct: bytes) -> tuple[int, int, bytes, bytes]:
    """Parse GM/T 0009 SEQUENCE {INTEGER x, INTEGER y, OCTET STRING C3, OCTET STRING C2}."""
    seq = core.Sequence.load(ct, strict=True)
    assert seq.tag == 16
    children = [seq[i] for i in range(len(seq))]
    assert len(children) == 4
    assert [c.tag for c in children] == [2, 2, 4, 4]
    x = core.Integer.load(children[0].dump()).native
    y = core.Integer.load(children[1].dump()).native
    c3 = core.OctetString.load(children[2].dump()).native
    c2 = core.OctetString.load(children[3].dump()).native
    return x, y, c3, c2


@pytest.mark.parametrize("size", [1, 16, 31, 32, 33, 1000])
def test_encrypt_round_trip_and_structure(pair: KeyPair, size: int) -> None:
    plaintext = secrets.token_bytes(size)
    ct = pair.public.encrypt(plaintext)
    assert pair.key.decrypt(ct) == plaintext
    x, y, c3, c2 = _ciphertext_parts(ct)
    assert len(c3) == 32
    assert len(c2) == size
    c1 = ec.decode_point(ec.Point(x, y).encode())  # C1 is a curve point
    # C3 = SM3(x2 || M || y2) with (x2, y2) = d*C1, recomputed with gmssl's SM3
    shared = ec.mul(c1, pair.d)
    assert c3 == gmssl_oracle.sm3(shared.x.to_bytes(32, "big") + plaintext
                                  + shared.y.to_bytes(32, "big"))
    # randomized: encrypting again gives another ciphertext
    assert pair.public.encrypt(plaintext) != ct


def _raw_c1c3c2(ct: bytes) -> bytes:
    x, y, c3, c2 = _ciphertext_parts(ct)
    return x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2


def _der_from_raw(raw: bytes) -> bytes:
    x, y = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big")
    parts = (core.Integer(x).dump() + core.Integer(y).dump()
             + core.OctetString(raw[64:96]).dump() + core.OctetString(raw[96:]).dump())
    return bytes(core.Sequence.load(b"\x30" + _der_len(len(parts)) + parts).dump())


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def test_encryption_interop_with_gmssl(pair: KeyPair) -> None:
    crypt = gm_sm2.CryptSM2(private_key=f"{pair.d:064x}", public_key="", mode=1)  # C1C3C2
    point = pair.public.point
    crypt.public_key = f"{point.x:064x}{point.y:064x}"
    for plaintext in (b"a", b"secret share of doctor 7", bytes(range(200))):
        assert crypt.decrypt(_raw_c1c3c2(pair.public.encrypt(plaintext))) == plaintext
        assert pair.key.decrypt(_der_from_raw(crypt.encrypt(plaintext))) == plaintext


def test_decrypt_tampered_ciphertext(pair: KeyPair) -> None:
    ct = pair.public.encrypt(b"the quick brown fox")
    c2 = _ciphertext_parts(ct)[3]
    # flip a bit in C2, in C3, and near the end
    for i in (len(ct) - 1, len(ct) - len(c2) - 3, 10):
        bad = bytearray(ct)
        bad[i] ^= 0x01
        with pytest.raises(DecryptionError):
            pair.key.decrypt(bytes(bad))
    # truncated, or with bytes after the DER (libcrypto alone would ignore those)
    long_form = b"\x30\x81" + bytes([len(ct) - 2]) + ct[2:]  # ct is < 128 bytes: short form
    assert ct[1] == len(ct) - 2
    for bad_ct in (b"", b"\x30\x00", ct[:-1], ct + b"\x00", ct + ct, ct[:40], long_form + b"\x00"):
        with pytest.raises(DecryptionError):
            pair.key.decrypt(bad_ct)


def test_decrypt_with_wrong_key(pair: KeyPair, module_pair: KeyPair) -> None:
    ct = pair.public.encrypt(b"for pair only")
    with pytest.raises(DecryptionError):
        module_pair.key.decrypt(ct)


def test_decrypt_with_c1_off_curve(pair: KeyPair) -> None:
    ct = pair.public.encrypt(b"payload")
    x, y, c3, c2 = _ciphertext_parts(ct)
    raw = x.to_bytes(32, "big") + ((y + 1) % ec.P).to_bytes(32, "big") + c3 + c2
    with pytest.raises(DecryptionError):
        pair.key.decrypt(_der_from_raw(raw))


def test_encrypt_empty_refused(pair: KeyPair) -> None:
    with pytest.raises(ValueError, match="empty"):
        pair.public.encrypt(b"")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plaintext=st.binary(min_size=1, max_size=300))
def test_hypothesis_encrypt_round_trip(module_pair: KeyPair, plaintext: bytes) -> None:
    assert module_pair.key.decrypt(module_pair.public.encrypt(plaintext)) == plaintext
